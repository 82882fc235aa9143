//! `/v1/search` and `/v1/facets` (over the filtered set, or a query's candidates).

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::header;
use indexer::keyword::Facets;
use models::Embedding;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::auth::Caller;
use super::catalog::{FilterQuery, comma_list};
use super::{ApiError, ApiQuery, AppState, ErrorBody, blocking};
use crate::governance::Action;
use crate::governance::accounts::Permission;
use crate::governance::audit::AuditLog;
use crate::interpret::library::{interpret_in, parse_time_zone};
use crate::interpret::{Interpretation, unpin_cursor};
use crate::params::{AuditedSearch, FilterParams, InterpretedSearch, audited_facets};
use crate::search::{
    Cancel, FACET_DEPTH, Fusion, Like, MAX_NEGATIVES, SearchError, SearchRequest, SearchResponse,
    SearchService, UploadedImage,
};

/// Longest `weights` spec accepted, in characters.
const MAX_WEIGHTS_CHARS: usize = 256;
/// Longest `like` accepted, in characters (record ids are 16 hex digits).
const MAX_LIKE_CHARS: usize = 128;

/// A search, as JSON (or as the `request` part of a multipart upload whose `image` part is the
/// "more like this" image).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SearchBody {
    /// Plain-English query; may be empty when `like` or an image is given.
    pub query: String,
    /// More like this record (its id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub like: Option<String>,
    /// Texts to push results away from.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not: Vec<String>,
    /// Exact filters.
    pub filter: FilterParams,
    /// Page size (default 20).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Fusion weights, e.g. `keyword=1,image=1,region=0.7,text=0.5,k=60`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weights: Option<String>,
    /// Take the query literally: read no dates, labels, exclusions, datasets or file names
    /// from it (the answer's `interpreted` is then absent).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub literal: bool,
    /// Time zone relative dates are read in: `UTC`, an offset such as `+01:00` or an IANA name
    /// such as `Europe/Paris` (default: the library's `interpret.json`, else UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
}

impl SearchBody {
    /// The service request, checked against the server's limits; its `weights` overlay the
    /// server's default fusion weights `base` (`[fusion]`).
    ///
    /// # Errors
    /// 400 naming the field.
    pub fn to_request(
        &self,
        limits: &crate::settings::Limits,
        base: Fusion,
        upload: Option<UploadedImage>,
    ) -> Result<SearchRequest, ApiError> {
        if self.not.len() > MAX_NEGATIVES {
            return Err(ApiError::invalid(format!(
                "not has {} texts; the limit is {MAX_NEGATIVES}",
                self.not.len()
            )));
        }
        if let Some(w) = &self.weights
            && w.chars().take(MAX_WEIGHTS_CHARS + 1).count() > MAX_WEIGHTS_CHARS
        {
            return Err(ApiError::invalid(format!(
                "weights is longer than {MAX_WEIGHTS_CHARS} characters"
            )));
        }
        if let Some(l) = &self.like
            && l.chars().take(MAX_LIKE_CHARS + 1).count() > MAX_LIKE_CHARS
        {
            return Err(ApiError::invalid(format!(
                "like is longer than {MAX_LIKE_CHARS} characters: give a record id"
            )));
        }
        for (field, text) in
            std::iter::once(("query", &self.query)).chain(self.not.iter().map(|n| ("not", n)))
        {
            let n = text.chars().count();
            if n > limits.max_query_chars {
                return Err(ApiError::invalid(format!(
                    "{field} is {n} characters long; the limit is {}",
                    limits.max_query_chars
                )));
            }
        }
        let limit = self.limit.unwrap_or(20);
        if limit == 0 || limit > limits.max_page {
            return Err(ApiError::invalid(format!(
                "limit must be 1 to {}, got {limit}",
                limits.max_page
            )));
        }
        let like = match (upload, &self.like) {
            (Some(_), Some(_)) => {
                return Err(ApiError::invalid(
                    "give either like (a record id) or an image upload, not both",
                ));
            }
            (Some(u), None) => Some(Like::Upload(u)),
            (None, Some(id)) => Some(Like::Record(id.clone())),
            (None, None) => None,
        };
        Ok(SearchRequest {
            text: self.query.clone(),
            like,
            not: self.not.clone(),
            filter: self.filter.to_filter_named(|f| format!("filter.{f}"))?,
            limit,
            cursor: self.cursor.clone(),
            fusion: base
                .overlay(self.weights.as_deref().unwrap_or(""))
                .map_err(|e| ApiError::invalid(format!("weights: {e}")))?,
        })
    }

    /// What the audit trail keeps of this search ([`AuditedSearch`]): the liked record as its
    /// keyed ref, the filter as its bounded summary. Collections and exports made from a search
    /// record the same.
    pub fn audit_summary(
        &self,
        audit: &AuditLog,
        upload_sha256: Option<&str>,
    ) -> serde_json::Value {
        AuditedSearch {
            query: &self.query,
            like_ref: self.like.as_deref().map(|id| audit.record_ref(id)),
            like_image: upload_sha256.map(|h| serde_json::json!({ "sha256": h })),
            not: &self.not,
            filter: Some(&self.filter),
            limit: self.limit,
            cursor: self.cursor.as_deref(),
            weights: self.weights.as_deref(),
        }
        .to_value()
    }
}

/// Runs a search on the blocking pool ([`with_query_vector`]).
pub(crate) async fn run_search(
    state: &AppState,
    req: SearchRequest,
) -> Result<SearchResponse, ApiError> {
    let resp = with_query_vector(state, req, SearchService::search_cancellable).await?;
    for (stage, took) in resp.stages.named() {
        state.metrics().observe_stage(stage, took);
    }
    state.metrics().observe_depth(resp.stages.deepest);
    Ok(resp)
}

/// Runs `work` (a search, or a count over a search's candidates) on the blocking pool with
/// the request's query vector. The model's part (the query vector) holds an embedding slot,
/// the ranking a search slot (`limits.max_concurrent_searches`, the cores by default): more
/// rankings at once than cores only share the cores, and every other kind of request would
/// wait behind them for its turn on a core.
///
/// The blocking work cannot be aborted from outside, so it is cancelled from inside: when this
/// future is dropped (the request timed out, or its client went away) or the server's request
/// timeout has passed, `work` stops at its next check ([`Cancel`]) instead of running on.
async fn with_query_vector<T: Send + 'static>(
    state: &AppState,
    req: SearchRequest,
    work: fn(&SearchService, &SearchRequest, Option<Embedding>, &Cancel) -> Result<T, SearchError>,
) -> Result<T, ApiError> {
    let service = state.service().clone();
    let cancel = match Instant::now().checked_add(state.limits().timeout()) {
        Some(deadline) => Cancel::with_deadline(deadline),
        None => Cancel::new(),
    };
    let _guard = cancel.on_drop();
    if !service.semantic() {
        // No model work: "more like this" is refused, texts go to BM25 only.
        let permit = ranking_slot(state, &service).await?;
        return blocking(move || {
            let _permit = permit;
            let query = service.query_embedding(&req)?;
            Ok(work(&service, &req, query, &cancel)?)
        })
        .await;
    }
    let req = Arc::new(req);
    let permit = state.slot(state.embed_slots(), "embedding").await?;
    let (service2, req2) = (service.clone(), req.clone());
    let started = Instant::now();
    let query = blocking(move || {
        let _permit = permit;
        Ok(service2.query_embedding(&req2)?)
    })
    .await?;
    state.metrics().observe_stage("embed", started.elapsed());
    let permit = ranking_slot(state, &service).await?;
    blocking(move || {
        let _permit = permit;
        Ok(work(&service, &req, query, &cancel)?)
    })
    .await
}

/// Waits for a search slot ([`AppState::slot`]), counted by `service` as waiting meanwhile:
/// while searches queue, rankings leave the other cores to them instead of running their lists
/// side by side.
async fn ranking_slot(
    state: &AppState,
    service: &SearchService,
) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    let _waiting = service.waiting();
    state.slot(state.search_slots(), "search").await
}

/// Search with a plain-English query, "more like this" (a record id, or an uploaded image as
/// multipart `image` beside a JSON `request` part), negative texts and exact filters.
#[utoipa::path(post, path = "/v1/search", tag = "search",
    request_body(content(
        (SearchBody = "application/json"),
        (SearchUpload = "multipart/form-data"),
    )),
    responses(
        (status = 200, description = "a page of ranked results, each explained, and what was read from the query", body = InterpretedSearch),
        (status = 400, description = "a bad field, named in the message", body = ErrorBody),
        (status = 409, description = "more like this without vectors", body = ErrorBody),
        (status = 413, description = "body or image too large", body = ErrorBody),
        (status = 503, description = "busy or timed out; retry", body = ErrorBody),
    ))]
pub async fn search(
    State(state): State<AppState>,
    caller: Caller,
    req: Request,
) -> Result<Json<InterpretedSearch>, ApiError> {
    caller.require(&state, Action::Search).await?;
    let (body, upload) = search_body::<SearchBody>(&state, req).await?;
    let upload_sha = upload.as_ref().map(|u| u.sha256.clone());
    let (body, request, interpreted) = interpreted_request(&state, body, upload).await?;
    let query = body.audit_summary(state.audit(), upload_sha.as_deref());
    let mut resp = run_search(&state, request).await?;
    if let Some(i) = &interpreted {
        resp.next_cursor = i.pin(resp.next_cursor.take());
    }
    if !caller.principal.can(Permission::ReadAudit) {
        // As the record view: which staff annotated a box is not a searcher's business.
        for hit in &mut resp.results {
            hit.hide_annotators();
        }
    }
    let ids = resp.results.iter().map(|h| h.id.clone()).collect();
    caller
        .audit(&state, Action::Search, Some(query), ids)
        .await?;
    Ok(Json(InterpretedSearch {
        response: resp,
        interpreted,
    }))
}

/// A search body as the engine runs it, the same for every endpoint that takes a search
/// (`/v1/search`, `/v1/facets`, collections, exports): the body with the filters read from its
/// query joined (its query kept as typed, for the trail), the request whose ranking text is
/// what the interpretation left, and the interpretation (`None` when `literal`).
pub(crate) async fn interpreted_request(
    state: &AppState,
    body: SearchBody,
    upload: Option<UploadedImage>,
) -> Result<(SearchBody, SearchRequest, Option<Interpretation>), ApiError> {
    let (body, interpreted) = interpret_body(state, body).await?;
    let mut request = body.to_request(state.limits(), state.fusion(), upload)?;
    if let Some(i) = &interpreted {
        request.text = i.ranking_text(&body.query).to_owned();
    }
    Ok((body, request, interpreted))
}

/// Reads filters from the body's query unless it is `literal`: the returned body keeps the
/// query as typed (so the trail records it so) with the filter joined, and the interpretation
/// gives the ranking text. Runs on the blocking pool (it reads the library's labels).
async fn interpret_body(
    state: &AppState,
    mut body: SearchBody,
) -> Result<(SearchBody, Option<Interpretation>), ApiError> {
    // A next page's cursor carries the day the first page read relative dates against.
    let (cursor, pinned) = unpin_cursor(body.cursor.as_deref())?;
    body.cursor = cursor;
    if body.literal {
        return Ok((body, None));
    }
    let n = body.query.chars().count();
    if n > state.limits().max_query_chars {
        // to_request refuses it, naming the field.
        return Ok((body, None));
    }
    if let Some(tz) = &body.time_zone {
        parse_time_zone(tz).map_err(|e| ApiError::invalid(format!("time_zone: {e}")))?;
    }
    let service = state.service().clone();
    let (query, tz) = (body.query.clone(), body.time_zone.clone());
    let started = Instant::now();
    let mut interpretation = blocking(move || {
        Ok(interpret_in(
            service.library(),
            &query,
            tz.as_deref(),
            chrono::Utc::now(),
            pinned,
        )?)
    })
    .await?;
    state
        .metrics()
        .observe_stage("interpret", started.elapsed());
    interpretation.apply(&mut body.filter);
    Ok((body, Some(interpretation)))
}

/// The multipart form of a search: a JSON `request` part and an `image` part.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // documents the form for the OpenAPI document only
pub struct SearchUpload {
    /// The search as JSON ([`SearchBody`]).
    request: SearchBody,
    /// The "more like this" image (JPEG, PNG, WebP or GIF).
    #[schema(format = Binary, value_type = String)]
    image: Vec<u8>,
}

/// What a multipart body's `request` part holds: a search, or a request carrying one.
pub(crate) trait UploadRequest: DeserializeOwned + Default {
    /// Its name in an error ("a search").
    const WHAT: &'static str;
}

impl UploadRequest for SearchBody {
    const WHAT: &'static str = "a search";
}

/// Reads a multipart form of a JSON `request` part (`T`) and an optional `image` part, the
/// image decoded (under a decoding slot) as a "more like this" upload.
async fn read_upload<T: UploadRequest>(
    state: &AppState,
    mut multipart: Multipart,
) -> Result<(T, Option<UploadedImage>), ApiError> {
    let mut body = None;
    let mut bytes = None;
    while let Some(field) = multipart.next_field().await? {
        let name = field.name().unwrap_or_default().to_owned();
        let data = field.bytes().await?;
        match name.as_str() {
            "request" => {
                body = Some(serde_json::from_slice::<T>(&data).map_err(|e| {
                    ApiError::invalid(format!(
                        "multipart part \"request\" is not {}: {e}",
                        T::WHAT
                    ))
                })?);
            }
            "image" => bytes = Some(data),
            other => {
                return Err(ApiError::invalid(format!(
                    "unknown multipart part {other:?} (expected \"request\" and \"image\")"
                )));
            }
        }
    }
    let body = body.unwrap_or_default();
    let Some(bytes) = bytes else {
        return Ok((body, None));
    };
    let limits = models::preprocess::DecodeLimits {
        max_pixels: state.limits().max_image_pixels,
        max_bytes: state.limits().max_body_bytes as u64,
    };
    let permit = state.slot(state.decode_slots(), "decoding").await?;
    let upload = blocking(move || {
        let _permit = permit;
        let image = models::preprocess::decode(&bytes, &limits)
            .map_err(|e| ApiError::from(e).prefixed("image"))?;
        Ok(UploadedImage {
            sha256: hex::encode(Sha256::digest(&bytes)),
            image: Arc::new(image),
        })
    })
    .await?;
    Ok((body, Some(upload)))
}

/// What `/v1/facets` answers: the counts, and what they were counted over.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FacetsAnswer {
    /// The counts.
    #[serde(flatten)]
    pub facets: Facets,
    /// What was counted.
    pub scope: FacetScope,
    /// Filters read from the query (absent without a query, or when `literal`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interpreted: Option<Interpretation>,
}

/// What facet counts were counted over: the whole filtered set, or (with a query) the
/// candidate set of the search for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FacetScope {
    /// The query as given (absent: the whole filtered set was counted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// sha256 of the uploaded "more like this" image, when the search had one (`POST`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_sha256: Option<String>,
    /// With a query, `like` or an image: the fused ranking's depth, [`FACET_DEPTH`] (1,000);
    /// the candidate set is the records it holds, those a search with `weights=depth=1000`
    /// pages through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depth: Option<usize>,
    /// Records counted over.
    pub records: u64,
}

/// Counts per label, dataset and month of each time axis over the filtered set or, with
/// `query` (or `like`), over the candidate set of that search: the records its fused ranking
/// holds at a fixed depth of 1,000, read as the search reads the query (filters from its words
/// unless `literal`).
#[utoipa::path(get, path = "/v1/facets", tag = "search", params(FilterQuery),
    responses(
        (status = 200, description = "facet counts and what they were counted over", body = FacetsAnswer),
        (status = 400, description = "a bad parameter, named in the message", body = ErrorBody),
        (status = 409, description = "like without vectors", body = ErrorBody),
        (status = 503, description = "busy or timed out; retry", body = ErrorBody),
    ))]
pub async fn facets(
    State(state): State<AppState>,
    caller: Caller,
    q: ApiQuery<FilterQuery>,
) -> Result<Json<FacetsAnswer>, ApiError> {
    caller.require(&state, Action::Facets).await?;
    let q = q.parsed()?;
    if q.sort.is_some() || q.desc.is_some() || q.limit.is_some() || q.cursor.is_some() {
        return Err(ApiError::invalid(
            "facets take filters and a search, not sort, desc, limit or cursor",
        ));
    }
    let params = q.params()?;
    let searched = q.query.as_deref().is_some_and(|t| !t.trim().is_empty()) || q.like.is_some();
    if !searched {
        if q.not.is_some() || q.weights.is_some() {
            return Err(ApiError::invalid(
                "not and weights shape a search: give a query or like with them",
            ));
        }
        let filter = params.to_filter_named(str::to_owned)?;
        let service = state.service().clone();
        let facets = blocking(move || Ok(service.catalog().facets(&filter)?)).await?;
        caller
            .audit(
                &state,
                Action::Facets,
                Some(audited_facets(&params)),
                vec![],
            )
            .await?;
        let records = facets.total;
        return Ok(Json(FacetsAnswer {
            facets,
            scope: FacetScope {
                query: None,
                image_sha256: None,
                depth: None,
                records,
            },
            interpreted: None,
        }));
    }
    let body = SearchBody {
        query: q.query.clone().unwrap_or_default(),
        like: q.like.clone(),
        not: comma_list("not", &q.not)?,
        filter: params,
        limit: None,
        cursor: None,
        weights: q.weights.clone(),
        literal: q.literal.unwrap_or(false),
        time_zone: q.time_zone.clone(),
    };
    Ok(Json(search_facets(&state, &caller, body, None).await?))
}

/// Counts over the candidate set of a search given as `/v1/search` takes it: JSON, or
/// multipart with an uploaded "more like this" image (the only way to count over an image
/// search, which `GET` cannot carry). The search's `limit` and `cursor` are refused: the
/// counts do not depend on a page.
#[utoipa::path(post, path = "/v1/facets", tag = "search",
    request_body(content(
        (SearchBody = "application/json"),
        (SearchUpload = "multipart/form-data"),
    )),
    responses(
        (status = 200, description = "facet counts over the search's candidates", body = FacetsAnswer),
        (status = 400, description = "a bad field, named in the message", body = ErrorBody),
        (status = 409, description = "like or an image without vectors", body = ErrorBody),
        (status = 413, description = "body or image too large", body = ErrorBody),
        (status = 503, description = "busy or timed out; retry", body = ErrorBody),
    ))]
pub async fn facets_of_search(
    State(state): State<AppState>,
    caller: Caller,
    req: Request,
) -> Result<Json<FacetsAnswer>, ApiError> {
    caller.require(&state, Action::Facets).await?;
    let (body, upload) = search_body::<SearchBody>(&state, req).await?;
    if body.limit.is_some() || body.cursor.is_some() {
        return Err(ApiError::invalid(
            "facets count a search's candidates, not a page: give no limit or cursor",
        ));
    }
    if body.query.trim().is_empty() && body.like.is_none() && upload.is_none() {
        return Err(ApiError::invalid(
            "nothing to count over: give a query, like or an image (GET /v1/facets counts the \
             filtered set)",
        ));
    }
    Ok(Json(search_facets(&state, &caller, body, upload).await?))
}

/// The body of a `POST` that takes a search (`T`: the search, or a request carrying one):
/// multipart (a JSON `request` part and an optional `image` part) or JSON.
pub(crate) async fn search_body<T: UploadRequest>(
    state: &AppState,
    req: Request,
) -> Result<(T, Option<UploadedImage>), ApiError> {
    let is_multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if is_multipart {
        let multipart = Multipart::from_request(req, state).await?;
        read_upload(state, multipart).await
    } else {
        let Json(body) = Json::<T>::from_request(req, state).await?;
        Ok((body, None))
    }
}

/// Facet counts over the candidates of `body`'s search (read as the search reads it), audited
/// as `facets` with the search's summary and the depth.
async fn search_facets(
    state: &AppState,
    caller: &Caller,
    body: SearchBody,
    upload: Option<UploadedImage>,
) -> Result<FacetsAnswer, ApiError> {
    let image_sha256 = upload.as_ref().map(|u| u.sha256.clone());
    let (body, request, interpreted) = interpreted_request(state, body, upload).await?;
    let mut summary = body.audit_summary(state.audit(), image_sha256.as_deref());
    if let Some(m) = summary.as_object_mut() {
        m.insert("depth".into(), FACET_DEPTH.into());
    }
    let counted = with_query_vector(state, request, SearchService::query_facets).await?;
    caller
        .audit(state, Action::Facets, Some(summary), vec![])
        .await?;
    Ok(FacetsAnswer {
        scope: FacetScope {
            query: Some(body.query),
            image_sha256,
            depth: Some(FACET_DEPTH),
            records: counted.facets.total,
        },
        facets: counted.facets,
        interpreted,
    })
}
