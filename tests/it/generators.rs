//! What the property tests share: the runtime they drive the router with, the runner (cases
//! per property), generators of hostile values for structure-aware JSON, and the check of
//! the API's promise for every answer.

use std::sync::OnceLock;

use axum::http::{StatusCode, header};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};

use crate::http::Answer;

/// Cases per property: 10,000 by default; `IMAGELENS_PROPTEST_CASES` overrides.
pub fn cases() -> u32 {
    std::env::var("IMAGELENS_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

/// A runner of [`cases`] cases, no persistence files, bounded shrinking.
pub fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        // Shrinking a failure through the router is slow but worth it when one appears.
        max_shrink_iters: 2_000,
        ..Config::default()
    })
}

/// One runtime for the properties that send requests through the router.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

/// Hostile strings: empty, huge, control characters, unicode tricks, the syntax of every parser
/// behind the API (tantivy, globs, dates, cursors, weights), path traversal, names and ids of
/// the generated libraries.
pub fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(" ".into()),
        Just("car".into()),
        Just("face".into()),
        Just("synth".into()),
        Just("nope".into()),
        Just("admin".into()),
        Just("searcher".into()),
        Just("viewer".into()),
        Just("*".into()),
        Just("**/*.jpg".into()),
        Just("[z-a]".into()),
        Just("\u{202e}\u{200b}\u{feff}".into()),
        Just("../../etc/passwd".into()),
        Just("\0\0".into()),
        Just("he said \"hi\"\t\n.png".into()),
        Just("labels_text:face AND (".into()),
        Just("2021-01-01".into()),
        Just("2024-13-45".into()),
        Just("2026-01-01T00:00:00Z".into()),
        Just("+262143-01-01T00:00:00Z".into()),
        Just("0000000000000000".into()),
        Just("00000000000000000000000000000000".into()),
        Just("1000000000000.0123456789ab".into()),
        Just("18446744073709551615.ffffffffffff".into()),
        Just("keyword=0,depth=10000".into()),
        Just("image=NaN".into()),
        Just("a".repeat(5_000)),
        Just(format!("*{}", "?".repeat(3_000))),
        "[a-z0-9._@-]{0,12}",
        "\\PC{0,40}",
        any::<String>(),
    ]
}

/// Numbers at and around every bound the API has (page 500, 366-day tokens, 36,500-day
/// schedules), integer extremes, fractions and floats out of every range.
pub fn hostile_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!(0)),
        Just(json!(-1)),
        Just(json!(1)),
        Just(json!(20)),
        Just(json!(366)),
        Just(json!(367)),
        Just(json!(500)),
        Just(json!(501)),
        Just(json!(36_500)),
        Just(json!(36_501)),
        Just(json!(u32::MAX)),
        Just(json!(u64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(1.5)),
        Just(json!(1e300)),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u32>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
    ]
}

/// Any JSON value, a few levels deep, leaves biased to hostile values.
pub fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        hostile_number(),
        hostile_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(hostile_string(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Asserts the API's promise for one answer: no 5xx (busy 503s excepted: they are the
/// designed answer to overload), and every error in the one JSON shape with a message that
/// names the problem without echoing the request back.
pub fn check_answer(answer: &Answer, what: &str) -> Result<(), TestCaseError> {
    let status = answer.status;
    let text = String::from_utf8_lossy(&answer.body);
    prop_assert!(
        !status.is_server_error() || status == StatusCode::SERVICE_UNAVAILABLE,
        "{what}: {status}: {text}"
    );
    if !status.is_success() {
        prop_assert_eq!(
            answer
                .headers
                .get(header::CONTENT_TYPE)
                .map(|v| v.to_str().unwrap_or("")),
            Some("application/json"),
            "{}: error {} is not JSON: {}",
            what,
            status,
            text
        );
        let v: Value = serde_json::from_slice(&answer.body)
            .map_err(|e| TestCaseError::fail(format!("{what}: {e}: {text}")))?;
        prop_assert!(v["error"]["code"].is_string(), "{what}: {v}");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        prop_assert!(!message.is_empty(), "{what}: {v}");
        // An error names the bad field; it never echoes a request's megabytes back.
        let chars = message.chars().count();
        prop_assert!(
            chars <= imagelens::http::error::MAX_MESSAGE_CHARS + 10,
            "{what}: {chars} characters"
        );
    }
    Ok(())
}
