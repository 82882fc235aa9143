//! `imagelens delete`: remove records from every store, with a receipt.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;

use super::{access, print_json};
use crate::app::AppSettings;
use crate::governance::deletion::{self, DeletionReceipt, Stores};
use crate::governance::{self, Action};

/// Arguments of `delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Record ids (repeatable).
    #[arg(long = "id", value_name = "ID")]
    pub ids: Vec<String>,
    /// Every record of this dataset.
    #[arg(long)]
    pub dataset: Option<String>,
    /// Why (the erasure request's reference); goes into the receipt and the audit trail.
    #[arg(long)]
    pub reason: String,
    /// Also write the receipt to this file (keep it outside the data directory).
    #[arg(long, value_name = "FILE")]
    pub receipt: Option<PathBuf>,
    /// Print the receipt as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Deletes `ids` from `stores` with the caller's identity and saves the receipt to
/// `receipt_file` if given.
pub(crate) fn delete_with_receipt(
    stores: Stores<'_>,
    caller: &access::CliCaller,
    ids: &[String],
    reason: &str,
    receipt_file: Option<&PathBuf>,
) -> anyhow::Result<DeletionReceipt> {
    let entry = caller.entry(Action::Delete);
    let receipt = deletion::delete(stores, ids, &entry.actor, reason, entry.clone())?;
    let text = serde_json::to_string_pretty(&receipt)?;
    if let Some(path) = receipt_file {
        std::fs::write(path, &text).with_context(|| {
            format!(
                "records deleted, but the receipt could not be written to {}",
                path.display()
            )
        })?;
    }
    Ok(receipt)
}

/// Prints a receipt for people.
pub(crate) fn print_receipt(receipt: &DeletionReceipt) {
    println!(
        "deleted {} record(s) from every store (audit entry {}, receipt digest {})",
        receipt.records.len(),
        receipt.audit_seq,
        receipt.digest
    );
    for r in &receipt.records {
        println!("  {}  {}  sha256 {}", r.id, r.path, r.sha256);
    }
    if !receipt.not_found.is_empty() {
        println!("not in the library: {}", receipt.not_found.join(", "));
    }
}

/// Runs `delete`.
///
/// # Errors
/// Credentials, refusals, legal holds, nothing to delete, store failures.
pub fn run(settings: &AppSettings, args: DeleteArgs) -> anyhow::Result<ExitCode> {
    let (app, caller) = access::open(settings)?;
    caller.require(app.audit(), Action::Delete)?;
    if args.reason.trim().is_empty() {
        bail!("--reason must say why (e.g. the erasure request's reference)");
    }
    let ids = governance::records_to_delete(app.library()?, args.ids, args.dataset.as_deref())?;
    let stores = app.deletion_stores()?;
    let reason = args.reason.trim();
    let receipt = delete_with_receipt(stores, &caller, &ids, reason, args.receipt.as_ref())?;
    if args.json {
        print_json(&receipt)?;
    } else {
        print_receipt(&receipt);
    }
    Ok(ExitCode::SUCCESS)
}
