//! The web page through the router (no sockets): served without an account, with its content
//! types, a strict CSP and revalidation; it embeds no secret; every per-account answer the page
//! reads is `no-store`; `/v1/whoami` tells the page who signed in.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use imagelens::governance::accounts::Role;
use imagelens::http::router;
use imagelens::http::web::{CSP, asset_names};
use imagelens::settings::Limits;
use serde_json::json;

use crate::http::{Answer, all_records, get, send, send_as_is, shared, token_for};

fn app() -> Router {
    router(shared().state.clone())
}

/// A searcher's token on the shared library (made once).
fn searcher() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN.get_or_init(|| token_for(&shared().state, "web-searcher", Role::Searcher))
}

async fn anonymous(app: &Router, uri: &str) -> Answer {
    send_as_is(app, Request::get(uri).body(Body::empty()).unwrap()).await
}

async fn as_token(app: &Router, uri: &str, token: &str) -> Answer {
    let req = Request::get(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    send(app, req).await
}

fn header_of(a: &Answer, name: header::HeaderName) -> &str {
    a.headers
        .get(&name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

fn path_of(name: &str) -> String {
    if name == "index.html" {
        "/".into()
    } else {
        format!("/ui/{name}")
    }
}

#[tokio::test]
async fn every_page_file_is_served_without_an_account_with_its_type_and_csp() {
    let app = app();
    for name in asset_names() {
        let a = anonymous(&app, &path_of(name)).await;
        assert_eq!(a.status, StatusCode::OK, "{name}");
        let want = match name.rsplit('.').next().unwrap() {
            "html" => "text/html; charset=utf-8",
            "css" => "text/css; charset=utf-8",
            "js" => "text/javascript; charset=utf-8",
            "svg" => "image/svg+xml",
            other => panic!("unexpected .{other}"),
        };
        assert_eq!(header_of(&a, header::CONTENT_TYPE), want, "{name}");
        assert_eq!(header_of(&a, header::CONTENT_SECURITY_POLICY), CSP);
        assert_eq!(header_of(&a, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        assert_eq!(header_of(&a, header::X_FRAME_OPTIONS), "DENY");
        assert_eq!(header_of(&a, header::REFERRER_POLICY), "no-referrer");
        // Same bytes for everyone: revalidated, never stored stale.
        assert_eq!(header_of(&a, header::CACHE_CONTROL), "no-cache");
        assert!(
            a.headers.get(header::SET_COOKIE).is_none(),
            "{name} sets a cookie"
        );
        // A revalidation with the ETag is answered 304 without the body.
        let tag = header_of(&a, header::ETAG).to_owned();
        let again = send_as_is(
            &app,
            Request::get(path_of(name))
                .header(header::IF_NONE_MATCH, &tag)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{name}");
        assert!(again.body.is_empty());
    }
    // The policy forbids inline and foreign script, framing and plugins.
    for part in [
        "default-src 'none'",
        "script-src 'self';",
        "frame-ancestors 'none'",
        "object-src 'none'",
        "img-src 'self' blob:;",
    ] {
        assert!(CSP.contains(part), "{part}");
    }
    assert!(!CSP.contains("unsafe-inline") && !CSP.contains("unsafe-eval"));
    // An unknown file is a JSON 404, and the API stays closed to the anonymous.
    anonymous(&app, "/ui/secret.txt")
        .await
        .error(StatusCode::NOT_FOUND);
    anonymous(&app, "/ui/..%2Fmod.rs")
        .await
        .error(StatusCode::NOT_FOUND);
    anonymous(&app, "/v1/whoami")
        .await
        .error(StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_page_links_only_files_it_embeds() {
    let app = app();
    let names: Vec<&str> = asset_names().collect();
    let html = String::from_utf8(anonymous(&app, "/").await.body.to_vec()).unwrap();
    for attr in ["src=\"", "href=\""] {
        for part in html.split(attr).skip(1) {
            let target = &part[..part.find('"').unwrap()];
            if target.starts_with('#') {
                continue;
            }
            let file = target
                .strip_prefix("/ui/")
                .unwrap_or_else(|| panic!("{target} is not a page file"));
            assert!(names.contains(&file), "{target} is not embedded");
        }
    }
    // Every module import names an embedded module.
    for name in names.iter().filter(|n| n.ends_with(".js")) {
        let js = String::from_utf8(anonymous(&app, &path_of(name)).await.body.to_vec()).unwrap();
        for part in js.split(" from './").skip(1) {
            let file = &part[..part.find('\'').unwrap()];
            assert!(names.contains(&file), "{name} imports {file}");
        }
    }
}

#[tokio::test]
async fn the_page_never_embeds_a_token_or_record_data() {
    let app = app();
    let token = searcher();
    let records = all_records(&app).await;
    // Sign in as the page does, then fetch every file with the token and a session cookie:
    // the bytes do not change and carry neither the secret nor any record's data.
    let issued = {
        let req = Request::post("/v1/tokens")
            .header(
                header::AUTHORIZATION,
                format!(
                    "Basic {}",
                    base64::Engine::encode(
                        &base64::engine::general_purpose::STANDARD,
                        "web-searcher:correct horse battery staple"
                    )
                ),
            )
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                json!({"name": "web-page", "ttl_days": 1}).to_string(),
            ))
            .unwrap();
        let a = send(&app, req).await;
        assert_eq!(a.status, StatusCode::CREATED);
        a.json()["secret"].as_str().unwrap().to_owned()
    };
    for name in asset_names() {
        let plain = anonymous(&app, &path_of(name)).await.body;
        let req = Request::get(path_of(name))
            .header(header::AUTHORIZATION, format!("Bearer {issued}"))
            .header(header::COOKIE, format!("token={token}"))
            .body(Body::empty())
            .unwrap();
        let signed = send_as_is(&app, req).await;
        assert_eq!(signed.body, plain, "{name} differs for a signed-in caller");
        let text = String::from_utf8_lossy(&plain);
        for secret in [token, issued.as_str()] {
            assert!(!text.contains(secret), "{name} embeds a token");
        }
        assert!(
            !text.contains("il_"),
            "{name} holds something shaped like a token"
        );
        for r in &records {
            for field in ["id", "sha256", "filename"] {
                let v = r[field].as_str().unwrap();
                assert!(!text.contains(v), "{name} embeds record {field} {v}");
            }
        }
    }
}

#[tokio::test]
async fn everything_the_page_reads_per_account_is_no_store() {
    let app = app();
    let token = searcher();
    let search = {
        let req = Request::post("/v1/search")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(json!({"query": "car", "limit": 2}).to_string()))
            .unwrap();
        send(&app, req).await
    };
    let id = search.ok()["results"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(header_of(&search, header::CACHE_CONTROL), "no-store");
    for uri in [
        "/v1/whoami".to_owned(),
        "/v1/facets".to_owned(),
        "/v1/info".to_owned(),
        format!("/v1/records/{id}"),
        format!("/v1/records/{id}/thumbnail?size=64"),
        format!("/v1/records/{id}/image"),
    ] {
        let a = as_token(&app, &uri, token).await;
        assert_eq!(a.status, StatusCode::OK, "{uri}");
        let cache = header_of(&a, header::CACHE_CONTROL);
        assert!(cache.contains("no-store"), "{uri}: {cache}");
        assert!(!cache.contains("public"), "{uri}: {cache}");
        assert_eq!(header_of(&a, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
    }
    // Errors too: a refusal must not be cached for the next account either.
    let refused = as_token(&app, "/v1/audit", token).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(header_of(&refused, header::CACHE_CONTROL), "no-store");
}

#[tokio::test]
async fn whoami_tells_the_page_the_role_permissions_and_token() {
    let app = app();
    let token = searcher();
    let me = as_token(&app, "/v1/whoami", token).await.ok();
    assert_eq!(me["account"], "web-searcher");
    assert_eq!(me["role"], "searcher");
    assert_eq!(me["permissions"], json!(["search", "view_record"]));
    let tokens = as_token(&app, "/v1/tokens", token).await.ok();
    let ids: Vec<&str> = tokens["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&me["token"]["id"].as_str().unwrap()), "{me}");
    assert!(
        me["token"].get("secret").is_none(),
        "the secret is never shown again"
    );
    // The admin has every permission; a password caller has no token.
    let admin = get(&app, "/v1/whoami").await.ok();
    assert_eq!(admin["role"], "admin");
    assert_eq!(admin["permissions"].as_array().unwrap().len(), 11);
    let basic = send(
        &app,
        Request::get("/v1/whoami")
            .header(
                header::AUTHORIZATION,
                format!(
                    "Basic {}",
                    base64::Engine::encode(
                        &base64::engine::general_purpose::STANDARD,
                        "web-searcher:correct horse battery staple"
                    )
                ),
            )
            .body(Body::empty())
            .unwrap(),
    )
    .await
    .ok();
    assert!(basic["token"].is_null());
    // It is in the OpenAPI document like every route.
    let doc = get(&app, "/v1/openapi.json").await.ok();
    assert!(doc["paths"]["/v1/whoami"]["get"].is_object());
}

/// A request with the session cookie `secret` (and no Authorization header).
fn with_cookie(
    method: &str,
    uri: &str,
    secret: &str,
    extra: &[(&str, &str)],
    body: Option<serde_json::Value>,
) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri).header(
        header::COOKIE,
        format!("other=1; imagelens_session={secret}"),
    );
    for (k, v) in extra {
        b = b.header(*k, *v);
    }
    match body {
        Some(j) => b
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(j.to_string()))
            .unwrap(),
        None => b.body(Body::empty()).unwrap(),
    }
}

/// `Authorization: Basic` for an account made by `token_for` (its test password).
fn basic_auth(name: &str) -> String {
    format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{name}:correct horse battery staple")
        )
    )
}

/// The `imagelens_session` value a `Set-Cookie` answer carries.
fn session_cookie(a: &Answer) -> String {
    let set = header_of(a, header::SET_COOKIE);
    let value = set
        .split(';')
        .next()
        .unwrap()
        .strip_prefix("imagelens_session=")
        .unwrap_or_else(|| panic!("{set}"));
    value.to_owned()
}

#[tokio::test]
async fn a_session_cookie_is_http_only_needs_its_csrf_token_and_ends_on_the_server() {
    let app = app();
    token_for(&shared().state, "web-leaver", Role::Searcher);
    let basic = basic_auth("web-leaver");
    // Sign in as the page does: the cookie is set, the body holds the CSRF token, no secret.
    let started = send_as_is(
        &app,
        Request::post("/v1/session")
            .header(header::AUTHORIZATION, &basic)
            .header("sec-fetch-site", "same-origin")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(started.status, StatusCode::CREATED);
    let set = header_of(&started, header::SET_COOKIE).to_owned();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(set.contains(part), "{set}");
    }
    assert!(!set.contains("Secure"), "plain http: {set}");
    let secret = session_cookie(&started);
    assert!(secret.starts_with("il_"), "{set}");
    let body = started.json();
    let csrf = body["csrf"].as_str().unwrap().to_owned();
    assert_eq!(body["account"], "web-leaver");
    assert_eq!(body["token"]["name"], "web-session");
    assert!(
        !started
            .body
            .windows(secret.len())
            .any(|w| w == secret.as_bytes())
    );
    // Over HTTPS (behind a proxy that says so) the cookie is Secure.
    let tls = send_as_is(
        &app,
        Request::post("/v1/session")
            .header(header::AUTHORIZATION, &basic)
            .header("x-forwarded-proto", "https")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert!(header_of(&tls, header::SET_COOKIE).contains("Secure"));

    // Reads work with the cookie alone; GET /v1/session gives the CSRF token back.
    let me = send_as_is(&app, with_cookie("GET", "/v1/session", &secret, &[], None)).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.json()["csrf"], json!(csrf));
    let query = json!({"query": "car", "limit": 2});
    // A state-changing request with the cookie but without the token, with a wrong one, or
    // from another site, is refused before it runs.
    for (extra, why) in [
        (vec![], "no token"),
        (vec![("x-csrf-token", "0000")], "wrong token"),
        (
            vec![
                ("x-csrf-token", csrf.as_str()),
                ("sec-fetch-site", "cross-site"),
            ],
            "cross-site",
        ),
        (
            vec![
                ("x-csrf-token", csrf.as_str()),
                ("origin", "http://evil.example"),
                ("host", "127.0.0.1:7878"),
            ],
            "foreign origin",
        ),
    ] {
        let a = send_as_is(
            &app,
            with_cookie("POST", "/v1/search", &secret, &extra, Some(query.clone())),
        )
        .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{why}");
        assert_eq!(a.json()["error"]["code"], "csrf", "{why}");
    }
    let ok = send_as_is(
        &app,
        with_cookie(
            "POST",
            "/v1/search",
            &secret,
            &[
                ("x-csrf-token", csrf.as_str()),
                ("sec-fetch-site", "same-origin"),
                ("origin", "http://127.0.0.1:7878"),
                ("host", "127.0.0.1:7878"),
            ],
            Some(query.clone()),
        ),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
    // Every other state-changing route the page (or a forged page) could call is refused the
    // same way without the token, before its permission is even looked at: POST, PATCH, PUT
    // and DELETE alike.
    for (method, uri, body) in [
        (
            "POST",
            "/v1/collections",
            Some(json!({"name": "forged", "ids": []})),
        ),
        (
            "PATCH",
            "/v1/collections/forged",
            Some(json!({"name": "renamed"})),
        ),
        ("DELETE", "/v1/collections/forged", None),
        (
            "POST",
            "/v1/export",
            Some(json!({"search": {"query": "car"}})),
        ),
        ("POST", "/v1/facets", Some(json!({"query": "car"}))),
        ("DELETE", "/v1/records/0123456789abcdef", None),
        (
            "POST",
            "/v1/deletions",
            Some(json!({"ids": ["0123456789abcdef"]})),
        ),
        (
            "POST",
            "/v1/accounts",
            Some(json!({"name": "x", "role": "admin"})),
        ),
        (
            "PATCH",
            "/v1/accounts/web-leaver",
            Some(json!({"role": "admin"})),
        ),
        ("POST", "/v1/tokens", Some(json!({"name": "forged"}))),
        ("DELETE", "/v1/tokens/1", None),
        ("PUT", "/v1/retention", Some(json!({}))),
        ("POST", "/v1/retention/run", Some(json!({}))),
        ("DELETE", "/v1/session", None),
    ] {
        let a = send_as_is(&app, with_cookie(method, uri, &secret, &[], body)).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{method} {uri}");
        assert_eq!(a.json()["error"]["code"], "csrf", "{method} {uri}");
    }
    // A forged cookie is a bad token: 401, and the answer clears the cookie.
    let forged = send_as_is(
        &app,
        with_cookie("GET", "/v1/whoami", "il_forged_0000", &[], None),
    )
    .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    assert!(header_of(&forged, header::SET_COOKIE).contains("Max-Age=0"));

    // Signing out revokes the session's token on the server and clears the cookie: the same
    // cookie, replayed, no longer works.
    let out = send_as_is(
        &app,
        with_cookie(
            "DELETE",
            "/v1/session",
            &secret,
            &[("x-csrf-token", csrf.as_str())],
            None,
        ),
    )
    .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert!(header_of(&out, header::SET_COOKIE).contains("Max-Age=0"));
    let replayed = send_as_is(&app, with_cookie("GET", "/v1/whoami", &secret, &[], None)).await;
    assert!(replayed.error(StatusCode::UNAUTHORIZED).contains("revoked"));
    // The trail has the session's token issued and revoked.
    let actions: Vec<String> = trail_of("web-leaver")
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        actions.iter().any(|a| a == "token_issue") && actions.iter().any(|a| a == "token_revoke"),
        "{actions:?}"
    );
    // A bearer caller has no session to end.
    let a = send(
        &app,
        Request::delete("/v1/session").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
}

/// A session whose token has expired is refused as expired, and the answer clears the cookie.
/// Tokens live at least a minute, so time is moved on the server's data instead of waited for:
/// the token's expiry in `accounts.json` is set to the past while no server has the library
/// open, and a server opened on it afterwards sees an expired session.
#[tokio::test]
async fn an_expired_session_cookie_is_refused_as_expired_and_cleared() {
    use std::sync::Arc;

    use imagelens::governance::redact::Redaction;
    use imagelens::http::AppState;
    use imagelens::search::SearchService;
    use indexer::{Library, StoreSettings};

    let fx = crate::common::fixture(1);
    fx.ingest(false);
    let open = || {
        let library = Arc::new(Library::open(&fx.data, StoreSettings::Edge).unwrap());
        let service = Arc::new(SearchService::new(library, None, Some("test".into())).unwrap());
        AppState::new(service, Limits::default(), Redaction::default()).unwrap()
    };
    let state = open();
    token_for(&state, "web-sleeper", Role::Searcher);
    let basic = basic_auth("web-sleeper");
    let app = router(state.clone());
    let started = send_as_is(
        &app,
        Request::post("/v1/session")
            .header(header::AUTHORIZATION, &basic)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(started.status, StatusCode::CREATED);
    let secret = session_cookie(&started);
    let csrf = started.json()["csrf"].as_str().unwrap().to_owned();
    let me = send_as_is(&app, with_cookie("GET", "/v1/whoami", &secret, &[], None)).await;
    assert_eq!(me.status, StatusCode::OK, "the fresh session works");
    drop((app, state));

    // The session's token (named "web-session") expired a second ago.
    let path = fx.data.join("accounts.json");
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut expired = 0;
    for token in doc["tokens"].as_object_mut().unwrap().values_mut() {
        if token["account"] == "web-sleeper" && token["name"] == "web-session" {
            token["expires"] =
                json!((chrono::Utc::now() - chrono::Duration::seconds(1)).to_rfc3339());
            expired += 1;
        }
    }
    assert_eq!(expired, 1, "{doc}");
    std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();

    let app = router(open());
    let late = send_as_is(&app, with_cookie("GET", "/v1/whoami", &secret, &[], None)).await;
    assert!(late.error(StatusCode::UNAUTHORIZED).contains("expired"));
    assert!(header_of(&late, header::SET_COOKIE).contains("Max-Age=0"));
    // A state-changing request with its CSRF token is refused the same way (401, not 403):
    // the session is over, not forged.
    let write = send_as_is(
        &app,
        with_cookie(
            "POST",
            "/v1/search",
            &secret,
            &[
                ("x-csrf-token", csrf.as_str()),
                ("sec-fetch-site", "same-origin"),
            ],
            Some(json!({"query": "car"})),
        ),
    )
    .await;
    assert!(write.error(StatusCode::UNAUTHORIZED).contains("expired"));
    // The page's "who am I" after a reload asks the same and gets the same answer.
    let again = send_as_is(&app, with_cookie("GET", "/v1/session", &secret, &[], None)).await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);
}

/// The trail's entries of one actor, in order.
fn trail_of(actor: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(shared().fx.data.join("audit/trail.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["actor"] == actor)
        .collect()
}

/// Label counts over the labels of `hits` (each record once per label), as facets count them.
fn label_counts(hits: &[serde_json::Value]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for h in hits {
        let labels: BTreeSet<String> = h["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| indexer::filter::normalize_label(l.as_str().unwrap()))
            .collect();
        for l in labels {
            *counts.entry(l).or_default() += 1;
        }
    }
    counts
}

#[tokio::test]
async fn facet_counts_follow_the_query_over_its_candidate_set() {
    let app = app();
    let whole = get(&app, "/v1/facets").await.ok();
    let total = whole["total"].as_u64().unwrap();
    assert_eq!(
        whole["scope"],
        json!({"records": total}),
        "no query: the filtered set"
    );
    let cars = whole["labels"]["car"].as_u64().unwrap();
    assert!(cars > 0 && cars < total, "{whole}");

    // Read as a search reads it: "without cars" excludes the label, so no candidate has one.
    let q = get(&app, "/v1/facets?query=dogs%20without%20cars")
        .await
        .ok();
    assert_eq!(q["scope"]["query"], "dogs without cars");
    assert_eq!(q["scope"]["depth"], 1000);
    assert_eq!(q["scope"]["records"], q["total"]);
    assert!(q["labels"].get("car").is_none(), "{q}");
    assert_eq!(q["total"].as_u64().unwrap(), total - cars, "{q}");
    assert_eq!(q["interpreted"]["filters"][0]["kind"], "no_label", "{q}");
    // Taken literally the words are only ranking text: on this small library the vector lists
    // rank every record, so the candidate set is the whole library again.
    let literal = get(&app, "/v1/facets?query=dogs%20without%20cars&literal=true")
        .await
        .ok();
    assert_eq!(literal["labels"]["car"], cars, "{literal}");
    assert!(literal.get("interpreted").is_none());

    // Keyword ranking only: the candidate set is the records whose words match, exactly those
    // the same search pages through at depth 1,000, counted label by label.
    let weights = "image=0,region=0,text=0";
    let kw = get(&app, &format!("/v1/facets?query=car&weights={weights}"))
        .await
        .ok();
    let mut hits = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut body =
            json!({"query": "car", "weights": format!("{weights},depth=1000"), "limit": 500});
        if let Some(c) = &cursor {
            body["cursor"] = json!(c);
        }
        let page = crate::http::json_req(&app, "POST", "/v1/search", body)
            .await
            .ok();
        hits.extend(page["results"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert!(
        !hits.is_empty() && (hits.len() as u64) < total,
        "{}",
        hits.len()
    );
    assert_eq!(kw["total"], hits.len() as u64);
    assert_eq!(
        kw["labels"],
        serde_json::to_value(label_counts(&hits)).unwrap(),
        "the counts are the candidates' labels"
    );
    assert_ne!(
        kw["labels"], whole["labels"],
        "the query changed the counts"
    );
    // Filters still apply on top of the query.
    let kw_dog = get(
        &app,
        &format!("/v1/facets?query=car&weights={weights}&label=dog"),
    )
    .await
    .ok();
    let dogs_among = hits
        .iter()
        .filter(|h| h["labels"].as_array().unwrap().contains(&json!("dog")))
        .count();
    assert_eq!(kw_dog["total"], dogs_among as u64);

    // The filtered-only answer is unchanged by all this.
    assert_eq!(get(&app, "/v1/facets").await.ok(), whole);

    // Bounded and checked like a search, by the same names.
    let long = "a".repeat(Limits::default().max_query_chars + 1);
    let msg = get(&app, &format!("/v1/facets?query={long}"))
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(msg.starts_with("query"), "{msg}");
    let msg = get(&app, "/v1/facets?query=car&weights=colour=1")
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(msg.contains("weights"), "{msg}");
    let msg = get(&app, "/v1/facets?not=car")
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(msg.contains("query or like"), "{msg}");
    let msg = get(&app, "/v1/lookup?query=car")
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(msg.contains("not query"), "{msg}");

    // Audited as facets: the query as a bounded summary with the depth, no record ids.
    let token = searcher();
    as_token(&app, "/v1/facets?query=dogs%20without%20cars", token)
        .await
        .ok();
    let entry = trail_of("web-searcher")
        .into_iter()
        .rev()
        .find(|e| e["action"] == "facets")
        .expect("a facets entry");
    assert_eq!(entry["query"]["query"], "dogs without cars");
    assert_eq!(entry["query"]["depth"], 1000);
    assert_eq!(entry["query"]["filter"]["no_labels"], json!(["car"]));
    assert!(
        entry["records"].as_array().is_none_or(|r| r.is_empty()),
        "{entry}"
    );
}

/// POSTs `request` (JSON) and `image` as one multipart form, as the page does.
async fn post_form(app: &Router, uri: &str, request: serde_json::Value, image: &[u8]) -> Answer {
    let (ct, body) = crate::http::multipart(&[
        (
            "request",
            "application/json",
            request.to_string().as_bytes(),
        ),
        ("image", "image/jpeg", image),
    ]);
    let req = Request::post(uri)
        .header(header::CONTENT_TYPE, ct)
        .body(Body::from(body))
        .unwrap();
    send(app, req).await
}

#[tokio::test]
async fn facets_count_over_an_uploaded_image_search_posted_as_the_search_is() {
    use sha2::Digest;
    let app = app();
    let records = all_records(&app).await;
    let path = records[0]["path"].as_str().unwrap();
    let file = std::fs::read(shared().fx.synth.images.join(path)).unwrap();
    let sha = hex::encode(sha2::Sha256::digest(&file));

    // The image search's candidates, paged as the search pages them at depth 1,000, with a
    // filter on top.
    let request = json!({"filter": {"labels": ["car"]}, "weights": "depth=1000"});
    let f = post_form(&app, "/v1/facets", request.clone(), &file)
        .await
        .ok();
    assert_eq!(f["scope"]["image_sha256"], sha.as_str());
    assert_eq!(f["scope"]["depth"], 1000);
    assert_eq!(f["scope"]["records"], f["total"]);
    let mut hits = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut body = request.clone();
        body["limit"] = json!(500);
        if let Some(c) = &cursor {
            body["cursor"] = json!(c);
        }
        let page = post_form(&app, "/v1/search", body, &file).await.ok();
        hits.extend(page["results"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert!(!hits.is_empty());
    assert_eq!(f["total"], hits.len() as u64);
    assert_eq!(
        f["labels"],
        serde_json::to_value(label_counts(&hits)).unwrap(),
        "the counts are the image search's candidates' labels"
    );
    assert!(f["labels"]["car"].as_u64().unwrap() == hits.len() as u64);

    // JSON posts the same search GET takes, with the same answer.
    let by_get = get(&app, "/v1/facets?query=dogs%20without%20cars")
        .await
        .ok();
    let by_post = crate::http::json_req(
        &app,
        "POST",
        "/v1/facets",
        json!({"query": "dogs without cars"}),
    )
    .await
    .ok();
    assert_eq!(by_post, by_get);

    // A page is not a candidate set; nothing to search is not a search.
    let msg = post_form(&app, "/v1/facets", json!({"limit": 5}), &file)
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(msg.contains("limit"), "{msg}");
    let msg = crate::http::json_req(&app, "POST", "/v1/facets", json!({}))
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(msg.contains("nothing to count over"), "{msg}");
    let msg = post_form(&app, "/v1/facets", json!({}), b"not an image")
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(msg.starts_with("image"), "{msg}");

    // Audited as facets: the image by its sha256, with the depth, no record ids.
    let token = searcher();
    let (ct, body) = crate::http::multipart(&[
        ("request", "application/json", b"{}"),
        ("image", "image/jpeg", &file),
    ]);
    let req = Request::post("/v1/facets")
        .header(header::CONTENT_TYPE, ct)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::from(body))
        .unwrap();
    send_as_is(&app, req).await.ok();
    let entry = trail_of("web-searcher")
        .into_iter()
        .rev()
        .find(|e| e["action"] == "facets")
        .expect("a facets entry");
    assert_eq!(entry["query"]["like_image"]["sha256"], sha.as_str());
    assert_eq!(entry["query"]["depth"], 1000);
    assert!(
        entry["records"].as_array().is_none_or(|r| r.is_empty()),
        "{entry}"
    );
}

#[tokio::test]
async fn search_hits_carry_what_a_card_draws_so_the_grid_reads_no_record() {
    let app = app();
    token_for(&shared().state, "web-grid", Role::Searcher);
    let token = shared()
        .state
        .accounts()
        .issue_token("web-grid", "grid", chrono::Duration::days(1))
        .unwrap()
        .0;
    let req = Request::post("/v1/search")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({"query": "car", "limit": 12}).to_string()))
        .unwrap();
    let resp = send(&app, req).await.ok();
    let hits = resp["results"].as_array().unwrap();
    assert_eq!(hits.len(), 12);
    // What the grid does with them: one thumbnail each, nothing else.
    for hit in hits {
        let id = hit["id"].as_str().unwrap();
        let thumb = as_token(
            &app,
            &format!("/v1/records/{id}/thumbnail?size=256"),
            &token,
        )
        .await;
        assert_eq!(thumb.status, StatusCode::OK, "{id}");
    }
    let actions: Vec<String> = trail_of("web-grid")
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    let mut want = vec!["search".to_owned()];
    want.extend(std::iter::repeat_n("view_thumbnail".to_owned(), 12));
    assert_eq!(actions, want, "no view_record per card");

    // Each hit carries the record's size, captions and every box, as the record view shows
    // them to the same role (the admin's record, less the annotators a searcher is not shown).
    for hit in hits {
        let id = hit["id"].as_str().unwrap();
        let mut record = get(&app, &format!("/v1/records/{id}")).await.ok();
        for b in record["boxes"].as_array_mut().unwrap() {
            b.as_object_mut().unwrap().remove("annotator");
        }
        assert_eq!(hit["width"], record["width"], "{id}");
        assert_eq!(hit["height"], record["height"], "{id}");
        assert!(hit["width"].as_u64().unwrap() > 0);
        assert_eq!(hit["captions"], record["captions"], "{id}");
        assert_eq!(hit["all_boxes"], record["boxes"], "{id}");
        for m in hit["boxes"].as_array().unwrap() {
            let i = m["index"].as_u64().unwrap() as usize;
            assert_eq!(m["label"], hit["all_boxes"][i]["label"], "{id}");
            assert_eq!(m["x"], hit["all_boxes"][i]["x"], "{id}");
        }
    }
    // The page draws cards from the hit and reads a record only for a collection member.
    let views = String::from_utf8(anonymous(&app, "/ui/views.js").await.body.to_vec()).unwrap();
    assert!(views.contains("overlay(hit.width, hit.height, hit.all_boxes, matched)"));
}
