//! Who runs a command, whether they may, and its audit entry; `imagelens account` and
//! `imagelens token`.
//!
//! A library without accounts is in local mode: whoever can read the data directory runs every
//! command, recorded in the audit trail as `cli:<os user>`, and the first account must be an
//! admin (the bootstrap, which also prints the admin's first token). Once an account exists,
//! every command that reads or administers records needs credentials: a token
//! (`--token`/`IMAGELENS_TOKEN`) or `IMAGELENS_USER` + `IMAGELENS_PASSWORD`, and the account's
//! role is checked as the server checks it. Filesystem access still reads everything: the data
//! directory should be readable by the service account alone (the accounts file is 0600).

use std::io::BufRead;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use super::{cell, print_json};
use crate::app::{App, AppSettings};
use crate::governance::accounts::{AccountUpdate, Accounts, Role};
use crate::governance::audit::{AuditLog, NewEntry};
use crate::governance::{Action, Actor, AdminError};

/// The caller of a command: an [`Actor`] built from the credentials in the environment, or
/// the local user of a library without accounts.
#[derive(Debug)]
pub struct CliCaller {
    actor: Actor,
}

impl CliCaller {
    /// Authenticates from the settings' credentials, or local mode without accounts.
    ///
    /// # Errors
    /// Bad or missing credentials when the library has accounts.
    pub fn new(settings: &AppSettings, accounts: &Accounts) -> anyhow::Result<Self> {
        let purpose = settings.purpose.clone();
        let principal = if let Some(token) = &settings.token {
            Some(accounts.authenticate_token(token)?)
        } else if let (Some(user), Ok(password)) =
            (&settings.user, std::env::var("IMAGELENS_PASSWORD"))
        {
            Some(accounts.verify_password(user, &password)?)
        } else {
            None
        };
        let actor = match principal {
            Some(p) => Actor::account(p, None, purpose),
            None if accounts.is_empty() => Actor::local(&local_user(), purpose),
            None => bail!(
                "this library has accounts: give a token with --token or IMAGELENS_TOKEN \
                 (or IMAGELENS_USER and IMAGELENS_PASSWORD)"
            ),
        };
        Ok(Self { actor })
    }

    /// Who the caller is.
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// An audit entry of this caller.
    pub fn entry(&self, action: Action) -> NewEntry {
        self.actor.entry(action)
    }

    /// Refuses (and audits the refusal) unless the account may; local mode may.
    ///
    /// # Errors
    /// The refusal, or an audit trail that cannot be written.
    pub fn require(&self, audit: &AuditLog, action: Action) -> anyhow::Result<()> {
        Ok(self.actor.require(audit, action)?)
    }

    /// Records a change this caller made to the library (`ok`) or tried to make and could not
    /// (`error`; the message stays out of the trail, as it may name files); fails the command
    /// if it cannot.
    ///
    /// # Errors
    /// The audit trail cannot be written.
    pub fn record_change(
        &self,
        audit: &AuditLog,
        action: Action,
        query: serde_json::Value,
        detail: Option<serde_json::Value>,
        ok: bool,
    ) -> anyhow::Result<()> {
        let mut entry = self.entry(action);
        entry.query = Some(query);
        entry.detail = detail;
        if !ok {
            entry.outcome = "error".into();
        }
        audit
            .append(entry)
            .context("cannot write the audit trail")?;
        Ok(())
    }

    /// Records a read of `records` with `query`; fails the command if it cannot.
    ///
    /// # Errors
    /// The audit trail cannot be written.
    pub fn audit(
        &self,
        audit: &AuditLog,
        action: Action,
        query: serde_json::Value,
        records: Vec<String>,
    ) -> anyhow::Result<()> {
        self.actor
            .record(audit, action, Some(query), records)
            .context("cannot write the audit trail")
    }
}

/// The operating system user running the command (the local user of a library without
/// accounts, recorded as `cli:<user>`).
pub(super) fn local_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

/// Opens the library's files once ([`App::open`]) and authenticates the caller. The data
/// directory must be locked by this process ([`crate::app::lock_data_dir`], which
/// [`super::run`] takes before any command runs), so that nothing read here can go stale.
///
/// # Errors
/// Unreadable files, bad credentials, a data directory this process has not locked.
pub fn open(settings: &AppSettings) -> anyhow::Result<(App, CliCaller)> {
    let app = App::open(settings)?;
    let caller = CliCaller::new(settings, app.accounts())?;
    Ok((app, caller))
}

/// `account` subcommands.
#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Create an account (the first one, an admin, needs no credentials and gets a token).
    Create {
        /// Name: letters, digits, `.`, `_`, `@`, `-`.
        name: String,
        /// searcher, curator, auditor or admin.
        #[arg(long)]
        role: Role,
        /// Read the password from the first line of standard input (else IMAGELENS_NEW_PASSWORD).
        #[arg(long)]
        password_stdin: bool,
        /// Lifetime of the bootstrap admin's first token, in days.
        #[arg(long, default_value_t = 30)]
        token_ttl_days: u32,
    },
    /// List accounts.
    List {
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Change an account's role, password or state.
    Set {
        /// Account name.
        name: String,
        /// New role.
        #[arg(long)]
        role: Option<Role>,
        /// Disable the account (its tokens stop working).
        #[arg(long, conflicts_with = "enable")]
        disable: bool,
        /// Enable it again.
        #[arg(long)]
        enable: bool,
        /// New password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Delete an account and its tokens.
    Delete {
        /// Account name.
        name: String,
    },
}

/// `token` subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue a token (shown once).
    Issue {
        /// What it is for.
        #[arg(long)]
        name: String,
        /// For this account (default: the caller's).
        #[arg(long)]
        account: Option<String>,
        /// Lifetime in days.
        #[arg(long, default_value_t = 30)]
        ttl_days: u32,
    },
    /// List tokens (never their secrets).
    List {
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token.
    Revoke {
        /// Token id.
        id: String,
    },
}

/// Arguments of `account`.
#[derive(Debug, Args)]
pub struct AccountArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: AccountCommand,
}

/// Arguments of `token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: TokenCommand,
}

fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_owned());
    }
    std::env::var("IMAGELENS_NEW_PASSWORD")
        .context("give the password with --password-stdin or IMAGELENS_NEW_PASSWORD")
}

/// Runs `account`.
///
/// # Errors
/// Bad credentials, refusals, invalid names or passwords.
pub fn run_account(settings: &AppSettings, args: AccountArgs) -> anyhow::Result<ExitCode> {
    let (app, caller) = open(settings)?;
    let desk = app.desk(caller.actor());
    match args.command {
        AccountCommand::Create {
            name,
            role,
            password_stdin,
            token_ttl_days,
        } => {
            let bootstrap = app.accounts().is_empty();
            if bootstrap && role != Role::Admin {
                bail!("the first account must be an admin: use --role admin");
            }
            if !bootstrap {
                desk.require(Action::AccountCreate)?;
            }
            let password = read_password(password_stdin)?;
            let info = desk.create_account(&name, &password, role)?;
            println!("created account {} ({})", info.name, info.role.as_str());
            if bootstrap {
                let issued = desk.issue_token(Some(&name), "bootstrap", token_ttl_days)?;
                println!(
                    "first token (shown once; expires {}):\n{}\nuse it as IMAGELENS_TOKEN \
                     or `Authorization: Bearer ...`",
                    issued.token.expires.date_naive(),
                    issued.secret
                );
            }
        }
        AccountCommand::List { json } => {
            let list = desk.accounts()?;
            if json {
                print_json(&serde_json::json!({ "accounts": list }))?;
            } else {
                for a in list {
                    println!(
                        "{:<24} {:<9} {}{}",
                        cell(&a.name, 24),
                        a.role.as_str(),
                        a.created.date_naive(),
                        if a.disabled { "  disabled" } else { "" }
                    );
                }
            }
        }
        AccountCommand::Set {
            name,
            role,
            disable,
            enable,
            password_stdin,
        } => {
            desk.require(Action::AccountUpdate)?;
            // All or nothing: the whole change is checked before any of it is applied.
            let update = AccountUpdate {
                role,
                password: if password_stdin {
                    Some(read_password(true)?)
                } else {
                    None
                },
                disabled: (disable || enable).then_some(disable),
            };
            let a = desk.update_account(&name, &update)?;
            println!(
                "{} is {}{}",
                a.name,
                a.role.as_str(),
                if a.disabled { " (disabled)" } else { "" }
            );
        }
        AccountCommand::Delete { name } => {
            desk.delete_account(&name)?;
            println!("deleted account {name} and its tokens");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `token`.
///
/// # Errors
/// Bad credentials, refusals, unknown accounts or tokens.
pub fn run_token(settings: &AppSettings, args: TokenArgs) -> anyhow::Result<ExitCode> {
    let (app, caller) = open(settings)?;
    let desk = app.desk(caller.actor());
    match args.command {
        TokenCommand::Issue {
            name,
            account,
            ttl_days,
        } => {
            let issued = match desk.issue_token(account.as_deref(), &name, ttl_days) {
                Err(AdminError::NoAccount) => {
                    bail!("name the account with --account (no one is signed in)")
                }
                other => other?,
            };
            if issued.capped_at.is_some() {
                eprintln!(
                    "note: the lifetime was cut to the expiry of the token you signed in with \
                     ({}): a token cannot issue a longer-lived one; sign in with \
                     IMAGELENS_USER and IMAGELENS_PASSWORD for up to 366 days",
                    issued.token.expires.to_rfc3339()
                );
            }
            println!(
                "token {} for {} (expires {}), shown once:\n{}",
                issued.token.id,
                issued.token.account,
                issued.token.expires.date_naive(),
                issued.secret
            );
        }
        TokenCommand::List { json } => {
            let tokens = desk.tokens();
            if json {
                print_json(&serde_json::json!({ "tokens": tokens }))?;
            } else {
                for t in tokens {
                    println!(
                        "{}  {:<16} {:<20} expires {}{}",
                        t.id,
                        cell(&t.account, 16),
                        cell(&t.name, 20),
                        t.expires.date_naive(),
                        if t.revoked.is_some() { "  revoked" } else { "" }
                    );
                }
            }
        }
        TokenCommand::Revoke { id } => {
            desk.revoke_token(&id)?;
            println!("revoked token {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
