//! The trail's files: the lock, entry encoding and chain hashes, where appending resumes, the
//! head, line reading, the pseudonym key and private folders.

use super::*;
use indexer::json_file::{AtomicWrite, write_atomic_with};

/// Name of the trail's lock file inside `audit/`.
pub(super) const LOCK_FILE: &str = "lock";

pub(super) fn open_lock_file(path: &Path) -> Result<File, AuditError> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map_err(|e| io_err(path, e))
}

/// An OS lock on `audit/lock`, released when dropped.
pub(super) struct FileLock<'a>(&'a File);

impl<'a> FileLock<'a> {
    /// Waits for the exclusive lock (appends).
    pub(super) fn exclusive(file: &'a File, path: &Path) -> Result<Self, AuditError> {
        file.lock().map_err(|e| io_err(path, e))?;
        Ok(Self(file))
    }

    /// Waits for a shared lock (readers).
    pub(super) fn shared(file: &'a File, path: &Path) -> Result<Self, AuditError> {
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
pub(super) fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
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
pub(super) fn encode(entry: &AuditEntry) -> Result<(Vec<u8>, String), AuditError> {
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
pub(super) fn chain_hash(prev: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(b"\n");
    h.update(body);
    hex::encode(h.finalize())
}

/// Parses a stored line (without its newline) into the entry and the exact bytes its hash
/// covers.
pub(super) fn parse_line(line: &[u8]) -> Result<(AuditEntry, Vec<u8>), String> {
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
pub(super) struct Resume {
    pub(super) len: u64,
    pub(super) seq: u64,
    pub(super) hash: String,
    pub(super) damage: Option<String>,
    /// The head is one entry behind the last line and names its `prev`: a crash between the
    /// two writes of an append.
    pub(super) head_lags: bool,
}

/// Reads the last complete line of the trail and the head, and says whether appending can
/// go on from them.
pub(super) fn read_resume(trail: &Path, head_path: &Path) -> Result<Resume, AuditError> {
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
pub(super) struct Tail {
    pub(super) len: u64,
    /// The last complete line, without its newline.
    pub(super) last: Option<Vec<u8>>,
    /// Bytes after the last newline: a line whose write was interrupted.
    pub(super) torn: u64,
}

/// Reads the end of the trail backwards, so opening a long trail costs one line, not the file.
pub(super) fn read_tail(path: &Path) -> Result<Tail, AuditError> {
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
pub(super) fn read_head(path: &Path) -> Result<Result<Head, String>, AuditError> {
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

/// Replaces the head atomically (mode 0600), through a temporary file whose name no other
/// writer uses (`head.json.<pid>.<n>.tmp`): two writers can never rename each other's file away.
pub(super) fn write_head(path: &Path, seq: u64, hash: &str) -> Result<(), AuditError> {
    static APPENDS: AtomicU64 = AtomicU64::new(0);
    let head = Head {
        seq,
        hash: hash.to_owned(),
    };
    let n = APPENDS.fetch_add(1, Ordering::Relaxed);
    let how = AtomicWrite {
        tmp: Some(path.with_file_name(format!("head.json.{}.{n}.tmp", std::process::id()))),
        mode: Some(0o600),
        ..AtomicWrite::default()
    };
    write_atomic_with(path, &serde_json::to_vec(&head)?, &how).map_err(|e| match e {
        indexer::Error::Io { source, .. } => io_err(path, source),
        other => io_err(path, std::io::Error::other(other.to_string())),
    })
}

pub(super) fn trail_len(path: &Path) -> Result<u64, AuditError> {
    Ok(std::fs::metadata(path).map_err(|e| io_err(path, e))?.len())
}

/// Complete lines of the first `len` bytes of a file, each with its newline (the last may
/// lack it: a torn line).
pub(super) struct Lines {
    pub(super) reader: BufReader<std::io::Take<File>>,
    pub(super) path: PathBuf,
    pub(super) buf: Vec<u8>,
}

impl Lines {
    pub(super) fn open(path: &Path, len: u64) -> Result<Self, AuditError> {
        let file = File::open(path).map_err(|e| io_err(path, e))?;
        Ok(Self {
            reader: BufReader::new(file.take(len)),
            path: path.to_owned(),
            buf: Vec::new(),
        })
    }

    pub(super) fn next_line(&mut self) -> Result<Option<&[u8]>, AuditError> {
        self.buf.clear();
        let n = self
            .reader
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| io_err(&self.path, e))?;
        Ok((n > 0).then_some(self.buf.as_slice()))
    }
}

/// Reads the pseudonym key, or makes it when the library has none.
pub(super) fn load_or_create_key(path: &Path) -> Result<[u8; KEY_LEN], AuditError> {
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

pub(super) fn key_from(path: &Path, bytes: &[u8]) -> Result<[u8; KEY_LEN], AuditError> {
    bytes.try_into().map_err(|_| {
        AuditError::Corrupt(format!(
            "audit key {} is {} bytes, expected {KEY_LEN}",
            path.display(),
            bytes.len()
        ))
    })
}

pub(super) fn create_private_dir(path: &Path) -> Result<(), AuditError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    // Who saw what is itself sensitive.
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path).map_err(|e| io_err(path, e))
}

/// Makes a new or renamed directory entry durable ([`indexer::json_file::sync_dir`]); best
/// effort, as not every platform can open a directory.
pub(super) fn sync_dir(dir: &Path) {
    let _ = indexer::json_file::sync_dir(dir);
}

pub(super) fn io_err(path: &Path, source: std::io::Error) -> AuditError {
    AuditError::Io {
        path: path.display().to_string(),
        source,
    }
}
