//! The HTTP API through the router (no sockets): every endpoint, its error paths and limits,
//! collections, and a COCO export that ingests back into the same records.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt;
use imagelens::governance::accounts::Role;
use imagelens::governance::redact::Redaction;
use imagelens::http::{AppState, router};
use imagelens::search::SearchService;
use imagelens::settings::Limits;
use indexer::{Library, StoreSettings};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::common::{Fixture, bin, fixture, ids, ok_json, path_str};

/// One generated library (24 scenes, tiny model) shared by the tests that only read it or
/// touch their own collections.
pub(crate) struct Shared {
    pub(crate) fx: Fixture,
    pub(crate) state: AppState,
    /// An admin's bearer token, sent by [`send`] unless the request has its own.
    pub(crate) token: String,
}

pub(crate) fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let fx = fixture(24);
        fx.ingest(true);
        let service = Arc::new(service_for(&fx));
        let state = AppState::new(service, Limits::default(), Redaction::default()).unwrap();
        let token = admin_token(&state);
        Shared { fx, state, token }
    })
}

/// Creates an admin account and returns a token for it.
pub(crate) fn admin_token(state: &AppState) -> String {
    token_for(state, "root-admin", Role::Admin)
}

/// Creates an account of `role` and returns a token for it.
pub(crate) fn token_for(state: &AppState, name: &str, role: Role) -> String {
    state
        .accounts()
        .create(name, "correct horse battery staple", role)
        .unwrap();
    state
        .accounts()
        .issue_token(name, "tests", chrono::Duration::days(1))
        .unwrap()
        .0
}

pub(crate) fn service_for(fx: &Fixture) -> SearchService {
    let library = Arc::new(Library::open(&fx.data, StoreSettings::Edge).unwrap());
    let embedder = crate::common::embedder_for(&library, &fx.model);
    SearchService::new(library, Some(embedder), None).unwrap()
}

fn app() -> Router {
    router(shared().state.clone())
}

/// A router over the shared library with other limits (and its own collections view: tests
/// using it must not write collections).
fn app_with(limits: Limits) -> (Router, AppState) {
    let state = shared().state.with_limits(limits);
    (router(state.clone()), state)
}

pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Answer {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}), status {}: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Asserts the status and the error shape, and returns the message.
    pub(crate) fn error(&self, status: StatusCode) -> String {
        assert_eq!(
            self.status,
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(
            self.headers[header::CONTENT_TYPE],
            "application/json",
            "errors are JSON"
        );
        let v = self.json();
        assert!(v["error"]["code"].is_string(), "{v}");
        v["error"]["message"].as_str().unwrap().to_owned()
    }

    pub(crate) fn ok(&self) -> Value {
        assert_eq!(
            self.status,
            StatusCode::OK,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        self.json()
    }
}

/// Sends `req` as the shared admin unless it carries its own `Authorization`.
pub(crate) async fn send(app: &Router, mut req: Request<Body>) -> Answer {
    if !req.headers().contains_key(header::AUTHORIZATION) {
        let bearer = format!("Bearer {}", shared().token);
        req.headers_mut()
            .insert(header::AUTHORIZATION, bearer.parse().unwrap());
    }
    send_as_is(app, req).await
}

/// Sends `req` exactly as built.
pub(crate) async fn send_as_is(app: &Router, req: Request<Body>) -> Answer {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body,
    }
}

pub(crate) async fn get(app: &Router, uri: &str) -> Answer {
    send(app, Request::get(uri).body(Body::empty()).unwrap()).await
}

pub(crate) async fn json_req(app: &Router, method: &str, uri: &str, body: Value) -> Answer {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    send(app, req).await
}

pub(crate) async fn all_records(app: &Router) -> Vec<Value> {
    let v = get(app, "/v1/lookup?limit=500").await.ok();
    v["results"].as_array().unwrap().clone()
}

pub(crate) fn multipart(parts: &[(&str, &str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "imagelens-test-boundary";
    let mut body = Vec::new();
    for (name, content_type, data) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let filename = if *name == "image" {
            "; filename=\"q.png\""
        } else {
            ""
        };
        body.extend_from_slice(
            format!(
                "Content-Disposition: form-data; name=\"{name}\"{filename}\r\nContent-Type: {content_type}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 7) as u8, (y * 5) as u8, 90])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

#[tokio::test]
async fn search_answers_the_cli_contract_and_honours_filters() {
    let app = app();
    let v = json_req(
        &app,
        "POST",
        "/v1/search",
        json!({"query": "dog", "limit": 100}),
    )
    .await
    .ok();
    let results = v["results"].as_array().unwrap();
    assert!(!results.is_empty());
    for key in ["id", "filename", "score", "labels", "dates", "boxes", "why"] {
        assert!(results[0].get(key).is_some(), "result has {key}");
    }
    assert!(v.get("next_cursor").is_some());
    assert_eq!(v["semantic"], true);

    // Filters are exact.
    let v = json_req(
        &app,
        "POST",
        "/v1/search",
        json!({"query": "a photo", "limit": 100,
               "filter": {"labels": ["car"], "captured_after": "2021-01-01"}}),
    )
    .await
    .ok();
    for r in v["results"].as_array().unwrap() {
        assert!(r["labels"].as_array().unwrap().contains(&json!("car")));
        assert!(r["dates"]["captured"].as_str().unwrap() >= "2021-01-01");
    }

    // Cursor paging: three or more pages, no repeats or gaps.
    let full = ids(&json_req(
        &app,
        "POST",
        "/v1/search",
        json!({"query": "a photo", "limit": 500}),
    )
    .await
    .ok());
    let mut paged = Vec::new();
    let mut cursor = Value::Null;
    let mut pages = 0;
    loop {
        let v = json_req(
            &app,
            "POST",
            "/v1/search",
            json!({"query": "a photo", "limit": 7, "cursor": cursor}),
        )
        .await
        .ok();
        paged.extend(ids(&v));
        pages += 1;
        cursor = v["next_cursor"].clone();
        if cursor.is_null() {
            break;
        }
    }
    assert!(pages >= 3);
    assert_eq!(paged, full);
}

#[tokio::test]
async fn the_servers_fusion_settings_are_the_default_weights_a_request_overlays() {
    // `[fusion]` with every vector list off: the server ranks by keywords alone.
    let keyword_only = imagelens::search::Fusion {
        image: 0.0,
        region: 0.0,
        text: 0.0,
        ..Default::default()
    };
    let state = shared().state.with_fusion(keyword_only);
    let app = router(state);
    let v = json_req(
        &app,
        "POST",
        "/v1/search",
        json!({"query": "dog", "limit": 100}),
    )
    .await
    .ok();
    let results = v["results"].as_array().unwrap();
    assert!(!results.is_empty());
    for r in results {
        assert!(r["why"]["keyword"].is_object(), "{r}");
        assert!(r["why"].get("image").is_none_or(Value::is_null), "{r}");
    }
    // The request's own weights overlay the settings: the image list comes back.
    let v = json_req(
        &app,
        "POST",
        "/v1/search",
        json!({"query": "dog", "limit": 100, "weights": "image=1"}),
    )
    .await
    .ok();
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 24, "the image list ranks every record");
    assert!(results.iter().all(|r| r["why"]["image"].is_object()));
}

#[tokio::test]
async fn search_errors_name_the_bad_field() {
    let app = app();
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"query": "x", "filter": {"captured_after": "yesterday"}}),
            "filter.captured_after",
        ),
        (json!({"query": "x", "limit": 100000}), "limit"),
        (json!({"query": "x".repeat(1001)}), "query"),
        (json!({"query": "x", "weights": "colour=1"}), "weights"),
        (json!({"query": "x", "cursor": "3.deadbeef"}), "cursor"),
        (json!({"query": ""}), "nothing to search for"),
    ];
    for (body, needle) in cases {
        let a = json_req(&app, "POST", "/v1/search", body.clone()).await;
        let msg = a.error(StatusCode::BAD_REQUEST);
        assert!(msg.contains(needle), "{body}: {msg}");
    }
    // Unknown fields and wrong types are refused by name (axum's rejection, in our shape).
    let a = json_req(&app, "POST", "/v1/search", json!({"qeury": "x"})).await;
    assert!(a.status.is_client_error());
    assert!(a.error(a.status).contains("qeury"));
    let a = json_req(&app, "POST", "/v1/search", json!({"query": 5})).await;
    assert!(a.error(a.status).contains("query"));
    let a = send(
        &app,
        Request::post("/v1/search")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{not json"))
            .unwrap(),
    )
    .await;
    a.error(StatusCode::BAD_REQUEST);
    // Hostile text is data: answered, never a server error.
    for q in [
        "a:(^",
        "- *",
        "((((((((((x",
        "\"unbalanced",
        "x\u{1}\u{2}y",
        "AND OR NOT",
    ] {
        let a = json_req(&app, "POST", "/v1/search", json!({ "query": q })).await;
        assert_eq!(a.status, StatusCode::OK, "{q:?}");
    }
}

#[tokio::test]
async fn more_like_this_by_record_and_by_upload() {
    let app = app();
    let records = all_records(&app).await;
    let id = records[0]["id"].as_str().unwrap();
    let v = json_req(&app, "POST", "/v1/search", json!({"like": id, "limit": 5}))
        .await
        .ok();
    assert!(
        !ids(&v).contains(&id.to_owned()),
        "the liked record is the query"
    );
    assert_eq!(ids(&v).len(), 5);

    // Upload: the image's own file gives results; the same upload pages with its cursor.
    let file = std::fs::read(
        shared()
            .fx
            .synth
            .images
            .join(records[0]["path"].as_str().unwrap()),
    )
    .unwrap();
    let (ct, body) = multipart(&[
        ("request", "application/json", br#"{"limit": 3}"#),
        ("image", "image/jpeg", &file),
    ]);
    let req = |ct: &str, body: Vec<u8>| {
        Request::post("/v1/search")
            .header(header::CONTENT_TYPE, ct)
            .body(Body::from(body))
            .unwrap()
    };
    let first = send(&app, req(&ct, body.clone())).await.ok();
    assert_eq!(ids(&first).len(), 3);
    let top = ids(&first)[0].clone();
    assert_eq!(top, id, "an image's own bytes find its record first");
    let (ct2, body2) = multipart(&[
        (
            "request",
            "application/json",
            json!({"limit": 3, "cursor": first["next_cursor"]})
                .to_string()
                .as_bytes(),
        ),
        ("image", "image/jpeg", &file),
    ]);
    let second = send(&app, req(&ct2, body2)).await.ok();
    assert!(ids(&second).iter().all(|i| !ids(&first).contains(i)));

    // A search by image exports as it pages: multipart again, the export's JSON as the
    // `request` part. The archive holds the same first 3 records, and its manifest names the
    // upload by its sha256.
    let export = |request: Value| {
        let (ct, body) = multipart(&[
            (
                "request",
                "application/json",
                request.to_string().as_bytes(),
            ),
            ("image", "image/jpeg", &file),
        ]);
        Request::post("/v1/export")
            .header(header::CONTENT_TYPE, ct)
            .body(Body::from(body))
            .unwrap()
    };
    let a = send(
        &app,
        export(json!({"search": {}, "max_results": 3, "format": "csv", "archive": "tar"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let dir = tempfile::tempdir().unwrap();
    unpack("tar", &a.body, dir.path());
    let prov: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("provenance.json")).unwrap())
            .unwrap();
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&file))
    };
    assert_eq!(prov["source"]["image_sha256"], sha.as_str(), "{prov}");
    let exported: Vec<String> = prov["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(exported, ids(&first));
    // A request part that is not an export (a bare search) is refused, saying what it is not.
    let msg = send(&app, export(json!({"limit": 3})))
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(msg.contains("not an export of a search"), "{msg}");

    // Bad uploads: corrupt bytes, both like and image, an unknown part.
    let (ct, body) = multipart(&[("image", "image/png", b"not an image at all")]);
    let msg = send(&app, req(&ct, body))
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(msg.starts_with("image:"), "{msg}");
    let (ct, body) = multipart(&[
        (
            "request",
            "application/json",
            json!({"like": id}).to_string().as_bytes(),
        ),
        ("image", "image/jpeg", &file),
    ]);
    send(&app, req(&ct, body))
        .await
        .error(StatusCode::BAD_REQUEST);
    let (ct, body) = multipart(&[("picture", "image/jpeg", &file)]);
    assert!(
        send(&app, req(&ct, body))
            .await
            .error(StatusCode::BAD_REQUEST)
            .contains("picture")
    );
}

#[tokio::test]
async fn upload_pixel_count_is_checked_from_the_header() {
    let (app, _) = app_with(Limits {
        max_image_pixels: 100 * 100,
        ..Limits::default()
    });
    let (ct, body) = multipart(&[("image", "image/png", &png(101, 100))]);
    let a = send(
        &app,
        Request::post("/v1/search")
            .header(header::CONTENT_TYPE, ct)
            .body(Body::from(body))
            .unwrap(),
    )
    .await;
    assert!(a.error(StatusCode::PAYLOAD_TOO_LARGE).contains("101x100"));
}

#[tokio::test]
async fn lookups_and_facets_match_the_true_counts() {
    let app = app();
    let records = all_records(&app).await;
    assert_eq!(records.len(), 24);
    let name = records[3]["filename"].as_str().unwrap();
    let v = get(&app, &format!("/v1/lookup?filename={name}")).await.ok();
    assert_eq!(v["total"], 1);
    assert_eq!(v["results"][0]["filename"], name);
    for key in ["sha256", "boxes", "captions", "dates", "labels", "bytes"] {
        assert!(v["results"][0].get(key).is_some(), "full record has {key}");
    }
    let prefix: BTreeSet<&str> = records
        .iter()
        .filter_map(|r| r["filename"].as_str())
        .filter(|f| f.starts_with("IMG_"))
        .collect();
    let v = get(&app, "/v1/lookup?filename_prefix=IMG_&limit=500")
        .await
        .ok();
    assert_eq!(v["total"].as_u64().unwrap() as usize, prefix.len());
    let v = get(&app, "/v1/lookup?filename_glob=IMG_*.jpg&limit=500")
        .await
        .ok();
    assert_eq!(v["total"].as_u64().unwrap() as usize, prefix.len());
    // Sorted by date, newest first on request.
    let v = get(&app, "/v1/lookup?sort=captured&desc=true&limit=500")
        .await
        .ok();
    let dates: Vec<&str> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["dates"]["captured"].as_str().unwrap())
        .collect();
    let mut sorted = dates.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(dates, sorted);

    // Facets equal the counts over the records.
    let mut labels: BTreeMap<String, u64> = BTreeMap::new();
    for r in &records {
        for l in r["labels"].as_array().unwrap() {
            *labels.entry(l.as_str().unwrap().to_owned()).or_default() += 1;
        }
    }
    let f = get(&app, "/v1/facets").await.ok();
    assert_eq!(f["total"], 24);
    assert_eq!(f["labels"], serde_json::to_value(&labels).unwrap());
    let f = get(&app, "/v1/facets?label=car").await.ok();
    assert_eq!(f["total"], json!(labels["car"]));
    // A list value may be quoted as in CSV (how one holding a comma is asked for): the same
    // answer; a quote left open is the caller's error, named.
    let quoted = get(&app, "/v1/facets?label=%22car%22").await.ok();
    assert_eq!(quoted["total"], f["total"]);
    let none = get(&app, "/v1/lookup?label=%22car,%20red%22").await.ok();
    assert_eq!(
        none["total"], 0,
        "one label \"car, red\", which no record holds"
    );
    let msg = get(&app, "/v1/lookup?label=%22car,truck")
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(msg.contains("label") && msg.contains("not closed"), "{msg}");
    // No record of this library has a split: none is counted, and a split filter matches none.
    assert!(f.get("splits").is_none(), "{f}");
    let none = get(&app, "/v1/lookup?split=val,train").await.ok();
    assert_eq!(none["total"], 0);
    let none = get(&app, "/v1/lookup?attr=color%3Dwhite").await.ok();
    assert_eq!(none["total"], 0, "no box of this library has attributes");
    let msg = get(&app, &format!("/v1/lookup?split={}", ",x".repeat(101)))
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(msg.contains("splits"), "{msg}");
    // Nor a tool image id (a COCO export has none).
    let none = get(&app, "/v1/lookup?source_id=in1,42").await.ok();
    assert_eq!(none["total"], 0);
    let msg = get(&app, &format!("/v1/lookup?source_id={}", ",x".repeat(101)))
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(msg.contains("source_ids"), "{msg}");

    // Bad parameters are named.
    let cases = [
        ("/v1/lookup?captured_after=yesterday", "captured_after"),
        ("/v1/lookup?limit=0", "limit"),
        ("/v1/lookup?limit=lots", "limit"),
        ("/v1/lookup?sort=sideways", "sort"),
        ("/v1/lookup?filname=a.jpg", "filname"),
        ("/v1/lookup?filename=a&filename_glob=*", "filename"),
        ("/v1/lookup?cursor=9.bad", "cursor"),
        ("/v1/facets?limit=5", "limit"),
        ("/v1/lookup?attr=color", "attrs"),
    ];
    for (uri, needle) in cases {
        let msg = get(&app, uri).await.error(StatusCode::BAD_REQUEST);
        assert!(msg.contains(needle), "{uri}: {msg}");
    }
}

#[tokio::test]
async fn records_images_and_thumbnails() {
    let app = app();
    let records = all_records(&app).await;
    let r = &records[0];
    let id = r["id"].as_str().unwrap();
    let v = get(&app, &format!("/v1/records/{id}")).await.ok();
    assert_eq!(&v, r);
    let msg = get(&app, "/v1/records/ffffffffffffffff")
        .await
        .error(StatusCode::NOT_FOUND);
    assert!(msg.contains("ffffffffffffffff"));

    let a = get(&app, &format!("/v1/records/{id}/image")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers[header::CONTENT_TYPE], "image/jpeg");
    let file = std::fs::read(shared().fx.synth.images.join(r["path"].as_str().unwrap())).unwrap();
    assert_eq!(a.body.as_ref(), file.as_slice());

    let a = get(&app, &format!("/v1/records/{id}/thumbnail?size=32")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers[header::CONTENT_TYPE], "image/jpeg");
    let plain = image::load_from_memory(&a.body).unwrap().to_rgb8();
    assert_eq!(plain.width().max(plain.height()), 32);
    let a = get(
        &app,
        &format!("/v1/records/{id}/thumbnail?size=32&boxes=true"),
    )
    .await;
    let boxed = image::load_from_memory(&a.body).unwrap().to_rgb8();
    assert_ne!(plain, boxed, "the overlay draws the boxes");

    for uri in [
        format!("/v1/records/{id}/thumbnail?size=8"),
        format!("/v1/records/{id}/thumbnail?size=99999"),
        format!("/v1/records/{id}/thumbnail?size=big"),
        format!("/v1/records/{id}/thumbnail?boxes=maybe"),
    ] {
        get(&app, &uri).await.error(StatusCode::BAD_REQUEST);
    }
    get(&app, "/v1/records/ffffffffffffffff/thumbnail")
        .await
        .error(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn info_health_metrics_and_unknown_routes() {
    let app = app();
    let v = get(&app, "/v1/info").await.ok();
    assert_eq!(v["records"], 24);
    assert_eq!(v["semantic"], true);
    assert_eq!(v["model"]["dim"], 32);
    let v = get(&app, "/healthz").await.ok();
    assert_eq!(v["status"], "ok");
    // A search, so its stages are timed.
    json_req(
        &app,
        "POST",
        "/v1/search",
        json!({"query": "a dog in a park"}),
    )
    .await
    .ok();
    let a = get(&app, "/metrics").await;
    assert_eq!(a.status, StatusCode::OK);
    let text = String::from_utf8(a.body.to_vec()).unwrap();
    assert!(text.contains("imagelens_http_requests_total{"), "{text}");
    // Every stage of a search has its histogram (the shared library has a model: embed too).
    for stage in [
        "interpret",
        "embed",
        "keyword",
        "vectors",
        "fuse",
        "records",
    ] {
        let count = text
            .lines()
            .find(|l| {
                l.starts_with("imagelens_search_stage_seconds_count")
                    && l.contains(&format!("stage=\"{stage}\""))
            })
            .unwrap_or_else(|| panic!("no {stage} stage in {text}"));
        let n: u64 = count.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(n >= 1, "{count}");
    }
    // And how deep its lists went (a default search at page-sized depth: the first tier of
    // the default weights' two lists is 200, a one-list head 100, the next tier 500;
    // `search::cursor::page_tiers`).
    assert!(
        text.lines().any(|l| ["100", "200", "500"]
            .iter()
            .any(|d| l.starts_with(&format!("imagelens_search_depth_total{{depth=\"{d}\"}}")))),
        "{text}"
    );
    assert!(text.contains("route=\"/v1/info\""), "{text}");
    assert!(text.contains("imagelens_library_records 24"), "{text}");
    let msg = get(&app, "/v2/nothing").await.error(StatusCode::NOT_FOUND);
    assert!(!msg.is_empty());
    json_req(&app, "DELETE", "/v1/search", json!({}))
        .await
        .error(StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn collections_are_created_edited_listed_and_deleted() {
    let app = app();
    let records = all_records(&app).await;
    let some: Vec<String> = records
        .iter()
        .take(3)
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    let a = json_req(
        &app,
        "POST",
        "/v1/collections",
        json!({"name": "edit-test", "description": "ladders", "ids": some}),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(a.json()["ids"], json!(some));
    json_req(
        &app,
        "POST",
        "/v1/collections",
        json!({"name": "edit-test", "ids": []}),
    )
    .await
    .error(StatusCode::CONFLICT);
    let msg = json_req(
        &app,
        "POST",
        "/v1/collections",
        json!({"name": "bad name/x", "ids": []}),
    )
    .await
    .error(StatusCode::BAD_REQUEST);
    assert!(msg.contains("bad name/x"));
    let msg = json_req(
        &app,
        "POST",
        "/v1/collections",
        json!({"name": "unknown-ids", "ids": ["ffffffffffffffff"]}),
    )
    .await
    .error(StatusCode::BAD_REQUEST);
    assert!(msg.contains("ffffffffffffffff"));

    let fourth = records[3]["id"].as_str().unwrap();
    let v = json_req(
        &app,
        "PATCH",
        "/v1/collections/edit-test",
        json!({"add": [fourth], "remove": [some[0]]}),
    )
    .await
    .ok();
    assert_eq!(v["ids"], json!([some[1], some[2], fourth]));
    json_req(
        &app,
        "PATCH",
        "/v1/collections/edit-test",
        json!({"add": ["nope"]}),
    )
    .await
    .error(StatusCode::BAD_REQUEST);
    json_req(&app, "PATCH", "/v1/collections/absent", json!({"add": []}))
        .await
        .error(StatusCode::NOT_FOUND);

    let list = get(&app, "/v1/collections").await.ok();
    assert!(
        list["collections"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "edit-test" && c["count"] == 3)
    );
    assert_eq!(
        get(&app, "/v1/collections/edit-test").await.ok()["description"],
        "ladders"
    );
    let a = send(
        &app,
        Request::delete("/v1/collections/edit-test")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    get(&app, "/v1/collections/edit-test")
        .await
        .error(StatusCode::NOT_FOUND);

    // From a search: the collection holds the search's results, in order.
    let search = json!({"query": "dog", "filter": {"labels": ["dog"]}});
    let expected = ids(&json_req(
        &app,
        "POST",
        "/v1/search",
        json!({"query": "dog", "filter": {"labels": ["dog"]}, "limit": 500}),
    )
    .await
    .ok());
    let a = json_req(
        &app,
        "POST",
        "/v1/collections",
        json!({"name": "dogs", "search": search, "max_results": 500}),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(a.json()["ids"], json!(expected));
    assert!(a.json()["source"]["search"].is_object());
}

fn unpack(archive: &str, bytes: &[u8], to: &std::path::Path) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    match archive {
        "tar" => {
            let mut t = tar::Archive::new(bytes);
            for e in t.entries().unwrap() {
                let mut e = e.unwrap();
                names.insert(e.path().unwrap().to_string_lossy().into_owned());
                e.unpack_in(to).unwrap();
            }
        }
        _ => {
            let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
            for i in 0..z.len() {
                let mut f = z.by_index(i).unwrap();
                let name = f.name().to_owned();
                let mut data = Vec::new();
                f.read_to_end(&mut data).unwrap();
                let path = to.join(&name);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, data).unwrap();
                names.insert(name);
            }
        }
    }
    names
}

#[tokio::test]
async fn every_export_format_streams_an_archive_with_provenance() {
    let app = app();
    let records = all_records(&app).await;
    let some: Vec<String> = records
        .iter()
        .take(4)
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    let a = json_req(
        &app,
        "POST",
        "/v1/collections",
        json!({"name": "formats", "ids": some}),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED);
    for format in ["coco", "yolo", "yolo-seg", "voc", "csv"] {
        for archive in ["zip", "tar"] {
            let a = get(
                &app,
                &format!("/v1/collections/formats/export?format={format}&archive={archive}"),
            )
            .await;
            assert_eq!(a.status, StatusCode::OK, "{format} {archive}");
            assert!(
                a.headers[header::CONTENT_DISPOSITION]
                    .to_str()
                    .unwrap()
                    .contains(archive)
            );
            let dir = tempfile::tempdir().unwrap();
            let names = unpack(archive, &a.body, dir.path());
            assert!(names.contains("provenance.json"), "{names:?}");
            let images = names.iter().filter(|n| n.starts_with("images/")).count();
            assert_eq!(images, 4, "{format} {archive}: {names:?}");
            let prov: Value =
                serde_json::from_slice(&std::fs::read(dir.path().join("provenance.json")).unwrap())
                    .unwrap();
            assert_eq!(prov["source"]["collection"], "formats");
            assert_eq!(prov["records"].as_array().unwrap().len(), 4);
            assert!(prov["records"][0]["sha256"].is_string());
            assert!(prov["model"]["revision"].is_string());
        }
    }
    for uri in [
        "/v1/collections/formats/export?format=tiff",
        "/v1/collections/formats/export?archive=rar",
    ] {
        get(&app, uri).await.error(StatusCode::BAD_REQUEST);
    }
    get(&app, "/v1/collections/absent/export")
        .await
        .error(StatusCode::NOT_FOUND);

    // A search exports the same way.
    let a = json_req(
        &app,
        "POST",
        "/v1/export",
        json!({"search": {"query": "car", "filter": {"labels": ["car"]}}, "format": "csv", "archive": "tar"}),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let dir = tempfile::tempdir().unwrap();
    let names = unpack("tar", &a.body, dir.path());
    assert!(names.contains("annotations.csv"), "{names:?}");
}

#[tokio::test]
async fn coco_export_ingests_back_into_the_same_records() {
    let app = app();
    let before = all_records(&app).await;
    let ids: Vec<&str> = before.iter().map(|r| r["id"].as_str().unwrap()).collect();
    let a = json_req(
        &app,
        "POST",
        "/v1/collections",
        json!({"name": "round-trip", "ids": ids}),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let a = get(
        &app,
        "/v1/collections/round-trip/export?format=coco&archive=tar",
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let dir = tempfile::tempdir().unwrap();
    unpack("tar", &a.body, dir.path());
    let data = dir.path().join("library");
    let out = bin()
        .args(["--no-model", "--data-dir", path_str(&data), "ingest"])
        .arg("--annotations")
        .arg(dir.path().join("annotations/instances.json"))
        .arg(dir.path().join("annotations/captions.json"))
        .arg("--images")
        .arg(dir.path().join("images"))
        .args(["--dataset", "synth", "--json"])
        .output()
        .unwrap();
    let report = ok_json(&out);
    assert_eq!(
        report["problems"].as_array().map(Vec::len),
        Some(0),
        "{report}"
    );
    let out = bin()
        .args([
            "--data-dir",
            path_str(&data),
            "lookup",
            "--limit",
            "500",
            "--json",
        ])
        .output()
        .unwrap();
    let after = ok_json(&out);
    let key = |r: &Value| r["id"].as_str().unwrap().to_owned();
    let mut b: Vec<&Value> = before.iter().collect();
    b.sort_by_key(|r| key(r));
    let mut a: Vec<Value> = after["results"].as_array().unwrap().clone();
    a.sort_by_key(key);
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        for field in [
            "id", "path", "width", "height", "sha256", "labels", "boxes", "captions",
        ] {
            assert_eq!(x[field], y[field], "{field} of {}", y["id"]);
        }
        assert_eq!(x["dates"]["captured"], y["dates"]["captured"]);
        assert_eq!(x["dates"]["annotated"], y["dates"]["annotated"]);
    }
}

#[tokio::test]
async fn export_refuses_a_moved_image_before_streaming() {
    let fx = fixture(3);
    fx.ingest(false);
    let service = Arc::new(
        SearchService::new(
            Arc::new(Library::open(&fx.data, StoreSettings::Edge).unwrap()),
            None,
            Some("test".into()),
        )
        .unwrap(),
    );
    let state = AppState::new(service, Limits::default(), Redaction::default()).unwrap();
    let token = admin_token(&state);
    let app = router(state);
    let with_token = |mut req: Request<Body>| {
        req.headers_mut().insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        req
    };
    let get = |uri: &str| {
        send(
            &app,
            with_token(Request::get(uri).body(Body::empty()).unwrap()),
        )
    };
    let post = |uri: &str, body: Value| {
        send(
            &app,
            with_token(
                Request::post(uri)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(body.to_string()))
                    .unwrap(),
            ),
        )
    };
    let records = get("/v1/lookup?limit=500").await.ok()["results"]
        .as_array()
        .unwrap()
        .clone();
    let ids: Vec<&str> = records.iter().map(|r| r["id"].as_str().unwrap()).collect();
    let a = post("/v1/collections", json!({"name": "c", "ids": ids})).await;
    assert_eq!(a.status, StatusCode::CREATED);
    let gone = records[1]["path"].as_str().unwrap();
    std::fs::remove_file(fx.synth.images.join(gone)).unwrap();
    let msg = get("/v1/collections/c/export")
        .await
        .error(StatusCode::CONFLICT);
    assert!(
        msg.contains(gone) || msg.contains(records[1]["id"].as_str().unwrap()),
        "{msg}"
    );
    get(&format!(
        "/v1/records/{}/image",
        records[1]["id"].as_str().unwrap()
    ))
    .await
    .error(StatusCode::NOT_FOUND);
    // Semantic search is off here: "more like this" says so, keyword search still works.
    post("/v1/search", json!({"like": ids[0]}))
        .await
        .error(StatusCode::CONFLICT);
    let v = post("/v1/search", json!({"query": "a"})).await.ok();
    assert_eq!(v["semantic"], false);
    assert!(
        v["notice"]
            .as_str()
            .unwrap()
            .contains("semantic search is off")
    );
}

#[tokio::test]
async fn limits_answer_413_503_and_timeouts_in_the_error_shape() {
    // Body size.
    let (app, _) = app_with(Limits {
        max_body_bytes: 2048,
        ..Limits::default()
    });
    let a = json_req(
        &app,
        "POST",
        "/v1/search",
        json!({"query": "x", "not": ["y".repeat(900), "z".repeat(900), "w".repeat(900)]}),
    )
    .await;
    a.error(StatusCode::PAYLOAD_TOO_LARGE);

    // Page size and query length caps from the settings.
    let (app, _) = app_with(Limits {
        max_page: 10,
        max_query_chars: 20,
        ..Limits::default()
    });
    json_req(
        &app,
        "POST",
        "/v1/search",
        json!({"query": "x", "limit": 11}),
    )
    .await
    .error(StatusCode::BAD_REQUEST);
    get(&app, "/v1/lookup?limit=11")
        .await
        .error(StatusCode::BAD_REQUEST);
    json_req(&app, "POST", "/v1/search", json!({"query": "x".repeat(21)}))
        .await
        .error(StatusCode::BAD_REQUEST);

    // Overload: every embedding slot is taken, the request is shed with 503 and Retry-After.
    let (app, state) = app_with(Limits {
        max_concurrent_embeds: 1,
        queue_wait_ms: 50,
        ..Limits::default()
    });
    let held = state.embed_slots().clone().acquire_owned().await.unwrap();
    let a = json_req(&app, "POST", "/v1/search", json!({"query": "dog"})).await;
    assert!(a.error(StatusCode::SERVICE_UNAVAILABLE).contains("busy"));
    assert!(a.headers.contains_key(header::RETRY_AFTER));
    // Keyword-only work is not held up by embedding.
    get(&app, "/v1/lookup?limit=5").await.ok();
    drop(held);
    json_req(&app, "POST", "/v1/search", json!({"query": "dog"}))
        .await
        .ok();

    // Every ranking slot is taken (searches running): a search, and a query's facets, are
    // shed with 503, while look-ups, records and thumbnails do not queue behind them.
    let (app, state) = app_with(Limits {
        max_concurrent_searches: 1,
        queue_wait_ms: 50,
        ..Limits::default()
    });
    let held = state.search_slots().clone().acquire_owned().await.unwrap();
    let a = json_req(&app, "POST", "/v1/search", json!({"query": "dog"})).await;
    assert!(
        a.error(StatusCode::SERVICE_UNAVAILABLE)
            .contains("busy with other search")
    );
    assert!(a.headers.contains_key(header::RETRY_AFTER));
    get(&app, "/v1/facets?query=dog")
        .await
        .error(StatusCode::SERVICE_UNAVAILABLE);
    let look = get(&app, "/v1/lookup?limit=1").await.ok();
    let id = look["results"][0]["id"].as_str().unwrap().to_owned();
    get(&app, &format!("/v1/records/{id}")).await.ok();
    let thumb = get(&app, &format!("/v1/records/{id}/thumbnail?size=32")).await;
    assert_eq!(thumb.status, StatusCode::OK);
    get(&app, "/v1/facets").await.ok();
    let metrics = get(&app, "/metrics").await;
    assert!(
        String::from_utf8_lossy(&metrics.body)
            .contains("imagelens_busy_rejections_total{work=\"search\"}"),
        "the shed searches are counted"
    );
    drop(held);
    json_req(&app, "POST", "/v1/search", json!({"query": "dog"}))
        .await
        .ok();

    // Timeout: a request waiting longer than the request timeout is answered 503.
    let (app, state) = app_with(Limits {
        max_concurrent_embeds: 1,
        queue_wait_ms: 10_000,
        request_timeout_secs: 1,
        ..Limits::default()
    });
    let _held = state.embed_slots().clone().acquire_owned().await.unwrap();
    let started = std::time::Instant::now();
    let a = json_req(&app, "POST", "/v1/search", json!({"query": "dog"})).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    let msg = a.error(StatusCode::SERVICE_UNAVAILABLE);
    assert!(msg.contains("timeout"), "{msg}");
}

#[tokio::test]
async fn openapi_document_lists_every_route_and_resolves_every_ref() {
    let app = app();
    let doc = get(&app, "/v1/openapi.json").await.ok();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let routes: [(&str, &str); 36] = [
        ("get", "/v1/whoami"),
        ("post", "/v1/session"),
        ("get", "/v1/session"),
        ("delete", "/v1/session"),
        ("post", "/v1/search"),
        ("get", "/v1/lookup"),
        ("get", "/v1/facets"),
        ("post", "/v1/facets"),
        ("get", "/v1/info"),
        ("get", "/v1/records/{id}"),
        ("delete", "/v1/records/{id}"),
        ("get", "/v1/records/{id}/image"),
        ("get", "/v1/records/{id}/thumbnail"),
        ("get", "/v1/collections"),
        ("post", "/v1/collections"),
        ("get", "/v1/collections/{name}"),
        ("patch", "/v1/collections/{name}"),
        ("delete", "/v1/collections/{name}"),
        ("get", "/v1/collections/{name}/export"),
        ("post", "/v1/export"),
        ("post", "/v1/deletions"),
        ("get", "/v1/audit"),
        ("get", "/v1/audit/verify"),
        ("get", "/v1/accounts"),
        ("post", "/v1/accounts"),
        ("patch", "/v1/accounts/{name}"),
        ("delete", "/v1/accounts/{name}"),
        ("get", "/v1/tokens"),
        ("post", "/v1/tokens"),
        ("delete", "/v1/tokens/{id}"),
        ("get", "/v1/retention"),
        ("put", "/v1/retention"),
        ("post", "/v1/retention/run"),
        ("get", "/v1/openapi.json"),
        ("get", "/healthz"),
        ("get", "/metrics"),
    ];
    let paths = doc["paths"].as_object().unwrap();
    let listed: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(listed, routes.len(), "no undocumented extras");
    for (method, path) in routes {
        assert!(
            paths[path].get(method).is_some(),
            "{method} {path} is documented"
        );
        // ... and routed: the router does not answer 404/405 for it.
        let uri = path
            .replace("{id}", "ffffffffffffffff")
            .replace("{name}", "absent");
        let req = Request::builder()
            .method(method.to_uppercase().as_str())
            .uri(&uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{}"))
            .unwrap();
        let a = send(&app, req).await;
        assert_ne!(a.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
        if !path.contains('{') {
            assert_ne!(a.status, StatusCode::NOT_FOUND, "{method} {uri}");
        }
    }
    // Every $ref points at a schema the document defines.
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let mut stack = vec![&doc];
    let mut refs = 0;
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    let name = r.strip_prefix("#/components/schemas/").unwrap();
                    assert!(schemas.contains_key(name), "dangling $ref {r}");
                    refs += 1;
                }
                stack.extend(m.values());
            }
            Value::Array(a) => stack.extend(a),
            _ => {}
        }
    }
    assert!(refs > 10);
    // The rename, the facets' search fields and what a grid card draws are described.
    assert!(
        schemas["UpdateCollection"]["properties"]["name"].is_object(),
        "rename is documented"
    );
    let facet_params: Vec<&str> = doc["paths"]["/v1/facets"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in ["query", "like", "not", "literal", "time_zone", "weights"] {
        assert!(facet_params.contains(&name), "{name}: {facet_params:?}");
    }
    assert!(schemas["FacetScope"]["properties"]["depth"].is_object());
    for field in ["width", "height", "captions", "all_boxes"] {
        assert!(
            schemas["SearchHit"]["properties"][field].is_object(),
            "SearchHit.{field}"
        );
    }
}

#[tokio::test]
async fn a_collection_is_renamed_in_one_audited_call_and_a_refusal_loses_nothing() {
    let app = app();
    let records = all_records(&app).await;
    let some: Vec<String> = records
        .iter()
        .take(2)
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    for (name, ids) in [("rename-from", &some[..]), ("rename-taken", &some[..1])] {
        let a = json_req(
            &app,
            "POST",
            "/v1/collections",
            json!({"name": name, "description": "ladders", "ids": ids}),
        )
        .await;
        assert_eq!(a.status, StatusCode::CREATED);
    }
    let before = get(&app, "/v1/collections/rename-from").await.ok();
    // Refused: a taken name (409), a bad name (400), ids with a rename (400), a missing one (404).
    let msg = json_req(
        &app,
        "PATCH",
        "/v1/collections/rename-from",
        json!({"name": "rename-taken"}),
    )
    .await
    .error(StatusCode::CONFLICT);
    assert!(msg.contains("rename-taken"), "{msg}");
    for bad in ["bad name/x", "", ".hidden", &"x".repeat(65)] {
        let msg = json_req(
            &app,
            "PATCH",
            "/v1/collections/rename-from",
            json!({"name": bad}),
        )
        .await
        .error(StatusCode::BAD_REQUEST);
        assert!(msg.contains("not valid"), "{bad}: {msg}");
    }
    let msg = json_req(
        &app,
        "PATCH",
        "/v1/collections/rename-from",
        json!({"name": "rename-to", "add": [some[1]]}),
    )
    .await
    .error(StatusCode::BAD_REQUEST);
    assert!(msg.contains("on its own"), "{msg}");
    json_req(
        &app,
        "PATCH",
        "/v1/collections/rename-absent",
        json!({"name": "rename-to"}),
    )
    .await
    .error(StatusCode::NOT_FOUND);
    // Nothing changed (the store's own test checks the file's bytes).
    assert_eq!(get(&app, "/v1/collections/rename-from").await.ok(), before);
    get(&app, "/v1/collections/rename-to")
        .await
        .error(StatusCode::NOT_FOUND);

    // The rename: the same ids, description and creation under the new name only.
    let renamed = json_req(
        &app,
        "PATCH",
        "/v1/collections/rename-from",
        json!({"name": "rename-to"}),
    )
    .await
    .ok();
    assert_eq!(renamed["name"], "rename-to");
    for field in ["ids", "description", "created", "created_by"] {
        assert_eq!(renamed[field], before[field], "{field}");
    }
    get(&app, "/v1/collections/rename-from")
        .await
        .error(StatusCode::NOT_FOUND);
    assert_eq!(
        get(&app, "/v1/collections/rename-to").await.ok()["ids"],
        json!(some)
    );
    assert_eq!(
        get(&app, "/v1/collections/rename-taken").await.ok()["ids"],
        json!(some[..1])
    );
    // One audited call, naming both.
    let trail = std::fs::read_to_string(shared().fx.data.join("audit/trail.jsonl")).unwrap();
    let entries: Vec<Value> = trail
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["action"] == "collection_update" && e["query"]["name"] == "rename-from")
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["query"]["renamed_to"], "rename-to");
    assert_eq!(entries[0]["outcome"], "ok");
    for name in ["rename-to", "rename-taken"] {
        let a = send(
            &app,
            Request::delete(format!("/v1/collections/{name}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(a.status, StatusCode::NO_CONTENT);
    }
}
