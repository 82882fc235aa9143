//! Fusion of the ranked lists: the weights ([`Fusion`]) and the search itself.

use indexer::filter::PayloadMatcher;
use indexer::keyword::KeywordHit;
use indexer::points::{HitRef, VectorName, key};

use super::cursor::paged_sequence;
use super::explain::{matched_boxes, matched_words};
use super::*;

/// Fusion weights per ranked list, and the RRF constant.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Fusion {
    /// RRF k.
    pub k: f32,
    /// BM25 list.
    pub keyword: f32,
    /// Whole-image vectors.
    pub image: f32,
    /// Box-region vectors.
    pub region: f32,
    /// Label/caption text vectors.
    pub text: f32,
    /// Candidates taken from each list: 0 (the default) sizes them to the page asked for
    /// (500 for results up to position 100, deeper for later pages, see `PAGE_TIERS`); 10 to
    /// 10,000 takes every list that deep for every page.
    pub depth: usize,
}

impl Default for Fusion {
    fn default() -> Self {
        Self {
            k: 60.0,
            keyword: 1.0,
            image: 1.0,
            region: 0.7,
            text: 0.5,
            depth: 0,
        }
    }
}

impl Fusion {
    /// Parses `keyword=1,image=0.5,k=60,depth=500` over the defaults.
    ///
    /// # Errors
    /// [`SearchError::Invalid`] naming the bad entry.
    pub fn parse(spec: &str) -> SResult<Self> {
        Fusion::default().overlay(spec)
    }

    /// Parses `keyword=1,image=0.5,k=60,depth=500` over these weights (the `[fusion]`
    /// settings): what the spec names changes, the rest stays.
    ///
    /// # Errors
    /// [`SearchError::Invalid`] naming the bad entry.
    pub fn overlay(self, spec: &str) -> SResult<Self> {
        let mut f = self;
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').ok_or_else(|| {
                SearchError::Invalid(format!("weight {part:?} is not name=value"))
            })?;
            let v: f32 = value
                .trim()
                .parse()
                .ok()
                .filter(|v: &f32| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| {
                    SearchError::Invalid(format!(
                        "weight {key} must be a number >= 0, got {value:?}"
                    ))
                })?;
            match key.trim() {
                "k" => f.k = v.max(1.0),
                "keyword" => f.keyword = v,
                "image" => f.image = v,
                "region" => f.region = v,
                "text" => f.text = v,
                "depth" if v == 0.0 => f.depth = 0,
                "depth" => f.depth = (v as usize).clamp(MIN_DEPTH, MAX_DEPTH),
                other => {
                    return Err(SearchError::Invalid(format!(
                        "unknown weight {other:?} (known: k, keyword, image, region, text, depth)"
                    )));
                }
            }
        }
        Ok(f)
    }

    /// Checks weights that did not come through [`Fusion::parse`] (a `[fusion]` settings
    /// table): every weight finite and >= 0, `k` >= 1, `depth` 0 or 10 to 10,000.
    ///
    /// # Errors
    /// [`SearchError::Invalid`] naming the field.
    pub fn validate(&self) -> SResult<()> {
        for (name, v) in [
            ("keyword", self.keyword),
            ("image", self.image),
            ("region", self.region),
            ("text", self.text),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(SearchError::Invalid(format!(
                    "weight {name} must be a number >= 0, got {v}"
                )));
            }
        }
        if !(self.k.is_finite() && self.k >= 1.0) {
            return Err(SearchError::Invalid(format!(
                "k must be a number >= 1, got {}",
                self.k
            )));
        }
        if self.depth != 0 && !(MIN_DEPTH..=MAX_DEPTH).contains(&self.depth) {
            return Err(SearchError::Invalid(format!(
                "depth must be 0 (sized to the page) or {MIN_DEPTH} to {MAX_DEPTH}, got {}",
                self.depth
            )));
        }
        Ok(())
    }

    /// The `--weights` spelling of these weights (parses back to the same values).
    pub fn spec(&self) -> String {
        format!(
            "keyword={},image={},region={},text={},k={},depth={}",
            self.keyword, self.image, self.region, self.text, self.k, self.depth
        )
    }
}

impl SearchService {
    /// Runs a search with the vector [`SearchService::query_embedding`] made for `req`.
    ///
    /// # Errors
    /// As [`SearchService::search`].
    pub fn search_with(
        &self,
        req: &SearchRequest,
        query: Option<Embedding>,
    ) -> SResult<SearchResponse> {
        self.search_cancellable(req, query, &Cancel::new())
    }

    /// [`SearchService::search_with`] that stops with [`SearchError::Cancelled`] soon after
    /// `cancel` is cancelled.
    ///
    /// # Errors
    /// As [`SearchService::search`], and [`SearchError::Cancelled`].
    pub fn search_cancellable(
        &self,
        req: &SearchRequest,
        query: Option<Embedding>,
        cancel: &Cancel,
    ) -> SResult<SearchResponse> {
        let (text, negatives) = clean_texts(req)?;
        let limit = page_size(req.limit)?;
        // Every size below comes from the depth (a fixed one clamped, or a tier of
        // `PAGE_TIERS`) and `limit` (at most MAX_LIMIT); the cursor's offset is refused unless
        // it lies within the deepest list the request can take.
        let fixed = (req.fusion.depth != 0).then(|| req.fusion.depth.clamp(MIN_DEPTH, MAX_DEPTH));
        let key = request_key(req);
        let offset = self.catalog.cursors.decode(
            req.cursor.as_deref(),
            &key,
            Some(fixed.unwrap_or(MAX_DEPTH)),
        )?;
        if text.trim().is_empty() && req.like.is_none() {
            return Err(SearchError::Invalid(
                "nothing to search for: give a query text or --like (use `lookup` to list records)"
                    .into(),
            ));
        }
        // Compiled once per request (a glob is a regular expression), before any work: a bad
        // pattern is the caller's error whichever lists run.
        let matcher = req.filter.compile()?;
        let kw = self.catalog.library.keyword();
        cancel.check()?;
        let negative_terms: Vec<(String, Vec<String>)> =
            negatives.iter().map(|n| (n.clone(), kw.terms(n))).collect();
        // Vectors took part only when there was a query vector (an untrained model makes none
        // from words).
        let semantic = self.semantic() && query.is_some();
        let stages = std::cell::Cell::new(StageTimes::default());
        let rank = |depth: usize| {
            self.ranked(&text, req, query.as_ref(), &matcher, depth, cancel, &stages)
                .map(|r| (r.ranked, r.cut, r.settled))
        };
        let end = offset.saturating_add(limit);
        let (sequence, more) = match fixed {
            // One ranking at a fixed depth: every page is a slice of it.
            Some(depth) => {
                let (mut ranked, _, _) = rank(depth)?;
                let total = ranked.len().min(depth);
                ranked.truncate(total.min(end));
                (ranked, end < total)
            }
            // A single list's head is settled whenever its order is the same at every depth:
            // worth ranking first. With several lists it seldom is at depth 100 (on the bench
            // library: no hybrid first page of 200, benches/README.md), and would only add a
            // ranking.
            None => {
                let head = self.lists_run(&text, req, query.as_ref()).count() == 1;
                paged_sequence(end, head, rank)?
            }
        };
        let page: Vec<(String, Acc)> = sequence.into_iter().skip(offset).take(limit).collect();
        let next = offset.saturating_add(page.len());
        let next_cursor =
            (more && !page.is_empty()).then(|| self.catalog.cursors.encode(next, &key));

        let records_started = std::time::Instant::now();
        let query_terms = kw.terms(&text);
        let mut results = Vec::with_capacity(page.len());
        for (id, mut a) in page {
            cancel.check()?;
            let Some(record) = kw.get(&id)? else { continue };
            a.why.fused = a.fused;
            let (labels_m, captions_m) = matched_words(kw, &record, &query_terms);
            a.why.matched_labels = labels_m;
            a.why.matched_caption_words = captions_m;
            a.why.matched_negatives = negative_terms
                .iter()
                .filter(|(_, terms)| {
                    let (l, c) = matched_words(kw, &record, terms);
                    !l.is_empty() || !c.is_empty()
                })
                .map(|(n, _)| n.clone())
                .collect();
            let boxes = matched_boxes(kw, &record, &query_terms, &a.regions);
            results.push(SearchHit {
                id: record.id,
                filename: record.filename,
                path: record.path,
                dataset: record.dataset,
                score: a.fused,
                labels: record.labels,
                dates: record.dates,
                boxes,
                why: a.why,
                width: record.width,
                height: record.height,
                captions: record.captions,
                all_boxes: record.boxes,
            });
        }
        let mut times = stages.get();
        times.records = records_started.elapsed();
        Ok(SearchResponse {
            results,
            next_cursor,
            semantic,
            notice: self.semantic_notice(),
            stages: times,
        })
    }

    /// Which ranked lists a search runs. A list with weight 0 cannot change the order, so its
    /// work is skipped. "More like this" alone compares whole images; box regions and caption
    /// texts answer words, so they join only when the query vector holds the query text. An
    /// untrained model's vector never holds words when an image is liked (see
    /// `query_embedding`); without one it is `eval`'s measured vector, which does.
    fn lists_run(&self, text: &str, req: &SearchRequest, query: Option<&Embedding>) -> Running {
        let fusion = req.fusion;
        let has_text = !text.trim().is_empty();
        let words = has_text && (self.untrained().is_none() || req.like.is_none());
        let vectors = query.is_some();
        Running {
            keyword: fusion.keyword > 0.0 && has_text,
            image: vectors && fusion.image > 0.0,
            region: vectors && fusion.region > 0.0 && words,
            text: vectors && fusion.text > 0.0 && words,
        }
    }

    /// The fused ranking with every list taken to `depth`, best first, whether any list was
    /// cut at its depth (so a deeper ranking could hold more records), and how many of its
    /// first records are settled (see [`settled_prefix`]). The time of each stage is added to
    /// `stages`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn ranked(
        &self,
        text: &str,
        req: &SearchRequest,
        query: Option<&Embedding>,
        matcher: &PayloadMatcher,
        depth: usize,
        cancel: &Cancel,
        stages: &std::cell::Cell<StageTimes>,
    ) -> SResult<Ranking> {
        let fusion = req.fusion;
        let kw = self.catalog.library.keyword();
        let mut cut = false;
        let mut times = stages.get();
        times.deepest = times.deepest.max(depth);
        let mut started = std::time::Instant::now();

        let running = self.lists_run(text, req, query);

        // Keyword side.
        let keyword_hits = if running.keyword {
            kw.search(text, &req.filter, depth)?
        } else {
            Vec::new()
        };
        let keyword_cut = keyword_hits.len() >= depth;
        cut |= keyword_cut;
        times.keyword += started.elapsed();
        started = std::time::Instant::now();

        // Vector side.
        let mut image_list: Vec<Hit> = Vec::new();
        let mut region_list: Vec<Hit> = Vec::new();
        let mut text_list: Vec<Hit> = Vec::new();
        // Per vector list (image, region, text): whether it was cut at its depth.
        let mut vector_cut = [false; 3];
        if let Some(query) = query {
            let lists: Vec<(VectorName, &mut Vec<Hit>, &mut bool)> = [
                (VectorName::Image, running.image, &mut image_list),
                (VectorName::Region, running.region, &mut region_list),
                (VectorName::Text, running.text, &mut text_list),
            ]
            .into_iter()
            .zip(vector_cut.iter_mut())
            .filter(|((_, on, _), _)| *on)
            .map(|((using, _, list), cut)| (using, list, cut))
            .collect();
            let pushed = req.filter.to_vector_filter();
            let over = if req.filter.fully_pushable() { 1 } else { 4 };
            let wanted = depth.saturating_mul(over);
            // What is read of each hit: its record and box, and what the matcher checks.
            let mut keys: Vec<String> = vec![key::RECORD_ID.into(), key::BOX.into()];
            keys.extend(matcher.keys().into_iter().map(str::to_owned));
            let queries: Vec<VectorQuery> = lists
                .iter()
                .map(|(using, _, _)| VectorQuery {
                    using: using.as_str().into(),
                    vector: query.as_slice().to_vec(),
                    filter: pushed.clone(),
                    limit: wanted,
                    exact: false,
                    payload_keys: Some(keys.clone()),
                })
                .collect();
            cancel.check()?;
            // One call for every list: a server store answers them in one request.
            let answers = self.catalog.library.store().search_many(&queries)?;
            for ((_, list, list_cut), hits) in lists.into_iter().zip(answers) {
                *list_cut = hits.len() >= wanted;
                cut |= *list_cut;
                for (i, h) in hits.into_iter().enumerate() {
                    if i % CANCEL_EVERY == 0 {
                        cancel.check()?;
                    }
                    if matcher.matches(&h.payload) {
                        list.push(h);
                    }
                }
            }
        }

        times.vectors += started.elapsed();
        started = std::time::Instant::now();
        cancel.check()?;
        let liked = match &req.like {
            Some(Like::Record(id)) => Some(id.as_str()),
            _ => None,
        };
        let lists = Lists {
            keyword: (&keyword_hits, keyword_cut),
            image: (&image_list, vector_cut[0]),
            region: (&region_list, vector_cut[1]),
            text: (&text_list, vector_cut[2]),
        };
        let (ranked, settled) = fuse(&fusion, &lists, liked);
        times.fuse += started.elapsed();
        stages.set(times);
        Ok(Ranking {
            ranked,
            cut,
            settled,
        })
    }
}

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

/// The ranked lists a search runs.
#[derive(Debug, Clone, Copy)]
struct Running {
    keyword: bool,
    image: bool,
    region: bool,
    text: bool,
}

impl Running {
    fn count(self) -> usize {
        [self.keyword, self.image, self.region, self.text]
            .into_iter()
            .filter(|&on| on)
            .count()
    }
}

/// A fused ranking at one depth.
pub(super) struct Ranking {
    /// Records, best first.
    pub ranked: Vec<(String, Acc)>,
    /// Whether any list was cut at its depth (a deeper ranking could hold more records).
    pub cut: bool,
    /// How many of the first records are settled (see [`settled_prefix`]).
    pub settled: usize,
}

/// The longest settled prefix looked for: the first tier of a page-sized depth ends there.
const SETTLE_AT_MOST: usize = super::cursor::PAGE_TIERS[1].0;

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
    fused: f32,
    why: Why,
    regions: Vec<(usize, f32)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fusion_weights_parse_and_reject_nonsense() {
        let f = Fusion::parse("keyword=2, image=0.5,k=10").unwrap();
        assert_eq!((f.keyword, f.image, f.k), (2.0, 0.5, 10.0));
        assert!(Fusion::parse("keyword=-1").is_err());
        assert!(Fusion::parse("colour=1").is_err());
        assert!(Fusion::parse("keyword").is_err());
        assert_eq!(Fusion::default().depth, 0, "sized to the page by default");
        assert_eq!(Fusion::parse("depth=0").unwrap().depth, 0);
        assert_eq!(Fusion::parse("depth=3").unwrap().depth, MIN_DEPTH);
        assert_eq!(Fusion::parse("depth=1e30").unwrap().depth, MAX_DEPTH);
    }

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
