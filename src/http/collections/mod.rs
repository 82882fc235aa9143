//! `/v1/collections` (saved record sets for curation) and data-set export (`.../export`,
//! `/v1/export`), streamed as a zip or tar with the images and a provenance manifest.
//!
//! An export checks every image file before the first byte is sent, so the foreseeable
//! failures (a moved or changed file) are a clean 409 rather than a broken download. The
//! archive is written on the blocking pool into a bounded channel that the response body
//! drains: memory stays flat whatever the export's size, and a client that goes away stops the
//! writer at its next chunk. A client that stops reading for `limits.export_send_timeout_secs`
//! has its export abandoned (the archive is left unfinished and the thread freed).
//!
//! Images are exported redacted (as `/image` serves them to a searcher) unless the caller asks
//! for `unredacted=true`, which needs the `view_unredacted` permission; the audit entry says
//! `unredacted: true` only when original images with sensitive regions went out.

use std::io::Write;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use indexer::record::Record;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::search::{SearchBody, UploadRequest, interpreted_request, run_search, search_body};
use super::{ApiError, ApiJson, ApiQuery, AppState, ErrorBody, blocking};
use crate::collections::{Collection, CollectionSummary};
use crate::export::{self, ArchiveFormat, DatasetFormat, ImageMode, Provenance};
use crate::governance::Action;
use crate::search::UploadedImage;

/// Default number of search results a collection or export takes.
const DEFAULT_MAX_RESULTS: usize = 100;

/// A new collection: explicit ids, the results of a search, or both.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CreateCollection {
    /// Name: letters, digits, `-`, `_`, `.` (1 to 64).
    pub name: String,
    /// What the collection is for.
    pub description: Option<String>,
    /// Record ids to put in it.
    pub ids: Vec<String>,
    /// A search whose results to put in it (after `ids`).
    pub search: Option<SearchBody>,
    /// How many search results to take (default 100).
    pub max_results: Option<usize>,
}

/// Ids to add to and remove from a collection, or a new name for it.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct UpdateCollection {
    /// Ids to add (must exist in the library).
    pub add: Vec<String>,
    /// Ids to remove.
    pub remove: Vec<String>,
    /// Rename the collection to this (letters, digits, `-`, `_`, `.`; 1 to 64; not taken):
    /// one atomic change that keeps its ids, description and source. Not with `add` or
    /// `remove`.
    pub name: Option<String>,
}

/// Every collection.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CollectionList {
    /// Collections by name.
    pub collections: Vec<CollectionSummary>,
}

/// Saved collections, by name.
#[utoipa::path(get, path = "/v1/collections", tag = "collections",
    responses((status = 200, description = "every collection", body = CollectionList)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<CollectionList>, ApiError> {
    caller.require(&state, Action::ListCollections).await?;
    Ok(Json(CollectionList {
        collections: state.collections().list(),
    }))
}

/// Saves a result set or an explicit id list as a named collection.
#[utoipa::path(post, path = "/v1/collections", tag = "collections", request_body = CreateCollection,
    responses(
        (status = 201, description = "created", body = Collection),
        (status = 400, description = "bad name, unknown ids or a bad search", body = ErrorBody),
        (status = 409, description = "the name is taken", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: ApiJson<CreateCollection>,
) -> Result<(StatusCode, Json<Collection>), ApiError> {
    caller.require(&state, Action::CollectionCreate).await?;
    let body = body.parsed()?;
    let mut ids = body.ids.clone();
    check_count(&state, ids.len())?;
    check_ids_exist(&state, &ids).await?;
    // The trail keeps the search as its bounded summary, the liked record as its ref.
    let audited_source = body.search.as_ref().map(|search| {
        serde_json::json!({
            "search": search.audit_summary(state.audit(), None),
            "max_results": body.max_results,
        })
    });
    let source = match &body.search {
        Some(search) => {
            let found = search_ids(&state, search, None, body.max_results).await?;
            ids.extend(found);
            Some(serde_json::json!({ "search": search, "max_results": body.max_results }))
        }
        None => None,
    };
    let state2 = state.clone();
    let who = caller.principal.account.clone();
    let name = body.name.clone();
    let c = blocking(move || {
        Ok(state2.collections().create(
            &body.name,
            body.description,
            ids,
            source.clone(),
            Some(who),
        )?)
    })
    .await?;
    caller
        .audit(
            &state,
            Action::CollectionCreate,
            Some(serde_json::json!({ "name": name, "source": audited_source })),
            c.ids.clone(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(c)))
}

/// One collection with its ids.
#[utoipa::path(get, path = "/v1/collections/{name}", tag = "collections",
    params(("name" = String, Path, description = "collection name")),
    responses(
        (status = 200, description = "the collection", body = Collection),
        (status = 404, description = "no such collection", body = ErrorBody),
    ))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Collection>, ApiError> {
    caller.require(&state, Action::ViewCollection).await?;
    let c = state.collections().get(&name)?;
    caller
        .audit(
            &state,
            Action::ViewCollection,
            Some(serde_json::json!({ "name": name })),
            c.ids.clone(),
        )
        .await?;
    Ok(Json(c))
}

/// Adds and removes ids, or renames the collection (`{"name": "new-name"}`).
#[utoipa::path(patch, path = "/v1/collections/{name}", tag = "collections",
    params(("name" = String, Path, description = "collection name")),
    request_body = UpdateCollection,
    responses(
        (status = 200, description = "the changed (or renamed) collection", body = Collection),
        (status = 400, description = "unknown ids, a bad new name, or a rename with ids", body = ErrorBody),
        (status = 404, description = "no such collection", body = ErrorBody),
        (status = 409, description = "the new name is taken", body = ErrorBody),
    ))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: ApiJson<UpdateCollection>,
) -> Result<Json<Collection>, ApiError> {
    caller.require(&state, Action::CollectionUpdate).await?;
    let body = body.parsed()?;
    if let Some(new_name) = body.name {
        if !body.add.is_empty() || !body.remove.is_empty() {
            return Err(ApiError::invalid(
                "a rename (name) is one change on its own: send add and remove separately",
            ));
        }
        let state2 = state.clone();
        let (from, to) = (name.clone(), new_name.clone());
        let c = blocking(move || Ok(state2.collections().rename(&from, &to)?)).await?;
        // The answer lists the ids, as a view of the collection does. Both names passed
        // `validate_name` (the old one is a key of the file, the new one was just checked).
        caller
            .audit(
                &state,
                Action::CollectionUpdate,
                Some(serde_json::json!({ "name": name, "renamed_to": c.name })),
                c.ids.clone(),
            )
            .await?;
        return Ok(Json(c));
    }
    let changed: Vec<String> = body.add.iter().chain(&body.remove).cloned().collect();
    let current = state.collections().get(&name)?;
    check_count(&state, current.ids.len() + body.add.len())?;
    check_ids_exist(&state, &body.add).await?;
    let state2 = state.clone();
    let c = blocking(move || {
        let c = state2.collections();
        if !body.add.is_empty() {
            c.add(&name, body.add)?;
        }
        Ok(c.remove(&name, &body.remove)?)
    })
    .await?;
    caller
        .audit(
            &state,
            Action::CollectionUpdate,
            Some(serde_json::json!({ "name": c.name })),
            changed,
        )
        .await?;
    Ok(Json(c))
}

/// Deletes a collection (the records stay in the library).
#[utoipa::path(delete, path = "/v1/collections/{name}", tag = "collections",
    params(("name" = String, Path, description = "collection name")),
    responses(
        (status = 204, description = "deleted"),
        (status = 404, description = "no such collection", body = ErrorBody),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(&state, Action::CollectionDelete).await?;
    let state2 = state.clone();
    let name2 = name.clone();
    blocking(move || Ok(state2.collections().delete(&name2)?)).await?;
    caller
        .audit(
            &state,
            Action::CollectionDelete,
            Some(serde_json::json!({ "name": name })),
            vec![],
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn check_count(state: &AppState, n: usize) -> Result<(), ApiError> {
    let max = state.limits().max_export_records;
    if n > max {
        return Err(ApiError::invalid(format!(
            "a collection holds at most {max} records, this would be {n}"
        )));
    }
    Ok(())
}

async fn check_ids_exist(state: &AppState, ids: &[String]) -> Result<(), ApiError> {
    if ids.is_empty() {
        return Ok(());
    }
    let ids = ids.to_vec();
    let service = state.service().clone();
    let missing: Vec<String> = blocking(move || {
        let kw = service.library().keyword();
        let mut missing = Vec::new();
        for id in ids {
            if kw
                .get(&id)
                .map_err(|e| ApiError::from(indexer::Error::from(e)))?
                .is_none()
            {
                missing.push(id);
            }
        }
        Ok(missing)
    })
    .await?;
    if missing.is_empty() {
        Ok(())
    } else {
        let shown: Vec<&str> = missing.iter().take(10).map(String::as_str).collect();
        Err(ApiError::invalid(format!(
            "{} unknown record id(s): {}",
            missing.len(),
            shown.join(", ")
        )))
    }
}

/// The ids of up to `max` results of a search, page by page.
/// The ids of a search's first `max` results (default [`DEFAULT_MAX_RESULTS`]), paged through
/// as `/v1/search` pages; `upload` is the image of a search by image.
async fn search_ids(
    state: &AppState,
    search: &SearchBody,
    upload: Option<UploadedImage>,
    max: Option<usize>,
) -> Result<Vec<String>, ApiError> {
    let max = max.unwrap_or(DEFAULT_MAX_RESULTS);
    check_count(state, max)?;
    // Read once (as /v1/search reads it), then page through the same request.
    let mut body = search.clone();
    body.limit = Some(max.clamp(1, state.limits().max_page));
    let (_, mut request, _) = interpreted_request(state, body, upload).await?;
    let mut ids = Vec::new();
    loop {
        request.limit = (max - ids.len()).min(state.limits().max_page);
        let resp = run_search(state, request.clone()).await?;
        ids.extend(resp.results.into_iter().map(|h| h.id));
        match resp.next_cursor {
            Some(c) if ids.len() < max => request.cursor = Some(c),
            _ => break,
        }
    }
    Ok(ids)
}

async fn records_of(state: &AppState, ids: Vec<String>) -> Result<Vec<Record>, ApiError> {
    check_count(state, ids.len())?;
    let service = state.service().clone();
    blocking(move || {
        service
            .library()
            .keyword()
            .get_many(&ids)
            .map_err(|e| ApiError::from(indexer::Error::from(e)))
    })
    .await
}

mod exports;
pub use exports::*;
