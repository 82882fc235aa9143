//! `imagelens eval`: the library's own annotations as relevance judgements.
//!
//! Two query sets, both built from the library:
//! - **label** queries: for every label with at least `min_records` records, the template
//!   (`a photo of a {label}`) with the label filter off; relevant = the records carrying the
//!   label (image-level or on a box);
//! - **caption** (known-item) queries: every caption of every record; relevant = that record
//!   (the COCO caption-retrieval protocol: a record with k captions gives k queries).
//!
//! Each query runs once per ranking system: the keyword list alone (BM25), each vector list
//! alone (`image`, `region`, `text`) and the hybrid with the weights given, and scores R@1/5/10
//! (capped), nDCG@10 and MRR within [`DEPTH`] ([`metrics`]); a `chance` line gives what a random
//! order scores on the same queries. Queries are taken literally (no interpretation) and ask
//! [`DEPTH`] results of the public [`SearchService`] API, so the figures are those of real
//! searches.
//!
//! Sampling is deterministic and over queries: each set's queries are ordered by
//! `sha256(seed:key)` (the label; `record id#caption index`) and the first `sample` kept, so
//! one seed gives one query set on one library. The report keeps no record
//! ids, file names or captions (it is written into the data directory, which deletion must
//! leave without residue): only labels, counts and figures, and a digest of the record ids.

use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use chrono::{DateTime, Utc};
use indexer::filter::RecordFilter;
use models::EmbedderSpec;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::search::{Fusion, MAX_QUERY_CHARS, SearchError, SearchRequest, SearchService};

mod compare;
pub mod metrics;
pub mod sweep;

pub use compare::{Difference, compare};

/// Results asked per query: MRR is MRR@DEPTH.
pub const DEPTH: usize = 100;
/// Most queries per set.
pub const MAX_SAMPLE: usize = 100_000;
/// Longest label-query template, in characters.
pub const MAX_TEMPLATE_CHARS: usize = 200;
/// Records read per batch when collecting captions.
const BATCH: usize = 256;

/// Which query set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuerySet {
    /// "a photo of a {label}" -> records with the label.
    Label,
    /// Each caption of a record -> that record.
    Caption,
}

impl QuerySet {
    /// Name in reports.
    pub fn name(self) -> &'static str {
        match self {
            QuerySet::Label => "label",
            QuerySet::Caption => "caption",
        }
    }
}

/// A ranking system: one list alone, the hybrid, or a random order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum System {
    /// BM25 alone.
    Keyword,
    /// Whole-image vectors alone.
    Image,
    /// Box-region vectors alone.
    Region,
    /// Label/caption text vectors alone.
    Text,
    /// Every list with the weights given.
    Hybrid,
    /// The expected score of a uniformly random order (computed, not run).
    Chance,
}

impl System {
    /// Name in reports.
    pub fn name(self) -> &'static str {
        match self {
            System::Keyword => "keyword",
            System::Image => "image",
            System::Region => "region",
            System::Text => "text",
            System::Hybrid => "hybrid",
            System::Chance => "chance",
        }
    }

    /// The fusion that runs this system: one list at weight 1 and the rest at 0, or `hybrid`.
    pub fn fusion(self, hybrid: Fusion) -> Fusion {
        let alone = |keyword, image, region, text| Fusion {
            keyword,
            image,
            region,
            text,
            ..hybrid
        };
        match self {
            System::Keyword => alone(1.0, 0.0, 0.0, 0.0),
            System::Image => alone(0.0, 1.0, 0.0, 0.0),
            System::Region => alone(0.0, 0.0, 1.0, 0.0),
            System::Text => alone(0.0, 0.0, 0.0, 1.0),
            System::Hybrid | System::Chance => hybrid,
        }
    }
}

/// Mean scores of one system on one query set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// Capped recall at 1.
    pub recall_1: f64,
    /// Capped recall at 5.
    pub recall_5: f64,
    /// Capped recall at 10.
    pub recall_10: f64,
    /// nDCG at 10.
    pub ndcg_10: f64,
    /// Mean reciprocal rank within [`DEPTH`].
    pub mrr: f64,
}

impl Scores {
    fn of(ranked: &[String], relevant: &BTreeSet<String>) -> Self {
        Scores {
            recall_1: metrics::recall_at(ranked, relevant, 1),
            recall_5: metrics::recall_at(ranked, relevant, 5),
            recall_10: metrics::recall_at(ranked, relevant, 10),
            ndcg_10: metrics::ndcg_at(ranked, relevant, 10),
            mrr: metrics::reciprocal_rank(ranked, relevant),
        }
    }

    fn chance(total: usize, relevant: usize) -> Self {
        let [recall_1, recall_5, recall_10, ndcg_10, mrr] = metrics::chance(total, relevant, DEPTH);
        Scores {
            recall_1,
            recall_5,
            recall_10,
            ndcg_10,
            mrr,
        }
    }

    fn add(&mut self, o: &Scores) {
        self.recall_1 += o.recall_1;
        self.recall_5 += o.recall_5;
        self.recall_10 += o.recall_10;
        self.ndcg_10 += o.ndcg_10;
        self.mrr += o.mrr;
    }

    fn divided(mut self, n: usize) -> Self {
        if n > 0 {
            let n = n as f64;
            self.recall_1 /= n;
            self.recall_5 /= n;
            self.recall_10 /= n;
            self.ndcg_10 /= n;
            self.mrr /= n;
        }
        self
    }

    /// The metrics by name, in report order.
    pub fn named(&self) -> [(&'static str, f64); 5] {
        [
            ("R@1", self.recall_1),
            ("R@5", self.recall_5),
            ("R@10", self.recall_10),
            ("nDCG@10", self.ndcg_10),
            ("MRR", self.mrr),
        ]
    }
}

/// One query of a set.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalQuery {
    /// Its set.
    pub set: QuerySet,
    /// The text searched.
    pub text: String,
    /// Relevant record ids.
    pub relevant: BTreeSet<String>,
    /// The label of a label query.
    pub label: Option<String>,
}

/// How to evaluate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalOptions {
    /// Label-query template; `{label}` is replaced by the label.
    pub template: String,
    /// Labels with fewer records get no query.
    pub min_records: u64,
    /// Most queries per set.
    pub sample: usize,
    /// Seed of the sample.
    pub seed: u64,
    /// Hybrid weights.
    pub fusion: Fusion,
    /// Also search the fusion weights and k on a training split ([`sweep`]).
    #[serde(default)]
    pub sweep: bool,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            template: "a photo of a {label}".into(),
            min_records: 5,
            sample: 1000,
            seed: 42,
            fusion: Fusion::default(),
            sweep: false,
        }
    }
}

impl EvalOptions {
    /// Refuses a template without `{label}` or too long, a sample of 0 or above
    /// [`MAX_SAMPLE`], and `min_records` of 0.
    ///
    /// # Errors
    /// [`SearchError::Invalid`] naming the option.
    pub fn check(&self) -> Result<(), SearchError> {
        if !self.template.contains("{label}") {
            return Err(SearchError::Invalid(
                "--template must contain {label}".into(),
            ));
        }
        if self.template.chars().count() > MAX_TEMPLATE_CHARS {
            return Err(SearchError::Invalid(format!(
                "--template is longer than {MAX_TEMPLATE_CHARS} characters"
            )));
        }
        if !(1..=MAX_SAMPLE).contains(&self.sample) {
            return Err(SearchError::Invalid(format!(
                "--sample must be 1 to {MAX_SAMPLE}, got {}",
                self.sample
            )));
        }
        if self.min_records == 0 {
            return Err(SearchError::Invalid(
                "--min-records must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// The library a report was measured on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LibraryState {
    /// Records.
    pub records: u64,
    /// Records with vectors.
    pub embedded_records: u64,
    /// Distinct labels.
    pub labels: usize,
    /// sha256 of the sorted record ids, joined by newlines (two runs on the same records
    /// agree; it reveals no id).
    pub ids_sha256: String,
    /// Last change of the library (its manifest).
    pub updated: DateTime<Utc>,
}

/// One system's scores on one set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemScores {
    /// The system.
    pub system: System,
    /// Mean scores.
    #[serde(flatten)]
    pub scores: Scores,
}

/// One set's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetReport {
    /// The set.
    pub set: QuerySet,
    /// Queries run.
    pub queries: usize,
    /// Queries the set had before sampling.
    pub available: usize,
    /// Per system.
    pub systems: Vec<SystemScores>,
}

/// One label query's scores, per system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelRow {
    /// The label.
    pub label: String,
    /// Records carrying it.
    pub records: usize,
    /// Per system.
    pub systems: BTreeMap<System, Scores>,
}

/// What `imagelens eval` measured, as saved under `DIR/eval/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// When.
    pub created: DateTime<Utc>,
    /// The model the vector lists used (`None`: keyword only).
    pub model: Option<EmbedderSpec>,
    /// Whether the vector lists took part.
    pub semantic: bool,
    /// Why the model's vectors carry no meaning, when it says so: each vector list is then
    /// measured alone (at chance) but searches, and so the hybrid row, rank query text by
    /// keywords alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub untrained: Option<String>,
    /// The library.
    pub library: LibraryState,
    /// The options.
    pub options: EvalOptions,
    /// Results per set.
    pub sets: Vec<SetReport>,
    /// Label queries one by one, worst hybrid nDCG@10 first.
    pub labels: Vec<LabelRow>,
    /// What `--sweep` found (with vectors only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<sweep::SweepReport>,
}

/// Orders `keys` by `sha256(seed:key)` and keeps the first `n`.
pub fn sample<T: Clone>(items: &[T], key: impl Fn(&T) -> &str, seed: u64, n: usize) -> Vec<T> {
    let mut keyed: Vec<([u8; 32], &T)> = items
        .iter()
        .map(|t| {
            let h: [u8; 32] = Sha256::digest(format!("{seed}:{}", key(t))).into();
            (h, t)
        })
        .collect();
    keyed.sort_by_key(|a| a.0);
    keyed.into_iter().take(n).map(|(_, t)| t.clone()).collect()
}

fn cut(text: &str) -> String {
    text.chars().take(MAX_QUERY_CHARS).collect()
}

/// The label and caption queries of the library (sampled), and how many each set had.
///
/// # Errors
/// Index failures.
pub fn queries(
    service: &SearchService,
    opts: &EvalOptions,
) -> Result<(Vec<EvalQuery>, [usize; 2]), SearchError> {
    let kw = service.library().keyword();
    let facets = kw.facets(&RecordFilter::default())?;
    let labels: Vec<String> = facets
        .labels
        .iter()
        .filter(|(_, n)| **n >= opts.min_records)
        .map(|(l, _)| l.clone())
        .collect();
    let mut out = Vec::new();
    for label in sample(&labels, |l| l.as_str(), opts.seed, opts.sample) {
        let relevant = kw.filter_ids(&RecordFilter {
            labels: vec![label.clone()],
            ..Default::default()
        })?;
        out.push(EvalQuery {
            set: QuerySet::Label,
            text: cut(&opts.template.replace("{label}", &label)),
            relevant,
            label: Some(label),
        });
    }
    // Captions: every caption of every record is a query (the COCO protocol queries all five
    // captions of each image). Sampling is over these queries, not over records: each caption
    // is keyed by `record id#caption index` and the `sample` with the smallest
    // `sha256(seed:key)` are kept, in that order, so `--sample N` caps the queries of the set
    // as it does the labels, and the kept queries are a uniform draw of all captions. A
    // bounded heap keeps memory to the sample whatever the library's size.
    let ids: Vec<String> = kw.ids()?.into_iter().collect();
    let mut available = 0;
    let mut kept: BinaryHeap<([u8; 32], String, String)> = BinaryHeap::new();
    for chunk in ids.chunks(BATCH) {
        for record in kw.get_many(chunk)? {
            for (i, caption) in record.captions.iter().enumerate() {
                let caption = caption.trim();
                if caption.is_empty() {
                    continue;
                }
                available += 1;
                let h: [u8; 32] = Sha256::digest(format!("{}:{}#{i}", opts.seed, record.id)).into();
                if kept.len() < opts.sample {
                    kept.push((h, record.id.clone(), cut(caption)));
                } else if kept.peek().is_some_and(|top| h < top.0) {
                    kept.pop();
                    kept.push((h, record.id.clone(), cut(caption)));
                }
            }
        }
    }
    let captions = kept
        .into_sorted_vec()
        .into_iter()
        .map(|(_, id, text)| EvalQuery {
            set: QuerySet::Caption,
            text,
            relevant: BTreeSet::from([id]),
            label: None,
        });
    out.extend(captions);
    Ok((out, [labels.len(), available]))
}

/// The systems that can run on this service: the keyword list, and with vectors each vector
/// list and the hybrid.
pub fn systems(service: &SearchService) -> Vec<System> {
    if service.semantic() {
        vec![
            System::Keyword,
            System::Image,
            System::Region,
            System::Text,
            System::Hybrid,
        ]
    } else {
        vec![System::Keyword]
    }
}

/// Runs every query with every system and scores it. `on_query` is called once per query with
/// its text and the ids every system returned, before the scores are kept (the CLI audits the
/// query there, as a search).
///
/// # Errors
/// Search failures, and whatever `on_query` returns.
pub fn run<E: From<SearchError>>(
    service: &SearchService,
    opts: &EvalOptions,
    mut on_query: impl FnMut(&EvalQuery, &[System], Vec<String>) -> Result<(), E>,
) -> Result<EvalReport, E> {
    opts.check()?;
    let library = service.library();
    let manifest = library.manifest();
    let ids = library.keyword().ids().map_err(SearchError::from)?;
    let total = ids.len();
    let mut digest = Sha256::new();
    for id in &ids {
        digest.update(id.as_bytes());
        digest.update(b"\n");
    }
    let facets = library
        .keyword()
        .facets(&RecordFilter::default())
        .map_err(SearchError::from)?;
    let (queries, available) = queries(service, opts)?;
    let systems = systems(service);

    let mut sums: BTreeMap<(QuerySet, System), Scores> = BTreeMap::new();
    let mut counts: BTreeMap<QuerySet, usize> = BTreeMap::new();
    let mut labels = Vec::new();
    let mut lists = Vec::new();
    for q in &queries {
        let base = SearchRequest {
            text: q.text.clone(),
            limit: DEPTH,
            fusion: opts.fusion,
            ..Default::default()
        };
        // One query vector serves every system (it does not depend on the weights). Each list
        // alone is measured with the vector a trained model would be asked for; the hybrid
        // gets what a search gets, which from an untrained model is no vector at all.
        let vector = service.measured_query_embedding(&base)?;
        let searched = if service.untrained().is_some() {
            service.query_embedding(&base)?
        } else {
            vector.clone()
        };
        let mut returned = BTreeSet::new();
        let mut row = BTreeMap::new();
        let mut alone: [Vec<String>; 4] = Default::default();
        for &system in &systems {
            let req = SearchRequest {
                fusion: system.fusion(opts.fusion),
                ..base.clone()
            };
            let query = match system {
                System::Hybrid => searched.clone(),
                _ => vector.clone(),
            };
            let resp = service.search_with(&req, query)?;
            let ranked: Vec<String> = resp.results.into_iter().map(|h| h.id).collect();
            let s = Scores::of(&ranked, &q.relevant);
            let slot = match system {
                System::Keyword => Some(0),
                System::Image => Some(1),
                System::Region => Some(2),
                System::Text => Some(3),
                System::Hybrid | System::Chance => None,
            };
            if let Some(i) = slot.filter(|_| opts.sweep) {
                alone[i].clone_from(&ranked);
            }
            returned.extend(ranked);
            sums.entry((q.set, system)).or_default().add(&s);
            row.insert(system, s);
        }
        let chance = Scores::chance(total, q.relevant.len());
        sums.entry((q.set, System::Chance))
            .or_default()
            .add(&chance);
        row.insert(System::Chance, chance);
        *counts.entry(q.set).or_default() += 1;
        on_query(q, &systems, returned.into_iter().collect())?;
        if opts.sweep {
            lists.push(sweep::QueryLists {
                set: q.set,
                key: q.text.clone(),
                relevant: q.relevant.clone(),
                lists: alone,
            });
        }
        if let Some(label) = &q.label {
            labels.push(LabelRow {
                label: label.clone(),
                records: q.relevant.len(),
                systems: row,
            });
        }
    }
    let mut sets = Vec::new();
    for (set, avail) in [QuerySet::Label, QuerySet::Caption]
        .into_iter()
        .zip(available)
    {
        let n = counts.get(&set).copied().unwrap_or(0);
        let systems = systems
            .iter()
            .copied()
            .chain([System::Chance])
            .map(|system| SystemScores {
                system,
                scores: sums
                    .get(&(set, system))
                    .copied()
                    .unwrap_or_default()
                    .divided(n),
            })
            .collect();
        sets.push(SetReport {
            set,
            queries: n,
            available: avail,
            systems,
        });
    }
    let headline = if service.semantic() {
        System::Hybrid
    } else {
        System::Keyword
    };
    labels.sort_by(|a, b| {
        let score = |r: &LabelRow| r.systems.get(&headline).map_or(0.0, |s| s.ndcg_10);
        score(a)
            .total_cmp(&score(b))
            .then_with(|| a.label.cmp(&b.label))
    });
    Ok(EvalReport {
        created: Utc::now(),
        model: service
            .embedder()
            .map(|e| e.spec().clone())
            .filter(|_| service.semantic()),
        semantic: service.semantic(),
        untrained: service.untrained().map(str::to_owned),
        library: LibraryState {
            records: total as u64,
            embedded_records: manifest.counts.embedded_records,
            labels: facets.labels.len(),
            ids_sha256: hex::encode(digest.finalize()),
            updated: manifest.updated,
        },
        options: opts.clone(),
        sets,
        labels,
        // Weights for lists an untrained model fills with noise would mean nothing.
        sweep: if opts.sweep && service.semantic() && service.untrained().is_none() {
            sweep::sweep(&lists, opts.fusion, opts.seed)
        } else {
            None
        },
    })
}

#[cfg(test)]
mod tests;
