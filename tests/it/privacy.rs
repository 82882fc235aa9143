//! Privacy and access end to end: roles per route, tokens, the audit trail of every read and
//! its tamper evidence, deletion without residue, redaction, retention and the CLI's accounts.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use imagelens::governance::accounts::{Permission, Role};
use imagelens::governance::redact::Redaction;
use imagelens::http::{AppState, router};
use imagelens::settings::Limits;
use serde_json::{Value, json};

use crate::common::{Fixture, bin, fixture, ok_json, path_str};
use crate::http::{Answer, send_as_is, service_for, shared, token_for};

/// A fixture library with its own state and one account per role.
struct Lib {
    state: AppState,
    app: Router,
    tokens: Vec<(Role, String)>,
    // Last: fields drop in order, and the stores must close before their folder is removed.
    fx: Fixture,
}

fn lib(count: usize) -> Lib {
    let fx = fixture(count);
    fx.ingest(true);
    let state = AppState::new(
        Arc::new(service_for(&fx)),
        Limits::default(),
        Redaction::default(),
    )
    .unwrap();
    let tokens = Role::ALL
        .iter()
        .map(|r| (*r, token_for(&state, &format!("{}1", r.as_str()), *r)))
        .collect();
    let app = router(state.clone());
    Lib {
        fx,
        state,
        app,
        tokens,
    }
}

impl Lib {
    fn token(&self, role: Role) -> &str {
        &self.tokens.iter().find(|(r, _)| *r == role).unwrap().1
    }

    async fn call(
        &self,
        token: Option<&str>,
        method: &str,
        uri: &str,
        body: Option<Value>,
    ) -> Answer {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        };
        send_as_is(&self.app, req.unwrap()).await
    }

    async fn as_role(&self, role: Role, method: &str, uri: &str, body: Option<Value>) -> Answer {
        self.call(Some(self.token(role)), method, uri, body).await
    }

    async fn ids(&self) -> Vec<String> {
        let v = self
            .as_role(Role::Admin, "GET", "/v1/lookup?limit=500", None)
            .await
            .ok();
        crate::common::ids(&v)
    }
}

#[tokio::test]
async fn every_route_allows_exactly_the_roles_that_hold_its_permission() {
    let lib = lib(4);
    let id = lib.ids().await[0].clone();
    let absent = "ffffffffffffffff";
    // (method, uri, body, permission); None: any signed-in account. Bodies and targets are
    // chosen so that an allowed call changes nothing (unknown ids, invalid bodies).
    let table: Vec<(&str, String, Option<Value>, Option<Permission>)> = vec![
        (
            "POST",
            "/v1/search".into(),
            Some(json!({"query": "dog"})),
            Some(Permission::Search),
        ),
        ("GET", "/v1/facets".into(), None, Some(Permission::Search)),
        (
            "GET",
            "/v1/lookup?limit=5".into(),
            None,
            Some(Permission::Lookup),
        ),
        ("GET", "/v1/info".into(), None, None),
        (
            "GET",
            format!("/v1/records/{id}"),
            None,
            Some(Permission::ViewRecord),
        ),
        (
            "GET",
            format!("/v1/records/{id}/image"),
            None,
            Some(Permission::ViewRecord),
        ),
        (
            "GET",
            format!("/v1/records/{id}/image?unredacted=true"),
            None,
            Some(Permission::ViewUnredacted),
        ),
        (
            "GET",
            format!("/v1/records/{id}/thumbnail"),
            None,
            Some(Permission::ViewRecord),
        ),
        (
            "GET",
            format!("/v1/records/{id}/thumbnail?unredacted=true"),
            None,
            Some(Permission::ViewUnredacted),
        ),
        (
            "DELETE",
            format!("/v1/records/{absent}?reason=x"),
            None,
            Some(Permission::Delete),
        ),
        (
            "POST",
            "/v1/deletions".into(),
            Some(json!({"ids": [absent], "reason": "x"})),
            Some(Permission::Delete),
        ),
        (
            "GET",
            "/v1/collections".into(),
            None,
            Some(Permission::Collections),
        ),
        (
            "POST",
            "/v1/collections".into(),
            Some(json!({"name": "bad name"})),
            Some(Permission::Collections),
        ),
        (
            "GET",
            "/v1/collections/absent".into(),
            None,
            Some(Permission::Collections),
        ),
        (
            "PATCH",
            "/v1/collections/absent".into(),
            Some(json!({})),
            Some(Permission::Collections),
        ),
        (
            "PATCH",
            "/v1/collections/absent".into(),
            Some(json!({"name": "renamed"})),
            Some(Permission::Collections),
        ),
        (
            "GET",
            "/v1/facets?query=dog".into(),
            None,
            Some(Permission::Search),
        ),
        (
            "DELETE",
            "/v1/collections/absent".into(),
            None,
            Some(Permission::Collections),
        ),
        (
            "GET",
            "/v1/collections/absent/export".into(),
            None,
            Some(Permission::Export),
        ),
        (
            "POST",
            "/v1/export".into(),
            Some(json!({"search": {"query": "x"}, "format": "tiff"})),
            Some(Permission::Export),
        ),
        (
            "GET",
            "/v1/audit?limit=1".into(),
            None,
            Some(Permission::ReadAudit),
        ),
        (
            "GET",
            "/v1/audit/verify".into(),
            None,
            Some(Permission::ReadAudit),
        ),
        (
            "GET",
            "/v1/accounts".into(),
            None,
            Some(Permission::ManageAccounts),
        ),
        (
            "POST",
            "/v1/accounts".into(),
            Some(json!({})),
            Some(Permission::ManageAccounts),
        ),
        (
            "PATCH",
            "/v1/accounts/absent".into(),
            Some(json!({})),
            Some(Permission::ManageAccounts),
        ),
        (
            "DELETE",
            "/v1/accounts/absent".into(),
            None,
            Some(Permission::ManageAccounts),
        ),
        ("GET", "/v1/tokens".into(), None, None),
        ("POST", "/v1/tokens".into(), Some(json!({"name": ""})), None),
        // Revoking a token that is not one's own needs manage_accounts, whether or not the id
        // exists (no token-id oracle).
        (
            "DELETE",
            "/v1/tokens/absent".into(),
            None,
            Some(Permission::ManageAccounts),
        ),
        (
            "GET",
            "/v1/retention".into(),
            None,
            Some(Permission::Retention),
        ),
        (
            "PUT",
            "/v1/retention".into(),
            Some(json!({"schedules": {"d": {}}})),
            Some(Permission::Retention),
        ),
        (
            "POST",
            "/v1/retention/run".into(),
            Some(json!({"dry_run": true})),
            Some(Permission::Retention),
        ),
        ("GET", "/v1/openapi.json".into(), None, None),
        ("GET", "/metrics".into(), None, None),
    ];
    for (method, uri, body, permission) in &table {
        let a = lib.call(None, method, uri, body.clone()).await;
        assert_eq!(
            a.status,
            StatusCode::UNAUTHORIZED,
            "{method} {uri} without credentials"
        );
        assert!(a.headers.contains_key(header::WWW_AUTHENTICATE));
        let a = lib
            .call(Some("il_000000000000_forged"), method, uri, body.clone())
            .await;
        assert_eq!(
            a.status,
            StatusCode::UNAUTHORIZED,
            "{method} {uri} forged token"
        );
        for role in Role::ALL {
            let a = lib.as_role(role, method, uri, body.clone()).await;
            let allowed = permission.is_none_or(|p| role.allows(p));
            if allowed {
                assert!(
                    a.status != StatusCode::FORBIDDEN && a.status != StatusCode::UNAUTHORIZED,
                    "{role:?} may {method} {uri}: got {} {}",
                    a.status,
                    String::from_utf8_lossy(&a.body)
                );
                assert!(!a.status.is_server_error(), "{method} {uri}: {}", a.status);
            } else {
                let msg = a.error(StatusCode::FORBIDDEN);
                assert!(msg.contains(role.as_str()), "{msg}");
            }
        }
    }
    // Health needs no account.
    assert_eq!(
        lib.call(None, "GET", "/healthz", None).await.status,
        StatusCode::OK
    );
    // Refusals are in the trail.
    let denied = lib
        .as_role(
            Role::Auditor,
            "GET",
            "/v1/audit?action=search&limit=1000",
            None,
        )
        .await
        .ok();
    let outcomes: BTreeSet<&str> = denied["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert!(
        outcomes.contains("denied") && outcomes.contains("ok"),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn tokens_are_revocable_and_disabled_accounts_are_shut_out() {
    let lib = lib(2);
    let issued = lib
        .as_role(
            Role::Admin,
            "POST",
            "/v1/tokens",
            Some(json!({"name": "curation-tool", "account": "searcher1", "ttl_days": 2})),
        )
        .await;
    assert_eq!(issued.status, StatusCode::CREATED);
    let v = issued.json();
    let secret = v["secret"].as_str().unwrap().to_owned();
    let id = v["token"]["id"].as_str().unwrap().to_owned();
    assert!(v["token"]["expires"].as_str().unwrap() > v["token"]["created"].as_str().unwrap());
    let search = Some(json!({"query": "dog"}));
    lib.call(Some(&secret), "POST", "/v1/search", search.clone())
        .await
        .ok();
    // Listing shows no secrets.
    let list = lib.as_role(Role::Admin, "GET", "/v1/tokens", None).await;
    assert!(!String::from_utf8_lossy(&list.body).contains(&secret));
    // A searcher cannot issue tokens for others.
    lib.as_role(
        Role::Searcher,
        "POST",
        "/v1/tokens",
        Some(json!({"name": "x", "account": "admin1"})),
    )
    .await
    .error(StatusCode::FORBIDDEN);
    // Revoked: refused at once.
    lib.as_role(Role::Admin, "DELETE", &format!("/v1/tokens/{id}"), None)
        .await
        .ok();
    let msg = lib
        .call(Some(&secret), "POST", "/v1/search", search.clone())
        .await
        .error(StatusCode::UNAUTHORIZED);
    assert!(msg.contains("revoked"), "{msg}");
    // Disabled account: its other token stops working too; enabling restores it.
    lib.as_role(
        Role::Admin,
        "PATCH",
        "/v1/accounts/searcher1",
        Some(json!({"disabled": true})),
    )
    .await
    .ok();
    let msg = lib
        .as_role(Role::Searcher, "POST", "/v1/search", search.clone())
        .await
        .error(StatusCode::UNAUTHORIZED);
    assert!(msg.contains("disabled"), "{msg}");
    lib.as_role(
        Role::Admin,
        "PATCH",
        "/v1/accounts/searcher1",
        Some(json!({"disabled": false})),
    )
    .await
    .ok();
    lib.as_role(Role::Searcher, "POST", "/v1/search", search)
        .await
        .ok();
    // Basic auth with the account's password works; a wrong one gets the generic message.
    use base64::Engine;
    let basic = |pw: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("searcher1:{pw}"))
        )
    };
    let req = |auth: String| {
        Request::get("/v1/info")
            .header(header::AUTHORIZATION, auth)
            .body(Body::empty())
            .unwrap()
    };
    send_as_is(&lib.app, req(basic("correct horse battery staple")))
        .await
        .ok();
    let msg = send_as_is(&lib.app, req(basic("wrong")))
        .await
        .error(StatusCode::UNAUTHORIZED);
    assert_eq!(msg, "invalid credentials");
    // The last admin cannot remove itself.
    lib.as_role(Role::Admin, "DELETE", "/v1/accounts/admin1", None)
        .await
        .error(StatusCode::CONFLICT);
}

/// Runs the binary against a library with a token.
fn cli(data: &Path, token: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut c = bin();
    c.arg("--data-dir").arg(data).args(args);
    match token {
        Some(t) => c.env("IMAGELENS_TOKEN", t),
        None => c.env_remove("IMAGELENS_TOKEN"),
    };
    c.output().unwrap()
}

#[tokio::test]
async fn every_read_is_audited_and_verify_catches_any_edit_removal_or_swap() {
    let lib = lib(6);
    let ids = lib.ids().await;
    let id = ids[2].clone();
    let before = lib.state.audit().len();
    // One read of each kind, by the roles that may.
    let reads: Vec<(Role, &str, String, Option<Value>, &str)> = vec![
        (
            Role::Searcher,
            "POST",
            "/v1/search".into(),
            Some(json!({"query": "a photo"})),
            "search",
        ),
        (
            Role::Searcher,
            "GET",
            format!("/v1/records/{id}"),
            None,
            "view_record",
        ),
        (
            Role::Searcher,
            "GET",
            format!("/v1/records/{id}/image"),
            None,
            "view_image",
        ),
        (
            Role::Searcher,
            "GET",
            format!("/v1/records/{id}/thumbnail"),
            None,
            "view_thumbnail",
        ),
        (
            Role::Auditor,
            "GET",
            "/v1/lookup?limit=50".into(),
            None,
            "lookup",
        ),
        (
            Role::Curator,
            "POST",
            "/v1/export".into(),
            Some(json!({"search": {"query": "a photo"}, "format": "csv"})),
            "export",
        ),
    ];
    for (role, method, uri, body, _) in &reads {
        let a = lib.as_role(*role, method, uri, body.clone()).await;
        assert_eq!(a.status, StatusCode::OK, "{method} {uri}");
    }
    assert_eq!(lib.state.audit().len(), before + reads.len() as u64);
    // Who saw record X: every read that returned or showed it, with the account and purpose.
    let req = Request::get(format!("/v1/audit?record={id}"))
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", lib.token(Role::Auditor)),
        )
        .header("x-purpose", "case 42")
        .body(Body::empty())
        .unwrap();
    let v = send_as_is(&lib.app, req).await.ok();
    let seen: BTreeSet<(String, String)> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_owned(),
                e["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (role, _, _, _, action) in &reads {
        assert!(
            seen.contains(&(format!("{}1", role.as_str()), action.to_string())),
            "{action} by {role:?} missing from {seen:?}"
        );
    }
    // What did the searcher see between two dates.
    let v = lib
        .as_role(
            Role::Auditor,
            "GET",
            "/v1/audit?actor=searcher1&after=2000-01-01T00:00:00Z&before=2100-01-01T00:00:00Z",
            None,
        )
        .await
        .ok();
    assert_eq!(v["entries"].as_array().unwrap().len(), 4);
    // The stated purpose is kept.
    let v = lib
        .as_role(Role::Auditor, "GET", "/v1/audit?action=audit_query", None)
        .await
        .ok();
    assert!(
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["purpose"] == "case 42")
    );
    let msg = lib
        .as_role(Role::Auditor, "GET", "/v1/audit?limit=1000000", None)
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(msg.contains("limit"), "{msg}");

    // The CLI verifies the chain; then every kind of tampering is caught.
    let auditor = lib.token(Role::Auditor).to_owned();
    let data = lib.fx.data.clone();
    let verify = || cli(&data, Some(&auditor), &["audit", "verify", "--json"]);
    let ok = verify();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let trail = data.join("audit").join("trail.jsonl");
    let original = std::fs::read(&trail).unwrap();
    let lines: Vec<&[u8]> = original.split_inclusive(|b| *b == b'\n').collect();
    assert!(lines.len() >= 8, "{} entries", lines.len());
    let mut tampered: Vec<(String, Vec<u8>)> = Vec::new();
    // Single-byte edits at several places of a middle entry.
    let middle = lines[..5].concat().len();
    for offset in [10, 40, lines[5].len() / 2, lines[5].len() - 20] {
        let mut t = original.clone();
        let b = &mut t[middle + offset];
        *b = if *b == b'a' {
            b'b'
        } else if b.is_ascii_digit() {
            b'0' + (*b - b'0' + 1) % 10
        } else {
            b'a'
        };
        tampered.push((format!("byte {offset} of entry 6"), t));
    }
    let mut t = lines.clone();
    t.remove(4);
    tampered.push(("entry 5 removed".into(), t.concat()));
    let mut t = lines.clone();
    t.swap(3, 4);
    tampered.push(("entries 4 and 5 swapped".into(), t.concat()));
    let mut t = lines.clone();
    t.pop();
    tampered.push(("last entry removed".into(), t.concat()));
    for (what, bytes) in tampered {
        assert_ne!(bytes, original);
        std::fs::write(&trail, &bytes).unwrap();
        let out = verify();
        assert!(!out.status.success(), "verify must fail: {what}");
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["ok"], false, "{what}");
        assert!(report["problem"].is_string(), "{what}");
    }
    std::fs::write(&trail, &original).unwrap();
    assert!(verify().status.success());
}

/// Every document tantivy's store holds in the index at `dir`, as JSON, read past the deletion
/// bitsets: a document marked deleted but still in a segment counts.
fn stored_documents(dir: &Path) -> Vec<String> {
    use tantivy::schema::document::Document as _;
    let index = tantivy::Index::open_in_dir(dir).unwrap();
    let schema = index.schema();
    let reader = index.reader().unwrap();
    let searcher = reader.searcher();
    let mut out = Vec::new();
    for segment in searcher.segment_readers() {
        let store = segment.get_store_reader(1).unwrap();
        for doc in store.iter::<tantivy::TantivyDocument>(None) {
            out.push(doc.unwrap().to_json(&schema));
        }
    }
    out
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn a_deleted_record_leaves_no_residue_in_any_file_or_answer() {
    // A library whose first scene has a caption no other record shares.
    let fx = fixture(6);
    let caption = "the quokka ledger number 7731 on a pier";
    let mut captions: Value =
        serde_json::from_slice(&std::fs::read(&fx.synth.captions).unwrap()).unwrap();
    captions["annotations"][0]["caption"] = caption.into();
    std::fs::write(&fx.synth.captions, captions.to_string()).unwrap();
    fx.ingest(true);
    let state = AppState::new(
        Arc::new(service_for(&fx)),
        Limits::default(),
        Redaction::default(),
    )
    .unwrap();
    let admin = token_for(&state, "admin1", Role::Admin);
    let searcher = token_for(&state, "searcher1", Role::Searcher);
    let app = router(state.clone());
    let lib = Lib {
        fx,
        state,
        app,
        tokens: vec![(Role::Admin, admin), (Role::Searcher, searcher)],
    };
    let v = lib
        .as_role(Role::Admin, "GET", "/v1/lookup?limit=500", None)
        .await
        .ok();
    let target = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["captions"][0] == caption)
        .unwrap()
        .clone();
    let id = target["id"].as_str().unwrap().to_owned();
    let filename = target["filename"].as_str().unwrap().to_owned();
    let path = target["path"].as_str().unwrap().to_owned();
    let image = std::fs::read(lib.fx.synth.images.join(&path)).unwrap();
    let window = image[image.len() / 2..image.len() / 2 + 64].to_vec();

    // It is searched, viewed and collected before it goes.
    lib.as_role(
        Role::Searcher,
        "POST",
        "/v1/search",
        Some(json!({"query": "a photo", "limit": 50})),
    )
    .await
    .ok();
    lib.as_role(
        Role::Searcher,
        "GET",
        &format!("/v1/records/{id}/thumbnail"),
        None,
    )
    .await;
    let a = lib
        .as_role(
            Role::Admin,
            "POST",
            "/v1/collections",
            Some(json!({"name": "keep", "ids": [id]})),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED);

    let needles: [(&str, &[u8]); 5] = [
        ("id", id.as_bytes()),
        ("filename", filename.as_bytes()),
        ("path", path.as_bytes()),
        ("caption", caption.as_bytes()),
        ("image bytes", &window),
    ];
    // Before: the record's text is really in the files the scan below reads (tantivy's store
    // and fast fields, the shard's WAL, payloads and payload indexes, collections.json), so
    // the scan after deletion is not vacuous. Image bytes never are: the library keeps no
    // copies of images and no thumbnail cache.
    for (what, needle) in needles {
        let holders = files(&lib.fx.data)
            .into_iter()
            .filter(|f| contains(&std::fs::read(f).unwrap(), needle))
            .count();
        if what == "image bytes" {
            assert_eq!(holders, 0, "the library holds no image copies");
        } else if what == "caption" {
            // Only tantivy's document store holds captions, and it compresses its blocks, so
            // whether the raw bytes show depends on what else shares the block: read the store.
            assert!(
                stored_documents(&lib.fx.data.join("keyword"))
                    .iter()
                    .any(|d| d.contains(caption)),
                "the record's caption is in the keyword store before deletion"
            );
        } else {
            assert!(
                holders > 0,
                "the record's {what} is in some file before deletion"
            );
        }
    }
    let receipt = lib
        .as_role(
            Role::Admin,
            "DELETE",
            &format!("/v1/records/{id}?reason=erasure-request-17"),
            None,
        )
        .await
        .ok();
    assert_eq!(receipt["records"][0]["id"], id.as_str());
    assert_eq!(receipt["records"][0]["filename"], filename.as_str());
    assert_eq!(receipt["reason"], "erasure-request-17");
    assert!(receipt["digest"].as_str().unwrap().len() == 64);

    // No file in the data directory holds its id, file name, caption or image bytes.
    for file in files(&lib.fx.data) {
        let bytes = std::fs::read(&file).unwrap();
        for (what, needle) in needles {
            assert!(
                !contains(&bytes, needle),
                "{} still holds the record's {what}",
                file.display()
            );
        }
    }
    // Nor does any document the keyword store keeps, deleted-but-not-merged ones included.
    assert!(
        !stored_documents(&lib.fx.data.join("keyword"))
            .iter()
            .any(|d| d.contains(caption) || d.contains(&id)),
        "the keyword store still holds the record"
    );
    // No search, look-up, facet or view surfaces it.
    let v = lib
        .as_role(
            Role::Admin,
            "POST",
            "/v1/search",
            Some(json!({"query": caption, "limit": 500})),
        )
        .await
        .ok();
    assert!(!crate::common::ids(&v).contains(&id));
    let v = lib
        .as_role(
            Role::Admin,
            "GET",
            &format!("/v1/lookup?filename={filename}"),
            None,
        )
        .await
        .ok();
    assert_eq!(v["total"], 0);
    let f = lib
        .as_role(Role::Admin, "GET", "/v1/facets", None)
        .await
        .ok();
    assert_eq!(f["total"], 5);
    lib.as_role(Role::Admin, "GET", &format!("/v1/records/{id}"), None)
        .await
        .error(StatusCode::NOT_FOUND);
    let c = lib
        .as_role(Role::Admin, "GET", "/v1/collections/keep", None)
        .await
        .ok();
    assert_eq!(c["ids"], json!([]));
    // The trail still answers who saw it (through its keyed ref), and holds the receipt digest.
    let v = lib
        .as_role(Role::Admin, "GET", &format!("/v1/audit?record={id}"), None)
        .await
        .ok();
    let actions: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"view_thumbnail") && actions.contains(&"delete"),
        "{actions:?}"
    );
    let del = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "delete")
        .unwrap();
    assert_eq!(del["detail"]["receipt_digest"], receipt["digest"]);
    assert_eq!(del["seq"], receipt["audit_seq"]);
}

/// Luminance of the pixels inside box `b` (2 px in from its edges) and outside every other box.
fn region(img: &image::RgbImage, b: &Value, others: &[Value]) -> Vec<f64> {
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap();
    let inside = |v: &Value, x: f64, y: f64, m: f64| {
        x >= f(v, "x") + m
            && x < f(v, "x") + f(v, "w") - m
            && y >= f(v, "y") + m
            && y < f(v, "y") + f(v, "h") - m
    };
    img.enumerate_pixels()
        .filter(|(x, y, _)| {
            let (x, y) = (f64::from(*x), f64::from(*y));
            inside(b, x, y, 2.0) && !others.iter().any(|o| inside(o, x, y, -2.0))
        })
        .map(|(_, _, p)| {
            0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2])
        })
        .collect()
}

fn std_dev(v: &[f64]) -> f64 {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt()
}

#[tokio::test]
async fn sensitive_boxes_are_blurred_for_searchers_and_intact_for_auditors_who_ask() {
    let shared = shared();
    let state = shared.state.with_redaction(Redaction {
        sensitive_labels: vec!["person".into()],
    });
    let searcher = token_for(&state, "redaction-searcher", Role::Searcher);
    let auditor = token_for(&state, "redaction-auditor", Role::Auditor);
    let app = router(state);
    let get = |token: &str, uri: &str| {
        let req = Request::get(uri)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        send_as_is(&app, req)
    };
    let v = get(&auditor, "/v1/lookup?limit=500").await.ok();
    // A record whose person box is not hidden under another box.
    let (r, person, others) = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|r| {
            let boxes = r["boxes"].as_array().unwrap();
            let i = boxes.iter().position(|b| b["label"] == "person")?;
            let others: Vec<Value> = boxes[i + 1..].to_vec(); // drawn over it
            let probe = image::RgbImage::new(64, 48);
            (region(&probe, &boxes[i], &others).len() >= 40)
                .then(|| (r.clone(), boxes[i].clone(), others))
        })
        .expect("the seed has a visible person");
    let id = r["id"].as_str().unwrap();
    let file = std::fs::read(shared.fx.synth.images.join(r["path"].as_str().unwrap())).unwrap();
    let original = image::load_from_memory(&file).unwrap().to_rgb8();
    let decode = |a: &Answer| {
        assert_eq!(
            a.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&a.body)
        );
        image::load_from_memory(&a.body).unwrap().to_rgb8()
    };
    let texture = |img: &image::RgbImage| std_dev(&region(img, &person, &others));
    let base = texture(&original);
    assert!(base > 2.0, "the person box is textured ({base})");

    // A searcher gets the person obscured in the image and the thumbnail.
    let redacted = decode(&get(&searcher, &format!("/v1/records/{id}/image")).await);
    assert!(
        texture(&redacted) < base / 3.0,
        "image: {} vs {base}",
        texture(&redacted)
    );
    let thumb = decode(&get(&searcher, &format!("/v1/records/{id}/thumbnail?size=64")).await);
    let open = decode(
        &get(
            &auditor,
            &format!("/v1/records/{id}/thumbnail?size=64&unredacted=true"),
        )
        .await,
    );
    assert!(
        texture(&thumb) < texture(&open) / 3.0,
        "thumbnail: {} vs {}",
        texture(&thumb),
        texture(&open)
    );
    let inside_diff: f64 = region(&thumb, &person, &others)
        .iter()
        .zip(region(&open, &person, &others))
        .map(|(a, b)| (a - b).abs())
        .sum::<f64>()
        / region(&thumb, &person, &others).len() as f64;
    assert!(
        inside_diff > 1.0,
        "pixels inside the box differ ({inside_diff})"
    );
    // A searcher may not ask for it unredacted.
    get(
        &searcher,
        &format!("/v1/records/{id}/thumbnail?unredacted=true"),
    )
    .await
    .error(StatusCode::FORBIDDEN);
    // An auditor who asks gets the original bytes, and the trail says so.
    let img = get(&auditor, &format!("/v1/records/{id}/image?unredacted=true")).await;
    assert_eq!(img.body.as_ref(), file.as_slice(), "the original bytes");
    let v = get(
        &auditor,
        &format!("/v1/audit?record={id}&actor=redaction-auditor"),
    )
    .await
    .ok();
    let unredacted: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["unredacted"] == true)
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(unredacted, ["view_thumbnail", "view_image"]);
    let v = get(
        &auditor,
        "/v1/audit?actor=redaction-searcher&action=view_thumbnail",
    )
    .await
    .ok();
    assert!(
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["outcome"] == "denied")
    );
}

#[test]
fn cli_bootstraps_an_admin_then_needs_tokens_and_runs_retention_with_holds() {
    let fx = fixture(6);
    fx.ingest(false);
    let data = fx.data.clone();
    // Bootstrap: the first account must be an admin; it gets a token.
    let out = cli(
        &data,
        None,
        &[
            "account",
            "create",
            "boss",
            "--role",
            "searcher",
            "--password-stdin",
        ],
    );
    assert!(!out.status.success());
    let mut child = bin()
        .arg("--data-dir")
        .arg(&data)
        .args([
            "account",
            "create",
            "boss",
            "--role",
            "admin",
            "--password-stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a long enough password\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let admin = stdout
        .lines()
        .find(|l| l.starts_with("il_"))
        .expect("the bootstrap prints a token")
        .to_owned();

    // Now reads need credentials.
    let out = cli(&data, None, &["lookup", "--json"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("IMAGELENS_TOKEN"));
    let all = ok_json(&cli(
        &data,
        Some(&admin),
        &["lookup", "--limit", "100", "--json"],
    ));
    let ids: Vec<String> = all["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 6);

    // A searcher cannot delete or read the trail.
    let mut c = bin();
    c.arg("--data-dir")
        .arg(&data)
        .env("IMAGELENS_TOKEN", &admin);
    c.args(["account", "create", "viewer", "--role", "searcher"])
        .env("IMAGELENS_NEW_PASSWORD", "another long password");
    assert!(c.output().unwrap().status.success());
    let out = cli(
        &data,
        Some(&admin),
        &["token", "issue", "--account", "viewer", "--name", "t1"],
    );
    assert!(out.status.success());
    let viewer = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .find(|l| l.starts_with("il_"))
        .unwrap()
        .to_owned();
    // Ingesting and changing the index are an admin's (manage_library), as the HTTP API has no
    // route for them.
    let ingest_args = [
        "ingest",
        "--annotations",
        fx.synth.instances.to_str().unwrap(),
        fx.synth.captions.to_str().unwrap(),
        "--images",
        fx.synth.images.to_str().unwrap(),
        "--dataset",
        "synth",
        "--json",
    ];
    for args in [
        vec!["delete", "--id", &ids[0], "--reason", "x"],
        vec!["audit", "verify"],
        vec!["retention", "run", "--dry-run"],
        ingest_args.to_vec(),
        vec!["optimize", "--m", "20"],
    ] {
        let out = cli(&data, Some(&viewer), &args);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("may not"),
            "{args:?}"
        );
    }
    ok_json(&cli(&data, Some(&viewer), &["search", "dog", "--json"]));

    // Retention: everything ingested before now is due; a held record stays.
    assert!(
        cli(
            &data,
            Some(&admin),
            &["retention", "set", "synth", "--after-ingest-days", "0"]
        )
        .status
        .success()
    );
    assert!(
        cli(
            &data,
            Some(&admin),
            &[
                "retention",
                "hold",
                "--record",
                &ids[0],
                "--reason",
                "case 9"
            ]
        )
        .status
        .success()
    );
    let dry = ok_json(&cli(
        &data,
        Some(&admin),
        &["retention", "run", "--dry-run", "--json"],
    ));
    assert_eq!(dry["plan"]["due"].as_array().unwrap().len(), 5);
    assert_eq!(dry["plan"]["held"], 1);
    assert!(dry["receipt"].is_null());
    // A held record cannot be deleted by hand either.
    let out = cli(
        &data,
        Some(&admin),
        &["delete", "--id", &ids[0], "--reason", "x"],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("legal hold"));
    let receipt_file = fx.dir.path().join("receipt.json");
    let run = ok_json(&cli(
        &data,
        Some(&admin),
        &[
            "retention",
            "run",
            "--json",
            "--receipt",
            path_str(&receipt_file),
        ],
    ));
    assert_eq!(run["receipt"]["records"].as_array().unwrap().len(), 5);
    let saved: Value = serde_json::from_slice(&std::fs::read(&receipt_file).unwrap()).unwrap();
    assert_eq!(saved, run["receipt"]);
    let left = ok_json(&cli(&data, Some(&admin), &["lookup", "--json"]));
    assert_eq!(left["total"], 1);
    assert_eq!(left["results"][0]["id"], ids[0].as_str());
    // Once there are accounts, an ingest needs credentials too.
    let out = cli(&data, None, &ingest_args);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("IMAGELENS_TOKEN"));
    // Re-ingesting the same export does not bring the deleted records back.
    let again = ok_json(&cli(&data, Some(&admin), &ingest_args));
    assert_eq!(again["withheld_deleted"], 5, "{again}");
    assert_eq!(again["unchanged"], 1, "{again}");
    // The trail names who ingested what, and who was refused.
    let ingests = ok_json(&cli(
        &data,
        Some(&admin),
        &["audit", "query", "--action", "ingest", "--json"],
    ));
    let ingests: Vec<(String, String)> = ingests["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            if e["outcome"] == "ok" {
                assert_eq!(e["query"]["dataset"], "synth", "{e}");
            }
            (
                e["actor"].as_str().unwrap().to_owned(),
                e["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(ingests.len(), 3, "{ingests:?}");
    assert!(ingests[0].0.starts_with("cli:"), "{ingests:?}");
    assert_eq!(ingests[0].1, "ok");
    assert_eq!(ingests[1], ("viewer".to_owned(), "denied".to_owned()));
    assert_eq!(ingests[2], ("boss".to_owned(), "ok".to_owned()));
    let left = ok_json(&cli(&data, Some(&admin), &["lookup", "--json"]));
    assert_eq!(left["total"], 1);
    let verify = cli(&data, Some(&admin), &["audit", "verify"]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let q = ok_json(&cli(
        &data,
        Some(&admin),
        &["audit", "query", "--record", &ids[1], "--json"],
    ));
    let actions: Vec<&str> = q["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"lookup") && actions.contains(&"delete"),
        "{actions:?}"
    );

    // A whole dataset: refused while one of its records is held, deleted once released.
    let out = cli(
        &data,
        Some(&admin),
        &["delete", "--dataset", "synth", "--reason", "r-2"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("legal hold"));
    assert!(
        cli(
            &data,
            Some(&admin),
            &["retention", "release", "--record", &ids[0]]
        )
        .status
        .success()
    );
    let receipt = ok_json(&cli(
        &data,
        Some(&admin),
        &["delete", "--dataset", "synth", "--reason", "r-2", "--json"],
    ));
    assert_eq!(receipt["records"][0]["id"], ids[0].as_str());
    assert_eq!(
        ok_json(&cli(&data, Some(&admin), &["lookup", "--json"]))["total"],
        0
    );
}

#[tokio::test]
async fn a_read_that_cannot_be_audited_is_not_answered() {
    let lib = lib(3);
    let id = lib.ids().await[0].clone();
    let search = Some(json!({"query": "a photo"}));
    lib.as_role(Role::Searcher, "POST", "/v1/search", search.clone())
        .await
        .ok();
    // The trail loses its tail behind the server's back: appends are refused from then on, so
    // every read fails instead of going unrecorded.
    let trail = lib.fx.data.join("audit").join("trail.jsonl");
    let bytes = std::fs::read(&trail).unwrap();
    std::fs::write(&trail, &bytes[..bytes.len() / 2]).unwrap();
    for (method, uri, body) in [
        ("POST", "/v1/search".to_owned(), search.clone()),
        ("GET", format!("/v1/records/{id}"), None),
        ("GET", format!("/v1/records/{id}/thumbnail"), None),
    ] {
        let a = lib.as_role(Role::Searcher, method, &uri, body).await;
        let msg = a.error(StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(msg, "internal error", "{uri}: no internals leak");
        assert!(
            !String::from_utf8_lossy(&a.body).contains(&id),
            "{uri}: no record data"
        );
    }
}

/// `s` percent-encoded for a query string.
fn query_value(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Every string in an ingest report's problems.
fn report_strings(data: &Path) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(data.join("reports")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in dir {
        let v: Value = serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap();
        for p in v["problems"].as_array().into_iter().flatten() {
            for k in ["file", "item", "reason"] {
                out.extend(p[k].as_str().map(str::to_owned));
            }
        }
    }
    out
}

#[tokio::test]
async fn deleted_records_with_quotes_tabs_or_newlines_in_their_names_leave_no_residue() {
    // Three records with hostile file names and captions no other record shares, each named in
    // an ingest report problem (a caption that is not a string).
    let fx = fixture(6);
    let targets = [
        ("he said \"hi\".jpg", "flumpernickel"),
        ("tab\there.jpg", "snorkelwhisk"),
        ("new\nline.jpg", "glorbixquux"),
    ];
    let mut instances: Value =
        serde_json::from_slice(&std::fs::read(&fx.synth.instances).unwrap()).unwrap();
    let mut captions: Value =
        serde_json::from_slice(&std::fs::read(&fx.synth.captions).unwrap()).unwrap();
    for (i, (name, word)) in targets.iter().enumerate() {
        let old = instances["images"][i]["file_name"]
            .as_str()
            .unwrap()
            .to_owned();
        let image_id = instances["images"][i]["id"].clone();
        std::fs::rename(fx.synth.images.join(&old), fx.synth.images.join(name)).unwrap();
        instances["images"][i]["file_name"] = json!(name);
        captions["images"][i]["file_name"] = json!(name);
        for a in captions["annotations"].as_array_mut().unwrap() {
            if a["image_id"] == image_id {
                a["caption"] = json!(format!("a {word} beside the harbour wall"));
            }
        }
        captions["annotations"]
            .as_array_mut()
            .unwrap()
            .push(json!({"id": 9_000 + i, "image_id": image_id, "caption": 5}));
    }
    std::fs::write(&fx.synth.instances, instances.to_string()).unwrap();
    std::fs::write(&fx.synth.captions, captions.to_string()).unwrap();
    fx.ingest(true);
    let state = AppState::new(
        Arc::new(service_for(&fx)),
        Limits::default(),
        Redaction::default(),
    )
    .unwrap();
    let admin = token_for(&state, "admin1", Role::Admin);
    let app = router(state.clone());
    let lib = Lib {
        fx,
        state,
        app,
        tokens: vec![(Role::Admin, admin)],
    };
    let all = lib
        .as_role(Role::Admin, "GET", "/v1/lookup?limit=500", None)
        .await
        .ok();
    let reports_before = report_strings(&lib.fx.data);
    let mut deleted = Vec::new();
    for (n, (name, word)) in targets.iter().enumerate() {
        let id = all["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["filename"] == *name)
            .unwrap_or_else(|| panic!("{name:?} was ingested"))["id"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            reports_before.iter().any(|s| s.contains(name)),
            "the report names {name:?} before deletion"
        );
        // Used every way that leaves a trace: searched for, looked up, collected from a
        // search like it, by its file name and by its caption, and held then released.
        for body in [
            json!({"query": word, "limit": 50}),
            json!({"like": id, "limit": 50}),
            json!({"query": "photo", "filter": {"filename": name}}),
        ] {
            lib.as_role(Role::Admin, "POST", "/v1/search", Some(body))
                .await
                .ok();
        }
        lib.as_role(
            Role::Admin,
            "GET",
            &format!("/v1/lookup?filename={}", query_value(name)),
            None,
        )
        .await
        .ok();
        for (col, search) in [
            ("like", json!({"like": id})),
            (
                "file",
                json!({"query": "photo", "filter": {"filename": name}}),
            ),
            ("caption", json!({"query": word})),
        ] {
            let a = lib
                .as_role(
                    Role::Admin,
                    "POST",
                    "/v1/collections",
                    Some(json!({"name": format!("{col}{n}"), "search": search, "max_results": 5})),
                )
                .await;
            assert_eq!(a.status, StatusCode::CREATED, "{col}: {:?}", a.body);
        }
        let hold = json!({"record_holds": {id.clone(): {"reason": "case 9", "by": "legal",
                                                      "since": "2026-01-01T00:00:00Z"}}});
        lib.as_role(Role::Admin, "PUT", "/v1/retention", Some(hold))
            .await
            .ok();
        lib.as_role(
            Role::Admin,
            "DELETE",
            &format!("/v1/records/{id}?reason=held"),
            None,
        )
        .await
        .error(StatusCode::CONFLICT);
        lib.as_role(Role::Admin, "PUT", "/v1/retention", Some(json!({})))
            .await
            .ok();
        let collections = std::fs::read_to_string(lib.fx.data.join("collections.json")).unwrap();
        assert!(collections.contains(&id), "the like source names it before");
        // Deleted alone, so no plainly named record in the same deletion masks a miss.
        lib.as_role(
            Role::Admin,
            "DELETE",
            &format!("/v1/records/{id}?reason=erasure-{n}"),
            None,
        )
        .await
        .ok();
        deleted.push((id, *name, *word));
    }

    // No file holds an id, a file name (as is or JSON-escaped) or a caption word. The trail
    // keeps what was typed (documented: these searches typed the file name and the caption
    // word), but never an id: a `like` of a search, a collection's source and a hold are kept
    // there as refs.
    let report_text: Vec<String> = report_strings(&lib.fx.data);
    for (id, name, word) in &deleted {
        let escaped = serde_json::to_string(name).unwrap();
        let escaped = escaped.trim_matches('"').to_owned();
        for file in files(&lib.fx.data) {
            let bytes = std::fs::read(&file).unwrap();
            if file.ends_with("audit/trail.jsonl") {
                assert!(
                    !contains(&bytes, id.as_bytes()),
                    "the trail still holds the id of {name:?}"
                );
                continue;
            }
            for (what, needle) in [
                ("id", id.as_str()),
                ("file name", name),
                ("escaped file name", escaped.as_str()),
                ("caption word", word),
            ] {
                assert!(
                    !contains(&bytes, needle.as_bytes()),
                    "{} still holds the {what} of {name:?}",
                    file.display()
                );
            }
        }
        assert!(
            !report_text.iter().any(|s| s.contains(name)),
            "a report still names {name:?}"
        );

        // Through the API too: the keyword store is compressed, so grep alone proves little.
        let v = lib
            .as_role(
                Role::Admin,
                "POST",
                "/v1/search",
                Some(json!({"query": word, "limit": 500})),
            )
            .await
            .ok();
        assert!(!crate::common::ids(&v).contains(id), "search finds {word}");
        let v = lib
            .as_role(
                Role::Admin,
                "GET",
                &format!("/v1/lookup?filename={}", query_value(name)),
                None,
            )
            .await
            .ok();
        assert_eq!(v["total"], 0, "lookup by file name {name:?}");
        let v = lib
            .as_role(
                Role::Admin,
                "GET",
                "/v1/lookup?filename_glob=*&limit=500",
                None,
            )
            .await
            .ok();
        assert!(!crate::common::ids(&v).contains(id), "lookup by glob");
        lib.as_role(Role::Admin, "GET", &format!("/v1/records/{id}"), None)
            .await
            .error(StatusCode::NOT_FOUND);
        let v = lib
            .as_role(Role::Admin, "GET", &format!("/v1/audit?record={id}"), None)
            .await
            .ok();
        assert!(
            v["entries"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["action"] == "delete"),
            "the trail still answers for it"
        );
    }
    let f = lib
        .as_role(Role::Admin, "GET", "/v1/facets", None)
        .await
        .ok();
    assert_eq!(f["total"], 3);
    let list = lib
        .as_role(Role::Admin, "GET", "/v1/collections", None)
        .await
        .ok();
    for c in list["collections"].as_array().unwrap() {
        let c = lib
            .as_role(
                Role::Admin,
                "GET",
                &format!("/v1/collections/{}", c["name"].as_str().unwrap()),
                None,
            )
            .await
            .ok();
        let text = c.to_string();
        for (id, name, word) in &deleted {
            assert!(!text.contains(id.as_str()), "{text}");
            let escaped = serde_json::to_string(name).unwrap();
            assert!(!text.contains(&escaped[1..escaped.len() - 1]), "{text}");
            assert!(!text.contains(word), "{text}");
        }
        assert!(c["source"].is_null(), "{text}");
    }
    let p = lib
        .as_role(Role::Admin, "GET", "/v1/retention", None)
        .await
        .ok();
    assert_eq!(p["record_holds"], json!({}));
}

/// The CLI and the API share one governance core: the same account refused the same action
/// leaves the same audit entry (outcome `denied`, `missing_permission`) and the same message.
#[tokio::test]
async fn a_cli_refusal_and_an_http_refusal_write_the_same_audit_entry() {
    let lib = lib(2);
    let searcher = lib.token(Role::Searcher).to_owned();
    let http = lib
        .as_role(Role::Searcher, "GET", "/v1/audit/verify", None)
        .await
        .error(StatusCode::FORBIDDEN);
    assert_eq!(
        http,
        "account \"searcher1\" (role searcher) may not audit_verify: it needs permission \
         read_audit"
    );
    let out = cli(&lib.fx.data, Some(&searcher), &["audit", "verify"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&http), "{stderr}");

    let trail = lib
        .as_role(Role::Admin, "GET", "/v1/audit?action=audit_verify", None)
        .await
        .ok();
    let entries = trail["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{trail}");
    // Everything but the chain, the time and the peer address (the API's in-process test
    // requests have none, and the CLI never has one) is the same.
    let shape = |e: &Value| {
        let mut e = e.as_object().unwrap().clone();
        for k in ["seq", "time", "prev", "hash", "address"] {
            assert!(e.remove(k).is_some(), "{k}");
        }
        e
    };
    let (from_http, from_cli) = (shape(&entries[0]), shape(&entries[1]));
    assert_eq!(from_http, from_cli);
    assert_eq!(from_cli["actor"], "searcher1");
    assert_eq!(from_cli["role"], "searcher");
    assert_eq!(from_cli["outcome"], "denied");
    assert_eq!(
        from_cli["detail"],
        json!({ "missing_permission": "read_audit" })
    );
}
