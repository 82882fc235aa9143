//! The audit trail: an append-only, hash-chained record of who saw what.
//!
//! Every search, look-up, record/image/thumbnail view, export, account change, retention run
//! and deletion is recorded as one [`AuditEntry`]: who (account and role), when, from where,
//! what (the query and filters as typed, the records returned or viewed), the outcome, whether
//! an unredacted image was served, and the purpose the user stated. Callers append *before*
//! they send any data and fail the request when [`AuditLog::append`] fails, so nothing is
//! served that is not on record.
//!
//! Owns `<data-dir>/audit/`:
//!
//! - `trail.jsonl`: one entry per line, only ever appended to (opened in append mode, `0600` on
//!   Unix). Each line is written from one buffer and made durable with `sync_data` before
//!   `append` returns.
//! - `head.json`: `{"seq": N, "hash": "..."}` of the last entry, replaced atomically after each
//!   append. It is what reveals entries removed from the *end* of the trail, which the chain
//!   alone cannot.
//! - `key`: 32 random bytes made on first open (`0600` on Unix), the secret behind record
//!   pseudonyms. Back it up with the trail: without it, "who saw record X" cannot be answered.
//!
//! # Invariants
//!
//! - Entries are numbered `1, 2, 3, ...` without gaps, in file order.
//! - `hash = hex(sha256(prev + "\n" + body))`, where `body` is the entry's JSON exactly as
//!   stored, without its `hash` field (always the last field of a line), and `prev` is the
//!   previous entry's hash (64 zeros for the first). Hashing the stored bytes rather than a
//!   re-serialisation makes the check byte-exact: any edited byte changes the hash, and
//!   verification does not depend on how serde_json formats floats or orders map keys.
//! - Record ids are never written in clear. `records` holds keyed pseudonyms,
//!   `hex(sha256(key + id))[..32]` ([`AuditLog::record_ref`]), so that after a verifiable
//!   deletion no file of the library holds the record's id while the trail, which is evidence,
//!   stays intact. "Who saw record X" computes X's ref and looks for it. A pseudonym is not
//!   anonymity: whoever holds both the key and a candidate id can test whether it was seen,
//!   which is exactly the auditor's question.
//! - Callers never put filenames, captions or image bytes into an entry. `query` holds what the
//!   user *typed* (search text, filters) as a bounded summary (`crate::params::AuditedSearch`,
//!   `FilterParams::audit_summary`: each list's first values, its count and a sha256 of the
//!   whole filter), which is the user's input and evidence, not data of a record, and cannot
//!   grow the trail with the size of a request body; record ids, whether taken from a request
//!   path or typed as a "more like this" target or a hold, are kept only as refs, never in
//!   clear in `query` or `detail`.
//!
//! # What the chain does and does not prove
//!
//! [`AuditLog::verify`] detects an edited, removed, reordered or inserted entry, and removal of
//! the last entries, made by anyone who does not then recompute every later hash and the head.
//! The hashes carry no secret, so someone who can rewrite the whole trail *and* its head can
//! forge a consistent history. What makes such a rewrite detectable is anchoring: the head hash
//! that `verify` reports ([`VerifyReport::head`]) printed somewhere the attacker cannot reach
//! (deletion receipts, a ticket, a signed e-mail); a rewritten trail no longer contains it.
//!
//! # Damage and crashes
//!
//! Nothing here ever truncates or repairs the trail. When [`AuditLog::open`] finds the end of
//! the trail damaged (a torn last line from a crash mid-write, an unreadable last entry, a head
//! that disagrees with the last line) it still opens, so that `verify` and `query` can be run,
//! but every `append` fails with [`AuditError::Corrupt`] naming the file until an operator has
//! looked at it: appending after a removed tail would overwrite the head, the very evidence of
//! the removal. The one thing `open` fixes is the crash window between writing a line and
//! replacing the head: a head exactly one entry behind, naming the last line's `prev`, is moved
//! forward. (That accepts nothing an attacker could not do anyway, since the head is not secret.)
//!
//! # Writers
//!
//! One process opens a data directory at a time ([`crate::app::lock_data_dir`]), and appends
//! within a process are serialised by a mutex. The trail does not rely on that alone: every
//! append holds an exclusive OS lock (`flock` on Unix) on `audit/lock` from the moment it
//! re-reads the end of the trail, through writing and syncing the line, to replacing the head,
//! and the head is replaced through a temporary file whose name is unique to the process and
//! the append (`head.json.<pid>.<n>.tmp`). So two processes that bypass the data-directory lock
//! (or two [`AuditLog`]s in one process) still take turns: the second resumes from the line the
//! first wrote, and the chain never forks. [`AuditLog::verify`], [`AuditLog::query`] and
//! [`verify_dir`] take the same lock shared while they note the trail's length and head, so
//! they never read half an append or compare the trail with a head that is not yet written;
//! after that they read the first `length` bytes, which no writer changes.
//!
//! # Archiving a damaged trail
//!
//! A trail that does not verify is evidence and is never repaired or cut. `imagelens serve`
//! refuses to start on one. [`AuditLog::archive`] moves the trail and its head, as they are,
//! into `audit/archive/<time>/` and starts a new trail whose first entry (`audit_archive`)
//! records the archived files' sha256 and sizes, what `verify` found and the operator's
//! reason. [`AuditLog::verify`] then checks the new trail and reports every archive it
//! records ([`VerifyReport::archives`]); an archived file that is gone or changed makes the
//! verification fail.
//!
//! Queries scan the file (oldest first) and do not check hashes; that is `verify`'s job.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use indexer::Fault;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};

use crate::governance::Action;

/// How many entries [`AuditLog::query`] returns when the query gives no limit.
pub const DEFAULT_QUERY_LIMIT: usize = 1000;

/// `prev` of the first entry.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Bytes of the pseudonym key.
const KEY_LEN: usize = 32;
/// Hex digits of a record ref: 128 bits, far beyond any collision among a library's records.
const REF_LEN: usize = 32;
/// What every stored line ends with, before the hash's 64 hex digits and `"}`.
const HASH_FIELD: &[u8] = b",\"hash\":\"";

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
struct ArchiveDetail {
    archived_to: String,
    problem: String,
    sound_entries: u64,
    reason: String,
    files: Vec<ArchivedFile>,
}

/// Why the audit trail could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A file under `<data-dir>/audit/` cannot be read or written.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// Path concerned.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The trail or its head is damaged: appends are refused, or a line cannot be read.
    #[error("{0}")]
    Corrupt(String),
    /// An entry cannot be encoded as JSON.
    #[error("audit entry cannot be encoded: {0}")]
    Encode(#[from] serde_json::Error),
    /// The operation does not apply, e.g. archiving a trail that verifies.
    #[error("{0}")]
    Refused(String),
}

impl AuditError {
    /// Whether the caller or the system is at fault: always the system, since callers cannot
    /// make an append fail (a request that cannot be recorded is answered 500).
    pub fn fault(&self) -> Fault {
        Fault::Internal
    }
}

/// The audit trail of one library.
pub struct AuditLog {
    trail: PathBuf,
    head: PathBuf,
    /// `audit/lock`, locked exclusively by appends and shared by readers (see the module docs).
    lock_path: PathBuf,
    lock_file: File,
    key: [u8; KEY_LEN],
    state: Mutex<State>,
}

impl std::fmt::Debug for AuditLog {
    // By hand, so that the key never ends up in a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("trail", &self.trail)
            .field("entries", &self.len())
            .finish_non_exhaustive()
    }
}

/// Where appending resumes; guarded by the mutex.
struct State {
    file: File,
    /// Seq and hash of the last entry (0 and [`GENESIS`] when empty).
    seq: u64,
    hash: String,
    /// Length of the trail in bytes when last read or written, to notice other writers.
    bytes: u64,
    /// Why appends are refused, if they are.
    damage: Option<String>,
}

/// `head.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Head {
    seq: u64,
    hash: String,
}

/// The hashed part of an entry: every field but `hash`, in [`AuditEntry`]'s order.
#[derive(Serialize)]
struct Body<'a> {
    seq: u64,
    time: &'a DateTime<Utc>,
    actor: &'a str,
    role: &'a Option<String>,
    address: &'a Option<String>,
    action: &'a str,
    purpose: &'a Option<String>,
    query: &'a Option<serde_json::Value>,
    records: &'a [String],
    outcome: &'a str,
    unredacted: bool,
    detail: &'a Option<serde_json::Value>,
    prev: &'a str,
}

impl AuditLog {
    /// Opens the trail under `<dir>/audit/` (`dir` is the library's data directory), creating
    /// the directory, the key and an empty trail on first use.
    ///
    /// A damaged end of the trail does not stop `open` (see the module docs): the log opens
    /// for `verify` and `query`, and [`AuditLog::damage`] says why appends will be refused.
    ///
    /// # Errors
    /// [`AuditError::Io`] when a file cannot be created or read, or when a head left behind by
    /// a crash cannot be moved forward; [`AuditError::Corrupt`] when the key is not 32 bytes.
    pub fn open(dir: &Path) -> Result<Self, AuditError> {
        let audit = dir.join("audit");
        create_private_dir(&audit)?;
        let key = load_or_create_key(&audit.join("key"))?;
        let trail = audit.join("trail.jsonl");
        let head = audit.join("head.json");
        let mut options = OpenOptions::new();
        options.append(true).create(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&trail).map_err(|e| io_err(&trail, e))?;
        let lock_path = audit.join(LOCK_FILE);
        let lock_file = open_lock_file(&lock_path)?;
        sync_dir(&audit);

        let resume = {
            let _writer = FileLock::exclusive(&lock_file, &lock_path)?;
            let resume = read_resume(&trail, &head)?;
            if resume.head_lags && resume.damage.is_none() {
                write_head(&head, resume.seq, &resume.hash)?;
            }
            resume
        };
        Ok(Self {
            trail,
            head,
            lock_path,
            lock_file,
            key,
            state: Mutex::new(State {
                file,
                seq: resume.seq,
                hash: resume.hash,
                bytes: resume.len,
                damage: resume.damage,
            }),
        })
    }

    /// Records an entry: fills in `seq`, `time`, `prev` and `hash`, turns record ids into refs,
    /// writes the line and syncs it to disk, then replaces the head. Returns the entry as
    /// stored.
    ///
    /// # Errors
    /// [`AuditError::Corrupt`] when the trail is damaged (see [`AuditLog::damage`]);
    /// [`AuditError::Io`] when the line cannot be written or synced, in which case the
    /// partial write is cut off again (if even that fails, later appends are refused);
    /// [`AuditError::Io`] naming `head.json` when the line is recorded but the head could not
    /// be replaced (the next append or `open` brings it up to date). Treat every error as "not recorded": fail
    /// the request.
    pub fn append(&self, entry: NewEntry) -> Result<AuditEntry, AuditError> {
        let mut st = self.lock();
        // Held from reading the end of the trail to replacing the head: no other writer, in
        // this process or another, can slip an entry in between.
        let _writer = FileLock::exclusive(&self.lock_file, &self.lock_path)?;
        self.resync(&mut st)?;
        self.append_locked(&mut st, entry)
    }

    /// [`AuditLog::append`] under the mutex and the exclusive file lock, after a resync.
    fn append_locked(&self, st: &mut State, entry: NewEntry) -> Result<AuditEntry, AuditError> {
        let records = entry.records.iter().map(|id| self.record_ref(id)).collect();
        if let Some(damage) = &st.damage {
            return Err(AuditError::Corrupt(format!(
                "{damage}; appends are refused until an operator has checked it \
                 (run `imagelens audit verify`)"
            )));
        }
        let mut stored = AuditEntry {
            seq: st.seq + 1,
            time: Utc::now(),
            actor: entry.actor,
            role: entry.role,
            address: entry.address,
            action: entry.action,
            purpose: entry.purpose,
            query: entry.query,
            records,
            outcome: entry.outcome,
            unredacted: entry.unredacted,
            detail: entry.detail,
            prev: st.hash.clone(),
            hash: String::new(),
        };
        let (line, hash) = encode(&stored)?;
        stored.hash = hash;

        let before = st.bytes;
        let written = st.file.write_all(&line).and_then(|()| st.file.sync_data());
        if let Err(source) = written {
            // The request fails, so the entry must not count: cut off whatever part of the
            // line reached the file, or the next line would be glued to a torn one.
            let undone = st.file.set_len(before).and_then(|()| st.file.sync_data());
            if let Err(undo) = undone {
                st.damage = Some(format!(
                    "{}: an append failed ({source}) and its partial line could not be cut off \
                     ({undo})",
                    self.trail.display()
                ));
            }
            return Err(io_err(&self.trail, source));
        }
        st.bytes = before + line.len() as u64;
        st.seq = stored.seq;
        st.hash.clone_from(&stored.hash);
        write_head(&self.head, st.seq, &st.hash)?;
        Ok(stored)
    }

    /// The ref under which record `id` appears in entries: the first 32 hex digits of
    /// `sha256(key + id)`, with this library's secret key.
    pub fn record_ref(&self, id: &str) -> String {
        let mut h = Sha256::new();
        h.update(self.key);
        h.update(id.as_bytes());
        let mut r = hex::encode(h.finalize());
        r.truncate(REF_LEN);
        r
    }

    /// Re-reads the whole trail and checks numbering, chain, every hash, and the last entry
    /// against the head. A broken trail is a report with `ok == false`, not an error.
    ///
    /// # Errors
    /// [`AuditError::Io`] when the trail or head cannot be read.
    pub fn verify(&self) -> Result<VerifyReport, AuditError> {
        // Take the length and head together under the locks, so an append running meanwhile
        // (of this process or another) is neither half-read nor compared with a head it has
        // not yet written.
        let (len, head) = {
            let _st = self.lock();
            let _reader = FileLock::shared(&self.lock_file, &self.lock_path)?;
            (trail_len(&self.trail)?, read_head(&self.head)?)
        };
        verify_trail(&self.trail, len, head)
    }

    /// Moves a trail that does not verify, with its head, into `audit/archive/<time>/` and
    /// starts a new trail whose first entry records the archive: `entry` (the caller's
    /// identity; its action becomes `audit_archive`) with the archived files' sha256, the
    /// problem found and `reason`. Nothing is deleted or rewritten. Returns the note of the
    /// archive, as [`AuditLog::verify`] will report it.
    ///
    /// # Errors
    /// [`AuditError::Refused`] when the trail verifies (there is nothing to archive) or the
    /// reason is blank; [`AuditError::Io`] when a file cannot be moved or written (the files
    /// already moved stay in the archive folder, whose `archived.json` says what was found).
    pub fn archive(&self, reason: &str, entry: NewEntry) -> Result<ArchiveNote, AuditError> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(AuditError::Refused(
                "give the reason for archiving the trail (e.g. the incident reference)".into(),
            ));
        }
        let mut st = self.lock();
        let _writer = FileLock::exclusive(&self.lock_file, &self.lock_path)?;
        let report = verify_trail(&self.trail, trail_len(&self.trail)?, read_head(&self.head)?)?;
        let Some(problem) = report.problem.filter(|_| !report.ok) else {
            return Err(AuditError::Refused(format!(
                "the audit trail verifies ({} entries): there is nothing to archive",
                report.entries
            )));
        };
        let audit = self.trail.parent().unwrap_or(Path::new("."));
        let (rel, dir) = new_archive_dir(audit)?;
        let mut files = Vec::new();
        for from in [&self.trail, &self.head] {
            let Some(name) = from.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if !from.exists() {
                continue;
            }
            let to = dir.join(name);
            std::fs::rename(from, &to).map_err(|e| io_err(from, e))?;
            let (sha256, bytes) = file_sha256(&to)?;
            files.push(ArchivedFile {
                name: name.to_owned(),
                sha256,
                bytes,
            });
        }
        sync_dir(&dir);
        sync_dir(audit);
        let detail = ArchiveDetail {
            archived_to: rel,
            problem,
            sound_entries: report.entries,
            reason: reason.to_owned(),
            files,
        };
        // Beside the files too, for whoever finds the folder without the new trail.
        let note_path = dir.join("archived.json");
        std::fs::write(&note_path, serde_json::to_vec_pretty(&detail)?)
            .map_err(|e| io_err(&note_path, e))?;

        let mut options = OpenOptions::new();
        options.append(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        st.file = options
            .open(&self.trail)
            .map_err(|e| io_err(&self.trail, e))?;
        sync_dir(audit);
        st.seq = 0;
        st.hash = GENESIS.to_owned();
        st.bytes = 0;
        st.damage = None;
        let stored = self.append_locked(
            &mut st,
            NewEntry {
                action: Action::AuditArchive.name().into(),
                outcome: "ok".into(),
                detail: Some(serde_json::to_value(&detail)?),
                query: None,
                records: Vec::new(),
                unredacted: false,
                ..entry
            },
        )?;
        Ok(archive_note(&stored, detail))
    }

    /// Entries matching `q`, oldest first, at most `q.limit` (default
    /// [`DEFAULT_QUERY_LIMIT`]). Scans the trail; does not check hashes (see
    /// [`AuditLog::verify`]). A torn last line is skipped: its append failed, so its request
    /// was never served.
    ///
    /// # Errors
    /// [`AuditError::Io`] when the trail cannot be read, [`AuditError::Corrupt`] when a
    /// complete line is not a valid entry.
    pub fn query(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, AuditError> {
        let limit = q.limit.unwrap_or(DEFAULT_QUERY_LIMIT);
        let record = q.record.as_deref().map(|id| self.record_ref(id));
        // Stop at the length the file has while no append is under way, so a line being
        // written right now is not read half-way.
        let len = {
            let _st = self.lock();
            let _reader = FileLock::shared(&self.lock_file, &self.lock_path)?;
            trail_len(&self.trail)?
        };
        let mut found = Vec::new();
        let mut lines = Lines::open(&self.trail, len)?;
        let mut line_no = 0_u64;
        while found.len() < limit
            && let Some(line) = lines.next_line()?
        {
            line_no += 1;
            let Some(line) = line.strip_suffix(b"\n") else {
                break;
            };
            let entry: AuditEntry = serde_json::from_slice(line).map_err(|e| {
                AuditError::Corrupt(format!(
                    "line {line_no} of {} is not a valid entry: {e} (run `imagelens audit verify`)",
                    self.trail.display()
                ))
            })?;
            let wanted = record.as_ref().is_none_or(|r| entry.records.contains(r))
                && q.actor.as_ref().is_none_or(|a| &entry.actor == a)
                && q.action.as_ref().is_none_or(|a| &entry.action == a)
                && q.after.is_none_or(|t| entry.time >= t)
                && q.before.is_none_or(|t| entry.time < t);
            if wanted {
                found.push(entry);
            }
        }
        Ok(found)
    }

    /// Number of entries (the last entry's seq).
    pub fn len(&self) -> u64 {
        self.lock().seq
    }

    /// Whether nothing has been recorded yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Why appends are refused, when the trail is damaged; `None` when they are accepted.
    /// `serve` can check this at start-up rather than failing every request later.
    pub fn damage(&self) -> Option<String> {
        self.lock().damage.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while appending leaves `bytes` at the old length, so the next append notices
        // the file differs and resumes from the file itself: the state cannot be trusted less
        // than the file, whatever was interrupted.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Picks up entries appended by another process since this one last wrote, and notices a
    /// trail that shrank or was replaced.
    fn resync(&self, st: &mut State) -> Result<(), AuditError> {
        if st.damage.is_some() {
            return Ok(());
        }
        let on_disk = std::fs::metadata(&self.trail).map_err(|e| io_err(&self.trail, e))?;
        let open = st.file.metadata().map_err(|e| io_err(&self.trail, e))?;
        if !same_file(&on_disk, &open) {
            st.damage = Some(format!(
                "{} was replaced by another file while open",
                self.trail.display()
            ));
            return Ok(());
        }
        let len = open.len();
        if len == st.bytes {
            return Ok(());
        }
        if len < st.bytes {
            st.damage = Some(format!(
                "{} shrank from {} to {len} bytes while open: entries were removed",
                self.trail.display(),
                st.bytes
            ));
            return Ok(());
        }
        let resume = read_resume(&self.trail, &self.head)?;
        st.seq = resume.seq;
        st.hash = resume.hash;
        st.bytes = resume.len;
        st.damage = resume.damage;
        Ok(())
    }
}

/// Verifies the trail of the data directory `dir` without opening it for appends: nothing is
/// created or written, and no key is needed, so `imagelens audit verify` can run beside the
/// server that appends to it (see the module docs on writers).
///
/// # Errors
/// [`AuditError::Io`] when the trail, its head or its lock file cannot be read.
pub fn verify_dir(dir: &Path) -> Result<VerifyReport, AuditError> {
    let audit = dir.join("audit");
    let trail = audit.join("trail.jsonl");
    let lock_path = audit.join(LOCK_FILE);
    let (len, head) = {
        // A trail from before the lock file existed has no writer to wait for.
        let lock_file = match File::open(&lock_path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(&lock_path, e)),
        };
        let _reader = lock_file
            .as_ref()
            .map(|f| FileLock::shared(f, &lock_path))
            .transpose()?;
        (trail_len(&trail)?, read_head(&audit.join("head.json"))?)
    };
    verify_trail(&trail, len, head)
}

/// Checks the first `len` bytes of `trail`: numbering, chain, every hash, the last entry
/// against `head`, and the files of every archive the trail records.
fn verify_trail(
    trail: &Path,
    len: u64,
    head: Result<Head, String>,
) -> Result<VerifyReport, AuditError> {
    let fail = |entries: u64, problem: String| VerifyReport {
        entries,
        ok: false,
        problem: Some(problem),
        head: None,
        archives: Vec::new(),
    };
    let mut seq = 0;
    let mut hash = GENESIS.to_owned();
    let mut line_no = 0_u64;
    let mut archives = Vec::new();
    let mut lines = Lines::open(trail, len)?;
    while let Some(line) = lines.next_line()? {
        line_no += 1;
        let Some(line) = line.strip_suffix(b"\n") else {
            return Ok(fail(
                seq,
                format!(
                    "line {line_no} (after entry {seq}) is torn: the file ends without a \
                     newline, an append was interrupted"
                ),
            ));
        };
        let (entry, body) = match parse_line(line) {
            Ok(parsed) => parsed,
            Err(why) => {
                return Ok(fail(
                    seq,
                    format!("line {line_no} (after entry {seq}) is not a valid entry: {why}"),
                ));
            }
        };
        if entry.seq != seq + 1 {
            let problem = if seq == 0 {
                format!(
                    "entry {} (line {line_no}) comes first, not entry 1",
                    entry.seq
                )
            } else {
                format!("entry {} (line {line_no}) follows entry {seq}", entry.seq)
            };
            return Ok(fail(seq, problem));
        }
        if entry.prev != hash {
            return Ok(fail(
                seq,
                format!(
                    "entry {} (line {line_no}): prev is not the hash of entry {seq}",
                    entry.seq
                ),
            ));
        }
        if chain_hash(&entry.prev, &body) != entry.hash {
            return Ok(fail(
                seq,
                format!(
                    "entry {} (line {line_no}): hash does not match its content",
                    entry.seq
                ),
            ));
        }
        if entry.action == Action::AuditArchive.name() {
            let detail = entry
                .detail
                .clone()
                .and_then(|d| serde_json::from_value::<ArchiveDetail>(d).ok());
            let Some(detail) = detail else {
                return Ok(fail(
                    seq,
                    format!(
                        "entry {} (line {line_no}) records an archive but does not say what \
                         was archived",
                        entry.seq
                    ),
                ));
            };
            archives.push(archive_note(&entry, detail));
        }
        seq = entry.seq;
        hash = entry.hash;
    }
    let head = match head {
        Ok(head) => head,
        Err(why) => return Ok(fail(seq, why)),
    };
    if head.seq != seq {
        return Ok(fail(
            seq,
            format!(
                "the trail ends at entry {seq} but its head says {}",
                head.seq
            ),
        ));
    }
    if head.hash != hash {
        return Ok(fail(
            seq,
            format!("entry {seq} is not the entry its head names: the hashes differ"),
        ));
    }
    // The archived trails are evidence too: they must still be there, unchanged.
    let audit = trail.parent().unwrap_or(Path::new("."));
    for note in &archives {
        for f in &note.files {
            let path = audit.join(&note.dir).join(&f.name);
            let found = match file_sha256(&path) {
                Ok((sha256, _)) => sha256 == f.sha256,
                Err(_) => false,
            };
            if !found {
                return Ok(fail(
                    seq,
                    format!(
                        "{} (archived by entry {}) is missing or changed since it was archived",
                        path.display(),
                        note.seq
                    ),
                ));
            }
        }
    }
    Ok(VerifyReport {
        entries: seq,
        ok: true,
        problem: None,
        head: (seq > 0).then_some(hash),
        archives,
    })
}

fn archive_note(entry: &AuditEntry, detail: ArchiveDetail) -> ArchiveNote {
    ArchiveNote {
        seq: entry.seq,
        time: entry.time,
        actor: entry.actor.clone(),
        dir: detail.archived_to,
        problem: detail.problem,
        sound_entries: detail.sound_entries,
        reason: detail.reason,
        files: detail.files,
    }
}

/// Makes `audit/archive/<time>/` (`-2`, `-3`, ... when taken) and returns its name relative to
/// `audit/` and its path.
fn new_archive_dir(audit: &Path) -> Result<(String, PathBuf), AuditError> {
    let root = audit.join("archive");
    create_private_dir(&root)?;
    let stamp = Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    for n in 1..1000 {
        let name = if n == 1 {
            stamp.clone()
        } else {
            format!("{stamp}-{n}")
        };
        let dir = root.join(&name);
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        match builder.create(&dir) {
            Ok(()) => return Ok((format!("archive/{name}"), dir)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(&dir, e)),
        }
    }
    Err(AuditError::Refused(format!(
        "too many archives named {stamp} under {}",
        root.display()
    )))
}

/// Hex sha256 and size of a file.
fn file_sha256(path: &Path) -> Result<(String, u64), AuditError> {
    let mut file = File::open(path).map_err(|e| io_err(path, e))?;
    let mut h = Sha256::new();
    let bytes = std::io::copy(&mut file, &mut h).map_err(|e| io_err(path, e))?;
    Ok((hex::encode(h.finalize()), bytes))
}

/// Name of the trail's lock file inside `audit/`.
const LOCK_FILE: &str = "lock";

fn open_lock_file(path: &Path) -> Result<File, AuditError> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map_err(|e| io_err(path, e))
}

/// An OS lock on `audit/lock`, released when dropped.
struct FileLock<'a>(&'a File);

impl<'a> FileLock<'a> {
    /// Waits for the exclusive lock (appends).
    fn exclusive(file: &'a File, path: &Path) -> Result<Self, AuditError> {
        file.lock().map_err(|e| io_err(path, e))?;
        Ok(Self(file))
    }

    /// Waits for a shared lock (readers).
    fn shared(file: &'a File, path: &Path) -> Result<Self, AuditError> {
        file.lock_shared().map_err(|e| io_err(path, e))?;
        Ok(Self(file))
    }
}

impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// Whether two metadata describe the same file (on Unix; elsewhere assumed).
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        a.dev() == b.dev() && a.ino() == b.ino()
    }
    #[cfg(not(unix))]
    {
        let _ = (a, b);
        true
    }
}

/// The stored line (with its newline) and the hash of `entry`, whose `hash` is ignored.
fn encode(entry: &AuditEntry) -> Result<(Vec<u8>, String), AuditError> {
    let mut line = serde_json::to_vec(&Body {
        seq: entry.seq,
        time: &entry.time,
        actor: &entry.actor,
        role: &entry.role,
        address: &entry.address,
        action: &entry.action,
        purpose: &entry.purpose,
        query: &entry.query,
        records: &entry.records,
        outcome: &entry.outcome,
        unredacted: entry.unredacted,
        detail: &entry.detail,
        prev: &entry.prev,
    })?;
    let hash = chain_hash(&entry.prev, &line);
    // `line` is a JSON object ending in `}`: reopen it to add the hash as the last field,
    // which gives exactly `serde_json::to_vec(entry)`, and lets `parse_line` recover the
    // hashed bytes by cutting the field off again.
    line.pop();
    line.extend_from_slice(HASH_FIELD);
    line.extend_from_slice(hash.as_bytes());
    line.extend_from_slice(b"\"}\n");
    Ok((line, hash))
}

/// `hex(sha256(prev + "\n" + body))`.
fn chain_hash(prev: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(b"\n");
    h.update(body);
    hex::encode(h.finalize())
}

/// Parses a stored line (without its newline) into the entry and the exact bytes its hash
/// covers.
fn parse_line(line: &[u8]) -> Result<(AuditEntry, Vec<u8>), String> {
    // `,"hash":"` + 64 hex digits + `"}`
    let tail = HASH_FIELD.len() + 64 + 2;
    let cut = line
        .len()
        .checked_sub(tail)
        .filter(|&cut| {
            line[cut..].starts_with(HASH_FIELD)
                && line.ends_with(b"\"}")
                && line[cut + HASH_FIELD.len()..line.len() - 2]
                    .iter()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
        })
        .ok_or("it does not end with its hash")?;
    let entry: AuditEntry = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    if entry.hash.as_bytes() != &line[cut + HASH_FIELD.len()..line.len() - 2] {
        return Err("it holds more than one hash".to_owned());
    }
    let mut body = line[..cut].to_vec();
    body.push(b'}');
    Ok((entry, body))
}

/// Where appending resumes, read from the files.
struct Resume {
    len: u64,
    seq: u64,
    hash: String,
    damage: Option<String>,
    /// The head is one entry behind the last line and names its `prev`: a crash between the
    /// two writes of an append.
    head_lags: bool,
}

/// Reads the last complete line of the trail and the head, and says whether appending can
/// go on from them.
fn read_resume(trail: &Path, head_path: &Path) -> Result<Resume, AuditError> {
    let tail = read_tail(trail)?;
    let mut damage = None;
    if tail.torn > 0 {
        damage = Some(format!(
            "{} ends with a torn line ({} bytes after the last newline): an append was \
             interrupted; nothing was cut off",
            trail.display(),
            tail.torn
        ));
    }
    let (mut seq, mut hash, mut prev) = (0, GENESIS.to_owned(), GENESIS.to_owned());
    if let Some(line) = &tail.last {
        match parse_line(line) {
            Ok((entry, body)) if chain_hash(&entry.prev, &body) == entry.hash => {
                (seq, hash, prev) = (entry.seq, entry.hash, entry.prev);
            }
            Ok((entry, _)) => {
                damage.get_or_insert(format!(
                    "the last entry of {} (entry {}) does not match its hash",
                    trail.display(),
                    entry.seq
                ));
            }
            Err(why) => {
                damage.get_or_insert(format!(
                    "the last line of {} is not a valid entry: {why}",
                    trail.display()
                ));
            }
        }
    }
    let mut head_lags = false;
    match read_head(head_path)? {
        Err(why) => {
            damage.get_or_insert(why);
        }
        Ok(head) if head.seq == seq && head.hash == hash => {}
        Ok(head) if head.seq + 1 == seq && head.hash == prev => head_lags = true,
        Ok(head) => {
            damage.get_or_insert(format!(
                "{} ends at entry {seq} but its head {} says {}",
                trail.display(),
                head_path.display(),
                head.seq
            ));
        }
    }
    Ok(Resume {
        len: tail.len,
        seq,
        hash,
        damage,
        head_lags,
    })
}

/// The end of the trail file.
struct Tail {
    len: u64,
    /// The last complete line, without its newline.
    last: Option<Vec<u8>>,
    /// Bytes after the last newline: a line whose write was interrupted.
    torn: u64,
}

/// Reads the end of the trail backwards, so opening a long trail costs one line, not the file.
fn read_tail(path: &Path) -> Result<Tail, AuditError> {
    const CHUNK: u64 = 8 * 1024;
    let err = |e| io_err(path, e);
    let mut file = File::open(path).map_err(err)?;
    let len = file.metadata().map_err(err)?.len();
    // Newline positions found so far, scanning back from the end; the last complete line lies
    // between the last two.
    let mut newlines = Vec::with_capacity(2);
    let mut end = len;
    let mut buf = vec![0; CHUNK as usize];
    while end > 0 && newlines.len() < 2 {
        let start = end.saturating_sub(CHUNK);
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start)).map_err(err)?;
        file.read_exact(chunk).map_err(err)?;
        for (i, b) in chunk.iter().enumerate().rev() {
            if *b == b'\n' {
                newlines.push(start + i as u64);
                if newlines.len() == 2 {
                    break;
                }
            }
        }
        end = start;
    }
    let Some(&last_nl) = newlines.first() else {
        return Ok(Tail {
            len,
            last: None,
            torn: len,
        });
    };
    let start = newlines.get(1).map_or(0, |p| p + 1);
    let mut last = vec![0; (last_nl - start) as usize];
    file.seek(SeekFrom::Start(start)).map_err(err)?;
    file.read_exact(&mut last).map_err(err)?;
    Ok(Tail {
        len,
        last: Some(last),
        torn: len - last_nl - 1,
    })
}

/// Reads `head.json`; missing means an empty trail. The inner error is a problem to report.
fn read_head(path: &Path) -> Result<Result<Head, String>, AuditError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes)
            .map_err(|e| format!("the head {} is not readable: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Ok(Head {
            seq: 0,
            hash: GENESIS.to_owned(),
        })),
        Err(e) => Err(io_err(path, e)),
    }
}

/// Replaces the head atomically, through a temporary file whose name no other writer uses
/// (`head.json.<pid>.<n>.tmp`): two writers can never rename each other's file away.
fn write_head(path: &Path, seq: u64, hash: &str) -> Result<(), AuditError> {
    static APPENDS: AtomicU64 = AtomicU64::new(0);
    let head = Head {
        seq,
        hash: hash.to_owned(),
    };
    let n = APPENDS.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_file_name(format!("head.json.{}.{n}.tmp", std::process::id()));
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options
        .open(&tmp)
        .and_then(|mut f| f.write_all(&serde_json::to_vec(&head)?).and(f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_err(path, e));
    }
    if let Some(parent) = path.parent() {
        sync_dir(parent);
    }
    Ok(())
}

fn trail_len(path: &Path) -> Result<u64, AuditError> {
    Ok(std::fs::metadata(path).map_err(|e| io_err(path, e))?.len())
}

/// Complete lines of the first `len` bytes of a file, each with its newline (the last may
/// lack it: a torn line).
struct Lines {
    reader: BufReader<std::io::Take<File>>,
    path: PathBuf,
    buf: Vec<u8>,
}

impl Lines {
    fn open(path: &Path, len: u64) -> Result<Self, AuditError> {
        let file = File::open(path).map_err(|e| io_err(path, e))?;
        Ok(Self {
            reader: BufReader::new(file.take(len)),
            path: path.to_owned(),
            buf: Vec::new(),
        })
    }

    fn next_line(&mut self) -> Result<Option<&[u8]>, AuditError> {
        self.buf.clear();
        let n = self
            .reader
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| io_err(&self.path, e))?;
        Ok((n > 0).then_some(self.buf.as_slice()))
    }
}

/// Reads the pseudonym key, or makes it when the library has none.
fn load_or_create_key(path: &Path) -> Result<[u8; KEY_LEN], AuditError> {
    match std::fs::read(path) {
        Ok(bytes) => return key_from(path, &bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(path, e)),
    }
    let mut key = [0_u8; KEY_LEN];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
    // Written under a name of its own, then hard-linked into place: linking fails if a key
    // appeared meanwhile, so two processes opening a new library at once end up with the same
    // complete key, and a key in use is never replaced (its refs would stop matching).
    let tmp = path.with_file_name(format!(
        "key.{}.tmp",
        hex::encode(rand::random::<[u8; 8]>())
    ));
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options
        .open(&tmp)
        .and_then(|mut f| f.write_all(&key).and_then(|()| f.sync_all()))
        .map_err(|e| io_err(&tmp, e));
    let linked = written.and_then(|()| match std::fs::hard_link(&tmp, path) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(io_err(path, e)),
        _ => Ok(()),
    });
    let _ = std::fs::remove_file(&tmp);
    linked?;
    if let Some(parent) = path.parent() {
        sync_dir(parent);
    }
    let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
    key_from(path, &bytes)
}

fn key_from(path: &Path, bytes: &[u8]) -> Result<[u8; KEY_LEN], AuditError> {
    bytes.try_into().map_err(|_| {
        AuditError::Corrupt(format!(
            "audit key {} is {} bytes, expected {KEY_LEN}",
            path.display(),
            bytes.len()
        ))
    })
}

fn create_private_dir(path: &Path) -> Result<(), AuditError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    // Who saw what is itself sensitive.
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path).map_err(|e| io_err(path, e))
}

/// Makes a new or renamed directory entry durable; best effort, as not every platform can
/// open a directory.
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

fn io_err(path: &Path, source: std::io::Error) -> AuditError {
    AuditError::Io {
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests;
