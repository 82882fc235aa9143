//! One error shape for every response: `{"error": {"code", "message"}}`.
//!
//! Caller faults are 4xx with a message naming the bad field or value; our faults are 500 with
//! "internal error" and the cause logged, never sent. The cause travels in the response's
//! extensions ([`Cause`]) and is logged once, with the route and method, by the router's
//! layer [`log_causes`], so no handler logs an error it answers. Responses that axum or tower produce on
//! their own (unknown route, wrong method, body too large, extractor rejections, timeouts) are
//! rewritten into the same shape by [`json_errors`].

use axum::Json;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::collections::CollectionError;
use crate::export::ExportError;
use crate::governance::accounts::AccountError;
use crate::governance::audit::AuditError;
use crate::governance::deletion::DeletionError;
use crate::governance::retention::RetentionError;
use crate::governance::{AdminError, Refusal};
use crate::search::SearchError;
use indexer::Fault;

/// The body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid_request`, `not_found`, `busy`.
    pub code: String,
    /// Human-readable message naming the bad field or value.
    pub message: String,
}

/// Longest error message answered, in characters: messages name the bad field and may quote
/// the bad value (serde's do), which may be megabytes of the request.
pub const MAX_MESSAGE_CHARS: usize = 1000;

/// `message`, cut to [`MAX_MESSAGE_CHARS`] characters.
fn bounded(message: String) -> String {
    if message.chars().count() <= MAX_MESSAGE_CHARS {
        return message;
    }
    let mut cut: String = message.chars().take(MAX_MESSAGE_CHARS).collect();
    cut.push_str("… (cut)");
    cut
}

/// An error answered to the caller.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// What the log gets and the caller does not (our faults only).
    cause: Option<Cause>,
}

/// Why a request failed on our side, for the log only: set on the response's extensions by
/// [`ApiError`] and logged once by the router's layer [`log_causes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// The underlying error's text.
    pub error: String,
    /// Whether it is a dependency being unavailable (logged as a warning) rather than a fault.
    pub unavailable: bool,
}

impl Cause {
    /// Logs the cause of a failed request, once, with where it happened.
    pub fn log(&self, method: &str, route: &str, status: StatusCode) {
        if self.unavailable {
            tracing::warn!(method, route, status = status.as_u16(), error = %self.error, "dependency unavailable");
        } else {
            tracing::error!(method, route, status = status.as_u16(), error = %self.error, "internal error");
        }
    }
}

impl ApiError {
    /// Any status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            cause: None,
        }
    }

    /// 400: the request is wrong.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 503: overloaded; try again.
    pub fn busy(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "busy", message)
    }

    /// 500; the cause is logged (once, by the router's layer), not sent.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
        .with_cause(cause.to_string(), false)
    }

    fn with_cause(mut self, error: String, unavailable: bool) -> Self {
        self.cause = Some(Cause { error, unavailable });
        self
    }

    /// The cause the log gets, if this is our fault.
    pub fn cause(&self) -> Option<&Cause> {
        self.cause.as_ref()
    }

    /// The same error with `what: ` before its message (naming the field it is about).
    pub fn prefixed(mut self, what: &str) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The message sent to the caller.
    pub fn message(&self) -> &str {
        &self.message
    }

    fn by_fault(fault: Fault, code: &'static str, err: impl std::fmt::Display) -> Self {
        match fault {
            Fault::User => Self::new(StatusCode::BAD_REQUEST, code, err.to_string()),
            Fault::Internal => Self::internal(err),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.into(),
                message: bounded(self.message),
            },
        };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(cause) = self.cause {
            resp.extensions_mut().insert(cause);
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

/// A refused action is 403 `forbidden` with the refusal's message; a refusal that could not be
/// recorded is 500.
impl From<Refusal> for ApiError {
    fn from(e: Refusal) -> Self {
        match e {
            Refusal::Forbidden { .. } => {
                Self::new(StatusCode::FORBIDDEN, "forbidden", e.to_string())
            }
            Refusal::Unrecorded(cause) => cause.into(),
        }
    }
}

/// A trail that cannot be read or written is 500, logged as `audit trail: <cause>`.
impl From<AuditError> for ApiError {
    fn from(e: AuditError) -> Self {
        Self::internal(format!("audit trail: {e}"))
    }
}

/// An unknown account is 404, a taken name or removing the last admin 409, bad credentials 401,
/// other caller faults 400.
impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        match &e {
            AccountError::NotFound(_) => ApiError::not_found(e.to_string()),
            AccountError::Exists(_) => ApiError::new(StatusCode::CONFLICT, "exists", e.to_string()),
            AccountError::LastAdmin => {
                ApiError::new(StatusCode::CONFLICT, "last_admin", e.to_string())
            }
            _ if e.is_unauthenticated() => {
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", e.to_string())
            }
            _ => match e.fault() {
                Fault::User => ApiError::invalid(e.to_string()),
                Fault::Internal => ApiError::internal(e),
            },
        }
    }
}

/// A retention policy that cannot be saved is the request's fault (400); a saved policy that
/// cannot be run is the library's state (409, [`AdminError::Retention`] below).
impl From<RetentionError> for ApiError {
    fn from(e: RetentionError) -> Self {
        match e {
            RetentionError::InvalidSchedule { .. } | RetentionError::InvalidHold { .. } => {
                ApiError::invalid(e.to_string())
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<DeletionError> for ApiError {
    fn from(e: DeletionError) -> Self {
        match e {
            DeletionError::Held { .. } => {
                ApiError::new(StatusCode::CONFLICT, "legal_hold", e.to_string())
            }
            DeletionError::NothingFound(_) => ApiError::not_found(e.to_string()),
            other => ApiError::internal(other),
        }
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Refused(r) => r.into(),
            AdminError::Account(a) => a.into(),
            AdminError::Deletion(d) => d.into(),
            AdminError::Audit(cause) => cause.into(),
            AdminError::Retention(
                r @ (RetentionError::InvalidSchedule { .. } | RetentionError::InvalidHold { .. }),
            ) => Self::new(
                StatusCode::CONFLICT,
                "invalid_policy",
                format!(
                    "the saved retention policy cannot be run; correct it with PUT \
                     /v1/retention: {r}"
                ),
            ),
            AdminError::Retention(other) => Self::internal(other),
            AdminError::NoToken(_) | AdminError::NoDataset(_) => Self::not_found(e.to_string()),
            AdminError::NoAccount | AdminError::FirstNotAdmin | AdminError::NothingNamed => {
                Self::invalid(e.to_string())
            }
        }
    }
}

impl From<SearchError> for ApiError {
    fn from(e: SearchError) -> Self {
        match e {
            SearchError::Invalid(m) => Self::invalid(m),
            SearchError::Unavailable(m) => Self::new(StatusCode::CONFLICT, "unavailable", m),
            SearchError::Cancelled(m) => Self::new(StatusCode::SERVICE_UNAVAILABLE, "timeout", m),
            SearchError::Indexer(e) => e.into(),
            other => {
                let fault = other.fault();
                Self::by_fault(fault, "invalid_request", other)
            }
        }
    }
}

/// A vector store server that is down, overloaded or too slow is 503 `store_unavailable` (with
/// `Retry-After`, like every 503): the request may succeed later and nothing was lost.
impl From<indexer::Error> for ApiError {
    fn from(e: indexer::Error) -> Self {
        match e {
            indexer::Error::Store(indexer::store::StoreError::Unavailable { .. }) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the vector store is unavailable; retry shortly",
            )
            .with_cause(e.to_string(), true),
            e => Self::by_fault(e.fault(), "invalid_request", e),
        }
    }
}

impl From<CollectionError> for ApiError {
    fn from(e: CollectionError) -> Self {
        match e {
            CollectionError::InvalidName(_) | CollectionError::Invalid(_) => {
                Self::invalid(e.to_string())
            }
            CollectionError::NotFound(_) => Self::not_found(e.to_string()),
            CollectionError::Exists(_) => Self::new(StatusCode::CONFLICT, "exists", e.to_string()),
            CollectionError::Store(
                inner @ indexer::Error::Store(indexer::store::StoreError::Unavailable { .. }),
            ) => inner.into(),
            CollectionError::Store(inner) => Self::internal(inner),
        }
    }
}

impl From<ExportError> for ApiError {
    fn from(e: ExportError) -> Self {
        // The caller's faults here are records that cannot be exported as asked (moved or
        // changed files, clashing names): the library's state, not the request's syntax.
        match e.fault() {
            Fault::User => Self::new(StatusCode::CONFLICT, "export_unavailable", e.to_string()),
            Fault::Internal => Self::internal(e),
        }
    }
}

impl From<models::ImageError> for ApiError {
    fn from(e: models::ImageError) -> Self {
        match &e {
            models::ImageError::TooManyPixels { .. }
            | models::ImageError::TooManyBytes { .. }
            | models::ImageError::TooLarge(_) => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.to_string())
            }
            _ => Self::by_fault(e.fault(), "bad_image", e),
        }
    }
}

/// Rejections of axum's extractors, in our shape: their text names the bad field.
macro_rules! from_rejection {
    ($($t:ty),*) => {$(
        impl From<$t> for ApiError {
            fn from(e: $t) -> Self {
                let status = e.status();
                let code = if status == StatusCode::PAYLOAD_TOO_LARGE { "too_large" } else { "invalid_request" };
                Self::new(status, code, e.body_text())
            }
        }
    )*};
}

from_rejection!(
    axum::extract::rejection::JsonRejection,
    axum::extract::rejection::QueryRejection,
    axum::extract::multipart::MultipartRejection,
    axum::extract::multipart::MultipartError
);

/// Middleware: logs the [`Cause`] of a failed request once, with its method and route (the
/// route's pattern, not the path: a path may hold record ids).
pub async fn log_causes(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let resp = next.run(req).await;
    if let Some(cause) = resp.extensions().get::<Cause>() {
        cause.log(&method, &route, resp.status());
    }
    resp
}

/// The code for a status that axum or tower answered on their own.
fn code_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_request",
        StatusCode::REQUEST_TIMEOUT | StatusCode::SERVICE_UNAVAILABLE => "timeout",
        s if s.is_server_error() => "internal",
        _ => "invalid_request",
    }
}

/// Middleware: rewrites non-JSON error responses into [`ErrorBody`], keeping their status and
/// their text as the message (axum's rejection texts name the bad field).
pub async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = match axum::body::to_bytes(body, 64 * 1024).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_owned(),
        Err(_) => String::new(),
    };
    let message = if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
        "internal error".to_owned()
    } else if text.is_empty() {
        match status {
            StatusCode::NOT_FOUND => "no such route".to_owned(),
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::REQUEST_TIMEOUT => {
                "the request took longer than the server's timeout".to_owned()
            }
            s => s.canonical_reason().unwrap_or("error").to_lowercase(),
        }
    } else {
        text
    };
    let body = ErrorBody {
        error: ErrorDetail {
            code: code_for(status).into(),
            message: bounded(message),
        },
    };
    let mut out = Response::from_parts(
        parts,
        Body::from(serde_json::to_vec(&body).expect("error body serialises")),
    );
    out.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    out.headers_mut().remove(header::CONTENT_LENGTH);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use indexer::store::StoreError;

    #[test]
    fn an_unavailable_vector_store_is_503_with_retry_after_and_no_internals() {
        let store = StoreError::Unavailable {
            url: "http://10.1.2.3:6334".into(),
            reason: "tcp connect error".into(),
        };
        for err in [
            ApiError::from(indexer::Error::from(StoreError::Unavailable {
                url: "http://10.1.2.3:6334".into(),
                reason: "tcp connect error".into(),
            })),
            ApiError::from(SearchError::from(store)),
        ] {
            assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(err.code(), "store_unavailable");
            assert!(!err.message().contains("10.1.2.3"), "{}", err.message());
            let resp = err.into_response();
            assert_eq!(resp.headers().get(header::RETRY_AFTER).unwrap(), "1");
        }
        let other = ApiError::from(indexer::Error::from(StoreError::Backend("x".into())));
        assert_eq!(other.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    /// A writer the test subscriber logs into.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_internal_cause_is_logged_once_with_its_route_and_never_sent() {
        use tower::ServiceExt;
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let app = axum::Router::new()
            .route(
                "/v1/records/{id}",
                axum::routing::get(|| async {
                    ApiError::internal("disk on fire at /srv/secret/path")
                }),
            )
            .route(
                "/v1/ok",
                axum::routing::get(|| async { ApiError::invalid("bad field") }),
            )
            .layer(axum::middleware::from_fn(log_causes));
        let resp = app
            .clone()
            .oneshot(
                axum::http::Request::get("/v1/records/abc123")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        assert!(!String::from_utf8_lossy(&body).contains("fire"));
        let resp = app
            .oneshot(
                axum::http::Request::get("/v1/ok")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert_eq!(log.matches("disk on fire").count(), 1, "{log}");
        assert!(log.contains("route=\"/v1/records/{id}\""), "{log}");
        assert!(
            !log.contains("abc123"),
            "the path's record id is not logged: {log}"
        );
        assert!(
            !log.contains("bad field"),
            "caller faults are not logged: {log}"
        );
    }
}
