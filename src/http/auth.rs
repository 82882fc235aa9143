//! Authentication (who is calling), authorisation (may they) and the audit entry of each call.
//!
//! [`authenticate`] runs before every protected route: it turns the `Authorization` header
//! (`Bearer <token>` or `Basic <name:password>`), or without one the web page's session cookie
//! (whose state-changing requests must also pass the CSRF checks of [`session`]), into a
//! [`Principal`] in the request's
//! extensions, or answers 401 (a failed sign-in is audited and counted; too many answer 429,
//! and password checks wait for a bounded pool, else 503). Handlers take a [`Caller`] (the
//! request's [`Actor`]) and call [`Caller::require`] with the route's [`Action`] (its
//! permission comes from the one table in [`crate::governance`]; a refusal is audited and
//! answered 403), then [`Caller::audit`] with what they are about to disclose, before
//! disclosing it. Both run the shared [`Actor`] methods on the blocking pool.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState, blocking, session};
use crate::governance::accounts::{AccountError, Credentials, Permission, Principal, address_key};
use crate::governance::audit::NewEntry;
use crate::governance::{Action, Actor, AdminError, Desk};

/// Longest stated purpose kept.
const MAX_PURPOSE: usize = 500;

/// How long a password sign-in waits for one of the [`Accounts::password_slots`] before it is
/// answered 503.
const PASSWORD_SLOT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Middleware: authenticates the request or answers 401.
///
/// A failed sign-in (bad password, unknown account, bad, expired or revoked token, disabled
/// account) is written to the audit trail as action `sign_in` with outcome `failed` (wrong
/// credentials) or `denied` (right credentials of an expired, revoked or disabled token or
/// account), the peer address and the name as typed (bounded), never the password or secret.
/// Failures are counted per account name (known or not, alike) and per address: after
/// [`MAX_FAILED_SIGN_INS`] within [`THROTTLE_WINDOW`] further attempts are answered 429 with
/// `Retry-After`, before any check, so the answer does not say whether the account exists.
/// Password checks wait at most `PASSWORD_SLOT_WAIT` (2 s) for a slot, else 503.
///
/// [`Accounts::password_slots`]: crate::governance::accounts::Accounts::password_slots
/// [`MAX_FAILED_SIGN_INS`]: crate::governance::accounts::MAX_FAILED_SIGN_INS
/// [`THROTTLE_WINDOW`]: crate::governance::accounts::THROTTLE_WINDOW
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let header_value = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // Without an Authorization header, the web page's session cookie (see [`session`]).
    let cookie = if header_value.is_none() {
        session::secret(req.headers())
    } else {
        None
    };
    let credentials = match (header_value, &cookie) {
        (Some(v), _) => Credentials::parse(&v),
        (None, Some(secret)) => Credentials::Bearer(secret.trim().to_owned()),
        (None, None) => {
            return unauthorized(
                "authentication required: send `Authorization: Bearer <token>` (or sign in on \
                 the web page)",
            );
        }
    };
    let address = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let keys: Vec<String> = address
        .map(|a| address_key(a.ip()))
        .into_iter()
        .chain(credentials.account_key())
        .collect();
    if let Some(wait) = state.accounts().throttle().blocked(&keys) {
        return throttled(wait);
    }
    // Basic auth runs argon2 (tens of milliseconds, about 17 MiB): a bounded number at once,
    // off the async workers.
    let slot = if matches!(credentials, Credentials::Basic { .. }) {
        let slots = state.accounts().password_slots().clone();
        match tokio::time::timeout(PASSWORD_SLOT_WAIT, slots.acquire_owned()).await {
            Ok(Ok(permit)) => Some(permit),
            _ => {
                return ApiError::busy(
                    "the server is busy checking other passwords; retry shortly",
                )
                .into_response();
            }
        }
    } else {
        None
    };
    let accounts_state = state.clone();
    let checked = credentials.clone();
    let result = blocking(move || Ok(accounts_state.accounts().authenticate(&checked))).await;
    drop(slot);
    match result {
        Ok(Ok(principal)) => {
            if let Some(key) = credentials.account_key() {
                state.accounts().throttle().clear(&key);
            }
            if let Some(secret) = &cookie {
                let csrf = session::csrf_of(secret);
                if let Err(e) = session::check(&req, &csrf) {
                    return e.into_response();
                }
                req.extensions_mut().insert(session::CookieSession { csrf });
            }
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        // The accounts module gives one message for unknown accounts, wrong passwords and bad
        // tokens (no account enumeration); expiry, revocation and disabling are told apart.
        Ok(Err(e)) => {
            let now_blocked = state.accounts().throttle().fail(&keys);
            audit_failed_sign_in(&state, &credentials, address, &e, now_blocked).await;
            let mut resp = unauthorized(&e.to_string());
            if cookie.is_some() {
                // A session that no longer works: the browser forgets it.
                resp.headers_mut()
                    .insert(header::SET_COOKIE, session::clear_cookie(req.headers()));
            }
            resp
        }
        Err(e) => e.into_response(),
    }
}

/// Writes the audit entry of a failed sign-in. A trail that cannot be written is logged, not
/// answered: the request is refused either way.
async fn audit_failed_sign_in(
    state: &AppState,
    credentials: &Credentials,
    address: Option<SocketAddr>,
    error: &AccountError,
    now_blocked: bool,
) {
    let outcome = match error {
        AccountError::BadCredentials => "failed",
        _ => "denied",
    };
    let entry = NewEntry {
        actor: credentials.claimed(),
        role: None,
        address: address.map(|a| a.to_string()),
        action: Action::SignIn.name().into(),
        outcome: outcome.into(),
        detail: Some(serde_json::json!({
            "scheme": credentials.scheme(),
            "reason": error.to_string(),
            "throttled_from_now": now_blocked,
        })),
        ..NewEntry::default()
    };
    let state = state.clone();
    let written = blocking(move || {
        state
            .audit()
            .append(entry)
            .map(drop)
            .map_err(ApiError::from)
    })
    .await;
    if written.is_err() {
        tracing::error!("a failed sign-in could not be written to the audit trail");
    }
}

/// 429 with `Retry-After` (whole seconds, at least 1).
fn throttled(wait: std::time::Duration) -> Response {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let secs = secs.max(1);
    let mut resp = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_attempts",
        format!("too many failed sign-ins from this address or for this account; retry in {secs} seconds"),
    )
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

fn unauthorized(message: &str) -> Response {
    let mut resp =
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message).into_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"imagelens\", Basic realm=\"imagelens\""),
    );
    resp
}

/// The authenticated caller of a handler: the [`Actor`] of the request's [`Principal`], peer
/// address and `X-Purpose`.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who.
    pub principal: Principal,
    actor: Actor,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let principal = parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    "authentication required",
                )
            })?;
        let address = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.to_string());
        let purpose = parts
            .headers
            .get("x-purpose")
            .and_then(|v| v.to_str().ok())
            .map(|p| p.trim().chars().take(MAX_PURPOSE).collect::<String>())
            .filter(|p| !p.is_empty());
        Ok(Self {
            actor: Actor::account(principal.clone(), address, purpose),
            principal,
        })
    }
}

impl Caller {
    /// Who is calling.
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// An audit entry of this caller for `action`, outcome `ok`.
    pub fn entry(&self, action: Action) -> NewEntry {
        self.actor.entry(action)
    }

    /// Refuses (403, audited as `denied`) unless the caller's role allows `action`
    /// ([`Actor::require`], on the blocking pool).
    ///
    /// # Errors
    /// 403; 500 when the refusal cannot be audited.
    pub async fn require(&self, state: &AppState, action: Action) -> Result<(), ApiError> {
        if self.actor.may(action) {
            return Ok(());
        }
        let (actor, state) = (self.actor.clone(), state.clone());
        blocking(move || Ok(actor.require(state.audit(), action)?)).await
    }

    /// Refuses (403, audited as `denied`) an unredacted picture for `action` unless the
    /// caller's role allows it ([`Actor::require_unredacted`], on the blocking pool).
    ///
    /// # Errors
    /// 403; 500 when the refusal cannot be audited.
    pub async fn require_unredacted(
        &self,
        state: &AppState,
        action: Action,
    ) -> Result<(), ApiError> {
        if self.actor.can(Permission::ViewUnredacted) {
            return Ok(());
        }
        let (actor, state) = (self.actor.clone(), state.clone());
        blocking(move || Ok(actor.require_unredacted(state.audit(), action)?)).await
    }

    /// Runs an administration use case at this caller's [`Desk`] on the blocking pool.
    ///
    /// # Errors
    /// What the use case refuses, mapped to its status.
    pub async fn desk<T: Send + 'static>(
        &self,
        state: &AppState,
        work: impl FnOnce(Desk<'_>) -> Result<T, AdminError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let (actor, state) = (self.actor.clone(), state.clone());
        blocking(move || Ok(work(Desk::new(state.accounts(), state.audit(), &actor))?)).await
    }

    /// Records `entry` in the audit trail; the request fails if it cannot be written.
    ///
    /// # Errors
    /// 500 when the trail cannot be written.
    pub async fn write(&self, state: &AppState, entry: NewEntry) -> Result<(), ApiError> {
        let state = state.clone();
        blocking(move || {
            state
                .audit()
                .append(entry)
                .map(|_| ())
                .map_err(ApiError::from)
        })
        .await
    }

    /// Records a read of `records` (ids) for `action` with the request's `query`
    /// ([`Actor::record`], on the blocking pool).
    ///
    /// # Errors
    /// 500 when the trail cannot be written.
    pub async fn audit(
        &self,
        state: &AppState,
        action: Action,
        query: Option<serde_json::Value>,
        records: Vec<String>,
    ) -> Result<(), ApiError> {
        let (actor, state) = (self.actor.clone(), state.clone());
        blocking(move || {
            actor
                .record(state.audit(), action, query, records)
                .map_err(ApiError::from)
        })
        .await
    }
}
