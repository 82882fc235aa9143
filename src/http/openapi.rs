//! `/v1/openapi.json`: the OpenAPI 3.1 document, generated from the handlers' annotations and
//! the request and response types (utoipa), so it cannot drift from the code.

use axum::Json;
use utoipa::OpenApi;

use super::{collections, health, records, search};

/// The API's OpenAPI description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "imagelens",
        description = "Plain-English search over a curated library of annotated imagery: \
                       hybrid search, look-ups for auditors, collections and data-set export."
    ),
    paths(
        search::search,
        search::lookup,
        search::facets,
        search::info,
        records::record,
        records::image,
        records::thumbnail,
        collections::list,
        collections::create,
        collections::get,
        collections::update,
        collections::delete,
        collections::export_collection,
        collections::export_search,
        document,
        health::healthz,
        health::metrics,
    ),
    // Schemas only reached through query parameters are not collected from the paths.
    components(schemas(indexer::record::DateAxis)),
    tags(
        (name = "search", description = "Hybrid search and facets"),
        (name = "audit", description = "Look-ups by filename and date"),
        (name = "records", description = "Records, images, thumbnails"),
        (name = "collections", description = "Saved sets and data-set export"),
        (name = "library", description = "Library state"),
        (name = "health", description = "Liveness and metrics"),
    )
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "library",
    responses((status = 200, description = "the OpenAPI document", content_type = "application/json")))]
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
