//! The governance core both front ends share: who acts ([`Actor`]), what they do ([`Action`]),
//! whether they may (one [`Actor::require`], its refusal audited the same way for the CLI and
//! the HTTP API) and the audit entry of what they did ([`Actor::entry`], [`Actor::record`]).
//!
//! [`Action`] is the one table of audited actions: each has the name written to the trail
//! (`search`, `view_thumbnail`, `token_issue`, ...) and the [`Permission`] a role must grant
//! for it, so a route or command names its action and nothing else. A new front end builds an
//! [`Actor`] from its own notion of a signed-in user and calls `require` before acting and
//! `record` before disclosing.
//!
//! [`Desk`] holds the administration use cases (accounts, tokens, audit queries, the records
//! of a deletion) that both front ends call, so they record alike.
//!
//! Accounts and roles live in [`crate::governance::accounts`], the trail in [`crate::governance::audit`].

pub mod accounts;
mod actor;
pub mod audit;
pub mod deletion;
mod desk;
pub mod redact;
pub mod retention;

pub use actor::{Actor, Refusal};
pub use desk::{AdminError, DEFAULT_TOKEN_DAYS, Desk, IssuedToken, records_to_delete};

use crate::governance::accounts::Permission;

/// Every audited action, with its name in the trail and the permission it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Search (`POST /v1/search`, `imagelens search`).
    Search,
    /// Facet counts.
    Facets,
    /// Look-ups by filename or date.
    Lookup,
    /// One record.
    ViewRecord,
    /// A record's original image (unredacted needs [`Permission::ViewUnredacted`] too).
    ViewImage,
    /// A record's thumbnail (unredacted needs [`Permission::ViewUnredacted`] too).
    ViewThumbnail,
    /// The list of collections.
    ListCollections,
    /// Creating a collection.
    CollectionCreate,
    /// One collection with its ids.
    ViewCollection,
    /// Changing a collection.
    CollectionUpdate,
    /// Deleting a collection.
    CollectionDelete,
    /// A data-set export (of a collection or of a search).
    Export,
    /// An export with sensitive regions unblurred.
    ExportUnredacted,
    /// Querying the audit trail.
    AuditQuery,
    /// Verifying the audit trail's hash chain.
    AuditVerify,
    /// Archiving a damaged audit trail and starting a new one.
    AuditArchive,
    /// Listing accounts.
    AccountList,
    /// Creating an account.
    AccountCreate,
    /// Changing an account's role, password or state.
    AccountUpdate,
    /// Deleting an account.
    AccountDelete,
    /// Issuing a token (for another account; one's own needs no permission).
    TokenIssue,
    /// Revoking a token (of another account; one's own needs no permission).
    TokenRevoke,
    /// Reading the retention policy.
    RetentionView,
    /// Changing the retention schedules.
    RetentionSet,
    /// A retention run (deletes what is due).
    RetentionRun,
    /// Placing a legal hold.
    LegalHold,
    /// Releasing a legal hold.
    LegalHoldRelease,
    /// Deleting records.
    Delete,
    /// Ingesting an annotation export (`imagelens ingest`).
    Ingest,
    /// Changing the vector index settings and rebuilding the index (`imagelens optimize`).
    Optimize,
    /// A failed sign-in (recorded without a permission check: no one is signed in).
    SignIn,
}

impl Action {
    /// Every action, in declaration order.
    pub const ALL: [Action; 31] = [
        Action::Search,
        Action::Facets,
        Action::Lookup,
        Action::ViewRecord,
        Action::ViewImage,
        Action::ViewThumbnail,
        Action::ListCollections,
        Action::CollectionCreate,
        Action::ViewCollection,
        Action::CollectionUpdate,
        Action::CollectionDelete,
        Action::Export,
        Action::ExportUnredacted,
        Action::AuditQuery,
        Action::AuditVerify,
        Action::AuditArchive,
        Action::AccountList,
        Action::AccountCreate,
        Action::AccountUpdate,
        Action::AccountDelete,
        Action::TokenIssue,
        Action::TokenRevoke,
        Action::RetentionView,
        Action::RetentionSet,
        Action::RetentionRun,
        Action::LegalHold,
        Action::LegalHoldRelease,
        Action::Delete,
        Action::Ingest,
        Action::Optimize,
        Action::SignIn,
    ];

    /// The name written to the audit trail's `action` field.
    pub fn name(self) -> &'static str {
        match self {
            Action::Search => "search",
            Action::Facets => "facets",
            Action::Lookup => "lookup",
            Action::ViewRecord => "view_record",
            Action::ViewImage => "view_image",
            Action::ViewThumbnail => "view_thumbnail",
            Action::ListCollections => "list_collections",
            Action::CollectionCreate => "collection_create",
            Action::ViewCollection => "view_collection",
            Action::CollectionUpdate => "collection_update",
            Action::CollectionDelete => "collection_delete",
            Action::Export => "export",
            Action::ExportUnredacted => "export_unredacted",
            Action::AuditQuery => "audit_query",
            Action::AuditVerify => "audit_verify",
            Action::AuditArchive => "audit_archive",
            Action::AccountList => "account_list",
            Action::AccountCreate => "account_create",
            Action::AccountUpdate => "account_update",
            Action::AccountDelete => "account_delete",
            Action::TokenIssue => "token_issue",
            Action::TokenRevoke => "token_revoke",
            Action::RetentionView => "retention_view",
            Action::RetentionSet => "retention_set",
            Action::RetentionRun => "retention_run",
            Action::LegalHold => "legal_hold",
            Action::LegalHoldRelease => "legal_hold_release",
            Action::Delete => "delete",
            Action::Ingest => "ingest",
            Action::Optimize => "optimize",
            Action::SignIn => "sign_in",
        }
    }

    /// The permission a role must grant for this action; `None` for actions recorded without
    /// a permission check (a failed sign-in).
    pub fn permission(self) -> Option<Permission> {
        use Permission as P;
        Some(match self {
            Action::Search | Action::Facets => P::Search,
            Action::Lookup => P::Lookup,
            Action::ViewRecord | Action::ViewImage | Action::ViewThumbnail => P::ViewRecord,
            Action::ListCollections
            | Action::CollectionCreate
            | Action::ViewCollection
            | Action::CollectionUpdate
            | Action::CollectionDelete => P::Collections,
            Action::Export => P::Export,
            Action::ExportUnredacted => P::ViewUnredacted,
            Action::AuditQuery | Action::AuditVerify => P::ReadAudit,
            Action::AuditArchive
            | Action::AccountList
            | Action::AccountCreate
            | Action::AccountUpdate
            | Action::AccountDelete
            | Action::TokenIssue
            | Action::TokenRevoke => P::ManageAccounts,
            Action::RetentionView
            | Action::RetentionSet
            | Action::RetentionRun
            | Action::LegalHold
            | Action::LegalHoldRelease => P::Retention,
            Action::Delete => P::Delete,
            Action::Ingest | Action::Optimize => P::ManageLibrary,
            Action::SignIn => return None,
        })
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::governance::accounts::Role;

    /// The role table of the README ("Administrators: accounts, roles, audit, retention and
    /// deletion"), written out per action: which roles may do it.
    fn readme_roles(action: Action) -> &'static [Role] {
        use Role::{Admin, Auditor, Curator, Searcher};
        match action {
            // searcher: search, facets, view records, images and thumbnails (redacted);
            // curator: searcher + ...; auditor: ... records and unredacted images.
            Action::Search | Action::Facets => &[Searcher, Curator, Admin],
            Action::ViewRecord | Action::ViewImage | Action::ViewThumbnail => {
                &[Searcher, Curator, Auditor, Admin]
            }
            // curator: collections and data-set export.
            Action::ListCollections
            | Action::CollectionCreate
            | Action::ViewCollection
            | Action::CollectionUpdate
            | Action::CollectionDelete
            | Action::Export => &[Curator, Admin],
            // auditor: look-ups, the audit trail, unredacted images.
            Action::Lookup | Action::AuditQuery | Action::AuditVerify => &[Auditor, Admin],
            Action::ExportUnredacted => &[Auditor, Admin],
            // admin: everything: accounts, tokens, retention, deletion, ingest, index settings.
            Action::AuditArchive
            | Action::AccountList
            | Action::AccountCreate
            | Action::AccountUpdate
            | Action::AccountDelete
            | Action::TokenIssue
            | Action::TokenRevoke
            | Action::RetentionView
            | Action::RetentionSet
            | Action::RetentionRun
            | Action::LegalHold
            | Action::LegalHoldRelease
            | Action::Delete
            | Action::Ingest
            | Action::Optimize => &[Admin],
            // No permission: recorded for anyone, signed in or not.
            Action::SignIn => &[Searcher, Curator, Auditor, Admin],
        }
    }

    #[test]
    fn the_action_table_names_each_action_once_with_the_trail_name_and_permission_of_today() {
        let expected: [(Action, &str, Option<Permission>); 31] = [
            (Action::Search, "search", Some(Permission::Search)),
            (Action::Facets, "facets", Some(Permission::Search)),
            (Action::Lookup, "lookup", Some(Permission::Lookup)),
            (
                Action::ViewRecord,
                "view_record",
                Some(Permission::ViewRecord),
            ),
            (
                Action::ViewImage,
                "view_image",
                Some(Permission::ViewRecord),
            ),
            (
                Action::ViewThumbnail,
                "view_thumbnail",
                Some(Permission::ViewRecord),
            ),
            (
                Action::ListCollections,
                "list_collections",
                Some(Permission::Collections),
            ),
            (
                Action::CollectionCreate,
                "collection_create",
                Some(Permission::Collections),
            ),
            (
                Action::ViewCollection,
                "view_collection",
                Some(Permission::Collections),
            ),
            (
                Action::CollectionUpdate,
                "collection_update",
                Some(Permission::Collections),
            ),
            (
                Action::CollectionDelete,
                "collection_delete",
                Some(Permission::Collections),
            ),
            (Action::Export, "export", Some(Permission::Export)),
            (
                Action::ExportUnredacted,
                "export_unredacted",
                Some(Permission::ViewUnredacted),
            ),
            (
                Action::AuditQuery,
                "audit_query",
                Some(Permission::ReadAudit),
            ),
            (
                Action::AuditVerify,
                "audit_verify",
                Some(Permission::ReadAudit),
            ),
            (
                Action::AuditArchive,
                "audit_archive",
                Some(Permission::ManageAccounts),
            ),
            (
                Action::AccountList,
                "account_list",
                Some(Permission::ManageAccounts),
            ),
            (
                Action::AccountCreate,
                "account_create",
                Some(Permission::ManageAccounts),
            ),
            (
                Action::AccountUpdate,
                "account_update",
                Some(Permission::ManageAccounts),
            ),
            (
                Action::AccountDelete,
                "account_delete",
                Some(Permission::ManageAccounts),
            ),
            (
                Action::TokenIssue,
                "token_issue",
                Some(Permission::ManageAccounts),
            ),
            (
                Action::TokenRevoke,
                "token_revoke",
                Some(Permission::ManageAccounts),
            ),
            (
                Action::RetentionView,
                "retention_view",
                Some(Permission::Retention),
            ),
            (
                Action::RetentionSet,
                "retention_set",
                Some(Permission::Retention),
            ),
            (
                Action::RetentionRun,
                "retention_run",
                Some(Permission::Retention),
            ),
            (Action::LegalHold, "legal_hold", Some(Permission::Retention)),
            (
                Action::LegalHoldRelease,
                "legal_hold_release",
                Some(Permission::Retention),
            ),
            (Action::Delete, "delete", Some(Permission::Delete)),
            (Action::Ingest, "ingest", Some(Permission::ManageLibrary)),
            (
                Action::Optimize,
                "optimize",
                Some(Permission::ManageLibrary),
            ),
            (Action::SignIn, "sign_in", None),
        ];
        // Every variant is listed (ALL and the table agree, in order), each once.
        assert_eq!(
            Action::ALL.to_vec(),
            expected.iter().map(|e| e.0).collect::<Vec<_>>()
        );
        for (action, name, permission) in expected {
            assert_eq!(action.name(), name);
            assert_eq!(action.to_string(), name);
            assert_eq!(action.permission(), permission, "{name}");
        }
        let names: HashSet<&str> = Action::ALL.iter().map(|a| a.name()).collect();
        assert_eq!(names.len(), Action::ALL.len(), "action names are unique");
        // Exhaustive by construction: a new variant fails to compile here until it is listed.
        for a in Action::ALL {
            match a {
                Action::Search
                | Action::Facets
                | Action::Lookup
                | Action::ViewRecord
                | Action::ViewImage
                | Action::ViewThumbnail
                | Action::ListCollections
                | Action::CollectionCreate
                | Action::ViewCollection
                | Action::CollectionUpdate
                | Action::CollectionDelete
                | Action::Export
                | Action::ExportUnredacted
                | Action::AuditQuery
                | Action::AuditVerify
                | Action::AuditArchive
                | Action::AccountList
                | Action::AccountCreate
                | Action::AccountUpdate
                | Action::AccountDelete
                | Action::TokenIssue
                | Action::TokenRevoke
                | Action::RetentionView
                | Action::RetentionSet
                | Action::RetentionRun
                | Action::LegalHold
                | Action::LegalHoldRelease
                | Action::Delete
                | Action::Ingest
                | Action::Optimize
                | Action::SignIn => {}
            }
        }
    }

    #[test]
    fn each_action_is_allowed_to_exactly_the_roles_of_the_readme_table() {
        for action in Action::ALL {
            let allowed: Vec<Role> = Role::ALL
                .into_iter()
                .filter(|r| action.permission().is_none_or(|p| r.allows(p)))
                .collect();
            assert_eq!(allowed, readme_roles(action), "{action}");
        }
    }

    #[test]
    fn a_permission_name_is_its_serialised_name() {
        for p in Permission::ALL {
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str(), "{p:?}");
            assert_eq!(p.to_string(), p.as_str());
        }
    }
}
