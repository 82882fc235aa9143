//! The interpreter's table of phrases (today is Tuesday 2026-12-01 in every case) and its
//! properties.

use std::collections::BTreeMap;

use chrono::{FixedOffset, NaiveDate};
use proptest::prelude::*;

use super::*;

fn vocab() -> Vocabulary {
    let synonyms = BTreeMap::from([
        ("lorry".to_owned(), "truck".to_owned()),
        ("number plate".to_owned(), "licence plate".to_owned()),
        ("doggo".to_owned(), "no such label".to_owned()),
    ]);
    Vocabulary::new(
        [
            "dog",
            "cat",
            "person",
            "truck",
            "car",
            "licence plate",
            "traffic light",
            "boat",
            "bus",
            "bicycle",
            "Face",
        ],
        ["fleet-2024", "fleet-2025", "harbour", "2019"],
        &synonyms,
    )
    .with_splits(["train", "val", "test"])
}

fn clock() -> Clock {
    Clock {
        today: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
    }
}

fn utc() -> FixedOffset {
    FixedOffset::east_opt(0).unwrap()
}

/// `label=dog`, `no_label=person`, `dataset=x`, `filename=g`, `captured=A..B` (days).
fn compact(f: &Interpreted) -> String {
    match f.kind {
        FilterKind::Date => format!(
            "{}={}..{}",
            f.axis.unwrap().name(),
            f.after.as_deref().map_or("", |d| &d[..10]),
            f.before.as_deref().map_or("", |d| &d[..10]),
        ),
        k => format!(
            "{}={}",
            serde_json::to_value(k).unwrap().as_str().unwrap(),
            f.value.as_deref().unwrap()
        ),
    }
}

fn read(q: &str) -> Interpretation {
    interpret(q, &vocab(), &clock(), utc())
}

/// (query, ranking text kept, filters)
const TABLE: &[(&str, &str, &[&str])] = &[
    // The example.
    (
        "white pickup trucks at night from last March without people in fleet-2024",
        "white pickup trucks at night",
        &[
            "captured=2026-03-01..2026-03-31",
            "no_label=person",
            "dataset=fleet-2024",
        ],
    ),
    // Dates, relative to 2026-12-01.
    (
        "dogs last March",
        "dogs",
        &["captured=2026-03-01..2026-03-31"],
    ),
    (
        "dogs last december",
        "dogs",
        &["captured=2025-12-01..2025-12-31"],
    ),
    (
        "dogs last november",
        "dogs",
        &["captured=2026-11-01..2026-11-30"],
    ),
    (
        "boats in 2021",
        "boats",
        &["captured=2021-01-01..2021-12-31"],
    ),
    (
        "boats during 2021",
        "boats",
        &["captured=2021-01-01..2021-12-31"],
    ),
    (
        "boats from 2021",
        "boats",
        &["captured=2021-01-01..2021-12-31"],
    ),
    ("boats since May 3", "boats", &["captured=2026-05-03.."]),
    ("boats since 2020", "boats", &["captured=2020-01-01.."]),
    ("boats after 2020", "boats", &["captured=2021-01-01.."]),
    ("boats before 2020", "boats", &["captured=..2019-12-31"]),
    ("boats until 2020", "boats", &["captured=..2020-12-31"]),
    (
        "boats until March 2021",
        "boats",
        &["captured=..2021-03-31"],
    ),
    (
        "boats between 2020 and 2022",
        "boats",
        &["captured=2020-01-01..2022-12-31"],
    ),
    (
        "boats from 2020 to 2022",
        "boats",
        &["captured=2020-01-01..2022-12-31"],
    ),
    (
        "boats between March 2021 and May 2021",
        "boats",
        &["captured=2021-03-01..2021-05-31"],
    ),
    (
        "boats between 2021-03-04 and 2021-03-10",
        "boats",
        &["captured=2021-03-04..2021-03-10"],
    ),
    (
        "boats yesterday",
        "boats",
        &["captured=2026-11-30..2026-11-30"],
    ),
    ("boats today", "boats", &["captured=2026-12-01..2026-12-01"]),
    (
        "boats last 30 days",
        "boats",
        &["captured=2026-11-01..2026-12-01"],
    ),
    (
        "boats in the last 30 days",
        "boats",
        &["captured=2026-11-01..2026-12-01"],
    ),
    (
        "boats uploaded over the past week",
        "boats",
        &["ingested=2026-11-23..2026-11-29"],
    ),
    (
        "boats past 2 weeks",
        "boats",
        &["captured=2026-11-17..2026-12-01"],
    ),
    (
        "boats last three months",
        "boats",
        &["captured=2026-09-01..2026-12-01"],
    ),
    (
        "boats last 2 years",
        "boats",
        &["captured=2024-12-01..2026-12-01"],
    ),
    (
        "boats last week",
        "boats",
        &["captured=2026-11-23..2026-11-29"],
    ),
    (
        "boats this week",
        "boats",
        &["captured=2026-11-30..2026-12-01"],
    ),
    (
        "boats last month",
        "boats",
        &["captured=2026-11-01..2026-11-30"],
    ),
    (
        "boats this month",
        "boats",
        &["captured=2026-12-01..2026-12-01"],
    ),
    (
        "boats last year",
        "boats",
        &["captured=2025-01-01..2025-12-31"],
    ),
    (
        "boats this year",
        "boats",
        &["captured=2026-01-01..2026-12-01"],
    ),
    (
        "boats 2021-03-04",
        "boats",
        &["captured=2021-03-04..2021-03-04"],
    ),
    (
        "boats on 2021-03-04",
        "boats",
        &["captured=2021-03-04..2021-03-04"],
    ),
    (
        "boats 2021/03/04",
        "boats",
        &["captured=2021-03-04..2021-03-04"],
    ),
    (
        "boats in 2021-03",
        "boats",
        &["captured=2021-03-01..2021-03-31"],
    ),
    (
        "boats in March 2021",
        "boats",
        &["captured=2021-03-01..2021-03-31"],
    ),
    (
        "boats March 2021",
        "boats",
        &["captured=2021-03-01..2021-03-31"],
    ),
    (
        "boats on May 3, 2021",
        "boats",
        &["captured=2021-05-03..2021-05-03"],
    ),
    (
        "boats on 3 May 2021",
        "boats",
        &["captured=2021-05-03..2021-05-03"],
    ),
    (
        "boats on May 3rd",
        "boats",
        &["captured=2026-05-03..2026-05-03"],
    ),
    (
        "boats on December 25",
        "boats",
        &["captured=2025-12-25..2025-12-25"],
    ),
    (
        "boats in march",
        "boats",
        &["captured=2026-03-01..2026-03-31"],
    ),
    (
        "boats in december",
        "boats",
        &["captured=2026-12-01..2026-12-31"],
    ),
    // The axis from a verb.
    (
        "boats annotated last March",
        "boats",
        &["annotated=2026-03-01..2026-03-31"],
    ),
    (
        "boats ingested yesterday",
        "boats",
        &["ingested=2026-11-30..2026-11-30"],
    ),
    (
        "boats uploaded since 2025",
        "boats",
        &["ingested=2025-01-01.."],
    ),
    (
        "boats taken in 2021",
        "boats",
        &["captured=2021-01-01..2021-12-31"],
    ),
    (
        "boats captured 2021",
        "boats",
        &["captured=2021-01-01..2021-12-31"],
    ),
    (
        "boats created in 2020",
        "boats",
        &["created=2020-01-01..2020-12-31"],
    ),
    (
        "boats labelled between 2020 and 2021",
        "boats",
        &["annotated=2020-01-01..2021-12-31"],
    ),
    (
        "boats taken in 2021 annotated last week",
        "boats",
        &[
            "captured=2021-01-01..2021-12-31",
            "annotated=2026-11-23..2026-11-29",
        ],
    ),
    // Labels as requirements.
    ("park with a dog", "park", &["label=dog"]),
    ("park with dogs", "park", &["label=dog"]),
    ("street containing plates", "street containing plates", &[]),
    (
        "street containing licence plates",
        "street",
        &["label=licence plate"],
    ),
    (
        "street with a number plate",
        "street",
        &["label=licence plate"],
    ),
    ("road with a lorry", "road", &["label=truck"]),
    ("road with two buses", "road", &["label=bus"]),
    (
        "crossing with a traffic light",
        "crossing",
        &["label=traffic light"],
    ),
    (
        "park with a dog and a cat",
        "park",
        &["label=dog", "label=cat"],
    ),
    (
        "park with a dog, a cat",
        "park",
        &["label=dog", "label=cat"],
    ),
    ("park showing people", "park", &["label=person"]),
    ("portraits with faces", "portraits", &["label=Face"]),
    ("park with a dog at night", "park at night", &["label=dog"]),
    ("with a dog", "", &["label=dog"]),
    // Exclusions.
    ("park without people", "park", &["no_label=person"]),
    ("park with no dogs", "park", &["no_label=dog"]),
    ("park no dogs", "park", &["no_label=dog"]),
    ("park not a car", "park", &["no_label=car"]),
    ("park excluding cars", "park", &["no_label=car"]),
    (
        "park without people or dogs",
        "park",
        &["no_label=person", "no_label=dog"],
    ),
    (
        "park without people and no cars",
        "park",
        &["no_label=person", "no_label=car"],
    ),
    (
        "park with a dog without people",
        "park",
        &["label=dog", "no_label=person"],
    ),
    // Splits: only with "split" / "subset" (or "set" after a usual split name), and only
    // splits the library has.
    ("trucks in the val split", "trucks", &["split=val"]),
    ("trucks from split test", "trucks", &["split=test"]),
    (
        "val subset trucks at night",
        "val subset trucks at night",
        &[],
    ),
    ("dogs in the training set", "dogs", &["split=train"]),
    ("dogs in the validation split", "dogs", &["split=val"]),
    (
        "boats in the test set, at night",
        "boats at night",
        &["split=test"],
    ),
    ("a toy train set", "a toy train set", &[]),
    ("trucks in the dev split", "trucks in the dev split", &[]),
    ("a split log", "a split log", &[]),
    (
        "trucks in the val split in fleet-2024",
        "trucks",
        &["split=val", "dataset=fleet-2024"],
    ),
    // Datasets.
    ("trucks in fleet-2024", "trucks", &["dataset=fleet-2024"]),
    ("trucks from Fleet-2024", "trucks", &["dataset=fleet-2024"]),
    ("trucks dataset harbour", "trucks", &["dataset=harbour"]),
    ("trucks in dataset harbour", "trucks", &["dataset=harbour"]),
    (
        "trucks in fleet-2024 or fleet-2025",
        "trucks",
        &["dataset=fleet-2024", "dataset=fleet-2025"],
    ),
    ("boats in 2019", "boats", &["dataset=2019"]),
    // File names.
    ("IMG_2021*.jpg", "", &["filename=IMG_2021*.jpg"]),
    ("boats IMG_2021*.jpg", "boats", &["filename=IMG_2021*.jpg"]),
    (
        "boats named beach/*.png",
        "boats",
        &["filename=beach/*.png"],
    ),
    ("boats scan_??.jpg", "boats", &["filename=scan_??.jpg"]),
    // Near misses that must stay text.
    (
        "white pickup trucks at night",
        "white pickup trucks at night",
        &[],
    ),
    ("hot dog stand", "hot dog stand", &[]),
    ("park with a dog bowl", "park with a dog bowl", &[]),
    ("not a truck driver", "not a truck driver", &[]),
    ("no parking sign", "no parking sign", &[]),
    ("man with a hat", "man with a hat", &[]),
    (
        "soldiers march in formation",
        "soldiers march in formation",
        &[],
    ),
    ("a march in formation", "a march in formation", &[]),
    ("cars may park here", "cars may park here", &[]),
    ("in may flowers bloom", "in may flowers bloom", &[]),
    ("room 2021 sign", "room 2021 sign", &[]),
    ("bus 1999", "bus 1999", &[]),
    ("last bus home", "last bus home", &[]),
    ("the past", "the past", &[]),
    ("what is this?", "what is this?", &[]),
    ("dog?", "dog?", &[]),
    ("trucks in harbours", "trucks in harbours", &[]),
    ("trucks in fleet-2026", "trucks in fleet-2026", &[]),
    ("boats in 1700", "boats in 1700", &[]),
    ("boats last 999999 days", "boats last 999999 days", &[]),
    (
        "boats between 2022 and 2020",
        "boats between 2022 and 2020",
        &[],
    ),
    ("boats on February 30", "boats on February 30", &[]),
    ("with a doggo", "with a doggo", &[]),
    ("", "", &[]),
];

#[test]
fn the_phrase_table_reads_as_expected() {
    assert!(TABLE.len() >= 80, "{}", TABLE.len());
    let mut failures = Vec::new();
    for (q, text, filters) in TABLE {
        let got = read(q);
        let got_filters: Vec<String> = got.filters.iter().map(compact).collect();
        if got.text != *text || got_filters != *filters {
            failures.push(format!(
                "{q:?}: text {:?} filters {got_filters:?}; want {text:?} {filters:?}",
                got.text
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn each_filter_names_its_own_words() {
    let got = read("park with a dog and a cat without people in fleet-2024 taken in 2021");
    let words: Vec<&str> = got.filters.iter().map(|f| f.words.as_str()).collect();
    assert_eq!(
        words,
        [
            "with a dog",
            "and a cat",
            "without people",
            "in fleet-2024",
            "taken in 2021"
        ]
    );
    assert_eq!(got.text, "park");
}

#[test]
fn dates_are_read_in_the_stated_time_zone() {
    let plus2 = FixedOffset::east_opt(2 * 3600).unwrap();
    let got = interpret("boats yesterday", &vocab(), &clock(), plus2);
    assert_eq!(got.time_zone, "+02:00");
    assert_eq!(
        got.filters[0].after.as_deref(),
        Some("2026-11-30T00:00:00+02:00")
    );
    assert_eq!(
        got.filters[0].before.as_deref(),
        Some("2026-11-30T23:59:59+02:00")
    );
    // 2200 ends after the last instant the index accepts once read at -05:00: no filter.
    let minus5 = FixedOffset::west_opt(5 * 3600).unwrap();
    let edge = interpret("boats in 2200", &vocab(), &clock(), minus5);
    assert!(edge.filters.is_empty());
    assert_eq!(edge.text, "boats in 2200");
    let utc = read("boats yesterday");
    assert_eq!(
        utc.filters[0].after.as_deref(),
        Some("2026-11-30T00:00:00Z")
    );
    // A named zone's day follows its daylight saving time: the day Paris springs forward
    // starts at +01:00 and ends at +02:00.
    let paris = super::Zone::parse("Europe/Paris").unwrap();
    let spring = Clock {
        today: NaiveDate::from_ymd_opt(2026, 3, 30).unwrap(),
    };
    let got = interpret("boats yesterday", &vocab(), &spring, paris);
    assert_eq!(got.time_zone, "Europe/Paris");
    assert_eq!(
        got.filters[0].after.as_deref(),
        Some("2026-03-29T00:00:00+01:00")
    );
    assert_eq!(
        got.filters[0].before.as_deref(),
        Some("2026-03-29T23:59:59+02:00")
    );
    // "last March" read in Paris: the month starts in winter time and ends in summer time.
    let got = interpret("boats from last March", &vocab(), &clock(), paris);
    assert_eq!(
        got.filters[0].after.as_deref(),
        Some("2026-03-01T00:00:00+01:00")
    );
    assert_eq!(
        got.filters[0].before.as_deref(),
        Some("2026-03-31T23:59:59+02:00")
    );
}

#[test]
fn applying_joins_the_callers_filter() {
    let mut got = read("park IMG_*.jpg with a dog in fleet-2024 since 2021");
    let mut filter = FilterParams {
        labels: vec!["Dog".into()],
        datasets: vec!["harbour".into()],
        captured_after: Some("2022-06-01".into()),
        captured_before: Some("2023-01-01".into()),
        ..Default::default()
    };
    got.apply(&mut filter);
    assert_eq!(filter.labels, ["Dog"], "no duplicate label");
    assert_eq!(filter.datasets, ["harbour"], "the caller's dataset wins");
    assert!(got.filters[2].overridden);
    assert_eq!(
        filter.captured_after.as_deref(),
        Some("2022-06-01"),
        "tighter"
    );
    assert_eq!(filter.captured_before.as_deref(), Some("2023-01-01"));
    assert_eq!(filter.filename_glob.as_deref(), Some("IMG_*.jpg"));
    filter.to_filter().unwrap();

    let mut got = read("boats taken before 2020 without cats");
    let mut filter = FilterParams {
        captured_before: Some("2021-05-05".into()),
        ..Default::default()
    };
    got.apply(&mut filter);
    assert_eq!(
        filter.captured_before.as_deref(),
        Some("2019-12-31T23:59:59Z")
    );
    assert_eq!(filter.no_labels, ["cat"]);
    assert!(got.summary().contains("no-label=cat (without cats)"));
    assert!(got.summary().contains("captured ..2019-12-31"));
}

#[test]
fn a_query_made_only_of_filters_ranks_by_the_whole_query() {
    let got = read("with a dog");
    assert_eq!(got.text, "");
    assert_eq!(got.ranking_text("with a dog"), "with a dog");
    let got = read("boats with a dog");
    assert_eq!(got.ranking_text("boats with a dog"), "boats");
}

#[test]
fn very_long_queries_keep_their_tail_as_text() {
    let q = format!("{} with a dog", "boat ".repeat(MAX_WORDS));
    let got = read(&q);
    assert!(got.filters.is_empty());
    assert_eq!(got.text.split_whitespace().count(), MAX_WORDS + 3);
}

#[test]
fn plurals_follow_english_rules() {
    for (s, p) in [
        ("dog", "dogs"),
        ("bus", "buses"),
        ("box", "boxes"),
        ("bench", "benches"),
        ("lorry", "lorries"),
        ("toy", "toys"),
        ("person", "people"),
        ("licence plate", "licence plates"),
        ("knife", "knives"),
    ] {
        assert_eq!(plural(s), p);
    }
}

/// The words of the query, as a sorted list.
fn sorted_words(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s.split_whitespace().map(str::to_owned).collect();
    v.sort();
    v
}

fn word_from(list: &'static [&'static str]) -> impl Strategy<Value = String> {
    proptest::sample::select(list).prop_map(str::to_owned)
}

/// Words of every kind the interpreter reacts to, and some it does not.
const MIXED: &[&str] = &[
    "with",
    "without",
    "no",
    "not",
    "a",
    "the",
    "and",
    "or",
    "in",
    "from",
    "since",
    "between",
    "to",
    "before",
    "after",
    "until",
    "last",
    "this",
    "past",
    "yesterday",
    "today",
    "taken",
    "annotated",
    "uploaded",
    "dog",
    "dogs",
    "people",
    "licence",
    "plate",
    "plates",
    "fleet-2024",
    "2019",
    "2021",
    "2021-03-04",
    "2021-13-40",
    "march",
    "may",
    "3",
    "3rd",
    "30",
    "days",
    "week",
    "month",
    "year",
    "IMG_*.jpg",
    "?",
    "*",
    ",",
    "dog,",
    "boat",
    "night",
    "lorry",
    "named",
    "dataset",
    "harbour",
    "0000",
    "9999",
    "-",
    "February",
    "29",
];

proptest! {
    #[test]
    fn interpretation_never_panics_and_accounts_for_every_word(
        parts in proptest::collection::vec(
            prop_oneof![word_from(MIXED), "\\PC{0,12}"], 0..24)
    ) {
        let q = parts.join(" ");
        let got = read(&q);
        let mut accounted = sorted_words(&got.text);
        for f in &got.filters {
            prop_assert!(!f.words.is_empty());
            accounted.extend(sorted_words(&f.words));
        }
        accounted.sort();
        prop_assert_eq!(accounted, sorted_words(&q));
        // Every date it produced parses as the filter expects.
        for f in &got.filters {
            for d in [&f.after, &f.before].into_iter().flatten() {
                prop_assert!(indexer::dates::parse_date(d).is_ok(), "{}", d);
            }
        }
        let mut filter = FilterParams::default();
        let mut got = got;
        got.apply(&mut filter);
        prop_assert!(filter.to_filter().is_ok());
    }

    #[test]
    fn text_without_cue_words_yields_no_filter(
        parts in proptest::collection::vec("[a-zA-Z' .,;!-]{1,12}", 0..24)
    ) {
        let cues = cue_words();
        let q = parts.join(" ");
        let free: Vec<&str> = q
            .split_whitespace()
            .filter(|w| {
                let n = w
                    .trim_matches(|c: char| !c.is_alphanumeric())
                    .to_lowercase();
                !cues.contains(n.as_str())
            })
            .collect();
        let q = free.join(" ");
        let got = read(&q);
        prop_assert!(got.filters.is_empty(), "{:?} -> {:?}", q, got.filters);
        prop_assert_eq!(got.text, q);
    }
}

#[test]
fn a_pinned_cursor_gives_back_the_engines_cursor_and_its_day() {
    let i = read("boats yesterday");
    assert_eq!(i.today, clock().today);
    let pinned = i.pin(Some("20.0123abcd".to_owned())).unwrap();
    assert_eq!(pinned, "20.0123abcd~2026-12-01");
    assert_eq!(
        unpin_cursor(Some(&pinned)).unwrap(),
        (Some("20.0123abcd".to_owned()), Some(clock().today))
    );
    // The last page has no cursor to pin; a first page and a literal search's cursor none.
    assert_eq!(i.pin(None), None);
    assert_eq!(unpin_cursor(None).unwrap(), (None, None));
    assert_eq!(unpin_cursor(Some("")).unwrap(), (None, None));
    assert_eq!(
        unpin_cursor(Some("3.ab")).unwrap(),
        (Some("3.ab".to_owned()), None)
    );
    // A day that is not a date is refused as the cursor, not echoed in full.
    for bad in [
        "3.ab~",
        "3.ab~2026-13-01",
        "3.ab~tomorrow",
        &format!("3.ab~{}", "9".repeat(500)),
    ] {
        let msg = unpin_cursor(Some(bad)).unwrap_err().to_string();
        assert!(msg.contains("cursor") && msg.len() < 300, "{bad}: {msg}");
    }
}

#[test]
fn the_pinned_day_reads_relative_dates_as_the_first_page_did() {
    // The first page was read late on 2026-12-01; the next is asked for after midnight.
    let next_day = Clock {
        today: NaiveDate::from_ymd_opt(2026, 12, 2).unwrap(),
    };
    let first = read("boats taken yesterday");
    let unpinned = interpret("boats taken yesterday", &vocab(), &next_day, utc());
    assert_ne!(first.filters, unpinned.filters, "yesterday moved");
    let (_, day) = unpin_cursor(first.pin(Some("5.aa".into())).as_deref()).unwrap();
    let again = interpret(
        "boats taken yesterday",
        &vocab(),
        &Clock {
            today: day.unwrap(),
        },
        utc(),
    );
    assert_eq!(first, again);
}
