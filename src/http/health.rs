//! `/healthz` (liveness and readiness) and `/metrics` (Prometheus text format).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiError, AppState, ErrorBody, blocking};

/// Counters and histograms of the service.
pub(crate) struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    /// Requests answered 503 for lack of a work slot, by kind of work.
    pub(crate) busy: IntCounterVec,
    /// Time of each search stage (embed, keyword, vectors, fuse, records).
    stages: HistogramVec,
    /// Searches by the deepest their ranked lists went.
    depths: IntCounterVec,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("imagelens_http_requests_total", "HTTP requests answered"),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "imagelens_http_request_duration_seconds",
                "Time to the response head, per route",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["route"],
        )
        .expect("valid metric");
        let busy = IntCounterVec::new(
            Opts::new(
                "imagelens_busy_rejections_total",
                "Requests answered 503 because no work slot freed in time",
            ),
            &["work"],
        )
        .expect("valid metric");
        let stages = HistogramVec::new(
            HistogramOpts::new(
                "imagelens_search_stage_seconds",
                "Time of each stage of a search: interpret (filters read from the query), embed (the \
                 query vector), keyword (BM25), \
                 vectors (the vector lists), fuse (rank fusion), records (the page's records)",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["stage"],
        )
        .expect("valid metric");
        let depths = IntCounterVec::new(
            Opts::new(
                "imagelens_search_depth_total",
                "Searches by the deepest their ranked lists went (a first page that lists 100 \
                 deep settle is 100)",
            ),
            &["depth"],
        )
        .expect("valid metric");
        for m in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(busy.clone()),
            Box::new(stages.clone()),
            Box::new(depths.clone()),
        ] {
            registry.register(m).expect("metric registered once");
        }
        Self {
            registry,
            requests,
            latency,
            busy,
            stages,
            depths,
        }
    }

    /// Records the time a search spent in `stage`.
    pub(crate) fn observe_stage(&self, stage: &str, took: Duration) {
        self.stages
            .with_label_values(&[stage])
            .observe(took.as_secs_f64());
    }

    /// Counts a search whose lists went `depth` deep.
    pub(crate) fn observe_depth(&self, depth: usize) {
        self.depths
            .with_label_values(&[depth.to_string().as_str()])
            .inc();
    }

    pub(crate) fn observe(&self, route: &str, method: &str, status: StatusCode, took: Duration) {
        self.requests
            .with_label_values(&[route, method, status.as_str()])
            .inc();
        self.latency
            .with_label_values(&[route])
            .observe(took.as_secs_f64());
    }

    fn render(&self, extra: &[(&str, &str, f64)]) -> String {
        let mut buf = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        let mut text = String::from_utf8(buf).expect("prometheus text is utf-8");
        for (name, help, value) in extra {
            text.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
            ));
        }
        text
    }
}

/// `/healthz` answer. It needs no account, so it says whether the service is ready and
/// nothing about the library (its size and model are under `/v1/info` and `/metrics`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
}

/// Liveness and readiness: the keyword index answers.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "the service answers", body = Health),
              (status = 500, description = "the index does not answer", body = ErrorBody)))]
pub async fn healthz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    let service = state.service().clone();
    // Readiness: the index answers (its answer is not shown).
    blocking(move || Ok(service.library().keyword().len())).await?;
    Ok(Json(Health {
        status: "ok".into(),
    }))
}

/// Prometheus metrics: requests per route and status, latency histograms, busy rejections,
/// library size.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let m = state.service().library().manifest();
    let records = state.service().library().keyword().len() as f64;
    let (appends, batches) = state.audit().write_counts();
    let text = state.metrics().render(&[
        (
            "imagelens_library_records",
            "Records in the library",
            records,
        ),
        (
            "imagelens_library_points",
            "Vector points at the last ingest",
            m.counts.points as f64,
        ),
        (
            "imagelens_semantic_enabled",
            "1 when semantic search is on",
            f64::from(u8::from(state.service().semantic())),
        ),
        (
            "imagelens_audit_appends",
            "Audit entries this process has written since it started",
            appends as f64,
        ),
        (
            "imagelens_audit_batches",
            "Writes of the audit trail since the process started: each is one sync and one head \
             for the entries appended together (fewer than the entries under concurrent load)",
            batches as f64,
        ),
    ]);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}
