//! Clustered test data shared by the index-settings tests of both stores
//! (`index_settings.rs` for the embedded store, `store_server.rs` for a Qdrant server): points
//! drawn around cluster centres on the unit sphere, labels picked by the cluster, as real
//! embeddings have; random vectors are the worst case for any graph and say nothing about
//! quality.
#![allow(dead_code)] // each test binary uses a different part of this module

use indexer::store::{CollectionSpec, Condition, Payload, PointId, VectorFilter, VectorPoint};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub const DIM: usize = 32;
pub const CLUSTERS: usize = 40;
pub const POINTS: u64 = 4_000;
pub const LABELS: [&str; 8] = [
    "car", "truck", "bus", "person", "dog", "cat", "boat", "bike",
];
pub const DATASETS: [&str; 3] = ["fleet", "coast", "city"];

pub fn spec() -> CollectionSpec {
    CollectionSpec {
        dim: DIM,
        vectors: vec!["image".into()],
        keyword_fields: vec!["dataset".into(), "labels".into()],
        integer_fields: vec!["captured".into()],
    }
}

pub fn unit(v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / n).collect()
}

pub fn gaussian(rng: &mut StdRng) -> f32 {
    // Box-Muller.
    let u: f32 = rng.random_range(f32::EPSILON..1.0);
    let v: f32 = rng.random_range(0.0..1.0);
    (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>() / (norm(a) * norm(b))
}

pub fn norm(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

/// A generated point kept in memory to check answers by brute force.
#[derive(Clone, Debug)]
pub struct Sample {
    pub id: PointId,
    pub image: Vec<f32>,
    pub labels: Vec<String>,
    pub dataset: String,
    pub captured: i64,
}

impl Sample {
    pub fn point(&self) -> VectorPoint {
        let mut payload = Payload::default();
        payload
            .insert("labels", self.labels.clone())
            .insert("dataset", self.dataset.clone())
            .insert("captured", self.captured);
        VectorPoint {
            id: self.id,
            vectors: [("image".to_owned(), self.image.clone())].into(),
            payload,
        }
    }

    pub fn satisfies(&self, c: &Condition) -> bool {
        match c {
            Condition::MatchAny { key, any } if key == "labels" => {
                self.labels.iter().any(|l| any.contains(l))
            }
            Condition::MatchAny { key, any } if key == "dataset" => any.contains(&self.dataset),
            Condition::Range { key, gte, lte } if key == "captured" => {
                gte.is_none_or(|g| self.captured >= g) && lte.is_none_or(|l| self.captured <= l)
            }
            Condition::HasId(ids) => ids.contains(&self.id),
            other => panic!("no sample field for {other:?}"),
        }
    }

    pub fn matches(&self, f: &VectorFilter) -> bool {
        f.must.iter().all(|c| self.satisfies(c)) && !f.must_not.iter().any(|c| self.satisfies(c))
    }
}

/// Clustered points: each cluster has a centre on the sphere and a label family; a point is
/// its centre plus Gaussian noise, normalised, so close points share labels.
pub fn clustered(seed: u64, n: u64) -> (Vec<Sample>, Vec<Vec<f32>>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let centres: Vec<Vec<f32>> = (0..CLUSTERS)
        .map(|_| unit((0..DIM).map(|_| gaussian(&mut rng)).collect()))
        .collect();
    let spread = 0.35 / (DIM as f32).sqrt();
    let samples = (0..n)
        .map(|id| {
            let c = rng.random_range(0..CLUSTERS);
            let image = unit(
                centres[c]
                    .iter()
                    .map(|x| x + spread * gaussian(&mut rng))
                    .collect(),
            );
            let mut labels = vec![LABELS[c % LABELS.len()].to_owned()];
            if rng.random_bool(0.3) {
                labels.push(LABELS[rng.random_range(0..LABELS.len())].to_owned());
            }
            labels.dedup();
            Sample {
                id: id * 11 + 5,
                image,
                labels,
                dataset: DATASETS[rng.random_range(0..DATASETS.len())].to_owned(),
                captured: rng.random_range(0..=10_000),
            }
        })
        .collect();
    (samples, centres)
}
