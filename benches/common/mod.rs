//! What the query and HTTP benches share: a stand-in model that costs nothing, so the figures
//! are those of the search service and not of CLIP (the embed bench times the model), and the
//! generated library they search.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{Duration as Days, TimeZone, Utc};
use indexer::Library;
use indexer::record::{BoundingBox, Dates, Record, image_point_id};
use indexer::store::VectorPoint;
use indexer::synth::LABELS;
use models::{EmbedError, Embedder, EmbedderSpec, Embedding};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Dimension of the generated vectors (ViT-B/32's projection).
pub const DIM: usize = 512;

/// Returns a seeded random unit vector per text: the cost of search without the model's.
pub struct FixedEmbedder(pub EmbedderSpec);

/// A random unit vector of [`DIM`] dimensions.
pub fn random_unit(rng: &mut StdRng) -> Vec<f32> {
    let v: Vec<f32> = (0..DIM).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    Embedding::normalized(v).into_vec()
}

impl Embedder for FixedEmbedder {
    fn spec(&self) -> &EmbedderSpec {
        &self.0
    }
    fn embed_images(&self, batch: &[image::RgbImage]) -> Result<Vec<Embedding>, EmbedError> {
        let mut rng = StdRng::seed_from_u64(batch.len() as u64);
        Ok(batch
            .iter()
            .map(|_| Embedding::normalized(random_unit(&mut rng)))
            .collect())
    }
    fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Embedding>, EmbedError> {
        Ok(texts
            .iter()
            .map(|t| {
                let seed = t
                    .bytes()
                    .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
                Embedding::normalized(random_unit(&mut StdRng::seed_from_u64(seed)))
            })
            .collect())
    }
}

/// The (made-up) image sha256 of generated record `i`; its id is the first 16 hex digits.
pub fn sha_of(i: usize) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(format!("bench record {i}").as_bytes()))
}

/// Generated record `i`: 1 to 3 labelled boxes, a caption, four time axes, three datasets.
pub fn record(i: usize, rng: &mut StdRng) -> Record {
    let start = Utc.with_ymd_and_hms(2018, 1, 1, 0, 0, 0).unwrap();
    let n = rng.random_range(1..=3);
    let mut boxes = Vec::new();
    let mut labels: Vec<String> = Vec::new();
    for _ in 0..n {
        let (label, sup, _) = LABELS[rng.random_range(0..LABELS.len())];
        boxes.push(BoundingBox {
            label: label.into(),
            supercategory: Some(sup.into()),
            x: 10.0,
            y: 10.0,
            w: 100.0,
            h: 80.0,
            area: 8000.0,
            iscrowd: false,
            annotator: None,
        });
        if !labels.contains(&label.to_string()) {
            labels.push(label.into());
        }
    }
    let place = ["street", "beach", "park", "harbour", "yard"][i % 5];
    let night = rng.random_bool(0.4);
    let sha = sha_of(i);
    let captured = start + Days::minutes(rng.random_range(0..6 * 365 * 24 * 60));
    Record {
        id: indexer::record::record_id(&sha),
        filename: format!("{place}_{i:06}.jpg"),
        path: format!("{place}/{place}_{i:06}.jpg"),
        images_root: "/bench".into(),
        width: 640,
        height: 480,
        bytes: 50_000,
        sha256: sha,
        dataset: ["fleet", "coast", "city"][i % 3].into(),
        dates: Dates {
            captured: Some(captured),
            created: Some(captured + Days::days(1)),
            modified: Some(captured + Days::days(1)),
            annotated: Some(captured + Days::days(30)),
            ingested: Some(Utc::now()),
        },
        captions: vec![format!(
            "a {} on a {place} {}",
            labels.join(" and a "),
            if night { "at night" } else { "during the day" }
        )],
        labels,
        supercategories: Vec::new(),
        boxes,
        metadata: Default::default(),
        annotators: Vec::new(),
        exports: Vec::new(),
        privacy: Default::default(),
    }
}

/// Writes `n` generated records with random `image` and `text` vectors into `lib`; `adjust`
/// changes each record before it is written (e.g. to point it at a real image file).
pub fn build(
    lib: &mut Library,
    spec: &EmbedderSpec,
    n: usize,
    adjust: impl Fn(&mut Record, usize),
) {
    lib.adopt_model(spec).unwrap();
    let mut rng = StdRng::seed_from_u64(42);
    let mut writer = lib.keyword().writer().unwrap();
    let fp = spec.fingerprint();
    let start = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(2_000) {
        let mut points = Vec::with_capacity(chunk.len());
        for &i in chunk {
            let mut r = record(i, &mut rng);
            adjust(&mut r, i);
            let mut vectors = BTreeMap::new();
            vectors.insert("image".to_owned(), random_unit(&mut rng));
            vectors.insert("text".to_owned(), random_unit(&mut rng));
            points.push(VectorPoint {
                id: image_point_id(&r.id),
                vectors,
                payload: indexer::pipeline::payload(&r, None),
            });
            writer.upsert(&r, &fp).unwrap();
        }
        lib.store().upsert(points).unwrap();
        lib.store().flush().unwrap();
        writer.commit().unwrap();
        eprint!(
            "\rbuilt {} / {n} records ({:.0?})",
            chunk[chunk.len() - 1] + 1,
            start.elapsed()
        );
    }
    eprintln!();
    lib.refresh_counts().unwrap();
    assert_eq!(
        lib.manifest().counts.records,
        n as u64,
        "every generated record is distinct"
    );
}
