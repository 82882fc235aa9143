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
    // An IANA zone: its offset today is the one the day's start carries.
    let v = ok_json(&fx.run_with(
        false,
        &[
            "search",
            "boats yesterday",
            "--time-zone",
            "Asia/Tokyo",
            "--json",
        ],
    ));
    assert_eq!(v["interpreted"]["time_zone"], "Asia/Tokyo");
    let f = &v["interpreted"]["filters"][0];
    assert!(
        f["after"].as_str().unwrap().ends_with("T00:00:00+09:00"),
        "{f}"
    );
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
        json!({"query": "boats", "time_zone": "Europe/Atlantis"}),
    )
    .await;
    let msg = bad.error(axum::http::StatusCode::BAD_REQUEST);
    assert!(
        msg.starts_with("time_zone") && msg.contains("Europe/Paris"),
        "{msg}"
    );
}

/// The ids of a collection made from `search` through the API.
async fn collection_from(app: &axum::Router, name: &str, search: Value) -> BTreeSet<String> {
    let a = json_req(
        app,
        "POST",
        "/v1/collections",
        json!({"name": name, "search": search, "max_results": 100}),
    )
    .await;
    assert_eq!(
        a.status,
        axum::http::StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&a.body)
    );
    a.json()["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn collections_and_exports_select_what_the_same_search_shows() {
    let app = router(shared().state.clone());
    let query = format!("{EVERY_PLACE} containing cars");
    let shown: BTreeSet<String> = json_req(
        &app,
        "POST",
        "/v1/search",
        json!({"query": query, "limit": 100}),
    )
    .await
    .ok()["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(!shown.is_empty());
    // A collection made from the search holds what the search showed: the label read from
    // the query applies (it used to be taken literally and hold every place).
    let kept = collection_from(&app, "interpreted-cars", json!({"query": query})).await;
    assert_eq!(kept, shown);
    let literal = collection_from(
        &app,
        "literal-cars",
        json!({"query": query, "literal": true}),
    )
    .await;
    assert!(
        literal.len() > kept.len(),
        "{} {}",
        literal.len(),
        kept.len()
    );
    // An export of the same search holds the same records.
    let a = json_req(
        &app,
        "POST",
        "/v1/export",
        json!({"search": {"query": query}, "format": "csv", "archive": "tar", "max_results": 100}),
    )
    .await;
    assert_eq!(a.status, axum::http::StatusCode::OK);
    let mut archive = tar::Archive::new(&a.body[..]);
    let mut csv_text = String::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().ends_with("annotations.csv") {
            std::io::Read::read_to_string(&mut entry, &mut csv_text).unwrap();
        }
    }
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let id_col = headers.iter().position(|h| h == "record_id").unwrap();
    let exported: BTreeSet<String> = reader
        .records()
        .map(|r| r.unwrap()[id_col].to_owned())
        .collect();
    assert_eq!(exported, shown);
}

#[test]
fn the_vocabulary_is_kept_until_the_library_changes() {
    use imagelens::interpret::library::vocabulary;
    let fx = fixture(6);
    fx.ingest(false);
    let lib = indexer::Library::open(&fx.data, indexer::StoreSettings::Edge).unwrap();
    let synonyms = std::collections::BTreeMap::new();
    let first = vocabulary(&lib, &synonyms).unwrap();
    let again = vocabulary(&lib, &synonyms).unwrap();
    assert!(std::sync::Arc::ptr_eq(&first, &again), "read once");
    assert_ne!(*first, Default::default());
    // Other synonyms: made anew.
    let lorry = std::collections::BTreeMap::from([("lorry".to_owned(), "car".to_owned())]);
    assert!(!std::sync::Arc::ptr_eq(
        &first,
        &vocabulary(&lib, &lorry).unwrap()
    ));
    // Every record deleted: the index changed, so the labels are gone.
    let ids: Vec<String> = lib.keyword().ids().unwrap().into_iter().collect();
    lib.delete_records(&ids).unwrap();
    lib.keyword().reload().unwrap();
    let after = vocabulary(&lib, &synonyms).unwrap();
    assert_eq!(*after, Default::default(), "{after:?}");
}

/// A search with a relative date pages on past midnight: its cursors carry the day its dates
/// were read against (`~YYYY-MM-DD`), and the next page reads them against that day. Before,
/// the next page read "the last N days" against the new day, another filter, and the engine
/// refused the cursor as another request's.
#[tokio::test]
async fn paging_on_past_midnight_keeps_the_first_pages_dates() {
    use chrono::{TimeZone, Utc};
    use imagelens::interpret::library::interpret_in;
    use imagelens::interpret::unpin_cursor;
    use imagelens::params::FilterParams;
    use imagelens::search::{Fusion, SearchRequest};

    let query = format!("{EVERY_PLACE} taken in the last 4000 days");
    // Through the API: every page's cursor carries the day, and the pages are one sequence.
    let app = router(shared().state.clone());
    let mut seen = BTreeSet::new();
    let mut cursor = Value::Null;
    let mut pages = 0;
    loop {
        let v = json_req(
            &app,
            "POST",
            "/v1/search",
            json!({"query": query, "limit": 4, "cursor": cursor}),
        )
        .await
        .ok();
        let today = v["interpreted"]["today"].as_str().unwrap().to_owned();
        assert_eq!(v["interpreted"]["filters"][0]["kind"], "date", "{v}");
        for p in paths(&v) {
            assert!(seen.insert(p), "no repeats");
        }
        pages += 1;
        match v["next_cursor"].as_str() {
            Some(c) => {
                assert!(c.ends_with(&format!("~{today}")), "{c}");
                cursor = json!(c);
            }
            None => break,
        }
    }
    assert!(pages >= 3, "{pages} pages");
    // A day that is not a date is refused as a bad cursor.
    let msg = json_req(
        &app,
        "POST",
        "/v1/search",
        json!({"query": query, "limit": 4, "cursor": "4.abc~someday"}),
    )
    .await
    .error(axum::http::StatusCode::BAD_REQUEST);
    assert!(msg.contains("cursor"), "{msg}");

    // Midnight, with the clock in hand: page 1 at 23:59:59, page 2 a second after midnight.
    let service = shared().state.service();
    let late = Utc.with_ymd_and_hms(2026, 12, 1, 23, 59, 59).unwrap();
    let after = Utc.with_ymd_and_hms(2026, 12, 2, 0, 0, 1).unwrap();
    let request = |pinned_at: Option<chrono::NaiveDate>, now, cursor: Option<String>| {
        let mut i = interpret_in(service.library(), &query, None, now, pinned_at).unwrap();
        let mut filter = FilterParams::default();
        i.apply(&mut filter);
        let req = SearchRequest {
            text: i.ranking_text(&query).to_owned(),
            like: None,
            not: Vec::new(),
            filter: filter.to_filter().unwrap(),
            limit: 4,
            cursor,
            fusion: Fusion::default(),
        };
        (i, req)
    };
    let (i, req) = request(None, late, None);
    let first = service.search(&req).unwrap();
    let pinned = i.pin(first.next_cursor.clone()).unwrap();
    let (engine, day) = unpin_cursor(Some(&pinned)).unwrap();
    let (_, req) = request(day, after, engine.clone());
    let second = service.search(&req).unwrap();
    assert!(!second.results.is_empty());
    for h in &second.results {
        assert!(first.results.iter().all(|f| f.id != h.id), "no repeats");
    }
    // Read against the new day the filter is another, and the cursor is refused.
    let (_, req) = request(None, after, engine);
    let err = service.search(&req).unwrap_err().to_string();
    assert!(err.contains("not valid for this request"), "{err}");
}
