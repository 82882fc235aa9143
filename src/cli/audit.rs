//! `imagelens audit`: check the trail's hash chain, and ask who saw what.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::access;
use super::print_json;
use crate::accounts::Permission;
use crate::app::AppSettings;
use crate::audit::AuditQuery;

/// Arguments of `audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: AuditCommand,
}

/// `audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check every entry's hash and the chain; exit 1 when anything was edited, removed or
    /// reordered.
    Verify {
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Entries by record, account, action and time ("who saw record X", "what did Y see").
    Query {
        /// Entries that returned or showed this record id.
        #[arg(long)]
        record: Option<String>,
        /// Entries of this account (`cli:<user>` for local use).
        #[arg(long)]
        actor: Option<String>,
        /// Entries of this action (search, lookup, view_image, export, delete, ...).
        #[arg(long)]
        action: Option<String>,
        /// At or after DATE (YYYY-MM-DD or RFC 3339).
        #[arg(long, value_name = "DATE")]
        after: Option<String>,
        /// Before DATE (a bare day includes the whole day).
        #[arg(long, value_name = "DATE")]
        before: Option<String>,
        /// Most entries.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `audit`.
///
/// # Errors
/// Credentials, refusals, bad dates, an unreadable trail.
pub fn run(settings: &AppSettings, args: AuditArgs) -> anyhow::Result<ExitCode> {
    let (_, audit, caller) = access::open(settings)?;
    match args.command {
        AuditCommand::Verify { json } => {
            caller.require(&audit, Permission::ReadAudit, "audit_verify")?;
            let report = audit.verify()?;
            if json {
                print_json(&report)?;
            } else if report.ok {
                println!(
                    "audit trail ok: {} entries, head {}",
                    report.entries,
                    report.head.as_deref().unwrap_or("-")
                );
            } else {
                eprintln!(
                    "audit trail BROKEN after {} sound entries: {}",
                    report.entries,
                    report.problem.as_deref().unwrap_or("unknown problem")
                );
            }
            Ok(if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        AuditCommand::Query {
            record,
            actor,
            action,
            after,
            before,
            limit,
            json,
        } => {
            caller.require(&audit, Permission::ReadAudit, "audit_query")?;
            let q = AuditQuery {
                record,
                actor,
                action,
                after: after
                    .as_deref()
                    .map(indexer::dates::parse_date)
                    .transpose()
                    .map_err(|e| anyhow::anyhow!("--after: {e}"))?,
                before: before
                    .as_deref()
                    .map(indexer::dates::parse_date_end)
                    .transpose()
                    .map_err(|e| anyhow::anyhow!("--before: {e}"))?,
                limit: Some(limit),
            };
            let entries = audit.query(&q)?;
            // The record asked about is kept as its ref, like every record in the trail.
            let logged = AuditQuery {
                record: q.record.as_deref().map(|id| audit.record_ref(id)),
                ..q.clone()
            };
            caller.audit(
                &audit,
                "audit_query",
                serde_json::to_value(&logged)?,
                vec![],
            )?;
            if json {
                print_json(&serde_json::json!({ "entries": entries }))?;
                return Ok(ExitCode::SUCCESS);
            }
            for e in entries {
                println!(
                    "{:>6}  {}  {:<16} {:<16} {:<8} {} record(s){}{}",
                    e.seq,
                    e.time.format("%Y-%m-%d %H:%M:%S"),
                    e.actor,
                    e.action,
                    e.outcome,
                    e.records.len(),
                    if e.unredacted { "  UNREDACTED" } else { "" },
                    e.purpose
                        .map(|p| format!("  purpose: {p}"))
                        .unwrap_or_default()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
