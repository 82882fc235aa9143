//! Search safety: every size a caller controls is bounded before it reaches an allocation
//! (cursor offsets, depths, filter lists, patterns), cursors are bound to their offset and
//! request, globs match every file name (newlines too) the same way on both sides, abandoned
//! searches stop, the audit trail keeps bounded summaries, and unauthenticated or low-role
//! callers learn no paths or counts. Property tests feed generated queries, filters and
//! cursors through the real validation and search path.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use imagelens::governance::accounts::Role;
use imagelens::governance::redact::Redaction;
use imagelens::http::search::SearchBody;
use imagelens::http::{AppState, router};
use imagelens::params::FilterParams;
use imagelens::search::{Cancel, Fusion, LookupRequest, SearchError, SearchRequest, SearchService};
use imagelens::settings::Limits;
use indexer::Fault;
use indexer::filter::{FilenameMatch, RecordFilter};
use indexer::synth::{self, SynthOptions};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::common::{bin, ok_json, path_str};
use crate::generators::runner;
use crate::http::{Answer, send_as_is, service_for, token_for};

/// File names a glob must not miss, with the characters that broke things before.
const ODD_NAMES: [&str; 6] = [
    "new\nline.jpg",
    "tab\tname.jpg",
    "he said \"hi\".jpg",
    "star*name?.jpg",
    "brack[et].jpg",
    "dir/with space.jpg",
];

/// A library of `count` generated scenes, the first ones under [`ODD_NAMES`], ingested with the
/// tiny model, with its own state and one token per role.
struct Lib {
    state: AppState,
    app: Router,
    service: Arc<SearchService>,
    tokens: Vec<(Role, String)>,
    /// (id, file name, path) of every record.
    records: Vec<(String, String, String)>,
    data: PathBuf,
    model: PathBuf,
    // Last: the stores close before their folder is removed.
    _dir: TempDir,
}

fn build(count: usize) -> Lib {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let images = src.join("images");
    let opts = SynthOptions {
        count,
        width: 48,
        height: 36,
        seed: 23,
        jpeg: true,
    };
    let mut scenes = synth::scenes(&opts);
    for (s, name) in scenes.iter_mut().zip(ODD_NAMES) {
        s.file_name = name.into();
    }
    for s in &scenes {
        let path = images.join(&s.file_name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        synth::render(s, opts.width, opts.height, opts.seed)
            .save(&path)
            .unwrap();
    }
    let instances = src.join("instances.json");
    let captions = src.join("captions.json");
    std::fs::write(
        &instances,
        serde_json::to_vec(&synth::instances_json(&scenes, &opts)).unwrap(),
    )
    .unwrap();
    std::fs::write(
        &captions,
        serde_json::to_vec(&synth::captions_json(&scenes, &opts)).unwrap(),
    )
    .unwrap();
    let model = models::tiny::write_unmarked(&dir.path().join("tiny-clip"), 5).unwrap();
    let data = dir.path().join("library");
    let out = bin()
        .arg("--data-dir")
        .arg(&data)
        .arg("--model")
        .arg(&model)
        .args([
            "ingest",
            "--annotations",
            path_str(&instances),
            path_str(&captions),
            "--images",
            path_str(&images),
            "--dataset",
            "synth",
            "--json",
        ])
        .output()
        .unwrap();
    let report = ok_json(&out);
    assert_eq!(report["added"], count, "{report}");
    let fx = crate::common::Fixture {
        dir,
        synth: synth::SynthLibrary {
            images,
            instances,
            captions,
            scenes,
        },
        model: model.clone(),
        data: data.clone(),
    };
    let service = Arc::new(service_for(&fx));
    let state = AppState::new(service.clone(), Limits::default(), Redaction::default()).unwrap();
    let tokens = Role::ALL
        .iter()
        .map(|r| (*r, token_for(&state, &format!("{}1", r.as_str()), *r)))
        .collect();
    let all = service
        .catalog()
        .lookup(&LookupRequest {
            limit: 500,
            ..Default::default()
        })
        .unwrap();
    let records = all
        .results
        .iter()
        .map(|r| (r.id.clone(), r.filename.clone(), r.path.clone()))
        .collect();
    Lib {
        app: router(state.clone()),
        state,
        service,
        tokens,
        records,
        data,
        model,
        _dir: fx.dir,
    }
}

/// One library shared by the tests that only read it (and write their own trail entries).
fn lib() -> &'static Lib {
    static LIB: OnceLock<Lib> = OnceLock::new();
    LIB.get_or_init(|| build(14))
}

impl Lib {
    fn token(&self, role: Role) -> &str {
        &self.tokens.iter().find(|(r, _)| *r == role).unwrap().1
    }

    async fn call(
        &self,
        role: Option<Role>,
        method: &str,
        uri: &str,
        body: Option<Value>,
    ) -> Answer {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(r) = role {
            req = req.header(header::AUTHORIZATION, format!("Bearer {}", self.token(r)));
        }
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        };
        send_as_is(&self.app, req.unwrap()).await
    }

    async fn search(&self, body: Value) -> Answer {
        self.call(Some(Role::Admin), "POST", "/v1/search", Some(body))
            .await
    }

    /// The trail entries whose query text is `marker`.
    fn entries_with_query(&self, marker: &str) -> Vec<Value> {
        trail(&self.data)
            .into_iter()
            .filter(|e| e["query"]["query"] == marker)
            .collect()
    }
}

fn trail(data: &Path) -> Vec<Value> {
    std::fs::read_to_string(data.join("audit/trail.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn tag_of(cursor: &str) -> &str {
    cursor.split_once('.').unwrap().1
}

// ---------------------------------------------------------------------------------------------
// D1: cursors

#[tokio::test]
async fn a_cursor_offset_beyond_the_ranking_depth_is_refused() {
    let lib = lib();
    let first = lib
        .search(json!({"query": "a photo", "limit": 1}))
        .await
        .ok();
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let tag = tag_of(&cursor);
    // 10^12 made the keyword side allocate 8 TB and abort the server; u64::MAX wrapped.
    // The default depth is sized to the page, so offsets are bounded by the deepest tier.
    for offset in [
        "10000".to_owned(),
        "1000000".into(),
        "1000000000000".into(),
        u64::MAX.to_string(),
    ] {
        let msg = lib
            .search(json!({"query": "a photo", "limit": 1, "cursor": format!("{offset}.{tag}")}))
            .await
            .error(StatusCode::BAD_REQUEST);
        assert!(
            msg.contains("beyond the ranking depth 10000"),
            "{offset}: {msg}"
        );
    }
    // With a smaller depth the bound follows it.
    let msg = lib
        .search(
            json!({"query": "a photo", "limit": 1, "weights": "depth=10",
                        "cursor": format!("10.{tag}")}),
        )
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(msg.contains("beyond the ranking depth 10"), "{msg}");
    // The server still answers.
    lib.search(json!({"query": "a photo", "limit": 1}))
        .await
        .ok();
}

#[tokio::test]
async fn a_cursor_with_an_edited_offset_is_refused() {
    let lib = lib();
    let first = lib
        .search(json!({"query": "a photo", "limit": 3}))
        .await
        .ok();
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    assert!(cursor.starts_with("3."), "{cursor}");
    let tag = tag_of(&cursor);
    for forged in [
        format!("4.{tag}"),
        format!("2.{tag}"),
        format!("0.{tag}"),
        format!("03.{tag}"),
    ] {
        let msg = lib
            .search(json!({"query": "a photo", "limit": 3, "cursor": forged}))
            .await
            .error(StatusCode::BAD_REQUEST);
        assert!(
            msg.contains("not valid for this request"),
            "{forged}: {msg}"
        );
    }
    // The cursor as issued still works, and only for its own request.
    lib.search(json!({"query": "a photo", "limit": 3, "cursor": cursor}))
        .await
        .ok();
    lib.search(json!({"query": "a dog", "limit": 3, "cursor": cursor}))
        .await
        .error(StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_huge_cursor_or_like_is_refused_without_being_echoed() {
    let lib = lib();
    let huge = "7".repeat(200_000);
    for body in [
        json!({"query": "a photo", "cursor": format!("{huge}.abc")}),
        json!({"query": "a photo", "cursor": huge}),
        json!({"query": "", "like": huge}),
        json!({"query": "a photo", "weights": "k=1,".repeat(10_000)}),
    ] {
        let msg = lib.search(body).await.error(StatusCode::BAD_REQUEST);
        assert!(msg.len() < 400, "{} bytes: {}", msg.len(), &msg[..200]);
    }
}

// ---------------------------------------------------------------------------------------------
// D8: patterns bounded, compiled once, work cancelled

#[tokio::test]
async fn a_filename_pattern_over_the_limit_is_refused_naming_the_field() {
    let lib = lib();
    let glob = format!("*{}", "?".repeat(100_000));
    // keyword=0 skipped the keyword side, whose regex limit used to be the only bound.
    for (weights, query) in [("keyword=0", "car"), ("", "!!!"), ("", "car")] {
        let msg = lib
            .search(json!({"query": query, "weights": weights,
                           "filter": {"filename_glob": glob}}))
            .await
            .error(StatusCode::BAD_REQUEST);
        assert!(msg.contains("filter.filename_glob"), "{msg}");
        assert!(msg.contains("512"), "{msg}");
        assert!(
            msg.len() < 400,
            "the pattern is not echoed: {} bytes",
            msg.len()
        );
    }
    for field in ["filename", "filename_prefix"] {
        let msg = lib
            .search(json!({"query": "car", "filter": {field: "a".repeat(513)}}))
            .await
            .error(StatusCode::BAD_REQUEST);
        assert!(msg.contains(&format!("filter.{field}")), "{msg}");
    }
    // Look-ups and facets take the same bound, by their parameter names.
    let uri = format!("/v1/lookup?filename_glob={}", "%3F".repeat(600));
    let msg = lib
        .call(Some(Role::Auditor), "GET", &uri, None)
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(msg.starts_with("filename_glob"), "{msg}");
    // At the limit a glob is accepted.
    lib.search(json!({"query": "car", "weights": "keyword=0",
                      "filter": {"filename_glob": format!("*{}", "?".repeat(511))}}))
        .await
        .ok();
}

#[tokio::test]
async fn an_invalid_glob_is_a_clear_400_whichever_lists_run() {
    let lib = lib();
    for weights in ["", "keyword=0"] {
        let msg = lib
            .search(json!({"query": "car", "weights": weights,
                           "filter": {"filename_glob": "[z-a]*"}}))
            .await
            .error(StatusCode::BAD_REQUEST);
        assert!(msg.contains("filter.filename_glob"), "{msg}");
        assert!(msg.contains("invalid filename pattern"), "{msg}");
    }
}

#[test]
fn a_cancelled_search_stops_with_a_timeout_error() {
    let lib = lib();
    let req = SearchRequest {
        text: "a photo".into(),
        filter: RecordFilter {
            filename: Some(FilenameMatch::Glob("*".into())),
            ..Default::default()
        },
        ..Default::default()
    };
    let query = lib.service.query_embedding(&req).unwrap();
    assert!(query.is_some(), "the vector lists take part");
    // Running to the end when nobody gives up on it.
    let full = lib
        .service
        .search_cancellable(&req, query.clone(), &Cancel::new())
        .unwrap();
    assert!(!full.results.is_empty());
    // Given up on (the HTTP handler's guard was dropped): it stops.
    let cancel = Cancel::new();
    drop(cancel.on_drop());
    let err = lib
        .service
        .search_cancellable(&req, query.clone(), &cancel)
        .unwrap_err();
    assert!(matches!(err, SearchError::Cancelled(_)), "{err}");
    // Past its deadline: it stops too.
    let past = Cancel::with_deadline(std::time::Instant::now());
    let err = lib
        .service
        .search_cancellable(&req, query, &past)
        .unwrap_err();
    assert!(matches!(err, SearchError::Cancelled(_)), "{err}");
    let api = imagelens::http::ApiError::from(err);
    assert_eq!(api.status(), StatusCode::SERVICE_UNAVAILABLE);
}

// ---------------------------------------------------------------------------------------------
// D18: globs and newlines; what anonymous and low-role callers see

#[tokio::test]
async fn glob_star_matches_file_names_with_newlines_on_both_sides() {
    let lib = lib();
    let total = lib.records.len();
    // Keyword side (look-ups): `*` is every record, the newline name included.
    let v = lib
        .call(
            Some(Role::Auditor),
            "GET",
            "/v1/lookup?filename_glob=*&limit=500",
            None,
        )
        .await
        .ok();
    assert_eq!(v["total"], total);
    let v = lib
        .call(
            Some(Role::Auditor),
            "GET",
            "/v1/lookup?filename_glob=new?line.*",
            None,
        )
        .await
        .ok();
    assert_eq!(v["total"], 1, "{v}");
    assert_eq!(v["results"][0]["filename"], "new\nline.jpg");
    let v = lib
        .call(
            Some(Role::Auditor),
            "GET",
            "/v1/lookup?filename_prefix=new",
            None,
        )
        .await
        .ok();
    assert_eq!(v["total"], 1, "{v}");
    // Vector side (payload checks, keyword list off): the same records.
    let mut seen = BTreeSet::new();
    let mut cursor = Value::Null;
    loop {
        let v = lib
            .search(
                json!({"query": "a photo", "weights": "keyword=0", "limit": 50,
                           "filter": {"filename_glob": "*"}, "cursor": cursor}),
            )
            .await
            .ok();
        for h in v["results"].as_array().unwrap() {
            seen.insert(h["filename"].as_str().unwrap().to_owned());
        }
        cursor = v["next_cursor"].clone();
        if cursor.is_null() {
            break;
        }
    }
    assert!(seen.contains("new\nline.jpg"), "{seen:?}");
    let v = lib
        .search(json!({"query": "a photo", "weights": "keyword=0",
                       "filter": {"filename_glob": "new?line.jpg"}}))
        .await
        .ok();
    let names: Vec<&str> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["filename"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["new\nline.jpg"]);
}

#[tokio::test]
async fn healthz_without_an_account_gives_readiness_only() {
    let lib = lib();
    let v = lib.call(None, "GET", "/healthz", None).await.ok();
    assert_eq!(v, json!({"status": "ok"}));
}

#[tokio::test]
async fn info_shows_no_server_paths_to_non_admins() {
    let lib = lib();
    let data = lib.data.display().to_string();
    let model = lib.model.display().to_string();
    for role in [Role::Searcher, Role::Curator, Role::Auditor] {
        let a = lib.call(Some(role), "GET", "/v1/info", None).await;
        let v = a.ok();
        let text = String::from_utf8_lossy(&a.body);
        assert!(v.get("data_dir").is_none(), "{role:?}: {v}");
        assert!(
            !text.contains(&data) && !text.contains(&model),
            "{role:?}: {text}"
        );
        assert_eq!(v["model"]["model_id"], "tiny-clip");
        assert_eq!(v["records"], lib.records.len());
    }
    let v = lib
        .call(Some(Role::Admin), "GET", "/v1/info", None)
        .await
        .ok();
    assert_eq!(v["data_dir"], data.as_str());
}

// ---------------------------------------------------------------------------------------------
// D15 and D7: what the trail keeps of a query

#[tokio::test]
async fn audit_entries_keep_a_bounded_summary_of_filters() {
    let lib = lib();
    let labels: Vec<String> = (0..100)
        .map(|i| format!("{i:03}{}", "x".repeat(500)))
        .collect();
    let marker = "bounded-summary-probe";
    lib.search(json!({"query": marker, "filter": {"labels": labels}}))
        .await
        .ok();
    let entries = lib.entries_with_query(marker);
    assert_eq!(entries.len(), 1);
    let f = &entries[0]["query"]["filter"];
    let kept = f["labels"].as_array().unwrap();
    assert_eq!(kept.len(), 20, "{f}");
    assert_eq!(f["labels_count"], 100);
    assert!(kept[0].as_str().unwrap().starts_with("000xxx"));
    assert!(kept[0].as_str().unwrap().chars().count() < 200);
    let digest = FilterParams {
        labels: labels.clone(),
        ..Default::default()
    }
    .digest();
    assert_eq!(f["sha256"], digest.as_str());
    assert!(
        entries[0].to_string().len() < 8_000,
        "{}",
        entries[0].to_string().len()
    );
}

#[tokio::test]
async fn a_filter_with_too_many_values_is_refused_naming_the_field() {
    let lib = lib();
    let many: Vec<String> = (0..101).map(|i| format!("l{i}")).collect();
    for field in ["labels", "no_labels", "datasets"] {
        let msg = lib
            .search(json!({"query": "car", "filter": {field: many}}))
            .await
            .error(StatusCode::BAD_REQUEST);
        assert!(
            msg.contains(&format!("filter.{field}")) && msg.contains("100"),
            "{msg}"
        );
    }
    // 3 MB of labels: refused, not searched.
    let big: Vec<String> = (0..300_000).map(|i| format!("label{i}")).collect();
    let msg = lib
        .search(json!({"query": "car", "filter": {"labels": big}}))
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(msg.contains("filter.labels"), "{msg}");
    // One over-long value.
    let msg = lib
        .search(json!({"query": "car", "filter": {"datasets": ["d".repeat(600)]}}))
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(msg.contains("filter.datasets") && msg.len() < 300, "{msg}");
    let msg = lib
        .search(json!({"query": "car", "filter": {"captured_after": "2".repeat(100_000)}}))
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(
        msg.contains("filter.captured_after") && msg.len() < 300,
        "{msg}"
    );
    // Look-ups by query string too.
    let list = (0..101)
        .map(|i| format!("l{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let msg = lib
        .call(
            Some(Role::Auditor),
            "GET",
            &format!("/v1/lookup?label={list}"),
            None,
        )
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(msg.starts_with("labels"), "{msg}");
}

#[tokio::test]
async fn lookups_and_facets_audit_a_summary_not_the_query_string() {
    let lib = lib();
    let list = (0..60)
        .map(|i| format!("probe{i}"))
        .collect::<Vec<_>>()
        .join(",");
    lib.call(
        Some(Role::Auditor),
        "GET",
        &format!("/v1/lookup?label={list}&limit=5"),
        None,
    )
    .await
    .ok();
    lib.call(
        Some(Role::Admin),
        "GET",
        &format!("/v1/facets?no_label={list}"),
        None,
    )
    .await
    .ok();
    let entries = trail(&lib.data);
    let lookup = entries
        .iter()
        .rev()
        .find(|e| e["action"] == "lookup" && e["query"]["filter"]["labels_count"] == 60)
        .expect("the look-up's entry");
    assert_eq!(
        lookup["query"]["filter"]["labels"]
            .as_array()
            .unwrap()
            .len(),
        20
    );
    assert_eq!(lookup["query"]["limit"], 5);
    let facets = entries
        .iter()
        .rev()
        .find(|e| e["action"] == "facets" && e["query"]["filter"]["no_labels_count"] == 60)
        .expect("the facets entry");
    assert_eq!(
        facets["query"]["filter"]["no_labels"]
            .as_array()
            .unwrap()
            .len(),
        20
    );
}

#[tokio::test]
async fn a_liked_record_is_kept_in_the_trail_as_its_ref() {
    let lib = lib();
    let id = lib.records[7].0.clone();
    lib.call(
        Some(Role::Searcher),
        "POST",
        "/v1/search",
        Some(json!({"query": "", "like": id, "limit": 3})),
    )
    .await
    .ok();
    let entries = trail(&lib.data);
    let e = entries
        .iter()
        .rev()
        .find(|e| e["action"] == "search" && e["query"]["like_ref"].is_string())
        .expect("the search's entry");
    assert_eq!(
        e["query"]["like_ref"],
        lib.state.audit().record_ref(&id).as_str()
    );
    let text = std::fs::read_to_string(lib.data.join("audit/trail.jsonl")).unwrap();
    assert!(!text.contains(&id), "the liked id is in the trail in clear");
}

#[test]
fn the_cli_keeps_a_liked_record_and_its_filter_as_a_ref_and_a_summary() {
    // A library of its own: the CLI cannot open a library this process holds.
    let dir = tempfile::tempdir().unwrap();
    let synth = synth::write_library(
        &dir.path().join("src"),
        &SynthOptions {
            count: 6,
            width: 48,
            height: 36,
            seed: 5,
            jpeg: true,
        },
    )
    .unwrap();
    let model = models::tiny::write_unmarked(&dir.path().join("tiny-clip"), 5).unwrap();
    let data = dir.path().join("library");
    let fx = crate::common::Fixture {
        dir,
        synth,
        model,
        data,
    };
    fx.ingest(true);
    let ids = crate::common::ids(&ok_json(&fx.run(&["lookup", "--json"])));
    let id = &ids[2];
    let labels: Vec<String> = (0..30).map(|i| format!("--label=l{i}")).collect();
    let mut args = vec!["search", "--like", id.as_str(), "--json"];
    args.extend(labels.iter().map(String::as_str));
    ok_json(&fx.run(&args));
    let entries = trail(&fx.data);
    let e = entries
        .iter()
        .rev()
        .find(|e| e["action"] == "search")
        .unwrap();
    assert!(e["query"]["like_ref"].as_str().unwrap().len() >= 16, "{e}");
    assert_eq!(e["query"]["filter"]["labels"].as_array().unwrap().len(), 20);
    assert_eq!(e["query"]["filter"]["labels_count"], 30);
    let text = std::fs::read_to_string(fx.data.join("audit/trail.jsonl")).unwrap();
    assert!(
        !text.contains(id.as_str()),
        "the liked id is in the trail in clear"
    );
}

// ---------------------------------------------------------------------------------------------
// Property tests: generated queries, filters and cursors through the real path.

/// Text with the characters that matter: letters, words of the library, control characters,
/// query syntax, wide and combining characters; sometimes over the length limit.
fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("car".to_owned()),
        Just("dog ".to_owned()),
        Just("at night ".to_owned()),
        Just("street".to_owned()),
        Just("\n\t\0\u{7f}".to_owned()),
        Just("labels_text:face AND (".to_owned()),
        Just("\"*?[]{}^~\\/".to_owned()),
        Just("🦀\u{301}\u{202e}ｆｕｌｌ".to_owned()),
        "[a-z ]{0,12}",
        any::<String>(),
    ];
    prop_oneof![
        20 => prop::collection::vec(piece, 0..6).prop_map(|v| v.concat()),
        1 => (990usize..1100).prop_map(|n| "a".repeat(n)),
    ]
}

/// Globs over the characters a shell glob gives meaning to, and names from the library.
fn pattern() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("*".to_owned()),
        Just("?".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just("!".to_owned()),
        Just("-".to_owned()),
        Just("^".to_owned()),
        Just("\\".to_owned()),
        Just("&&".to_owned()),
        Just("~~".to_owned()),
        Just("\n".to_owned()),
        Just("/".to_owned()),
        Just(".jpg".to_owned()),
        Just("street".to_owned()),
        Just("IMG_".to_owned()),
        "[a-z0-9_]{1,4}",
        any::<char>().prop_map(String::from),
    ];
    prop_oneof![
        10 => prop::collection::vec(piece, 0..10).prop_map(|v| v.concat()),
        1 => (500usize..600).prop_map(|n| "?".repeat(n)),
    ]
}

fn date() -> impl Strategy<Value = String> {
    prop_oneof![
        (1790i32..2210, 1u32..13, 1u32..29).prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}")),
        Just("2021-03-04T05:06:07Z".to_owned()),
        Just("2024-13-45".to_owned()),
        Just("+262143-01-01T00:00:00Z".to_owned()),
        Just("yesterday".to_owned()),
        "[0-9T:+-]{0,30}",
        (60usize..200).prop_map(|n| "9".repeat(n)),
    ]
}

fn label() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(
            synth::LABELS
                .iter()
                .map(|l| l.0.to_owned())
                .collect::<Vec<_>>()
        ),
        Just("synth".to_owned()),
        Just(" Car ".to_owned()),
        "[a-z]{0,8}",
        any::<String>(),
    ]
}

fn values() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![
        20 => prop::collection::vec(label(), 0..4),
        1 => prop::collection::vec(label(), 95..110),
    ]
}

fn filter() -> impl Strategy<Value = FilterParams> {
    let dates = prop::collection::vec(prop::option::weighted(0.06, date()), 8);
    let names = (
        prop::option::weighted(0.12, pattern()),
        prop::option::weighted(0.08, pattern()),
        prop::option::weighted(0.25, pattern()),
    );
    (
        values(),
        values(),
        values(),
        values(),
        (values(), values()),
        dates,
        names,
    )
        .prop_map(
            |(labels, no_labels, datasets, splits, (attrs, source_ids), d, n)| FilterParams {
                labels,
                no_labels,
                datasets,
                splits,
                source_ids,
                attrs,
                captured_after: d[0].clone(),
                captured_before: d[1].clone(),
                created_after: d[2].clone(),
                created_before: d[3].clone(),
                annotated_after: d[4].clone(),
                annotated_before: d[5].clone(),
                ingested_after: d[6].clone(),
                ingested_before: d[7].clone(),
                filename: n.0,
                filename_prefix: n.1,
                filename_glob: n.2,
            },
        )
}

fn weights() -> impl Strategy<Value = Option<String>> {
    prop::option::weighted(
        0.4,
        prop_oneof![
            3 => Just("keyword=0".to_owned()),
            3 => Just("depth=10".to_owned()),
            3 => Just("depth=1e30,k=0".to_owned()),
            3 => Just("keyword=1,image=1,region=0.7,text=0.5,k=60".to_owned()),
            3 => (0u32..12_000).prop_map(|d| format!("depth={d},image=0")),
            1 => Just("image=NaN".to_owned()),
            1 => "[a-z=0-9.,]{0,20}",
        ],
    )
}

/// A cursor: none, garbage, or an offset (from the whole u64 range) with some tag.
fn cursor() -> impl Strategy<Value = Option<String>> {
    let offset = prop_oneof![0u64..30, 990u64..1010, any::<u64>()];
    let tag = prop_oneof!["[0-9a-f]{16}", "[0-9a-f]{0,20}", any::<String>()];
    prop::option::weighted(
        0.25,
        prop_oneof![
            (offset, tag).prop_map(|(o, t)| format!("{o}.{t}")),
            any::<String>(),
            "[0-9.+-]{0,25}",
        ],
    )
}

/// How the cases of a property ended: answered, refused by validation, refused by the search.
#[derive(Default)]
struct Tally {
    answered: AtomicUsize,
    refused_early: AtomicUsize,
    refused_by_search: AtomicUsize,
}

impl Tally {
    fn count(&self, which: &AtomicUsize) {
        which.fetch_add(1, Ordering::Relaxed);
    }

    fn report(&self, name: &str) {
        let get = |a: &AtomicUsize| a.load(Ordering::Relaxed);
        eprintln!(
            "{name}: {} answered, {} refused by validation, {} refused by the search",
            get(&self.answered),
            get(&self.refused_early),
            get(&self.refused_by_search)
        );
    }
}

/// A search error must be the caller's: a user fault, answered 4xx over HTTP, with a message
/// that does not echo a huge input.
fn user_error(e: SearchError) -> Result<(), TestCaseError> {
    let text = e.to_string();
    prop_assert_eq!(e.fault(), Fault::User, "not a user error: {}", text);
    prop_assert!(
        text.len() < 2_000,
        "an error echoes its input: {} bytes",
        text.len()
    );
    let api = imagelens::http::ApiError::from(e);
    prop_assert!(api.status().is_client_error(), "{}: {}", api.status(), text);
    Ok(())
}

#[test]
fn property_any_search_body_is_answered_or_refused_as_a_user_error() {
    let lib = lib();
    let limits = Limits::default();
    let body = (
        text(),
        prop::option::weighted(
            0.1,
            prop_oneof![
                prop::sample::select(lib.records.iter().map(|r| r.0.clone()).collect::<Vec<_>>()),
                any::<String>(),
            ],
        ),
        prop::collection::vec(text(), 0..3),
        filter(),
        prop::option::of(prop_oneof![
            10 => 0usize..30,
            1 => 490usize..510,
            1 => Just(usize::MAX)
        ]),
        cursor(),
        weights(),
    )
        .prop_map(
            |(query, like, not, filter, limit, cursor, weights)| SearchBody {
                query,
                like,
                not,
                filter,
                limit,
                cursor,
                weights,
                ..Default::default()
            },
        );
    let tally = Tally::default();
    runner()
        .run(&body, |body| {
            let req = match body.to_request(&limits, Fusion::default(), None) {
                Ok(r) => r,
                Err(e) => {
                    tally.count(&tally.refused_early);
                    prop_assert!(e.status().is_client_error(), "{:?}", e);
                    return Ok(());
                }
            };
            match lib.service.search(&req) {
                Ok(resp) => {
                    tally.count(&tally.answered);
                    prop_assert!(resp.results.len() <= req.limit);
                    // The audit summary of any accepted request is bounded.
                    let summary = body.audit_summary(lib.state.audit(), None);
                    prop_assert!(summary.to_string().len() < 40_000);
                }
                Err(e) => {
                    tally.count(&tally.refused_by_search);
                    user_error(e)?;
                }
            }
            Ok(())
        })
        .unwrap();
    tally.report("search bodies");
}

#[test]
fn property_any_filter_gives_a_lookup_facets_and_search_or_a_user_error() {
    let lib = lib();
    let tally = Tally::default();
    runner()
        .run(&(filter(), any::<bool>()), |(params, desc)| {
            let filter = match params.to_filter_named(str::to_owned) {
                Ok(f) => f,
                Err(e) => {
                    tally.count(&tally.refused_early);
                    return user_error(e);
                }
            };
            let look = lib.service.catalog().lookup(&LookupRequest {
                filter: filter.clone(),
                descending: desc,
                limit: 500,
                ..Default::default()
            });
            let facets = lib.service.catalog().facets(&filter);
            let search = lib.service.search(&SearchRequest {
                text: "a photo".into(),
                filter: filter.clone(),
                limit: 500,
                ..Default::default()
            });
            match (look, facets, search) {
                (Ok(look), Ok(facets), Ok(search)) => {
                    tally.count(&tally.answered);
                    prop_assert_eq!(look.total as u64, facets.total);
                    // Filters are exact: every hit of either side is a record the look-up
                    // (the keyword index) matched.
                    let matched: BTreeSet<&str> =
                        look.results.iter().map(|r| r.id.as_str()).collect();
                    for h in &search.results {
                        prop_assert!(
                            matched.contains(h.id.as_str()),
                            "{} escaped the filter",
                            h.id
                        );
                    }
                    // Both evaluators (the index's automaton, the payload check of vector
                    // hits) agree on the filename pattern, for every name of the library.
                    if let Some(m) = &filter.filename {
                        let only_name = RecordFilter {
                            filename: Some(m.clone()),
                            ..Default::default()
                        };
                        let by_index = lib
                            .service
                            .library()
                            .keyword()
                            .filter_ids(&only_name)
                            .unwrap();
                        let m = m.compile().unwrap();
                        for (id, name, path) in &lib.records {
                            let by_payload = m.matches(if m.on_path() { path } else { name });
                            prop_assert_eq!(
                                by_payload,
                                by_index.contains(id),
                                "{:?} on {:?}",
                                filter.filename,
                                name
                            );
                        }
                    }
                }
                (l, f, s) => {
                    tally.count(&tally.refused_by_search);
                    for e in [l.err(), f.err(), s.err()].into_iter().flatten() {
                        user_error(e)?;
                    }
                }
            }
            Ok(())
        })
        .unwrap();
    tally.report("filters");
}

#[test]
fn property_a_cursor_not_issued_for_the_request_is_refused() {
    let lib = lib();
    let requests: Vec<SearchRequest> = ["a photo", "car at night", "street"]
        .iter()
        .flat_map(|t| {
            [3usize, 5].map(|limit| SearchRequest {
                text: (*t).into(),
                limit,
                ..Default::default()
            })
        })
        .collect();
    // Every cursor each request issues, page by page.
    let issued: Vec<BTreeSet<String>> = requests
        .iter()
        .map(|r| {
            let mut out = BTreeSet::new();
            let mut r = r.clone();
            loop {
                let resp = lib.service.search(&r).unwrap();
                match resp.next_cursor {
                    Some(c) => {
                        out.insert(c.clone());
                        r.cursor = Some(c);
                    }
                    None => break out,
                }
            }
        })
        .collect();
    // A cursor binds the request but not its page size: the cursors of one text under any
    // page size are that request's.
    let issued: Vec<BTreeSet<String>> = requests
        .iter()
        .map(|r| {
            requests
                .iter()
                .zip(&issued)
                .filter(|(o, _)| o.text == r.text)
                .flat_map(|(_, c)| c.iter().cloned())
                .collect()
        })
        .collect();
    let all_issued: Vec<String> = issued.iter().flatten().cloned().collect();
    let forged = prop_oneof![
        cursor().prop_map(|c| c.unwrap_or_default()),
        // Real tags under other offsets, real offsets under other tags.
        (prop::sample::select(all_issued.clone()), any::<u64>())
            .prop_map(|(c, o)| format!("{o}.{}", tag_of(&c))),
        (prop::sample::select(all_issued.clone()), 0u64..40)
            .prop_map(|(c, o)| format!("{o}.{}", tag_of(&c))),
        prop::sample::select(all_issued),
    ];
    let tally = Tally::default();
    runner()
        .run(&(0..requests.len(), forged), |(i, c)| {
            let mut req = requests[i].clone();
            req.cursor = Some(c.clone());
            match lib.service.search(&req) {
                Ok(resp) => {
                    tally.count(&tally.answered);
                    prop_assert!(
                        c.is_empty() || issued[i].contains(&c),
                        "accepted forged cursor {:?}",
                        c
                    );
                    prop_assert!(resp.results.len() <= req.limit);
                }
                Err(e) => {
                    tally.count(&tally.refused_by_search);
                    prop_assert!(
                        !issued[i].contains(&c),
                        "refused its own cursor {:?}: {}",
                        c,
                        e
                    );
                    user_error(e)?;
                }
            }
            Ok(())
        })
        .unwrap();
    tally.report("cursors");
}
