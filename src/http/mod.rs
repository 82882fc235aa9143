//! The HTTP API (`imagelens serve`): everything the CLI does, for programs, under `/v1`.
//!
//! Routes by resource: [`search`] (search, facets), [`catalog`] (look-ups and info, no model),
//! [`records`] (a record, its image, its thumbnail), [`collections`] (saved sets and data-set
//! export), [`admin`] (accounts, tokens, the audit trail, retention, deletions of one record or
//! many), [`health`] (`/healthz`, `/metrics`) and [`openapi`] (`/v1/openapi.json`, generated
//! from these handlers);
//! [`web`] serves the web page (`/`, `/ui/*`), a client of this API embedded in the binary.
//!
//! Invariants:
//! - Every route but `/healthz` and the page's static files (which carry no data) needs an account ([`auth`]: a bearer token or HTTP Basic); every
//!   handler checks its [`Permission`] server-side through [`auth::Caller`].
//!   The check comes before the handler reads the body or query: those arrive as [`ApiJson`] /
//!   [`ApiQuery`] ([`extract`]), which hold a malformed one's 400 until the handler unpacks
//!   them after `require`, so a caller without the permission gets 403, never 400.
//! - Every read of record data (search, look-up, record, image, thumbnail, export) is written
//!   to the audit trail before the data is sent; if the entry cannot be written the request
//!   fails. Refusals are recorded too.
//! - Every index, store, model or image call is blocking and runs on the blocking pool
//!   (`blocking`); the async runtime only moves bytes.
//! - Embedding, image decoding and ranking (a search's BM25 and vector lists) hold a slot of a
//!   bounded semaphore each; a request that cannot get one within `limits.queue_wait_ms` is
//!   answered 503 `busy`, so overload sheds load instead of stalling every request behind it.
//!   Look-ups, records and thumbnails need no ranking slot: they do not queue behind searches.
//! - Every error, ours or axum's, has the shape of [`error::ErrorBody`] (except hyper's own
//!   414 and 431, answered before any of our code runs).
//! - [`AppState`] reads accounts, tokens, retention policy and collections once and writes
//!   them back whole on each change. That is only sound because the process that serves them
//!   is their one writer: `imagelens serve` holds the data-directory lock
//!   ([`crate::app::lock_data_dir`]) for its whole life, and the CLI refuses to change them
//!   meanwhile, so no file is ever overwritten from a stale copy and a revocation, a disabled
//!   account or a legal hold made through the API applies to the very next request.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower_http::timeout::TimeoutLayer;

use crate::app::App;
use crate::collections::Collections;
use crate::governance::accounts::Accounts;
use crate::governance::audit::AuditLog;
use crate::governance::redact::Redaction;
use crate::governance::retention::Retention;
use crate::search::SearchService;
use crate::settings::Limits;

pub mod admin;
pub mod auth;
pub mod catalog;
pub mod collections;
pub mod error;
pub mod extract;
pub mod health;
pub mod openapi;
pub mod records;
pub mod search;
pub mod session;
pub mod web;

pub use crate::governance::accounts::Permission;
pub use error::{ApiError, ErrorBody};
pub use extract::{ApiJson, ApiQuery};

pub use crate::app::OpenError;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    service: Arc<SearchService>,
    app: App,
    redaction: Redaction,
    limits: Limits,
    embed_slots: Arc<Semaphore>,
    decode_slots: Arc<Semaphore>,
    search_slots: Arc<Semaphore>,
    metrics: health::Metrics,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("service", &self.0.service)
            .field("limits", &self.0.limits)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// State over an open search service: opens the library's collections, accounts, audit
    /// trail and retention policy ([`App::around`]). The caller holds the data directory's
    /// lock, or is a test that owns the directory alone: the state assumes it is the only
    /// writer of those files (see [`crate::app`]).
    ///
    /// # Errors
    /// When one of those files cannot be read.
    pub fn new(
        service: Arc<SearchService>,
        limits: Limits,
        redaction: Redaction,
    ) -> Result<Self, OpenError> {
        let app = App::around(service.library().clone())?;
        Ok(Self::with_app(app, service, limits, redaction))
    }

    /// State over an [`App`] opened by the composition root and a search service over the
    /// same library.
    pub fn with_app(
        app: App,
        service: Arc<SearchService>,
        limits: Limits,
        redaction: Redaction,
    ) -> Self {
        debug_assert!(
            app.library()
                .is_ok_and(|library| Arc::ptr_eq(library, service.library()))
        );
        Self(Arc::new(Inner {
            embed_slots: Arc::new(Semaphore::new(limits.max_concurrent_embeds)),
            decode_slots: Arc::new(Semaphore::new(limits.max_concurrent_decodes)),
            search_slots: Arc::new(Semaphore::new(limits.max_concurrent_searches)),
            app,
            redaction,
            service,
            limits,
            metrics: health::Metrics::new(),
        }))
    }

    /// The same library, stores and trail under other limits (one process must never open a
    /// library's files twice: two in-memory copies of the accounts would overwrite each
    /// other's changes).
    pub fn with_limits(&self, limits: Limits) -> Self {
        let i = &self.0;
        Self(Arc::new(Inner {
            service: i.service.clone(),
            app: i.app.clone(),
            redaction: i.redaction.clone(),
            embed_slots: Arc::new(Semaphore::new(limits.max_concurrent_embeds)),
            decode_slots: Arc::new(Semaphore::new(limits.max_concurrent_decodes)),
            search_slots: Arc::new(Semaphore::new(limits.max_concurrent_searches)),
            metrics: health::Metrics::new(),
            limits,
        }))
    }

    /// The same state with other redaction settings.
    pub fn with_redaction(&self, redaction: Redaction) -> Self {
        let mut next = self.with_limits(self.limits().clone());
        Arc::get_mut(&mut next.0)
            .expect("just created, not shared")
            .redaction = redaction;
        next
    }

    /// The same state with other default fusion weights (`[fusion]`).
    pub fn with_fusion(&self, fusion: crate::search::Fusion) -> Self {
        let mut next = self.with_limits(self.limits().clone());
        let inner = Arc::get_mut(&mut next.0).expect("just created, not shared");
        inner.app = inner.app.clone().with_fusion(fusion);
        next
    }

    /// The query service.
    pub fn service(&self) -> &Arc<SearchService> {
        &self.0.service
    }

    /// The library's files, opened once ([`App`]).
    pub fn app(&self) -> &App {
        &self.0.app
    }

    /// The collections.
    pub fn collections(&self) -> &Collections {
        self.0.app.collections()
    }

    /// The accounts.
    pub fn accounts(&self) -> &Accounts {
        self.0.app.accounts()
    }

    /// The audit trail.
    pub fn audit(&self) -> &AuditLog {
        self.0.app.audit()
    }

    /// The retention policy.
    pub fn retention(&self) -> &Retention {
        self.0.app.retention()
    }

    /// Default fusion weights of searches (`[fusion]`); a request's `weights` overlay them.
    pub fn fusion(&self) -> crate::search::Fusion {
        self.0.app.fusion()
    }

    /// Which labels are sensitive.
    pub fn redaction(&self) -> &Redaction {
        &self.0.redaction
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.0.limits
    }

    /// The embedding slots (tests hold them to simulate overload).
    pub fn embed_slots(&self) -> &Arc<Semaphore> {
        &self.0.embed_slots
    }

    /// The decoding slots.
    pub fn decode_slots(&self) -> &Arc<Semaphore> {
        &self.0.decode_slots
    }

    /// The ranking slots (searches and query facets).
    pub fn search_slots(&self) -> &Arc<Semaphore> {
        &self.0.search_slots
    }

    fn metrics(&self) -> &health::Metrics {
        &self.0.metrics
    }

    /// Waits up to `limits.queue_wait_ms` for a slot of `slots`, else 503 `busy`.
    async fn slot(
        &self,
        slots: &Arc<Semaphore>,
        what: &str,
    ) -> Result<OwnedSemaphorePermit, ApiError> {
        match tokio::time::timeout(self.limits().queue_wait(), slots.clone().acquire_owned()).await
        {
            Ok(Ok(permit)) => Ok(permit),
            _ => {
                self.metrics().busy.with_label_values(&[what]).inc();
                Err(ApiError::busy(format!(
                    "the server is busy with other {what} work; retry shortly"
                )))
            }
        }
    }
}

/// Runs blocking work on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(ApiError::internal)?
}

/// The whole API over `state`.
pub fn router(state: AppState) -> Router {
    let limits = state.limits().clone();
    let timed = Router::new()
        .route("/v1/search", post(search::search))
        .route("/v1/lookup", get(catalog::lookup))
        .route(
            "/v1/facets",
            get(search::facets).post(search::facets_of_search),
        )
        .route("/v1/info", get(catalog::info))
        .route(
            "/v1/records/{id}",
            get(records::record).delete(admin::delete_record),
        )
        .route("/v1/records/{id}/image", get(records::image))
        .route("/v1/records/{id}/thumbnail", get(records::thumbnail))
        .route(
            "/v1/collections",
            get(collections::list).post(collections::create),
        )
        .route(
            "/v1/collections/{name}",
            get(collections::get)
                .patch(collections::update)
                .delete(collections::delete),
        )
        .route("/v1/deletions", post(admin::delete_records))
        .route("/v1/audit", get(admin::audit_query))
        .route("/v1/audit/verify", get(admin::audit_verify))
        .route(
            "/v1/accounts",
            get(admin::list_accounts).post(admin::create_account),
        )
        .route(
            "/v1/accounts/{name}",
            axum::routing::patch(admin::update_account).delete(admin::delete_account),
        )
        .route(
            "/v1/tokens",
            get(admin::list_tokens).post(admin::issue_token),
        )
        .route("/v1/whoami", get(admin::whoami))
        .route(
            "/v1/session",
            get(session::current)
                .post(session::start)
                .delete(session::end),
        )
        .route(
            "/v1/tokens/{id}",
            axum::routing::delete(admin::revoke_token),
        )
        .route(
            "/v1/retention",
            get(admin::get_retention).put(admin::put_retention),
        )
        .route("/v1/retention/run", post(admin::run_retention))
        .route("/v1/openapi.json", get(openapi::document))
        .route("/metrics", get(health::metrics))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            limits.timeout(),
        ));
    // Exports stream for as long as the archive takes; only their start is bounded (by the
    // slot wait and by checking every image exists before the first byte).
    let streaming = Router::new()
        .route(
            "/v1/collections/{name}/export",
            get(collections::export_collection),
        )
        .route("/v1/export", post(collections::export_search));
    let protected = timed
        .merge(streaming)
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ));
    Router::new()
        .route("/healthz", get(health::healthz))
        .merge(web::routes())
        .merge(protected)
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(middleware::map_response(error::json_errors))
        .layer(middleware::from_fn(error::log_causes))
        .layer(middleware::from_fn(web::no_store_by_default))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// Middleware: request counts and latency per route for `/metrics`.
async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().as_str().to_owned();
    let start = Instant::now();
    let resp = next.run(req).await;
    state
        .metrics()
        .observe(&route, &method, resp.status(), start.elapsed());
    resp
}
