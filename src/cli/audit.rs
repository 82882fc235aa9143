//! `imagelens audit`: check the trail's hash chain, ask who saw what, and archive a damaged
//! trail.
//!
//! `audit verify` is the one command that may run beside a server holding the library: it
//! reads the trail under the trail's shared lock and writes nothing ([`verify_beside`]).

use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, Subcommand};

use super::access::{self, CliCaller};
use super::print_json;
use crate::app::{AppSettings, Busy};
use crate::governance::Action;
use crate::governance::accounts::Accounts;
use crate::governance::audit::{AuditQuery, VerifyReport};

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
    /// Move a trail that does not verify into audit/archive/<time>/ (nothing is deleted) and
    /// start a new one whose first entry records the archived files' sha256, the problem and
    /// the reason. Stop the server first; admins only.
    Archive {
        /// Why (e.g. the incident reference); recorded in the new trail.
        #[arg(long)]
        reason: String,
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
        /// The newest `--limit` entries, newest first (default: the oldest, oldest first).
        #[arg(long)]
        newest_first: bool,
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
    let (app, caller) = access::open(settings)?;
    let audit = app.audit();
    match args.command {
        AuditCommand::Verify { json } => {
            caller.require(audit, Action::AuditVerify)?;
            print_report(&audit.verify()?, json)
        }
        AuditCommand::Archive { reason, json } => {
            if !caller.actor().may(Action::AuditArchive) {
                // Recorded if the trail still takes appends; refused either way.
                let _ = caller.require(audit, Action::AuditArchive);
                bail!("only an admin may archive the audit trail");
            }
            let note = audit.archive(&reason, caller.entry(Action::AuditArchive))?;
            if json {
                print_json(&note)?;
            } else {
                println!(
                    "archived the damaged trail ({} sound entries; {}) into {}; a new trail \
                     begins with entry 1, which records it",
                    note.sound_entries,
                    note.problem,
                    settings.data_dir.join("audit").join(&note.dir).display()
                );
                for f in &note.files {
                    println!("  {}  {} bytes  sha256 {}", f.name, f.bytes, f.sha256);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Query {
            record,
            actor,
            action,
            after,
            before,
            limit,
            newest_first,
            json,
        } => {
            caller.require(audit, Action::AuditQuery)?;
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
                newest_first: Some(newest_first),
            };
            let entries = app.desk(caller.actor()).query_audit(&q)?;
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

/// Prints a verification report; exit 1 when the trail does not verify.
fn print_report(report: &VerifyReport, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        print_json(report)?;
    } else if report.ok {
        println!(
            "audit trail ok: {} entries, head {}",
            report.entries,
            report.head.as_deref().unwrap_or("-")
        );
        for a in &report.archives {
            println!(
                "archived before entry {}: audit/{} ({} by {}: {}; reason: {})",
                a.seq,
                a.dir,
                a.time.format("%Y-%m-%d %H:%M:%S"),
                a.actor,
                a.problem,
                a.reason
            );
        }
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

/// `audit verify` while another process (a server) holds the library: reads the accounts and
/// the trail, writes nothing. An account that may not verify is refused without a record (a
/// record would be an append): it is pointed at the server's API, which records the refusal.
///
/// # Errors
/// Credentials, refusals, an unreadable trail.
pub fn verify_beside(settings: &AppSettings, busy: &Busy, json: bool) -> anyhow::Result<ExitCode> {
    let accounts = Accounts::open(&settings.data_dir)?;
    let caller = CliCaller::new(settings, &accounts)?;
    if !caller.actor().may(Action::AuditVerify) {
        bail!(busy.refusal("audit verify", Some("GET /v1/audit/verify")));
    }
    print_report(
        &crate::governance::audit::verify_dir(&settings.data_dir)?,
        json,
    )
}
