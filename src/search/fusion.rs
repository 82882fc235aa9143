//! Fusion of the ranked lists: the weights ([`Fusion`]) and the search itself.

use indexer::filter::PayloadMatcher;
use indexer::keyword::KeywordHit;
use indexer::points::{VectorName, key};

use super::cursor::{Ranked, page_tiers, paged_sequence};
use super::explain::{matched_boxes, matched_words};
use super::rrf::{Acc, Lists, fuse};
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
    /// (for results up to position 100: 500 when three or four lists run, 200 up to
    /// position 40 and then 500 when one or two do; deeper for later pages, see
    /// `cursor::page_tiers`); 10 to
    /// 10,000 takes every list that deep for every page.
    pub depth: usize,
}

/// The defaults were chosen by `eval --sweep`'s grid on partly annotated structured stand-in
/// libraries (README.md, "Fusion defaults"; `tests/it/eval.rs::fusion_defaults_figures`):
/// keyword 1 and image 0.5 were within 0.01 of the best held-out nDCG@10 on each of 15
/// libraries (mean 0.988 against 0.885 for the former 1/1/0.7/0.5), and the region and text
/// lists, which hold only annotated records, took nothing from any of them. k ties; 60 kept.
impl Default for Fusion {
    fn default() -> Self {
        Self {
            k: 60.0,
            keyword: 1.0,
            image: 0.5,
            region: 0.0,
            text: 0.0,
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
        // `page_tiers`) and `limit` (at most MAX_LIMIT); the cursor's offset is refused unless
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
        };
        let end = offset.saturating_add(limit);
        let (sequence, more) = match fixed {
            // One ranking at a fixed depth: every page is a slice of it.
            Some(depth) => {
                let mut ranked = rank(depth)?.ranked;
                let total = ranked.len().min(depth);
                ranked.truncate(total.min(end));
                (ranked, end < total)
            }
            // A single list's head is settled whenever its order is the same at every depth:
            // worth ranking first. With several lists it seldom is at depth 100 (on the bench
            // library: no hybrid first page of 200, benches/README.md), and would only add a
            // ranking.
            None => {
                let lists = self.lists_run(&text, req, query.as_ref()).count();
                paged_sequence(end, lists == 1, page_tiers(lists), rank)?
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
    /// first records are settled (see [`super::rrf::settled_prefix`]). The time of each stage
    /// is added to `stages`.
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
    ) -> SResult<Ranked<Acc>> {
        let fusion = req.fusion;
        let kw = self.catalog.library.keyword();
        let mut times = stages.get();
        times.deepest = times.deepest.max(depth);

        let running = self.lists_run(text, req, query);
        let keyword_list = || -> SResult<(Vec<KeywordHit>, std::time::Duration)> {
            let started = std::time::Instant::now();
            let hits = if running.keyword {
                kw.search(text, &req.filter, depth)?
            } else {
                Vec::new()
            };
            Ok((hits, started.elapsed()))
        };
        let vector_lists = || self.vector_lists(req, query, &running, matcher, depth, cancel);
        // The keyword list and the vector lists read different indexes: with a core to spare
        // (fewer rankings running than cores and no search waiting to rank, as for one user's
        // search or the CLI), the keyword list runs on a second thread beside the vector
        // lists, so a search takes about the longer of the two instead of their sum. Under
        // load every core already ranks a search, and a second thread would only share them;
        // where no thread can be started, the lists run in turn.
        let (_lane, spare) = self.lanes.enter();
        // The keyword list and at least one vector list (a vector list runs only with a query
        // vector): with one list alone there is nothing to run beside it.
        let both = running.keyword && running.count() > 1;
        let side_by_side = (spare && both).then(|| {
            std::thread::scope(|s| {
                let keyword = std::thread::Builder::new()
                    .spawn_scoped(s, keyword_list)
                    .ok()?;
                let vectors = vector_lists();
                let keyword = keyword
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                Some((keyword, vectors))
            })
        });
        let (keyword, vectors) = match side_by_side.flatten() {
            Some(both) => both,
            None => {
                let keyword = keyword_list()?;
                (Ok(keyword), vector_lists())
            }
        };
        let (keyword_hits, keyword_took) = keyword?;
        let ([image_list, region_list, text_list], vector_cut, vectors_took) = vectors?;
        let keyword_cut = keyword_hits.len() >= depth;
        times.keyword += keyword_took;
        times.vectors += vectors_took;
        let started = std::time::Instant::now();
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
        Ok(Ranked {
            ranked,
            cut: keyword_cut || vector_cut.contains(&true),
            settled,
        })
    }

    /// The vector lists of a ranking (image, region, text; empty where not run), whether each
    /// was cut at its depth, and the time they took.
    fn vector_lists(
        &self,
        req: &SearchRequest,
        query: Option<&Embedding>,
        running: &Running,
        matcher: &PayloadMatcher,
        depth: usize,
        cancel: &Cancel,
    ) -> SResult<([Vec<Hit>; 3], [bool; 3], std::time::Duration)> {
        let started = std::time::Instant::now();
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
        Ok((
            [image_list, region_list, text_list],
            vector_cut,
            started.elapsed(),
        ))
    }
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
}
