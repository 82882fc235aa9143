//! BM25: query text into terms (stop words apart) and the ranked search over the text field.

use std::collections::BinaryHeap;

use tantivy::query::{
    Bm25Weight, BooleanQuery, ConstScoreQuery, EnableScoring, Occur, Query, TermQuery, Weight,
};
use tantivy::schema::IndexRecordOption;
use tantivy::tokenizer::TokenStream;
use tantivy::{DocAddress, DocSet, Score, Searcher, TERMINATED, Term};

use super::{KResult, KeywordHit, KeywordIndex};
use crate::filter::RecordFilter;

/// How a BM25 search walks the postings of its terms to its top hits. Each gives the same
/// list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bm25Walk {
    /// Pruned when the filter (or the whole index, without one) keeps many records for each
    /// place of the list, every match scored otherwise (see [`KeywordIndex::search_terms`]).
    Auto,
    /// Every record holding one of the terms (and inside the filter) scored.
    EveryMatch,
    /// Block-max WAND: records whose best possible score cannot reach the top skipped.
    Pruned,
}

impl KeywordIndex {
    /// Splits text into the terms that choose what BM25 finds: lowercased and stemmed as the
    /// index holds them, without English stop words (`a`, `the`, `with`, `at`, ...: Lucene's
    /// list), whose postings hold nearly every record and say nothing about which matches. A
    /// text of stop words only keeps them (`"to be or not to be"` still searches for
    /// something). These are the words a hit's explanation names as matched.
    pub fn terms(&self, text: &str) -> Vec<String> {
        let kept = tokens(&mut query_analyzer(), text);
        if kept.is_empty() {
            self.all_terms(text)
        } else {
            kept
        }
    }

    /// Every term of `text` as the index holds it (lowercased, stemmed), stop words included.
    pub fn all_terms(&self, text: &str) -> Vec<String> {
        let mut analyzer = self
            .index
            .tokenizers()
            .get("en_stem")
            .expect("en_stem is a built-in tokenizer");
        tokens(&mut analyzer, text)
    }

    /// BM25 search of `text` over labels, captions, file names and metadata (one field, the
    /// labels weighed twice: see `schema::TEXT_WEIGHTS`), within `filter`, best first. A
    /// record must hold one of the text's [`KeywordIndex::terms`]; its stop words only add to
    /// the score of what those find, so "a dog on the beach" ranks what "dog beach" finds as
    /// the whole sentence would, without the records that share nothing but "a", "on" and
    /// "the" with it.
    ///
    /// # Errors
    /// As [`KeywordIndex::filter_query`].
    pub fn search(
        &self,
        text: &str,
        filter: &RecordFilter,
        limit: usize,
    ) -> KResult<Vec<KeywordHit>> {
        self.search_by(text, filter, limit, Bm25Walk::Auto)
    }

    /// [`KeywordIndex::search`] walking the postings as `walk` says (see
    /// [`KeywordIndex::search_terms_by`]).
    ///
    /// # Errors
    /// As [`KeywordIndex::filter_query`].
    pub fn search_by(
        &self,
        text: &str,
        filter: &RecordFilter,
        limit: usize,
        walk: Bm25Walk,
    ) -> KResult<Vec<KeywordHit>> {
        let terms = self.terms(text);
        let stop: Vec<String> = self
            .all_terms(text)
            .into_iter()
            .filter(|t| !terms.contains(t))
            .collect();
        self.search_terms_by(&terms, &stop, filter, limit, walk)
    }

    /// BM25 search of records holding one of `terms`, ranked by those and by `scored`
    /// (terms that add to a found record's score but find nothing by themselves); see
    /// [`KeywordIndex::search`]. It prunes (block-max WAND, see [`Bm25Walk::Pruned`]) when
    /// the records inside the filter (all of them without one) are at least
    /// [`PRUNE_FROM_RECORDS_PER_PLACE`] times `limit`, estimated from a sample
    /// ([`KeywordIndex::estimate_inside`]; [`KeywordIndex::auto_walk`] says which walk), and
    /// scores every match inside the filter otherwise: a pruned walk tests each record it is
    /// offered against the filter and raises its threshold only with the records inside, so
    /// it fills its top slowly when few records are inside for each place of it. Both walks
    /// give the same list.
    ///
    /// # Errors
    /// As [`KeywordIndex::filter_query`].
    pub fn search_terms(
        &self,
        terms: &[String],
        scored: &[String],
        filter: &RecordFilter,
        limit: usize,
    ) -> KResult<Vec<KeywordHit>> {
        self.search_terms_by(terms, scored, filter, limit, Bm25Walk::Auto)
    }

    /// [`KeywordIndex::search_terms`] walking the postings as `walk` says: the same list
    /// whichever walk (scores to the last bit, ties in the same order); the keyword bench
    /// times each.
    ///
    /// # Errors
    /// As [`KeywordIndex::filter_query`].
    pub fn search_terms_by(
        &self,
        terms: &[String],
        scored: &[String],
        filter: &RecordFilter,
        limit: usize,
        walk: Bm25Walk,
    ) -> KResult<Vec<KeywordHit>> {
        // tantivy's top-k collector allocates for `limit` hits up front: never ask for more
        // than there are documents.
        let limit = limit.min(usize::try_from(self.len()).unwrap_or(usize::MAX));
        if terms.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let searcher = self.reader.searcher();
        let prune = match walk {
            Bm25Walk::Auto => self.walk_for(&searcher, filter, limit)? == Bm25Walk::Pruned,
            Bm25Walk::EveryMatch => false,
            Bm25Walk::Pruned => true,
        };
        let top = if prune {
            self.top_pruned(&searcher, terms, scored, filter, limit)?
        } else {
            self.top_scoring_every_match(&searcher, terms, scored, filter, limit)?
        };
        let addrs: Vec<DocAddress> = top.iter().map(|&(_, addr)| addr).collect();
        // tantivy's order: score, then document address. Ties keep that order (not the
        // records' ids), and every score is summed in one order whatever the depth: the top
        // `limit` is the first `limit` of any deeper list, which the search's settled head
        // relies on.
        let hits: Vec<KeywordHit> = self
            .ids
            .ids_of(&searcher, &addrs)?
            .into_iter()
            .zip(top)
            .map(|(id, (score, _))| KeywordHit { id, score })
            .collect();
        Ok(hits)
    }

    /// The walk [`Bm25Walk::Auto`] takes for a list of `limit` within `filter`:
    /// [`Bm25Walk::Pruned`] or [`Bm25Walk::EveryMatch`] (see [`KeywordIndex::search_terms`]).
    ///
    /// # Errors
    /// As [`KeywordIndex::filter_query`].
    pub fn auto_walk(&self, filter: &RecordFilter, limit: usize) -> KResult<Bm25Walk> {
        self.walk_for(&self.reader.searcher(), filter, limit)
    }

    /// About how many live records `filter` keeps, as [`Bm25Walk::Auto`] estimates them:
    /// exactly the live records without a filter; within one, the share of about
    /// [`FILTER_SAMPLE`] records (one drawn from each run of the same length, at a place that
    /// varies from run to run; every record when the index holds fewer) found inside it,
    /// times the live records. A sample of 2,048 puts a share of 20 % within about a percentage
    /// point (one standard error), and costs as many forward seeks of the filter's postings and
    /// columns. [`KeywordIndex::count`] counts them exactly.
    ///
    /// # Errors
    /// As [`KeywordIndex::filter_query`].
    pub fn estimate_inside(&self, filter: &RecordFilter) -> KResult<f64> {
        self.estimate_inside_of(&self.reader.searcher(), filter, FILTER_SAMPLE)
    }

    /// [`KeywordIndex::auto_walk`] with the search's searcher.
    fn walk_for(
        &self,
        searcher: &Searcher,
        filter: &RecordFilter,
        limit: usize,
    ) -> KResult<Bm25Walk> {
        let wanted = PRUNE_FROM_RECORDS_PER_PLACE * limit as f64;
        if (searcher.num_docs() as f64) < wanted {
            // Too few records even if the filter kept them all: no sample needed.
            return Ok(Bm25Walk::EveryMatch);
        }
        let inside = self.estimate_inside_of(searcher, filter, FILTER_SAMPLE)?;
        Ok(if inside >= wanted {
            Bm25Walk::Pruned
        } else {
            Bm25Walk::EveryMatch
        })
    }

    /// [`KeywordIndex::estimate_inside`] from a sample of about `sample` records.
    fn estimate_inside_of(
        &self,
        searcher: &Searcher,
        filter: &RecordFilter,
        sample: u64,
    ) -> KResult<f64> {
        let live = searcher.num_docs() as f64;
        if filter.is_empty() {
            return Ok(live);
        }
        let weight = self
            .filter_query(filter)?
            .weight(EnableScoring::disabled_from_searcher(searcher))?;
        let total: u64 = searcher
            .segment_readers()
            .iter()
            .map(|r| u64::from(r.max_doc()))
            .sum();
        let stride = u32::try_from(total / sample.max(1))
            .unwrap_or(u32::MAX)
            .max(1);
        let (mut sampled, mut inside) = (0u64, 0u64);
        for reader in searcher.segment_readers() {
            let mut set = weight.scorer(reader, 1.0)?;
            // One record drawn from each run of `stride`, at a place that varies from run to
            // run (the same every time: a search decides the same way twice), never at one
            // fixed offset: records ingested in a repeating pattern (datasets in turn, say)
            // would otherwise put every sample on the same step of it.
            for (run, start) in (0..reader.max_doc()).step_by(stride as usize).enumerate() {
                let doc = start + jitter(run as u64) % stride;
                if doc >= reader.max_doc() {
                    break;
                }
                sampled += 1;
                if at(set.as_mut(), doc) {
                    inside += 1;
                }
            }
        }
        if sampled == 0 {
            return Ok(0.0);
        }
        Ok(inside as f64 / sampled as f64 * live)
    }

    /// The union of `terms` in the text field.
    fn union_of(&self, terms: &[String]) -> Box<dyn Query> {
        let should: Vec<(Occur, Box<dyn Query>)> = self
            .text_terms(terms)
            .into_iter()
            .map(|term| (Occur::Should, term_query(term)))
            .collect();
        Box::new(BooleanQuery::new(should))
    }

    /// The text field's term for each of `terms` (see `schema::TEXT_WEIGHTS`: one field, so
    /// one postings cursor a term).
    fn text_terms(&self, terms: &[String]) -> Vec<Term> {
        terms
            .iter()
            .map(|t| Term::from_field_text(self.fields.text, t))
            .collect()
    }

    /// The top `limit` of `terms` (ranked with `scored`) within `filter`, by one tantivy query
    /// that scores every record it matches. The union of `terms` is always a required clause
    /// (never the bare union, which tantivy would rank with block-max WAND): its score is then
    /// the sum of its clauses' scores in clause order, plus (when any is present) the sum of
    /// the stop words' in theirs, the same sums [`KeywordIndex::top_pruned`] makes, so both
    /// give the same scores to the last bit.
    fn top_scoring_every_match(
        &self,
        searcher: &Searcher,
        terms: &[String],
        scored: &[String],
        filter: &RecordFilter,
        limit: usize,
    ) -> KResult<Vec<(Score, DocAddress)>> {
        let mut clauses = vec![(Occur::Must, self.union_of(terms))];
        if !scored.is_empty() {
            clauses.push((Occur::Should, self.union_of(scored)));
        }
        if !filter.is_empty() {
            clauses.push((
                Occur::Must,
                Box::new(ConstScoreQuery::new(self.filter_query(filter)?, 0.0)),
            ));
        }
        let query = BooleanQuery::new(clauses);
        let weight = query.weight(EnableScoring::enabled_from_searcher(searcher))?;
        // Not tantivy's `TopDocs`, whose cut among records tied at the last place depends on
        // when its buffer was last truncated: the same order as the pruned walk's.
        let mut top = TopK::new(limit);
        for (ord, reader) in searcher.segment_readers().iter().enumerate() {
            let ord = u32::try_from(ord).expect("fewer than 2^32 segments");
            let alive = reader.alive_bitset();
            weight.for_each_pruning(top.threshold(), reader, &mut |doc, score| {
                if alive.is_none_or(|a| a.is_alive(doc)) {
                    top.push(score, DocAddress::new(ord, doc));
                }
                top.threshold()
            })?;
        }
        Ok(top.into_sorted())
    }

    /// The same top `limit` as [`KeywordIndex::top_scoring_every_match`], found by block-max
    /// WAND over the union of `terms`: tantivy skips the records (and whole posting blocks)
    /// whose best possible score cannot reach the current `limit`-th. A record it offers is
    /// kept when it is alive and inside `filter`, and scored again as the other path scores
    /// it (WAND sums its terms in whatever order its cursors stand, which changes the last
    /// bits, and so the order of near-ties, from one depth to another): the sum of the terms'
    /// scores in clause order, plus the sum of the stop words' (`scored`). Since those can add
    /// at most the sum of their terms' best scores in the segment, WAND is told a threshold
    /// lowered by that sum (and a little more for rounding), so no record that could reach
    /// the top is skipped: the answer is exact, in tantivy's order (score, then address).
    fn top_pruned(
        &self,
        searcher: &Searcher,
        terms: &[String],
        scored: &[String],
        filter: &RecordFilter,
        limit: usize,
    ) -> KResult<Vec<(Score, DocAddress)>> {
        let scoring = EnableScoring::enabled_from_searcher(searcher);
        let found = self.union_of(terms).weight(scoring)?;
        let clauses = self
            .text_terms(terms)
            .into_iter()
            .map(|term| term_query(term).weight(scoring))
            .collect::<tantivy::Result<Vec<_>>>()?;
        // Each stop word's weight, with the most it can add to a record's score (BM25's
        // term-frequency factor stays under 1).
        let mut stop: Vec<(Box<dyn Weight>, Score)> = Vec::new();
        for term in self.text_terms(scored) {
            let most = Bm25Weight::for_terms(searcher, std::slice::from_ref(&term))?.max_score();
            stop.push((term_query(term).weight(scoring)?, most));
        }
        let inside = if filter.is_empty() {
            None
        } else {
            Some(
                self.filter_query(filter)?
                    .weight(EnableScoring::disabled_from_searcher(searcher))?,
            )
        };
        let mut top = TopK::new(limit);
        for (ord, reader) in searcher.segment_readers().iter().enumerate() {
            let ord = u32::try_from(ord).expect("fewer than 2^32 segments");
            let mut found_scorers = Vec::with_capacity(clauses.len());
            for w in &clauses {
                let scorer = w.scorer(reader, 1.0)?;
                if scorer.doc() != TERMINATED {
                    found_scorers.push(scorer);
                }
            }
            let mut stop_scorers = Vec::with_capacity(stop.len());
            let mut stop_bound: Score = 0.0;
            for (w, most) in &stop {
                let scorer = w.scorer(reader, 1.0)?;
                if scorer.doc() != TERMINATED {
                    stop_bound += most;
                    stop_scorers.push(scorer);
                }
            }
            let mut inside = match &inside {
                Some(w) => Some(w.scorer(reader, 1.0)?),
                None => None,
            };
            let alive = reader.alive_bitset();
            let lowered = |t: Score| {
                if t == Score::MIN {
                    t
                } else {
                    t - stop_bound - t.abs() * 1e-5 - 1e-6
                }
            };
            found.for_each_pruning(lowered(top.threshold()), reader, &mut |doc, _| {
                let keep = alive.is_none_or(|a| a.is_alive(doc))
                    && inside.as_mut().is_none_or(|set| at(set.as_mut(), doc));
                if keep {
                    let mut total = sum_at(&mut found_scorers, doc);
                    if stop_scorers.iter_mut().any(|s| at(s.as_mut(), doc)) {
                        total += sum_at(&mut stop_scorers, doc);
                    }
                    top.push(total, DocAddress::new(ord, doc));
                }
                lowered(top.threshold())
            })?;
        }
        Ok(top.into_sorted())
    }
}

/// [`Bm25Walk::Auto`] prunes (block-max WAND) when at least this many records are inside its
/// filter for each place of its list. Measured by the keyword bench over the one BM25F text
/// field (session 30, 1M and 100k records, depths 100, 200 and 1,000, filters keeping 4-29 % of
/// the records and none): pruning was as fast as scoring every match or faster with 97 or more
/// records a place (1.01-3.2x; 1.2x at 141 a place within a filter keeping 14 %, 1.57x at 414
/// within one keeping 4 %), and 0.65-1.02x with 78 or fewer (0.82x at 78 a place at both
/// sizes). A pruned walk tests each record it is offered against the filter and raises its
/// threshold only with the records inside, so what matters is how many compete for each place.
/// With four text fields (sessions 23-24) a filter also had to keep 17 % of the records: a
/// query's five or six cursors made a walk that found few records inside slower. Rows between
/// 78 and 97 a place were not measured.
pub const PRUNE_FROM_RECORDS_PER_PLACE: f64 = 90.0;

/// About how many records [`KeywordIndex::estimate_inside`] tests against a filter.
pub const FILTER_SAMPLE: u64 = 2_048;

/// A well-mixed 32 bits of `n` (splitmix64's finalizer): where a sample falls within its run.
fn jitter(n: u64) -> u32 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    u32::try_from((z ^ (z >> 31)) >> 32).expect("32 bits")
}

/// Whether `docs` holds `doc`, moving it there unless it already stands on or past it (the
/// documents asked about come in increasing order).
fn at(docs: &mut dyn tantivy::query::Scorer, doc: tantivy::DocId) -> bool {
    if docs.doc() < doc {
        docs.seek(doc);
    }
    docs.doc() == doc
}

/// The sum of the scores of the `scorers` holding `doc`, in their order, from 0 (as tantivy's
/// union and its required-optional scorer sum them).
fn sum_at(scorers: &mut [Box<dyn tantivy::query::Scorer>], doc: tantivy::DocId) -> Score {
    let mut sum: Score = 0.0;
    for s in scorers {
        if at(s.as_mut(), doc) {
            sum += s.score();
        }
    }
    sum
}

/// The best `k` (score, address) pairs seen: higher scores first, then lower addresses. Among
/// records tied at the last place the lowest addresses are kept, whatever the depth, so a list
/// taken `k` deep is exactly the first `k` of any deeper one.
struct TopK {
    k: usize,
    heap: BinaryHeap<Worst>,
}

/// A heap entry ordered so that the worst hit is the greatest.
struct Worst(Score, DocAddress);

impl PartialEq for Worst {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl Eq for Worst {}

impl PartialOrd for Worst {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Worst {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.0.total_cmp(&self.0).then(self.1.cmp(&other.1))
    }
}

impl TopK {
    fn new(k: usize) -> Self {
        Self {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    /// The score a hit must beat to enter: the `k`-th best once `k` are held.
    fn threshold(&self) -> Score {
        if self.heap.len() < self.k {
            Score::MIN
        } else {
            self.heap.peek().map_or(Score::MIN, |w| w.0)
        }
    }

    fn push(&mut self, score: Score, addr: DocAddress) {
        let entry = Worst(score, addr);
        if self.heap.len() < self.k {
            self.heap.push(entry);
        } else if self.heap.peek().is_some_and(|worst| entry < *worst) {
            self.heap.pop();
            self.heap.push(entry);
        }
    }

    fn into_sorted(self) -> Vec<(Score, DocAddress)> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|Worst(score, addr)| (score, addr))
            .collect()
    }
}

/// `term`'s BM25 query.
fn term_query(term: Term) -> Box<dyn Query> {
    Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs))
}

/// The analyzer of query text: `en_stem` (the index's) with English stop words removed before
/// stemming.
fn query_analyzer() -> tantivy::tokenizer::TextAnalyzer {
    use tantivy::tokenizer::{
        Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter,
        TextAnalyzer,
    };
    static STOP: std::sync::OnceLock<StopWordFilter> = std::sync::OnceLock::new();
    let stop = STOP
        .get_or_init(|| {
            StopWordFilter::new(Language::English).expect("tantivy has English stop words")
        })
        .clone();
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(stop)
        .filter(Stemmer::new(Language::English))
        .build()
}

/// The distinct tokens `analyzer` makes of `text`, in order.
fn tokens(analyzer: &mut tantivy::tokenizer::TextAnalyzer, text: &str) -> Vec<String> {
    let mut stream = analyzer.token_stream(text);
    let mut out: Vec<String> = Vec::new();
    while let Some(tok) = stream.next() {
        if !out.contains(&tok.text) {
            out.push(tok.text.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyword::test_record;

    const WORDS: [&str; 12] = [
        "dog", "car", "beach", "park", "red", "night", "truck", "ladder", "boat", "tree", "street",
        "white",
    ];

    /// 3,000 records in three segments, every seventh deleted, labelled and captioned from
    /// a dozen words with stop words between them: short texts of few words, so many records
    /// share a score and the order of ties is tested as much as the order of scores.
    fn index(dir: &std::path::Path) -> KeywordIndex {
        let kw = KeywordIndex::open(dir).unwrap();
        let mut state: u64 = 7;
        let mut draw = move |n: usize| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            usize::try_from(state >> 33).unwrap() % n
        };
        for part in 0..3u32 {
            let mut writer = kw.writer().unwrap();
            for n in part * 1_000..(part + 1) * 1_000 {
                let mut r = test_record(n, ["fleet", "coast", "city"][draw(3)], None);
                r.labels = vec![WORDS[draw(4)].into()];
                let words: Vec<&str> = (0..=draw(4)).map(|_| WORDS[draw(WORDS.len())]).collect();
                let stop = ["with the", "at", "on a", "in the"][draw(4)];
                r.captions = vec![format!("a {} {stop} {}", words.join(" "), WORDS[draw(12)])];
                writer.upsert(&r, "").unwrap();
            }
            writer.commit().unwrap();
        }
        let mut writer = kw.writer().unwrap();
        for n in (0..3_000u32).step_by(7) {
            writer.delete(&format!("{n:016x}"));
        }
        writer.commit().unwrap();
        kw.reload().unwrap();
        kw
    }

    /// No filter, a dataset (a third of the records), a label (a quarter) and two datasets
    /// without a label.
    fn filters() -> [RecordFilter; 4] {
        [
            RecordFilter::default(),
            RecordFilter {
                datasets: vec!["coast".into()],
                ..RecordFilter::default()
            },
            RecordFilter {
                labels: vec!["car".into()],
                ..RecordFilter::default()
            },
            RecordFilter {
                no_labels: vec!["dog".into()],
                datasets: vec!["city".into(), "fleet".into()],
                ..RecordFilter::default()
            },
        ]
    }

    /// One BM25F field: a word in a record's labels counts twice, one in its captions, its
    /// file name or its metadata once; each finds the record, and a word said in a label
    /// and a caption counts more than in the label alone (each occurrence adds, before BM25
    /// saturates the sum), yet less than twice as much.
    #[test]
    fn labels_weigh_twice_captions_file_names_and_metadata_once() {
        let dir = tempfile::tempdir().unwrap();
        let kw = KeywordIndex::open(dir.path()).unwrap();
        let mut writer = kw.writer().unwrap();
        let mut record = |n: u32, label: &str, caption: &str, path: &str, meta: &str| {
            let mut r = test_record(n, "fleet", None);
            r.labels = vec![label.into()];
            r.captions = vec![caption.into()];
            r.path = path.into();
            r.metadata = [("note".to_owned(), serde_json::json!(meta))].into();
            writer.upsert(&r, "").unwrap();
            r.id
        };
        let label = record(1, "heron", "a bird by a pond", "a/one.jpg", "calm");
        let caption = record(2, "bird", "a heron by a pond", "a/two.jpg", "calm");
        let filename = record(3, "bird", "a bird by a pond", "a/heron.jpg", "calm");
        let metadata = record(4, "bird", "a bird by a pond", "a/four.jpg", "heron");
        let both = record(5, "heron", "a heron by a pond", "a/five.jpg", "calm");
        // Many records without the word, so that it is rare (a high IDF) as in a real library.
        for n in 6..60 {
            record(n, "bird", "a bird by a pond", &format!("a/{n}.jpg"), "calm");
        }
        writer.commit().unwrap();
        kw.reload().unwrap();

        let hits = kw.search("heron", &RecordFilter::default(), 10).unwrap();
        let ids: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
        assert_eq!(ids.len(), 5, "each part of a record is searched: {ids:?}");
        assert_eq!(&ids[..2], [both.as_str(), label.as_str()], "{hits:?}");
        for id in [&caption, &filename, &metadata] {
            assert!(ids[2..].contains(&id.as_str()), "{id} in {ids:?}");
        }
        let score = |id: &str| hits.iter().find(|h| h.id == id).unwrap().score;
        assert!(
            score(&both) < 2.0 * score(&label),
            "a label and a caption saying it are not two whole matches: {hits:?}"
        );
        assert!(score(&label) > score(&caption), "{hits:?}");
    }

    /// Block-max WAND with the stop words' bound, the filter tested per record and every
    /// kept record scored again in clause order gives exactly (scores to the last bit, ties in
    /// the same order) the list that scoring every match gives, at every depth, with and
    /// without stop words and filters; and a shallow list is the head of every deeper one.
    #[test]
    fn pruning_gives_exactly_the_list_that_scoring_every_match_gives() {
        let dir = tempfile::tempdir().unwrap();
        let kw = index(dir.path());
        assert!(kw.reader.searcher().segment_readers().len() >= 2);
        let filters = filters();
        let queries = [
            "dog",
            "a dog in the park",
            "red car at night",
            "the white truck with a ladder on the street",
            "boat tree street beach",
            "a nothingmatches",
            "the",
        ];
        let searcher = kw.reader.searcher();
        let mut ties = 0;
        for text in queries {
            let terms = kw.terms(text);
            let stop: Vec<String> = kw
                .all_terms(text)
                .into_iter()
                .filter(|t| !terms.contains(t))
                .collect();
            for filter in &filters {
                let deepest = kw
                    .top_scoring_every_match(&searcher, &terms, &stop, filter, 3_000)
                    .unwrap();
                ties += deepest.windows(2).filter(|p| p[0].0 == p[1].0).count();
                for limit in [1, 5, 37, 200, 3_000] {
                    let every = kw
                        .top_scoring_every_match(&searcher, &terms, &stop, filter, limit)
                        .unwrap();
                    let pruned = kw
                        .top_pruned(&searcher, &terms, &stop, filter, limit)
                        .unwrap();
                    let bits = |l: &[(Score, DocAddress)]| -> Vec<(u32, DocAddress)> {
                        l.iter().map(|&(s, a)| (s.to_bits(), a)).collect()
                    };
                    let head = &deepest[..limit.min(deepest.len())];
                    let got = bits(&pruned);
                    for (name, other) in [("every match", bits(&every)), ("deepest", bits(head))] {
                        let first = got.iter().zip(&other).position(|(a, b)| a != b);
                        let near = |l: &[(u32, DocAddress)]| {
                            first.map(|i| l[i..(i + 3).min(l.len())].to_vec())
                        };
                        assert!(
                            got.len() == other.len() && first.is_none(),
                            "{text:?} {filter:?} at {limit}: pruned and {name} differ at {first:?} of {} / {}: {:?} / {:?}",
                            got.len(),
                            other.len(),
                            near(&got),
                            near(&other),
                        );
                    }
                }
            }
        }
        assert!(ties > 1_000, "the lists hold many ties ({ties})");
    }

    /// The estimate of a filter's records is close to their count, from every record and
    /// from a sample of one in eleven, and of one in three records ingested in a pattern of
    /// three; `Auto` prunes when that leaves at least `PRUNE_FROM_RECORDS_PER_PLACE` records a
    /// place of the list, and gives the list of the other walks.
    #[test]
    fn the_estimate_of_a_filter_is_near_its_count_and_chooses_the_walk() {
        let dir = tempfile::tempdir().unwrap();
        let kw = index(dir.path());
        let searcher = kw.reader.searcher();
        let mut filters = filters().to_vec();
        filters.push(RecordFilter {
            labels: vec!["zebra".into()],
            ..RecordFilter::default()
        });
        for filter in &filters {
            let count = kw.count(filter).unwrap() as f64;
            let every = kw.estimate_inside_of(&searcher, filter, 10_000).unwrap();
            let sampled = kw.estimate_inside_of(&searcher, filter, 256).unwrap();
            assert!(
                (every - count).abs() <= 0.02 * 2_571.0,
                "{filter:?}: {every} estimated from every record, {count} counted"
            );
            // About 270 samples: a share's standard error is at most 3 %; allow four.
            assert!(
                (sampled - count).abs() <= 0.12 * 2_571.0,
                "{filter:?}: {sampled} estimated from a sample, {count} counted"
            );
            if count == 0.0 || filter.is_empty() {
                assert!((sampled - count).abs() < f64::EPSILON, "{filter:?}: exact");
            }
        }
        assert_eq!(kw.len(), 2_571);

        // Records whose datasets come in turn, sampled one in every three: an estimate from a
        // fixed place in each run would find all or none of a dataset.
        let turns = tempfile::tempdir().unwrap();
        let in_turn = KeywordIndex::open(turns.path()).unwrap();
        let mut writer = in_turn.writer().unwrap();
        for n in 0..3_000 {
            writer
                .upsert(
                    &test_record(
                        n,
                        ["fleet", "coast", "city"][usize::try_from(n % 3).unwrap()],
                        None,
                    ),
                    "",
                )
                .unwrap();
        }
        writer.commit().unwrap();
        in_turn.reload().unwrap();
        let sampled = in_turn
            .estimate_inside_of(&in_turn.reader.searcher(), &filters[1], 1_000)
            .unwrap();
        assert!(
            (sampled - 1_000.0).abs() < 150.0,
            "a third of the records estimated as {sampled}"
        );

        let coast = &filters[1];
        let fleet_or_city = &filters[3];
        let car_by_the_sea_or_in_town = RecordFilter {
            labels: vec!["car".into()],
            datasets: vec!["coast".into(), "city".into()],
            ..RecordFilter::default()
        };
        let narrow = kw.count(&car_by_the_sea_or_in_town).unwrap();
        assert!((300..420).contains(&narrow), "{narrow}");
        for (filter, limit, walk) in [
            // 2,571 records: 28 places of 90 records each.
            (&filters[0], 28, Bm25Walk::Pruned),
            (&filters[0], 29, Bm25Walk::EveryMatch),
            (coast, 5, Bm25Walk::Pruned),
            (coast, 20, Bm25Walk::EveryMatch),
            (fleet_or_city, 5, Bm25Walk::Pruned),
            (fleet_or_city, 100, Bm25Walk::EveryMatch),
            (&filters[4], 1, Bm25Walk::EveryMatch),
            // An eighth to a sixth of the records: pruned however few a share, when enough
            // are inside for each place.
            (&car_by_the_sea_or_in_town, 2, Bm25Walk::Pruned),
            (&car_by_the_sea_or_in_town, 5, Bm25Walk::EveryMatch),
        ] {
            assert_eq!(
                kw.auto_walk(filter, limit).unwrap(),
                walk,
                "{filter:?} {limit}"
            );
            for text in ["a dog in the park", "red car at night"] {
                let auto = kw.search_by(text, filter, limit, Bm25Walk::Auto).unwrap();
                for other in [Bm25Walk::EveryMatch, Bm25Walk::Pruned] {
                    let list = kw.search_by(text, filter, limit, other).unwrap();
                    assert_eq!(auto, list, "{text:?} {filter:?} {limit} {other:?}");
                }
            }
        }
    }
}
