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

fn settings_for(data: &Path, model: Option<String>) -> AppSettings {
    AppSettings {
        data_dir: data.to_owned(),
        model,
        no_model: false,
        precision: None,
        store: StoreSettings::Edge,
        fusion: crate::search::Fusion::default(),
        token: None,
        user: None,
        purpose: None,
    }
}

#[test]
fn an_app_writes_its_library_only_under_the_lock_and_while_no_clone_shares_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("lib");
    let settings = settings_for(&data, None);
    // Not locked by this process: nothing is opened, nothing created.
    let err = App::open(&settings).unwrap_err();
    assert!(err.to_string().contains("without its lock"), "{err}");
    assert!(!data.join("manifest.json").exists());
    let _lock = lock_data_dir(&data, "ingest").unwrap();
    let mut app = App::open(&settings).unwrap();
    assert!(app.library_mut().is_ok());
    // A clone (the server's state, another thread) shares the library: no writer.
    let clone = app.clone();
    let err = app.library_mut().unwrap_err();
    assert!(err.to_string().contains("shared"), "{err}");
    drop(clone);
    // Nor while its library is handed out.
    let handed = app.library().unwrap().clone();
    assert!(app.library_mut().is_err());
    drop(handed);
    assert!(app.library_mut().is_ok());
}

#[test]
fn an_app_loads_its_model_once_and_every_clone_gets_the_same_one() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = dir.path().join("tiny");
    models::tiny::write(&tiny, 7).unwrap();
    let data = dir.path().join("lib");
    let _lock = lock_data_dir(&data, "search").unwrap();
    let app = App::open(&settings_for(&data, Some(tiny.display().to_string()))).unwrap();
    let clone = app.clone();
    let first = app.model().unwrap().embedder.expect("the model given");
    let again = clone.model().unwrap().embedder.unwrap();
    assert!(Arc::ptr_eq(&first, &again), "loaded once, shared");
    // --no-model: none, and why.
    let none = App::open(&AppSettings {
        no_model: true,
        ..settings_for(&data, None)
    })
    .unwrap()
    .model()
    .unwrap();
    assert!(none.embedder.is_none());
    assert_eq!(none.offline_reason.as_deref(), Some("--no-model was given"));
    // An App given its library open has no model settings: it loads none.
    let around = App::around(app.library().unwrap().clone()).unwrap();
    assert!(around.model().unwrap().embedder.is_none());
}
