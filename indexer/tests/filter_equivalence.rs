//! The exact-filter promise, checked across its three evaluators: for random records and random
//! filters, the keyword index ([`KeywordIndex::filter_ids`]), the payload check
//! ([`RecordFilter::compile`] over [`points::payload`]) and the vector store's pushed-down
//! filter ([`RecordFilter::to_vector_filter`], then the payload check for the clauses a store
//! cannot evaluate) select the same records, on whole-image points and on region points.
//!
//! The records are built to sit on the edges where evaluators drift apart: labels differing
//! only in case and spacing, file names with the same stem in other folders, dates with
//! sub-second parts and bounds placed exactly on, just before and just after them, records
//! without a value on an axis. Cases: 1,000 by default, `IMAGELENS_PROPTEST_CASES` overrides.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use chrono::{DateTime, Duration, TimeZone, Utc};
use indexer::filter::{DateRange, FilenameMatch, RecordFilter, normalize_label};
use indexer::keyword::{Bm25Walk, Facets, KeywordIndex};
use indexer::points::{self, payload};
use indexer::record::{DateAxis, Record};
use indexer::store::{EdgeStore, VectorFilter, VectorQuery, VectorStore};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

const DIM: usize = 8;
const RECORDS: usize = 240;

/// Label spellings: several normalise to the same label.
const LABELS: [&str; 8] = [
    "car",
    "Car",
    "traffic light",
    "Traffic  Light",
    "person",
    "dog",
    "fire hydrant",
    "truck",
];
const DATASETS: [&str; 4] = ["fleet-2024", "street", "Street", "coco val"];
const SPLITS: [&str; 3] = ["train", "val", "Val"];
/// Tool image ids: exact, so `In1` is not `in1`; some records have none.
const SOURCE_IDS: [&str; 4] = ["in1", "In1", "42", "task 7"];
const COLORS: [&str; 3] = ["white", "White ", "red"];
const ATTRS: [&str; 5] = [
    "color=white",
    "Color = White",
    "color=red",
    "occluded=true",
    "occluded=false",
];
const STEMS: [&str; 5] = [
    "img_1.jpg",
    "img_10.jpg",
    "IMG_1.JPG",
    "night.png",
    "a b.jpg",
];
const FOLDERS: [&str; 3] = ["", "2021/", "cams/north/"];

struct World {
    _dir: tempfile::TempDir,
    records: Vec<Record>,
    keyword: KeywordIndex,
    store: EdgeStore,
    /// Timestamps that occur in the records, for bounds placed on them.
    instants: Vec<DateTime<Utc>>,
    points: usize,
}

fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2021, 3, 14, 12, 0, 0).unwrap()
}

fn random_record(rng: &mut StdRng, n: usize) -> Record {
    let path = format!(
        "{}{}",
        FOLDERS[rng.random_range(0..FOLDERS.len())],
        STEMS[rng.random_range(0..STEMS.len())]
    );
    let filename = path.rsplit('/').next().unwrap().to_owned();
    let date = |rng: &mut StdRng| -> Option<DateTime<Utc>> {
        rng.random_bool(0.8).then(|| {
            // Whole seconds, or with a fraction: bounds in seconds must treat both alike.
            let secs = rng.random_range(-400_000_i64..400_000);
            let millis = if rng.random_bool(0.5) {
                0
            } else {
                rng.random_range(1..1000)
            };
            base_time() + Duration::seconds(secs) + Duration::milliseconds(millis)
        })
    };
    let boxes: Vec<_> = (0..rng.random_range(0..4))
        .map(|_| {
            // Attributes as exports give them: some boxes none, strings in any case, booleans.
            let mut attributes = serde_json::Map::new();
            if rng.random_bool(0.5) {
                attributes.insert(
                    "Color".into(),
                    json!(COLORS[rng.random_range(0..COLORS.len())]),
                );
            }
            if rng.random_bool(0.4) {
                attributes.insert("occluded".into(), json!(rng.random_bool(0.5)));
            }
            json!({
                "label": LABELS[rng.random_range(0..LABELS.len())],
                "x": 1.0, "y": 1.0, "w": 5.0, "h": 5.0, "area": 25.0, "iscrowd": false,
                "attributes": attributes,
            })
        })
        .collect();
    let mut labels: Vec<String> = boxes
        .iter()
        .map(|b| b["label"].as_str().unwrap().to_owned())
        .collect();
    if rng.random_bool(0.3) {
        labels.push(LABELS[rng.random_range(0..LABELS.len())].to_owned());
    }
    labels.sort();
    labels.dedup();
    // Some records have no split: a split filter must leave them out everywhere.
    let split = rng
        .random_bool(0.7)
        .then(|| SPLITS[rng.random_range(0..SPLITS.len())]);
    let value = json!({
        "id": format!("{n:064x}"),
        "filename": filename,
        "path": path,
        "images_root": "/images",
        "width": 64, "height": 64, "bytes": 100,
        "sha256": format!("{n:064x}"),
        "dataset": DATASETS[rng.random_range(0..DATASETS.len())],
        "dates": {
            "captured": date(rng), "created": date(rng),
            "annotated": date(rng), "ingested": date(rng),
        },
        "labels": labels,
        "boxes": boxes,
        "split": split,
        "source_id": rng
            .random_bool(0.6)
            .then(|| SOURCE_IDS[rng.random_range(0..SOURCE_IDS.len())]),
    });
    serde_json::from_value(value).expect("a record")
}

fn unit(rng: &mut StdRng) -> Vec<f32> {
    let v: Vec<f32> = (0..DIM).map(|_| rng.random_range(-1.0..1.0)).collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
    v.into_iter().map(|x| x / n).collect()
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = StdRng::seed_from_u64(7);
        let records: Vec<Record> = (0..RECORDS).map(|n| random_record(&mut rng, n)).collect();

        let keyword = KeywordIndex::open(&dir.path().join("keyword")).unwrap();
        // Several commits, so several segments: look-up pages merge them.
        for chunk in records.chunks(RECORDS / 4) {
            let mut writer = keyword.writer().unwrap();
            for r in chunk {
                writer.upsert(r, "").unwrap();
            }
            writer.commit().unwrap();
        }
        // Every seventh record written again, unchanged: the earlier segments then hold
        // deleted documents, which tantivy hands to collectors one by one (checking each
        // against the segment's deletions) instead of in blocks; look-ups take both paths.
        let mut writer = keyword.writer().unwrap();
        for r in records.iter().step_by(7) {
            writer.upsert(r, "").unwrap();
        }
        writer.commit().unwrap();
        keyword.reload().unwrap();

        let store = EdgeStore::open(&dir.path().join("vectors")).unwrap();
        store.ensure(&points::collection_spec(DIM)).unwrap();
        let mut points = Vec::new();
        for r in &records {
            points.push(points::image_point(r, unit(&mut rng), None));
            for b in 0..r.boxes.len() {
                points.push(points::region_point(r, b, unit(&mut rng)));
            }
        }
        let count = points.len();
        store.upsert(points).unwrap();
        store.flush().unwrap();

        let mut instants: Vec<DateTime<Utc>> = records
            .iter()
            .flat_map(|r| DateAxis::ALL.into_iter().filter_map(|a| a.get(&r.dates)))
            .collect();
        instants.sort();
        World {
            _dir: dir,
            records,
            keyword,
            store,
            instants,
            points: count,
        }
    })
}

/// A bound on, just before or just after an instant of the records, or anywhere.
fn bound() -> impl Strategy<Value = Option<DateTime<Utc>>> {
    let n = world().instants.len();
    prop_oneof![
        1 => Just(None),
        3 => (0..n, -2i64..=2, prop::bool::ANY).prop_map(|(i, nudge, millis)| {
            let t = world().instants[i];
            Some(if millis {
                t + Duration::milliseconds(nudge * 300)
            } else {
                t + Duration::seconds(nudge)
            })
        }),
        1 => (-500_000i64..500_000).prop_map(|s| Some(base_time() + Duration::seconds(s))),
    ]
}

fn axis() -> impl Strategy<Value = DateAxis> {
    prop::sample::select(DateAxis::ALL.to_vec())
}

fn filename() -> impl Strategy<Value = Option<FilenameMatch>> {
    let names: Vec<String> = STEMS
        .iter()
        .flat_map(|s| FOLDERS.iter().map(move |f| format!("{f}{s}")))
        .chain(STEMS.iter().map(|s| s.to_string()))
        .collect();
    prop_oneof![
        4 => Just(None),
        1 => prop::sample::select(names.clone()).prop_map(|n| Some(FilenameMatch::Exact(n))),
        1 => prop::sample::select(vec!["img", "IMG", "img_1", "cams/", "2021/img", "n", "a b"])
            .prop_map(|p| Some(FilenameMatch::Prefix(p.to_owned()))),
        1 => prop::sample::select(vec!["*.jpg", "img_?.jpg", "*/img_1*", "[in]*", "*", "cams/*/*.png"])
            .prop_map(|g| Some(FilenameMatch::Glob(g.to_owned()))),
    ]
}

fn filter() -> impl Strategy<Value = RecordFilter> {
    let label = prop::sample::select(LABELS.to_vec()).prop_map(str::to_owned);
    let dataset = prop::sample::select(DATASETS.to_vec()).prop_map(str::to_owned);
    let split = prop::sample::select(SPLITS.to_vec()).prop_map(str::to_owned);
    let attr = prop::sample::select(ATTRS.to_vec()).prop_map(str::to_owned);
    let source_id = prop::sample::select(SOURCE_IDS.to_vec()).prop_map(str::to_owned);
    (
        prop::collection::vec(label.clone(), 0..3),
        prop::collection::vec(label, 0..3),
        prop::collection::vec(dataset, 0..3),
        prop::collection::vec(split, 0..2),
        (
            prop::collection::vec(attr, 0..2),
            prop::collection::vec(source_id, 0..2),
        ),
        prop::collection::vec(
            (axis(), bound(), bound()).prop_map(|(axis, after, before)| DateRange {
                axis,
                after,
                before,
            }),
            0..3,
        ),
        filename(),
    )
        .prop_map(
            |(labels, no_labels, datasets, splits, (attrs, source_ids), dates, filename)| {
                RecordFilter {
                    source_ids,
                    labels,
                    no_labels,
                    datasets,
                    splits,
                    attrs,
                    dates,
                    filename,
                }
            },
        )
}

/// Records whose points of `kind` the store returns under the pushed-down filter, after the
/// payload check of what the store cannot evaluate (`post_check`); the hits carry only the
/// payload a search asks for (the record id, the box and what the check reads), as in
/// `imagelens::search`.
fn store_selects(f: &RecordFilter, kind: &str, post_check: bool) -> BTreeSet<String> {
    let w = world();
    let matcher = f.compile().unwrap();
    let mut pushed: VectorFilter = f.to_vector_filter();
    pushed.must.push(indexer::store::Condition::MatchAny {
        key: "kind".into(),
        any: vec![kind.to_owned()],
    });
    let hits = w
        .store
        .search(&VectorQuery {
            using: kind.to_owned(),
            vector: vec![1.0 / (DIM as f32).sqrt(); DIM],
            filter: pushed,
            limit: w.points,
            exact: true,
            payload_keys: Some(
                ["record_id", "box"]
                    .into_iter()
                    .chain(matcher.keys())
                    .map(str::to_owned)
                    .collect(),
            ),
        })
        .unwrap();
    hits.into_iter()
        .filter(|h| !post_check || matcher.matches(&h.payload))
        .map(|h| h.payload.get_str("record_id").unwrap().to_owned())
        .collect()
}

fn cases() -> u32 {
    std::env::var("IMAGELENS_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn keyword_payload_and_store_filters_select_the_same_records(f in filter()) {
        let w = world();
        let by_keyword = w.keyword.filter_ids(&f).unwrap();
        let matcher = f.compile().unwrap();
        let by_payload: BTreeSet<String> = w
            .records
            .iter()
            .filter(|r| matcher.matches(&payload(r, None)))
            .map(|r| r.id.clone())
            .collect();
        prop_assert_eq!(&by_payload, &by_keyword, "payload check vs keyword index: {:?}", f);
        // The check reads nothing but the keys it names.
        let keys = matcher.keys();
        let lean: BTreeSet<String> = w
            .records
            .iter()
            .filter(|r| {
                let mut p = payload(r, None);
                p.0.retain(|k, _| keys.contains(&k.as_str()));
                matcher.matches(&p)
            })
            .map(|r| r.id.clone())
            .collect();
        prop_assert_eq!(&lean, &by_keyword, "payload check on its own keys: {:?}", f);

        let by_store = store_selects(&f, "image", true);
        prop_assert_eq!(&by_store, &by_keyword, "vector store vs keyword index: {:?}", f);
        if f.fully_pushable() {
            // What the store can evaluate alone, it evaluates exactly: no post-check needed.
            let alone = store_selects(&f, "image", false);
            prop_assert_eq!(&alone, &by_keyword, "store alone: {:?}", f);
        }

        // Region points carry the record's payload: the same records, among those with boxes.
        let with_boxes: BTreeSet<String> = w
            .records
            .iter()
            .filter(|r| !r.boxes.is_empty() && by_keyword.contains(&r.id))
            .map(|r| r.id.clone())
            .collect();
        prop_assert_eq!(store_selects(&f, "region", true), with_boxes, "regions: {:?}", f);
    }
}

/// The facet counts of `records` counted one by one from the records themselves: what the
/// keyword index's fast columns must add up to.
fn counted(records: &[&Record]) -> Facets {
    let mut f = Facets {
        total: records.len() as u64,
        ..Facets::default()
    };
    for axis in DateAxis::ALL {
        f.months.insert(axis.name().to_owned(), BTreeMap::new());
    }
    for r in records {
        let labels: BTreeSet<String> = r.labels.iter().map(|l| normalize_label(l)).collect();
        for l in labels {
            *f.labels.entry(l).or_default() += 1;
        }
        *f.datasets.entry(r.dataset.clone()).or_default() += 1;
        if let Some(s) = &r.split {
            *f.splits.entry(s.clone()).or_default() += 1;
        }
        let attrs: BTreeSet<String> = r.attribute_terms().into_iter().collect();
        for a in attrs {
            *f.attrs.entry(a).or_default() += 1;
        }
        for axis in DateAxis::ALL {
            if let Some(d) = axis.get(&r.dates) {
                *f.months
                    .get_mut(axis.name())
                    .unwrap()
                    .entry(d.format("%Y-%m").to_string())
                    .or_default() += 1;
            }
        }
    }
    f
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases() / 4, ..ProptestConfig::default() })]

    /// Facet counts over a filter, and over a candidate set within it, are the counts of the
    /// records themselves: each label and attribute counted once per record whatever its
    /// spelling repeats, records without a split or a date left out of those, deleted records
    /// nowhere, months of every time axis.
    #[test]
    fn facets_count_what_the_records_hold(f in filter(), every in 1usize..5) {
        let w = world();
        let ids = w.keyword.filter_ids(&f).unwrap();
        let selected: Vec<&Record> = w.records.iter().filter(|r| ids.contains(&r.id)).collect();
        prop_assert_eq!(w.keyword.facets(&f).unwrap(), counted(&selected), "{:?}", f);
        // The bench's baseline counts the same (it names no axis when nothing matched).
        let mut by_record = w.keyword.facets_record_by_record(&f).unwrap();
        if by_record.total == 0 {
            by_record.months = counted(&[]).months;
        }
        prop_assert_eq!(by_record, counted(&selected), "{:?}", f);
        // A candidate set: every `every`-th record of the library (some outside the filter),
        // one id twice and one unknown.
        let mut candidates: Vec<String> = w.records.iter().step_by(every).map(|r| r.id.clone()).collect();
        candidates.push(w.records[0].id.clone());
        candidates.push("no such record".into());
        let within: Vec<&Record> =
            selected.iter().copied().filter(|r| candidates.contains(&r.id)).collect();
        prop_assert_eq!(w.keyword.facets_within(&f, &candidates).unwrap(), counted(&within), "{:?}", f);
    }
}

/// A query word: a label or the stem of a caption word.
fn query_word() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(LABELS.to_vec()).prop_map(str::to_owned),
        prop::sample::select(STEMS.to_vec()).prop_map(|s| s.split('.').next().unwrap().to_owned()),
    ]
}

/// A BM25 list as (id, score bits): lists compared with it must agree to the last bit.
fn exact(hits: &[indexer::keyword::KeywordHit]) -> Vec<(String, u32)> {
    hits.iter()
        .map(|h| (h.id.clone(), h.score.to_bits()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases() / 4, ..ProptestConfig::default() })]

    /// A look-up page (one pass, a bounded heap per segment) is the same slice of the same
    /// order as sorting every match: dated records by date then id (newest first reverses
    /// both), undated ones last by id, across segments.
    #[test]
    fn a_look_up_page_is_the_slice_of_the_full_date_order(
        f in filter(),
        axis in axis(),
        descending in prop::bool::ANY,
        offset in prop_oneof![3 => 0usize..30, 1 => 0usize..(RECORDS + 10)],
        limit in 1usize..40,
    ) {
        let w = world();
        let mut full = w.keyword.sorted_by_date(&f, axis).unwrap();
        if descending {
            let split = full.iter().position(|(d, _)| d.is_none()).unwrap_or(full.len());
            full[..split].reverse();
        }
        let expected: Vec<String> = full.iter().skip(offset).take(limit).map(|(_, id)| id.clone()).collect();
        let page = w.keyword.page_by_date(&f, axis, descending, offset, limit).unwrap();
        prop_assert_eq!(page.total, full.len());
        prop_assert_eq!(&page.ids, &expected, "{:?} {:?} desc {} at {}+{}", f, axis, descending, offset, limit);
        // The full order itself: dates ascending, ids breaking ties, the undated last.
        for pair in full.windows(2) {
            let ((da, ia), (db, ib)) = (&pair[0], &pair[1]);
            let ok = match (da, db, descending) {
                (Some(a), Some(b), false) => (a, ia) < (b, ib),
                (Some(a), Some(b), true) => (a, ia) > (b, ib),
                (Some(_), None, _) => true,
                (None, Some(_), _) => false,
                (None, None, _) => ia < ib,
            };
            prop_assert!(ok, "out of order: {:?} then {:?}", pair[0], pair[1]);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases() / 4, ..ProptestConfig::default() })]

    /// BM25 walks its postings either way to the same list, within any filter: every match
    /// scored, or pruned by block-max WAND (records tested against the filter as WAND offers
    /// them, and scored again in clause order), the same ids with the same scores to the last
    /// bit and ties in the same order; without a filter (pruned, by default) as within a
    /// filter that every record passes (every match scored, by default).
    #[test]
    fn pruned_bm25_finds_exactly_what_scoring_every_match_finds(
        words in prop::collection::vec(
            prop_oneof![2 => query_word(), 1 => Just("nothing-matches".to_owned()), 1 => Just("the".to_owned())],
            1..5,
        ),
        f in filter(),
        limit in 1usize..80,
    ) {
        let w = world();
        let text = words.join(" ");
        let terms = w.keyword.terms(&text);
        let stop: Vec<String> =
            w.keyword.all_terms(&text).into_iter().filter(|t| !terms.contains(t)).collect();
        let by = |walk| w.keyword.search_terms_by(&terms, &stop, &f, limit, walk).unwrap();
        let every = by(Bm25Walk::EveryMatch);
        prop_assert_eq!(exact(&by(Bm25Walk::Pruned)), exact(&every), "{} {:?}", text, f);
        prop_assert_eq!(exact(&by(Bm25Walk::Auto)), exact(&every), "{} {:?}", text, f);
        let all = RecordFilter { no_labels: vec!["no such label".into()], ..RecordFilter::default() };
        let unfiltered = w.keyword.search(&text, &RecordFilter::default(), limit).unwrap();
        prop_assert_eq!(exact(&unfiltered), exact(&w.keyword.search(&text, &all, limit).unwrap()), "{}", text);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A BM25 list taken `limit` deep is exactly the first `limit` of the same list taken
    /// deeper (scores to the last bit, ties in one order), with a filter or without: what a
    /// search's settled head and its cursor rely on.
    #[test]
    fn a_bm25_list_is_the_head_of_every_deeper_one(
        words in prop::collection::vec(query_word(), 1..4),
        limit in 1usize..60,
        filtered in any::<bool>(),
    ) {
        let w = world();
        let text = words.join(" ");
        let filter = if filtered {
            RecordFilter { no_labels: vec!["no such label".into()], ..RecordFilter::default() }
        } else {
            RecordFilter::default()
        };
        let shallow = w.keyword.search(&text, &filter, limit).unwrap();
        for deeper in [limit * 3, 1_000] {
            let deep = w.keyword.search(&text, &filter, deeper).unwrap();
            let head = &deep[..limit.min(deep.len())];
            prop_assert_eq!(exact(&shallow), exact(head), "{} at {} and {}", text, limit, deeper);
        }
    }
}

#[test]
fn the_generated_world_has_the_edges_it_is_meant_to_test() {
    let w = world();
    let fractional = w
        .instants
        .iter()
        .filter(|t| t.timestamp_subsec_millis() > 0)
        .count();
    assert!(fractional > 50 && fractional < w.instants.len() - 50);
    let spellings: BTreeSet<&str> = w
        .records
        .iter()
        .flat_map(|r| r.labels.iter().map(String::as_str))
        .collect();
    assert!(spellings.contains("Car") && spellings.contains("car"));
    assert!(w.records.iter().any(|r| r.dates.captured.is_none()));
    assert!(w.records.iter().any(|r| r.boxes.is_empty()));
    assert!(w.records.iter().any(|r| r.split.is_none()));
    let terms: BTreeSet<String> = w.records.iter().flat_map(|r| r.attribute_terms()).collect();
    assert!(
        terms.contains("color=white") && terms.contains("occluded=true"),
        "{terms:?}"
    );
    assert!(w.records.iter().any(|r| r.split.as_deref() == Some("val")));
    assert!(w.records.iter().any(|r| r.source_id.is_none()));
    assert!(
        w.records
            .iter()
            .any(|r| r.source_id.as_deref() == Some("In1"))
    );
}

/// English stop words find nothing by themselves: "the car with a" finds exactly the records
/// "car" finds (they may add to the score of those); a text of stop words only still searches
/// for them.
#[test]
fn stop_words_leave_the_query_but_not_an_all_stop_word_one() {
    let w = world();
    assert_eq!(
        w.keyword.terms("A white car with the ladder at night"),
        ["white", "car", "ladder", "night"]
    );
    assert_eq!(
        w.keyword.all_terms("A white car with the ladder"),
        ["a", "white", "car", "with", "the", "ladder"]
    );
    assert_eq!(w.keyword.terms("The Who"), ["who"]);
    assert_eq!(
        w.keyword.terms("To be, or not to be"),
        ["to", "be", "or", "not"]
    );
    let any = RecordFilter::default();
    let all = w.records.len();
    let ids =
        |h: Vec<indexer::keyword::KeywordHit>| h.into_iter().map(|h| h.id).collect::<BTreeSet<_>>();
    let car = ids(w.keyword.search("car", &any, all).unwrap());
    assert!(!car.is_empty() && car.len() < all);
    assert_eq!(
        ids(w.keyword.search("the car with a", &any, all).unwrap()),
        car
    );
}
