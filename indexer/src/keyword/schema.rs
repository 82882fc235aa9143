//! The tantivy schema of the keyword index: its [`Fields`], the BM25 text field and what it
//! holds, the clamping of dates into tantivy's range, and how a file name is split into words.
//! Both the reader ([`super::KeywordIndex`]) and the writer ([`super::KeywordWriter`]) build
//! their documents and queries from what this module declares.

use tantivy::schema::{
    DateOptions, DateTimePrecision, FAST, Field, IndexRecordOption, STORED, STRING, Schema,
    TextFieldIndexing, TextOptions,
};

use crate::record::DateAxis;

/// Lower bound standing in for "any date" (1800-01-01, the earliest date
/// [`crate::dates::parse_date`] accepts), inside tantivy's i64-nanosecond range.
pub(super) const MIN_DATE_SECS: i64 = -5_364_662_400;
/// Upper end of tantivy's range we allow (2200-01-01).
const MAX_DATE_SECS: i64 = 7_258_118_400;

pub(super) fn tantivy_date(secs: i64) -> tantivy::DateTime {
    tantivy::DateTime::from_timestamp_secs(secs.clamp(MIN_DATE_SECS, MAX_DATE_SECS))
}

/// What a record's one BM25 text field holds, and how many times (its weight): the words of
/// its labels (and their supercategories) twice, then its captions, the words of its file name
/// and its metadata once each. This is BM25F (Robertson, Zaragoza and Taylor, "Simple BM25
/// extension to multiple weighted fields", CIKM 2004): a field's weight multiplies its term
/// frequencies before BM25 saturates them, so a word a record's label and caption both say
/// counts a little more than once, not as two whole matches. One field also gives a query one
/// postings cursor a term instead of one a term and field (the keyword bench at 1M: 1.5x faster
/// pruned top 100 without a filter, benches/README.md). Before, there were four fields
/// (labels 2.0, captions 1.0, file name 0.8, metadata 0.5) whose BM25 scores were summed; an
/// index written so is rebuilt from its records when it is opened (`migrate.rs`).
pub(super) const TEXT_WEIGHTS: TextWeights = TextWeights {
    labels: 2,
    captions: 1,
    filename: 1,
    metadata: 1,
};

/// How many times each part of a record goes into the BM25 text field (see [`TEXT_WEIGHTS`]).
pub(super) struct TextWeights {
    pub(super) labels: usize,
    pub(super) captions: usize,
    pub(super) filename: usize,
    pub(super) metadata: usize,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Fields {
    pub(super) id: Field,
    pub(super) filename: Field,
    pub(super) path: Field,
    pub(super) label: Field,
    /// Everything BM25 ranks by (see [`TEXT_WEIGHTS`]).
    pub(super) text: Field,
    pub(super) dataset: Field,
    pub(super) split: Field,
    pub(super) source_id: Field,
    pub(super) attr: Field,
    pub(super) fingerprint: Field,
    pub(super) embedded: Field,
    pub(super) record: Field,
    pub(super) dates: [Field; 4],
}

pub(super) fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let raw = STRING | STORED | FAST;
    let text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer("en_stem")
            // No query asks where a word stands (no phrases): frequencies are all BM25 needs.
            .set_index_option(IndexRecordOption::WithFreqs),
    );
    let date = DateOptions::from(tantivy::schema::INDEXED)
        .set_fast()
        .set_precision(DateTimePrecision::Seconds);
    let fields = Fields {
        id: b.add_text_field("id", raw.clone()),
        filename: b.add_text_field("filename", raw.clone()),
        path: b.add_text_field("path", raw.clone()),
        label: b.add_text_field("label", STRING | FAST),
        text: b.add_text_field("text", text),
        dataset: b.add_text_field("dataset", raw.clone()),
        split: b.add_text_field("split", STRING | FAST),
        source_id: b.add_text_field("source_id", STRING),
        attr: b.add_text_field("attr", STRING | FAST),
        fingerprint: b.add_text_field("fingerprint", raw.clone()),
        embedded: b.add_text_field("embedded", raw),
        record: b.add_text_field("record", STORED),
        dates: DateAxis::ALL.map(|axis| b.add_date_field(axis.name(), date.clone())),
    };
    (b.build(), fields)
}

/// File name split into words for BM25 (`IMG_0042-night.jpg` -> `IMG 0042 night jpg`).
pub(super) fn filename_words(path: &str) -> String {
    path.chars()
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect()
}
