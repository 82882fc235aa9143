//! One writer per data directory (security review D5, D6, D14, D18): the CLI and a running
//! server never both write a library, the audit trail never forks, a trail that does not
//! verify is archived rather than appended to, and a client that never finishes its headers is
//! disconnected.
//!
//! These tests run the real `imagelens serve` binary on a free loopback port (`--addr
//! 127.0.0.1:0`; the address is read from its start-up line) and talk to it over plain
//! HTTP/1.1 with `Connection: close`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::common::{Fixture, bin, fixture, ok_json, path_str};

/// A running `imagelens serve`.
struct Server {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `serve` on `data` and waits for its start-up line.
    fn start(data: &Path, extra: &[&str]) -> Server {
        match Self::try_start(data, extra) {
            Ok(s) => s,
            Err(log) => panic!("serve did not start:\n{log}"),
        }
    }

    /// Starts `serve`; `Err` holds its stderr when it exits before serving.
    fn try_start(data: &Path, extra: &[&str]) -> Result<Server, String> {
        let mut command = bin();
        command
            .arg("--data-dir")
            .arg(data)
            .args(["serve", "--addr", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::null());
        Self::spawn(command)
    }

    /// Runs `command` (which serves on `127.0.0.1:0`; its stdout as the caller set it) and
    /// waits for its start-up line; `Err` holds its stderr when it exits before serving.
    fn spawn(mut command: std::process::Command) -> Result<Server, String> {
        let mut child = command.stderr(Stdio::piped()).spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some(at) = line.find(" on http://") {
                        let rest = &line[at + " on http://".len()..];
                        let addr = rest.split_whitespace().next().unwrap_or_default();
                        if let Ok(addr) = addr.parse::<SocketAddr>() {
                            let _ = tx.send(addr);
                        }
                    }
                    log.lock().unwrap().push(line);
                }
            });
        }
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(addr) => Ok(Server { child, addr, log }),
            Err(_) => {
                // Exited (or hung) before serving: give back what it said.
                if child.try_wait().unwrap().is_none() {
                    let _ = child.kill();
                }
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(100));
                Err(log.lock().unwrap().join("\n"))
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// One request; the status and the JSON body (`Null` when the body is empty).
    fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        http(self.addr, method, path, token, body)
    }

    /// SIGTERM, then waits for the process to end.
    fn stop(mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..600 {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        panic!(
            "serve did not stop within 60 s of SIGTERM:\n{}",
            self.log.lock().unwrap().join("\n")
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A minimal HTTP/1.1 client: one request per connection.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    http_as(addr, method, path, auth.as_deref(), body)
}

/// [`http`] with any `Authorization` value (`Basic ...` for a password).
fn http_as(
    addr: SocketAddr,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let body = body.map(|b| serde_json::to_vec(b).unwrap());
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(a) = authorization {
        req.push_str(&format!("Authorization: {a}\r\n"));
    }
    match &body {
        Some(b) => req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            b.len()
        )),
        None => req.push_str("\r\n"),
    }
    stream.write_all(req.as_bytes()).unwrap();
    if let Some(b) = &body {
        stream.write_all(b).unwrap();
    }
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head: {}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut payload = raw[split + 4..].to_vec();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        payload = dechunk(&payload);
    }
    let value = if payload.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&payload)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&payload).into_owned()))
    };
    (status, value)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&data[..eol])
                .split(';')
                .next()
                .unwrap()
                .trim(),
            16,
        )
        .unwrap();
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[eol + 2 + size + 2..];
    }
    out
}

/// Runs the CLI on `data` with `token` and, for account commands, a new password.
fn cli(data: &Path, token: Option<&str>, args: &[&str]) -> Output {
    let mut c = bin();
    c.arg("--data-dir").arg(data);
    if let Some(t) = token {
        c.env("IMAGELENS_TOKEN", t);
    }
    c.env("IMAGELENS_NEW_PASSWORD", "a long enough password");
    c.args(args).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The secret a command printed (`il_...`).
fn secret(out: &Output) -> String {
    assert!(out.status.success(), "{}", stderr(out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("il_"))
        .expect("a token was printed")
        .to_owned()
}

/// A library of `n` records with a first admin; returns the fixture and the admin's token.
fn library(n: usize) -> (Fixture, String) {
    let fx = fixture(n);
    fx.ingest(false);
    let admin = secret(&cli(
        &fx.data,
        None,
        &["account", "create", "boss", "--role", "admin"],
    ));
    (fx, admin)
}

/// Record ids of the library, through the CLI.
fn record_ids(data: &Path, admin: &str) -> Vec<String> {
    ok_json(&cli(
        data,
        Some(admin),
        &["lookup", "--limit", "100", "--json"],
    ))["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The files a CLI refusal must not touch, with their bytes.
fn state_files(data: &Path) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    [
        "accounts.json",
        "retention.json",
        "collections.json",
        "tombstones.json",
        "manifest.json",
        "audit/trail.jsonl",
        "audit/head.json",
        "lock",
    ]
    .iter()
    .map(|f| {
        let p = data.join(f);
        let bytes = std::fs::read(&p).ok();
        (p, bytes)
    })
    .collect()
}

/// Asserts that `out` is the refusal of a command beside the server `pid`, naming `route`.
#[track_caller]
fn assert_refused_beside_server(out: &Output, pid: u32, route: Option<&str>, what: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{what}: exit code 1, got {err}");
    assert!(
        err.contains(&format!("in use by `imagelens serve` (pid {pid}")),
        "{what}: names the server and its pid: {err}"
    );
    assert!(err.contains("nothing was changed"), "{what}: {err}");
    match route {
        Some(r) => assert!(err.contains(r), "{what}: names the route {r}: {err}"),
        None => assert!(err.contains("Stop the server"), "{what}: {err}"),
    }
    assert!(!err.contains("WAL"), "{what}: no store internals: {err}");
}

/// `(id, secret)` of a token issued with the CLI.
fn issue_cli_token(data: &Path, admin: &str, account: &str, name: &str) -> (String, String) {
    let out = cli(
        data,
        Some(admin),
        &["token", "issue", "--account", account, "--name", name],
    );
    let secret = secret(&out);
    let id = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned();
    (id, secret)
}

/// Places a legal hold on `id` through `PUT /v1/retention`.
fn hold_through_api(server: &Server, admin: &str, id: &str, reason: &str) {
    let (status, mut policy) = server.call("GET", "/v1/retention", Some(admin), None);
    assert_eq!(status, 200, "{policy}");
    policy["record_holds"][id] = json!({
        "reason": reason,
        "by": "boss",
        "since": "2026-11-30T00:00:00Z",
    });
    let (status, body) = server.call("PUT", "/v1/retention", Some(admin), Some(&policy));
    assert_eq!(status, 200, "{body}");
}

#[test]
fn cli_changes_while_a_server_runs_are_refused_and_api_changes_apply_to_the_next_request() {
    let (fx, admin) = library(4);
    let data = fx.data.clone();
    let ids = record_ids(&data, &admin);
    assert!(
        cli(
            &data,
            Some(&admin),
            &["account", "create", "cur", "--role", "curator"]
        )
        .status
        .success()
    );
    let (t1, cur1) = issue_cli_token(&data, &admin, "cur", "one");
    let (_t2, cur2) = issue_cli_token(&data, &admin, "cur", "two");

    let server = Server::start(&data, &[]);
    let pid = server.pid();
    assert_eq!(
        server.call("GET", "/v1/collections", Some(&cur1), None).0,
        200
    );
    let before = state_files(&data);

    // Every CLI command that would write (or append to the trail) is refused, with the route
    // that does the same through the server.
    let revoke = format!("DELETE /v1/tokens/{t1}");
    let images = path_str(&fx.synth.images);
    let instances = path_str(&fx.synth.instances);
    let attempts: Vec<(Vec<&str>, Option<&str>)> = vec![
        (vec!["token", "revoke", &t1], Some(revoke.as_str())),
        (
            vec!["account", "set", "cur", "--disable"],
            Some("PATCH /v1/accounts/cur"),
        ),
        (
            vec![
                "retention",
                "hold",
                "--record",
                &ids[0],
                "--reason",
                "case 77",
            ],
            Some("PUT /v1/retention"),
        ),
        (
            vec!["token", "issue", "--account", "cur", "--name", "x"],
            Some("POST /v1/tokens"),
        ),
        (
            vec!["account", "create", "eve", "--role", "admin"],
            Some("POST /v1/accounts"),
        ),
        (vec!["search", "dog"], Some("POST /v1/search")),
        (vec!["lookup"], Some("GET /v1/lookup")),
        (vec!["facets"], Some("GET /v1/facets")),
        (vec!["audit", "query"], Some("GET /v1/audit")),
        (
            vec!["delete", "--id", &ids[1], "--reason", "r"],
            Some("POST /v1/deletions"),
        ),
        (
            vec!["retention", "run", "--dry-run"],
            Some("POST /v1/retention/run"),
        ),
        (
            vec!["ingest", "--annotations", instances, "--images", images],
            None,
        ),
        (vec!["audit", "archive", "--reason", "r"], None),
    ];
    for (args, route) in &attempts {
        let out = cli(&data, Some(&admin), args);
        assert_refused_beside_server(&out, pid, *route, &args.join(" "));
    }
    assert_eq!(
        state_files(&data),
        before,
        "a refused command changed a file"
    );
    // The revocation was not applied behind the server's back, nor by the server.
    assert_eq!(
        server.call("GET", "/v1/collections", Some(&cur1), None).0,
        200
    );

    // Reading the trail without appending may run beside the server.
    let out = cli(&data, Some(&admin), &["audit", "verify"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("audit trail ok"));
    // ... but not for an account that may not, whose refusal could not be recorded.
    let out = cli(&data, Some(&cur2), &["audit", "verify"]);
    assert_refused_beside_server(&out, pid, Some("GET /v1/audit/verify"), "curator verify");

    // The same changes through the API apply to the very next request.
    let (status, body) = server.call("DELETE", &format!("/v1/tokens/{t1}"), Some(&admin), None);
    assert!(status == 200 || status == 204, "{status} {body}");
    assert_eq!(
        server.call("GET", "/v1/collections", Some(&cur1), None).0,
        401
    );
    assert_eq!(
        server.call("GET", "/v1/collections", Some(&cur2), None).0,
        200
    );
    let (status, body) = server.call(
        "PATCH",
        "/v1/accounts/cur",
        Some(&admin),
        Some(&json!({"disabled": true})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        server.call("GET", "/v1/collections", Some(&cur2), None).0,
        401
    );
    hold_through_api(&server, &admin, &ids[0], "case 77");
    let (status, body) = server.call(
        "DELETE",
        &format!("/v1/records/{}?reason=should-be-refused", ids[0]),
        Some(&admin),
        None,
    );
    assert_eq!(status, 409, "a held record is not deleted: {body}");
    assert_eq!(
        server
            .call(
                "GET",
                &format!("/v1/records/{}", ids[0]),
                Some(&admin),
                None
            )
            .0,
        200
    );
    server.stop();

    // After the server: the changes are on disk, the trail is one chain.
    let out = cli(&data, Some(&admin), &["audit", "verify"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cli(&data, Some(&cur1), &["search", "dog"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("revoked"), "{}", stderr(&out));
    let out = cli(&data, Some(&cur2), &["search", "dog"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("disabled"), "{}", stderr(&out));
    let out = cli(
        &data,
        Some(&admin),
        &["delete", "--id", &ids[0], "--reason", "r"],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("legal hold"), "{}", stderr(&out));
}

fn spawn_paused_ingest(fx: &Fixture) -> Child {
    let mut child = bin()
        .env("IMAGELENS_PAUSE_AT", "reconciled:1")
        .arg("--data-dir")
        .arg(&fx.data)
        .args([
            "ingest",
            "--annotations",
            path_str(&fx.synth.instances),
            "--images",
            path_str(&fx.synth.images),
            "--no-progress",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut said = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.starts_with("imagelens-test: paused at") {
                let _ = tx.send(Ok(()));
                return;
            }
            said.push(line);
        }
        let _ = tx.send(Err(said.join("\n")));
    });
    match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(Ok(())) => child,
        other => {
            let _ = child.kill();
            panic!("the first ingest did not pause: {other:?}");
        }
    }
}

#[test]
fn a_second_ingest_and_an_ingest_beside_a_server_get_a_clear_message() {
    let fx = fixture(4);
    let ingest_args = [
        "ingest",
        "--annotations",
        path_str(&fx.synth.instances),
        "--images",
        path_str(&fx.synth.images),
    ];
    // A new library (the case where qdrant used to fail a rename) and then an existing one.
    for round in 0..2 {
        let mut first = spawn_paused_ingest(&fx);
        let out = cli(&fx.data, None, &ingest_args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "round {round}: {err}");
        assert!(
            err.contains(&format!("in use by `imagelens ingest` (pid {}", first.id())),
            "round {round}: names the other ingest: {err}"
        );
        assert!(
            err.contains("Wait for it to finish"),
            "round {round}: {err}"
        );
        assert!(!err.contains("WAL") && !err.contains("Rename"), "{err}");
        first.kill().unwrap();
        first.wait().unwrap();
        // The lock dies with its holder, even on SIGKILL.
        let out = cli(&fx.data, None, &ingest_args);
        assert!(out.status.success(), "round {round}: {}", stderr(&out));
    }

    let server = Server::start(&fx.data, &[]);
    let out = cli(&fx.data, None, &ingest_args);
    assert_refused_beside_server(&out, server.pid(), None, "ingest beside serve");
    // A second server is refused the same way.
    let Err(err) = Server::try_start(&fx.data, &[]) else {
        panic!("a second server started on the same library")
    };
    assert!(
        err.contains(&format!(
            "in use by `imagelens serve` (pid {}",
            server.pid()
        )),
        "{err}"
    );
    server.stop();
}

#[test]
fn a_connection_that_never_finishes_its_headers_is_closed() {
    let (fx, admin) = library(2);
    let server = Server::start(&fx.data, &["--header-read-timeout-secs", "1"]);
    // Half a request, and a connection that says nothing at all.
    let mut half = TcpStream::connect(server.addr).unwrap();
    half.write_all(b"GET /v1/info HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let silent = TcpStream::connect(server.addr).unwrap();
    for (what, mut stream) in [("half a request", half), ("nothing", silent)] {
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut buf = [0_u8; 1024];
        match stream.read(&mut buf) {
            // Closed by the server, with or without an answer.
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("{what}: the connection was still open after 60 s ({e})"),
        }
    }
    // The server still answers whole requests.
    assert_eq!(server.call("GET", "/v1/info", Some(&admin), None).0, 200);
    server.stop();
}

#[test]
fn cli_admin_commands_racing_a_serving_process_are_refused_and_api_changes_hold() {
    const LOAD_THREADS: usize = 4;
    const REQUESTS: usize = 50;
    const CLI_ROUNDS: usize = 4;
    const API_TOKENS: usize = 6;
    let (fx, admin) = library(6);
    let data = fx.data.clone();
    let ids = record_ids(&data, &admin);
    let server = Arc::new(Server::start(&data, &[]));
    let pid = server.pid();

    // Accounts and tokens made through the API.
    for (name, role) in [("reader", "searcher"), ("victim", "curator")] {
        let (status, body) = server.call(
            "POST",
            "/v1/accounts",
            Some(&admin),
            Some(&json!({"name": name, "password": "a long enough password", "role": role})),
        );
        assert_eq!(status, 201, "{body}");
    }
    let issue = |account: &str, name: &str| -> (String, String) {
        let (status, body) = server.call(
            "POST",
            "/v1/tokens",
            Some(&admin),
            Some(&json!({"name": name, "account": account, "ttl_days": 1})),
        );
        assert_eq!(status, 201, "{body}");
        (
            body["token"]["id"].as_str().unwrap().to_owned(),
            body["secret"].as_str().unwrap().to_owned(),
        )
    };
    let (_, reader) = issue("reader", "load");
    let victims: Vec<(String, String)> = (0..API_TOKENS)
        .map(|i| issue("victim", &format!("api{i}")))
        .collect();
    let (cli_target, _) = issue("victim", "cli-target");
    let held = &ids[..3];

    std::thread::scope(|scope| {
        // Request load.
        let load: Vec<_> = (0..LOAD_THREADS)
            .map(|t| {
                let server = Arc::clone(&server);
                let reader = reader.clone();
                let id = ids[t % ids.len()].clone();
                scope.spawn(move || {
                    for i in 0..REQUESTS {
                        let (status, body) = if i % 2 == 0 {
                            server.call(
                                "POST",
                                "/v1/search",
                                Some(&reader),
                                Some(&json!({"query": "dog", "limit": 5})),
                            )
                        } else {
                            server.call("GET", &format!("/v1/records/{id}"), Some(&reader), None)
                        };
                        assert_eq!(status, 200, "load {t}/{i}: {body}");
                    }
                })
            })
            .collect();
        // The CLI keeps trying to change the library behind the server's back.
        let cli_runs = scope.spawn(|| {
            let mut refused = 0;
            for round in 0..CLI_ROUNDS {
                let name = format!("cli{round}");
                for args in [
                    vec!["token", "issue", "--account", "victim", "--name", &name],
                    vec!["token", "revoke", &cli_target],
                    vec!["retention", "hold", "--record", &ids[3], "--reason", "cli"],
                ] {
                    let out = cli(&data, Some(&admin), &args);
                    assert_refused_beside_server(&out, pid, Some("/v1/"), &args.join(" "));
                    refused += 1;
                }
            }
            refused
        });
        // Meanwhile an admin revokes and holds through the API.
        let api = scope.spawn(|| {
            for (id, _) in &victims {
                let (status, body) =
                    server.call("DELETE", &format!("/v1/tokens/{id}"), Some(&admin), None);
                assert!(status == 200 || status == 204, "{status} {body}");
            }
            for id in held {
                hold_through_api(&server, &admin, id, "race");
            }
        });
        for l in load {
            l.join().unwrap();
        }
        assert_eq!(cli_runs.join().unwrap(), CLI_ROUNDS * 3);
        api.join().unwrap();
    });
    // Every revocation is in force at once.
    for (_, secret) in &victims {
        assert_eq!(
            server.call("GET", "/v1/collections", Some(secret), None).0,
            401
        );
    }
    Arc::into_inner(server).unwrap().stop();

    // One chain, with every request of the load in it.
    let report = ok_json(&cli(&data, Some(&admin), &["audit", "verify", "--json"]));
    assert_eq!(report["ok"], true, "{report}");
    let reads = ok_json(&cli(
        &data,
        Some(&admin),
        &[
            "audit", "query", "--actor", "reader", "--limit", "100000", "--json",
        ],
    ));
    assert_eq!(
        reads["entries"].as_array().unwrap().len(),
        LOAD_THREADS * REQUESTS,
        "every answered request is in the trail"
    );

    // After a restart the API's changes are still in force and nothing of the CLI's is.
    let server = Server::start(&data, &[]);
    for (_, secret) in &victims {
        assert_eq!(
            server.call("GET", "/v1/collections", Some(secret), None).0,
            401
        );
    }
    for id in held {
        let (status, body) = server.call(
            "DELETE",
            &format!("/v1/records/{id}?reason=after-restart"),
            Some(&admin),
            None,
        );
        assert_eq!(status, 409, "held record {id}: {body}");
    }
    let (_, policy) = server.call("GET", "/v1/retention", Some(&admin), None);
    // Holds are kept under the record's keyed ref (as in the trail), never its id.
    let key = std::fs::read(data.join("audit").join("key")).unwrap();
    let record_ref = |id: &str| {
        let mut h = Sha256::new();
        h.update(&key);
        h.update(id.as_bytes());
        hex::encode(h.finalize())[..32].to_owned()
    };
    let mut holds: Vec<String> = policy["record_holds"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    holds.sort();
    let mut want: Vec<String> = held.iter().map(|id| record_ref(id)).collect();
    want.sort();
    assert_eq!(holds, want, "only the API's holds");
    let (_, tokens) = server.call("GET", "/v1/tokens", Some(&admin), None);
    let tokens = tokens["tokens"].as_array().unwrap();
    let cli_names: Vec<String> = (0..CLI_ROUNDS).map(|r| format!("cli{r}")).collect();
    assert!(
        !tokens
            .iter()
            .any(|t| cli_names.iter().any(|n| t["name"] == n.as_str())),
        "no CLI token was issued: {tokens:?}"
    );
    let target = tokens
        .iter()
        .find(|t| t["id"] == cli_target.as_str())
        .unwrap();
    assert!(
        target["revoked"].is_null(),
        "the CLI revocation was refused"
    );
    server.stop();
}

#[test]
fn the_cli_binary_and_another_trail_writer_keep_one_chain() {
    // Two processes append to one trail: the CLI (which takes the data-directory lock) and this
    // test process, which opens the trail directly, as a process that bypasses that lock would.
    let fx = fixture(2);
    fx.ingest(false);
    let data = fx.data.clone();
    // What the trail already holds (the ingest's own entries).
    let before = imagelens::governance::audit::verify_dir(&data)
        .unwrap()
        .entries;
    let log = Arc::new(imagelens::governance::audit::AuditLog::open(&data).unwrap());
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (log, done) = (Arc::clone(&log), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut n = 0_u64;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                log.append(imagelens::governance::audit::NewEntry {
                    actor: "in-process".into(),
                    action: "search".into(),
                    outcome: "ok".into(),
                    ..Default::default()
                })
                .unwrap();
                n += 1;
                // Let the other process's waiting lock through now and then.
                std::thread::sleep(Duration::from_millis(1));
            }
            n
        })
    };
    const RUNS: usize = 12;
    for _ in 0..RUNS {
        ok_json(&cli(
            &data,
            None,
            &["audit", "query", "--limit", "1", "--json"],
        ));
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let appended = writer.join().unwrap();
    let report = imagelens::governance::audit::verify_dir(&data).unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.entries, before + appended + RUNS as u64);
    let cli_entries = log
        .query(&imagelens::governance::audit::AuditQuery {
            action: Some("audit_query".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(cli_entries.len(), RUNS);
}

#[test]
fn serve_refuses_a_trail_that_does_not_verify_until_it_is_archived() {
    let (fx, admin) = library(3);
    let data = fx.data.clone();
    for _ in 0..3 {
        record_ids(&data, &admin);
    }
    assert!(
        cli(
            &data,
            Some(&admin),
            &["account", "create", "aud", "--role", "auditor"]
        )
        .status
        .success()
    );
    let (_, auditor) = issue_cli_token(&data, &admin, "aud", "t");
    // An entry in the middle is edited: the end of the trail still looks sound.
    let trail = data.join("audit/trail.jsonl");
    let text = std::fs::read_to_string(&trail).unwrap();
    let mut lines: Vec<String> = text.lines().map(|l| format!("{l}\n")).collect();
    assert!(lines.len() >= 4);
    assert!(lines[1].contains("\"boss\""), "{}", lines[1]);
    lines[1] = lines[1].replacen("\"boss\"", "\"bozz\"", 1);
    std::fs::write(&trail, lines.concat()).unwrap();

    let err = match Server::try_start(&data, &[]) {
        Ok(s) => {
            s.stop();
            panic!("serve started on a trail that does not verify");
        }
        Err(log) => log,
    };
    assert!(err.contains("does not verify"), "{err}");
    assert!(err.contains("entry 2 (line 2)"), "names the entry: {err}");
    assert!(
        err.contains("imagelens audit archive"),
        "says what to do: {err}"
    );

    // Only an admin may archive.
    let out = cli(
        &data,
        Some(&auditor),
        &["audit", "archive", "--reason", "mine"],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("only an admin"), "{}", stderr(&out));
    assert!(!data.join("audit/archive").exists());

    let tampered = std::fs::read_to_string(&trail).unwrap();
    let out = cli(
        &data,
        Some(&admin),
        &["audit", "archive", "--reason", "incident 12", "--json"],
    );
    let note = ok_json(&out);
    assert_eq!(note["reason"], "incident 12");
    assert_eq!(note["sound_entries"], 1);
    let dir = data.join("audit").join(note["dir"].as_str().unwrap());
    assert_eq!(
        std::fs::read_to_string(dir.join("trail.jsonl")).unwrap(),
        tampered,
        "the evidence is kept as it was"
    );
    let digest = hex::encode(Sha256::digest(tampered.as_bytes()));
    assert!(
        note["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "trail.jsonl" && f["sha256"] == digest.as_str()),
        "{note}"
    );

    // The new trail verifies and still reports the archive; serve starts again.
    let report = ok_json(&cli(&data, Some(&admin), &["audit", "verify", "--json"]));
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["archives"][0]["dir"], note["dir"]);
    assert_eq!(report["archives"][0]["reason"], "incident 12");
    let out = cli(&data, Some(&admin), &["audit", "verify"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("archived before entry 1"));
    let server = Server::start(&data, &[]);
    assert_eq!(server.call("GET", "/v1/info", Some(&admin), None).0, 200);
    let (status, report) = server.call("GET", "/v1/audit/verify", Some(&admin), None);
    assert_eq!(status, 200);
    assert_eq!(report["archives"][0]["reason"], "incident 12");
    server.stop();
    // A sound trail is not archived.
    let out = cli(
        &data,
        Some(&admin),
        &["audit", "archive", "--reason", "again"],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("nothing to archive"),
        "{}",
        stderr(&out)
    );
}

#[cfg(unix)]
#[test]
fn a_new_library_directory_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let fx = fixture(1);
    let out = cli(&fx.data, None, &["info"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&fx.data), 0o700);
    assert_eq!(mode(&fx.data.join("lock")), 0o600);
}

/// `imagelens demo --serve` builds the demo library and serves it: the web page answers, the
/// `demo` admin's password, printed once, signs in to the API, and the library holds the
/// demo's records; a wrong password does not.
#[test]
fn demo_serve_serves_the_demo_library_to_the_printed_password() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let mut command = bin();
    command
        .args(["demo", "--dir", path_str(&demo), "--count", "20", "--serve"])
        .args(["--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped());
    let mut server = Server::spawn(command).unwrap_or_else(|log| panic!("demo --serve: {log}"));
    // The password is printed before the server starts: it waits in the pipe.
    let stdout = BufReader::new(server.child.stdout.take().unwrap());
    let password = stdout
        .lines()
        .map_while(Result::ok)
        .find_map(|line| {
            let rest = line.split("with password ").nth(1)?;
            rest.split_whitespace().next().map(str::to_owned)
        })
        .expect("demo --serve printed the demo account's password");
    let basic = |pw: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("demo:{pw}"))
        )
    };
    let (status, page) = server.call("GET", "/", None, None);
    assert_eq!(status, 200, "{page}");
    assert!(
        page.as_str().is_some_and(|p| p.contains("imagelens")),
        "{page}"
    );
    let (status, info) = http_as(
        server.addr,
        "GET",
        "/v1/info",
        Some(&basic(&password)),
        None,
    );
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["records"], 20, "{info}");
    let wrong = basic("not the password");
    let (status, _) = http_as(server.addr, "GET", "/v1/info", Some(&wrong), None);
    assert_eq!(status, 401);
    server.stop();
}
