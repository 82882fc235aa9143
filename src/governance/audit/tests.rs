use super::*;
use serde_json::json;
use std::sync::Arc;

fn new(actor: &str, action: &str) -> NewEntry {
    NewEntry {
        actor: actor.to_owned(),
        role: Some("analyst".to_owned()),
        address: Some("10.0.0.7:51234".to_owned()),
        action: action.to_owned(),
        purpose: Some("case 42".to_owned()),
        query: Some(json!({"q": "red car at night", "filters": {"label": "car", "min": 0.25}})),
        records: vec!["rec-1".to_owned(), "rec-2".to_owned()],
        outcome: "ok".to_owned(),
        unredacted: false,
        detail: None,
    }
}

/// A library with `n` entries, and its trail path.
fn with_entries(n: usize) -> (tempfile::TempDir, AuditLog, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path()).unwrap();
    for i in 0..n {
        log.append(new(&format!("user{i}"), "search")).unwrap();
    }
    let trail = dir.path().join("audit/trail.jsonl");
    (dir, log, trail)
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| format!("{l}\n"))
        .collect()
}

fn problem(log: &AuditLog) -> String {
    let report = log.verify().unwrap();
    assert!(!report.ok, "expected a problem, got {report:?}");
    assert_eq!(report.head, None);
    report.problem.unwrap()
}

#[test]
fn appended_entries_verify_across_reopen() {
    let (dir, log, _) = with_entries(3);
    let report = log.verify().unwrap();
    let last = log.query(&AuditQuery::default()).unwrap().pop().unwrap();
    assert_eq!(
        report,
        VerifyReport {
            entries: 3,
            ok: true,
            problem: None,
            head: Some(last.hash),
            archives: Vec::new(),
        }
    );
    drop(log);
    let log = AuditLog::open(dir.path()).unwrap();
    assert_eq!(log.verify().unwrap(), report);
    assert_eq!(log.damage(), None);
}

#[test]
fn empty_trail_verifies_without_a_head_hash() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path()).unwrap();
    assert!(log.is_empty());
    let report = log.verify().unwrap();
    assert!(report.ok);
    assert_eq!((report.entries, report.head), (0, None));
}

#[test]
fn seq_and_chain_continue_after_reopen() {
    let (dir, log, _) = with_entries(2);
    let second = log.query(&AuditQuery::default()).unwrap().pop().unwrap();
    drop(log);
    let log = AuditLog::open(dir.path()).unwrap();
    assert_eq!(log.len(), 2);
    let third = log.append(new("carol", "view_record")).unwrap();
    assert_eq!(third.seq, 3);
    assert_eq!(third.prev, second.hash);
    assert_eq!(log.len(), 3);
    assert!(log.verify().unwrap().ok);
}

#[test]
fn stored_line_is_the_entry_as_returned() {
    let (_dir, log, trail) = with_entries(0);
    let entry = log.append(new("alice", "export")).unwrap();
    let line = &lines(&trail)[0];
    assert_eq!(serde_json::from_str::<AuditEntry>(line).unwrap(), entry);
    assert_eq!(entry.prev, GENESIS);
}

#[test]
fn editing_any_byte_of_a_middle_entry_is_detected() {
    let (_dir, log, trail) = with_entries(5);
    let original = lines(&trail);
    let middle = original[2].as_bytes().to_vec();
    for pos in 0..middle.len() - 1 {
        let mut edited = middle.clone();
        edited[pos] = if middle[pos] == b'x' { b'y' } else { b'x' };
        let mut all = original.clone();
        all[2] = String::from_utf8(edited).unwrap();
        std::fs::write(&trail, all.concat()).unwrap();
        let problem = problem(&log);
        assert!(
            problem.contains("line 3"),
            "byte {pos}: problem {problem:?} does not name line 3"
        );
    }
}

#[test]
fn editing_a_string_value_breaks_that_entrys_hash() {
    let (_dir, log, trail) = with_entries(5);
    let all = lines(&trail);
    assert!(all[2].contains("\"user2\""));
    for (from, to) in [
        ("user2", "user3"),
        ("case 42", "case 43"),
        ("red car", "rad car"),
    ] {
        let mut edited = all.clone();
        edited[2] = all[2].replacen(from, to, 1);
        std::fs::write(&trail, edited.concat()).unwrap();
        assert_eq!(
            problem(&log),
            "entry 3 (line 3): hash does not match its content"
        );
    }
    // Putting the line back makes the trail whole again.
    std::fs::write(&trail, all.concat()).unwrap();
    assert!(log.verify().unwrap().ok);
}

#[test]
fn deleting_a_middle_entry_is_detected() {
    let (_dir, log, trail) = with_entries(5);
    let mut all = lines(&trail);
    all.remove(2);
    std::fs::write(&trail, all.concat()).unwrap();
    assert_eq!(problem(&log), "entry 4 (line 3) follows entry 2");
}

#[test]
fn swapping_two_entries_is_detected() {
    let (_dir, log, trail) = with_entries(5);
    let mut all = lines(&trail);
    all.swap(1, 2);
    std::fs::write(&trail, all.concat()).unwrap();
    assert_eq!(problem(&log), "entry 3 (line 2) follows entry 1");
}

#[test]
fn deleting_the_last_entries_is_detected_by_the_head() {
    let (dir, log, trail) = with_entries(5);
    let all = lines(&trail);
    std::fs::write(&trail, all[..4].concat()).unwrap();
    assert_eq!(
        problem(&log),
        "the trail ends at entry 4 but its head says 5"
    );
    std::fs::write(&trail, all[..2].concat()).unwrap();
    drop(log);
    let log = AuditLog::open(dir.path()).unwrap();
    assert_eq!(
        problem(&log),
        "the trail ends at entry 2 but its head says 5"
    );
}

#[test]
fn appends_are_refused_after_the_tail_was_removed() {
    let (dir, log, trail) = with_entries(5);
    let all = lines(&trail);
    drop(log);
    std::fs::write(&trail, all[..3].concat()).unwrap();
    let log = AuditLog::open(dir.path()).unwrap();
    assert!(log.damage().unwrap().contains("ends at entry 3"));
    let err = log.append(new("mallory", "search")).unwrap_err();
    assert!(matches!(err, AuditError::Corrupt(_)), "{err:?}");
    assert!(err.to_string().contains("trail.jsonl"), "{err}");
    // Nothing was written, and the head still tells of the removal.
    assert_eq!(lines(&trail), all[..3]);
    assert_eq!(
        problem(&log),
        "the trail ends at entry 3 but its head says 5"
    );
}

#[test]
fn truncating_the_trail_while_open_refuses_appends() {
    let (_dir, log, trail) = with_entries(3);
    let all = lines(&trail);
    std::fs::write(&trail, all[..2].concat()).unwrap();
    let err = log.append(new("alice", "search")).unwrap_err();
    assert!(err.to_string().contains("shrank"), "{err}");
    assert!(log.damage().is_some());
}

#[test]
fn a_forged_entry_with_a_wrong_hash_is_detected() {
    let (_dir, log, trail) = with_entries(5);
    let last = log.query(&AuditQuery::default()).unwrap().pop().unwrap();
    let forged = AuditEntry {
        seq: 6,
        actor: "nobody".to_owned(),
        prev: last.hash.clone(),
        hash: "f".repeat(64),
        ..last
    };
    let mut all = lines(&trail);
    all.push(format!("{}\n", serde_json::to_string(&forged).unwrap()));
    std::fs::write(&trail, all.concat()).unwrap();
    assert_eq!(
        problem(&log),
        "entry 6 (line 6): hash does not match its content"
    );
}

#[test]
fn a_torn_last_line_is_reported_and_appends_are_refused() {
    let (dir, log, trail) = with_entries(2);
    drop(log);
    let mut bytes = std::fs::read(&trail).unwrap();
    bytes.extend_from_slice(b"{\"seq\":3,\"time\":\"20");
    std::fs::write(&trail, &bytes).unwrap();

    let log = AuditLog::open(dir.path()).unwrap();
    assert_eq!(log.len(), 2);
    assert!(problem(&log).contains("line 3 (after entry 2) is torn"));
    let err = log.append(new("alice", "search")).unwrap_err();
    assert!(matches!(err, AuditError::Corrupt(_)), "{err:?}");
    assert!(err.to_string().contains("trail.jsonl"), "{err}");
    assert!(err.to_string().contains("torn"), "{err}");
    // Evidence is left as found.
    assert_eq!(std::fs::read(&trail).unwrap(), bytes);
    // Queries still answer from the complete lines.
    assert_eq!(log.query(&AuditQuery::default()).unwrap().len(), 2);
}

#[test]
fn a_crash_before_the_head_was_replaced_is_recovered_on_open() {
    let (dir, log, _) = with_entries(3);
    let entries = log.query(&AuditQuery::default()).unwrap();
    drop(log);
    let head = serde_json::to_vec(&Head {
        seq: 2,
        hash: entries[1].hash.clone(),
    })
    .unwrap();
    std::fs::write(dir.path().join("audit/head.json"), head).unwrap();

    let log = AuditLog::open(dir.path()).unwrap();
    assert_eq!(log.damage(), None);
    assert!(log.verify().unwrap().ok);
    assert_eq!(log.append(new("alice", "search")).unwrap().seq, 4);
}

#[test]
fn record_ids_never_appear_in_clear_and_are_found_through_their_ref() {
    let (dir, log, trail) = with_entries(2);
    let id = "0123456789abcdef";
    let seen = log
        .append(NewEntry {
            records: vec![id.to_owned()],
            ..new("alice", "view_image")
        })
        .unwrap();
    log.append(new("bob", "search")).unwrap();

    assert_eq!(seen.records, vec![log.record_ref(id)]);
    assert_eq!(log.record_ref(id).len(), 32);
    for file in std::fs::read_dir(dir.path().join("audit")).unwrap() {
        let bytes = std::fs::read(file.unwrap().path()).unwrap();
        assert!(!bytes.windows(id.len()).any(|w| w == id.as_bytes()));
    }
    assert!(!std::fs::read_to_string(&trail).unwrap().contains("rec-1"));

    let q = AuditQuery {
        record: Some(id.to_owned()),
        ..AuditQuery::default()
    };
    assert_eq!(log.query(&q).unwrap(), vec![seen]);
    let other = AuditQuery {
        record: Some("0123456789abcdee".to_owned()),
        ..AuditQuery::default()
    };
    assert!(log.query(&other).unwrap().is_empty());
}

#[test]
fn record_refs_are_stable_per_library_and_differ_between_libraries() {
    let (dir, log, _) = with_entries(0);
    let r = log.record_ref("rec-1");
    drop(log);
    assert_eq!(AuditLog::open(dir.path()).unwrap().record_ref("rec-1"), r);
    let (_other_dir, other, _) = with_entries(0);
    assert_ne!(other.record_ref("rec-1"), r);
}

#[test]
fn query_by_actor_and_date_range_returns_what_the_account_saw_then() {
    let (_dir, log, _) = with_entries(0);
    let mut appended = Vec::new();
    for actor in ["alice", "bob", "alice", "alice", "bob"] {
        appended.push(log.append(new(actor, "search")).unwrap());
        // Distinct timestamps even on a coarse clock.
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let q = AuditQuery {
        actor: Some("alice".to_owned()),
        after: Some(appended[1].time),
        before: Some(appended[4].time),
        ..AuditQuery::default()
    };
    let seqs: Vec<u64> = log.query(&q).unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [3, 4]);

    let limited = AuditQuery {
        actor: Some("alice".to_owned()),
        limit: Some(2),
        ..AuditQuery::default()
    };
    let seqs: Vec<u64> = log.query(&limited).unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 3]);
    // The newest ones instead, newest first (the web page's audit view).
    let newest = AuditQuery {
        newest_first: Some(true),
        ..limited.clone()
    };
    let seqs: Vec<u64> = log.query(&newest).unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [4, 3]);
    let all_newest = AuditQuery {
        newest_first: Some(true),
        ..AuditQuery::default()
    };
    let seqs: Vec<u64> = log
        .query(&all_newest)
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, [5, 4, 3, 2, 1]);

    let by_action = AuditQuery {
        action: Some("export".to_owned()),
        ..AuditQuery::default()
    };
    assert!(log.query(&by_action).unwrap().is_empty());
}

#[test]
fn concurrent_appends_get_consecutive_seqs() {
    let (_dir, log, _) = with_entries(0);
    let log = Arc::new(log);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for i in 0..100 {
                    log.append(new(&format!("t{t}-{i}"), "search")).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(log.len(), 400);
    let all = log.query(&AuditQuery::default()).unwrap();
    let seqs: Vec<u64> = all.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=400).collect::<Vec<_>>());
    let report = log.verify().unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.entries, 400);
}

/// Group commit: appends from many threads at once share writes and syncs (fewer batches
/// than entries), and every caller gets back its own entry, exactly as the trail holds it.
#[test]
fn concurrent_appends_share_syncs_and_each_caller_gets_its_own_entry() {
    let (_dir, log, _) = with_entries(0);
    let log = Arc::new(log);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                (0..50)
                    .map(|i| {
                        let actor = format!("t{t}-{i}");
                        let stored = log.append(new(&actor, "search")).unwrap();
                        assert_eq!(stored.actor, actor, "the caller's own entry");
                        stored
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut returned: Vec<AuditEntry> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    returned.sort_by_key(|e| e.seq);
    let stored = log.query(&AuditQuery::default()).unwrap();
    assert_eq!(returned, stored, "each answer is the entry as stored");
    assert_eq!(
        stored.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=400).collect::<Vec<_>>()
    );
    let report = log.verify().unwrap();
    assert!(report.ok, "{report:?}");
    let (appends, batches) = log.write_counts();
    assert_eq!(appends, 400);
    assert!(
        batches < appends,
        "8 threads appending at once shared no sync: {batches} batches"
    );
    eprintln!("400 concurrent appends written in {batches} batches");
}

#[test]
fn an_append_by_another_process_is_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    let server = AuditLog::open(dir.path()).unwrap();
    let cli = AuditLog::open(dir.path()).unwrap();
    server.append(new("alice", "search")).unwrap();
    assert_eq!(cli.append(new("cli:root", "retention_run")).unwrap().seq, 2);
    assert_eq!(server.append(new("alice", "search")).unwrap().seq, 3);
    assert!(server.verify().unwrap().ok);
}

#[test]
fn two_logs_on_one_directory_appending_from_many_threads_never_fork_the_chain() {
    // Two `AuditLog`s have their own file descriptors, as two processes would: only the
    // OS lock on audit/lock keeps them from appending after the same entry.
    let dir = tempfile::tempdir().unwrap();
    let logs = [
        Arc::new(AuditLog::open(dir.path()).unwrap()),
        Arc::new(AuditLog::open(dir.path()).unwrap()),
    ];
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let log = Arc::clone(&logs[t % 2]);
            std::thread::spawn(move || {
                (0..60)
                    .map(|i| log.append(new(&format!("w{t}-{i}"), "search")).unwrap().seq)
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut seqs: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=480).collect::<Vec<_>>(), "every seq once");
    for log in &logs {
        let report = log.verify().unwrap();
        assert!(report.ok, "{report:?}");
        assert_eq!(report.entries, 480);
    }
    let stored: Vec<u64> = logs[0]
        .query(&AuditQuery {
            limit: Some(10_000),
            ..AuditQuery::default()
        })
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(stored, (1..=480).collect::<Vec<_>>(), "in file order");
    // Every head was renamed into place; no temporary file is left behind.
    let names: Vec<String> = std::fs::read_dir(dir.path().join("audit"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
}

#[test]
fn a_reader_beside_a_writer_never_sees_half_an_append() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Arc::new(AuditLog::open(dir.path()).unwrap());
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let writer = Arc::clone(&writer);
            std::thread::spawn(move || {
                for i in 0..150 {
                    writer.append(new(&format!("w{t}-{i}"), "search")).unwrap();
                }
            })
        })
        .collect();
    let reader = {
        let done = Arc::clone(&done);
        let dir = dir.path().to_owned();
        std::thread::spawn(move || {
            let mut checks = 0;
            while !done.load(Ordering::Relaxed) || checks == 0 {
                let report = verify_dir(&dir).unwrap();
                assert!(report.ok, "a read beside appends: {report:?}");
                checks += 1;
            }
            checks
        })
    };
    for t in threads {
        t.join().unwrap();
    }
    done.store(true, Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
    assert_eq!(verify_dir(dir.path()).unwrap().entries, 300);
}

#[test]
fn verify_dir_writes_nothing() {
    let (dir, log, _) = with_entries(3);
    drop(log);
    let before = snapshot(&dir.path().join("audit"));
    let report = verify_dir(dir.path()).unwrap();
    assert!(report.ok && report.entries == 3, "{report:?}");
    assert_eq!(snapshot(&dir.path().join("audit")), before);
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(snapshot(&p));
        } else {
            out.push((p.clone(), std::fs::read(&p).unwrap()));
        }
    }
    out.sort();
    out
}

#[test]
fn a_damaged_trail_is_archived_whole_and_the_new_trail_records_it() {
    let (dir, log, trail) = with_entries(5);
    let mut all = lines(&trail);
    all[2] = all[2].replacen("user2", "user9", 1);
    std::fs::write(&trail, all.concat()).unwrap();
    let damaged = std::fs::read(&trail).unwrap();
    let head = std::fs::read(dir.path().join("audit/head.json")).unwrap();
    let found = problem(&log);

    let note = log
        .archive("incident 7: trail edited", new("admin", "ignored"))
        .unwrap();
    assert_eq!(note.seq, 1);
    assert_eq!(note.problem, found);
    assert_eq!(note.sound_entries, 2);
    assert_eq!(note.reason, "incident 7: trail edited");
    assert!(note.dir.starts_with("archive/"), "{}", note.dir);
    // The evidence is moved as it was, and its digest is in the new trail.
    let archived = dir.path().join("audit").join(&note.dir);
    assert_eq!(
        std::fs::read(archived.join("trail.jsonl")).unwrap(),
        damaged
    );
    assert_eq!(std::fs::read(archived.join("head.json")).unwrap(), head);
    let digest = hex::encode(Sha256::digest(&damaged));
    assert!(
        note.files
            .iter()
            .any(|f| f.name == "trail.jsonl" && f.sha256 == digest)
    );
    assert!(archived.join("archived.json").exists());

    // The new trail verifies, reports the archive, and takes appends again.
    let report = log.verify().unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.entries, 1);
    assert_eq!(report.archives, vec![note.clone()]);
    let first = log.query(&AuditQuery::default()).unwrap().remove(0);
    assert_eq!(
        (first.action.as_str(), first.actor.as_str()),
        ("audit_archive", "admin")
    );
    assert_eq!(log.append(new("alice", "search")).unwrap().seq, 2);
    drop(log);
    let log = AuditLog::open(dir.path()).unwrap();
    assert_eq!(log.damage(), None);
    let report = verify_dir(dir.path()).unwrap();
    assert!(report.ok && report.entries == 2, "{report:?}");
    assert_eq!(report.archives, vec![note.clone()]);

    // The archive is evidence too: changing or removing it fails verification.
    std::fs::write(archived.join("trail.jsonl"), b"").unwrap();
    let p = problem(&log);
    assert!(
        p.contains("missing or changed") && p.contains("trail.jsonl"),
        "{p}"
    );
    std::fs::write(archived.join("trail.jsonl"), &damaged).unwrap();
    assert!(log.verify().unwrap().ok);
    std::fs::remove_file(archived.join("head.json")).unwrap();
    assert!(problem(&log).contains("head.json"));
}

#[test]
fn a_trail_that_verifies_or_a_blank_reason_is_not_archived() {
    let (dir, log, trail) = with_entries(3);
    let before = std::fs::read(&trail).unwrap();
    let err = log.archive("routine", new("admin", "x")).unwrap_err();
    assert!(err.to_string().contains("nothing to archive"), "{err}");
    std::fs::write(&trail, lines(&trail)[..2].concat()).unwrap();
    let err = log.archive("  ", new("admin", "x")).unwrap_err();
    assert!(err.to_string().contains("reason"), "{err}");
    assert!(!dir.path().join("audit/archive").exists());
    assert_ne!(std::fs::read(&trail).unwrap(), before);
}

#[cfg(unix)]
#[test]
fn key_and_trail_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, _log, trail) = with_entries(1);
    for path in [dir.path().join("audit/key"), trail] {
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", path.display());
    }
}

#[test]
fn a_key_of_the_wrong_length_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("audit")).unwrap();
    std::fs::write(dir.path().join("audit/key"), b"short").unwrap();
    let err = AuditLog::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("5 bytes"), "{err}");
}
