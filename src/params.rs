//! Request parameters shared by the command line and the HTTP API.
//!
//! [`FilterParams`] is one type for both front ends (clap flags and a JSON object), so a filter
//! means the same thing wherever it is typed. It turns into the exact [`RecordFilter`] of the
//! indexer; errors name the flag or field the caller wrote.

use clap::Args;
use indexer::filter::{DateRange, FilenameMatch, RecordFilter};
use indexer::record::DateAxis;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::search::SearchError;

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
        let filename = match (&self.filename, &self.filename_prefix, &self.filename_glob) {
            (Some(f), _, _) if f.contains(['*', '?', '[']) => Some(FilenameMatch::Glob(f.clone())),
            (Some(f), _, _) => Some(FilenameMatch::Exact(f.clone())),
            (_, Some(p), _) => Some(FilenameMatch::Prefix(p.clone())),
            (_, _, Some(g)) => Some(FilenameMatch::Glob(g.clone())),
            _ => None,
        };
        Ok(RecordFilter {
            labels: self.labels.clone(),
            no_labels: self.no_labels.clone(),
            datasets: self.datasets.clone(),
            dates,
            filename,
        })
    }
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
