use super::*;

fn server(url: &str, collection: &str) -> StoreSettings {
    format!("qdrant+{url}/{collection}").parse().unwrap()
}

#[test]
fn a_library_refuses_another_store_and_resolve_keeps_the_recorded_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("lib");
    drop(Library::open(&dir, StoreSettings::Edge).unwrap());
    let err = Library::open(&dir, server("http://127.0.0.1:1", "c")).expect_err("switch");
    let message = err.to_string();
    assert!(
        message.contains("keeps its vectors in edge")
            && message.contains("never switches vector stores"),
        "{message}"
    );
    assert_eq!(
        StoreSettings::resolve(&dir, None, Some("k".into())).unwrap(),
        StoreSettings::Edge,
        "no --store: the recorded store"
    );
    let fresh = tmp.path().join("fresh");
    assert_eq!(
        StoreSettings::resolve(&fresh, None, None).unwrap(),
        StoreSettings::Edge
    );
    // The library still opens with its own store, unchanged.
    let lib = Library::open(&dir, StoreSettings::Edge).unwrap();
    assert_eq!(lib.manifest().store, StoreSettings::Edge);
    assert!(lib.server_status().unwrap().is_none());
}

#[test]
fn a_store_that_cannot_be_opened_leaves_no_library_pinned_to_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("lib");
    // Nothing listens on port 1 (and without the `server` feature it is not compiled in):
    // either way the open fails and records nothing.
    let mut settings = server("http://127.0.0.1:1", "c");
    if let StoreSettings::Server(s) = &mut settings {
        s.timeout_secs = Some(2);
    }
    Library::open(&dir, settings).expect_err("no server");
    assert!(!dir.join("manifest.json").exists());
    drop(Library::open(&dir, StoreSettings::Edge).expect("the directory is still usable"));
}

#[test]
fn a_new_server_library_whose_part_collections_would_be_too_long_is_refused_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("lib");
    // 250 characters: a valid collection, but `<it>.regions` would pass Qdrant's 255.
    let long = "c".repeat(250);
    let err = Library::open(&dir, server("http://127.0.0.1:1", &long)).expect_err("too long");
    let message = err.to_string();
    assert!(
        message.contains("too long for its parts' collections") && message.contains("258"),
        "{message}"
    );
    assert!(!dir.join("manifest.json").exists(), "nothing recorded");
    assert_eq!(server_part_collection("faces", "images"), "faces.images");
}
