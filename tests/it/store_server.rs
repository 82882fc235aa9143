//! The CLI end to end on a real Qdrant server (`--features server`): ingest, info, search and
//! delete with `--store qdrant+http://...`, the same answers as the embedded store, a library
//! that refuses to switch stores, and a one-line error naming the URL when the server is gone;
//! an API key from the environment or the settings file; an ingest killed after an upsert that
//! resumes without orphans or duplicates; the HTTP API's 503 with `Retry-After` while the
//! server is down, and 200 once it is back.
//!
//! Starts `../shared/bin/qdrant` (or `$IMAGELENS_QDRANT_BIN`) on free loopback ports and kills
//! it at the end; skips, saying so, when there is no binary (fails instead when
//! `IMAGELENS_REQUIRE_QDRANT` is set).

use indexer::store::{QdrantProcess, ServerStore, VectorFilter, VectorStore};

use crate::common::{Fixture, bin, fixture, ids, ok_json};

fn run_on(
    fx: &Fixture,
    data: &std::path::Path,
    store: Option<&str>,
    args: &[&str],
) -> std::process::Output {
    let mut c = bin();
    c.arg("--data-dir").arg(data).arg("--model").arg(&fx.model);
    c.env_remove("IMAGELENS_STORE");
    if let Some(s) = store {
        c.arg("--store").arg(s);
    }
    c.args(args).output().unwrap()
}

/// A Qdrant server of our own, or `None` (saying the test skipped) without the binary; a
/// failure instead when `IMAGELENS_REQUIRE_QDRANT` is set (as `.ci/run` sets it).
fn started() -> Option<QdrantProcess> {
    QdrantProcess::start_or_skip()
}

fn ingest_args(fx: &Fixture) -> Vec<String> {
    vec![
        "ingest".into(),
        "--annotations".into(),
        fx.synth.instances.display().to_string(),
        fx.synth.captions.display().to_string(),
        "--images".into(),
        fx.synth.images.display().to_string(),
        "--dataset".into(),
        "synth".into(),
        "--json".into(),
    ]
}

#[test]
fn ingest_search_info_and_delete_through_the_cli_on_a_qdrant_server() {
    let Some(mut server) = started() else { return };
    let url = server.grpc_url();
    let store = format!("qdrant+{url}/e2e?shards=2");
    let fx = fixture(24);
    let args = ingest_args(&fx);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    // The same export into the embedded store and into the server.
    let edge = fx.dir.path().join("edge-library");
    ok_json(&run_on(&fx, &edge, None, &args));
    ok_json(&run_on(&fx, &fx.data, Some(&store), &args));

    // info shows the server, the collection, its layout and replicas; no key anywhere.
    let info = ok_json(&run_on(&fx, &fx.data, None, &["info", "--json"]));
    let server_info = &info["server"];
    assert_eq!(server_info["url"], url.as_str());
    assert_eq!(server_info["version"], "1.18.3");
    assert_eq!(server_info["collection"], "e2e");
    // A new library keeps image and region points apart: a collection each.
    assert_eq!(
        server_info["collections"],
        serde_json::json!(["e2e.images", "e2e.regions"])
    );
    assert_eq!(info["manifest"]["vector_layout"], "split");
    assert_eq!(info["manifest"]["format_version"], 2);
    assert_eq!(server_info["exists"], true);
    assert_eq!(server_info["shard_number"], 2);
    assert_eq!(server_info["points"], info["manifest"]["counts"]["points"]);
    assert!(server_info["points"].as_u64().unwrap() >= 24);
    // Two shards of each collection.
    let replicas = server_info["replicas"].as_array().unwrap();
    assert_eq!(replicas.len(), 4, "{server_info}");
    for part in ["e2e.images", "e2e.regions"] {
        assert_eq!(
            replicas.iter().filter(|r| r["collection"] == part).count(),
            2
        );
    }
    assert_eq!(info["manifest"]["store"]["backend"], "server");
    let text = run_on(&fx, &fx.data, None, &["info"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("(Qdrant 1.18.3; images and regions apart)")
            && text.contains("collection   e2e.images, e2e.regions: ")
            && text.contains("2 shard(s)"),
        "{text}"
    );

    // Hybrid search answers as the embedded store does (both exact at this size), without
    // --store: the library remembers its store.
    for query in [
        ["search", "dog", "--limit", "50", "--json"],
        ["search", "a red car", "--limit", "10", "--json"],
    ] {
        let on_server = ok_json(&run_on(&fx, &fx.data, None, &query));
        let embedded = ok_json(&run_on(&fx, &edge, None, &query));
        assert_eq!(on_server["semantic"], true);
        assert_eq!(ids(&on_server), ids(&embedded), "{query:?}");
    }

    // A library never switches stores silently.
    let out = run_on(&fx, &fx.data, Some("edge"), &["info"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("never switches vector stores"), "{err}");
    let out = run_on(&fx, &edge, Some(&store), &["info"]);
    assert!(
        !out.status.success(),
        "an embedded library refuses the server"
    );

    // Deleting a record removes its points from the server before the receipt.
    let victim = ids(&ok_json(&run_on(
        &fx,
        &fx.data,
        None,
        &["search", "dog", "--limit", "1", "--json"],
    )))[0]
        .clone();
    let out = run_on(
        &fx,
        &fx.data,
        None,
        &["delete", "--id", &victim, "--reason", "test", "--json"],
    );
    ok_json(&out);
    // Each collection holds its own points only, and none of the deleted record's.
    for (part, vectors) in [
        ("e2e.images", vec!["image", "text"]),
        ("e2e.regions", vec!["region"]),
    ] {
        let direct = ServerStore::connect(&url, part).unwrap();
        assert_eq!(
            direct
                .count(&VectorFilter::records(vec![victim.clone()]))
                .unwrap(),
            0
        );
        assert!(
            direct.count(&VectorFilter::default()).unwrap() > 0,
            "{part}"
        );
        let mut names = direct.collection_spec().unwrap().vectors;
        names.sort();
        assert_eq!(names, vectors, "{part}");
    }

    // The server goes away: one line naming the URL, exit 1, no panic, no hang.
    server.kill();
    let started = std::time::Instant::now();
    let out = run_on(&fx, &fx.data, None, &["search", "dog", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert!(
        lines[0].contains(&url) && lines[0].contains("unavailable"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(40),
        "{:?}",
        started.elapsed()
    );
    assert!(out.stdout.is_empty(), "nothing on stdout");

    // Back up: the library works again.
    server.restart().unwrap();
    let v = ok_json(&run_on(&fx, &fx.data, None, &["search", "dog", "--json"]));
    assert!(!ids(&v).contains(&victim), "deleted stays deleted");
}

/// A server library made as builds before format 2 made them (image and region points in one
/// collection) keeps its layout: the CLI ingests into it, `info` says so, and it answers as a
/// new library (a collection per part) of the same export; `optimize --layout split` refuses
/// it with the reason, changing nothing.
#[test]
fn a_server_library_of_one_collection_keeps_its_layout_and_answers_as_a_new_one() {
    let Some(server) = started() else { return };
    let url = server.grpc_url();
    let fx = fixture(24);
    let args = ingest_args(&fx);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let old = fx.dir.path().join("one-collection");
    let store: indexer::StoreSettings = format!("qdrant+{url}/old").parse().unwrap();
    drop(indexer::Library::open_with_layout(&old, store, indexer::VectorLayout::Single).unwrap());
    ok_json(&run_on(&fx, &old, None, &args));
    ok_json(&run_on(
        &fx,
        &fx.data,
        Some(&format!("qdrant+{url}/new")),
        &args,
    ));

    let info = ok_json(&run_on(&fx, &old, None, &["info", "--json"]));
    assert_eq!(info["manifest"]["vector_layout"], "single", "{info}");
    assert_eq!(info["manifest"]["format_version"], 1, "{info}");
    assert_eq!(info["server"]["collections"], serde_json::json!(["old"]));
    assert_eq!(
        info["server"]["points"],
        info["manifest"]["counts"]["points"]
    );
    let new = ok_json(&run_on(&fx, &fx.data, None, &["info", "--json"]));
    assert_eq!(new["server"]["points"], info["server"]["points"], "{new}");
    let text = run_on(&fx, &old, None, &["info"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("(Qdrant 1.18.3; one collection)"), "{text}");

    for query in [
        ["search", "dog", "--limit", "50", "--json"],
        ["search", "a red car", "--limit", "10", "--json"],
    ] {
        let one = ok_json(&run_on(&fx, &old, None, &query));
        let apart = ok_json(&run_on(&fx, &fx.data, None, &query));
        assert_eq!(ids(&one), ids(&apart), "{query:?}");
    }

    let out = run_on(&fx, &old, None, &["optimize", "--layout", "split"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("only an embedded library is moved apart"),
        "{err}"
    );
    let after = ok_json(&run_on(&fx, &old, None, &["info", "--json"]));
    assert_eq!(after["manifest"]["vector_layout"], "single", "{after}");
    assert_eq!(after["server"]["points"], info["server"]["points"]);
}

/// `imagelens optimize` on a server library: bad numbers change nothing; `--index hnsw
/// --quantization int8` builds graphs and int8 copies on the server; `info` (a new process,
/// so the settings come back from the collection) shows them; search answers as the embedded
/// store does.
#[test]
fn optimize_builds_graphs_and_int8_on_a_qdrant_server_and_info_shows_them() {
    let Some(server) = started() else { return };
    let url = server.grpc_url();
    let store = format!("qdrant+{url}/tuned");
    let fx = fixture(24);
    let args = ingest_args(&fx);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let edge = fx.dir.path().join("edge-library");
    ok_json(&run_on(&fx, &edge, None, &args));
    ok_json(&run_on(&fx, &fx.data, Some(&store), &args));
    let query = ["search", "dog", "--limit", "10", "--json"];
    let embedded = ids(&ok_json(&run_on(&fx, &edge, None, &query)));

    // New collections start with the embedded parts' defaults; a couple of dozen records
    // are below any default graph threshold.
    let info = ok_json(&run_on(&fx, &fx.data, None, &["info", "--json"]));
    // ... less the growing full-scan threshold, which only the embedded store applies.
    let parts = indexer::store::IndexSettings {
        full_scan_share: 0.0,
        ..indexer::store::IndexSettings::for_parts()
    };
    assert_eq!(
        info["index"]["settings"],
        serde_json::to_value(parts).unwrap(),
        "{info}"
    );
    assert_eq!(
        info["index"]["full_scan_kb"],
        serde_json::json!([40_000, 40_000]),
        "{info}"
    );
    assert_eq!(info["index"]["indexed_vectors"], 0, "{info}");
    assert_eq!(info["index"]["points"], info["server"]["points"], "{info}");
    assert!(
        info["index"]["disk_bytes"].is_null(),
        "not reported: {info}"
    );

    // Out-of-range numbers are refused with the reason, and nothing changes.
    let bad = run_on(&fx, &fx.data, None, &["optimize", "--m", "1000"]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("m must lie in 4..=128"), "{err}");
    let bad = run_on(
        &fx,
        &fx.data,
        None,
        &["optimize", "--full-scan-share", "0.08"],
    );
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("full_scan_share 0.08 is applied by the embedded store only"),
        "{err}"
    );
    let info = ok_json(&run_on(&fx, &fx.data, None, &["info", "--json"]));
    assert_eq!(info["index"]["settings"]["m"], 16, "{info}");
    assert_eq!(info["index"]["settings"]["full_scan_share"], 0.0, "{info}");

    let v = ok_json(&run_on(
        &fx,
        &fx.data,
        None,
        &[
            "optimize",
            "--index",
            "hnsw",
            "--quantization",
            "int8",
            "--ef",
            "64",
            "--full-scan-kb",
            "1",
            "--json",
        ],
    ));
    assert_eq!(v["index"]["settings"]["kind"], "hnsw", "{v}");
    assert_eq!(v["index"]["settings"]["quantization"], "int8", "{v}");
    let points = v["index"]["points"].as_u64().unwrap();
    assert!(points >= 24, "{v}");
    assert!(
        v["index"]["indexed_vectors"].as_u64().unwrap() >= points,
        "every point's vectors in a graph after optimize: {v}"
    );

    // A new process reads the settings back from the collection.
    let info = ok_json(&run_on(&fx, &fx.data, None, &["info", "--json"]));
    let settings = &info["index"]["settings"];
    assert_eq!(settings["kind"], "hnsw", "{info}");
    assert_eq!(settings["quantization"], "int8");
    assert_eq!(settings["ef"], 64);
    assert_eq!(settings["full_scan_kb"], 1);
    assert_eq!(info["server"]["status"], "green", "optimize waited: {info}");
    let text = run_on(&fx, &fx.data, None, &["info"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(
            "index        hnsw, m 16 ef_construct 100 ef 64 (acorn under 0.2), int8 x2 rescored"
        ) && text.contains("disk use unknown"),
        "{text}"
    );
    for part in ["tuned.images", "tuned.regions"] {
        let direct = ServerStore::connect(&url, part).unwrap();
        let read_back = direct.index_settings().unwrap();
        assert_eq!(read_back.kind, indexer::store::IndexKind::Hnsw, "{part}");
        assert_eq!(read_back.quantization, indexer::store::Quantization::Int8);
    }

    // A couple of dozen records: the graph and the rescored int8 copies find what the
    // embedded store's exact scan found.
    let on_server = ok_json(&run_on(&fx, &fx.data, None, &query));
    assert_eq!(on_server["semantic"], true);
    assert_eq!(ids(&on_server), embedded);
}

/// `PATCH /collections/{name}` with `body` on the server's REST port (another client).
fn patch_collection(server: &QdrantProcess, name: &str, body: &str) {
    let (code, answer) = server
        .http_send(
            "PATCH",
            &format!("/collections/{name}"),
            body,
            std::time::Duration::from_secs(10),
        )
        .unwrap();
    assert_eq!(code, 200, "{answer}");
}

#[test]
fn optimize_whose_rebuild_outlasts_the_timeout_fails_saying_the_settings_are_applied() {
    let Some(server) = started() else { return };
    let url = server.grpc_url();
    let fx = fixture(24);
    let args = ingest_args(&fx);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok_json(&run_on(
        &fx,
        &fx.data,
        Some(&format!("qdrant+{url}/slow")),
        &args,
    ));
    // Another client stops the server's optimizers: no rebuild can finish.
    for part in ["slow.images", "slow.regions"] {
        patch_collection(
            &server,
            part,
            r#"{"optimizers_config": {"max_optimization_threads": 0}}"#,
        );
    }
    let out = run_on(
        &fx,
        &fx.data,
        Some(&format!("qdrant+{url}/slow?timeout=3")),
        &["optimize", "--index", "hnsw", "--full-scan-kb", "1"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("index settings applied, but the index is not built yet")
            && err.contains("still optimizing"),
        "{err}"
    );
    // The settings are in, and searches answer meanwhile.
    let info = ok_json(&run_on(&fx, &fx.data, None, &["info", "--json"]));
    assert_eq!(info["index"]["settings"]["kind"], "hnsw", "{info}");
    let hits = ok_json(&run_on(&fx, &fx.data, None, &["search", "dog", "--json"]));
    assert!(!ids(&hits).is_empty(), "{hits}");
}

/// A server that demands an API key: the CLI takes it from `IMAGELENS_QDRANT_API_KEY` or from
/// `[store] api_key` in the settings file, as the product reads them; a wrong or a missing key
/// is one line on stderr naming the URL, exit 1, no panic, and the key is never printed.
#[test]
fn the_cli_reaches_a_server_with_an_api_key_and_a_wrong_or_missing_key_is_one_line() {
    if QdrantProcess::binary_or_skip().is_none() {
        return;
    }
    let server = QdrantProcess::start_with_api_key("s3cret-key").unwrap();
    let url = server.grpc_url();
    let store = format!("qdrant+{url}/keyed?timeout=5");
    let fx = fixture(8);
    let args = ingest_args(&fx);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let with_key = |key: Option<&str>, config: Option<&std::path::Path>, args: &[&str]| {
        let mut c = bin();
        c.arg("--data-dir")
            .arg(&fx.data)
            .arg("--model")
            .arg(&fx.model);
        c.env_remove("IMAGELENS_QDRANT_API_KEY");
        if let Some(key) = key {
            c.env("IMAGELENS_QDRANT_API_KEY", key);
        }
        if let Some(config) = config {
            c.arg("--config").arg(config);
        }
        c.args(args).output().unwrap()
    };

    // The key from the environment.
    let mut ingest = vec!["--store", store.as_str()];
    ingest.extend_from_slice(&args);
    ok_json(&with_key(Some("s3cret-key"), None, &ingest));
    // The key from the settings file.
    let config = fx.dir.path().join("settings.toml");
    std::fs::write(&config, "[store]\napi_key = \"s3cret-key\"\n").unwrap();
    let hits = ok_json(&with_key(None, Some(&config), &["search", "dog", "--json"]));
    assert!(!ids(&hits).is_empty(), "{hits}");
    let info = ok_json(&with_key(None, Some(&config), &["info", "--json"]));
    assert_eq!(info["server"]["collection"], "keyed", "{info}");
    assert!(!info.to_string().contains("s3cret"), "never shown: {info}");

    // A wrong key (the environment wins over the file) and no key at all.
    for (key, config, says) in [
        (
            Some("wrong-key"),
            Some(config.as_path()),
            "refused the API key",
        ),
        (None, None, "asks for an API key"),
    ] {
        let out = with_key(key, config, &["search", "dog", "--json"]);
        assert_eq!(out.status.code(), Some(1), "{key:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "one line: {err}");
        assert!(lines[0].contains(&url) && lines[0].contains(says), "{err}");
        assert!(
            !err.contains("panicked") && !err.contains("s3cret"),
            "{err}"
        );
        assert!(out.stdout.is_empty(), "nothing on stdout");
    }
}

/// (keyword record ids, keyword docs, record ids with points on the server, points) of the
/// server library in `data`, opened with the store its manifest records.
fn server_state(
    data: &std::path::Path,
) -> (
    std::collections::BTreeSet<String>,
    u64,
    std::collections::BTreeSet<String>,
    usize,
) {
    let store = indexer::StoreSettings::resolve(data, None, None).unwrap();
    assert!(
        matches!(store, indexer::StoreSettings::Server(_)),
        "{store:?}"
    );
    let lib = indexer::Library::open(data, store).unwrap();
    let ids = lib.keyword().ids().unwrap();
    let docs = lib.keyword().len();
    let store_ids = lib.store().distinct("record_id").unwrap();
    let points = lib.store().count(&VectorFilter::default()).unwrap();
    (ids, docs, store_ids, points)
}

/// Ingest resume on a server (the embedded version is `crash.rs`): an ingest killed with
/// SIGKILL right after a batch's vectors reached the server (pause point `upserted`) leaves
/// points of a record the keyword index does not hold; the next run's reconcile removes them
/// over the network, and the finished library equals one uninterrupted ingest.
#[test]
fn an_ingest_killed_after_an_upsert_to_the_server_resumes_without_orphans_or_duplicates() {
    use std::io::{BufRead, BufReader};
    let Some(server) = started() else { return };
    let store = format!("qdrant+{}/resume", server.grpc_url());
    let fx = fixture(12);
    let spawn = |data: &std::path::Path, pause_at: Option<&str>| {
        let mut c = bin();
        c.env_remove("IMAGELENS_STORE")
            .arg("--data-dir")
            .arg(data)
            .arg("--model")
            .arg(&fx.model)
            .arg("--store")
            .arg(&store)
            .args(["ingest", "--annotations"])
            .arg(&fx.synth.instances)
            .arg(&fx.synth.captions)
            .arg("--images")
            .arg(&fx.synth.images)
            .args(["--dataset", "synth", "--batch-size", "1", "--no-progress"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        if let Some(p) = pause_at {
            c.env("IMAGELENS_PAUSE_AT", p);
        }
        c.spawn().unwrap()
    };
    // Kills the child once it says it paused; panics if it ends first.
    let kill_when_paused = |mut child: std::process::Child, at: &str| {
        let stderr = child.stderr.take().unwrap();
        let paused = BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.starts_with("imagelens-test: paused at"));
        assert!(paused, "the ingest ended before pausing at {at}");
        child.kill().unwrap();
        let _ = child.wait();
    };

    // The reference: the embedded store, one uninterrupted run.
    let edge = fx.dir.path().join("edge-library");
    ok_json(&run_on(
        &fx,
        &edge,
        None,
        &ingest_args(&fx)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    ));
    let reference = indexer::Library::open(&edge, indexer::StoreSettings::Edge).unwrap();
    let ref_ids = reference.keyword().ids().unwrap();
    let ref_store = reference.store().distinct("record_id").unwrap();
    let ref_points = reference.store().count(&VectorFilter::default()).unwrap();
    drop(reference);
    assert_eq!(ref_ids.len(), 12);

    // Killed after the second batch's upsert: its record's points are on the server, the
    // record is not in the keyword index.
    kill_when_paused(spawn(&fx.data, Some("upserted:2")), "upserted:2");
    let (ids, docs, store_ids, _) = server_state(&fx.data);
    assert_eq!(docs, ids.len() as u64);
    let orphans: Vec<&String> = store_ids.difference(&ids).collect();
    assert!(
        !orphans.is_empty(),
        "points without a record: {store_ids:?} {ids:?}"
    );

    // The next run reconciles first: the orphans go from the server.
    kill_when_paused(spawn(&fx.data, Some("reconciled:1")), "reconciled:1");
    let (ids, _, store_ids, _) = server_state(&fx.data);
    assert!(
        store_ids.is_subset(&ids),
        "orphans removed: {store_ids:?} {ids:?}"
    );

    // A full run: every record once, every point once, as the uninterrupted ingest.
    assert!(spawn(&fx.data, None).wait().unwrap().success());
    let (ids, docs, store_ids, points) = server_state(&fx.data);
    assert_eq!(ids, ref_ids, "every record present");
    assert_eq!(docs, 12, "each record exactly once");
    assert_eq!(store_ids, ref_store, "no orphans and no missing vectors");
    assert_eq!(points, ref_points, "each point exactly once");
}

/// The HTTP API on a server-backed library: `POST /v1/search` answers 200; with the Qdrant
/// server killed, 503 `store_unavailable` with `Retry-After` (not a panic, not a hang); once
/// the server is back on the same port, 200 again from the same running service.
///
/// A plain test with a runtime for the requests only: the store blocks on its own runtime, so
/// it is opened (and dropped) outside async code, as `serve` does.
#[test]
fn the_api_answers_503_with_retry_after_while_qdrant_is_down_and_200_once_it_is_back() {
    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use std::sync::Arc;

    let Some(mut server) = started() else { return };
    let store = format!("qdrant+{}/api", server.grpc_url());
    let fx = fixture(8);
    let args = ingest_args(&fx);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok_json(&run_on(&fx, &fx.data, Some(&store), &args));

    let settings = indexer::StoreSettings::resolve(&fx.data, None, None).unwrap();
    let library = Arc::new(indexer::Library::open(&fx.data, settings).unwrap());
    let embedder = crate::common::embedder_for(&library, &fx.model);
    let service =
        Arc::new(imagelens::search::SearchService::new(library, Some(embedder), None).unwrap());
    let state = imagelens::http::AppState::new(
        service,
        imagelens::settings::Limits::default(),
        imagelens::governance::redact::Redaction::default(),
    )
    .unwrap();
    let token = crate::http::token_for(
        &state,
        "qdrant-admin",
        imagelens::governance::accounts::Role::Admin,
    );
    let app = imagelens::http::router(state);
    let search = || {
        Request::post("/v1/search")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::from(r#"{"query": "dog", "limit": 10}"#))
            .unwrap()
    };

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let up = runtime.block_on(crate::http::send_as_is(&app, search()));
    assert_eq!(up.status, StatusCode::OK);
    assert!(!up.json()["results"].as_array().unwrap().is_empty());

    server.kill();
    let started = std::time::Instant::now();
    let down = runtime.block_on(crate::http::send_as_is(&app, search()));
    down.error(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        down.json()["error"]["code"],
        "store_unavailable",
        "{}",
        down.json()
    );
    assert!(
        down.headers.contains_key(header::RETRY_AFTER),
        "{:?}",
        down.headers
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(35));

    server.restart().unwrap();
    let back = runtime.block_on(crate::http::send_as_is(&app, search()));
    assert_eq!(
        back.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&back.body)
    );
    assert_eq!(back.json()["results"], up.json()["results"]);
}
