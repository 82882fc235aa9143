//! Accounts, sign-in, retention and deletion safety: tokens that cannot outlive the token that
//! issued them, all-or-nothing account changes, audited and throttled failed sign-ins with a
//! bounded number of password checks, retention schedules that cannot panic, record holds kept
//! by ref, answers that do not tell which token ids or datasets exist, bounded descriptions, and
//! property tests of every admin route's JSON body through the real router.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use imagelens::governance::accounts::{MAX_CONCURRENT_PASSWORD_CHECKS, MAX_FAILED_SIGN_INS, Role};
use imagelens::governance::redact::Redaction;
use imagelens::http::{AppState, router};
use imagelens::settings::Limits;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Map, Value, json};

use crate::common::{Fixture, bin, fixture};
use crate::generators::{any_json, check_answer, hostile_number, hostile_string, runner, runtime};
use crate::http::{Answer, send_as_is, service_for, token_for};

const PASSWORD: &str = "correct horse battery staple";

/// A library with its own state (own accounts, trail and throttle) and an admin token.
struct Lib {
    state: AppState,
    app: Router,
    admin: String,
    // Last: the stores must close before their folder is removed.
    fx: Fixture,
}

fn new_lib(count: usize, admin_name: &str) -> Lib {
    let fx = fixture(count);
    fx.ingest(true);
    let state = AppState::new(
        Arc::new(service_for(&fx)),
        Limits::default(),
        Redaction::default(),
    )
    .unwrap();
    let admin = token_for(&state, admin_name, Role::Admin);
    Lib {
        app: router(state.clone()),
        state,
        admin,
        fx,
    }
}

/// One library for the example tests below (each uses its own account names and addresses).
fn lib() -> &'static Lib {
    static LIB: OnceLock<Lib> = OnceLock::new();
    LIB.get_or_init(|| new_lib(4, "root-admin"))
}

fn basic(name: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{name}:{password}"))
    )
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A request with `Authorization: auth`, from `from` when given, with a JSON body when given.
fn req(
    method: &str,
    uri: &str,
    auth: &str,
    from: Option<SocketAddr>,
    body: Option<&Value>,
) -> Request<Body> {
    let mut r = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, auth);
    let body = match body {
        Some(b) => {
            r = r.header(header::CONTENT_TYPE, "application/json");
            Body::from(b.to_string())
        }
        None => Body::empty(),
    };
    let mut r = r.body(body).unwrap();
    if let Some(addr) = from {
        r.extensions_mut().insert(ConnectInfo(addr));
    }
    r
}

async fn call(lib: &Lib, method: &str, uri: &str, auth: &str, body: Option<Value>) -> Answer {
    send_as_is(&lib.app, req(method, uri, auth, None, body.as_ref())).await
}

async fn audit_entries(lib: &Lib, query: &str) -> Vec<Value> {
    let v = call(
        lib,
        "GET",
        &format!("/v1/audit?{query}"),
        &bearer(&lib.admin),
        None,
    )
    .await
    .ok();
    v["entries"].as_array().unwrap().clone()
}

fn addr(last: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, last], 40_000))
}

#[tokio::test]
async fn a_token_cannot_issue_a_token_that_outlives_it_but_a_password_may() {
    let lib = lib();
    lib.state
        .accounts()
        .create("short-lived", PASSWORD, Role::Searcher)
        .unwrap();
    let (five_days, caller) = lib
        .state
        .accounts()
        .issue_token("short-lived", "contractor", chrono::Duration::days(5))
        .unwrap();

    // A 5-day token asks for 366 days: the new token expires with the caller's.
    let a = call(
        lib,
        "POST",
        "/v1/tokens",
        &bearer(&five_days),
        Some(json!({"name": "persist", "ttl_days": 366})),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    let v = a.json();
    let expires: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(v["token"]["expires"].clone()).unwrap();
    assert!(expires <= caller.expires, "{expires} > {}", caller.expires);
    assert_eq!(
        serde_json::from_value::<chrono::DateTime<chrono::Utc>>(v["capped_at"].clone()).unwrap(),
        caller.expires
    );
    // ...and the new token cannot extend the chain either.
    let child = v["secret"].as_str().unwrap().to_owned();
    let v = call(
        lib,
        "POST",
        "/v1/tokens",
        &bearer(&child),
        Some(json!({"name": "persist2", "ttl_days": 366})),
    )
    .await
    .json();
    let grandchild: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(v["token"]["expires"].clone()).unwrap();
    assert!(grandchild <= caller.expires);
    // A shorter lifetime than the caller's is issued as asked, without a cap.
    let v = call(
        lib,
        "POST",
        "/v1/tokens",
        &bearer(&five_days),
        Some(json!({"name": "short", "ttl_days": 1})),
    )
    .await
    .json();
    assert!(v.get("capped_at").is_none(), "{v}");

    // Signed in with the password, the account may issue up to 366 days.
    let a = call(
        lib,
        "POST",
        "/v1/tokens",
        &basic("short-lived", PASSWORD),
        Some(json!({"name": "yearly", "ttl_days": 366})),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let v = a.json();
    let expires: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(v["token"]["expires"].clone()).unwrap();
    assert!(expires - chrono::Utc::now() > chrono::Duration::days(365));
    assert!(v.get("capped_at").is_none());

    // The trail says which issue was capped.
    let issued = audit_entries(lib, "actor=short-lived&action=token_issue").await;
    assert_eq!(issued.len(), 4);
    assert!(!issued[0]["detail"]["capped_at"].is_null());
    assert!(issued[3]["detail"]["capped_at"].is_null());
}

#[test]
fn the_cli_caps_a_token_issued_with_a_token_at_that_tokens_expiry() {
    let fx = fixture(1);
    let data = fx.data.clone();
    let run = |token: Option<&str>, args: &[&str]| {
        let mut c = bin();
        c.arg("--data-dir")
            .arg(&data)
            .env("IMAGELENS_NEW_PASSWORD", "a long enough password");
        if let Some(t) = token {
            c.env("IMAGELENS_TOKEN", t);
        }
        c.args(args).output().unwrap()
    };
    let out = run(
        None,
        &[
            "account",
            "create",
            "boss",
            "--role",
            "admin",
            "--token-ttl-days",
            "2",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let boss = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .find(|l| l.starts_with("il_"))
        .unwrap()
        .to_owned();
    let out = run(
        Some(&boss),
        &["token", "issue", "--name", "long", "--ttl-days", "300"],
    );
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cut to the expiry"), "{stderr}");
    let list = crate::common::ok_json(&run(Some(&boss), &["token", "list", "--json"]));
    let tokens = list["tokens"].as_array().unwrap();
    let expiry = |name: &str| -> chrono::DateTime<chrono::Utc> {
        let t = tokens.iter().find(|t| t["name"] == name).unwrap();
        serde_json::from_value(t["expires"].clone()).unwrap()
    };
    assert!(expiry("long") <= expiry("bootstrap"));
}

#[tokio::test]
async fn a_refused_account_change_changes_nothing_and_is_audited() {
    // The last admin of its own library: demoting it is refused, and so is the new password
    // that came in the same request.
    let lib = new_lib(1, "only-admin");
    let a = call(
        &lib,
        "PATCH",
        "/v1/accounts/only-admin",
        &bearer(&lib.admin),
        Some(json!({"password": "changed-password-999", "role": "searcher"})),
    )
    .await;
    a.error(StatusCode::CONFLICT);
    call(
        &lib,
        "GET",
        "/v1/info",
        &basic("only-admin", "changed-password-999"),
        None,
    )
    .await
    .error(StatusCode::UNAUTHORIZED);
    call(
        &lib,
        "GET",
        "/v1/info",
        &basic("only-admin", PASSWORD),
        None,
    )
    .await
    .ok();

    // A weak password refuses the role change that came with it.
    lib.state
        .accounts()
        .create("helper", PASSWORD, Role::Searcher)
        .unwrap();
    call(
        &lib,
        "PATCH",
        "/v1/accounts/helper",
        &bearer(&lib.admin),
        Some(json!({"password": "short", "role": "auditor", "disabled": true})),
    )
    .await
    .error(StatusCode::BAD_REQUEST);
    let helper = lib.state.accounts().get("helper").unwrap();
    assert_eq!((helper.role, helper.disabled), (Role::Searcher, false));

    // Both refusals are in the trail, with their outcome and reason, and no password.
    let updates = audit_entries(&lib, "action=account_update").await;
    assert_eq!(updates.len(), 2, "{updates:?}");
    for (e, code) in updates.iter().zip(["last_admin", "invalid"]) {
        assert_eq!(e["outcome"], "refused", "{e}");
        assert_eq!(e["detail"]["code"], code, "{e}");
        assert!(e["detail"]["error"].is_string(), "{e}");
    }
    let trail = std::fs::read_to_string(lib.fx.data.join("audit/trail.jsonl")).unwrap();
    assert!(!trail.contains("changed-password-999"));

    // A valid change still applies, all at once.
    let v = call(
        &lib,
        "PATCH",
        "/v1/accounts/helper",
        &bearer(&lib.admin),
        Some(json!({"password": "another long password", "role": "auditor"})),
    )
    .await
    .ok();
    assert_eq!(v["role"], "auditor");
    call(
        &lib,
        "GET",
        "/v1/audit?limit=1",
        &basic("helper", "another long password"),
        None,
    )
    .await
    .ok();
}

#[tokio::test]
async fn failed_sign_ins_are_audited_and_throttled_per_account_and_per_address() {
    let lib = lib();
    lib.state
        .accounts()
        .create("target", PASSWORD, Role::Searcher)
        .unwrap();
    let from = |i: u8| Some(addr(i));
    // Ten wrong passwords for one account, each from another address: all 401, all audited.
    for i in 0..MAX_FAILED_SIGN_INS as u8 {
        let secret = format!("guess-number-{i}");
        send_as_is(
            &lib.app,
            req(
                "GET",
                "/v1/info",
                &basic("target", &secret),
                from(100 + i),
                None,
            ),
        )
        .await
        .error(StatusCode::UNAUTHORIZED);
    }
    // The account is now locked, even for the right password and from a fresh address: 429
    // with Retry-After and the JSON error shape.
    let a = send_as_is(
        &lib.app,
        req(
            "GET",
            "/v1/info",
            &basic("target", PASSWORD),
            from(200),
            None,
        ),
    )
    .await;
    let msg = a.error(StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = a.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=600).contains(&retry), "{retry}");
    // An unknown name is throttled exactly the same way, with the same message.
    for i in 0..MAX_FAILED_SIGN_INS as u8 {
        send_as_is(
            &lib.app,
            req(
                "GET",
                "/v1/info",
                &basic("no-such-user", "x"),
                from(100 + i),
                None,
            ),
        )
        .await
        .error(StatusCode::UNAUTHORIZED);
    }
    let unknown = send_as_is(
        &lib.app,
        req(
            "GET",
            "/v1/info",
            &basic("no-such-user", PASSWORD),
            from(201),
            None,
        ),
    )
    .await
    .error(StatusCode::TOO_MANY_REQUESTS);
    // The same message but for the seconds left, which tick on while the test runs.
    let without_seconds = |m: &str| m.replace(|c: char| c.is_ascii_digit(), "");
    assert_eq!(without_seconds(&unknown), without_seconds(&msg));

    // Per address: bad tokens from one address lock that address, even for a good token.
    let searcher = token_for(&lib.state, "throttle-searcher", Role::Searcher);
    for i in 0..MAX_FAILED_SIGN_INS {
        let forged = format!("il_00000000000{}_forged", i % 10);
        send_as_is(
            &lib.app,
            req("GET", "/v1/info", &bearer(&forged), from(7), None),
        )
        .await
        .error(StatusCode::UNAUTHORIZED);
    }
    send_as_is(
        &lib.app,
        req("GET", "/v1/info", &bearer(&searcher), from(7), None),
    )
    .await
    .error(StatusCode::TOO_MANY_REQUESTS);
    // Another address is not affected.
    send_as_is(
        &lib.app,
        req("GET", "/v1/info", &bearer(&searcher), from(8), None),
    )
    .await
    .ok();

    // The failures are in the trail: actor as typed, address, outcome; never the password.
    let failed = audit_entries(lib, "action=sign_in&actor=target").await;
    assert_eq!(failed.len(), MAX_FAILED_SIGN_INS, "{failed:?}");
    assert!(failed.iter().all(|e| e["outcome"] == "failed"));
    assert_eq!(failed[0]["address"], "10.0.0.100:40000");
    assert_eq!(failed.last().unwrap()["detail"]["throttled_from_now"], true);
    let unknown = audit_entries(lib, "action=sign_in&actor=no-such-user").await;
    assert_eq!(unknown.len(), MAX_FAILED_SIGN_INS);
    let tokens = audit_entries(lib, "action=sign_in&actor=token:000000000000").await;
    assert!(!tokens.is_empty());
    let trail = std::fs::read_to_string(lib.fx.data.join("audit/trail.jsonl")).unwrap();
    assert!(
        !trail.contains("guess-number-"),
        "attempted passwords are never kept"
    );
    assert!(
        !trail.contains("_forged"),
        "attempted secrets are never kept"
    );
}

#[tokio::test]
async fn an_expired_or_revoked_token_is_audited_as_denied() {
    let lib = lib();
    lib.state
        .accounts()
        .create("revokee", PASSWORD, Role::Searcher)
        .unwrap();
    let (secret, info) = lib
        .state
        .accounts()
        .issue_token("revokee", "t", chrono::Duration::days(1))
        .unwrap();
    lib.state.accounts().revoke_token(&info.id).unwrap();
    call(lib, "GET", "/v1/info", &bearer(&secret), None)
        .await
        .error(StatusCode::UNAUTHORIZED);
    let e = audit_entries(lib, &format!("action=sign_in&actor=token:{}", info.id)).await;
    assert_eq!(e.len(), 1);
    assert_eq!(e[0]["outcome"], "denied");
    assert!(
        e[0]["detail"]["reason"]
            .as_str()
            .unwrap()
            .contains("revoked")
    );
}

#[tokio::test]
async fn password_checks_beyond_the_pool_wait_briefly_then_get_503() {
    // Its own library: holding every slot must not disturb the other tests' sign-ins.
    let lib = &new_lib(1, "pool-admin");
    // Every password slot is taken (as by concurrent sign-ins): the next Basic request waits,
    // then is answered 503 in the JSON shape; a token needs no slot.
    let held = lib
        .state
        .accounts()
        .password_slots()
        .clone()
        .acquire_many_owned(MAX_CONCURRENT_PASSWORD_CHECKS as u32)
        .await
        .unwrap();
    lib.state
        .accounts()
        .create("pooled", PASSWORD, Role::Searcher)
        .unwrap();
    let a = call(lib, "GET", "/v1/info", &basic("pooled", PASSWORD), None).await;
    a.error(StatusCode::SERVICE_UNAVAILABLE);
    call(lib, "GET", "/v1/info", &bearer(&lib.admin), None)
        .await
        .ok();
    drop(held);
    call(lib, "GET", "/v1/info", &basic("pooled", PASSWORD), None)
        .await
        .ok();
}

#[tokio::test]
async fn absurd_retention_schedules_are_refused_naming_the_field() {
    let lib = lib();
    let admin = bearer(&lib.admin);
    for (schedule, field) in [
        (
            json!({"after_ingest_days": 4_294_967_295u32}),
            "after_ingest_days",
        ),
        (json!({"after_ingest_days": 36_501}), "after_ingest_days"),
        (
            json!({"retired_on": "2026-01-01T00:00:00Z", "after_retired_days": 4_294_967_295u32}),
            "after_retired_days",
        ),
        (
            json!({"retired_on": "+262000-01-01T00:00:00Z", "after_retired_days": 1}),
            "retired_on",
        ),
    ] {
        let body = json!({"schedules": {"synth": schedule}});
        let msg = call(lib, "PUT", "/v1/retention", &admin, Some(body))
            .await
            .error(StatusCode::BAD_REQUEST);
        assert!(msg.contains(field), "{field}: {msg}");
    }
    // The policy is unchanged and a run still works.
    let p = call(lib, "GET", "/v1/retention", &admin, None).await.ok();
    assert_eq!(p["schedules"], json!({}));
    call(
        lib,
        "POST",
        "/v1/retention/run",
        &admin,
        Some(json!({"dry_run": true})),
    )
    .await
    .ok();
    // The limit itself is accepted.
    call(
        lib,
        "PUT",
        "/v1/retention",
        &admin,
        Some(json!({"schedules": {"elsewhere": {"after_ingest_days": 36_500}}})),
    )
    .await
    .ok();
    call(
        lib,
        "POST",
        "/v1/retention/run",
        &admin,
        Some(json!({"dry_run": true})),
    )
    .await
    .ok();
    call(lib, "PUT", "/v1/retention", &admin, Some(json!({})))
        .await
        .ok();
}

#[test]
fn a_saved_policy_with_absurd_values_makes_retention_run_fail_clearly_not_panic() {
    let fx = fixture(2);
    fx.ingest(false);
    let run = |args: &[&str]| fx.run_with(false, args);
    // The CLI refuses to save it...
    let out = run(&[
        "retention",
        "set",
        "synth",
        "--after-ingest-days",
        "4294967295",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("after_ingest_days"));
    // ...and one written by hand (or by an older version) is reported, not a panic.
    for (policy, field) in [
        (
            json!({"schedules": {"synth": {"after_ingest_days": 4_294_967_295u32}}}),
            "after_ingest_days",
        ),
        (
            json!({"schedules": {"synth": {"retired_on": "+262000-01-01T00:00:00Z",
                                            "after_retired_days": 4_294_967_295u32}}}),
            "after_retired_days",
        ),
        (
            json!({"schedules": {"synth": {"retired_on": "+262000-01-01T00:00:00Z"}}}),
            "retired_on",
        ),
    ] {
        std::fs::write(fx.data.join("retention.json"), policy.to_string()).unwrap();
        let out = run(&["retention", "run", "--dry-run"]);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(stderr.contains(field), "{field}: {stderr}");
    }
}

#[tokio::test]
async fn a_saved_policy_out_of_range_makes_a_run_answer_409_naming_the_field() {
    let fx = fixture(1);
    fx.ingest(true);
    let policy = json!({"schedules": {"synth": {"after_ingest_days": 4_294_967_295u32}}});
    std::fs::write(fx.data.join("retention.json"), policy.to_string()).unwrap();
    let state = AppState::new(
        Arc::new(service_for(&fx)),
        Limits::default(),
        Redaction::default(),
    )
    .unwrap();
    let admin = token_for(&state, "run-admin", Role::Admin);
    let lib = Lib {
        app: router(state.clone()),
        state,
        admin,
        fx,
    };
    let admin = bearer(&lib.admin);
    for dry_run in [true, false] {
        let msg = call(
            &lib,
            "POST",
            "/v1/retention/run",
            &admin,
            Some(json!({ "dry_run": dry_run })),
        )
        .await
        .error(StatusCode::CONFLICT);
        assert!(msg.contains("after_ingest_days"), "{msg}");
    }
    // Nothing was deleted, and the policy can be corrected.
    let v = call(&lib, "GET", "/v1/lookup", &admin, None).await.ok();
    assert_eq!(v["total"], 1);
    call(&lib, "PUT", "/v1/retention", &admin, Some(json!({})))
        .await
        .ok();
    call(
        &lib,
        "POST",
        "/v1/retention/run",
        &admin,
        Some(json!({"dry_run": true})),
    )
    .await
    .ok();
}

#[tokio::test]
async fn record_holds_are_kept_by_ref_and_still_hold() {
    let lib = new_lib(2, "hold-admin");
    let admin = bearer(&lib.admin);
    let v = call(&lib, "GET", "/v1/lookup?limit=10", &admin, None)
        .await
        .ok();
    let id = v["results"][0]["id"].as_str().unwrap().to_owned();
    let policy = json!({"record_holds": {id.clone(): {"reason": "case 77", "by": "legal",
                                                     "since": "2026-01-01T00:00:00Z"}}});
    let saved = call(&lib, "PUT", "/v1/retention", &admin, Some(policy))
        .await
        .ok();
    let key = saved["record_holds"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    assert_eq!(key, lib.state.audit().record_ref(&id));
    // The hold holds.
    call(
        &lib,
        "DELETE",
        &format!("/v1/records/{id}?reason=r"),
        &admin,
        None,
    )
    .await
    .error(StatusCode::CONFLICT);
    // A GET, then a PUT of what it gave, keeps the hold as it is.
    let shown = call(&lib, "GET", "/v1/retention", &admin, None).await.ok();
    let again = call(&lib, "PUT", "/v1/retention", &admin, Some(shown.clone()))
        .await
        .ok();
    assert_eq!(again, shown);
    // Neither the file nor the trail names the record in clear.
    for file in ["retention.json", "audit/trail.jsonl"] {
        let text = std::fs::read_to_string(lib.fx.data.join(file)).unwrap();
        assert!(!text.contains(&id), "{file} names the held record");
    }
    // Released, it can go.
    call(&lib, "PUT", "/v1/retention", &admin, Some(json!({})))
        .await
        .ok();
    call(
        &lib,
        "DELETE",
        &format!("/v1/records/{id}?reason=r"),
        &admin,
        None,
    )
    .await
    .ok();
}

#[tokio::test]
async fn revoking_a_token_answers_alike_for_unknown_ids_and_other_accounts_tokens() {
    let lib = lib();
    let searcher = token_for(&lib.state, "oracle-searcher", Role::Searcher);
    let (_, other) = lib
        .state
        .accounts()
        .issue_token("root-admin", "someone-elses", chrono::Duration::days(1))
        .unwrap();
    let unknown = call(
        lib,
        "DELETE",
        "/v1/tokens/000000000000",
        &bearer(&searcher),
        None,
    )
    .await
    .error(StatusCode::FORBIDDEN);
    let existing = call(
        lib,
        "DELETE",
        &format!("/v1/tokens/{}", other.id),
        &bearer(&searcher),
        None,
    )
    .await
    .error(StatusCode::FORBIDDEN);
    assert_eq!(unknown, existing);
    assert!(
        lib.state
            .accounts()
            .tokens(None)
            .iter()
            .any(|t| t.id == other.id && t.revoked.is_none())
    );
    // An admin is told the truth.
    call(
        lib,
        "DELETE",
        "/v1/tokens/000000000000",
        &bearer(&lib.admin),
        None,
    )
    .await
    .error(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn deleting_a_dataset_that_does_not_exist_says_so() {
    let lib = lib();
    let msg = call(
        lib,
        "POST",
        "/v1/deletions",
        &bearer(&lib.admin),
        Some(json!({"dataset": "nope", "reason": "r"})),
    )
    .await
    .error(StatusCode::NOT_FOUND);
    assert!(msg.contains("no dataset named \"nope\""), "{msg}");
    let msg = call(
        lib,
        "POST",
        "/v1/deletions",
        &bearer(&lib.admin),
        Some(json!({"reason": "r"})),
    )
    .await
    .error(StatusCode::BAD_REQUEST);
    assert!(msg.contains("ids, a dataset"), "{msg}");
}

#[tokio::test]
async fn collection_descriptions_are_bounded() {
    let lib = lib();
    let admin = bearer(&lib.admin);
    let msg = call(
        lib,
        "POST",
        "/v1/collections",
        &admin,
        Some(json!({"name": "long-description", "description": "x".repeat(2_001)})),
    )
    .await
    .error(StatusCode::BAD_REQUEST);
    assert!(msg.contains("description"), "{msg}");
    assert!(msg.len() < 200, "the description is not echoed back");
    let a = call(
        lib,
        "POST",
        "/v1/collections",
        &admin,
        Some(json!({"name": "long-description", "description": "é".repeat(2_000)})),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED);
}

// ---------------------------------------------------------------------------------------------
// Property tests: every admin route's JSON body, through the real router.

/// The admin of the property tests' library: a name the generators never produce, so no
/// generated request demotes, disables or re-passwords it.
const PROP_ADMIN: &str = "prop.root@admin";

fn prop_lib() -> &'static Lib {
    static LIB: OnceLock<Lib> = OnceLock::new();
    LIB.get_or_init(|| new_lib(3, PROP_ADMIN))
}

/// The record ids of the property tests' library, as it was before any generated deletion.
fn prop_ids() -> Vec<String> {
    static IDS: OnceLock<Vec<String>> = OnceLock::new();
    IDS.get_or_init(|| {
        let lib = prop_lib();
        let r = Request::get("/v1/lookup?limit=100")
            .header(header::AUTHORIZATION, bearer(&lib.admin))
            .body(Body::empty())
            .unwrap();
        let v = runtime().block_on(send_as_is(&lib.app, r)).ok();
        crate::common::ids(&v)
    })
    .clone()
}

/// Values that are usually of the right kind for admin fields, sometimes anything.
fn field_value() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => hostile_string().prop_map(Value::String),
        2 => hostile_number(),
        1 => prop::sample::select(vec!["searcher", "curator", "auditor", "admin", "root"])
            .prop_map(|r| json!(r)),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => Just(Value::Null),
        1 => prop::collection::vec(hostile_string().prop_map(Value::String), 0..4)
            .prop_map(Value::Array),
        1 => any_json(),
    ]
    .boxed()
}

/// A password that is rarely valid: each valid one costs an argon2 hash.
fn password() -> impl Strategy<Value = Value> {
    prop_oneof![
        30 => "\\PC{0,11}".prop_map(Value::String),
        5 => field_value(),
        1 => Just(json!("a long enough password")),
    ]
}

/// A field's value: usually of the right type (`right`), sometimes anything.
fn typed(right: impl Strategy<Value = Value> + 'static) -> BoxedStrategy<Value> {
    prop_oneof![5 => right, 1 => field_value()].boxed()
}

fn name_value() -> BoxedStrategy<Value> {
    typed(
        prop_oneof![
            4 => "[a-z][a-z0-9._@-]{0,10}",
            1 => hostile_string(),
        ]
        .prop_map(Value::String),
    )
}

fn text_value() -> BoxedStrategy<Value> {
    typed(
        prop_oneof![
            3 => "[a-z ]{1,20}",
            1 => hostile_string(),
            1 => Just("y".repeat(2_001)),
        ]
        .prop_map(Value::String),
    )
}

fn days_value() -> BoxedStrategy<Value> {
    typed(prop_oneof![3 => (0u32..400).prop_map(|n| json!(n)), 2 => hostile_number()])
}

fn bool_value() -> BoxedStrategy<Value> {
    typed(any::<bool>().prop_map(Value::Bool))
}

fn role_value() -> BoxedStrategy<Value> {
    typed(
        prop::sample::select(vec![
            "searcher", "curator", "auditor", "admin", "Admin", "root",
        ])
        .prop_map(|r| json!(r)),
    )
}

fn date_value() -> BoxedStrategy<Value> {
    typed(
        prop_oneof![
            Just("2026-01-01T00:00:00Z".to_owned()),
            Just("+262000-01-01T00:00:00Z".to_owned()),
            Just("-262000-01-01T00:00:00Z".to_owned()),
            Just("1899-12-31T23:59:59Z".to_owned()),
            Just("9999-12-31T23:59:59Z".to_owned()),
            (1i32..12_000).prop_map(|y| format!("{y:04}-06-01T00:00:00Z")),
        ]
        .prop_map(Value::String),
    )
}

/// Ids of the property tests' library (real ones: generated requests do delete records),
/// plus ids that are not there.
fn id_value() -> BoxedStrategy<Value> {
    let real = prop_ids();
    typed(prop_oneof![
        2 => prop::sample::select(real).prop_map(Value::String),
        1 => Just(json!("0000000000000000")),
        1 => hostile_string().prop_map(Value::String),
    ])
}

fn ids_value() -> BoxedStrategy<Value> {
    typed(prop::collection::vec(id_value(), 0..4).prop_map(Value::Array))
}

/// An object with each of `fields` present or not, plus now and then an unknown key.
fn object(fields: Vec<(&'static str, BoxedStrategy<Value>)>) -> BoxedStrategy<Value> {
    let parts: Vec<BoxedStrategy<Option<(String, Value)>>> = fields
        .into_iter()
        .map(|(k, v)| {
            proptest::option::weighted(0.7, v)
                .prop_map(move |v| v.map(|v| (k.to_owned(), v)))
                .boxed()
        })
        .collect();
    let extra = proptest::option::weighted(0.1, (hostile_string(), field_value()));
    (parts, extra)
        .prop_map(|(parts, extra)| {
            let mut m = Map::new();
            for (k, v) in parts.into_iter().flatten().chain(extra) {
                m.insert(k, v);
            }
            Value::Object(m)
        })
        .boxed()
}

fn account_body() -> BoxedStrategy<Value> {
    object(vec![
        ("name", name_value()),
        ("password", password().boxed()),
        ("role", role_value()),
        ("disabled", bool_value()),
    ])
}

fn token_body() -> BoxedStrategy<Value> {
    object(vec![
        ("name", name_value()),
        (
            "account",
            typed(prop_oneof![
                Just(json!(PROP_ADMIN)),
                Just(json!("viewer")),
                Just(json!("nobody")),
            ]),
        ),
        ("ttl_days", days_value()),
    ])
}

fn hold() -> BoxedStrategy<Value> {
    object(vec![
        ("reason", text_value()),
        ("by", text_value()),
        ("since", date_value()),
    ])
}

fn schedule() -> BoxedStrategy<Value> {
    object(vec![
        ("after_ingest_days", days_value()),
        ("retired_on", date_value()),
        ("after_retired_days", days_value()),
    ])
}

fn dataset_key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just("synth".to_owned()),
        1 => Just("other".to_owned()),
        1 => hostile_string(),
    ]
}

fn retention_body() -> BoxedStrategy<Value> {
    let map = |v: BoxedStrategy<Value>, key: BoxedStrategy<String>| {
        typed(
            prop::collection::btree_map(key, v, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        )
    };
    let record_key = prop_oneof![
        2 => prop::sample::select(prop_ids()),
        1 => hostile_string(),
    ]
    .boxed();
    object(vec![
        ("schedules", map(schedule(), dataset_key().boxed())),
        ("dataset_holds", map(hold(), dataset_key().boxed())),
        ("record_holds", map(hold(), record_key)),
    ])
}

fn search_value() -> BoxedStrategy<Value> {
    typed(prop_oneof![
        "[a-z ]{0,12}".prop_map(|q| json!({ "query": q })),
        id_value().prop_map(|id| json!({ "like": id })),
        (hostile_string(), field_value())
            .prop_map(|(q, f)| json!({ "query": q, "filter": { "filename": f } })),
    ])
}

fn deletion_body() -> BoxedStrategy<Value> {
    object(vec![
        ("ids", ids_value()),
        ("dataset", typed(dataset_key().prop_map(Value::String))),
        ("reason", text_value()),
    ])
}

fn collection_body() -> BoxedStrategy<Value> {
    object(vec![
        ("name", name_value()),
        ("description", text_value()),
        ("ids", ids_value()),
        ("search", search_value()),
        ("max_results", days_value()),
    ])
}

fn collection_update() -> BoxedStrategy<Value> {
    object(vec![("add", ids_value()), ("remove", ids_value())])
}

/// Answers seen by the property tests, by route and status (printed with `--nocapture`, so a
/// run shows the inputs reached past parsing).
fn seen() -> &'static std::sync::Mutex<std::collections::BTreeMap<(String, u16), usize>> {
    static SEEN: OnceLock<std::sync::Mutex<std::collections::BTreeMap<(String, u16), usize>>> =
        OnceLock::new();
    SEEN.get_or_init(Default::default)
}

fn print_seen(prefix: &str) {
    let seen = seen().lock().unwrap();
    for ((route, status), n) in seen.iter().filter(|((r, _), _)| r.contains(prefix)) {
        eprintln!("{route} {status}: {n}");
    }
}

/// Sends `body` (JSON text, or raw bytes) with the admin's token and checks the answer.
fn check_route(method: &str, uri: &str, body: Vec<u8>) -> Result<(), TestCaseError> {
    let lib = prop_lib();
    let mut r = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, bearer(&lib.admin))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap();
    r.extensions_mut().insert(ConnectInfo(addr(1)));
    let answer = runtime().block_on(send_as_is(&lib.app, r));
    let status = answer.status;
    let text = String::from_utf8_lossy(&answer.body);
    let what = format!("{method} {uri}");
    let route = format!(
        "{method} {}",
        uri.rsplit_once('/').map_or(uri, |(head, _)| {
            if uri.starts_with("/v1/accounts/") || uri.starts_with("/v1/collections/") {
                head
            } else {
                uri
            }
        })
    );
    *seen()
        .lock()
        .unwrap()
        .entry((route, status.as_u16()))
        .or_default() += 1;
    // No 503 here: these routes have no busy answer.
    prop_assert!(!status.is_server_error(), "{what}: {status}: {text}");
    check_answer(&answer, &what)
}

/// A body: the structure-aware value as JSON, or any JSON value, or any bytes.
fn body_of(structured: impl Strategy<Value = Value>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => structured.prop_map(|v| v.to_string().into_bytes()),
        2 => any_json().prop_map(|v| v.to_string().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]
}

fn account_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("viewer".to_owned()),
        Just("curator".to_owned()),
        Just("nobody".to_owned()),
        Just("%20".to_owned()),
        "[a-z]{1,6}",
    ]
}

#[test]
fn account_bodies_never_panic_and_always_answer_json() {
    prop_lib();
    // Accounts the PATCHes find.
    for name in ["viewer", "curator"] {
        let _ = prop_lib()
            .state
            .accounts()
            .create(name, "a long enough password", Role::Searcher);
    }
    let mut runner = runner();
    let routes = (any::<bool>(), account_name(), body_of(account_body()));
    runner
        .run(&routes, |(create, name, body)| {
            if create {
                check_route("POST", "/v1/accounts", body)
            } else {
                check_route("PATCH", &format!("/v1/accounts/{name}"), body)
            }
        })
        .unwrap();
    print_seen("/v1/accounts");
    // The admin is still the admin.
    let me = prop_lib().state.accounts().get(PROP_ADMIN).unwrap();
    assert_eq!((me.role, me.disabled), (Role::Admin, false));
}

#[test]
fn token_bodies_never_panic_and_always_answer_json() {
    runner()
        .run(&body_of(token_body()), |body| {
            check_route("POST", "/v1/tokens", body)
        })
        .unwrap();
    print_seen("/v1/tokens");
}

#[test]
fn retention_bodies_never_panic_and_always_answer_json() {
    let run = object(vec![("dry_run", bool_value())]);
    let routes = (0..2u8, body_of(retention_body()), body_of(run));
    runner()
        .run(&routes, |(route, policy, run)| {
            if route == 0 {
                check_route("PUT", "/v1/retention", policy)
            } else {
                check_route("POST", "/v1/retention/run", run)
            }
        })
        .unwrap();
    print_seen("/v1/retention");
}

#[test]
fn deletion_and_collection_bodies_never_panic_and_always_answer_json() {
    // A collection the PATCHes find.
    let _ = prop_lib()
        .state
        .collections()
        .create("keep", None, vec![], None, None);
    let deletion = deletion_body();
    let collection = collection_body();
    let update = collection_update();
    let name = prop_oneof![Just("keep".to_owned()), "[a-z][a-z0-9._@-]{0,3}"];
    let routes = (
        0..3u8,
        body_of(deletion),
        body_of(collection),
        body_of(update),
        name,
    );
    runner()
        .run(
            &routes,
            |(route, deletion, collection, update, name)| match route {
                0 => check_route("POST", "/v1/deletions", deletion),
                1 => check_route("POST", "/v1/collections", collection),
                _ => check_route("PATCH", &format!("/v1/collections/{name}"), update),
            },
        )
        .unwrap();
    print_seen("/v1/deletions");
    print_seen("/v1/collections");
}
