//! Verification of a trail and the archive notes it records.

use super::*;

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
pub(super) fn verify_trail(
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

pub(super) fn archive_note(entry: &AuditEntry, detail: ArchiveDetail) -> ArchiveNote {
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
pub(super) fn new_archive_dir(audit: &Path) -> Result<(String, PathBuf), AuditError> {
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
pub(super) fn file_sha256(path: &Path) -> Result<(String, u64), AuditError> {
    let mut file = File::open(path).map_err(|e| io_err(path, e))?;
    let mut h = Sha256::new();
    let bytes = std::io::copy(&mut file, &mut h).map_err(|e| io_err(path, e))?;
    Ok((hex::encode(h.finalize()), bytes))
}
