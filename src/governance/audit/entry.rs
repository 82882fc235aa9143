//! What the trail holds and answers: entries, the entry a caller appends, queries, the
//! verification report and archive notes.

use super::*;

/// One recorded action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// Position in the trail: 1, 2, 3, ... without gaps.
    pub seq: u64,
    /// When it was recorded.
    pub time: DateTime<Utc>,
    /// Account name, or `cli:<os user>` for local command-line use.
    pub actor: String,
    /// The account's role, when it has one.
    pub role: Option<String>,
    /// Peer address of the request.
    pub address: Option<String>,
    /// What was done: `search`, `lookup`, `view_record`, `view_image`, `view_thumbnail`,
    /// `export`, `account_create`, `retention_run`, `delete`, `denied`, ...
    pub action: String,
    /// The purpose the user stated (`X-Purpose` header or `--purpose`).
    pub purpose: Option<String>,
    /// The request's query and filters, as the user gave them.
    #[schema(value_type = Option<Object>)]
    pub query: Option<serde_json::Value>,
    /// Refs (keyed pseudonyms, see [`AuditLog::record_ref`]) of the records returned or viewed;
    /// never record ids.
    pub records: Vec<String>,
    /// `ok`; `denied` (a role or a disabled, expired or revoked credential refused);
    /// `refused` (an account or token change refused); `failed` (a failed sign-in); or
    /// `error: ...`.
    pub outcome: String,
    /// Whether an unredacted image or thumbnail was served.
    pub unredacted: bool,
    /// Anything else, e.g. the digest of a deletion receipt. Never filenames or captions.
    #[schema(value_type = Option<Object>)]
    pub detail: Option<serde_json::Value>,
    /// Hash of the previous entry; 64 zeros for the first.
    pub prev: String,
    /// `hex(sha256(prev + "\n" + this entry's stored JSON without its hash field))`.
    pub hash: String,
}

/// What a caller records. `seq`, `time`, `prev` and `hash` are filled in by
/// [`AuditLog::append`]; `records` are record ids, turned into refs by `append`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewEntry {
    /// Account name, or `cli:<os user>`.
    pub actor: String,
    /// The account's role.
    pub role: Option<String>,
    /// Peer address.
    pub address: Option<String>,
    /// What was done (see [`AuditEntry::action`]).
    pub action: String,
    /// Stated purpose.
    pub purpose: Option<String>,
    /// The query and filters as typed (bounded summary); user input only, never record data.
    pub query: Option<serde_json::Value>,
    /// Ids of the records returned or viewed; stored only as refs.
    pub records: Vec<String>,
    /// `ok`; `denied` (a role or a disabled, expired or revoked credential refused);
    /// `refused` (an account or token change refused); `failed` (a failed sign-in); or
    /// `error: ...`.
    pub outcome: String,
    /// Whether an unredacted image or thumbnail was served.
    pub unredacted: bool,
    /// Anything else; never filenames or captions.
    pub detail: Option<serde_json::Value>,
}

/// Which entries to return; every given condition must hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, IntoParams, ToSchema)]
#[serde(default, deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// A record id (not a ref): entries that returned or viewed it.
    pub record: Option<String>,
    /// Exactly this actor.
    pub actor: Option<String>,
    /// Exactly this action.
    pub action: Option<String>,
    /// Entries at or after this time.
    pub after: Option<DateTime<Utc>>,
    /// Entries strictly before this time.
    pub before: Option<DateTime<Utc>>,
    /// At most this many entries, the oldest first (default 1000).
    pub limit: Option<usize>,
    /// The newest `limit` matching entries instead, newest first (what an auditor checking
    /// what was just read wants on a long trail).
    pub newest_first: Option<bool>,
}

/// The outcome of [`AuditLog::verify`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VerifyReport {
    /// Entries checked and found sound: all of them when `ok`, those before the problem
    /// otherwise.
    pub entries: u64,
    /// Whether the whole trail and its head are consistent.
    pub ok: bool,
    /// The first problem found, naming the entry and line, e.g. `entry 5 (line 4) follows
    /// entry 3` or `the trail ends at entry 9 but its head says 12`.
    pub problem: Option<String>,
    /// Hash of the last entry when `ok` and the trail is not empty. Record it somewhere out of
    /// reach of whoever can write the data directory: a later trail that no longer contains
    /// this hash at this position was rewritten.
    pub head: Option<String>,
    /// Damaged trails archived before this one began (see [`AuditLog::archive`]), as the
    /// trail records them.
    #[serde(default)]
    pub archives: Vec<ArchiveNote>,
}

/// A damaged trail moved aside by [`AuditLog::archive`], as recorded in the new trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ArchiveNote {
    /// The entry that records the archive (the first of the trail that replaced it).
    pub seq: u64,
    /// When it was archived.
    pub time: DateTime<Utc>,
    /// Who archived it.
    pub actor: String,
    /// Folder under `audit/` that holds the archived files, e.g. `archive/20261201T012345Z`.
    pub dir: String,
    /// What verification found wrong with the archived trail.
    pub problem: String,
    /// Entries of the archived trail found sound before the problem.
    pub sound_entries: u64,
    /// Why the operator archived it.
    pub reason: String,
    /// The archived files as they were when archived.
    pub files: Vec<ArchivedFile>,
}

/// One archived file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ArchivedFile {
    /// File name (`trail.jsonl`, `head.json`).
    pub name: String,
    /// Hex sha256 of its bytes.
    pub sha256: String,
    /// Its size in bytes.
    pub bytes: u64,
}

/// What an `audit_archive` entry's `detail` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ArchiveDetail {
    pub(super) archived_to: String,
    pub(super) problem: String,
    pub(super) sound_entries: u64,
    pub(super) reason: String,
    pub(super) files: Vec<ArchivedFile>,
}
