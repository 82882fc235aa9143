//! The CLI end to end on a real Qdrant server (`--features server`): ingest, info, search and
//! delete with `--store qdrant+http://...`, the same answers as the embedded store, a library
//! that refuses to switch stores, and a one-line error naming the URL when the server is gone.
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
    assert_eq!(server_info["exists"], true);
    assert_eq!(server_info["shard_number"], 2);
    assert_eq!(server_info["points"], info["manifest"]["counts"]["points"]);
    assert!(server_info["points"].as_u64().unwrap() >= 24);
    assert_eq!(server_info["replicas"].as_array().unwrap().len(), 2);
    assert_eq!(info["manifest"]["store"]["backend"], "server");
    let text = run_on(&fx, &fx.data, None, &["info"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("(Qdrant 1.18.3)") && text.contains("2 shard(s)"),
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
    let direct = ServerStore::connect(&url, "e2e").unwrap();
    assert_eq!(
        direct
            .count(&VectorFilter::records(vec![victim.clone()]))
            .unwrap(),
        0
    );
    assert!(direct.count(&VectorFilter::default()).unwrap() > 0);

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

    // A new collection starts with the embedded store's defaults; a couple of dozen records
    // are below any default graph threshold.
    let info = ok_json(&run_on(&fx, &fx.data, None, &["info", "--json"]));
    assert_eq!(
        info["index"]["settings"],
        serde_json::to_value(indexer::store::IndexSettings::default()).unwrap(),
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
    let info = ok_json(&run_on(&fx, &fx.data, None, &["info", "--json"]));
    assert_eq!(info["index"]["settings"]["m"], 16, "{info}");

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
        text.contains("index        hnsw, m 16 ef_construct 100 ef 64 (acorn), int8 x2 rescored")
            && text.contains("disk use unknown"),
        "{text}"
    );
    let direct = ServerStore::connect(&url, "tuned").unwrap();
    let read_back = direct.index_settings().unwrap();
    assert_eq!(read_back.kind, indexer::store::IndexKind::Hnsw);
    assert_eq!(read_back.quantization, indexer::store::Quantization::Int8);
    drop(direct);

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
    patch_collection(
        &server,
        "slow",
        r#"{"optimizers_config": {"max_optimization_threads": 0}}"#,
    );
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
