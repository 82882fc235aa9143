//! Unit tests of the parent module.

use super::*;

#[test]
fn a_second_opener_in_another_file_description_is_refused_and_told_who_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("lib");
    let lock = lock_data_dir(&data, "serve").unwrap();
    lock.set_url("http://127.0.0.1:7878").unwrap();
    // Same process: the same lock, shared.
    let again = lock_data_dir(&data, "search").unwrap();
    assert_eq!(again.holder().command, "serve");
    assert!(holds_data_dir_lock(&data));
    // Another opener with its own file description (as another process has) is refused.
    let mut other = OpenOptions::new()
        .read(true)
        .write(true)
        .open(data.join(LOCK_FILE))
        .unwrap();
    assert!(matches!(
        other.try_lock(),
        Err(std::fs::TryLockError::WouldBlock)
    ));
    let holder = read_holder(&mut other).unwrap();
    assert_eq!(holder.pid, std::process::id());
    assert_eq!(holder.url.as_deref(), Some("http://127.0.0.1:7878"));
    let busy = Busy {
        dir: data.clone(),
        holder: Some(holder),
    };
    let msg = busy.refusal("token revoke", Some("DELETE /v1/tokens/ID"));
    assert!(msg.contains("`imagelens serve` (pid "), "{msg}");
    assert!(msg.contains("DELETE /v1/tokens/ID"), "{msg}");
    assert!(msg.contains("nothing was changed"), "{msg}");
    drop((lock, again));
    assert!(!holds_data_dir_lock(&data));
    other.try_lock().unwrap();
}

#[cfg(unix)]
#[test]
fn a_new_data_directory_and_its_lock_file_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("new/lib");
    let _lock = lock_data_dir(&data, "ingest").unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join(LOCK_FILE)), 0o600);
}

#[test]
fn a_directory_that_is_not_a_library_gets_no_lock_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let err = lock_data_dir(dir.path(), "ingest").unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");
    assert!(!dir.path().join(LOCK_FILE).exists());
}
