//! Paging with the candidate depth sized to the page (issue 11): a first page ranks lists 100
//! deep, deeper pages deeper (`PAGE_TIERS`), and still every page is a slice of one sequence,
//! whatever the page sizes, with exact scans and with HNSW graphs + int8 quantization on: no
//! record is shown twice, none is skipped, and filters hold on every page.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{Duration as Days, TimeZone, Utc};
use imagelens::search::{Fusion, SearchRequest, SearchService};
use indexer::filter::RecordFilter;
use indexer::points;
use indexer::record::{BoundingBox, Dates, Record, record_id};
use indexer::store::{IndexKind, IndexSettings, Quantization};
use indexer::{Library, StoreSettings};
use models::{EmbedError, Embedder, EmbedderSpec, Embedding};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

const DIM: usize = 16;
const LABELS: [&str; 4] = ["car", "truck", "person", "dog"];
const RECORDS: usize = 700;

/// Query text becomes the centre of the first label it names (so records of that label rank
/// first by vector), anything else a fixed vector.
struct LabelEmbedder(EmbedderSpec);

fn centre(label: usize) -> Vec<f32> {
    (0..DIM)
        .map(|d| if d % LABELS.len() == label { 1.0 } else { 0.1 })
        .collect()
}

impl Embedder for LabelEmbedder {
    fn spec(&self) -> &EmbedderSpec {
        &self.0
    }
    fn embed_images(&self, batch: &[image::RgbImage]) -> Result<Vec<Embedding>, EmbedError> {
        Ok(batch
            .iter()
            .map(|_| Embedding::normalized(centre(0)))
            .collect())
    }
    fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Embedding>, EmbedError> {
        Ok(texts
            .iter()
            .map(|t| {
                let label = LABELS.iter().position(|l| t.contains(l)).unwrap_or(1);
                Embedding::normalized(centre(label))
            })
            .collect())
    }
}

fn record(i: usize, label: &str, rng: &mut StdRng) -> Record {
    let captured = Utc.with_ymd_and_hms(2019, 1, 1, 0, 0, 0).unwrap()
        + Days::hours(rng.random_range(0..50_000));
    let sha = hex::encode(Sha256::digest(format!("paging record {i}")));
    Record {
        source_id: None,
        id: record_id(&sha),
        filename: format!("img_{i:04}.jpg"),
        path: format!("img_{i:04}.jpg"),
        images_root: "/paging".into(),
        width: 64,
        height: 48,
        bytes: 1_000,
        sha256: sha,
        dataset: ["a", "b"][i % 2].into(),
        dates: Dates {
            captured: Some(captured),
            ..Dates::default()
        },
        captions: vec![format!("a {label} in a street, photo {i}")],
        labels: vec![label.into()],
        supercategories: Vec::new(),
        boxes: vec![BoundingBox {
            polygons: Vec::new(),
            label: label.into(),
            supercategory: None,
            x: 1.0,
            y: 1.0,
            w: 20.0,
            h: 20.0,
            area: 400.0,
            iscrowd: false,
            annotator: None,
            attributes: Default::default(),
        }],
        split: None,
        negative_labels: Vec::new(),
        attributes: Default::default(),
        metadata: Default::default(),
        annotators: Vec::new(),
        exports: Vec::new(),
        privacy: Default::default(),
    }
}

/// A library of [`RECORDS`] records with image, text and region vectors near their label's
/// centre, and a service over it.
fn library(dir: &std::path::Path) -> (Arc<Library>, EmbedderSpec) {
    let spec = EmbedderSpec {
        model_id: "paging-test".into(),
        revision: "sha256:test".into(),
        dim: DIM,
        image_size: 32,
        precision: Default::default(),
    };
    let mut lib = Library::open(dir, StoreSettings::Edge).unwrap();
    lib.adopt_model(&spec).unwrap();
    let mut rng = StdRng::seed_from_u64(4);
    let mut writer = lib.keyword().writer().unwrap();
    let mut points = Vec::new();
    let near = |label: usize, rng: &mut StdRng| -> Vec<f32> {
        centre(label)
            .into_iter()
            .map(|x| x + rng.random_range(-0.6..0.6))
            .collect()
    };
    for i in 0..RECORDS {
        let label = rng.random_range(0..LABELS.len());
        let r = record(i, LABELS[label], &mut rng);
        let (image, text) = (near(label, &mut rng), near(label, &mut rng));
        points.push(points::image_point(&r, image, Some(text)));
        points.push(points::region_point(&r, 0, near(label, &mut rng)));
        writer.upsert(&r, &spec.fingerprint()).unwrap();
    }
    lib.store().upsert(points).unwrap();
    lib.store().flush().unwrap();
    writer.commit().unwrap();
    lib.refresh_counts().unwrap();
    (Arc::new(lib), spec)
}

/// Every page of `req` with page sizes cycling through `limits`, until there is no cursor.
fn pages(service: &SearchService, req: &SearchRequest, limits: &[usize]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut cursor = None;
    for &limit in limits.iter().cycle() {
        let resp = service
            .search(&SearchRequest {
                limit,
                cursor: cursor.clone(),
                ..req.clone()
            })
            .unwrap();
        let ids: Vec<String> = resp.results.iter().map(|h| h.id.clone()).collect();
        assert!(ids.len() <= limit);
        if resp.next_cursor.is_some() {
            assert_eq!(ids.len(), limit, "only the last page is short");
        }
        out.push(ids);
        match resp.next_cursor {
            Some(c) => cursor = Some(c),
            None => return out,
        }
        assert!(out.len() < 1_000, "paging ends");
    }
    unreachable!()
}

fn check_paging(service: &SearchService, lib: &Library, what: &str) {
    let requests = [
        SearchRequest {
            text: "a car in the street".into(),
            ..SearchRequest::default()
        },
        SearchRequest {
            text: "truck".into(),
            fusion: Fusion {
                keyword: 0.0,
                ..Fusion::default()
            },
            ..SearchRequest::default()
        },
        SearchRequest {
            text: "dog photo".into(),
            filter: RecordFilter {
                datasets: vec!["a".into()],
                ..RecordFilter::default()
            },
            ..SearchRequest::default()
        },
    ];
    for req in &requests {
        assert_eq!(
            req.fusion.depth, 0,
            "the default depth is sized to the page"
        );
        // One page as large as allowed: the sequence every smaller page must slice.
        let whole: Vec<String> = pages(service, req, &[500]).concat();
        assert!(whole.len() > 220, "{what}: {} results", whole.len());
        for limits in [vec![20], vec![7, 33, 1, 60, 13]] {
            let paged = pages(service, req, &limits);
            assert!(paged.len() >= 10, "{what}: {} pages", paged.len());
            let shown: Vec<String> = paged.concat();
            let distinct: HashSet<&String> = shown.iter().collect();
            assert_eq!(distinct.len(), shown.len(), "{what}: no repeats");
            assert_eq!(shown, whole, "{what} {limits:?}: pages slice one sequence");
        }
        // Filters hold on every page.
        if !req.filter.datasets.is_empty() {
            for id in &whole {
                let r = lib.keyword().get(id).unwrap().unwrap();
                assert_eq!(r.dataset, "a", "{what}");
            }
        }
    }
}

#[test]
fn paging_ten_pages_and_more_gives_no_repeats_or_gaps_with_scans_and_with_graphs() {
    let dir = tempfile::tempdir().unwrap();
    let (lib, spec) = library(dir.path());
    let embedder: Arc<dyn Embedder> = Arc::new(LabelEmbedder(spec));
    let service = SearchService::new(lib.clone(), Some(embedder.clone()), None).unwrap();
    check_paging(&service, &lib, "exact scans");

    lib.store()
        .set_index_settings(&IndexSettings {
            kind: IndexKind::Hnsw,
            quantization: Quantization::Int8,
            full_scan_kb: 1,
            ..IndexSettings::default()
        })
        .unwrap();
    lib.store().optimize().unwrap();
    assert!(lib.store().index_state().unwrap().indexed_vectors > 0);
    check_paging(&service, &lib, "hnsw + int8");
}

/// The keyword list on its own thread beside the vector lists (a core to spare) gives the
/// answers of the lists run one after the other (`with_cores(1)`): the same pages, scores and
/// explanations, with and without filters, on exact scans.
#[test]
fn lists_run_side_by_side_give_the_answers_of_lists_run_in_turn() {
    let dir = tempfile::tempdir().unwrap();
    let (lib, spec) = library(dir.path());
    let embedder: Arc<dyn Embedder> = Arc::new(LabelEmbedder(spec));
    let in_turn = SearchService::new(lib.clone(), Some(embedder.clone()), None)
        .unwrap()
        .with_cores(1);
    let side_by_side = SearchService::new(lib.clone(), Some(embedder), None)
        .unwrap()
        .with_cores(8);
    let since = Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap();
    for (text, filter) in [
        ("car", RecordFilter::default()),
        ("truck person", RecordFilter::default()),
        (
            "dog",
            RecordFilter {
                labels: vec!["dog".into()],
                dates: vec![indexer::filter::DateRange {
                    axis: indexer::record::DateAxis::Captured,
                    after: Some(since),
                    before: None,
                }],
                ..RecordFilter::default()
            },
        ),
    ] {
        let req = SearchRequest {
            text: text.into(),
            filter,
            limit: 15,
            fusion: Fusion {
                keyword: 1.0,
                image: 1.0,
                region: 0.7,
                text: 0.5,
                ..Fusion::default()
            },
            ..SearchRequest::default()
        };
        let (a, b) = (
            in_turn.search(&req).unwrap(),
            side_by_side.search(&req).unwrap(),
        );
        assert!(a.semantic && b.semantic, "{text}: vectors took part");
        assert!(!a.results.is_empty(), "{text}: something found");
        assert_eq!(a.results, b.results, "{text}: same page");
        assert_eq!(a.next_cursor, b.next_cursor, "{text}: same cursor");
        assert!(b.stages.keyword > std::time::Duration::ZERO);
        assert!(b.stages.vectors > std::time::Duration::ZERO);
    }
}
