//! BM25: query text into terms (stop words apart) and the ranked search over the text fields.

use tantivy::DocAddress;
use tantivy::Term;
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, BoostQuery, ConstScoreQuery, Occur, Query, TermQuery};
use tantivy::schema::IndexRecordOption;
use tantivy::tokenizer::TokenStream;

use super::schema::TEXT_FIELDS;
use super::{KResult, KeywordHit, KeywordIndex};
use crate::filter::RecordFilter;

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

    /// BM25 search of `text` over labels, captions, file names and metadata, within `filter`,
    /// best first (ties by id). A record must hold one of the text's [`KeywordIndex::terms`];
    /// its stop words only add to the score of what those find, so "a dog on the beach"
    /// ranks what "dog beach" finds as the whole sentence would, without the records that
    /// share nothing but "a", "on" and "the" with it.
    ///
    /// # Errors
    /// As [`KeywordIndex::filter_query`].
    pub fn search(
        &self,
        text: &str,
        filter: &RecordFilter,
        limit: usize,
    ) -> KResult<Vec<KeywordHit>> {
        let terms = self.terms(text);
        let stop: Vec<String> = self
            .all_terms(text)
            .into_iter()
            .filter(|t| !terms.contains(t))
            .collect();
        self.search_terms(&terms, &stop, filter, limit)
    }

    /// BM25 search of records holding one of `terms`, ranked by those and by `scored`
    /// (terms that add to a found record's score but find nothing by themselves); see
    /// [`KeywordIndex::search`].
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
        // tantivy's top-k collector allocates for `limit` hits up front: never ask for more
        // than there are documents.
        let limit = limit.min(usize::try_from(self.len()).unwrap_or(usize::MAX));
        if terms.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let found = self.union_of(terms);
        // Without a filter or scored-only terms the query is the bare union of boosted term
        // queries, which tantivy ranks with block-max WAND (skipping documents that cannot
        // reach the top `limit`); joined with a filter or with scored-only terms it scores
        // every match.
        let query: Box<dyn Query> = if filter.is_empty() && scored.is_empty() {
            found
        } else {
            let mut clauses = vec![(Occur::Must, found)];
            if !scored.is_empty() {
                clauses.push((Occur::Should, self.union_of(scored)));
            }
            if !filter.is_empty() {
                clauses.push((
                    Occur::Must,
                    Box::new(ConstScoreQuery::new(self.filter_query(filter)?, 0.0)),
                ));
            }
            Box::new(BooleanQuery::new(clauses))
        };
        let searcher = self.reader.searcher();
        let top = searcher.search(&*query, &TopDocs::with_limit(limit).order_by_score())?;
        let addrs: Vec<DocAddress> = top.iter().map(|&(_, addr)| addr).collect();
        // tantivy's order: score, then document address. Ties keep that order (not the
        // records' ids): the top `limit` is then the first `limit` of any deeper list (up to
        // records whose scores differ in their last bits only: WAND may sum term scores in
        // another order at another depth), which the search's settled head relies on.
        let hits: Vec<KeywordHit> = self
            .ids
            .ids_of(&searcher, &addrs)?
            .into_iter()
            .zip(top)
            .map(|(id, (score, _))| KeywordHit { id, score })
            .collect();
        Ok(hits)
    }

    /// The union of `terms` over every text field, each field's terms boosted as BM25 weighs
    /// that field.
    fn union_of(&self, terms: &[String]) -> Box<dyn Query> {
        let f = &self.fields;
        let mut should: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for (name, boost) in TEXT_FIELDS {
            let field = match name {
                "labels_text" => f.labels_text,
                "captions" => f.captions,
                "filename_text" => f.filename_text,
                _ => f.metadata,
            };
            for t in terms {
                let q = TermQuery::new(
                    Term::from_field_text(field, t),
                    IndexRecordOption::WithFreqs,
                );
                should.push((Occur::Should, Box::new(BoostQuery::new(Box::new(q), boost))));
            }
        }
        Box::new(BooleanQuery::new(should))
    }
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
