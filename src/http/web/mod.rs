//! The web page of `imagelens serve`: plain HTML, CSS and JavaScript modules embedded in the
//! binary at build time (no Node toolchain, no second server), served at `/` and `/ui/*`.
//!
//! The page is a client of the `/v1` API and nothing more: it signs in with `POST /v1/session`
//! (the name and password as HTTP Basic, once, or a pasted token), which sets the session as
//! an `HttpOnly`, `SameSite=Strict` cookie (`Secure` over TLS) and answers with a CSRF token the
//! page sends as `X-CSRF-Token` on every state-changing call, with the purpose the user states
//! as `X-Purpose` on every call (the purpose alone is kept in the tab's `sessionStorage`).
//! Signing out (`DELETE /v1/session`) revokes the session's token on the server. Images and
//! thumbnails are
//! fetched the same way and shown from `blob:` URLs, so every pixel on the page went through the
//! API's permission check, redaction and audit entry; the page shows only what the API returned
//! to that account.
//!
//! Invariants:
//! - The static files carry no data: they are the same bytes for every visitor, so they are
//!   served without an account (like `/healthz`), with an `ETag` and `Cache-Control: no-cache`
//!   (revalidated, never stale after an upgrade). Everything per account (API answers, images)
//!   is `Cache-Control: no-store` ([`no_store_by_default`] sets it on every API answer that does
//!   not say otherwise).
//! - A strict Content-Security-Policy ([`CSP`]): scripts only from this origin (no inline
//!   script, no `eval`), styles only from this origin, images from this origin and `blob:`,
//!   no framing, no plugins, forms and connections to this origin only.
//! - The page never holds a secret in its files, its storage or its address: the session is
//!   a cookie no script can read, and the address bar holds only the query and filters (and a
//!   record id when one is open).

use axum::Router;
use axum::extract::{Path, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use super::{ApiError, AppState};

/// The page's Content-Security-Policy.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                       img-src 'self' blob:; connect-src 'self'; form-action 'self'; \
                       base-uri 'none'; frame-ancestors 'none'; object-src 'none'";

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:literal) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!("assets/", $name)),
        }
    };
}

/// Every file of the page; `index.html` is served at `/`, the others at `/ui/<name>`.
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("api.js", "text/javascript; charset=utf-8"),
    asset!("boxes.js", "text/javascript; charset=utf-8"),
    asset!("views.js", "text/javascript; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
];

/// Names of the embedded files (`index.html` first), for tests and the README.
pub fn asset_names() -> impl Iterator<Item = &'static str> {
    ASSETS.iter().map(|a| a.name)
}

/// The page's routes: `/` and `/ui/{file}`. They need no account (see the module docs).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/ui/{file}", get(file))
}

async fn index(headers: HeaderMap) -> Response {
    serve(&ASSETS[0], &headers)
}

async fn file(Path(name): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(asset) => serve(asset, &headers),
        None => {
            let shown: String = name.chars().take(64).collect();
            ApiError::not_found(format!("no page file named {shown:?}")).into_response()
        }
    }
}

/// The strong validator of an asset: a quoted prefix of its sha256.
fn etag(asset: &Asset) -> String {
    format!("\"{}\"", &hex::encode(Sha256::digest(asset.body))[..32])
}

fn serve(asset: &Asset, request: &HeaderMap) -> Response {
    let tag = etag(asset);
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = asset.body.into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        r
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

/// Middleware: every answer that does not set its own `Cache-Control` gets `no-store` (API
/// answers depend on who asks: a role's redacted pixels or filtered record must never be
/// served from a cache to another), and every answer gets `X-Content-Type-Options: nosniff`.
pub async fn no_store_by_default(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    h.entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_a_type_and_a_distinct_name() {
        let mut names: Vec<_> = asset_names().collect();
        assert_eq!(names[0], "index.html");
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ASSETS.len());
        for a in ASSETS {
            assert!(!a.body.is_empty(), "{} is empty", a.name);
            let ext = a.name.rsplit('.').next().unwrap();
            let want = match ext {
                "html" => "text/html",
                "css" => "text/css",
                "js" => "text/javascript",
                "svg" => "image/svg+xml",
                other => panic!("no type for .{other}"),
            };
            assert!(a.content_type.starts_with(want), "{}", a.name);
        }
    }

    #[test]
    fn no_file_has_inline_script_or_style() {
        let html = std::str::from_utf8(ASSETS[0].body).unwrap();
        // Every <script> has a src (module), none has a body; no on* handler attributes.
        for part in html.split("<script").skip(1) {
            let tag_end = part.find('>').unwrap();
            assert!(part[..tag_end].contains("src="), "inline script: {part}");
            assert!(part[tag_end + 1..].starts_with("</script>"), "{part}");
        }
        assert!(!html.contains(" style="), "inline style attribute");
        assert!(!html.contains("<style"), "inline style element");
        let lower = html.to_ascii_lowercase();
        for handler in [
            " onclick=",
            " onload=",
            " onerror=",
            " onsubmit=",
            "javascript:",
        ] {
            assert!(!lower.contains(handler), "{handler} in the page");
        }
        for a in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            let js = std::str::from_utf8(a.body).unwrap();
            for banned in [
                "eval(",
                "new Function(",
                "innerHTML",
                "setAttribute('style'",
            ] {
                assert!(!js.contains(banned), "{} uses {banned}", a.name);
            }
        }
    }
}
