//! Weighted reciprocal rank fusion of the ranked lists, and the threshold test that says how
//! much of a fused ranking deeper lists could still change.

use std::collections::HashMap;

use indexer::keyword::KeywordHit;
use indexer::points::HitRef;
use indexer::store::Hit;

use super::explain::{SideRank, Why};
use super::fusion::Fusion;

/// The ranked lists of one ranking, each with whether it was cut at its depth.
pub(super) struct Lists<'a> {
    pub keyword: (&'a [KeywordHit], bool),
    pub image: (&'a [Hit], bool),
    pub region: (&'a [Hit], bool),
    pub text: (&'a [Hit], bool),
}

/// Reciprocal rank fusion of `lists`, best first (ties by id), without the `liked` record,
/// and how many of the first records are settled.
pub(super) fn fuse(
    fusion: &Fusion,
    lists: &Lists<'_>,
    liked: Option<&str>,
) -> (Vec<(String, Acc)>, usize) {
    let mut acc: HashMap<String, Acc> = HashMap::new();
    let k = fusion.k;
    let (keyword_hits, keyword_cut) = lists.keyword;
    for (i, h) in keyword_hits.iter().enumerate() {
        let a = acc.entry(h.id.clone()).or_default();
        a.fused += fusion.keyword / (k + (i + 1) as f32);
        a.why.keyword = Some(SideRank {
            rank: i + 1,
            score: h.score,
        });
    }
    // Each list's records, counted once each: the count is the best rank a record the list did
    // not return could have had.
    let mut add_vector_list =
        |list: &[Hit], weight: f32, side: fn(&mut Why) -> &mut Option<SideRank>| -> usize {
            let mut rank = 0;
            for h in list {
                let Some(hit) = HitRef::from_payload(&h.payload) else {
                    continue;
                };
                let a = acc.entry(hit.record_id.to_owned()).or_default();
                if let Some(b) = hit.region {
                    a.regions.push((b, h.score));
                }
                let slot = side(&mut a.why);
                if slot.is_some() {
                    continue; // a record counts once per list, at its best rank
                }
                rank += 1;
                a.fused += weight / (k + rank as f32);
                *slot = Some(SideRank {
                    rank,
                    score: h.score,
                });
            }
            rank
        };
    let seen = [
        add_vector_list(lists.image.0, fusion.image, |w| &mut w.image),
        add_vector_list(lists.region.0, fusion.region, |w| &mut w.region),
        add_vector_list(lists.text.0, fusion.text, |w| &mut w.text),
    ];
    // The most a record can gain from each list below the part of it taken: a cut list ranks a
    // record it did not return after every record it did.
    let unseen = |weight: f32, cut: bool, seen: usize| {
        if cut {
            weight / (k + (seen + 1) as f32)
        } else {
            0.0
        }
    };
    let gains = Gains {
        keyword: unseen(fusion.keyword, keyword_cut, keyword_hits.len()),
        image: unseen(fusion.image, lists.image.1, seen[0]),
        region: unseen(fusion.region, lists.region.1, seen[1]),
        text: unseen(fusion.text, lists.text.1, seen[2]),
    };
    // The liked record is the query, not an answer (as Elasticsearch's more_like_this and
    // Qdrant's recommend do).
    if let Some(id) = liked {
        acc.remove(id);
    }
    let mut ranked: Vec<(String, Acc)> = acc.into_iter().collect();
    ranked.sort_by(|a, b| b.1.fused.total_cmp(&a.1.fused).then_with(|| a.0.cmp(&b.0)));
    let settled = settled_prefix(&ranked, &gains, SETTLE_AT_MOST);
    (ranked, settled)
}

/// The longest settled prefix looked for (the most a page-sized request's head fills).
const SETTLE_AT_MOST: usize = super::cursor::HEAD_SETTLES_AT_MOST;

/// Per list, the most a record the list did not return can gain from it (0 for a list that
/// was not cut or did not run).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Gains {
    pub keyword: f32,
    pub image: f32,
    pub region: f32,
    pub text: f32,
}

impl Gains {
    /// The most `why`'s record can gain from the lists that did not return it.
    fn of(&self, why: &Why) -> f32 {
        let mut gain = 0.0;
        for (seen, g) in [
            (why.keyword.is_some(), self.keyword),
            (why.image.is_some(), self.image),
            (why.region.is_some(), self.region),
            (why.text.is_some(), self.text),
        ] {
            if !seen {
                gain += g;
            }
        }
        gain
    }
}

/// How many of the first records of `ranked` (best first, at most `limit`) are settled: the
/// longest prefix whose every record's fused score is above the most any record after it, or
/// any record no list returned, could reach with every list taken deeper (the threshold test of
/// Fagin, Lotem and Naor's "no random access" algorithm). Deeper lists can reorder a settled
/// prefix's records among themselves but not change which they are, so the first page can come
/// from shallow lists when they settle it (exactly so for exact scans; with graphs, as nearly as
/// the graph search finds each list's top).
pub(super) fn settled_prefix(ranked: &[(String, Acc)], gains: &Gains, limit: usize) -> usize {
    let unseen = gains.keyword + gains.image + gains.region + gains.text;
    // best_after[i]: the most any record from position i on (or none returned) could reach.
    let mut best_after = vec![unseen; ranked.len() + 1];
    for i in (0..ranked.len()).rev() {
        let a = &ranked[i].1;
        best_after[i] = best_after[i + 1].max(a.fused + gains.of(&a.why));
    }
    (1..=ranked.len().min(limit))
        .rev()
        .find(|&m| ranked[m - 1].1.fused > best_after[m])
        .unwrap_or(0)
}

/// A record's fused score so far and why.
#[derive(Debug, Default)]
pub(super) struct Acc {
    pub fused: f32,
    pub why: Why,
    pub regions: Vec<(usize, f32)>,
}

#[cfg(test)]
mod tests {
    use indexer::points::key;

    use super::*;

    /// Four ranked lists over `n` records with the structure real lists share: each record
    /// has a relevance every list sees through its own noise (`noise` 0: the lists agree; large:
    /// they are unrelated), the keyword list leaves out a share of the records (no word
    /// matched) and the region list holds one to three boxes per record.
    struct Full {
        keyword: Vec<KeywordHit>,
        image: Vec<Hit>,
        region: Vec<Hit>,
        text: Vec<Hit>,
    }

    fn full_lists(n: usize, noise: f32, seed: u64) -> Full {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let relevance: Vec<f32> = (0..n).map(|_| rng.random::<f32>()).collect();
        let id = |r: usize| format!("{r:016x}");
        let hit = |r: usize, region: Option<usize>, score: f32| {
            let mut payload = serde_json::Map::new();
            payload.insert(key::RECORD_ID.into(), id(r).into());
            if let Some(b) = region {
                payload.insert(key::BOX.into(), b.into());
            }
            Hit {
                id: (r * 4 + region.map_or(0, |b| b + 1)) as u64,
                score,
                payload: indexer::store::Payload(payload),
            }
        };
        let mut noisy = |r: usize| relevance[r] + noise * rng.random::<f32>();
        let sorted = |mut v: Vec<Hit>| {
            v.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
            v
        };
        let image: Vec<Hit> = (0..n).map(|r| hit(r, None, noisy(r))).collect();
        let text: Vec<Hit> = (0..n).map(|r| hit(r, None, noisy(r))).collect();
        let mut region = Vec::new();
        for r in 0..n {
            for b in 0..1 + r % 3 {
                region.push(hit(r, Some(b), noisy(r)));
            }
        }
        let mut keyword: Vec<KeywordHit> = (0..n)
            .filter(|r| r % 4 != 0)
            .map(|r| KeywordHit {
                id: id(r),
                score: noisy(r),
            })
            .collect();
        keyword.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
        Full {
            keyword,
            image: sorted(image),
            region: sorted(region),
            text: sorted(text),
        }
    }

    /// The fused ranking with every list taken to `depth` (`None`: whole).
    fn fused_at(full: &Full, depth: Option<usize>) -> (Vec<(String, Acc)>, usize) {
        let take = |len: usize| depth.map_or(len, |d| d.min(len));
        let cut = |len: usize| depth.is_some_and(|d| len > d);
        let lists = Lists {
            keyword: (
                &full.keyword[..take(full.keyword.len())],
                cut(full.keyword.len()),
            ),
            image: (&full.image[..take(full.image.len())], cut(full.image.len())),
            region: (
                &full.region[..take(full.region.len())],
                cut(full.region.len()),
            ),
            text: (&full.text[..take(full.text.len())], cut(full.text.len())),
        };
        fuse(&Fusion::default(), &lists, None)
    }

    fn ids(ranked: &[(String, Acc)], m: usize) -> std::collections::BTreeSet<&str> {
        ranked[..m.min(ranked.len())]
            .iter()
            .map(|(id, _)| id.as_str())
            .collect()
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(48))]

        /// A settled prefix holds the same records as the same prefix of every deeper ranking
        /// (the lists taken 3x deeper, and whole).
        #[test]
        fn a_settled_prefix_is_what_deeper_lists_rank_first(
            n in 30usize..1_500,
            depth in 10usize..300,
            noise in proptest::sample::select(vec![0.0f32, 0.05, 0.2, 1.0, 10.0]),
            seed in 0u64..1_000,
        ) {
            let full = full_lists(n, noise, seed);
            let (shallow, settled) = fused_at(&full, Some(depth));
            proptest::prop_assert!(settled <= SETTLE_AT_MOST && settled <= shallow.len());
            for deeper in [Some(depth * 3), None] {
                let (deep, _) = fused_at(&full, deeper);
                proptest::prop_assert_eq!(
                    ids(&shallow, settled),
                    ids(&deep, settled),
                    "{} settled at depth {}, deeper {:?}",
                    settled,
                    depth,
                    deeper
                );
            }
        }
    }

    #[test]
    fn agreeing_lists_settle_a_first_page_and_unrelated_ones_do_not() {
        // Lists that rank alike settle the first page at depth 500 of 5,000 records...
        let (_, settled) = fused_at(&full_lists(5_000, 0.02, 1), Some(500));
        assert!(settled >= 20, "{settled}");
        // ...unrelated lists cannot: any record could still rise to the top.
        let (_, settled) = fused_at(&full_lists(5_000, 100.0, 1), Some(100));
        assert!(settled < 20, "{settled}");
        // Lists that were not cut hold everything: all of it is settled (up to the limit).
        let (ranked, settled) = fused_at(&full_lists(60, 100.0, 2), Some(500));
        assert_eq!(settled, ranked.len());
    }
}
