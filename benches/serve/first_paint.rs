//! `IMAGELENS_BENCH_MODE=first-paint`: the web page in headless Chromium on the served library,
//! timed as a person meets it: from Enter in the search box to the first result's thumbnail
//! painted (the page's own `first-results-paint` measure, `document.body.dataset.firstPaintMs`;
//! issue 13 asks for 300 ms on the 100k bench library with the text encoder excluded, which the
//! bench's fixed random embedder does). Needs Debian's `chromium` and `chromium-driver` (or
//! `IMAGELENS_CHROMIUM` / `IMAGELENS_CHROMEDRIVER`).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fantoccini::{Client, Locator};
use serde_json::Value;

#[path = "../../tests/support/chromium.rs"]
mod chromium;
use chromium::{connect, start_driver, truthy};

/// Chromium and chromedriver, or how to get them.
pub fn browser() -> anyhow::Result<(std::path::PathBuf, std::path::PathBuf)> {
    chromium::browser().context(
        "no chromium or chromedriver: apt-get install chromium chromium-driver (or set \
         IMAGELENS_CHROMIUM and IMAGELENS_CHROMEDRIVER)",
    )
}

/// Evaluates `expr` in the page until it is truthy (60 s), and returns its value.
async fn until(c: &Client, what: &str, expr: &str) -> anyhow::Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = c.execute(&format!("return ({expr});"), vec![]).await?;
        if truthy(&v) {
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
    let (_driver, port) = start_driver(&driver).context("cannot start chromedriver")?;
    let profile = tempfile::tempdir()?;
    let c = connect(&chromium, port, profile.path())
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
