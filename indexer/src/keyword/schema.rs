//! The tantivy schema of the keyword index: its [`Fields`], the BM25 text fields and their
//! boosts, the clamping of dates into tantivy's range, and how a file name is split into words.
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

/// Tokenised text fields and their BM25 boosts: labels matter most, then captions.
pub(super) const TEXT_FIELDS: [(&str, f32); 4] = [
    ("labels_text", 2.0),
    ("captions", 1.0),
    ("filename_text", 0.8),
    ("metadata", 0.5),
];

#[derive(Debug, Clone, Copy)]
pub(super) struct Fields {
    pub(super) id: Field,
    pub(super) filename: Field,
    pub(super) path: Field,
    pub(super) filename_text: Field,
    pub(super) label: Field,
    pub(super) labels_text: Field,
    pub(super) captions: Field,
    pub(super) metadata: Field,
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
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    let date = DateOptions::from(tantivy::schema::INDEXED)
        .set_fast()
        .set_precision(DateTimePrecision::Seconds);
    let fields = Fields {
        id: b.add_text_field("id", raw.clone()),
        filename: b.add_text_field("filename", raw.clone()),
        path: b.add_text_field("path", raw.clone()),
        filename_text: b.add_text_field("filename_text", text.clone()),
        label: b.add_text_field("label", STRING | FAST),
        labels_text: b.add_text_field("labels_text", text.clone()),
        captions: b.add_text_field("captions", text.clone()),
        metadata: b.add_text_field("metadata", text),
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
