//! `imagelens retention`: schedules per dataset, legal holds, and runs that dispose of what is
//! due.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use chrono::Utc;
use clap::{Args, Subcommand};

use super::{access, print_json};
use crate::app::AppSettings;
use crate::governance::Action;
use crate::governance::retention::{Hold, Schedule};

/// Arguments of `retention`.
#[derive(Debug, Args)]
pub struct RetentionArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: RetentionCommand,
}

/// `retention` subcommands.
#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// Show the schedules and holds.
    Show {
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Set a dataset's schedule.
    Set {
        /// Dataset.
        dataset: String,
        /// Dispose of records this many days after ingest.
        #[arg(long)]
        after_ingest_days: Option<u32>,
        /// The dataset is no longer in use from DATE on.
        #[arg(long, value_name = "DATE")]
        retired_on: Option<String>,
        /// Dispose of its records this many days after --retired-on.
        #[arg(long, requires = "retired_on")]
        after_retired_days: Option<u32>,
    },
    /// Remove a dataset's schedule.
    Unset {
        /// Dataset.
        dataset: String,
    },
    /// Put a record or a dataset on legal hold (never disposed of or deleted while held).
    Hold {
        /// A record id.
        #[arg(long, conflicts_with = "dataset", required_unless_present = "dataset")]
        record: Option<String>,
        /// A dataset.
        #[arg(long)]
        dataset: Option<String>,
        /// Why (case reference).
        #[arg(long)]
        reason: String,
    },
    /// Release a hold.
    Release {
        /// A record id.
        #[arg(long, conflicts_with = "dataset", required_unless_present = "dataset")]
        record: Option<String>,
        /// A dataset.
        #[arg(long)]
        dataset: Option<String>,
    },
    /// Dispose of every record past its schedule (holds excepted).
    Run {
        /// Only list what would be deleted.
        #[arg(long)]
        dry_run: bool,
        /// Also write the deletion receipt to this file.
        #[arg(long, value_name = "FILE")]
        receipt: Option<PathBuf>,
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `retention`.
///
/// # Errors
/// Credentials, refusals, invalid schedules, store failures.
pub fn run(settings: &AppSettings, args: RetentionArgs) -> anyhow::Result<ExitCode> {
    let (app, caller) = access::open(settings)?;
    let (audit, retention) = (app.audit(), app.retention());
    let desk = app.desk(caller.actor());
    // Record holds are kept and logged by the record's ref, never by its id.
    let record_ref = |id: &str| audit.record_ref(id);
    match args.command {
        RetentionCommand::Show { json } => {
            caller.require(audit, Action::RetentionView)?;
            let p = retention.policy();
            if json {
                print_json(&p)?;
                return Ok(ExitCode::SUCCESS);
            }
            println!("schedules:");
            for (d, s) in &p.schedules {
                println!("  {d}: {}", serde_json::to_string(s)?);
            }
            println!("dataset holds:");
            for (d, h) in &p.dataset_holds {
                println!(
                    "  {d}: {} (by {}, since {})",
                    h.reason,
                    h.by,
                    h.since.date_naive()
                );
            }
            println!("record holds (by the record's ref, as in the audit trail):");
            for (r, h) in &p.record_holds {
                println!(
                    "  {r}: {} (by {}, since {})",
                    h.reason,
                    h.by,
                    h.since.date_naive()
                );
            }
        }
        RetentionCommand::Set {
            dataset,
            after_ingest_days,
            retired_on,
            after_retired_days,
        } => {
            desk.require(Action::RetentionSet)?;
            let schedule = Schedule {
                after_ingest_days,
                retired_on: retired_on
                    .as_deref()
                    .map(indexer::dates::parse_date)
                    .transpose()
                    .map_err(|e| anyhow::anyhow!("--retired-on: {e}"))?,
                after_retired_days,
            };
            let detail = serde_json::json!({ "dataset": dataset, "schedule": schedule });
            desk.change_retention(retention, Action::RetentionSet, Vec::new(), detail, |p| {
                p.schedules.insert(dataset.clone(), schedule);
            })?;
            println!("schedule for {dataset} saved");
        }
        RetentionCommand::Unset { dataset } => {
            let detail = serde_json::json!({ "dataset": dataset, "schedule": null });
            desk.change_retention(retention, Action::RetentionSet, Vec::new(), detail, |p| {
                p.schedules.remove(&dataset);
            })?;
            println!("schedule for {dataset} removed");
        }
        RetentionCommand::Hold {
            record,
            dataset,
            reason,
        } => {
            desk.require(Action::LegalHold)?;
            if reason.trim().is_empty() {
                bail!("--reason must say why (case reference)");
            }
            let hold = Hold {
                reason,
                by: caller.actor().name().to_owned(),
                since: Utc::now(),
            };
            let records = record.iter().cloned().collect();
            let detail = serde_json::json!({ "dataset": dataset, "reason": hold.reason });
            desk.change_retention(retention, Action::LegalHold, records, detail, |p| {
                match (&record, &dataset) {
                    (Some(r), _) => {
                        p.record_holds.insert(record_ref(r), hold.clone());
                    }
                    (_, Some(d)) => {
                        p.dataset_holds.insert(d.clone(), hold.clone());
                    }
                    _ => {}
                }
            })?;
            println!("hold placed");
        }
        RetentionCommand::Release { record, dataset } => {
            let records = record.iter().cloned().collect();
            let detail = serde_json::json!({ "dataset": dataset });
            desk.change_retention(retention, Action::LegalHoldRelease, records, detail, |p| {
                if let Some(r) = &record {
                    // Under its ref, or under the id where an older version saved it.
                    p.record_holds.remove(&record_ref(r));
                    p.record_holds.remove(r);
                }
                if let Some(d) = &dataset {
                    p.dataset_holds.remove(d);
                }
            })?;
            println!("hold released");
        }
        RetentionCommand::Run {
            dry_run,
            receipt,
            json,
        } => {
            desk.require(Action::RetentionRun)?;
            let plan = desk.plan_retention_run(retention, app.library()?, Utc::now(), dry_run)?;
            if dry_run || plan.due.is_empty() {
                if json {
                    print_json(&serde_json::json!({ "plan": plan, "receipt": null }))?;
                } else {
                    println!(
                        "{} record(s) due{}, {} held back by legal holds",
                        plan.due.len(),
                        if dry_run {
                            " (dry run: nothing deleted)"
                        } else {
                            ""
                        },
                        plan.held
                    );
                    for d in &plan.due {
                        println!("  {}  {}  {}", d.id, d.dataset, d.rule);
                    }
                }
                return Ok(ExitCode::SUCCESS);
            }
            let ids: Vec<String> = plan.due.iter().map(|d| d.id.clone()).collect();
            let r = super::delete::delete_with_receipt(
                app.deletion_stores()?,
                &caller,
                &ids,
                "retention schedule",
                receipt.as_ref(),
            )?;
            if json {
                print_json(&serde_json::json!({ "plan": plan, "receipt": r }))?;
            } else {
                super::delete::print_receipt(&r);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
