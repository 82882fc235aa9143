//! `imagelens eval --sweep`: which fusion weights and k rank this library best, chosen on a
//! training split of the queries and checked on the held-out rest.
//!
//! Each list's own ranking is taken once per query (the single-list runs of
//! [`super::run`]), and every setting of the grid is fused from them offline with the same
//! weighted RRF as [`crate::search`] (`weight / (k + rank)`, a record once per list at its
//! rank, ties by id). The lists are cut at [`super::DEPTH`], so a record outside every list's
//! top [`super::DEPTH`] cannot be placed: the top 10 that nDCG@10 reads is exact whenever each
//! list's top 10 lies within it, which it does. The objective is mean nDCG@10 per query set,
//! averaged over the sets (so thousands of captions do not drown a dozen labels). The result
//! is printed as settings to adopt; nothing is applied.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{DEPTH, QuerySet, metrics};
use crate::search::Fusion;

/// Weights tried for each list.
pub const WEIGHTS: [f32; 4] = [0.0, 0.25, 0.5, 1.0];
/// RRF constants tried.
pub const KS: [f32; 3] = [20.0, 60.0, 100.0];

/// One query's ranked lists (keyword, image, region, text), as each list alone ranked them.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryLists {
    /// Its set.
    pub set: QuerySet,
    /// What the split hashes (the query text).
    pub key: String,
    /// Relevant ids.
    pub relevant: BTreeSet<String>,
    /// Keyword, image, region and text rankings.
    pub lists: [Vec<String>; 4],
}

/// What the sweep found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepReport {
    /// Queries it chose on.
    pub train_queries: usize,
    /// Queries it checked on.
    pub held_out_queries: usize,
    /// Settings tried.
    pub settings_tried: usize,
    /// The best setting on the training queries.
    pub best: Fusion,
    /// `--weights` spelling of `best`.
    pub weights: String,
    /// No setting of the grid beat the current weights on the training queries: `best` is
    /// the current weights (nothing to change).
    #[serde(default)]
    pub current_kept: bool,
    /// Objective of `best` on the training queries.
    pub train_best: f64,
    /// Objective of the current weights on the training queries.
    pub train_current: f64,
    /// Objective of `best` on the held-out queries.
    pub held_out_best: f64,
    /// Objective of the current weights on the held-out queries.
    pub held_out_current: f64,
    /// `held_out_best - held_out_current`: what adopting `best` is expected to gain.
    pub held_out_gain: f64,
    /// Mean nDCG@10 per set of the current weights fused offline over every query: equal to
    /// the hybrid's own figure whenever every list fits in [`DEPTH`] (a check of the offline
    /// fusion against the search's).
    pub offline_current: BTreeMap<QuerySet, f64>,
}

/// The fused order of `lists` under weights `w` (keyword, image, region, text) and `k`.
pub fn fuse(lists: &[Vec<String>; 4], w: [f32; 4], k: f32) -> Vec<String> {
    let mut acc: HashMap<&str, f32> = HashMap::new();
    for (list, weight) in lists.iter().zip(w) {
        if weight <= 0.0 {
            continue;
        }
        for (i, id) in list.iter().enumerate() {
            *acc.entry(id.as_str()).or_default() += weight / (k + (i + 1) as f32);
        }
    }
    let mut ranked: Vec<(&str, f32)> = acc.into_iter().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    ranked
        .into_iter()
        .take(DEPTH)
        .map(|(id, _)| id.to_owned())
        .collect()
}

/// Mean nDCG@10 per set, averaged over the sets present: what the sweep maximises.
pub fn objective(queries: &[&QueryLists], w: [f32; 4], k: f32) -> f64 {
    let mut per_set: BTreeMap<QuerySet, (f64, usize)> = BTreeMap::new();
    for q in queries {
        let ranked = fuse(&q.lists, w, k);
        let e = per_set.entry(q.set).or_default();
        e.0 += metrics::ndcg_at(&ranked, &q.relevant, 10);
        e.1 += 1;
    }
    if per_set.is_empty() {
        return 0.0;
    }
    per_set.values().map(|(s, n)| s / *n as f64).sum::<f64>() / per_set.len() as f64
}

fn weights_of(f: &Fusion) -> [f32; 4] {
    [f.keyword, f.image, f.region, f.text]
}

/// The sweep's seeded split of `queries`: (training, held out), by a hash of each query's set
/// and key.
pub fn split(queries: &[QueryLists], seed: u64) -> (Vec<&QueryLists>, Vec<&QueryLists>) {
    queries.iter().partition(|q| {
        let h = Sha256::digest(format!("{seed}:split:{}:{}", q.set.name(), q.key));
        h[0] % 2 == 0
    })
}

/// Chooses weights and k on a seeded half of `queries` and measures them, and `current`, on
/// the other half. `None` when either half is empty.
pub fn sweep(queries: &[QueryLists], current: Fusion, seed: u64) -> Option<SweepReport> {
    let (train, held) = split(queries, seed);
    if train.is_empty() || held.is_empty() {
        return None;
    }
    // The current weights are the incumbent: a setting of the grid replaces them only when
    // strictly better on the training queries, so a tie (every setting saturated, say) never
    // recommends a change the measurement cannot tell from the current weights.
    let cur = weights_of(&current);
    let train_current = objective(&train, cur, current.k);
    let mut best: ([f32; 4], f32, f64) = (cur, current.k, train_current);
    let mut tried = 0;
    for &kw in &WEIGHTS {
        for &im in &WEIGHTS {
            for &re in &WEIGHTS {
                for &tx in &WEIGHTS {
                    let w = [kw, im, re, tx];
                    if w.iter().all(|v| *v == 0.0) {
                        continue;
                    }
                    for &k in &KS {
                        tried += 1;
                        let score = objective(&train, w, k);
                        // Strictly better only: the current weights, then the first setting
                        // (smallest weights, smallest k), win ties.
                        if score > best.2 + 1e-12 {
                            best = (w, k, score);
                        }
                    }
                }
            }
        }
    }
    let (w, k, train_best) = best;
    let kept = w == cur && k == current.k;
    // RRF orders are unchanged when every weight is scaled alike: state the largest as 1.
    let top = w.iter().copied().fold(0.0f32, f32::max);
    let w = if kept || top <= 0.0 {
        w
    } else {
        w.map(|v| v / top)
    };
    let chosen = Fusion {
        keyword: w[0],
        image: w[1],
        region: w[2],
        text: w[3],
        k,
        ..current
    };
    let mut offline: BTreeMap<QuerySet, (f64, usize)> = BTreeMap::new();
    for q in queries {
        let e = offline.entry(q.set).or_default();
        e.0 += metrics::ndcg_at(&fuse(&q.lists, cur, current.k), &q.relevant, 10);
        e.1 += 1;
    }
    let offline_current = offline
        .into_iter()
        .map(|(set, (sum, n))| (set, sum / n as f64))
        .collect();
    let held_out_best = objective(&held, w, k);
    let held_out_current = objective(&held, cur, current.k);
    Some(SweepReport {
        train_queries: train.len(),
        held_out_queries: held.len(),
        settings_tried: tried,
        weights: format!(
            "keyword={},image={},region={},text={},k={}",
            w[0], w[1], w[2], w[3], k
        ),
        best: chosen,
        train_best,
        train_current,
        current_kept: kept,
        held_out_best,
        held_out_current,
        held_out_gain: held_out_best - held_out_current,
        offline_current,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn fusion_matches_weighted_rrf_with_ties_by_id() {
        let lists = [ids(&["a", "b"]), ids(&["b", "c"]), vec![], vec![]];
        // a: 1/(60+1); b: 1/(60+2) + 1/(60+1); c: 1/(60+2)
        assert_eq!(fuse(&lists, [1.0, 1.0, 0.0, 0.0], 60.0), ["b", "a", "c"]);
        assert_eq!(fuse(&lists, [1.0, 0.0, 0.0, 0.0], 60.0), ["a", "b"]);
        // equal scores: by id
        let tie = [ids(&["z"]), ids(&["y"]), vec![], vec![]];
        assert_eq!(fuse(&tie, [1.0, 1.0, 0.0, 0.0], 60.0), ["y", "z"]);
    }

    #[test]
    fn the_sweep_turns_off_a_list_that_only_adds_noise_and_gains_on_held_out_queries() {
        // The keyword list ranks the relevant record first; the image list ranks it last.
        let others: Vec<String> = (0..30).map(|i| format!("o{i:02}")).collect();
        let queries: Vec<QueryLists> = (0..40)
            .map(|i| {
                let target = format!("t{i:02}");
                let mut kw = vec![target.clone()];
                kw.extend(others.iter().cloned());
                let mut im = others.clone();
                im.push(target.clone());
                QueryLists {
                    set: QuerySet::Caption,
                    key: target.clone(),
                    relevant: BTreeSet::from([target]),
                    lists: [kw, im.clone(), im, vec![]],
                }
            })
            .collect();
        let current = Fusion::default();
        let r = sweep(&queries, current, 1).unwrap();
        assert_eq!(r.train_queries + r.held_out_queries, 40);
        assert_eq!(r.best.image, 0.0, "{r:?}");
        assert_eq!(r.best.region, 0.0, "{r:?}");
        assert!(r.best.keyword > 0.0);
        assert!((r.held_out_best - 1.0).abs() < 1e-9);
        assert!(r.held_out_gain > 0.0, "{r:?}");
        assert_eq!(r.settings_tried, (4usize.pow(4) - 1) * KS.len());
        assert!(
            r.weights
                .starts_with("keyword=1,image=0,region=0,text=0,k=20"),
            "{}",
            r.weights
        );
        assert!(!r.current_kept);
        // When no setting does better than the current weights, they are kept, not swapped
        // for the first setting of the grid that ties with them.
        let kw_only = Fusion {
            keyword: 1.0,
            image: 0.0,
            region: 0.0,
            text: 0.0,
            k: 60.0,
            ..current
        };
        let kept = sweep(&queries, kw_only, 1).unwrap();
        assert!(kept.current_kept, "{kept:?}");
        assert_eq!(kept.best, kw_only);
        assert_eq!(kept.held_out_gain, 0.0);
        // No held-out half, no answer.
        assert!(sweep(&queries[..1], current, 1).is_none());
    }
}
