//! `/v1/openapi.json`: the OpenAPI 3.1 document, generated from the handlers' annotations and
//! the request and response types (utoipa), so it cannot drift from the code.

use axum::Json;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::auth::Caller;
use super::{admin, catalog, collections, health, records, search, session};

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
        catalog::lookup,
        search::facets,
        search::facets_of_search,
        catalog::info,
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
        admin::delete_record,
        admin::delete_records,
        admin::audit_query,
        admin::audit_verify,
        admin::list_accounts,
        admin::create_account,
        admin::update_account,
        admin::delete_account,
        admin::issue_token,
        admin::list_tokens,
        admin::revoke_token,
        admin::whoami,
        session::start,
        session::current,
        session::end,
        admin::get_retention,
        admin::put_retention,
        admin::run_retention,
        document,
        health::healthz,
        health::metrics,
    ),
    // Schemas only reached through query parameters are not collected from the paths.
    components(schemas(indexer::record::DateAxis)),
    modifiers(&Security),
    tags(
        (name = "search", description = "Hybrid search and facets"),
        (name = "audit", description = "Look-ups by filename and date"),
        (name = "records", description = "Records, images, thumbnails"),
        (name = "collections", description = "Saved sets and data-set export"),
        (name = "library", description = "Library state"),
        (name = "admin", description = "Accounts, tokens, retention, deletion"),
        (name = "health", description = "Liveness and metrics"),
    )
)]
pub struct ApiDoc;

/// Every route but `/healthz` takes a bearer token or HTTP Basic credentials.
struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)),
        );
        doc.security = Some(vec![
            SecurityRequirement::new("bearer", Vec::<String>::new()),
            SecurityRequirement::new("basic", Vec::<String>::new()),
        ]);
        // `/healthz` is open.
        if let Some(item) = doc.paths.paths.get_mut("/healthz")
            && let Some(op) = item.get.as_mut()
        {
            op.security = Some(vec![SecurityRequirement::default()]);
        }
    }
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "library",
    responses((status = 200, description = "the OpenAPI document", content_type = "application/json")))]
pub async fn document(_caller: Caller) -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
