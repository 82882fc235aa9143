//! `IMAGELENS_BENCH_MODE=first-paint`: the web page in headless Chromium on the served library,
//! timed as a person meets it: from Enter in the search box to the first result's thumbnail
//! painted (the page's own `first-results-paint` measure, `document.body.dataset.firstPaintMs`;
//! issue 13 asks for 300 ms on the 100k bench library with the text encoder excluded, which the
//! bench's fixed random embedder does). Needs Debian's `chromium` and `chromium-driver` (or
//! `IMAGELENS_CHROMIUM` / `IMAGELENS_CHROMEDRIVER`).

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

/// A child process killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|n| {
        std::env::split_paths(&path)
            .map(|d| d.join(n))
            .find(|p| p.is_file())
    })
}

/// Chromium and chromedriver, or why not.
pub fn browser() -> anyhow::Result<(PathBuf, PathBuf)> {
    let chromium = std::env::var_os("IMAGELENS_CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| on_path(&["chromium", "chromium-browser", "google-chrome"]))
        .context("no chromium: apt-get install chromium chromium-driver")?;
    let driver = std::env::var_os("IMAGELENS_CHROMEDRIVER")
        .map(PathBuf::from)
        .or_else(|| on_path(&["chromedriver"]))
        .context("no chromedriver: apt-get install chromium-driver")?;
    Ok((chromium, driver))
}

/// Evaluates `expr` in the page until it is truthy (60 s), and returns its value.
async fn until(c: &Client, what: &str, expr: &str) -> anyhow::Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = c.execute(&format!("return ({expr});"), vec![]).await?;
        let truthy = match &v {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::String(s) => !s.is_empty(),
            _ => true,
        };
        if truthy {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Signs in on the page at `base` as `user`, then runs each query `rounds` times and returns
/// the milliseconds from Enter to the first thumbnail painted, in order.
pub async fn measure(
    base: &str,
    user: &str,
    password: &str,
    queries: &[&str],
    rounds: usize,
) -> anyhow::Result<Vec<f64>> {
    let (chromium, driver) = browser()?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let _driver = Running(
        Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start chromedriver")?,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() >= deadline {
            bail!("chromedriver did not listen");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let profile = tempfile::tempdir()?;
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium.display().to_string(),
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,900", "--force-device-scale-factor=1",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }),
    );
    let c = ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .context("no chromium session")?;
    let result = session(&c, base, user, password, queries, rounds).await;
    let _ = c.close().await;
    result
}

async fn session(
    c: &Client,
    base: &str,
    user: &str,
    password: &str,
    queries: &[&str],
    rounds: usize,
) -> anyhow::Result<Vec<f64>> {
    c.goto(base).await?;
    until(
        c,
        "the sign-in form",
        "!document.getElementById('signin-view').hidden",
    )
    .await?;
    c.find(Locator::Id("signin-name"))
        .await?
        .send_keys(user)
        .await?;
    c.find(Locator::Id("signin-password"))
        .await?
        .send_keys(password)
        .await?;
    c.find(Locator::Id("signin-submit")).await?.click().await?;
    until(c, "signed in", "!document.getElementById('who').hidden").await?;
    let mut times = Vec::new();
    for _ in 0..rounds {
        for query in queries {
            let before = c
                .execute("return document.body.dataset.firstPaintGen || '';", vec![])
                .await?;
            let q = c.find(Locator::Id("q")).await?;
            q.clear().await?;
            q.send_keys(&format!("{query}\u{E007}")).await?;
            let expr = format!(
                "document.body.dataset.firstPaintGen && document.body.dataset.firstPaintGen !== {before} && document.body.dataset.firstPaintMs"
            );
            let ms = until(c, &format!("{query:?} painted"), &expr).await?;
            let ms: f64 = ms
                .as_str()
                .and_then(|s| s.parse().ok())
                .context("firstPaintMs is not a number")?;
            times.push(ms);
        }
    }
    Ok(times)
}
