//! The administration use cases both front ends call ([`Desk`]): account and token changes,
//! audit queries, retention policy changes and choosing the records of a deletion.
//!
//! Each use case checks the actor's permission ([`Actor::require`], refusal audited), acts,
//! and writes its audit entry whether the change was made or refused, in one place: `imagelens
//! account|token|audit|retention|delete` and `/v1/accounts|tokens|audit|retention|deletions`
//! differ only in how
//! they read their input and show the answer. Synchronous: the HTTP API runs them on its
//! blocking pool.

use chrono::{DateTime, Duration, Utc};
use indexer::{Fault, Library};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Action, Actor, Refusal};
use crate::governance::accounts::{
    AccountError, AccountInfo, AccountUpdate, Accounts, Permission, Role, TokenInfo,
};
use crate::governance::audit::{AuditEntry, AuditError, AuditLog, AuditQuery};
use crate::governance::deletion::{self, DeletionError};
use crate::governance::retention::{Plan, Retention, RetentionError, RetentionPolicy};

/// Longest account name kept as typed in the trail of a refused change.
const MAX_LOGGED_NAME: usize = 128;

/// Longest error message kept in the trail of a refused change.
const MAX_LOGGED_ERROR: usize = 500;

/// Lifetime of a token when none is asked for, in days.
pub const DEFAULT_TOKEN_DAYS: u32 = 30;

/// Why an administration use case did not happen.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The actor's role does not allow it (the refusal is in the trail).
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The account store refused the change or failed.
    #[error(transparent)]
    Account(#[from] AccountError),
    /// No token has this id (or, without `manage_accounts`, none of the caller's has).
    #[error("no token with id {0:?}")]
    NoToken(String),
    /// No one is signed in and no account was named for a token.
    #[error("name the account the token is for (no one is signed in)")]
    NoAccount,
    /// The first account of a library must be an admin.
    #[error("the first account must be an admin")]
    FirstNotAdmin,
    /// A deletion named neither records nor a dataset.
    #[error("name the records to delete: give ids, a dataset, or both")]
    NothingNamed,
    /// A deletion named a dataset with no records (and no ids).
    #[error("no dataset named {0:?}: it has no records in the library")]
    NoDataset(String),
    /// The deletion's records could not be listed.
    #[error(transparent)]
    Deletion(#[from] DeletionError),
    /// The saved retention policy cannot be run, or the index failed while planning.
    #[error(transparent)]
    Retention(#[from] RetentionError),
    /// The trail cannot be read or written: nothing is disclosed.
    #[error("audit trail: {0}")]
    Audit(#[from] AuditError),
}

impl AdminError {
    /// Whose fault it is: refusals and bad requests are the caller's, store failures ours.
    pub fn fault(&self) -> Fault {
        match self {
            AdminError::Refused(Refusal::Forbidden { .. }) => Fault::User,
            AdminError::Refused(Refusal::Unrecorded(_)) | AdminError::Audit(_) => Fault::Internal,
            AdminError::Account(e) => e.fault(),
            AdminError::Retention(RetentionError::Store(e)) => e.fault(),
            AdminError::Retention(_) => Fault::User,
            AdminError::Deletion(e) => match e {
                DeletionError::Held { .. } | DeletionError::NothingFound(_) => Fault::User,
                _ => Fault::Internal,
            },
            _ => Fault::User,
        }
    }

    /// A short stable name of the error, written to the trail beside its message (the HTTP
    /// API answers the same name as its error `code`).
    pub fn code(&self) -> &'static str {
        match self {
            AdminError::Refused(Refusal::Forbidden { .. }) => "forbidden",
            AdminError::Account(AccountError::NotFound(_)) | AdminError::NoToken(_) => "not_found",
            AdminError::NoDataset(_) => "not_found",
            AdminError::Account(AccountError::Exists(_)) => "exists",
            AdminError::Account(AccountError::LastAdmin) => "last_admin",
            AdminError::Account(e) if e.is_unauthenticated() => "unauthenticated",
            _ => match self.fault() {
                Fault::User => "invalid",
                Fault::Internal => "internal",
            },
        }
    }
}

/// A newly issued token: the secret is shown this once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IssuedToken {
    /// Send as `Authorization: Bearer <secret>`. Not stored: it cannot be shown again.
    pub secret: String,
    /// The token.
    pub token: TokenInfo,
    /// Set when the lifetime asked for was cut short: a token cannot issue a token that
    /// outlives it, so the new one expires with the caller's token, at this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capped_at: Option<DateTime<Utc>>,
}

/// The account store and the trail, seen by one actor: every administration use case.
#[derive(Debug, Clone, Copy)]
pub struct Desk<'a> {
    /// Accounts and tokens.
    pub accounts: &'a Accounts,
    /// The audit trail.
    pub audit: &'a AuditLog,
    /// Who acts.
    pub actor: &'a Actor,
}

impl<'a> Desk<'a> {
    /// The desk of `actor`.
    pub fn new(accounts: &'a Accounts, audit: &'a AuditLog, actor: &'a Actor) -> Self {
        Self {
            accounts,
            audit,
            actor,
        }
    }

    /// [`Actor::require`] on this desk's trail.
    ///
    /// # Errors
    /// [`AdminError::Refused`].
    pub fn require(&self, action: Action) -> Result<(), AdminError> {
        Ok(self.actor.require(self.audit, action)?)
    }

    /// Creates an account. The first account of a library (created by the local user, since
    /// no one can sign in yet) must be an admin and needs no permission; every later one
    /// needs `manage_accounts`.
    ///
    /// # Errors
    /// [`AdminError::FirstNotAdmin`], a refusal, or what [`Accounts::create`] refuses.
    pub fn create_account(
        &self,
        name: &str,
        password: &str,
        role: Role,
    ) -> Result<AccountInfo, AdminError> {
        let bootstrap = self.accounts.is_empty();
        if bootstrap && role != Role::Admin {
            return Err(AdminError::FirstNotAdmin);
        }
        if !bootstrap {
            self.require(Action::AccountCreate)?;
        }
        let result = self.accounts.create(name, password, role);
        let detail = serde_json::json!({ "role": role, "bootstrap": bootstrap });
        self.recorded(Action::AccountCreate, name, detail, result)
    }

    /// Changes an account's role, password or state, all or nothing.
    ///
    /// # Errors
    /// A refusal, or what [`Accounts::change`] refuses (then nothing changed).
    pub fn update_account(
        &self,
        name: &str,
        update: &AccountUpdate,
    ) -> Result<AccountInfo, AdminError> {
        self.require(Action::AccountUpdate)?;
        let detail = serde_json::json!({
            "role": update.role, "disabled": update.disabled,
            "password_changed": update.password.is_some(),
        });
        let result = self.accounts.change(name, update);
        self.recorded(Action::AccountUpdate, name, detail, result)
    }

    /// Deletes an account and its tokens.
    ///
    /// # Errors
    /// A refusal, or what [`Accounts::delete`] refuses.
    pub fn delete_account(&self, name: &str) -> Result<(), AdminError> {
        self.require(Action::AccountDelete)?;
        let result = self.accounts.delete(name);
        self.recorded(Action::AccountDelete, name, serde_json::json!({}), result)
    }

    /// Every account, by name.
    ///
    /// # Errors
    /// A refusal.
    pub fn accounts(&self) -> Result<Vec<AccountInfo>, AdminError> {
        self.require(Action::AccountList)?;
        Ok(self.accounts.list())
    }

    /// Issues a token for `account` (default: the signed-in account) valid `ttl_days` days.
    /// A token for another account needs `manage_accounts`; a caller signed in with a token
    /// cannot issue one that outlives it (the expiry is capped, see
    /// [`IssuedToken::capped_at`]); a password sign-in or the local user may issue up to 366
    /// days.
    ///
    /// # Errors
    /// [`AdminError::NoAccount`], a refusal, or what the account store refuses.
    pub fn issue_token(
        &self,
        account: Option<&str>,
        name: &str,
        ttl_days: u32,
    ) -> Result<IssuedToken, AdminError> {
        let me = self.actor.principal().map(|p| p.account.as_str());
        let account = account.or(me).ok_or(AdminError::NoAccount)?;
        if Some(account) != me {
            self.require(Action::TokenIssue)?;
        }
        let ttl = Duration::days(i64::from(ttl_days));
        let result = match self.actor.principal() {
            Some(by) => self.accounts.issue_token_by(by, account, name, ttl),
            None => self
                .accounts
                .issue_token(account, name, ttl)
                .map(|(secret, token)| (secret, token, None)),
        };
        let detail = match &result {
            Ok((_, token, capped_at)) => serde_json::json!({
                "token": token.id, "expires": token.expires, "capped_at": capped_at,
            }),
            Err(_) => serde_json::json!({ "ttl_days": ttl_days }),
        };
        let (secret, token, capped_at) =
            self.recorded(Action::TokenIssue, account, detail, result)?;
        Ok(IssuedToken {
            secret,
            token,
            capped_at,
        })
    }

    /// The actor's tokens, or every account's with `manage_accounts`; never the secrets.
    pub fn tokens(&self) -> Vec<TokenInfo> {
        if self.actor.can(Permission::ManageAccounts) {
            self.accounts.tokens(None)
        } else {
            let me = self.actor.principal().map(|p| p.account.as_str());
            self.accounts.tokens(Some(me.unwrap_or_default()))
        }
    }

    /// Revokes a token: one's own, or any with `manage_accounts`. The permission is checked
    /// first, so without it an unknown id and another account's token get the same refusal
    /// and the answer does not tell which ids exist.
    ///
    /// # Errors
    /// A refusal, [`AdminError::NoToken`], or a store failure.
    pub fn revoke_token(&self, id: &str) -> Result<TokenInfo, AdminError> {
        let owner = self
            .accounts
            .tokens(None)
            .into_iter()
            .find(|t| t.id == id)
            .map(|t| t.account);
        let me = self.actor.principal().map(|p| p.account.as_str());
        if owner.is_none() || owner.as_deref() != me {
            self.require(Action::TokenRevoke)?;
        }
        let owner = owner.ok_or_else(|| AdminError::NoToken(id.chars().take(64).collect()))?;
        let result = self.accounts.revoke_token(id);
        let detail = serde_json::json!({ "token": id });
        self.recorded(Action::TokenRevoke, &owner, detail, result)
    }

    /// Audit entries matching `q`, oldest first. The query itself is recorded, with the
    /// record asked about kept as its ref like every record in the trail.
    ///
    /// # Errors
    /// A refusal, or the trail cannot be read or written.
    pub fn query_audit(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, AdminError> {
        self.require(Action::AuditQuery)?;
        let entries = self.audit.query(q)?;
        let logged = AuditQuery {
            record: q.record.as_deref().map(|id| self.audit.record_ref(id)),
            ..q.clone()
        };
        let logged = serde_json::to_value(&logged).map_err(AuditError::from)?;
        self.actor
            .record(self.audit, Action::AuditQuery, Some(logged), vec![])?;
        Ok(entries)
    }

    /// Plans a retention run at `now`: the records past their schedule, holds excepted
    /// (holds are keyed by the record's ref). The run is recorded (`dry_run`, how many are due
    /// and held) before anything is deleted; the caller deletes [`Plan::due`] unless
    /// `dry_run`.
    ///
    /// # Errors
    /// A refusal, [`AdminError::Retention`] for a saved policy out of range, or the trail
    /// cannot be written.
    pub fn plan_retention_run(
        &self,
        retention: &Retention,
        library: &Library,
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<Plan, AdminError> {
        self.require(Action::RetentionRun)?;
        let plan = retention.due(library, now, |id| self.audit.record_ref(id))?;
        let mut entry = self.actor.entry(Action::RetentionRun);
        entry.detail = Some(serde_json::json!({
            "dry_run": dry_run, "due": plan.due.len(), "held": plan.held,
        }));
        self.audit.append(entry)?;
        Ok(plan)
    }

    /// Changes the retention policy (schedules, legal holds): `change` edits a copy, whose
    /// record holds are then keyed by the record's ref, checked and saved
    /// ([`Retention::update`]). The entry of `action` (with `records` and `detail`) is written
    /// whether the change was saved or refused; a refused one keeps the error's code and
    /// message instead of `detail` (a policy that cannot be saved may be large or malformed).
    ///
    /// # Errors
    /// A refusal, [`AdminError::Retention`] for a policy that cannot be saved, or the trail
    /// cannot be written.
    pub fn change_retention(
        &self,
        retention: &Retention,
        action: Action,
        records: Vec<String>,
        detail: serde_json::Value,
        change: impl FnOnce(&mut RetentionPolicy),
    ) -> Result<(), AdminError> {
        self.require(action)?;
        let result = retention
            .update(|id| self.audit.record_ref(id), change)
            .map_err(AdminError::from);
        let mut entry = self.actor.entry(action);
        entry.records = records;
        entry.detail = Some(match &result {
            Ok(()) => detail,
            Err(e) => {
                entry.outcome = outcome(e).into();
                serde_json::json!({ "code": e.code(), "error": logged_error(e) })
            }
        });
        self.audit.append(entry)?;
        result
    }

    /// Writes the audit entry of an account or token change, made or refused (outcome
    /// `refused` or `error`, with the error's code and message), then returns `result`.
    fn recorded<T>(
        &self,
        action: Action,
        account: &str,
        mut detail: serde_json::Value,
        result: Result<T, AccountError>,
    ) -> Result<T, AdminError> {
        let result = result.map_err(AdminError::from);
        let mut entry = self.actor.entry(action);
        let name: String = account.chars().take(MAX_LOGGED_NAME).collect();
        entry.query = Some(serde_json::json!({ "account": name }));
        if let Err(e) = &result {
            entry.outcome = outcome(e).into();
            if let Some(d) = detail.as_object_mut() {
                d.insert("code".into(), e.code().into());
                d.insert("error".into(), logged_error(e).into());
            }
        }
        entry.detail = Some(detail);
        self.audit.append(entry)?;
        result
    }
}

/// The outcome a refused or failed change is written with: `refused` (the caller's fault) or
/// `error` (ours).
fn outcome(e: &AdminError) -> &'static str {
    match e.fault() {
        Fault::User => "refused",
        Fault::Internal => "error",
    }
}

/// An error's message as the trail keeps it (at most [`MAX_LOGGED_ERROR`] characters).
fn logged_error(e: &AdminError) -> String {
    e.to_string().chars().take(MAX_LOGGED_ERROR).collect()
}

/// The records a deletion names: `ids` plus every record of `dataset`.
///
/// # Errors
/// [`AdminError::NoDataset`] for a dataset without records when no ids are given either,
/// [`AdminError::NothingNamed`] when nothing is named, or the keyword index fails.
pub fn records_to_delete(
    library: &Library,
    mut ids: Vec<String>,
    dataset: Option<&str>,
) -> Result<Vec<String>, AdminError> {
    if let Some(dataset) = dataset {
        let more = deletion::dataset_ids(library, dataset)?;
        if more.is_empty() && ids.is_empty() {
            return Err(AdminError::NoDataset(dataset.chars().take(64).collect()));
        }
        ids.extend(more);
    }
    if ids.is_empty() {
        return Err(AdminError::NothingNamed);
    }
    Ok(ids)
}

#[cfg(test)]
mod tests;
