//! [`Actor`]: who acts, from where and why; the one permission check and audit entry of both
//! front ends.

use super::Action;
use crate::governance::accounts::{Permission, Principal};
use crate::governance::audit::{AuditError, AuditLog, NewEntry};

/// Who acts: a signed-in account (CLI credentials or an HTTP token or password), or the local
/// user of a library without accounts (the CLI's local mode, which may do everything), with
/// the peer address (HTTP) and the stated purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    principal: Option<Principal>,
    name: String,
    address: Option<String>,
    purpose: Option<String>,
}

/// Why an action was not done: the role lacks its permission (the refusal is in the trail),
/// or the refusal could not be written to the trail.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The account's role does not grant the action's permission.
    #[error("account {account:?} (role {role}) may not {action}: it needs permission {permission}")]
    Forbidden {
        /// Account name.
        account: String,
        /// Its role.
        role: &'static str,
        /// The action refused.
        action: Action,
        /// The permission it needs.
        permission: Permission,
    },
    /// The refusal could not be recorded (the action is refused either way).
    #[error("cannot write the audit trail")]
    Unrecorded(#[source] AuditError),
}

impl Actor {
    /// A signed-in account.
    pub fn account(principal: Principal, address: Option<String>, purpose: Option<String>) -> Self {
        Self {
            name: principal.account.clone(),
            principal: Some(principal),
            address,
            purpose,
        }
    }

    /// The local user `user` of a library without accounts, recorded as `cli:<user>`; may do
    /// everything.
    pub fn local(user: &str, purpose: Option<String>) -> Self {
        Self {
            principal: None,
            name: format!("cli:{user}"),
            address: None,
            purpose,
        }
    }

    /// The signed-in account; `None` in local mode.
    pub fn principal(&self) -> Option<&Principal> {
        self.principal.as_ref()
    }

    /// The name recorded as the trail's `actor`: the account, or `cli:<user>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the actor's role grants `permission` (local mode grants everything), without
    /// recording anything.
    pub fn can(&self, permission: Permission) -> bool {
        self.principal.as_ref().is_none_or(|p| p.can(permission))
    }

    /// Whether the actor may do `action` (see [`Action::permission`]), without recording
    /// anything.
    pub fn may(&self, action: Action) -> bool {
        action.permission().is_none_or(|p| self.can(p))
    }

    /// An audit entry of this actor for `action`, outcome `ok`.
    pub fn entry(&self, action: Action) -> NewEntry {
        NewEntry {
            actor: self.name.clone(),
            role: self.principal.as_ref().map(|p| p.role.as_str().to_owned()),
            address: self.address.clone(),
            action: action.name().to_owned(),
            purpose: self.purpose.clone(),
            outcome: "ok".into(),
            ..NewEntry::default()
        }
    }

    /// Refuses `action` unless the actor's role grants its [`Action::permission`]; the refusal
    /// is written to `audit` (outcome `denied`, detail `{"missing_permission": ...}`) first.
    ///
    /// # Errors
    /// [`Refusal::Forbidden`]; [`Refusal::Unrecorded`] when the refusal cannot be written.
    pub fn require(&self, audit: &AuditLog, action: Action) -> Result<(), Refusal> {
        match action.permission() {
            Some(permission) => self.require_permission(audit, action, permission),
            None => Ok(()),
        }
    }

    /// Refuses an unredacted image or thumbnail of `action` unless the actor's role grants
    /// [`Permission::ViewUnredacted`], recorded as [`Actor::require`] records a refusal.
    ///
    /// # Errors
    /// As [`Actor::require`].
    pub fn require_unredacted(&self, audit: &AuditLog, action: Action) -> Result<(), Refusal> {
        self.require_permission(audit, action, Permission::ViewUnredacted)
    }

    fn require_permission(
        &self,
        audit: &AuditLog,
        action: Action,
        permission: Permission,
    ) -> Result<(), Refusal> {
        let Some((entry, refusal)) = self.refusal(action, permission) else {
            return Ok(());
        };
        audit.append(entry).map_err(Refusal::Unrecorded)?;
        Err(refusal)
    }

    /// The audit entry and the refusal of `action` when the actor lacks `permission`.
    fn refusal(&self, action: Action, permission: Permission) -> Option<(NewEntry, Refusal)> {
        let p = self.principal.as_ref()?;
        if p.can(permission) {
            return None;
        }
        let mut entry = self.entry(action);
        entry.outcome = "denied".into();
        entry.detail = Some(serde_json::json!({ "missing_permission": permission.as_str() }));
        let refusal = Refusal::Forbidden {
            account: p.account.clone(),
            role: p.role.as_str(),
            action,
            permission,
        };
        Some((entry, refusal))
    }

    /// Records that the actor did `action`, returning `records` (ids) for `query`.
    ///
    /// # Errors
    /// The trail cannot be written: the caller must not disclose what it was about to.
    pub fn record(
        &self,
        audit: &AuditLog,
        action: Action,
        query: Option<serde_json::Value>,
        records: Vec<String>,
    ) -> Result<(), AuditError> {
        let mut entry = self.entry(action);
        entry.query = query;
        entry.records = records;
        audit.append(entry).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::governance::accounts::Role;

    fn account(role: Role) -> Actor {
        Actor::account(
            Principal {
                account: "bob".into(),
                role,
                token: None,
            },
            Some("127.0.0.1:9".into()),
            Some("case 7".into()),
        )
    }

    #[test]
    fn a_refusal_names_the_account_role_action_and_permission() {
        let (entry, refusal) = account(Role::Searcher)
            .refusal(Action::ViewThumbnail, Permission::ViewUnredacted)
            .unwrap();
        assert_eq!(
            refusal.to_string(),
            "account \"bob\" (role searcher) may not view_thumbnail: it needs permission \
             view_unredacted"
        );
        assert_eq!(entry.action, "view_thumbnail");
        assert_eq!(entry.outcome, "denied");
        assert_eq!(entry.role.as_deref(), Some("searcher"));
        assert_eq!(entry.address.as_deref(), Some("127.0.0.1:9"));
        assert_eq!(entry.purpose.as_deref(), Some("case 7"));
        assert_eq!(
            entry.detail,
            Some(serde_json::json!({ "missing_permission": "view_unredacted" }))
        );
    }

    #[test]
    fn local_mode_may_do_everything_and_an_account_what_its_role_grants() {
        let local = Actor::local("root", None);
        assert_eq!(local.name(), "cli:root");
        assert_eq!(local.entry(Action::Search).role, None);
        for action in Action::ALL {
            assert!(local.may(action));
            for role in Role::ALL {
                assert_eq!(
                    account(role).may(action),
                    action.permission().is_none_or(|p| role.allows(p))
                );
            }
        }
    }
}
