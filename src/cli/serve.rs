//! `imagelens serve`: the HTTP API on one library.
//!
//! Settings: defaults, then `--config FILE` (TOML, see [`crate::settings`]), then flags and
//! their environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;

use crate::app::{AppSettings, load_model, open_library};
use crate::http::{AppState, router};
use crate::search::SearchService;
use crate::settings::ServeSettings;

/// Arguments of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML settings file (address, data_dir, model, [limits]).
    #[arg(long, env = "IMAGELENS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
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
    /// Largest page of results.
    #[arg(long, env = "IMAGELENS_MAX_PAGE")]
    pub max_page: Option<usize>,
}

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
pub fn run(
    data_dir: Option<PathBuf>,
    model: Option<String>,
    no_model: bool,
    args: ServeArgs,
) -> anyhow::Result<ExitCode> {
    let mut s = match &args.config {
        Some(path) => ServeSettings::from_file(path)?,
        None => ServeSettings::default(),
    };
    if let Some(d) = data_dir {
        s.data_dir = d;
    }
    if model.is_some() {
        s.model = model;
    }
    s.no_model |= no_model;
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
    if let Some(v) = args.max_page {
        l.max_page = v;
    }
    s.validate()?;

    let app = AppSettings {
        data_dir: s.data_dir.clone(),
        model: s.model.clone(),
        no_model: s.no_model,
        store: indexer::StoreSettings::Edge,
        token: None,
        user: None,
        purpose: None,
    };
    let library = Arc::new(open_library(&app)?);
    let model = load_model(&app, &library)?;
    let service = SearchService::new(library, model.embedder, model.offline_reason)?;
    if let Some(n) = service.semantic_notice() {
        eprintln!("note: {n}");
    }
    let state = AppState::new(Arc::new(service), s.limits.clone(), s.privacy.clone())?;
    if let Some(damage) = state.audit().damage() {
        anyhow::bail!(
            "the audit trail is damaged, so no read could be recorded: {damage}; run \
             `imagelens audit verify` and restore the trail before serving"
        );
    }
    if state.accounts().is_empty() {
        eprintln!(
            "note: this library has no accounts yet, so every request will be refused; create \
             the first admin with `imagelens account create NAME --role admin`"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(s.addr)
            .await
            .with_context(|| format!("cannot listen on {}", s.addr))?;
        let addr = listener.local_addr()?;
        eprintln!(
            "imagelens serving {} on http://{addr} (API under /v1, document at /v1/openapi.json)",
            s.data_dir.display()
        );
        axum::serve(
            listener,
            router(state).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("server failed")
    })?;
    Ok(ExitCode::SUCCESS)
}
