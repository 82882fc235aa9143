//! HTTP load run: the latency and throughput of 64 concurrent clients for 60 s of mixed search
//! / look-up / thumbnail on a 100k-record library, the router served in-process on loopback and
//! loaded by `wrk`.
//!
//! `cargo bench --bench serve` (env `IMAGELENS_BENCH_RECORDS`, default 100000;
//! `IMAGELENS_BENCH_SECS`, default 60). The library is built once under
//! `target/bench-serve-<N>` (records as in `benches/search.rs`, plus 64 small JPEGs the records
//! point at so thumbnails decode real files) and reused. Query text is embedded by a fixed random
//! embedder, so the run measures the service, not the model. Exits non-zero on any non-2xx
//! answer other than 503 (deliberate load-shedding) and on any socket error.
//!
//! `IMAGELENS_BENCH_WEIGHTS` sends fusion weights with every search (unset: the server's
//! defaults). `IMAGELENS_BENCH_INDEX` (auto / exact / hnsw), `IMAGELENS_BENCH_VECTORS`
//! (disk / ram), `IMAGELENS_BENCH_QUANTIZATION` (none / int8) and
//! `IMAGELENS_BENCH_OVERSAMPLING` (1 to 16) set the library's index settings (from the
//! defaults) before it is served.
//!
//! `IMAGELENS_BENCH_WARMUP_SECS=N` runs the same load for N s before the measured run, not
//! counted (the server's means then cover the measured run alone).
//!
//! `IMAGELENS_BENCH_MODE=first-paint` runs the web page in headless Chromium on the same
//! served library instead of wrk: milliseconds from Enter to the first thumbnail painted, for
//! 20 queries x `IMAGELENS_BENCH_ROUNDS` (default 3), beside the server's own mean time per
//! search and per search stage in the same run (`first_paint.rs`).

// The allocator `imagelens serve` runs on (the `mimalloc` feature, on by default);
// `--no-default-features` measures the system allocator.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod common;
#[path = "serve/first_paint.rs"]
mod first_paint;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::Duration as Days;
use common::{BenchEmbedder, DIM, Data, Generator, memory};
use imagelens::governance::accounts::{Accounts, Role};
use imagelens::governance::redact::Redaction;
use imagelens::http::{AppState, router};
use imagelens::search::SearchService;
use imagelens::settings::Limits;
use indexer::Library;
use indexer::record::record_id;
use models::{Embedder, EmbedderSpec};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use sha2::Digest;

const IMAGES: usize = 64;
const W: u32 = 320;
const H: u32 = 240;
const PLACES: [&str; 5] = ["street", "beach", "park", "harbour", "yard"];

/// Writes the 64 gradient JPEGs if missing; returns their sizes in bytes and sha256s.
fn write_images(dir: &Path) -> anyhow::Result<Vec<(u64, String)>> {
    std::fs::create_dir_all(dir)?;
    (0..IMAGES)
        .map(|k| {
            let path = dir.join(format!("img_{k}.jpg"));
            if !path.exists() {
                let k8 = (k * 4) as u8;
                image::RgbImage::from_fn(W, H, |x, y| {
                    image::Rgb([(x * 255 / W) as u8 ^ k8, (y * 255 / H) as u8, k8])
                })
                .save(&path)?;
            }
            let bytes = std::fs::read(&path)?;
            Ok((
                bytes.len() as u64,
                hex::encode(sha2::Sha256::digest(&bytes)),
            ))
        })
        .collect()
}

/// The generated library, every record pointing at one of the 64 JPEGs with that file's size
/// and sha256, so every thumbnail is served (the web page's first paint needs the top results'
/// images). The first 64 records are those files as an ingest records them (the id made from
/// the sha256); the others keep their generated ids.
fn build(lib: &mut Library, spec: &EmbedderSpec, n: usize, images: &Path, files: &[(u64, String)]) {
    common::build(lib, spec, n, Data::Clustered, |r, i| {
        r.path = format!("img_{}.jpg", i % IMAGES);
        r.images_root = images.display().to_string();
        r.width = W;
        r.height = H;
        r.bytes = files[i % IMAGES].0;
        r.sha256 = files[i % IMAGES].1.clone();
        if i < IMAGES {
            r.id = record_id(&r.sha256);
        }
    });
}

/// The `Authorization` header of the load: every route but `/healthz` needs an account, so an
/// admin (all permissions) is made once in the library and a fresh one-day token issued per run.
fn authorization(dir: &Path) -> anyhow::Result<Option<String>> {
    let accounts = Accounts::open(dir)?;
    if accounts.get("bench-admin").is_err() {
        accounts.create("bench-admin", "bench-admin-password", Role::Admin)?;
    }
    let (secret, _) = accounts.issue_token("bench-admin", "bench-serve", Days::days(1))?;
    Ok(Some(format!("Bearer {secret}")))
}

/// One request of the mix.
struct Req {
    method: &'static str,
    path: String,
    body: Option<String>,
}

/// The queries of the mix (and of the first-paint run).
const QUERIES: [&str; 20] = [
    "a red car on a street at night",
    "a dog in the park",
    "a person riding a bicycle",
    "a boat in the harbour during the day",
    "a cat sitting in a yard",
    "a truck parked on the street",
    "birds on the beach",
    "a tree in the park at night",
    "a ladder against a wall",
    "a person walking a dog",
    "cars and trucks in traffic",
    "a cat and a dog together",
    "boats on the beach",
    "a bicycle leaning on a tree",
    "a person on a boat",
    "a bird in a tree",
    "a truck with a ladder",
    "people on the beach during the day",
    "a car in a yard at night",
    "a dog running on the beach",
];

/// The mix, in cycle order: search, look-up, search, thumbnail (50 / 25 / 25 %).
/// `weights`: the searches' `weights` (none: the server's defaults).
fn mix(n: usize, files: &[(u64, String)], weights: Option<&str>, rng: &mut StdRng) -> Vec<Req> {
    let filters = [
        json!({}),
        json!({"labels": ["car"], "captured_after": "2020-01-01"}),
        json!({}),
        json!({"datasets": ["coast"], "no_labels": ["dog"]}),
        json!({"labels": ["person"], "captured_before": "2021-06-30"}),
    ];
    let mut out = Vec::new();
    for k in 0..100 {
        for j in [2 * k, 2 * k + 1] {
            let (query, filter) = (QUERIES[j % 20], &filters[(j + j / 20) % 5]);
            let mut body = json!({"query": query, "filter": filter, "limit": 20});
            if let Some(w) = weights {
                body["weights"] = json!(w);
            }
            let body = body.to_string();
            out.push(Req {
                method: "POST",
                path: "/v1/search".into(),
                body: Some(body),
            });
        }
        let (y, m) = (rng.random_range(2018..2024), rng.random_range(1..=12));
        let lookup = match k % 3 {
            0 => {
                let i = rng.random_range(0..n);
                let digits = format!("{i:06}");
                format!("filename_prefix={}_{}", PLACES[i % 5], &digits[..4])
            }
            1 => format!("captured_after={y}-{m:02}-01&captured_before={y}-{m:02}-28&desc=true"),
            _ => format!("label=car&annotated_after={y}-{m:02}-01&sort=annotated"),
        };
        // One of the records whose image is the file as ingested (see `build`).
        let id = record_id(&files[rng.random_range(0..IMAGES.min(n))].1);
        let boxes = if k % 2 == 0 { "&boxes=true" } else { "" };
        // Cycle order: search, look-up, search, thumbnail.
        out.insert(out.len() - 1, get(format!("/v1/lookup?{lookup}&limit=20")));
        out.push(get(format!("/v1/records/{id}/thumbnail?size=128{boxes}")));
    }
    out
}

fn get(path: String) -> Req {
    Req {
        method: "GET",
        path,
        body: None,
    }
}

/// The wrk script: cycles the mix (each thread from its own offset), counts answers by status,
/// and prints `IMAGELENS <key> <value>` lines for the summary.
fn lua(mix: &[Req], auth: Option<&str>) -> String {
    let long = |s: &str| {
        assert!(!s.contains("]=]"), "cannot quote {s:?}");
        format!("[=[{s}]=]")
    };
    let mut s = String::from("-- generated by benches/serve.rs\nlocal reqs = {\n");
    for r in mix {
        let body = r.body.as_deref().map_or("nil".into(), long);
        s += &format!("  {{\"{}\", {}, {body}}},\n", r.method, long(&r.path));
    }
    s += "}\n";
    s += &format!("local auth = {}\n", auth.map_or("nil".into(), long));
    s += r#"
local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end
function init(args)
  prepared = {}
  for i, r in ipairs(reqs) do
    local h = {}
    if auth then h["Authorization"] = auth end
    if r[3] then h["Content-Type"] = "application/json" end
    prepared[i] = wrk.format(r[1], r[2], h, r[3])
  end
  idx = (tid * 97) % #prepared
  statuses = {}
end
function request()
  idx = idx % #prepared + 1
  return prepared[idx]
end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
function done(summary, latency, requests)
  local out = function(k, v) io.write(string.format("IMAGELENS %s %.0f\n", k, v)) end
  out("requests", summary.requests)
  out("duration_us", summary.duration)
  for _, k in ipairs({"connect", "read", "write", "timeout"}) do
    out("socket_" .. k, summary.errors[k])
  end
  for _, p in ipairs({50, 90, 99, 99.9}) do out("p" .. p .. "_us", latency:percentile(p)) end
  out("max_us", latency.max)
  local merged = {}
  for _, t in ipairs(threads) do
    for code, n in pairs(t:get("statuses")) do merged[code] = (merged[code] or 0) + n end
  end
  for code, n in pairs(merged) do out("status_" .. code, n) end
end
"#;
    s
}

/// A one-shot HTTP/1.1 request on loopback: (status, whole response as text).
fn http(port: u16, req: &Req, auth: Option<&str>) -> anyhow::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n",
        req.method, req.path
    );
    if let Some(a) = auth {
        head += &format!("Authorization: {a}\r\n");
    }
    let body = req.body.as_deref().unwrap_or("");
    if req.body.is_some() {
        head += &format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
    }
    s.write_all(format!("{head}\r\n{body}").as_bytes())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no HTTP status")?;
    Ok((status, text))
}

fn env_or(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{name}={v:?} is not a number")),
        Err(_) => Ok(default),
    }
}

fn run() -> anyhow::Result<ExitCode> {
    // `cargo test --benches` runs bench binaries once: keep that path tiny.
    let quick = !std::env::args().any(|a| a == "--bench");
    let n = env_or("IMAGELENS_BENCH_RECORDS", if quick { 300 } else { 100_000 })?;
    let secs = env_or("IMAGELENS_BENCH_SECS", if quick { 2 } else { 60 })?;
    let connections = if quick { 8 } else { 64 };
    let first_paint = std::env::var("IMAGELENS_BENCH_MODE").as_deref() == Ok("first-paint");
    // Before the library build (a minute at 100k), so a missing tool is told at once.
    if first_paint {
        first_paint::browser()?;
    } else if let Err(e) = Command::new("wrk").arg("--version").output() {
        eprintln!("cannot run wrk ({e}): install it with `apt-get install wrk` (Debian/Ubuntu)");
        // `cargo test --benches` must not fail for want of a load generator.
        return Ok(ExitCode::from(if quick { 0 } else { 2 }));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join(format!("bench-serve-v2-{n}{}", common::layout().1));
    let (dir, images) = (root.join("library"), root.join("images"));
    let files = write_images(&images)?;
    let spec = EmbedderSpec {
        model_id: "bench-random".into(),
        revision: "sha256:random".into(),
        dim: DIM,
        image_size: 224,
        precision: Default::default(),
    };
    let mut lib = common::open_library(&dir)?;
    let first_root = lib
        .keyword()
        .get(&record_id(&files[0].1))?
        .map(|r| PathBuf::from(r.images_root));
    if lib.manifest().counts.records != n as u64 || first_root.as_deref() != Some(images.as_path())
    {
        drop(lib);
        let _ = std::fs::remove_dir_all(&dir);
        lib = common::open_library(&dir)?;
        build(&mut lib, &spec, n, &images, &files);
    }
    // `IMAGELENS_BENCH_INDEX=exact` measures the service with exact scans (no graphs), to
    // compare with the default (`auto`: graphs for segments of 20,000 points and more) on the
    // same library; `IMAGELENS_BENCH_VECTORS=ram` keeps the full vectors in RAM instead of on
    // disk (the default); `IMAGELENS_BENCH_QUANTIZATION=none` searches the graphs over the full
    // vectors instead of int8 copies (the default). Each starts from the layout's default settings.
    let kind = std::env::var("IMAGELENS_BENCH_INDEX").ok();
    let vectors = std::env::var("IMAGELENS_BENCH_VECTORS").ok();
    let quantization = std::env::var("IMAGELENS_BENCH_QUANTIZATION").ok();
    let mut settings = common::layout().0.index_defaults();
    if let Some(kind) = &kind {
        settings.kind = serde_json::from_value(json!(kind))
            .context("IMAGELENS_BENCH_INDEX is auto, exact or hnsw")?;
        println!("index: {kind:?} (IMAGELENS_BENCH_INDEX)");
    }
    if let Some(vectors) = &vectors {
        settings.on_disk = match vectors.as_str() {
            "disk" => true,
            "ram" => false,
            other => anyhow::bail!("IMAGELENS_BENCH_VECTORS is disk or ram, not {other:?}"),
        };
        println!("full vectors: {vectors} (IMAGELENS_BENCH_VECTORS)");
    }
    if let Some(q) = &quantization {
        settings.quantization = serde_json::from_value(json!(q))
            .context("IMAGELENS_BENCH_QUANTIZATION is none or int8")?;
        println!("quantization: {q} (IMAGELENS_BENCH_QUANTIZATION)");
    }
    // `IMAGELENS_BENCH_OVERSAMPLING=1.5`: int8 candidates per hit wanted, all rescored (a
    // search-time setting: the library is not rebuilt for it).
    if let Ok(o) = std::env::var("IMAGELENS_BENCH_OVERSAMPLING") {
        settings.oversampling = o
            .parse()
            .context("IMAGELENS_BENCH_OVERSAMPLING is a number")?;
        println!("oversampling: {o} (IMAGELENS_BENCH_OVERSAMPLING)");
    }
    let changed = lib.store().index_settings()? != settings;
    if changed {
        lib.store().set_index_settings(&settings)?;
    }
    // As `imagelens ingest` leaves a library (a no-op on a reused one).
    lib.store().optimize()?;
    // Served as a service opens it: a library this run built or rewrote is closed and opened
    // again, so the memory figures below are those of an opened library, not of the build.
    drop(lib);
    let start = std::time::Instant::now();
    let lib = common::open_library(&dir)?;
    println!(
        "library opened in {:.2} s ({})",
        start.elapsed().as_secs_f64(),
        if changed {
            "index settings changed"
        } else {
            "settings as found"
        }
    );
    // Every request appends (and syncs) one audit entry: start each run from an empty trail so
    // runs are alike and the reused library does not grow without bound.
    let _ = std::fs::remove_dir_all(dir.join("audit"));
    let auth = authorization(&dir)?;
    // Query text lands near the clusters of the label it names (see `common::World`).
    let world = Generator::new(Data::Clustered).world().clone();
    let embedder: Arc<dyn Embedder> = Arc::new(BenchEmbedder::new(spec, Some(world)));
    let service = Arc::new(SearchService::new(Arc::new(lib), Some(embedder), None)?);
    let mut limits = Limits::default();
    // `IMAGELENS_BENCH_SEARCH_SLOTS=N` sets how many searches rank at once (default: the
    // cores); a large N is the service before ranking slots existed (every search ran at once,
    // and look-ups and thumbnails shared the cores with all of them).
    if let Ok(n) = std::env::var("IMAGELENS_BENCH_SEARCH_SLOTS") {
        limits.max_concurrent_searches = n
            .parse()
            .context("IMAGELENS_BENCH_SEARCH_SLOTS is a number")?;
    }
    // `IMAGELENS_BENCH_QUEUE_WAIT_MS=N`: how long a search waits for a slot before it is shed
    // with 503 (default 2,000); the request timeout's length makes searches queue instead.
    if let Ok(ms) = std::env::var("IMAGELENS_BENCH_QUEUE_WAIT_MS") {
        limits.queue_wait_ms = ms
            .parse()
            .context("IMAGELENS_BENCH_QUEUE_WAIT_MS is a number")?;
    }
    println!(
        "search slots: {}, queue wait {} ms, request timeout {} s",
        limits.max_concurrent_searches, limits.queue_wait_ms, limits.request_timeout_secs
    );
    let timeout_s = limits.request_timeout_secs + 10;
    let opened = memory()?;
    println!("memory with the library open, before the load: {opened}");
    let app = router(AppState::new(service, limits, Redaction::default())?);

    // The server runs on the runtime's worker threads; this thread drives wrk.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let port = listener.local_addr()?.port();
    // As `imagelens serve` does, so handlers that read the peer address work here too.
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    rt.spawn(async move { axum::serve(listener, app).await.expect("server runs") });

    let mut rng = StdRng::seed_from_u64(9);
    // `IMAGELENS_BENCH_WEIGHTS=keyword=1,image=1,region=0.7,text=0.5` sends those weights with
    // every search (the defaults before session 17 ran all four lists); unset, the searches
    // send none and run the server's defaults.
    let weights = std::env::var("IMAGELENS_BENCH_WEIGHTS").ok();
    if let Some(w) = &weights {
        println!("search weights: {w} (IMAGELENS_BENCH_WEIGHTS)");
    }
    let mix = mix(n, &files, weights.as_deref(), &mut rng);
    // One of each kind first, so a broken mix fails in a second rather than after the run.
    for req in &mix[..12] {
        let (status, text) = http(port, req, auth.as_deref())?;
        if status != 200 {
            bail!("{} {} answered {status}:\n{text}", req.method, req.path);
        }
    }
    if first_paint {
        return paint_run(&rt, port, n, auth.as_deref());
    }
    let script = tempfile::Builder::new().suffix(".lua").tempfile()?;
    std::fs::write(script.path(), lua(&mix, auth.as_deref()))?;
    println!(
        "records: {n}; {connections} connections, 2 wrk threads, {secs} s; mix: 50% POST /v1/search, \
         25% GET /v1/lookup, 25% GET /v1/records/{{id}}/thumbnail?size=128; default limits"
    );
    println!(
        "query text is embedded by a fixed random embedder: this measures the service, not the model"
    );
    let url = format!("http://127.0.0.1:{port}");
    let wrk = |secs: usize| {
        let args = [
            "-t2".to_owned(),
            format!("-c{connections}"),
            format!("-d{secs}s"),
            "--timeout".into(),
            format!("{timeout_s}s"),
            "--latency".into(),
            "-s".into(),
            script.path().display().to_string(),
            url.clone(),
        ];
        let out = Command::new("wrk")
            .args(&args)
            .output()
            .context("cannot run wrk")?;
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        if !out.status.success() {
            bail!("wrk failed: {}", out.status);
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    // `IMAGELENS_BENCH_WARMUP_SECS=N`: the same load for N s first, not counted, so the measured
    // minute sees the pages of the mapped files a service that has run a while has in memory
    // (the full vectors on disk and the payloads are read on first touch). The server's means
    // below are then those of the measured run alone.
    let warmup = env_or("IMAGELENS_BENCH_WARMUP_SECS", 0)?;
    let before = if warmup > 0 {
        let out = wrk(warmup)?;
        let requests = out
            .lines()
            .find_map(|l| l.strip_prefix("IMAGELENS requests "))
            .unwrap_or("?");
        println!(
            "warm-up: {requests} requests in {warmup} s, not counted; memory after it: {}",
            memory()?
        );
        http(port, &get("/metrics".into()), auth.as_deref())?.1
    } else {
        String::new()
    };
    let (usage, started) = (common::Usage::now()?, std::time::Instant::now());
    let stdout = wrk(secs)?;
    let used = common::Usage::now()?.since(&usage, started.elapsed().as_secs_f64());
    print!("{stdout}");
    let v: BTreeMap<&str, f64> = stdout
        .lines()
        .filter_map(|l| {
            let mut w = l.strip_prefix("IMAGELENS ")?.split(' ');
            Some((w.next()?, w.next()?.parse().ok()?))
        })
        .collect();
    let val = |k: &str| v.get(k).copied().unwrap_or(0.0);

    let (_, text) = http(port, &get("/metrics".into()), auth.as_deref())?;
    println!("\n/metrics after the run:");
    let busy: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("imagelens_busy_rejections_total"))
        .collect();
    if busy.is_empty() {
        println!("imagelens_busy_rejections_total: none (no request waited too long for a slot)");
    }
    for l in busy.iter().copied().chain(text.lines().filter(|l| {
        (l.starts_with("imagelens_http_requests_total") && !l.contains("/metrics"))
            || l.starts_with("imagelens_audit_")
    })) {
        println!("{l}");
    }
    // Mean time to the response head per route, from the server's latency histogram.
    if warmup > 0 {
        println!("(the request counts above include the warm-up; the means below do not)");
    }
    for (route, (mean, count)) in means(&text, &before, "imagelens_http_request_duration_seconds") {
        if route.starts_with("/v1/") {
            println!("mean server time {route}: {mean:.2} ms over {count:.0} requests");
        }
    }
    // Where a search's time goes (a stage's time includes its wait for the cores).
    for (stage, (mean, count)) in means(&text, &before, "imagelens_search_stage_seconds") {
        println!("mean search stage {stage}: {mean:.2} ms over {count:.0}");
    }

    let statuses: BTreeMap<u16, u64> = v
        .iter()
        .filter_map(|(k, n)| Some((k.strip_prefix("status_")?.parse().ok()?, *n as u64)))
        .collect();
    let count = |f: &dyn Fn(u16) -> bool| {
        statuses
            .iter()
            .filter(|(c, _)| f(**c))
            .map(|(_, n)| n)
            .sum::<u64>()
    };
    let ok = count(&|c| (200..300).contains(&c));
    let shed = count(&|c| c == 503);
    let others: Vec<String> = statuses
        .iter()
        .filter(|(c, _)| !(200..300).contains(*c) && **c != 503)
        .map(|(c, n)| format!("{c}: {n}"))
        .collect();
    let socket: Vec<(&str, f64)> = ["connect", "read", "write", "timeout"]
        .iter()
        .map(|k| (*k, val(&format!("socket_{k}"))))
        .collect();
    let socket_total: f64 = socket.iter().map(|(_, n)| n).sum();
    let ms = |k: &str| val(k) / 1000.0;
    println!(
        "\nsummary (records {n}, {connections} connections, {secs} s, fixed random embedder):"
    );
    println!(
        "  requests  {:.0} in {:.1} s = {:.1} req/s",
        val("requests"),
        val("duration_us") / 1e6,
        val("requests") / (val("duration_us") / 1e6).max(1e-9)
    );
    println!(
        "  latency   p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        ms("p50_us"),
        ms("p90_us"),
        ms("p99_us"),
        ms("p99.9_us"),
        ms("max_us")
    );
    println!("  2xx       {ok}");
    println!(
        "  503       {shed} (deliberate load-shedding: no work slot in time, or the request timeout)"
    );
    println!(
        "  other non-2xx  {}",
        if others.is_empty() {
            "none".into()
        } else {
            others.join(", ")
        }
    );
    println!(
        "  socket errors  {socket_total:.0} ({})",
        socket
            .iter()
            .map(|(k, n)| format!("{k} {n:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("  server    during the measured run: {used}");
    println!("  memory    after the load: {}", memory()?);
    println!("            before it:      {opened}");
    if !others.is_empty() || socket_total > 0.0 || ok == 0 {
        println!("FAIL: non-2xx other than 503, socket errors, or no successful request");
        return Ok(ExitCode::FAILURE);
    }
    println!("OK");
    Ok(ExitCode::SUCCESS)
}

/// Mean of a histogram's observations per label value, in ms, from `/metrics` text, less
/// those already in `before` (an earlier `/metrics` text of the same server, or empty).
fn means(text: &str, before: &str, name: &str) -> BTreeMap<String, (f64, f64)> {
    let (now, then) = (histogram(text, name), histogram(before, name));
    now.into_iter()
        .filter_map(|(k, (sum, count))| {
            let (sum0, count0) = then.get(&k).copied().unwrap_or((0.0, 0.0));
            let c = count - count0;
            (c > 0.0).then(|| (k, ((sum - sum0) / c * 1000.0, c)))
        })
        .collect()
}

/// A histogram's sum and count per label value, from `/metrics` text.
fn histogram(text: &str, name: &str) -> BTreeMap<String, (f64, f64)> {
    let read = |suffix: &str| -> BTreeMap<String, f64> {
        text.lines()
            .filter_map(|l| {
                let rest = l.strip_prefix(&format!("{name}{suffix}"))?;
                let label = rest.split('"').nth(1)?.to_owned();
                Some((label, rest.rsplit(' ').next()?.parse().ok()?))
            })
            .collect()
    };
    let sums = read("_sum");
    read("_count")
        .into_iter()
        .map(|(k, c)| {
            let sum = sums.get(&k).copied().unwrap_or(0.0);
            (k, (sum, c))
        })
        .collect()
}

/// The first-paint run: the page in Chromium, and the server's own times from `/metrics`.
fn paint_run(
    rt: &tokio::runtime::Runtime,
    port: u16,
    n: usize,
    auth: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let rounds = env_or("IMAGELENS_BENCH_ROUNDS", 3)?;
    // The page signs in with the password of the admin `authorization` made.
    let base = format!("http://127.0.0.1:{port}/");
    println!(
        "first paint: records {n}, {} queries x {rounds} rounds, headless Chromium, fixed random \
         embedder (no text encoder)",
        QUERIES.len()
    );
    let times = rt.block_on(first_paint::measure(
        &base,
        "bench-admin",
        "bench-admin-password",
        &QUERIES,
        rounds,
    ))?;
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let pct = |p: f64| sorted[((sorted.len() - 1) as f64 * p).round() as usize];
    let (_, text) = http(port, &get("/metrics".into()), auth)?;
    let routes = means(&text, "", "imagelens_http_request_duration_seconds");
    let stages = means(&text, "", "imagelens_search_stage_seconds");
    let search = routes.get("/v1/search").map_or(0.0, |m| m.0);
    println!(
        "  first paint after Enter: p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms over {} searches \
         (the first round includes cold caches)",
        pct(0.5),
        pct(0.9),
        pct(1.0),
        sorted.len()
    );
    for (route, (mean, count)) in &routes {
        if route.starts_with("/v1/") {
            println!("  server mean {route}: {mean:.2} ms over {count:.0} requests");
        }
    }
    for (stage, (mean, count)) in &stages {
        println!("  search stage {stage}: mean {mean:.2} ms over {count:.0}");
    }
    if search > 0.0 {
        println!(
            "  ratio: first-paint p50 / server search mean = {:.2}; first-paint p50 / 300 ms \
             target = {:.2}",
            pct(0.5) / search,
            pct(0.5) / 300.0
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("serve bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
