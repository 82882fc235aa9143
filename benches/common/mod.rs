//! What the query and HTTP benches share: a stand-in model that costs nothing, so the figures
//! are those of the search service and not of CLIP (the embed bench times the model), and the
//! generated library they search.
//!
//! Two kinds of data ([`Data`]): `clustered`, vectors with the structure CLIP embeddings have
//! (see [`World`] and benches/README.md), and `uniform`, independent random unit vectors: the
//! worst case for any approximate index, kept as a second row.

#![allow(dead_code)] // each bench binary uses a different part of this module

use std::sync::Arc;
use std::time::Instant;

use chrono::{Duration as Days, TimeZone, Utc};
use indexer::Library;
use indexer::points;
use indexer::record::{BoundingBox, Dates, Record};
use indexer::synth::LABELS;
use models::{EmbedError, Embedder, EmbedderSpec, Embedding};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Dimension of the generated vectors (ViT-B/32's projection).
pub const DIM: usize = 512;

/// Which vectors a generated library holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Data {
    /// A Zipf mixture of clusters on the sphere ([`World`]).
    Clustered,
    /// Independent uniform random unit vectors (no neighbourhood structure).
    Uniform,
}

impl Data {
    /// Short name for directories and report rows.
    pub fn name(self) -> &'static str {
        match self {
            Data::Clustered => "clustered",
            Data::Uniform => "uniform",
        }
    }
}

/// A random unit vector of [`DIM`] dimensions.
pub fn random_unit(rng: &mut StdRng) -> Vec<f32> {
    let v: Vec<f32> = (0..DIM).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    Embedding::normalized(v).into_vec()
}

/// A standard normal sample (Box-Muller).
pub fn gaussian(rng: &mut StdRng) -> f32 {
    let u: f32 = rng.random_range(f32::EPSILON..1.0);
    let v: f32 = rng.random_range(0.0..1.0);
    (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
}

/// `v` scaled to length 1.
pub fn unit(v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / n).collect()
}

/// The filters the search and keyword benches time, from the serve bench's mix and the search
/// bench's filtered cases. Captured times are uniform over 2018-2023; labels and datasets as
/// [`record`] draws them.
pub mod filters {
    use chrono::{TimeZone, Utc};
    use indexer::filter::{DateRange, RecordFilter};
    use indexer::record::DateAxis;

    /// Captured after / before midnight UTC of the dates given (year, month, day).
    pub fn captured(after: Option<(i32, u32, u32)>, before: Option<(i32, u32, u32)>) -> DateRange {
        let at = |(y, m, d)| Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap();
        DateRange {
            axis: DateAxis::Captured,
            after: after.map(at),
            before: before.map(at),
        }
    }

    /// The search bench's `hybrid+filter` case: trucks captured since 2020 (about 8 % of the
    /// clustered records).
    pub fn truck_since_2020() -> RecordFilter {
        RecordFilter {
            labels: vec!["truck".into()],
            dates: vec![captured(Some((2020, 1, 1)), None)],
            ..RecordFilter::default()
        }
    }

    /// The search bench's `hybrid+quarter` case: captured in the second quarter of 2021, about
    /// 4 % of the records: narrow enough that a graph walk restricted to it falls apart into
    /// pieces without payload-aware links or ACORN, wide enough (from about 100k records) that
    /// the region vectors are not scanned exactly.
    pub fn second_quarter_2021() -> RecordFilter {
        RecordFilter {
            dates: vec![captured(Some((2021, 4, 1)), Some((2021, 7, 1)))],
            ..RecordFilter::default()
        }
    }

    /// A filter of the serve bench's mix: a wide dataset with a label excluded (about 29 %).
    pub fn coast_no_dog() -> RecordFilter {
        RecordFilter {
            datasets: vec!["coast".into()],
            no_labels: vec!["dog".into()],
            ..RecordFilter::default()
        }
    }

    /// A filter of the serve bench's mix: a common label before a date (about 14 %).
    pub fn person_before_mid_2021() -> RecordFilter {
        RecordFilter {
            labels: vec!["person".into()],
            dates: vec![captured(None, Some((2021, 6, 30)))],
            ..RecordFilter::default()
        }
    }
}

/// The value at fraction `p` of `sorted` (nearest rank).
pub fn percentile(sorted: &[std::time::Duration], p: f64) -> std::time::Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// A duration in milliseconds, two decimals.
pub fn ms(d: std::time::Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// `centre` moved by isotropic Gaussian noise of expected length `spread`, back on the sphere:
/// its cosine with `centre` is about `1 / sqrt(1 + spread^2)`, and two such points of one
/// centre have a cosine of about `1 / (1 + spread^2)`.
fn near(centre: &[f32], spread: f32, rng: &mut StdRng) -> Vec<f32> {
    let scale = spread / (DIM as f32).sqrt();
    unit(centre.iter().map(|x| x + scale * gaussian(rng)).collect())
}

/// Cumulative Zipf weights `1 / (rank + 1)^s` over `n` ranks.
fn zipf(n: usize, s: f64) -> Vec<f64> {
    let mut total = 0.0;
    (0..n)
        .map(|k| {
            total += 1.0 / ((k + 1) as f64).powf(s);
            total
        })
        .collect()
}

/// A rank drawn from cumulative weights.
fn draw(cumulative: &[f64], rng: &mut StdRng) -> usize {
    let x = rng.random_range(0.0..*cumulative.last().expect("non-empty"));
    cumulative
        .partition_point(|&c| c <= x)
        .min(cumulative.len() - 1)
}

/// Number of clusters of the clustered data.
pub const CLUSTERS: usize = 3_000;
/// Words of the caption vocabulary.
pub const VOCABULARY: usize = 4_000;

/// The clustered data's generative model, fixed by its seed:
///
/// - one *family* centre per label of [`LABELS`] (random unit vectors, nearly orthogonal);
/// - [`CLUSTERS`] cluster centres, each in one family: `0.6 x family + 0.8 x random`, normalised
///   (clusters of one family have cosines about 0.36, of different families about 0);
/// - cluster sizes Zipf-distributed (exponent 1, ranks shuffled over clusters);
/// - per cluster a spread drawn in `[0.38, 0.68]`, so two images of one cluster have cosines of
///   about 0.69 to 0.87 (the bench prints the measured nearest-neighbour cosines);
/// - a record's image is its cluster centre plus noise; its labels are its family's label plus,
///   with probability 0.5, one other; each box region lies near the image (cosine about 0.9);
///   its caption text vector lies near the image (cosine about 0.8);
/// - captions add 3 to 8 words drawn from a Zipf vocabulary of [`VOCABULARY`] made-up words.
///
/// [`Noise`] makes it harder (eval's structured libraries); its default is the above, which
/// the benches use.
pub struct World {
    families: Vec<Vec<f32>>,
    centres: Vec<Vec<f32>>,
    family_of: Vec<usize>,
    spread: Vec<f32>,
    sizes: Vec<f64>,
    clusters_of_family: Vec<Vec<usize>>,
    words: Vec<String>,
    word_weights: Vec<f64>,
    noise: Noise,
}

/// How far the clustered world is from a perfectly separable one. The default changes
/// nothing (the benches' world); eval's structured libraries set it so that no list is perfect.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Noise {
    /// Fraction of records whose image lands in a cluster of another label's family than their
    /// first label (the object is small or occluded, or the scene looks like something else):
    /// their labels stay. 0 by default.
    pub wrong_image: f64,
    /// Spread of a caption's text vector around its image: 0.75 by default (cosine about 0.8).
    pub text_spread: f32,
    /// Spread of a box's region vector: 0.5 by default (cosine about 0.9).
    pub region_spread: f32,
    /// Each box's region lies near a cluster of its own label's family (the record's cluster
    /// for its first label) instead of near the whole image. Off by default.
    pub regions_by_label: bool,
    /// Spread of a query vector around the cluster centre it lands near (the gap between text
    /// and image embeddings: 2 gives a cosine of about 0.45 with the centre); `None` (the
    /// default) uses the cluster's own spread, so a query lies like one more image of it.
    pub query_spread: Option<f32>,
}

impl Default for Noise {
    fn default() -> Self {
        Noise {
            wrong_image: 0.0,
            text_spread: 0.75,
            region_spread: 0.5,
            regions_by_label: false,
            query_spread: None,
        }
    }
}

impl World {
    /// The world of `seed` with `noise`.
    pub fn noisy(seed: u64, noise: Noise) -> Self {
        World {
            noise,
            ..World::new(seed)
        }
    }

    /// A cluster of family `f` drawn by size.
    fn cluster_of(&self, f: usize, rng: &mut StdRng) -> Option<usize> {
        let clusters = &self.clusters_of_family[f];
        if clusters.is_empty() {
            return None;
        }
        let weights: Vec<f64> = clusters
            .iter()
            .scan(0.0, |total, &c| {
                let w = self.sizes[c] - if c == 0 { 0.0 } else { self.sizes[c - 1] };
                *total += w;
                Some(*total)
            })
            .collect();
        Some(clusters[draw(&weights, rng)])
    }

    /// The world of `seed`.
    pub fn new(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let families: Vec<Vec<f32>> = (0..LABELS.len())
            .map(|_| unit((0..DIM).map(|_| gaussian(&mut rng)).collect()))
            .collect();
        let family_of: Vec<usize> = (0..CLUSTERS)
            .map(|_| rng.random_range(0..LABELS.len()))
            .collect();
        let centres = family_of
            .iter()
            .map(|&f| {
                let r = unit((0..DIM).map(|_| gaussian(&mut rng)).collect());
                unit(
                    families[f]
                        .iter()
                        .zip(&r)
                        .map(|(a, b)| 0.6 * a + 0.8 * b)
                        .collect(),
                )
            })
            .collect();
        let spread = (0..CLUSTERS)
            .map(|_| rng.random_range(0.38f32..0.68))
            .collect();
        // Zipf weights assigned to clusters in a shuffled order.
        let mut order: Vec<usize> = (0..CLUSTERS).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        let mut weight = vec![0.0; CLUSTERS];
        for (rank, &c) in order.iter().enumerate() {
            weight[c] = 1.0 / (rank + 1) as f64;
        }
        let mut total = 0.0;
        let sizes = weight
            .iter()
            .map(|w| {
                total += w;
                total
            })
            .collect();
        let mut clusters_of_family = vec![Vec::new(); LABELS.len()];
        for (c, &f) in family_of.iter().enumerate() {
            clusters_of_family[f].push(c);
        }
        const SYLLABLES: [&str; 20] = [
            "ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "do", "pe", "zu", "ba", "ge", "fi",
            "ho", "ja", "ku", "ly", "mo", "ni",
        ];
        let words = (0..VOCABULARY)
            .map(|i| {
                let (a, b, c) = (i % 20, (i / 20) % 20, i / 400);
                format!("{}{}{}", SYLLABLES[a], SYLLABLES[b], SYLLABLES[c % 20])
            })
            .collect();
        World {
            families,
            centres,
            family_of,
            spread,
            sizes,
            clusters_of_family,
            words,
            word_weights: zipf(VOCABULARY, 1.07),
            noise: Noise::default(),
        }
    }

    /// A vector where an image of a cluster of the family of `label` would land (a cluster
    /// picked by size); a random cluster's when `label` is not one of [`LABELS`].
    pub fn query_near(&self, label: Option<&str>, rng: &mut StdRng) -> Vec<f32> {
        let family = label.and_then(|l| LABELS.iter().position(|(name, _, _)| *name == l));
        let cluster = match family.and_then(|f| self.cluster_of(f, rng)) {
            Some(c) => c,
            None => draw(&self.sizes, rng),
        };
        let spread = self.noise.query_spread.unwrap_or(self.spread[cluster]);
        near(&self.centres[cluster], spread, rng)
    }
}

/// One generated record and its vectors.
pub struct Generated {
    /// The record (labels, boxes, caption, dates, filename, dataset).
    pub record: Record,
    /// Its `image` vector.
    pub image: Vec<f32>,
    /// Its caption's `text` vector.
    pub text: Vec<f32>,
    /// One `region` vector per box.
    pub regions: Vec<Vec<f32>>,
}

/// Generates records of one kind of data.
pub struct Generator {
    data: Data,
    world: Arc<World>,
}

impl Generator {
    /// The generator of `data` (the clustered world of seed 7).
    pub fn new(data: Data) -> Self {
        Self::seeded(data, 7)
    }

    /// The generator of `data` in the clustered world of `seed`.
    pub fn seeded(data: Data, seed: u64) -> Self {
        Self::noisy(data, seed, Noise::default())
    }

    /// The generator of `data` in the clustered world of `seed` with `noise`.
    pub fn noisy(data: Data, seed: u64, noise: Noise) -> Self {
        Generator {
            data,
            world: Arc::new(World::noisy(seed, noise)),
        }
    }

    /// The clustered world (also used by [`BenchEmbedder`] for query vectors).
    pub fn world(&self) -> &Arc<World> {
        &self.world
    }

    /// Generated record `i` with its vectors.
    pub fn generate(&self, i: usize, rng: &mut StdRng) -> Generated {
        match self.data {
            Data::Uniform => {
                let labels: Vec<&str> = (0..rng.random_range(1..=3))
                    .map(|_| LABELS[rng.random_range(0..LABELS.len())].0)
                    .collect();
                let record = record(i, &labels, &[], rng);
                let regions = record.boxes.iter().map(|_| random_unit(rng)).collect();
                Generated {
                    record,
                    image: random_unit(rng),
                    text: random_unit(rng),
                    regions,
                }
            }
            Data::Clustered => {
                let w = &self.world;
                let cluster = draw(&w.sizes, rng);
                let mut seen = cluster;
                // No draw at all with the default noise (the benches' records stay as they were).
                if w.noise.wrong_image > 0.0 && rng.random_bool(w.noise.wrong_image) {
                    while w.family_of[seen] == w.family_of[cluster] {
                        seen = draw(&w.sizes, rng);
                    }
                }
                let image = near(&w.centres[seen], w.spread[seen], rng);
                let mut labels = vec![LABELS[w.family_of[cluster]].0];
                if rng.random_bool(0.5) {
                    labels.push(LABELS[rng.random_range(0..LABELS.len())].0);
                }
                let words: Vec<&str> = (0..rng.random_range(3..=8))
                    .map(|_| w.words[draw(&w.word_weights, rng)].as_str())
                    .collect();
                let record = record(i, &labels, &words, rng);
                let regions = record
                    .boxes
                    .iter()
                    .map(|b| {
                        if !w.noise.regions_by_label {
                            return near(&image, w.noise.region_spread, rng);
                        }
                        let f = LABELS
                            .iter()
                            .position(|(l, _, _)| *l == b.label)
                            .expect("a label of LABELS");
                        let c = if f == w.family_of[cluster] {
                            cluster
                        } else {
                            w.cluster_of(f, rng).unwrap_or(cluster)
                        };
                        near(&w.centres[c], w.noise.region_spread, rng)
                    })
                    .collect();
                let text = near(&image, w.noise.text_spread, rng);
                Generated {
                    record,
                    image,
                    text,
                    regions,
                }
            }
        }
    }
}

/// The stand-in model: query text becomes a seeded vector (no model cost). With uniform data
/// it is a random unit vector; with clustered data it lands near a cluster of the family of
/// the first label the text names, as a CLIP text embedding lands near matching images.
pub struct BenchEmbedder {
    spec: EmbedderSpec,
    world: Option<Arc<World>>,
}

impl BenchEmbedder {
    /// A stand-in for `spec`; `world` for clustered data.
    pub fn new(spec: EmbedderSpec, world: Option<Arc<World>>) -> Self {
        BenchEmbedder { spec, world }
    }

    fn vector(&self, text: &str) -> Vec<f32> {
        let seed = text
            .bytes()
            .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
        let mut rng = StdRng::seed_from_u64(seed);
        match &self.world {
            None => random_unit(&mut rng),
            Some(world) => {
                let label = text
                    .split(|c: char| !c.is_alphanumeric())
                    .find(|w| LABELS.iter().any(|(l, _, _)| l == w));
                world.query_near(label, &mut rng)
            }
        }
    }
}

impl Embedder for BenchEmbedder {
    fn spec(&self) -> &EmbedderSpec {
        &self.spec
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
            .map(|t| Embedding::normalized(self.vector(t)))
            .collect())
    }
}

/// The (made-up) image sha256 of generated record `i`; its id is the first 16 hex digits.
pub fn sha_of(i: usize) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(format!("bench record {i}").as_bytes()))
}

/// Generated record `i` with one box per label (plus, sometimes, a second box of the first
/// label), a caption naming the labels plus `words`, four time axes and three datasets.
/// The file name of record `i`: its place and number (`street_000120.jpg`).
pub fn filename(i: usize) -> String {
    let place = ["street", "beach", "park", "harbour", "yard"][i % 5];
    format!("{place}_{i:06}.jpg")
}

pub fn record(i: usize, labels: &[&str], words: &[&str], rng: &mut StdRng) -> Record {
    let start = Utc.with_ymd_and_hms(2018, 1, 1, 0, 0, 0).unwrap();
    let mut boxes = Vec::new();
    let mut distinct: Vec<String> = Vec::new();
    let mut box_labels: Vec<&str> = labels.to_vec();
    if rng.random_bool(0.3) {
        box_labels.push(labels[0]);
    }
    for label in box_labels {
        let sup = LABELS
            .iter()
            .find(|(l, _, _)| *l == label)
            .map_or("thing", |(_, s, _)| *s);
        boxes.push(BoundingBox {
            polygons: Vec::new(),
            label: label.into(),
            supercategory: Some(sup.into()),
            x: 10.0,
            y: 10.0,
            w: 100.0,
            h: 80.0,
            area: 8000.0,
            iscrowd: false,
            annotator: None,
            attributes: Default::default(),
        });
        if !distinct.iter().any(|l| l == label) {
            distinct.push(label.into());
        }
    }
    let place = ["street", "beach", "park", "harbour", "yard"][i % 5];
    let night = rng.random_bool(0.4);
    let sha = sha_of(i);
    let captured = start + Days::minutes(rng.random_range(0..6 * 365 * 24 * 60));
    let mut caption = format!(
        "a {} on a {place} {}",
        distinct.join(" and a "),
        if night { "at night" } else { "during the day" }
    );
    for w in words {
        caption.push(' ');
        caption.push_str(w);
    }
    Record {
        source_id: None,
        id: indexer::record::record_id(&sha),
        filename: filename(i),
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
        captions: vec![caption],
        labels: distinct,
        supercategories: Vec::new(),
        boxes,
        split: None,
        negative_labels: Vec::new(),
        attributes: Default::default(),
        metadata: Default::default(),
        annotators: Vec::new(),
        exports: Vec::new(),
        privacy: Default::default(),
    }
}

/// The vector layout a bench gives the library it builds: `IMAGELENS_BENCH_LAYOUT=single` is
/// one collection for image and region points (every library before the layout existed),
/// anything else (or unset) a new library's default, images and regions apart. The second
/// value is a suffix for the library's directory, so both are kept and reused side by side.
pub fn layout() -> (indexer::VectorLayout, &'static str) {
    match std::env::var("IMAGELENS_BENCH_LAYOUT").as_deref() {
        Ok("single") => (indexer::VectorLayout::Single, "-single"),
        _ => (indexer::VectorLayout::Split, ""),
    }
}

/// Opens (creating if new) the bench library in `dir` with the [`layout`] asked for.
pub fn open_library(dir: &std::path::Path) -> anyhow::Result<Library> {
    let lib = Library::open_with_layout(dir, indexer::StoreSettings::Edge, layout().0)?;
    Ok(lib)
}

/// Writes `n` generated records of `data` (an `image` and a `text` vector per record, a
/// `region` vector per box) into `lib`; `adjust` changes each record before it is written
/// (e.g. to point it at a real image file). Returns the generator (for query vectors).
pub fn build(
    lib: &mut Library,
    spec: &EmbedderSpec,
    n: usize,
    data: Data,
    adjust: impl Fn(&mut Record, usize),
) -> Generator {
    build_seeded(lib, spec, n, Generator::new(data), 42, adjust)
}

/// [`build`] with a given generator (its world) and seed of the records drawn from it.
pub fn build_seeded(
    lib: &mut Library,
    spec: &EmbedderSpec,
    n: usize,
    generator: Generator,
    records_seed: u64,
    adjust: impl Fn(&mut Record, usize),
) -> Generator {
    let data = generator.data;
    lib.adopt_model(spec).unwrap();
    let mut rng = StdRng::seed_from_u64(records_seed);
    let mut writer = lib.keyword().writer().unwrap();
    let fp = spec.fingerprint();
    let start = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(2_000) {
        let mut points = Vec::with_capacity(chunk.len() * 3);
        for &i in chunk {
            let Generated {
                mut record,
                image,
                text,
                regions,
            } = generator.generate(i, &mut rng);
            adjust(&mut record, i);
            // A record `adjust` left without annotations has no text to embed, and a region
            // vector only for each box it kept.
            let annotated = !record.labels.is_empty() || !record.captions.is_empty();
            points.push(points::image_point(
                &record,
                image,
                annotated.then_some(text),
            ));
            let boxes = record.boxes.len();
            for (b, region) in regions.into_iter().take(boxes).enumerate() {
                points.push(points::region_point(&record, b, region));
            }
            writer.upsert(&record, &fp).unwrap();
        }
        lib.store().upsert(points).unwrap();
        lib.store().flush().unwrap();
        writer.commit().unwrap();
        eprint!(
            "\rbuilt {} / {n} {} records ({:.0?})",
            chunk[chunk.len() - 1] + 1,
            data.name(),
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
    generator
}

/// This process's memory (a bench's library is opened in it; wrk is another process), from
/// `/proc/self/status`: resident now (`VmRSS`), of which anonymous (`RssAnon`: heap, the
/// store's in-RAM structures) and file-backed (`RssFile`: the store's and the keyword index's
/// mmap'd files, which the kernel may drop and read again), and the peak (`VmHWM`, which
/// includes building the library when this run built it).
pub fn memory() -> anyhow::Result<String> {
    use anyhow::Context as _;
    let status = std::fs::read_to_string("/proc/self/status")?;
    let mib = |key: &str| -> anyhow::Result<f64> {
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {key} in /proc/self/status"))?;
        Ok(kb / 1024.0)
    };
    Ok(format!(
        "resident {:.0} MiB (anonymous {:.0}, files {:.0}), peak {:.0} MiB",
        mib("VmRSS:")?,
        mib("RssAnon:")?,
        mib("RssFile:")?,
        mib("VmHWM:")?
    ))
}

/// What this process has used so far, from `/proc/self/stat` and `/proc/self/io`: CPU time
/// (user + system, all threads), major page faults (pages read from disk on first touch of a
/// memory-mapped file) and bytes read from storage. Two snapshots around a run give its
/// share of the cores and how much it waited on the disk.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// User + system CPU time, seconds.
    pub cpu_secs: f64,
    /// Major page faults.
    pub major_faults: u64,
    /// Bytes read from storage (`read_bytes`: what reached the block layer); `None` where
    /// `/proc/self/io` cannot be read (a kernel without I/O accounting), so no 0 is made up.
    pub read_bytes: Option<u64>,
}

impl Usage {
    /// This process now.
    ///
    /// # Errors
    /// When `/proc/self` cannot be read (not Linux).
    pub fn now() -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let stat = std::fs::read_to_string("/proc/self/stat")?;
        // The fields after the command name, which is in parentheses and may hold spaces:
        // field 3 (state) is the first; majflt is field 12, utime 14, stime 15.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .context("no ')' in /proc/self/stat")?
            .1
            .split_whitespace()
            .collect();
        let field = |n: usize| -> anyhow::Result<u64> {
            fields
                .get(n - 3)
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("no field {n} in /proc/self/stat"))
        };
        let read_bytes = std::fs::read_to_string("/proc/self/io")
            .ok()
            .and_then(|io| {
                io.lines()
                    .find_map(|l| l.strip_prefix("read_bytes:"))
                    .and_then(|v| v.trim().parse().ok())
            });
        // utime and stime count USER_HZ ticks, 100 a second on Linux's x86 and arm64 ABIs.
        Ok(Self {
            cpu_secs: (field(14)? + field(15)?) as f64 / 100.0,
            major_faults: field(12)?,
            read_bytes,
        })
    }

    /// What was used between `earlier` and this snapshot, over `wall` seconds, in words.
    pub fn since(&self, earlier: &Usage, wall: f64) -> String {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let cpu = self.cpu_secs - earlier.cpu_secs;
        let read = match (self.read_bytes, earlier.read_bytes) {
            (Some(now), Some(then)) => format!(
                "{:.0} MiB read from storage",
                now.saturating_sub(then) as f64 / (1024.0 * 1024.0)
            ),
            _ => "bytes read from storage unknown (no /proc/self/io)".into(),
        };
        format!(
            "CPU {cpu:.1} s in {wall:.1} s = {:.0} % ({cores} cores), {} major page faults, {read}",
            100.0 * cpu / wall.max(1e-9),
            self.major_faults.saturating_sub(earlier.major_faults),
        )
    }
}
