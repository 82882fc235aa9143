//! `imagelens serve`: the HTTP API on one library.
//!
//! Settings: defaults, then `--config FILE` (TOML, see [`crate::settings`]), then flags and
//! their environment variables; `serve`'s own flags below overlay the file's `addr` and
//! `[limits]`.
//!
//! The server holds the data directory's lock ([`crate::app::lock_data_dir`]) for its whole
//! life, so while it runs every change goes through its API and no other process writes the
//! files it holds in memory. It refuses to start on an audit trail that does not verify from
//! the first entry to the head (`imagelens audit archive` keeps the damaged trail as evidence
//! and starts a new one).
//!
//! Connections are served by hyper-util's connection builder (HTTP/1.1) with a timer, so a
//! client that does not finish its request headers within `--header-read-timeout-secs`
//! (default 10) is disconnected instead of holding a connection open forever. hyper answers
//! a request line or headers beyond its limits itself (414, 431) before any of our code runs,
//! so those two answers have no JSON body. On Ctrl-C or SIGTERM the server stops accepting,
//! lets requests in flight finish for up to [`SHUTDOWN_GRACE`], then exits.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::ConnectInfo;
use clap::Args;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tower::ServiceExt;

use crate::app::{App, AppSettings, LockError, lock_data_dir};
use crate::http::{AppState, router};
use crate::search::SearchService;
use crate::settings::Settings;

/// Arguments of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:7878].
    #[arg(long, env = "IMAGELENS_ADDR")]
    pub addr: Option<SocketAddr>,
    /// Largest request body in bytes.
    #[arg(long, env = "IMAGELENS_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Whole-request timeout in seconds.
    #[arg(long, env = "IMAGELENS_REQUEST_TIMEOUT_SECS")]
    pub request_timeout_secs: Option<u64>,
    /// Concurrent embedding jobs before requests queue (then 503).
    #[arg(long, env = "IMAGELENS_MAX_CONCURRENT_EMBEDS")]
    pub max_concurrent_embeds: Option<usize>,
    /// Concurrent searches before requests queue (then 503) [default: the cores].
    #[arg(long, env = "IMAGELENS_MAX_CONCURRENT_SEARCHES")]
    pub max_concurrent_searches: Option<usize>,
    /// Largest page of results.
    #[arg(long, env = "IMAGELENS_MAX_PAGE")]
    pub max_page: Option<usize>,
    /// Seconds a client has to send a request's headers, from connecting or from the end of
    /// its previous request; then the connection is closed.
    #[arg(long, env = "IMAGELENS_HEADER_READ_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_read_timeout_secs: u64,
}

/// How long requests in flight may take to finish after Ctrl-C or SIGTERM.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Resolves on Ctrl-C or, on Unix, SIGTERM (what service managers send), so requests in flight
/// finish and the stores are closed cleanly.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    eprintln!("shutting down");
}

/// Runs `serve` until Ctrl-C or SIGTERM.
///
/// # Errors
/// Bad settings, an unusable library or model, or an address that cannot be bound.
pub fn run(mut s: Settings, args: ServeArgs) -> anyhow::Result<ExitCode> {
    if let Some(a) = args.addr {
        s.addr = a;
    }
    let l = &mut s.limits;
    if let Some(v) = args.max_body_bytes {
        l.max_body_bytes = v;
    }
    if let Some(v) = args.request_timeout_secs {
        l.request_timeout_secs = v;
    }
    if let Some(v) = args.max_concurrent_embeds {
        l.max_concurrent_embeds = v;
    }
    if let Some(v) = args.max_concurrent_searches {
        l.max_concurrent_searches = v;
    }
    if let Some(v) = args.max_page {
        l.max_page = v;
    }
    s.validate()?;

    // One writer per data directory, held until the server exits.
    let lock = lock_data_dir(&s.data_dir, "serve").map_err(|e| match e {
        LockError::Busy(busy) => anyhow::anyhow!(busy.refusal("serve", None)),
        other => other.into(),
    })?;
    warn_if_shared(lock.dir());
    // `--store` / IMAGELENS_STORE, else `[store] url`, else what the library records.
    let store = s.resolve_store()?;
    let app = AppSettings {
        data_dir: s.data_dir.clone(),
        model: s.model.clone(),
        no_model: s.no_model,
        precision: s.precision,
        store,
        fusion: s.fusion,
        token: None,
        user: None,
        purpose: None,
    };
    let opened = App::open(&app)?;
    let library = opened.library()?.clone();
    let model = opened.model()?;
    let service = SearchService::new(library, model.embedder, model.offline_reason)?;
    if let Some(n) = service.semantic_notice() {
        eprintln!("note: {n}");
    }
    let state = AppState::with_app(
        opened,
        Arc::new(service),
        s.limits.clone(),
        s.privacy.clone(),
    );
    // The whole trail, not only its end: a forked or edited trail is not evidence to append to.
    let report = state
        .audit()
        .verify()
        .context("cannot read the audit trail")?;
    if !report.ok || state.audit().damage().is_some() {
        let problem = report
            .problem
            .or_else(|| state.audit().damage())
            .unwrap_or_default();
        anyhow::bail!(
            "the audit trail does not verify, so no read could be recorded as evidence: \
             {problem}. Keep it as evidence and start a new trail with `imagelens audit archive \
             --reason TEXT` (it moves the trail and head into audit/archive/ and records why), \
             then serve again"
        );
    }
    if state.accounts().is_empty() {
        eprintln!(
            "note: this library has no accounts yet, so every request will be refused; create \
             the first admin with `imagelens account create NAME --role admin`"
        );
    }
    let header_timeout = Duration::from_secs(args.header_read_timeout_secs);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(s.addr)
            .await
            .with_context(|| format!("cannot listen on {}", s.addr))?;
        let addr = listener.local_addr()?;
        if let Err(e) = lock.set_url(&format!("http://{addr}")) {
            tracing::warn!(error = %e, "cannot note the address in the lock file");
        }
        eprintln!(
            "imagelens serving {} on http://{addr} (web page at http://{addr}/, API under /v1, \
             document at /v1/openapi.json)",
            s.data_dir.display()
        );
        serve(listener, router(state), header_timeout).await;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Accepts connections until Ctrl-C or SIGTERM, then shuts down gracefully (see the module
/// docs).
async fn serve(listener: tokio::net::TcpListener, app: axum::Router, header_timeout: Duration) {
    let mut builder = Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown_signal());
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // What `into_make_service_with_connect_info` gives handlers: the peer address.
        let service =
            app.clone()
                .map_request(move |mut req: axum::http::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    req.map(axum::body::Body::new)
                });
        let conn = builder
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        eprintln!(
            "requests still running after {} s; closing them",
            SHUTDOWN_GRACE.as_secs()
        );
    }
}

/// Warns when the data directory can be read by other users: it holds file names, captions
/// and (as pseudonyms) who saw what.
fn warn_if_shared(dir: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(dir) {
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                eprintln!(
                    "note: {} is open to other users (mode {mode:o}); make it private with \
                     `chmod 700 {}`",
                    dir.display(),
                    dir.display()
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
}
