//! Property tests of the untrusted input surfaces the searchers and curators reach: the JSON
//! bodies of search, collections and export, multipart uploads, the query strings of look-ups,
//! facets, thumbnails and the audit trail, and `serve`'s settings files.
//!
//! Each property runs 10,000 generated inputs (`IMAGELENS_PROPTEST_CASES` overrides) (structure-aware: the real field names with
//! hostile values, plus arbitrary bytes) through the real router in-process and asserts what
//! the README promises: no panic, no 5xx, and every error in the one JSON shape
//! `{"error":{"code","message"}}`. (The admin routes' bodies have their own properties in
//! `accounts_safety.rs`; the COCO reader and the image decoder theirs beside them.)

use std::cell::Cell;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use imagelens::settings::Settings;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use crate::generators::{any_json, check_answer, hostile_number, hostile_string, runner, runtime};
use crate::http::{Answer, send, shared};

/// An object whose keys come mostly from `fields` (the real names), with any values.
fn object_of(fields: &'static [&'static str]) -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        4 => prop::sample::select(fields).prop_map(str::to_owned),
        1 => hostile_string(),
    ];
    let value = prop_oneof![
        3 => any_json(),
        1 => prop::collection::vec(hostile_string().prop_map(Value::String), 0..8)
            .prop_map(Value::Array),
    ];
    prop::collection::vec((key, value), 0..6).prop_map(|kv| {
        let mut m = Map::new();
        for (k, v) in kv {
            m.insert(k, v);
        }
        Value::Object(m)
    })
}

const FILTER_FIELDS: &[&str] = &[
    "labels",
    "no_labels",
    "datasets",
    "captured_after",
    "captured_before",
    "created_after",
    "created_before",
    "annotated_after",
    "annotated_before",
    "ingested_after",
    "ingested_before",
    "filename",
    "filename_prefix",
    "filename_glob",
];

const SEARCH_FIELDS: &[&str] = &[
    "query", "like", "not", "filter", "limit", "cursor", "weights",
];

/// A search body: the real fields, `filter` itself structure-aware.
fn search_body() -> impl Strategy<Value = Value> {
    (
        object_of(SEARCH_FIELDS),
        object_of(FILTER_FIELDS),
        any::<bool>(),
    )
        .prop_map(|(mut body, filter, with_filter)| {
            if with_filter {
                body["filter"] = filter;
            }
            body
        })
}

fn request(method: &str, uri: &str, content_type: &str, body: Vec<u8>) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap()
}

fn call(req: Request<Body>) -> Answer {
    let app = imagelens::http::router(shared().state.clone());
    runtime().block_on(send(&app, req))
}

#[test]
fn search_bodies_never_fail_the_server() {
    shared();
    let body = prop_oneof![
        8 => search_body().prop_map(|v| v.to_string().into_bytes()),
        1 => any_json().prop_map(|v| v.to_string().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ];
    runner()
        .run(&body, |bytes| {
            let a = call(request("POST", "/v1/search", "application/json", bytes));
            check_answer(&a, "POST /v1/search")
        })
        .unwrap();
}

const COLLECTION_FIELDS: &[&str] = &[
    "name",
    "description",
    "ids",
    "search",
    "max_results",
    "add",
    "remove",
];

#[test]
fn collection_and_export_bodies_never_fail_the_server() {
    shared();
    let ids: Vec<Value> = crate::common::ids(
        &runtime()
            .block_on(crate::http::get(
                &imagelens::http::router(shared().state.clone()),
                "/v1/lookup?limit=5",
            ))
            .ok(),
    )
    .into_iter()
    .map(Value::String)
    .collect();
    let known = Just(ids);
    let body = (
        object_of(COLLECTION_FIELDS),
        search_body(),
        known,
        0..4usize,
        0..3usize,
        "[a-z][a-z0-9-]{0,20}",
    )
        .prop_map(|(mut body, search, ids, route, shape, name)| {
            match shape {
                // Hostile values throughout.
                0 => {}
                // Real ids (and, for a create, a valid name) beside hostile fields.
                1 => {
                    body["ids"] = Value::Array(ids);
                    body["add"] = body["ids"].clone();
                    if route == 0 {
                        body["name"] = Value::String(name);
                    }
                }
                // A well-formed request.
                _ => {
                    body = match route {
                        0 => json!({"name": name, "ids": ids}),
                        3 => {
                            json!({"search": {"query": "car"}, "format": "coco", "max_results": 3})
                        }
                        _ => json!({"name": name, "add": ids, "remove": []}),
                    };
                }
            }
            if route == 3 && shape == 0 {
                // POST /v1/export takes a search, a format and an archive kind.
                body["search"] = search;
            }
            (route, body)
        });
    let made = Cell::new(0usize);
    runner()
        .run(&body, |(route, body)| {
            let (method, uri) = match route {
                0 => ("POST", "/v1/collections".to_owned()),
                1 => ("PATCH", "/v1/collections/fuzz-target".to_owned()),
                2 => {
                    let name = body["name"].as_str().unwrap_or("x").to_owned();
                    ("PATCH", format!("/v1/collections/{}", urlencode(&name)))
                }
                _ => ("POST", "/v1/export".to_owned()),
            };
            let a = call(request(
                method,
                &uri,
                "application/json",
                body.to_string().into_bytes(),
            ));
            check_answer(&a, &format!("{method} {uri}"))?;
            if route == 0 && a.status == StatusCode::CREATED {
                // Keep the shared library's collections as they were.
                made.set(made.get() + 1);
                let name = body["name"].as_str().unwrap().to_owned();
                let d = call(
                    Request::delete(format!("/v1/collections/{}", urlencode(&name)))
                        .body(Body::empty())
                        .unwrap(),
                );
                prop_assert!(d.status.is_success(), "delete {name}: {}", d.status);
            }
            Ok(())
        })
        .unwrap();
    assert!(made.get() > 0, "some generated collections are valid");
}

fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A multipart body from generated parts; the boundary is fixed, part names and contents are
/// not.
fn multipart_body(parts: &[(String, Vec<u8>)], close: bool) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, data) in parts {
        body.extend_from_slice(b"--fuzz-boundary\r\n");
        body.extend_from_slice(
            format!(
                "Content-Disposition: form-data; name=\"{name}\"; filename=\"f\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    if close {
        body.extend_from_slice(b"--fuzz-boundary--\r\n");
    }
    body
}

fn small_png() -> Vec<u8> {
    let img = image::RgbImage::from_fn(20, 16, |x, y| {
        image::Rgb([(x * 9) as u8, (y * 13) as u8, 7])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

#[test]
fn multipart_uploads_never_fail_the_server() {
    shared();
    let png = small_png();
    // Image bytes: a real PNG, one with a flipped byte or cut short, or noise.
    let image = (
        0..4usize,
        any::<prop::sample::Index>(),
        any::<u8>(),
        prop::collection::vec(any::<u8>(), 0..48),
    )
        .prop_map(move |(kind, at, byte, noise)| match kind {
            0 => png.clone(),
            1 => {
                let mut p = png.clone();
                let i = at.index(p.len());
                p[i] ^= byte | 1;
                p
            }
            2 => png[..at.index(png.len())].to_vec(),
            _ => noise,
        });
    let name = prop_oneof![
        4 => Just("image".to_owned()),
        4 => Just("request".to_owned()),
        1 => hostile_string().prop_map(|s| s.replace(['"', '\r', '\n'], "")),
    ];
    let part = (name, image, search_body()).prop_map(|(name, image, search)| {
        let data = if name == "request" {
            search.to_string().into_bytes()
        } else {
            image
        };
        (name, data)
    });
    // The same forms go to the search and, with the search wrapped as an export's (a few
    // results, CSV), to the export of a search by image.
    let body = (
        prop::collection::vec(part, 0..4),
        any::<bool>(),
        any::<bool>(),
    );
    runner()
        .run(&body, |(mut parts, close, export)| {
            let route = if export {
                for (name, data) in &mut parts {
                    if *name == "request"
                        && let Ok(search) = serde_json::from_slice::<Value>(data)
                    {
                        *data = json!({"search": search, "max_results": 3, "format": "csv"})
                            .to_string()
                            .into_bytes();
                    }
                }
                "/v1/export"
            } else {
                "/v1/search"
            };
            let a = call(request(
                "POST",
                route,
                "multipart/form-data; boundary=fuzz-boundary",
                multipart_body(&parts, close),
            ));
            check_answer(&a, &format!("POST {route} (multipart)"))
        })
        .unwrap();
}

/// Query-string parameters of the GET routes.
const QUERY_KEYS: &[&str] = &[
    "label",
    "no_label",
    "dataset",
    "captured_after",
    "captured_before",
    "ingested_after",
    "filename",
    "filename_prefix",
    "filename_glob",
    "sort",
    "desc",
    "limit",
    "cursor",
    "size",
    "boxes",
    "unredacted",
    "record",
    "actor",
    "action",
    "after",
    "before",
    "format",
    "archive",
    "query",
    "like",
    "not",
    "literal",
    "time_zone",
    "weights",
];

#[test]
fn query_strings_never_fail_the_server() {
    shared();
    let id = crate::common::ids(
        &runtime()
            .block_on(crate::http::get(
                &imagelens::http::router(shared().state.clone()),
                "/v1/lookup?limit=1",
            ))
            .ok(),
    )[0]
    .clone();
    let routes = vec![
        "/v1/lookup".to_owned(),
        "/v1/facets".to_owned(),
        "/v1/audit".to_owned(),
        format!("/v1/records/{id}"),
        format!("/v1/records/{id}/thumbnail"),
        format!("/v1/records/{id}/image"),
    ];
    let pair = (
        prop_oneof![
            4 => prop::sample::select(QUERY_KEYS).prop_map(str::to_owned),
            1 => hostile_string(),
        ],
        prop_oneof![
            2 => hostile_string(),
            1 => hostile_number().prop_map(|v| v.to_string()),
        ],
    );
    let query = (
        prop::sample::select(routes),
        prop::collection::vec(pair, 0..5),
    );
    runner()
        .run(&query, |(route, pairs)| {
            let qs: Vec<String> = pairs
                .iter()
                .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
                .collect();
            let uri = format!("{route}?{}", qs.join("&"));
            let a = call(Request::get(&uri).body(Body::empty()).unwrap());
            check_answer(&a, &format!("GET {route}"))
        })
        .unwrap();
}

const SETTINGS_KEYS: &[&str] = &[
    "addr",
    "data_dir",
    "model",
    "no_model",
    "max_body_bytes",
    "max_image_pixels",
    "max_page",
    "max_query_chars",
    "request_timeout_secs",
    "max_concurrent_embeds",
    "max_concurrent_decodes",
    "max_concurrent_searches",
    "queue_wait_ms",
    "max_thumbnail",
    "max_export_records",
    "labels",
];

/// A TOML value written as text: numbers of every size, strings, arrays, garbage.
fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        Just("18446744073709551616".into()),
        Just("-0".into()),
        Just("1e400".into()),
        Just("nan".into()),
        Just("true".into()),
        Just("\"127.0.0.1:0\"".into()),
        Just("\"[::1]:99999\"".into()),
        Just("[\"face\", \"\"]".into()),
        Just("{ x = 1 }".into()),
        hostile_string().prop_map(|s| format!("{s:?}")),
        "\\PC{0,12}",
    ]
}

#[test]
fn settings_files_are_parsed_or_refused_by_name() {
    let line = (
        prop_oneof![
            4 => prop::sample::select(SETTINGS_KEYS).prop_map(str::to_owned),
            1 => "[a-z_]{1,12}",
        ],
        toml_value(),
    )
        .prop_map(|(k, v)| format!("{k} = {v}"));
    let section = prop_oneof![
        Just(String::new()),
        Just("[limits]".to_owned()),
        Just("[privacy]".to_owned()),
        Just("[store]".to_owned()),
        "\\[[a-z]{1,8}\\]",
    ];
    let text = prop_oneof![
        8 => prop::collection::vec((section, line), 0..6).prop_map(|lines| {
            lines
                .into_iter()
                .map(|(s, l)| format!("{s}\n{l}\n"))
                .collect::<String>()
        }),
        1 => any::<String>(),
    ];
    let accepted = Cell::new(0usize);
    runner()
        .run(&text, |text| {
            match Settings::from_toml(&text) {
                Ok(s) => {
                    if s.validate().is_ok() {
                        accepted.set(accepted.get() + 1);
                    } else {
                        let msg = s.validate().unwrap_err().to_string();
                        prop_assert!(msg.contains("limits."), "a refusal names the key: {msg}");
                    }
                }
                Err(msg) => prop_assert!(!msg.is_empty(), "a parse error says why"),
            }
            Ok(())
        })
        .unwrap();
    assert!(accepted.get() > 0, "some generated settings are valid");
}
