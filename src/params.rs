//! Request parameters shared by the command line and the HTTP API.
//!
//! [`FilterParams`] is one type for both front ends (clap flags and a JSON object), so a filter
//! means the same thing wherever it is typed. It turns into the exact [`RecordFilter`] of the
//! indexer; errors name the flag or field the caller wrote.
//!
//! Every size is bounded before any work: at most [`MAX_FILTER_VALUES`] values per list, each
//! at most [`MAX_VALUE_CHARS`] characters, dates at most [`MAX_DATE_CHARS`], filename patterns
//! at most [`MAX_PATTERN_CHARS`]. The audit trail keeps a bounded summary of a filter
//! ([`FilterParams::audit_summary`]), never the request as sent.

use clap::Args;
use indexer::filter::{DateRange, FilenameMatch, RecordFilter, shorten};
use indexer::record::DateAxis;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

pub use indexer::filter::MAX_PATTERN_CHARS;

use crate::search::SearchError;

/// Most values in one list of a filter (`labels`, `no_labels`, `datasets`, `splits`,
/// `source_ids`, `attrs`).
pub const MAX_FILTER_VALUES: usize = 100;
/// Longest label or dataset name in a filter, in characters.
pub const MAX_VALUE_CHARS: usize = 512;
/// Longest date in a filter, in characters (RFC 3339 needs 35).
pub const MAX_DATE_CHARS: usize = 64;
/// Values of each list an audit entry keeps ([`FilterParams::audit_summary`]).
pub const AUDIT_LIST_VALUES: usize = 20;
/// Characters of one list value an audit entry keeps.
pub const AUDIT_VALUE_CHARS: usize = 128;

/// Whether `text` has more than `max` characters (counting stops at `max + 1`).
fn longer_than(text: &str, max: usize) -> bool {
    text.chars().take(max + 1).count() > max
}

/// Filters shared by search, look-ups, facets and exports. Every clause is exact.
#[derive(Debug, Clone, Default, PartialEq, Args, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct FilterParams {
    /// Only records with this label (repeat: all must be present).
    #[arg(long = "label", value_name = "L")]
    pub labels: Vec<String>,
    /// Only records without this label (repeatable).
    #[arg(long = "no-label", value_name = "L")]
    pub no_labels: Vec<String>,
    /// Only records of this dataset (repeat: any of them).
    #[arg(long = "dataset", value_name = "D")]
    pub datasets: Vec<String>,
    /// Only records in this split, e.g. `val` (repeat: any of them; records without a split
    /// never match).
    #[arg(long = "split", value_name = "S")]
    pub splits: Vec<String>,
    /// Only the record of this image id of the annotation tool (a Clarifai input id, a CVAT
    /// image id, a Label Studio task id; exact; repeat: any of them).
    #[arg(long = "source-id", value_name = "ID")]
    pub source_ids: Vec<String>,
    /// Only records with a box that has this attribute, as `key=value` (e.g.
    /// `color=white`, `occluded=true`; repeat: all of them).
    #[arg(long = "attr", value_name = "KEY=VALUE")]
    pub attrs: Vec<String>,
    /// Captured on or after DATE (YYYY-MM-DD or RFC 3339).
    #[arg(long, value_name = "DATE")]
    pub captured_after: Option<String>,
    /// Captured on or before DATE (a bare day includes the whole day).
    #[arg(long, value_name = "DATE")]
    pub captured_before: Option<String>,
    /// File created on or after DATE.
    #[arg(long, value_name = "DATE")]
    pub created_after: Option<String>,
    /// File created on or before DATE.
    #[arg(long, value_name = "DATE")]
    pub created_before: Option<String>,
    /// Annotated/exported on or after DATE.
    #[arg(long, value_name = "DATE")]
    pub annotated_after: Option<String>,
    /// Annotated/exported on or before DATE.
    #[arg(long, value_name = "DATE")]
    pub annotated_before: Option<String>,
    /// Ingested on or after DATE.
    #[arg(long, value_name = "DATE")]
    pub ingested_after: Option<String>,
    /// Ingested on or before DATE.
    #[arg(long, value_name = "DATE")]
    pub ingested_before: Option<String>,
    /// File name: exact, or a glob when it contains * ? or [ (a pattern with / matches the
    /// path relative to the images folder).
    #[arg(long, value_name = "PATTERN", conflicts_with_all = ["filename_prefix", "filename_glob"])]
    pub filename: Option<String>,
    /// File name starts with P.
    #[arg(long, value_name = "P", conflicts_with = "filename_glob")]
    pub filename_prefix: Option<String>,
    /// File name matches the glob G.
    #[arg(long, value_name = "G")]
    pub filename_glob: Option<String>,
}

impl FilterParams {
    /// The exact filter these flags describe; errors name the command-line flag.
    ///
    /// # Errors
    /// [`SearchError::Invalid`] for a bad date or more than one filename pattern.
    pub fn to_filter(&self) -> Result<RecordFilter, SearchError> {
        self.to_filter_named(|field| format!("--{}", field.replace('_', "-")))
    }

    /// The exact filter, with errors naming each field as `name(field)` spells it
    /// (`captured_after` for the JSON API, `--captured-after` for the command line).
    ///
    /// # Errors
    /// [`SearchError::Invalid`] for a bad date or more than one filename pattern.
    pub fn to_filter_named(
        &self,
        name: impl Fn(&str) -> String,
    ) -> Result<RecordFilter, SearchError> {
        self.check_sizes(&name)?;
        let mut dates = Vec::new();
        let pairs = [
            (
                DateAxis::Captured,
                &self.captured_after,
                &self.captured_before,
            ),
            (DateAxis::Created, &self.created_after, &self.created_before),
            (
                DateAxis::Annotated,
                &self.annotated_after,
                &self.annotated_before,
            ),
            (
                DateAxis::Ingested,
                &self.ingested_after,
                &self.ingested_before,
            ),
        ];
        for (axis, after, before) in pairs {
            if after.is_none() && before.is_none() {
                continue;
            }
            let axis_name = axis.name();
            let bad = |side: &str, e: indexer::dates::DateError| {
                SearchError::Invalid(format!("{}: {e}", name(&format!("{axis_name}_{side}"))))
            };
            let after = after
                .as_deref()
                .map(indexer::dates::parse_date)
                .transpose()
                .map_err(|e| bad("after", e))?;
            let before = before
                .as_deref()
                .map(indexer::dates::parse_date_end)
                .transpose()
                .map_err(|e| bad("before", e))?;
            dates.push(DateRange {
                axis,
                after,
                before,
            });
        }
        let patterns = [
            self.filename.is_some(),
            self.filename_prefix.is_some(),
            self.filename_glob.is_some(),
        ];
        if patterns.iter().filter(|p| **p).count() > 1 {
            return Err(SearchError::Invalid(format!(
                "give at most one of {}, {} and {}",
                name("filename"),
                name("filename_prefix"),
                name("filename_glob")
            )));
        }
        let (field, filename) = match (&self.filename, &self.filename_prefix, &self.filename_glob) {
            (Some(f), _, _) if f.contains(['*', '?', '[']) => {
                ("filename", Some(FilenameMatch::Glob(f.clone())))
            }
            (Some(f), _, _) => ("filename", Some(FilenameMatch::Exact(f.clone()))),
            (_, Some(p), _) => ("filename_prefix", Some(FilenameMatch::Prefix(p.clone()))),
            (_, _, Some(g)) => ("filename_glob", Some(FilenameMatch::Glob(g.clone()))),
            _ => ("filename", None),
        };
        // A glob is compiled here once to refuse a bad one by its field name; the search
        // compiles it again once per request.
        if let Some(m) = &filename {
            m.compile()
                .map_err(|e| SearchError::Invalid(format!("{}: {e}", name(field))))?;
        }
        Ok(RecordFilter {
            source_ids: self.source_ids.clone(),
            labels: self.labels.clone(),
            no_labels: self.no_labels.clone(),
            datasets: self.datasets.clone(),
            splits: self.splits.clone(),
            attrs: self.attrs.clone(),
            dates,
            filename,
        })
    }
}

impl FilterParams {
    /// Refuses lists, values, dates and patterns over their limits, naming the field and
    /// never echoing the value.
    fn check_sizes(&self, name: &impl Fn(&str) -> String) -> Result<(), SearchError> {
        for (field, list) in [
            ("labels", &self.labels),
            ("no_labels", &self.no_labels),
            ("datasets", &self.datasets),
            ("splits", &self.splits),
            ("source_ids", &self.source_ids),
            ("attrs", &self.attrs),
        ] {
            if list.len() > MAX_FILTER_VALUES {
                return Err(SearchError::Invalid(format!(
                    "{} has {} values; the limit is {MAX_FILTER_VALUES}",
                    name(field),
                    list.len()
                )));
            }
            if let Some(i) = list.iter().position(|v| longer_than(v, MAX_VALUE_CHARS)) {
                return Err(SearchError::Invalid(format!(
                    "{} value {} is longer than {MAX_VALUE_CHARS} characters",
                    name(field),
                    i + 1
                )));
            }
        }
        if let Some(i) = self
            .attrs
            .iter()
            .position(|a| a.split_once('=').is_none_or(|(k, _)| k.trim().is_empty()))
        {
            return Err(SearchError::Invalid(format!(
                "{} value {} is not key=value (e.g. color=white)",
                name("attrs"),
                i + 1
            )));
        }
        for (field, value) in self.dates() {
            if value.is_some_and(|v| longer_than(v, MAX_DATE_CHARS)) {
                return Err(SearchError::Invalid(format!(
                    "{} is longer than {MAX_DATE_CHARS} characters: use YYYY-MM-DD or RFC 3339",
                    name(field)
                )));
            }
        }
        for (field, value) in self.patterns() {
            if value.is_some_and(|v| longer_than(v, MAX_PATTERN_CHARS)) {
                return Err(SearchError::Invalid(format!(
                    "{} is longer than {MAX_PATTERN_CHARS} characters",
                    name(field)
                )));
            }
        }
        Ok(())
    }

    /// The date fields by their JSON name.
    fn dates(&self) -> [(&'static str, Option<&str>); 8] {
        [
            ("captured_after", self.captured_after.as_deref()),
            ("captured_before", self.captured_before.as_deref()),
            ("created_after", self.created_after.as_deref()),
            ("created_before", self.created_before.as_deref()),
            ("annotated_after", self.annotated_after.as_deref()),
            ("annotated_before", self.annotated_before.as_deref()),
            ("ingested_after", self.ingested_after.as_deref()),
            ("ingested_before", self.ingested_before.as_deref()),
        ]
    }

    /// The filename fields by their JSON name.
    fn patterns(&self) -> [(&'static str, Option<&str>); 3] {
        [
            ("filename", self.filename.as_deref()),
            ("filename_prefix", self.filename_prefix.as_deref()),
            ("filename_glob", self.filename_glob.as_deref()),
        ]
    }

    /// What the audit trail keeps of this filter: each list cut to its first
    /// [`AUDIT_LIST_VALUES`] values (each cut to [`AUDIT_VALUE_CHARS`] characters) with
    /// `<list>_count` when it was cut, dates and filename patterns (cut to their limits), and
    /// `sha256`, the digest of the whole filter as canonical JSON, so the exact filter can still
    /// be matched against the entry. Empty fields are left out; an empty filter is `{}`.
    ///
    /// This is the one summary every audited query uses (search, look-up, facets, and the
    /// searches of collections and exports), from the CLI and the API alike.
    pub fn audit_summary(&self) -> Value {
        let mut m = Map::new();
        for (field, list) in [
            ("labels", &self.labels),
            ("no_labels", &self.no_labels),
            ("datasets", &self.datasets),
            ("splits", &self.splits),
            ("source_ids", &self.source_ids),
            ("attrs", &self.attrs),
        ] {
            if list.is_empty() {
                continue;
            }
            let kept: Vec<Value> = list
                .iter()
                .take(AUDIT_LIST_VALUES)
                .map(|v| Value::String(shorten(v, AUDIT_VALUE_CHARS)))
                .collect();
            m.insert(field.into(), Value::Array(kept));
            if list.len() > AUDIT_LIST_VALUES {
                m.insert(format!("{field}_count"), list.len().into());
            }
        }
        for (field, value) in self.dates() {
            if let Some(v) = value {
                m.insert(field.into(), shorten(v, MAX_DATE_CHARS).into());
            }
        }
        for (field, value) in self.patterns() {
            if let Some(v) = value {
                m.insert(field.into(), shorten(v, MAX_PATTERN_CHARS).into());
            }
        }
        if !m.is_empty() {
            m.insert("sha256".into(), self.digest().into());
        }
        Value::Object(m)
    }

    /// sha256 (hex) of the filter as canonical JSON (fields in declaration order, every field).
    pub fn digest(&self) -> String {
        let json = serde_json::to_vec(self).expect("a filter always serialises");
        hex::encode(Sha256::digest(&json))
    }
}

/// A search answer as the CLI's `--json` and `POST /v1/search` give it: the page of results
/// and, unless the query was taken literally, what [`crate::interpret`] read from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InterpretedSearch {
    /// The page.
    #[serde(flatten)]
    pub response: crate::search::SearchResponse,
    /// Filters read from the query, with the words of each, and the ranking text kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interpreted: Option<crate::interpret::Interpretation>,
}

/// What the audit trail keeps of a search: the query text and negative texts (bounded by
/// [`crate::search::MAX_QUERY_CHARS`] and [`crate::search::MAX_NEGATIVES`] before any search
/// runs), the liked record as its keyed ref (never the id: `like_ref` is
/// `AuditLog::record_ref` of it) or the liked image as given, the filter's
/// [`FilterParams::audit_summary`], and the page size, cursor and weights (cut to 64 characters
/// each). Used by the CLI and the HTTP API, and by the searches behind collections and exports.
#[derive(Debug, Clone, Default)]
pub struct AuditedSearch<'a> {
    /// Query text.
    pub query: &'a str,
    /// `AuditLog::record_ref` of the liked record.
    pub like_ref: Option<String>,
    /// What else was liked (an image: its path on the CLI, `sha256` of an upload).
    pub like_image: Option<Value>,
    /// Negative texts.
    pub not: &'a [String],
    /// The filter as given.
    pub filter: Option<&'a FilterParams>,
    /// Page size.
    pub limit: Option<usize>,
    /// Cursor as given.
    pub cursor: Option<&'a str>,
    /// Weights as given.
    pub weights: Option<&'a str>,
}

impl AuditedSearch<'_> {
    /// The `query` value of the audit entry.
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert(
            "query".into(),
            shorten(self.query, crate::search::MAX_QUERY_CHARS).into(),
        );
        if let Some(r) = &self.like_ref {
            m.insert("like_ref".into(), r.clone().into());
        }
        if let Some(i) = &self.like_image {
            m.insert("like_image".into(), i.clone());
        }
        if !self.not.is_empty() {
            let kept: Vec<Value> = self
                .not
                .iter()
                .take(crate::search::MAX_NEGATIVES)
                .map(|n| shorten(n, crate::search::MAX_QUERY_CHARS).into())
                .collect();
            m.insert("not".into(), Value::Array(kept));
        }
        if let Some(f) = self.filter {
            let s = f.audit_summary();
            if s.as_object().is_some_and(|o| !o.is_empty()) {
                m.insert("filter".into(), s);
            }
        }
        if let Some(l) = self.limit {
            m.insert("limit".into(), l.into());
        }
        for (field, value) in [("cursor", self.cursor), ("weights", self.weights)] {
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                m.insert(field.into(), shorten(v, 64).into());
            }
        }
        Value::Object(m)
    }
}

/// What the audit trail keeps of a look-up: the filter's [`FilterParams::audit_summary`], the
/// sort, order, page size and cursor (cut to 64 characters).
pub fn audited_lookup(
    filter: &FilterParams,
    sort: Option<DateAxis>,
    descending: bool,
    limit: usize,
    cursor: Option<&str>,
) -> Value {
    let mut m = Map::new();
    m.insert("filter".into(), filter.audit_summary());
    if let Some(axis) = sort {
        m.insert("sort".into(), axis.name().into());
    }
    m.insert("desc".into(), descending.into());
    m.insert("limit".into(), limit.into());
    if let Some(c) = cursor.filter(|c| !c.is_empty()) {
        m.insert("cursor".into(), shorten(c, 64).into());
    }
    Value::Object(m)
}

/// What the audit trail keeps of a facet count: the filter's [`FilterParams::audit_summary`].
pub fn audited_facets(filter: &FilterParams) -> Value {
    serde_json::json!({ "filter": filter.audit_summary() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_dates_name_the_field_in_the_callers_spelling() {
        let p = FilterParams {
            captured_after: Some("yesterday".into()),
            ..Default::default()
        };
        let cli = p.to_filter().unwrap_err().to_string();
        assert!(cli.contains("--captured-after"), "{cli}");
        let api = p.to_filter_named(str::to_owned).unwrap_err().to_string();
        assert!(api.starts_with("captured_after"), "{api}");
    }

    #[test]
    fn the_audit_summary_of_a_filter_is_bounded_and_keeps_a_digest() {
        let p = FilterParams {
            labels: (0..100)
                .map(|i| format!("{i}{}", "x".repeat(511)))
                .collect(),
            filename_glob: Some("*.jpg".into()),
            ..Default::default()
        };
        let s = p.audit_summary();
        assert_eq!(s["labels"].as_array().unwrap().len(), AUDIT_LIST_VALUES);
        assert_eq!(s["labels_count"], 100);
        assert_eq!(s["filename_glob"], "*.jpg");
        assert_eq!(s["sha256"], p.digest().as_str());
        assert!(s.to_string().len() < 5_000, "{}", s.to_string().len());
        assert_eq!(
            FilterParams::default().audit_summary(),
            serde_json::json!({})
        );
        // Another filter, another digest.
        let mut q = p.clone();
        q.labels[99].push('y');
        assert_ne!(q.digest(), p.digest());
    }

    #[test]
    fn oversized_filters_are_refused_naming_the_field_without_echoing_it() {
        let many = FilterParams {
            no_labels: (0..=MAX_FILTER_VALUES).map(|i| i.to_string()).collect(),
            ..Default::default()
        };
        let e = many.to_filter_named(|f| format!("filter.{f}")).unwrap_err();
        assert!(e.to_string().starts_with("filter.no_labels"), "{e}");
        let long = FilterParams {
            filename_prefix: Some("p".repeat(MAX_PATTERN_CHARS + 1)),
            ..Default::default()
        };
        let e = long.to_filter().unwrap_err().to_string();
        assert!(e.starts_with("--filename-prefix") && e.len() < 200, "{e}");
        let date = FilterParams {
            ingested_before: Some("1".repeat(10_000)),
            ..Default::default()
        };
        let e = date.to_filter().unwrap_err().to_string();
        assert!(e.starts_with("--ingested-before") && e.len() < 200, "{e}");
    }

    #[test]
    fn two_filename_patterns_are_refused() {
        let p = FilterParams {
            filename: Some("a.jpg".into()),
            filename_glob: Some("*.jpg".into()),
            ..Default::default()
        };
        assert!(p.to_filter_named(str::to_owned).is_err());
    }

    #[test]
    fn json_filters_reject_unknown_fields() {
        let ok: FilterParams =
            serde_json::from_str(r#"{"labels":["dog"],"captured_after":"2021-01-01"}"#).unwrap();
        let f = ok.to_filter().unwrap();
        assert_eq!(f.labels, ["dog"]);
        assert_eq!(f.dates.len(), 1);
        assert!(serde_json::from_str::<FilterParams>(r#"{"label":["dog"]}"#).is_err());
    }
}
