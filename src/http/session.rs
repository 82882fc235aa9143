//! Browser sessions: the web page signs in once and is then known by an HttpOnly cookie that
//! its scripts cannot read, so no secret lives in the page (nor in `sessionStorage`, where any
//! script injected into it could take it).
//!
//! - `POST /v1/session`, sent with the credentials the page was given (`Authorization: Basic`
//!   for a name and password, or `Bearer` for a pasted token), issues a one-day token of that
//!   account through the same use case as `POST /v1/tokens` (a token cannot issue one that
//!   outlives it; the issue is audited) and sets it as the cookie [`COOKIE`]: `HttpOnly`,
//!   `SameSite=Strict`, `Path=/`, `Max-Age` until the token expires, and `Secure` when the page
//!   was reached over HTTPS (`Origin` or `X-Forwarded-Proto` says so). The answer carries the
//!   caller and the CSRF token, never the secret.
//! - [`super::auth::authenticate`] takes the cookie when a request has no `Authorization`
//!   header. A state-changing request (any method but GET, HEAD, OPTIONS) authenticated by
//!   the cookie must come from the page itself: `Sec-Fetch-Site` (when sent) is `same-origin`
//!   or `none`, `Origin` (when sent) names this host, and `X-CSRF-Token` holds [`csrf_of`] the
//!   session's secret; otherwise it is refused 403 `csrf` before anything runs.
//! - `GET /v1/session` answers who is signed in and the CSRF token again (after a reload; the
//!   page keeps it in memory only). `DELETE /v1/session` revokes the session's token on the
//!   server (audited) and clears the cookie, so a copied cookie stops working at once.
//! - A cookie whose token is unknown, expired or revoked is answered 401 like any bad token,
//!   and the answer clears the cookie.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::admin::{WhoAmI, who_am_i};
use super::auth::Caller;
use super::{ApiError, AppState, ErrorBody};
use crate::governance::accounts::{constant_time_eq, decode_digest};

/// Name of the session cookie.
pub const COOKIE: &str = "imagelens_session";
/// Header carrying the CSRF token on state-changing requests.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Name the session's token is issued under (listed with the account's tokens).
pub const TOKEN_NAME: &str = "web-session";
/// Lifetime of a session, in days.
pub const SESSION_DAYS: u32 = 1;

/// Inserted by [`super::auth::authenticate`] into a request authenticated by the cookie.
#[derive(Debug, Clone)]
pub struct CookieSession {
    /// The session's CSRF token.
    pub csrf: String,
}

/// The session secret in the request's `Cookie` headers, if any.
pub fn secret(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == COOKIE && !c.value().is_empty())
        .map(|c| c.value().to_owned())
}

/// The CSRF token of a session: a one-way function of its secret, so it is only known to
/// whoever was given it with the session (a script of another site can read neither).
pub fn csrf_of(secret: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"imagelens-csrf\0");
    h.update(secret.as_bytes());
    hex::encode(h.finalize())
}

/// Whether the request comes from this site's own pages: `Sec-Fetch-Site` (sent by every
/// current browser) is `same-origin` or `none`, and `Origin`, when present, names the host the
/// request was sent to.
///
/// # Errors
/// 403 `csrf` naming what did not match.
pub fn check_same_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let refuse = |why: &str| {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf",
            format!("refused: {why}; a session may only be used by the page it was given to"),
        ))
    };
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return refuse(&format!("the request came from a {site} page"));
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let origin_host = origin
            .split_once("://")
            .map_or(origin, |(_, rest)| rest)
            .trim_end_matches('/');
        if origin == "null" || host.is_empty() || !origin_host.eq_ignore_ascii_case(host) {
            return refuse("its Origin is not this server");
        }
    }
    Ok(())
}

/// Checks a request authenticated by the session cookie: safe methods pass; others must come
/// from the page ([`check_same_origin`]) with the session's CSRF token.
///
/// # Errors
/// 403 `csrf`.
pub fn check(req: &Request, csrf: &str) -> Result<(), ApiError> {
    if req.method().is_safe() {
        return Ok(());
    }
    check_same_origin(req.headers())?;
    let sent = req
        .headers()
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !csrf_matches(sent, csrf) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf",
            "refused: a request made with the session cookie needs the session's X-CSRF-Token",
        ));
    }
    Ok(())
}

/// Whether `sent` is the CSRF token `csrf`, compared as digests in constant time (the token
/// check of the account store).
fn csrf_matches(sent: &str, csrf: &str) -> bool {
    match (decode_digest(sent), decode_digest(csrf)) {
        (Some(a), Some(b)) => constant_time_eq(&a, &b),
        _ => false,
    }
}

/// Whether the page was reached over HTTPS (directly or behind a proxy that says so).
fn over_https(headers: &HeaderMap) -> bool {
    let says = |name: &str, prefix: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().to_ascii_lowercase().starts_with(prefix))
    };
    says("x-forwarded-proto", "https") || says("origin", "https://")
}

/// The `Set-Cookie` value of a session `secret` living `max_age_secs`.
fn set_cookie(secret: &str, max_age_secs: i64, secure: bool) -> HeaderValue {
    let c = cookie::Cookie::build((COOKIE, secret.to_owned()))
        .http_only(true)
        .same_site(cookie::SameSite::Strict)
        .path("/")
        .max_age(cookie::time::Duration::seconds(max_age_secs.max(0)))
        .secure(secure)
        .build();
    HeaderValue::from_str(&c.to_string()).expect("a cookie of ASCII token characters")
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie(headers: &HeaderMap) -> HeaderValue {
    set_cookie("", 0, over_https(headers))
}

/// Who is signed in, with the session's CSRF token.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SessionInfo {
    /// The caller.
    #[serde(flatten)]
    pub who: WhoAmI,
    /// Send as `X-CSRF-Token` on every state-changing request made with the cookie; `None`
    /// when this request was not made with the cookie.
    pub csrf: Option<String>,
}

/// Starts a browser session: a one-day token of the caller's account, set as an HttpOnly,
/// SameSite=Strict cookie. Send the credentials in `Authorization` (Basic or Bearer).
#[utoipa::path(post, path = "/v1/session", tag = "admin",
    responses(
        (status = 201, description = "signed in; the cookie is set", body = SessionInfo),
        (status = 400, description = "already a session: sign out first", body = ErrorBody),
        (status = 403, description = "sent from another site", body = ErrorBody),
    ))]
pub async fn start(
    State(state): State<AppState>,
    caller: Caller,
    req: Request,
) -> Result<Response, ApiError> {
    check_same_origin(req.headers())?;
    if req.extensions().get::<CookieSession>().is_some() {
        return Err(ApiError::invalid(
            "this request already uses a session; sign out first (DELETE /v1/session)",
        ));
    }
    let issued = caller
        .desk(&state, |desk| {
            desk.issue_token(None, TOKEN_NAME, SESSION_DAYS)
        })
        .await?;
    let max_age = (issued.token.expires - chrono::Utc::now()).num_seconds();
    let mut who = who_am_i(&state, &caller.principal);
    who.token = Some(issued.token.clone());
    let body = SessionInfo {
        who,
        csrf: Some(csrf_of(&issued.secret)),
    };
    let mut resp = (StatusCode::CREATED, Json(body)).into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(&issued.secret, max_age, over_https(req.headers())),
    );
    Ok(resp)
}

/// Who is signed in and, for a request made with the session cookie, its CSRF token.
#[utoipa::path(get, path = "/v1/session", tag = "admin",
    responses((status = 200, description = "the session", body = SessionInfo)))]
pub async fn current(
    State(state): State<AppState>,
    caller: Caller,
    req: Request,
) -> Json<SessionInfo> {
    Json(SessionInfo {
        who: who_am_i(&state, &caller.principal),
        csrf: req
            .extensions()
            .get::<CookieSession>()
            .map(|s| s.csrf.clone()),
    })
}

/// Ends the browser session: its token is revoked on the server (audited) and the cookie
/// cleared.
#[utoipa::path(delete, path = "/v1/session", tag = "admin",
    responses(
        (status = 204, description = "signed out; the session's token is revoked"),
        (status = 400, description = "not a session", body = ErrorBody),
    ))]
pub async fn end(
    State(state): State<AppState>,
    caller: Caller,
    req: Request,
) -> Result<Response, ApiError> {
    let (Some(_), Some(id)) = (
        req.extensions().get::<CookieSession>(),
        caller.principal.token.clone(),
    ) else {
        return Err(ApiError::invalid(
            "this request was not made with a session cookie; revoke a token with DELETE \
             /v1/tokens/{id}",
        ));
    };
    caller
        .desk(&state, move |desk| desk.revoke_token(&id))
        .await?;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, clear_cookie(req.headers()));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn the_secret_is_read_from_any_cookie_header() {
        assert_eq!(secret(&headers(&[])), None);
        assert_eq!(
            secret(&headers(&[(
                "cookie",
                "a=1; imagelens_session=il_abc; b=2"
            )])),
            Some("il_abc".into())
        );
        assert_eq!(
            secret(&headers(&[
                ("cookie", "a=1"),
                ("cookie", "imagelens_session=il_x")
            ])),
            Some("il_x".into())
        );
        assert_eq!(secret(&headers(&[("cookie", "imagelens_session=")])), None);
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_over_https() {
        let plain = set_cookie("il_s", 86_400, false);
        let v = plain.to_str().unwrap();
        for part in [
            "imagelens_session=il_s",
            "HttpOnly",
            "SameSite=Strict",
            "Path=/",
            "Max-Age=86400",
        ] {
            assert!(v.contains(part), "{v}");
        }
        assert!(!v.contains("Secure"), "{v}");
        assert!(over_https(&headers(&[("origin", "https://x.example")])));
        assert!(over_https(&headers(&[("x-forwarded-proto", "HTTPS")])));
        assert!(!over_https(&headers(&[("origin", "http://x.example")])));
        let v = set_cookie("il_s", 10, true);
        assert!(v.to_str().unwrap().contains("Secure"));
        assert!(
            clear_cookie(&headers(&[]))
                .to_str()
                .unwrap()
                .contains("Max-Age=0")
        );
    }

    #[test]
    fn only_the_pages_own_requests_pass() {
        assert!(check_same_origin(&headers(&[])).is_ok());
        assert!(
            check_same_origin(&headers(&[
                ("sec-fetch-site", "same-origin"),
                ("origin", "http://127.0.0.1:7878"),
                ("host", "127.0.0.1:7878"),
            ]))
            .is_ok()
        );
        for bad in [
            vec![("sec-fetch-site", "cross-site")],
            vec![("sec-fetch-site", "same-site")],
            vec![
                ("origin", "http://evil.example"),
                ("host", "127.0.0.1:7878"),
            ],
            vec![("origin", "null"), ("host", "127.0.0.1:7878")],
        ] {
            let e = check_same_origin(&headers(&bad)).unwrap_err();
            assert_eq!(e.status(), StatusCode::FORBIDDEN, "{bad:?}");
        }
        let csrf = csrf_of("il_secret");
        assert_eq!(csrf.len(), 64);
        assert_ne!(csrf, csrf_of("il_other"));
        assert!(csrf_matches(&csrf, &csrf_of("il_secret")));
        assert!(!csrf_matches(&csrf_of("il_other"), &csrf));
        assert!(!csrf_matches("ab", &csrf));
        assert!(!csrf_matches("", &csrf));
    }
}
