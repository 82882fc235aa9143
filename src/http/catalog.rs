//! `/v1/lookup` (records by filename and date, no model) and `/v1/info`.

use axum::Json;
use axum::extract::State;
use indexer::library::Counts;
use indexer::record::DateAxis;
use models::EmbedderSpec;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::{ApiError, ApiQuery, AppState, ErrorBody, blocking};
use crate::governance::Action;
use crate::governance::accounts::Role;
use crate::params::{FilterParams, audited_lookup};
use crate::search::{LookupRequest, LookupResponse};

/// Filters, sort and page of a look-up or facet request, as query parameters. Lists
/// (`label`, `no_label`, `dataset`, `split`, `source_id`, `attr`, `not`) are comma-separated;
/// a value holding a comma is quoted as in CSV (`label="car, red",truck`).
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(default, deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FilterQuery {
    /// Labels that must all be present (comma-separated).
    pub label: Option<String>,
    /// Labels that must be absent (comma-separated).
    pub no_label: Option<String>,
    /// Datasets, any of them (comma-separated).
    pub dataset: Option<String>,
    /// Splits (`train`, `val`, ...), any of them (comma-separated).
    pub split: Option<String>,
    /// Image ids of the annotation tool, any of them (comma-separated).
    pub source_id: Option<String>,
    /// Attributes of the image or of one of its boxes as `key=value`, all of them
    /// (comma-separated).
    pub attr: Option<String>,
    /// Captured on or after (YYYY-MM-DD or RFC 3339).
    pub captured_after: Option<String>,
    /// Captured on or before (a bare day includes the whole day).
    pub captured_before: Option<String>,
    /// File created on or after.
    pub created_after: Option<String>,
    /// File created on or before.
    pub created_before: Option<String>,
    /// Annotated on or after.
    pub annotated_after: Option<String>,
    /// Annotated on or before.
    pub annotated_before: Option<String>,
    /// Ingested on or after.
    pub ingested_after: Option<String>,
    /// Ingested on or before.
    pub ingested_before: Option<String>,
    /// File name: exact, or a glob when it contains `*`, `?` or `[`.
    pub filename: Option<String>,
    /// File name prefix.
    pub filename_prefix: Option<String>,
    /// File name glob.
    pub filename_glob: Option<String>,
    /// Look-ups: axis to sort by (default: the first date filter's axis, else ingested).
    pub sort: Option<DateAxis>,
    /// Look-ups: newest first.
    pub desc: Option<bool>,
    /// Look-ups: page size (default 50).
    pub limit: Option<usize>,
    /// Look-ups: `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Facets: count over the candidate set of a search for this plain-English text (read as
    /// a search reads it unless `literal`) instead of the whole filtered set.
    pub query: Option<String>,
    /// Facets: count over the candidate set of "more like this" record (its id).
    pub like: Option<String>,
    /// Facets: the search's texts to push results away from (comma-separated).
    pub not: Option<String>,
    /// Facets: take `query` literally (as a search's `literal`).
    pub literal: Option<bool>,
    /// Facets: time zone relative dates in `query` are read in (as a search's `time_zone`).
    pub time_zone: Option<String>,
    /// Facets: the search's fusion weights (as a search's `weights`; its `depth` is replaced
    /// by the facets' fixed depth).
    pub weights: Option<String>,
}

/// A comma-separated list, trimmed, without empty entries. A value holding a comma is quoted
/// as in CSV (`label="car, red",truck`; a quote inside doubles: `""`), so any label, dataset or
/// annotation-tool id can be asked for.
///
/// # Errors
/// An unterminated quote, or text after a closing quote.
pub(super) fn comma_list(name: &str, v: &Option<String>) -> Result<Vec<String>, ApiError> {
    let Some(text) = v.as_deref() else {
        return Ok(Vec::new());
    };
    let bad = |why: &str| {
        ApiError::invalid(format!(
            "{name}: {why} (a value holding a comma is quoted as in CSV: \
             {name}=\"car, red\",truck, a quote inside doubled), got {text:?}"
        ))
    };
    // The few rules of a CSV line, strictly: a value is quoted whole or not at all.
    let mut items = Vec::new();
    let mut item = String::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next_if_eq(&'"').is_some() {
            loop {
                match chars.next() {
                    None => return Err(bad("a quote is not closed")),
                    Some('"') if chars.next_if_eq(&'"').is_some() => item.push('"'),
                    Some('"') => break,
                    Some(c) => item.push(c),
                }
            }
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
            if chars.peek().is_some_and(|&c| c != ',') {
                return Err(bad("text follows a closing quote before the next comma"));
            }
        } else {
            while let Some(c) = chars.next_if(|&c| c != ',') {
                if c == '"' {
                    return Err(bad("a quote inside a value that is not quoted"));
                }
                item.push(c);
            }
        }
        let value = item.trim();
        if !value.is_empty() {
            items.push(value.to_owned());
        }
        item.clear();
        if chars.next().is_none() {
            return Ok(items);
        }
    }
}

impl FilterQuery {
    /// Whether any of the search fields only facets take is given.
    fn has_search_fields(&self) -> bool {
        self.query.is_some()
            || self.like.is_some()
            || self.not.is_some()
            || self.literal.is_some()
            || self.time_zone.is_some()
            || self.weights.is_some()
    }

    pub(super) fn params(&self) -> Result<FilterParams, ApiError> {
        let list = comma_list;
        Ok(FilterParams {
            labels: list("label", &self.label)?,
            no_labels: list("no_label", &self.no_label)?,
            datasets: list("dataset", &self.dataset)?,
            splits: list("split", &self.split)?,
            source_ids: list("source_id", &self.source_id)?,
            attrs: list("attr", &self.attr)?,
            captured_after: self.captured_after.clone(),
            captured_before: self.captured_before.clone(),
            created_after: self.created_after.clone(),
            created_before: self.created_before.clone(),
            annotated_after: self.annotated_after.clone(),
            annotated_before: self.annotated_before.clone(),
            ingested_after: self.ingested_after.clone(),
            ingested_before: self.ingested_before.clone(),
            filename: self.filename.clone(),
            filename_prefix: self.filename_prefix.clone(),
            filename_glob: self.filename_glob.clone(),
        })
    }
}

/// Look records up by filename (exact, prefix, glob) and/or date range on any axis, sorted by
/// date, with the full records. Needs no model.
#[utoipa::path(get, path = "/v1/lookup", tag = "audit", params(FilterQuery),
    responses(
        (status = 200, description = "a page of full records", body = LookupResponse),
        (status = 400, description = "a bad parameter, named in the message", body = ErrorBody),
    ))]
pub async fn lookup(
    State(state): State<AppState>,
    caller: Caller,
    q: ApiQuery<FilterQuery>,
) -> Result<Json<LookupResponse>, ApiError> {
    caller.require(&state, Action::Lookup).await?;
    let q = q.parsed()?;
    if q.has_search_fields() {
        return Err(ApiError::invalid(
            "look-ups take filters, sort and page only, not query, like, not, literal, \
             time_zone or weights",
        ));
    }
    let limit = q.limit.unwrap_or(50);
    if limit == 0 || limit > state.limits().max_page {
        return Err(ApiError::invalid(format!(
            "limit must be 1 to {}, got {limit}",
            state.limits().max_page
        )));
    }
    let params = q.params()?;
    let req = LookupRequest {
        filter: params.to_filter_named(str::to_owned)?,
        sort: q.sort,
        descending: q.desc.unwrap_or(false),
        limit,
        cursor: q.cursor.clone(),
    };
    let query = audited_lookup(
        &params,
        req.sort,
        req.descending,
        limit,
        req.cursor.as_deref(),
    );
    let service = state.service().clone();
    let resp = blocking(move || Ok(service.catalog().lookup(&req)?)).await?;
    let ids = resp.results.iter().map(|r| r.id.clone()).collect();
    caller
        .audit(&state, Action::Lookup, Some(query), ids)
        .await?;
    Ok(Json(resp))
}

/// What `/v1/info` answers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Info {
    /// The library's data directory: shown to admins only (a server path tells others
    /// nothing they need).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<String>,
    /// Layout version.
    pub format_version: u32,
    /// The model the vectors were made with (a local model folder is named by its last
    /// component, except to admins).
    pub model: Option<EmbedderSpec>,
    /// Counts at the last ingest.
    pub counts: Counts,
    /// Records now.
    pub records: u64,
    /// Whether semantic search is on.
    pub semantic: bool,
    /// Why it is off, and how to turn it on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
    /// Saved collections.
    pub collections: usize,
    /// Server version.
    pub version: String,
}

/// The library's model, counts and state.
#[utoipa::path(get, path = "/v1/info", tag = "library",
    responses((status = 200, description = "library info", body = Info)))]
pub async fn info(State(state): State<AppState>, caller: Caller) -> Json<Info> {
    let mut info = info_of(&state);
    if caller.principal.role != Role::Admin {
        info.data_dir = None;
        if let Some(spec) = &mut info.model {
            spec.model_id = public_model_id(&spec.model_id);
        }
    }
    Json(info)
}

/// A model id safe to show anyone: a hub id as it is, a local folder by its last component.
fn public_model_id(model_id: &str) -> String {
    match models::ModelSource::parse(model_id) {
        models::ModelSource::Local(path) => path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "local model".into()),
        _ => model_id.to_owned(),
    }
}

/// Everything the server knows about its library, paths included (the handler hides them
/// from non-admins).
pub(crate) fn info_of(state: &AppState) -> Info {
    let service = state.service();
    let lib = service.library();
    let m = lib.manifest();
    Info {
        data_dir: Some(lib.dir().display().to_string()),
        format_version: m.format_version,
        model: m.model.clone(),
        counts: m.counts.clone(),
        records: lib.keyword().len(),
        semantic: service.semantic(),
        notice: service.semantic_notice(),
        collections: state.collections().list().len(),
        version: env!("CARGO_PKG_VERSION").into(),
    }
}

#[cfg(test)]
mod tests {
    use super::comma_list;

    fn list(text: &str) -> Result<Vec<String>, String> {
        comma_list("label", &Some(text.to_owned())).map_err(|e| format!("{e:?}"))
    }

    #[test]
    fn comma_lists_split_trim_and_take_csv_quotes() {
        assert_eq!(list("car, truck ,,").unwrap(), ["car", "truck"]);
        assert_eq!(list(r#""car, red",truck"#).unwrap(), ["car, red", "truck"]);
        assert_eq!(
            list(r#" "6"" pipe" , "a""b""#).unwrap(),
            ["6\" pipe", "a\"b"]
        );
        assert_eq!(list(r#""""#).unwrap(), Vec::<String>::new());
        assert!(comma_list("label", &None).unwrap().is_empty());
        for (bad, why) in [
            (r#""car, red"#, "not closed"),
            (r#""car" red,truck"#, "follows a closing quote"),
            (r#"6" pipe"#, "not quoted"),
        ] {
            let e = list(bad).unwrap_err();
            assert!(e.contains(why) && e.contains("label"), "{bad}: {e}");
        }
    }

    /// The value quoted as the web page quotes a list item (`api.js` `listItem`).
    fn quoted(value: &str) -> String {
        if value.contains([',', '"']) {
            format!("\"{}\"", value.replace('"', "\"\""))
        } else {
            value.to_owned()
        }
    }

    proptest::proptest! {
        /// Any values (without surrounding spaces) written as the page writes them read back
        /// as the same list; any text at all reads as a list or a 400, never a panic.
        #[test]
        fn quoted_lists_read_back_and_any_text_is_answered(
            values in proptest::collection::vec("[^\\s]([ -~]{0,10}[^\\s])?", 0..6),
            any in "\\PC{0,40}",
        ) {
            let written: Vec<String> = values.iter().map(|v| quoted(v)).collect();
            proptest::prop_assert_eq!(list(&written.join(",")).unwrap(), values);
            let _ = list(&any);
        }
    }
}
