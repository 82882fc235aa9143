//! Ranking metrics over one ranked list of record ids and a set of relevant ids (binary
//! relevance), and what a random order scores on average.
//!
//! Recall@k is *capped* (BEIR's `R_cap@k`): relevant records in the top k over
//! `min(k, relevant)`, so a perfect ranking scores 1 whether a label has 3 records or 300; with
//! one relevant record (a known-item query) it is the usual hit rate. nDCG@k uses gain 1 and
//! the `1 / log2(rank + 1)` discount (Järvelin & Kekäläinen 2002). The reciprocal rank is taken
//! within the list given (MRR@depth).

use std::collections::BTreeSet;

/// Capped recall at `k`: relevant ids among the first `k` over `min(k, |relevant|)`; 0 when
/// nothing is relevant.
pub fn recall_at(ranked: &[String], relevant: &BTreeSet<String>, k: usize) -> f64 {
    let denom = k.min(relevant.len());
    if denom == 0 {
        return 0.0;
    }
    let hits = ranked
        .iter()
        .take(k)
        .filter(|id| relevant.contains(*id))
        .count();
    hits as f64 / denom as f64
}

fn discount(rank: usize) -> f64 {
    1.0 / ((rank + 1) as f64).log2()
}

/// nDCG at `k` with binary gains; 0 when nothing is relevant.
pub fn ndcg_at(ranked: &[String], relevant: &BTreeSet<String>, k: usize) -> f64 {
    let ideal: f64 = (1..=k.min(relevant.len())).map(discount).sum();
    if ideal == 0.0 {
        return 0.0;
    }
    let dcg: f64 = ranked
        .iter()
        .take(k)
        .enumerate()
        .filter(|(_, id)| relevant.contains(*id))
        .map(|(i, _)| discount(i + 1))
        // fold from +0.0: an empty `sum` of floats is -0.0, which prints as "-0.000"
        .fold(0.0, |a, b| a + b);
    dcg / ideal
}

/// 1 / rank of the first relevant id in `ranked`, 0 when none is there.
pub fn reciprocal_rank(ranked: &[String], relevant: &BTreeSet<String>) -> f64 {
    ranked
        .iter()
        .position(|id| relevant.contains(id))
        .map_or(0.0, |i| 1.0 / (i + 1) as f64)
}

/// Expected scores of a uniformly random order of `total` records of which `relevant` are
/// relevant: (R@1, R@5, R@10, nDCG@10, RR within `depth`). The chance line a ranking must beat.
pub fn chance(total: usize, relevant: usize, depth: usize) -> [f64; 5] {
    if total == 0 || relevant == 0 {
        return [0.0; 5];
    }
    let (n, r) = (total as f64, relevant.min(total) as f64);
    // Each position holds a relevant record with probability r / n.
    let p = r / n;
    let recall = |k: usize| (k.min(total) as f64 * p) / k.min(relevant) as f64;
    let ideal: f64 = (1..=10.min(relevant)).map(discount).sum();
    let dcg: f64 = (1..=10.min(total)).map(|i| p * discount(i)).sum();
    // P(first relevant at i) = r/(n-i+1) * prod_{j<i} (1 - r/(n-j+1)).
    let mut none_yet = 1.0;
    let mut rr = 0.0;
    for i in 1..=depth.min(total) {
        let left = n - (i - 1) as f64;
        let here = (r / left).min(1.0);
        rr += none_yet * here / i as f64;
        none_yet *= 1.0 - here;
        if none_yet <= 0.0 {
            break;
        }
    }
    [recall(1), recall(5), recall(10), dcg / ideal, rr]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| (*s).to_owned()).collect()
    }

    fn set(s: &[&str]) -> BTreeSet<String> {
        s.iter().map(|s| (*s).to_owned()).collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn capped_recall_counts_hits_over_the_reachable_number() {
        let ranked = ids(&["a", "x", "b", "y", "z", "c"]);
        let rel = set(&["a", "b", "c"]);
        assert!(close(recall_at(&ranked, &rel, 1), 1.0));
        // top 5 hold a and b; min(5, 3) = 3
        assert!(close(recall_at(&ranked, &rel, 5), 2.0 / 3.0));
        assert!(close(recall_at(&ranked, &rel, 10), 1.0));
        assert!(close(recall_at(&ids(&["x", "a"]), &set(&["a"]), 1), 0.0));
        assert!(close(recall_at(&ids(&["x", "a"]), &set(&["a"]), 5), 1.0));
        assert!(close(recall_at(&ranked, &set(&[]), 10), 0.0));
    }

    #[test]
    fn ndcg_matches_a_hand_computed_case() {
        // relevant at ranks 1 and 3 of 2 relevant:
        // DCG = 1/log2(2) + 1/log2(4) = 1 + 0.5; IDCG = 1 + 1/log2(3) = 1.6309297535714575
        let got = ndcg_at(&ids(&["a", "x", "b"]), &set(&["a", "b"]), 10);
        assert!(close(got, 1.5 / 1.630_929_753_571_457_5), "{got}");
        assert!(close(
            ndcg_at(&ids(&["a", "b"]), &set(&["a", "b"]), 10),
            1.0
        ));
        assert!(close(ndcg_at(&ids(&["x", "y"]), &set(&["a"]), 10), 0.0));
        assert!(ndcg_at(&ids(&["x"]), &set(&["a"]), 10).is_sign_positive());
        // beyond k does not count
        let mut long = ids(&["x"; 10]);
        long.push("a".into());
        assert!(close(ndcg_at(&long, &set(&["a"]), 10), 0.0));
        // known item at rank 2: 1/log2(3)
        let got = ndcg_at(&ids(&["x", "a"]), &set(&["a"]), 10);
        assert!(close(got, 1.0 / 3f64.log2()), "{got}");
    }

    #[test]
    fn reciprocal_rank_is_one_over_the_first_hit() {
        assert!(close(
            reciprocal_rank(&ids(&["x", "y", "a", "b"]), &set(&["a", "b"])),
            1.0 / 3.0
        ));
        assert!(close(reciprocal_rank(&ids(&["a"]), &set(&["a"])), 1.0));
        assert!(close(reciprocal_rank(&ids(&["x"]), &set(&["a"])), 0.0));
    }

    #[test]
    fn chance_matches_hand_computed_random_orders() {
        // 1 relevant of 4: R@1 = 1/4, R@5 = R@10 = 1 (all 4 fit), RR = (1+1/2+1/3+1/4)/4.
        let [r1, r5, r10, ndcg, rr] = chance(4, 1, 100);
        assert!(close(r1, 0.25) && close(r5, 1.0) && close(r10, 1.0));
        assert!(close(rr, (1.0 + 0.5 + 1.0 / 3.0 + 0.25) / 4.0), "{rr}");
        let want: f64 = (1..=4).map(discount).sum::<f64>() / 4.0;
        assert!(close(ndcg, want), "{ndcg}");
        // everything relevant: every metric is 1
        let all = chance(20, 20, 100);
        assert!(all.iter().all(|v| close(*v, 1.0)), "{all:?}");
        // 10 relevant of 100: R@10 = 10 * 0.1 / 10
        assert!(close(chance(100, 10, 100)[2], 0.1));
        assert_eq!(chance(0, 0, 10), [0.0; 5]);
    }
}
