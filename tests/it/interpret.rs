//! Query interpretation end to end: filters read from plain English really apply, through the
//! CLI and the HTTP API, are shown, and go away with `--literal` / `"literal": true`.

use std::collections::BTreeSet;

use chrono::Datelike;
use imagelens::http::router;
use serde_json::{Value, json};

use crate::common::{fixture, ok_json};
use crate::http::{json_req, shared};

/// Every caption names one of the generated places, so this text matches every record.
const EVERY_PLACE: &str = "street beach park harbour yard";

fn paths(v: &Value) -> BTreeSet<String> {
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["path"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn filters_read_from_the_query_apply_and_are_shown() {
    let fx = fixture(40);
    fx.ingest(false);
    let query =
        format!("{EVERY_PLACE} with a dog without people in synth taken between 2019 and 2021");
    let v = ok_json(&fx.run_with(false, &["search", &query, "--limit", "100", "--json"]));
    let want: BTreeSet<String> = fx
        .synth
        .scenes
        .iter()
        .filter(|s| {
            let l = s.labels();
            l.contains(&"dog") && !l.contains(&"person") && s.captured.year() <= 2021
        })
        .map(|s| s.file_name.clone())
        .collect();
    assert!(!want.is_empty(), "the fixture has such scenes");
    assert_eq!(paths(&v), want);
    let i = &v["interpreted"];
    assert_eq!(i["text"], EVERY_PLACE);
    let kinds: Vec<(&str, &str)> = i["filters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["kind"].as_str().unwrap(), f["words"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("label", "with a dog"),
            ("no_label", "without people"),
            ("dataset", "in synth"),
            ("date", "taken between 2019 and 2021"),
        ]
    );
    assert_eq!(i["filters"][3]["after"], "2019-01-01T00:00:00Z");
    assert_eq!(i["filters"][3]["before"], "2021-12-31T23:59:59Z");

    // Literal: no filters, so records without a dog come back too, and nothing is reported.
    let lit = ok_json(&fx.run_with(
        false,
        &["search", &query, "--limit", "100", "--literal", "--json"],
    ));
    assert!(lit.get("interpreted").is_none());
    assert!(paths(&lit).len() > want.len());

    // People see the interpretation in one line.
    let human = fx.run_with(false, &["search", &query, "--limit", "5"]);
    let out = String::from_utf8_lossy(&human.stdout);
    assert!(
        out.lines()
            .any(|l| l.starts_with("interpreted: label=dog (with a dog); no-label=person")),
        "{out}"
    );

    // The trail keeps the query as typed with the filter that ran.
    let trail = std::fs::read_to_string(fx.data.join("audit/trail.jsonl")).unwrap();
    let last: Value = trail
        .lines()
        .filter(|l| l.contains("\"search\""))
        .map(|l| serde_json::from_str(l).unwrap())
        .find(|e: &Value| e.to_string().contains("no_labels"))
        .expect("an audited interpreted search");
    assert!(
        last.to_string().contains("with a dog without people"),
        "{last}"
    );
}

#[test]
fn a_time_zone_moves_relative_dates_and_a_bad_one_is_refused() {
    let fx = fixture(6);
    fx.ingest(false);
    let v = ok_json(&fx.run_with(
        false,
        &[
            "search",
            "boats yesterday",
            "--time-zone",
            "+05:00",
            "--json",
        ],
    ));
    let f = &v["interpreted"]["filters"][0];
    assert!(
        f["after"].as_str().unwrap().ends_with("T00:00:00+05:00"),
        "{f}"
    );
    assert_eq!(v["interpreted"]["time_zone"], "+05:00");
    let out = fx.run_with(false, &["search", "boats", "--time-zone", "Mars/Base"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("time zone"));
}

#[tokio::test]
async fn the_api_reads_filters_unless_literal() {
    let app = router(shared().state.clone());
    let v = json_req(
        &app,
        "POST",
        "/v1/search",
        json!({"query": format!("{EVERY_PLACE} containing cars"), "limit": 100}),
    )
    .await
    .ok();
    assert_eq!(v["interpreted"]["filters"][0]["kind"], "label");
    assert_eq!(v["interpreted"]["filters"][0]["value"], "car");
    let results = v["results"].as_array().unwrap();
    assert!(!results.is_empty());
    for r in results {
        assert!(
            r["labels"].as_array().unwrap().contains(&json!("car")),
            "{r}"
        );
    }
    let lit = json_req(
        &app,
        "POST",
        "/v1/search",
        json!({"query": format!("{EVERY_PLACE} containing cars"), "limit": 100, "literal": true}),
    )
    .await
    .ok();
    assert!(lit.get("interpreted").is_none());
    assert!(lit["results"].as_array().unwrap().len() > results.len());
    let bad = json_req(
        &app,
        "POST",
        "/v1/search",
        json!({"query": "boats", "time_zone": "Europe/Paris"}),
    )
    .await;
    assert!(
        bad.error(axum::http::StatusCode::BAD_REQUEST)
            .starts_with("time_zone")
    );
}
