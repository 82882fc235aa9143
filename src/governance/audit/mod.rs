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
//!   `append` returns; appends arriving together from many threads are written as one buffer
//!   with one `sync_data` (group commit, [`AuditLog::append`]).
//! - `head.json`: `{"seq": N, "hash": "..."}` of the last entry, replaced atomically after each
//!   append (after each batch of appends written together). It is what reveals entries
//!   removed from the *end* of the trail, which the chain alone cannot.
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

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

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
    /// Appends waiting to be written, and the answers of those written (group commit).
    queue: Mutex<Queue>,
    /// Signalled whenever a batch has been written.
    written: Condvar,
    /// Entries appended and batches written by this log (one sync and one head each).
    appends: AtomicU64,
    batches: AtomicU64,
}

/// Appends waiting for a writer ([`AuditLog::append`]): while one thread writes a batch,
/// the appends arriving meanwhile queue here and go out together in the next batch, with one
/// write, one sync and one head for all of them.
#[derive(Default)]
struct Queue {
    /// Ticket of the next append.
    next: u64,
    /// Entries not yet taken by a writer, in arrival order.
    pending: Vec<(u64, NewEntry)>,
    /// Whether a thread is writing a batch.
    writing: bool,
    /// Answers of written entries, until their callers take them.
    done: HashMap<u64, Result<AuditEntry, AuditError>>,
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
            queue: Mutex::new(Queue::default()),
            written: Condvar::new(),
            appends: AtomicU64::new(0),
            batches: AtomicU64::new(0),
        })
    }

    /// Records an entry: fills in `seq`, `time`, `prev` and `hash`, turns record ids into refs,
    /// writes the line and syncs it to disk, then replaces the head. Returns the entry as
    /// stored, once it is durable.
    ///
    /// Appends from many threads at once are written together (group commit): the first
    /// caller writes, and the entries that arrive while it writes and syncs wait for it and
    /// then go out as the next batch, one write, one `sync_data` and one head for all of them.
    /// Each caller still returns only after its own entry is on disk, with its own result.
    ///
    /// # Errors
    /// [`AuditError::Corrupt`] when the trail is damaged (see [`AuditLog::damage`]);
    /// [`AuditError::Io`] when the line cannot be written or synced, in which case the
    /// partial write is cut off again (if even that fails, later appends are refused);
    /// [`AuditError::Io`] naming `head.json` when the line is recorded but the head could not
    /// be replaced (the next append or `open` brings it up to date). Every entry of a batch
    /// that could not be written gets the error. Treat every error as "not recorded": fail
    /// the request.
    pub fn append(&self, entry: NewEntry) -> Result<AuditEntry, AuditError> {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let ticket = q.next;
        q.next += 1;
        q.pending.push((ticket, entry));
        loop {
            if let Some(answer) = q.done.remove(&ticket) {
                return answer;
            }
            if !q.writing {
                // No writer: this thread writes everything queued, its own entry included.
                q.writing = true;
                let batch = std::mem::take(&mut q.pending);
                drop(q);
                let tickets: Vec<u64> = batch.iter().map(|(t, _)| *t).collect();
                let mut writer = BatchWriter {
                    log: self,
                    tickets,
                    answers: Vec::new(),
                };
                writer.answers = self.write_batch(batch);
                drop(writer);
                q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                continue;
            }
            q = self.written.wait(q).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Writes `batch` under the mutex and the exclusive file lock, after a resync: its
    /// entries chained in order, one write and one sync for all, then one head. One answer
    /// per entry, by ticket.
    fn write_batch(
        &self,
        batch: Vec<(u64, NewEntry)>,
    ) -> Vec<(u64, Result<AuditEntry, AuditError>)> {
        let mut st = self.lock();
        // Held from reading the end of the trail to replacing the head: no other writer, in
        // this process or another, can slip an entry in between.
        let ready = FileLock::exclusive(&self.lock_file, &self.lock_path)
            .and_then(|writer| self.resync(&mut st).map(|()| writer));
        let _writer = match ready {
            Ok(writer) => writer,
            Err(e) => return each_fails(batch, &e),
        };
        let answers = self.append_many_locked(&mut st, batch);
        let written = answers.iter().filter(|(_, a)| a.is_ok()).count() as u64;
        if written > 0 {
            self.appends.fetch_add(written, Ordering::Relaxed);
            self.batches.fetch_add(1, Ordering::Relaxed);
        }
        answers
    }

    /// Entries recorded and batches written by [`AuditLog::append`] on this log since it was
    /// opened: each batch is one write, one `sync_data` and one head replaced, so the gap
    /// between the two is the syncs group commit saved.
    pub fn write_counts(&self) -> (u64, u64) {
        (
            self.appends.load(Ordering::Relaxed),
            self.batches.load(Ordering::Relaxed),
        )
    }

    /// [`AuditLog::write_batch`] under the mutex and the exclusive file lock, after a resync.
    fn append_many_locked(
        &self,
        st: &mut State,
        batch: Vec<(u64, NewEntry)>,
    ) -> Vec<(u64, Result<AuditEntry, AuditError>)> {
        if let Some(damage) = &st.damage {
            let e = AuditError::Corrupt(format!(
                "{damage}; appends are refused until an operator has checked it \
                 (run `imagelens audit verify`)"
            ));
            return each_fails(batch, &e);
        }
        let mut answers = Vec::with_capacity(batch.len());
        let mut stored_ok = Vec::with_capacity(batch.len());
        let mut buf = Vec::new();
        let (mut seq, mut hash) = (st.seq, st.hash.clone());
        for (ticket, entry) in batch {
            let mut stored = self.stored(seq + 1, &hash, entry);
            match encode(&stored) {
                Ok((line, h)) => {
                    stored.hash = h;
                    seq = stored.seq;
                    hash.clone_from(&stored.hash);
                    buf.extend_from_slice(&line);
                    stored_ok.push((ticket, stored));
                }
                // Only this entry fails; the next one takes its number.
                Err(e) => answers.push((ticket, Err(e))),
            }
        }
        if stored_ok.is_empty() {
            return answers;
        }
        let before = st.bytes;
        let written = st.file.write_all(&buf).and_then(|()| st.file.sync_data());
        if let Err(source) = written {
            // The requests fail, so the entries must not count: cut off whatever part of the
            // lines reached the file, or the next line would be glued to a torn one.
            let undone = st.file.set_len(before).and_then(|()| st.file.sync_data());
            if let Err(undo) = undone {
                st.damage = Some(format!(
                    "{}: an append failed ({source}) and its partial line could not be cut off \
                     ({undo})",
                    self.trail.display()
                ));
            }
            let e = io_err(&self.trail, source);
            answers.extend(stored_ok.into_iter().map(|(t, _)| (t, Err(share(&e)))));
            return answers;
        }
        st.bytes = before + buf.len() as u64;
        st.seq = seq;
        st.hash = hash;
        match write_head(&self.head, st.seq, &st.hash) {
            Ok(()) => answers.extend(stored_ok.into_iter().map(|(t, s)| (t, Ok(s)))),
            Err(e) => answers.extend(stored_ok.into_iter().map(|(t, _)| (t, Err(share(&e))))),
        }
        answers
    }

    /// The entry as it will be stored at `seq` after `prev`, without its hash yet.
    fn stored(&self, seq: u64, prev: &str, entry: NewEntry) -> AuditEntry {
        AuditEntry {
            seq,
            time: Utc::now(),
            actor: entry.actor,
            role: entry.role,
            address: entry.address,
            action: entry.action,
            purpose: entry.purpose,
            query: entry.query,
            records: entry.records.iter().map(|id| self.record_ref(id)).collect(),
            outcome: entry.outcome,
            unredacted: entry.unredacted,
            detail: entry.detail,
            prev: prev.to_owned(),
            hash: String::new(),
        }
    }

    /// One entry written under the mutex and the exclusive file lock, after a resync (the
    /// first entry of a new trail, [`AuditLog::archive`]).
    fn append_locked(&self, st: &mut State, entry: NewEntry) -> Result<AuditEntry, AuditError> {
        self.append_many_locked(st, vec![(0, entry)])
            .pop()
            .map(|(_, answer)| answer)
            .expect("one answer per entry")
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
        let newest_first = q.newest_first.unwrap_or(false);
        // Newest first reads the whole trail and keeps the last `limit` matches.
        let mut found = std::collections::VecDeque::new();
        let mut lines = Lines::open(&self.trail, len)?;
        let mut line_no = 0_u64;
        while (newest_first || found.len() < limit)
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
            if wanted && limit > 0 {
                if found.len() == limit {
                    found.pop_front();
                }
                found.push_back(entry);
            }
        }
        let mut found = Vec::from(found);
        if newest_first {
            found.reverse();
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

mod entry;
mod files;
mod verify;

use entry::ArchiveDetail;
pub use entry::{ArchiveNote, ArchivedFile, AuditEntry, AuditQuery, NewEntry, VerifyReport};
use files::*;
pub use verify::verify_dir;
use verify::*;

#[cfg(test)]
mod tests;

/// The thread writing a batch ([`AuditLog::append`]): hands every answer to the waiting
/// callers when it is done, and should the write panic, answers each entry of the batch with
/// an error instead, so no caller waits for an answer that will never come.
struct BatchWriter<'a> {
    log: &'a AuditLog,
    tickets: Vec<u64>,
    answers: Vec<(u64, Result<AuditEntry, AuditError>)>,
}

impl Drop for BatchWriter<'_> {
    fn drop(&mut self) {
        let mut q = self.log.queue.lock().unwrap_or_else(|p| p.into_inner());
        // `write_batch` answers every entry of its batch unless it panicked.
        if std::thread::panicking() {
            for t in &self.tickets {
                q.done.insert(
                    *t,
                    Err(AuditError::Corrupt(
                        "the audit append was interrupted; the entry may not be recorded".into(),
                    )),
                );
            }
        }
        q.done.extend(self.answers.drain(..));
        q.writing = false;
        self.log.written.notify_all();
    }
}

/// The same error for every entry of a batch.
fn each_fails(
    batch: Vec<(u64, NewEntry)>,
    e: &AuditError,
) -> Vec<(u64, Result<AuditEntry, AuditError>)> {
    batch.into_iter().map(|(t, _)| (t, Err(share(e)))).collect()
}

/// A copy of `e` for one more caller (`std::io::Error` is not `Clone`: kind and message).
fn share(e: &AuditError) -> AuditError {
    match e {
        AuditError::Io { path, source } => AuditError::Io {
            path: path.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        AuditError::Corrupt(m) => AuditError::Corrupt(m.clone()),
        AuditError::Refused(m) => AuditError::Refused(m.clone()),
        AuditError::Encode(e) => AuditError::Corrupt(format!("audit entry cannot be encoded: {e}")),
    }
}
