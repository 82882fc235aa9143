//! Exact queries of the keyword index: [`KeywordIndex::filter_query`] turns a
//! [`RecordFilter`] into a tantivy query built from terms, ranges and regular expressions (never
//! from tantivy's query parser, so user text cannot inject query syntax), with the helpers that
//! build single-term and filename-pattern queries.

use std::ops::Bound;

use chrono::{DateTime, Utc};
use tantivy::Term;
use tantivy::query::{AllQuery, BooleanQuery, Occur, Query, RangeQuery, RegexQuery, TermQuery};
use tantivy::schema::{Field, IndexRecordOption};

use super::schema::{MIN_DATE_SECS, tantivy_date};
use super::{KResult, KeywordError, KeywordIndex};
use crate::filter::{PatternError, RecordFilter, normalize_attr, normalize_label};
use crate::record::DateAxis;

impl KeywordIndex {
    /// Builds the exact query for a filter (matches all records when the filter is empty).
    ///
    /// # Errors
    /// [`KeywordError::Pattern`] for a filename pattern tantivy's regex cannot compile.
    pub fn filter_query(&self, filter: &RecordFilter) -> KResult<Box<dyn Query>> {
        let f = &self.fields;
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, Box::new(AllQuery))];
        for label in &filter.labels {
            clauses.push((Occur::Must, term_query(f.label, &normalize_label(label))));
        }
        for label in &filter.no_labels {
            clauses.push((Occur::MustNot, term_query(f.label, &normalize_label(label))));
        }
        for attr in &filter.attrs {
            clauses.push((Occur::Must, term_query(f.attr, &normalize_attr(attr))));
        }
        // Any of the datasets, any of the splits, any of the source ids.
        for (field, values) in [
            (f.dataset, &filter.datasets),
            (f.split, &filter.splits),
            (f.source_id, &filter.source_ids),
        ] {
            if !values.is_empty() {
                let any: Vec<(Occur, Box<dyn Query>)> = values
                    .iter()
                    .map(|v| (Occur::Should, term_query(field, v)))
                    .collect();
                clauses.push((Occur::Must, Box::new(BooleanQuery::new(any))));
            }
        }
        for range in &filter.dates {
            let field = f.dates[DateAxis::ALL
                .iter()
                .position(|a| *a == range.axis)
                .expect("every axis has a field")];
            let bound = |d: Option<DateTime<Utc>>| match d {
                Some(d) => {
                    Bound::Included(Term::from_field_date(field, tantivy_date(d.timestamp())))
                }
                None => Bound::Unbounded,
            };
            let (lo, hi) = (bound(range.after), bound(range.before));
            // An unbounded range would also match records that lack the axis; require a value.
            let lo = match lo {
                Bound::Unbounded => {
                    Bound::Included(Term::from_field_date(field, tantivy_date(MIN_DATE_SECS)))
                }
                b => b,
            };
            clauses.push((Occur::Must, Box::new(RangeQuery::new(lo, hi))));
        }
        if let Some(m) = &filter.filename {
            let field = if m.on_path() { f.path } else { f.filename };
            m.check_length()?;
            // The same regular expression as the payload check of vector hits
            // (`FilenameMatch::compile`), so both sides agree on every name.
            let q: Box<dyn Query> = match m.to_regex() {
                None => term_query(field, m.pattern()),
                Some(re) => regex_query(field, &re, m.pattern())?,
            };
            clauses.push((Occur::Must, q));
        }
        Ok(Box::new(BooleanQuery::new(clauses)))
    }
}

fn term_query(field: Field, text: &str) -> Box<dyn Query> {
    Box::new(TermQuery::new(
        Term::from_field_text(field, text),
        IndexRecordOption::Basic,
    ))
}

fn regex_query(field: Field, regex: &str, pattern: &str) -> KResult<Box<dyn Query>> {
    RegexQuery::from_pattern(regex, field)
        .map(|q| Box::new(q) as Box<dyn Query>)
        .map_err(|e| {
            // tantivy's message quotes the whole expression; keep only the reason.
            let text = e.to_string();
            let reason = text
                .lines()
                .rev()
                .find_map(|l| l.trim().strip_prefix("error: "))
                .map(str::to_owned)
                .unwrap_or_else(|| crate::filter::shorten(text.lines().next().unwrap_or(""), 200));
            PatternError {
                pattern: crate::filter::shorten(pattern, 64),
                reason,
            }
            .into()
        })
}

impl From<PatternError> for KeywordError {
    fn from(e: PatternError) -> Self {
        KeywordError::Pattern {
            pattern: e.pattern,
            reason: e.reason,
        }
    }
}
