//! Roles and the permissions each grants.

use super::*;

/// What an account may do. See the module documentation for the table.
///
/// The derived order is declaration order, for stable sorting only: it is not a hierarchy
/// (an auditor cannot search, a curator cannot read the audit trail).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Searches the library and views (redacted) records.
    Searcher,
    /// A searcher who also curates collections and exports data sets.
    Curator,
    /// Investigates disclosures: look-ups, the audit trail, unredacted images. No search.
    Auditor,
    /// Everything, including accounts, retention and deletion.
    Admin,
}

impl Role {
    /// Every role, least to most privileged where that is defined.
    pub const ALL: [Role; 4] = [Role::Searcher, Role::Curator, Role::Auditor, Role::Admin];

    /// Whether this role grants `p` (the table in the module documentation).
    pub fn allows(self, p: Permission) -> bool {
        use Permission as P;
        match self {
            Role::Searcher => matches!(p, P::Search | P::ViewRecord),
            Role::Curator => matches!(p, P::Search | P::ViewRecord | P::Collections | P::Export),
            Role::Auditor => matches!(
                p,
                P::Lookup | P::ReadAudit | P::ViewRecord | P::ViewUnredacted
            ),
            Role::Admin => true,
        }
    }

    /// The lowercase name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Searcher => "searcher",
            Role::Curator => "curator",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of [`Role::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: use searcher, curator, auditor or admin")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    /// Parses a role name, ignoring ASCII case and surrounding whitespace.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        Role::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(t))
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

/// One thing a route may require. Which roles grant which: [`Role::allows`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Search, facets, library info.
    Search,
    /// A record, its image, its thumbnail (with sensitive boxes blurred).
    ViewRecord,
    /// Images and thumbnails without blurring of sensitive boxes.
    ViewUnredacted,
    /// Look-ups by filename or date.
    Lookup,
    /// Create, edit and list collections.
    Collections,
    /// Data-set export.
    Export,
    /// Query and verify the audit trail.
    ReadAudit,
    /// Accounts and tokens of others.
    ManageAccounts,
    /// Retention schedules, legal holds, retention runs.
    Retention,
    /// Delete records.
    Delete,
    /// Ingest into the library and change its vector index (`imagelens ingest`, `optimize`).
    ManageLibrary,
}

impl Permission {
    /// Every permission, in declaration order.
    pub const ALL: [Permission; 11] = [
        Permission::Search,
        Permission::ViewRecord,
        Permission::ViewUnredacted,
        Permission::Lookup,
        Permission::Collections,
        Permission::Export,
        Permission::ReadAudit,
        Permission::ManageAccounts,
        Permission::Retention,
        Permission::Delete,
        Permission::ManageLibrary,
    ];

    /// The snake_case name, as serialised (`view_unredacted`, `manage_accounts`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Search => "search",
            Permission::ViewRecord => "view_record",
            Permission::ViewUnredacted => "view_unredacted",
            Permission::Lookup => "lookup",
            Permission::Collections => "collections",
            Permission::Export => "export",
            Permission::ReadAudit => "read_audit",
            Permission::ManageAccounts => "manage_accounts",
            Permission::Retention => "retention",
            Permission::Delete => "delete",
            Permission::ManageLibrary => "manage_library",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
