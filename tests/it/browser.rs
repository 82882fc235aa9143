//! The web page in a real browser: headless Chromium driven through chromedriver (WebDriver,
//! via fantoccini) against a real `imagelens serve` on a generated library with the tiny
//! model. Skipped, saying so, when chromium or chromedriver is not installed (`.ci/run`
//! installs Debian's `chromium` and `chromium-driver`, and sets `IMAGELENS_REQUIRE_BROWSER=1`
//! so that CI fails instead of skipping).
//!
//! Screenshots of the main views at 1280 and 390 px wide go to
//! `target/tmp/web-screenshots/` (`CARGO_TARGET_TMPDIR`).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::Datelike;
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::{Client, Locator};
use serde_json::{Value, json};

use crate::common::{Fixture, bin, fixture, png};

#[path = "../support/chromium.rs"]
mod chromium;
use chromium::{Running, browser, connect, start_driver, truthy};

const PASSWORD: &str = "a long enough password";

fn cli(data: &Path, token: Option<&str>, args: &[&str]) -> String {
    let mut c = bin();
    c.arg("--data-dir").arg(data);
    if let Some(t) = token {
        c.env("IMAGELENS_TOKEN", t);
    }
    let out = c
        .env("IMAGELENS_NEW_PASSWORD", PASSWORD)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A library of `n` scenes with an admin `boss` (its API token is returned), a curator `cur`,
/// an auditor `aud` and a searcher `see`, served with the settings file `config` (TOML) when
/// one is given.
fn served(n: usize, config: Option<&str>) -> (Fixture, Running, SocketAddr, String) {
    served_with(n, config, |_| {})
}

/// As [`served`], with `more` ingesting more into the library before the server starts.
fn served_with(
    n: usize,
    config: Option<&str>,
    more: impl FnOnce(&Fixture),
) -> (Fixture, Running, SocketAddr, String) {
    let fx = fixture(n);
    fx.ingest(true);
    more(&fx);
    let out = cli(
        &fx.data,
        None,
        &["account", "create", "boss", "--role", "admin"],
    );
    let admin = out
        .lines()
        .find(|l| l.starts_with("il_"))
        .expect("the first admin's token")
        .to_owned();
    for (name, role) in [("cur", "curator"), ("aud", "auditor"), ("see", "searcher")] {
        cli(
            &fx.data,
            Some(&admin),
            &["account", "create", name, "--role", role],
        );
    }
    let mut serve = bin();
    if let Some(config) = config {
        let file = fx.dir.path().join("imagelens.toml");
        std::fs::write(&file, config).unwrap();
        serve.arg("--config").arg(file);
    }
    let mut child = serve
        .arg("--data-dir")
        .arg(&fx.data)
        .arg("--model")
        .arg(&fx.model)
        .args(["serve", "--addr", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(at) = line.find(" on http://") {
                let addr = line[at + 11..]
                    .split_whitespace()
                    .next()
                    .unwrap_or_default();
                if let Ok(addr) = addr.parse::<SocketAddr>() {
                    let _ = tx.send(addr);
                }
            }
        }
    });
    let server = Running(child);
    let addr = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("serve printed its address");
    (fx, server, addr, admin)
}

/// The Chromium profile folder of a fixture's browser session (its downloads land below it).
fn profile(fx: &Fixture) -> std::path::PathBuf {
    fx.dir.path().join("chromium-profile")
}

/// chromedriver and a Chromium session (its profile in the fixture's folder) for the server at
/// `addr`, and the page's address; chromedriver stops when the first value is dropped.
async fn open_browser(
    fx: &Fixture,
    chromium: &Path,
    driver: &Path,
    addr: SocketAddr,
) -> (Running, Client, String) {
    let (running, port) = start_driver(driver).expect("chromedriver listening");
    let c = connect(chromium, port, &profile(fx))
        .await
        .expect("a chromium session");
    (running, c, format!("http://{addr}/"))
}

/// Chromium and chromedriver; `None` (the test says it skipped) when either is missing, which
/// fails instead when `IMAGELENS_REQUIRE_BROWSER` is set (as `.ci/run` sets it).
fn browser_or_skip() -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    let found = browser();
    if found.is_none() {
        assert!(
            std::env::var_os("IMAGELENS_REQUIRE_BROWSER").is_none(),
            "IMAGELENS_REQUIRE_BROWSER is set but chromium or chromedriver is missing"
        );
        eprintln!(
            "skipped: the browser test needs chromium and chromedriver on PATH \
             (apt-get install chromium chromium-driver)"
        );
    }
    found
}

/// Evaluates `expr` in the page until it is truthy (30 s), and returns its value.
async fn until(c: &Client, what: &str, expr: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = c
            .execute(&format!("return ({expr});"), vec![])
            .await
            .unwrap();
        if truthy(&v) {
            return v;
        }
        if Instant::now() > deadline {
            let status = c
                .execute(
                    "return [document.getElementById('status')?.textContent, document.getElementById('signin-error')?.textContent, document.getElementById('banner')?.textContent].join(' | ')",
                    vec![],
                )
                .await
                .unwrap_or_default();
            panic!("timed out waiting for {what} ({expr}); page says: {status}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn js(c: &Client, expr: &str) -> Value {
    c.execute(&format!("return ({expr});"), vec![])
        .await
        .unwrap()
}

async fn sign_in(c: &Client, name: &str, purpose: &str) {
    until(
        c,
        "the sign-in form",
        "!document.getElementById('signin-view').hidden",
    )
    .await;
    let form = c.find(Locator::Id("signin-name")).await.unwrap();
    form.clear().await.unwrap();
    form.send_keys(name).await.unwrap();
    type_into(c, "signin-password", PASSWORD).await;
    type_into(c, "signin-purpose", purpose).await;
    click(c, Locator::Id("signin-submit")).await;
    until(c, "signed in", "!document.getElementById('who').hidden").await;
}

async fn screenshot(c: &Client, name: &str) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = c.screenshot().await.unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// Smallest colour distance to `want` around (x, y) within `r` pixels.
fn nearest(img: &image::RgbaImage, x: i64, y: i64, r: i64, want: [u8; 3]) -> u32 {
    let mut best = u32::MAX;
    for dy in -r..=r {
        for dx in -r..=r {
            let (px, py) = (x + dx, y + dy);
            if px < 0 || py < 0 || px >= i64::from(img.width()) || py >= i64::from(img.height()) {
                continue;
            }
            let p = img.get_pixel(px as u32, py as u32).0;
            let d: u32 = (0..3).map(|i| u32::from(p[i].abs_diff(want[i]))).sum();
            best = best.min(d);
        }
    }
    best
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_in_chromium_signs_in_searches_shows_boxes_and_curates() {
    let Some((chromium, driver)) = browser_or_skip() else {
        return;
    };
    let (fx, _server, addr, _) = served(40, None);
    let (_driver, c, base) = open_browser(&fx, &chromium, &driver, addr).await;

    // A forged session cookie gets the sign-in page, not an error.
    c.goto(&base).await.unwrap();
    js(
        &c,
        "(document.cookie = 'imagelens_session=il_forged_0000; path=/') && true",
    )
    .await;
    c.refresh().await.unwrap();
    until(&c, "sign-in after a forged session", "!document.getElementById('signin-view').hidden && document.getElementById('signin-error').textContent.includes('session ended')").await;

    // Sign in as the curator; the purpose is kept for the session.
    sign_in(&c, "cur", "web test").await;
    // The session is an HttpOnly cookie: no script of the page can read it, and no secret is
    // kept in the page's storage.
    let session = c.get_named_cookie("imagelens_session").await.unwrap();
    assert_eq!(session.http_only(), Some(true));
    assert_eq!(session.same_site(), Some(cookie::SameSite::Strict));
    assert_eq!(
        js(&c, "document.cookie.includes('imagelens_session')").await,
        false
    );
    assert_eq!(
        js(
            &c,
            "JSON.stringify(Object.assign({}, sessionStorage, localStorage)).includes('il_')"
        )
        .await,
        false
    );
    assert_eq!(
        js(&c, "sessionStorage.getItem('imagelens.purpose')").await,
        "web test"
    );
    assert_eq!(
        js(&c, "document.getElementById('who-name').textContent").await,
        "cur (curator)"
    );
    // The auditor's tab is hidden for a curator.
    assert_eq!(
        js(&c, "document.getElementById('tab-audit').hidden").await,
        true
    );
    // Every request the page makes is kept for the checks below.
    js(&c, "performance.setResourceTimingBufferSize(10000) || true").await;
    // Without a query the facets count the whole library.
    let whole_cars = until(&c, "facets over the filters", "document.body.dataset.facetScope === 'filters' && document.querySelector('#label-list li[data-value=car] .count')?.textContent").await;
    let whole_total = js(&c, "document.getElementById('facet-total').textContent").await;

    // Search: thumbnails painted, with boxes and a "why".
    let q = c.find(Locator::Id("q")).await.unwrap();
    q.send_keys("car\u{E007}").await.unwrap();
    let paint = until(
        &c,
        "first results painted",
        "document.body.dataset.firstPaintMs",
    )
    .await;
    eprintln!(
        "first results painted {} ms after Enter (40 scenes, tiny model)",
        paint.as_str().unwrap()
    );
    until(&c, "thumbnails as blob: URLs", "[...document.querySelectorAll('#results .card img')].filter(i => i.complete && i.naturalWidth > 0 && i.src.startsWith('blob:')).length >= 8").await;
    until(
        &c,
        "boxes over the first card",
        "document.querySelectorAll('#results .card:first-child svg.boxes g.box').length > 0",
    )
    .await;
    // Hits whose labels say car are explained by that label.
    let car_why = js(&c, "[...document.querySelectorAll('#results .card')].filter(c => c.querySelector('img').alt.includes('car')).map(c => c.querySelector('.why').textContent)").await;
    let car_why = car_why.as_array().unwrap();
    assert!(!car_why.is_empty(), "no result labelled car");
    // The query's label leads: the first result is a car, and cars are most of the first k
    // (k = the library's cars, at most 8).
    let cars: usize = whole_cars.as_str().unwrap().trim().parse().unwrap();
    let k = cars.min(8);
    let first = js(&c, &format!("[...document.querySelectorAll('#results .card')].slice(0, {k}).map(c => (c.querySelector('img').alt.match(/^[^(]*\\(([^)]*)\\)/) || ['', ''])[1].split(', ').includes('car'))")).await;
    let first: Vec<bool> = serde_json::from_value(first).unwrap();
    assert!(
        first.len() == k && first[0] && first.iter().filter(|c| **c).count() * 2 > k,
        "the first {k} results, car or not: {first:?} ({cars} cars in the library)"
    );
    assert!(
        car_why
            .iter()
            .all(|w| w.as_str().unwrap().contains("labels: car")),
        "{car_why:?}"
    );
    until(
        &c,
        "every thumbnail of the page painted",
        "[...document.querySelectorAll('#results .card img')].every(i => i.complete && i.naturalWidth > 0)",
    )
    .await;
    // The filters stay inside their panel (nothing wider than the sidebar).
    let sticking = js(&c, "(() => { const box = document.getElementById('filters-box').getBoundingClientRect(); return [...document.querySelectorAll('#filters-box input, #filters-box .histogram')].filter(e => e.getBoundingClientRect().right > box.right + 1).map(e => `${e.tagName}.${e.className}[${e.getAttribute('aria-label')}] ${e.getBoundingClientRect().right} > ${box.right}`); })()").await;
    assert_eq!(sticking, json!([]), "filters stick out of the sidebar");
    screenshot(&c, "search-1280").await;
    // The measure finds low contrast where there is some: grey #aaa text on the white page
    // (2.3:1).
    js(&c, "(() => { const p = document.createElement('p'); p.id = 'contrast-probe'; p.textContent = 'probe'; p.style.color = '#aaaaaa'; document.getElementById('search-view').append(p); return true; })()").await;
    let probe = js(&c, CONTRAST).await;
    assert!(
        probe["ratio"].as_f64().unwrap() < 2.5
            && probe["what"].as_str().unwrap().contains("contrast-probe"),
        "{probe}"
    );
    js(
        &c,
        "(() => { document.getElementById('contrast-probe').remove(); return true; })()",
    )
    .await;
    contrast_meets_aa(&c, "search-1280").await;

    // Scrolling loads the next page, without repeats.
    let first_page = js(&c, "document.querySelectorAll('#results .card').length").await;
    assert_eq!(first_page, 24, "one page of 24 first");
    js(&c, "window.scrollTo(0, document.body.scrollHeight) || true").await;
    until(
        &c,
        "the second page",
        "document.querySelectorAll('#results .card').length === 40",
    )
    .await;
    let distinct = js(
        &c,
        "new Set([...document.querySelectorAll('#results .card')].map(c => c.dataset.id)).size",
    )
    .await;
    assert_eq!(distinct, 40, "a result repeated across pages");
    // The grid drew 40 cards with their boxes and alt texts from the hits alone: it read
    // thumbnails, and no record (`GET /v1/records/{id}`, a `view_record` entry each).
    let reads = until(&c, "the 40 thumbnails fetched", "(() => { const r = performance.getEntriesByType('resource').map(e => new URL(e.name).pathname).filter(p => p.startsWith('/v1/records/')); return r.filter(p => p.endsWith('/thumbnail')).length >= 40 && r; })()").await;
    let reads: Vec<&str> = reads
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(reads.len() >= 40, "{reads:?}");
    assert!(
        reads.iter().all(|p| p.ends_with("/thumbnail")),
        "the grid read a record: {reads:?}"
    );
    js(&c, "window.scrollTo(0, 0) || true").await;

    // A label filter narrows the grid and the counts.
    let before = js(&c, "document.getElementById('facet-total').textContent").await;
    click(
        &c,
        Locator::Css("#label-list input[data-kind=label][data-value=dog]"),
    )
    .await;
    until(&c, "the grid filtered to dogs", "document.querySelectorAll('#results .card').length > 0 && document.querySelectorAll('#results .card').length < 40 && location.search.includes('label=dog')").await;
    until(
        &c,
        "dog alt texts",
        "[...document.querySelectorAll('#results .card img')].every(i => i.alt.includes('dog'))",
    )
    .await;
    let after = until(&c, "narrower facet counts", &format!("document.getElementById('facet-total').textContent !== {before} && document.getElementById('facet-total').textContent")).await;
    let count = |v: &Value| -> u64 {
        v.as_str()
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(count(&after) < count(&before), "{before} -> {after}");
    assert_eq!(
        js(&c, "document.querySelectorAll('#results .card').length").await,
        json!(count(&after)),
        "the grid holds exactly the filtered records"
    );

    // Open a record: full image, every box, facts.
    click(&c, Locator::Css("#results .card:first-child .open")).await;
    until(&c, "the record view", "document.getElementById('record-dialog').open && document.querySelector('#record-frame img')?.complete && document.querySelector('#record-frame img').naturalWidth > 0").await;
    let facts = js(&c, "document.getElementById('record-facts').textContent").await;
    let facts = facts.as_str().unwrap();
    assert!(
        facts.contains("sha256") && facts.contains("Dataset") && facts.contains("synth"),
        "{facts}"
    );
    assert!(
        location_has(&c, "open=").await,
        "the address names the open record"
    );
    // Boxes are drawn where the record says: a pixel on the first box's left edge has the
    // label's colour with boxes shown, and not with boxes hidden.
    let geometry = js(&c, "(() => { const img = document.querySelector('#record-frame img'); const r = img.getBoundingClientRect(); const g = document.querySelector('#record-frame g.box'); const rect = g.querySelector('rect'); return {left: r.left, top: r.top, width: r.width, height: r.height, natural: img.naturalWidth, stroke: rect.getAttribute('stroke'), x: +rect.getAttribute('x'), y: +rect.getAttribute('y'), w: +rect.getAttribute('width'), h: +rect.getAttribute('height'), vw: document.querySelector('#record-frame svg').viewBox.baseVal.width}; })()").await;
    let g = |k: &str| geometry[k].as_f64().unwrap();
    let scale = g("width") / g("vw");
    let px = (g("left") + g("x") * scale).round() as i64;
    let py = (g("top") + (g("y") + g("h") / 2.0) * scale).round() as i64;
    // The colour the page drew the box in (a label's colour: `PALETTE` in boxes.js, which
    // the thumbnails share; `http::records` tests it).
    let stroke = geometry["stroke"].as_str().unwrap();
    let colour: [u8; 3] =
        std::array::from_fn(|i| u8::from_str_radix(&stroke[1 + 2 * i..3 + 2 * i], 16).unwrap());
    let shot = |png: Vec<u8>| image::load_from_memory(&png).unwrap().to_rgba8();
    let with_boxes = shot(c.screenshot().await.unwrap());
    screenshot(&c, "record-1280").await;
    contrast_meets_aa(&c, "record-1280").await;
    at_390_px(&c, "record-390").await;
    js(&c, "document.getElementById('show-boxes').click() || true").await;
    let without = shot(c.screenshot().await.unwrap());
    js(&c, "document.getElementById('show-boxes').click() || true").await;
    let on = nearest(&with_boxes, px, py, 2, colour);
    let off = nearest(&without, px, py, 0, colour);
    assert!(
        on < 60,
        "box edge at ({px},{py}) is not {colour:?} (distance {on}); {geometry}"
    );
    assert!(
        off > on,
        "the pixel has the box colour without boxes too ({off} vs {on})"
    );
    // A box with outlines (a polygon annotation) is drawn as its outlines over its dashed
    // rectangle, by the page's own module; a box without keeps its solid rectangle.
    let drawn = js(&c, "import('/ui/boxes.js').then((m) => { const svg = m.overlay(100, 80, [{label: 'person', x: 10, y: 10, w: 40, h: 60, polygons: [[[10, 10], [50, 10], [30, 70]]]}, {label: 'car', x: 60, y: 5, w: 20, h: 20}], new Set([0])); const [a, b] = svg.querySelectorAll('g.box'); return {outlines: a.querySelectorAll('polygon').length, points: a.querySelector('polygon').getAttribute('points'), filled: a.querySelector('polygon').getAttribute('fill-opacity'), dashed: a.querySelector('rect').getAttribute('stroke-dasharray'), plain: b.querySelectorAll('polygon').length, solid: b.querySelector('rect').getAttribute('stroke-dasharray')}; })").await;
    assert_eq!(
        drawn,
        json!({"outlines": 1, "points": "10,10 50,10 30,70", "filled": "0.18",
                           "dashed": "4 4", "plain": 0, "solid": "none"}),
    );
    click(&c, Locator::Id("record-close")).await;
    until(
        &c,
        "the record view closed",
        "!document.getElementById('record-dialog').open",
    )
    .await;

    // Keyboard only: Tab from the search box reaches a result; Enter opens it; Esc closes.
    click(&c, Locator::Id("q")).await;
    let mut reached = false;
    for _ in 0..150 {
        let active = c.active_element().await.unwrap();
        if active.attr("class").await.unwrap().as_deref() == Some("open") {
            reached = true;
            press(&c, '\u{E007}').await;
            break;
        }
        press(&c, '\u{E004}').await;
    }
    assert!(reached, "Tab never reached a result");
    until(
        &c,
        "the record opened by keyboard",
        "document.getElementById('record-dialog').open",
    )
    .await;
    press(&c, '\u{E00C}').await;
    until(
        &c,
        "Esc closed it",
        "!document.getElementById('record-dialog').open",
    )
    .await;
    // Focus is back on the result: its card shows its score and its "why" (shown on focus,
    // hidden on the other cards), and ArrowRight moves to the next result.
    let focused = until(&c, "focus back on a result, its why shown", "(() => { const a = document.activeElement; const li = a && a.closest('#results .card'); if (!li || !a.classList.contains('open')) return null; const shown = [...document.querySelectorAll('#results .card .why')].filter(w => getComputedStyle(w).display !== 'none').map(w => w.closest('.card').dataset.index); return { index: li.dataset.index, score: li.querySelector('.score')?.textContent ?? '', shown }; })()").await;
    let index: usize = focused["index"].as_str().unwrap().parse().unwrap();
    assert!(
        focused["score"]
            .as_str()
            .unwrap()
            .strip_prefix("score ")
            .is_some_and(|v| v.parse::<f64>().is_ok()),
        "{focused}"
    );
    assert_eq!(focused["shown"], json!([index.to_string()]), "{focused}");
    press(&c, '\u{E014}').await; // ArrowRight
    until(
        &c,
        "ArrowRight to the next result",
        &format!(
            "document.activeElement.closest('#results .card')?.dataset.index === '{}'",
            index + 1
        ),
    )
    .await;

    // "More like this" from a record: a search by the record's own image, keeping the label
    // filter, that leaves the record itself out; the address bar says so; clearing it ends it.
    let query_search = js(&c, "location.search").await;
    let liked = js(&c, "document.querySelector('#results .card').dataset.id").await;
    let liked = liked.as_str().unwrap().to_owned();
    click(
        &c,
        Locator::Css(&format!("#results .card[data-id='{liked}'] .open")),
    )
    .await;
    until(
        &c,
        "the record view",
        "document.getElementById('record-dialog').open && document.getElementById('record-title').textContent !== 'Loading…'",
    )
    .await;
    click(&c, Locator::Id("record-like")).await;
    until(&c, "more like the record", &format!("!document.getElementById('like-note').hidden && document.getElementById('like-text').textContent.includes('{liked}') && location.search.includes('like={liked}') && location.search.includes('label=dog') && document.querySelectorAll('#results .card').length > 0 && [...document.querySelectorAll('#results .card img')].every(i => i.alt.includes('dog')) && !document.querySelector(\"#results .card[data-id='{liked}']\")")).await;
    click(&c, Locator::Id("like-clear")).await;
    until(
        &c,
        "more like this cleared",
        "document.getElementById('like-note').hidden && !location.search.includes('like=')",
    )
    .await;
    c.goto(&format!("{base}{}", query_search.as_str().unwrap()))
        .await
        .unwrap();
    until(
        &c,
        "the query's results again",
        "document.querySelectorAll('#results .card').length >= 3",
    )
    .await;
    // The same from the grid: a card's own "More like this" button.
    let liked = js(
        &c,
        "document.querySelector('#results .card:nth-child(2)').dataset.id",
    )
    .await;
    let liked = liked.as_str().unwrap().to_owned();
    click(
        &c,
        Locator::Css(&format!("#results .card[data-id='{liked}'] button.like")),
    )
    .await;
    until(&c, "more like the card's record", &format!("!document.getElementById('like-note').hidden && location.search.includes('like={liked}') && document.querySelectorAll('#results .card').length > 0 && !document.querySelector(\"#results .card[data-id='{liked}']\")")).await;
    c.goto(&format!("{base}{}", query_search.as_str().unwrap()))
        .await
        .unwrap();
    until(
        &c,
        "the query's results once more",
        "document.querySelectorAll('#results .card').length >= 3",
    )
    .await;

    // Select two results into a new collection: a click, a shift-click two cards on (the
    // range: three selected), then a click that takes the middle one out again.
    let picks = c
        .find_all(Locator::Css("#results .card .pick"))
        .await
        .unwrap();
    assert!(picks.len() >= 3, "need three dog results");
    picks[0].click().await.unwrap();
    shift_click(&c, &picks[2]).await;
    until(
        &c,
        "a shift-click selects the range",
        "document.getElementById('selection-count').textContent === '3 selected'",
    )
    .await;
    picks[1].click().await.unwrap();
    until(
        &c,
        "two selected",
        "document.getElementById('selection-count').textContent === '2 selected'",
    )
    .await;
    let chosen = js(
        &c,
        "[...document.querySelectorAll('#results .card.selected')].map(li => li.dataset.index).join(',')",
    )
    .await;
    assert_eq!(chosen, "0,2", "the first and the third card");
    click(&c, Locator::Id("collect")).await;
    until(
        &c,
        "the collection dialog",
        "document.getElementById('collect-dialog').open",
    )
    .await;
    type_into(&c, "collect-name", "picked").await;
    click(&c, Locator::Id("collect-ok")).await;
    until(
        &c,
        "the collection saved",
        "document.getElementById('status').textContent.includes('Collection picked now has 2')",
    )
    .await;
    // "Select all on page" selects every card shown; "none" clears it.
    click(&c, Locator::Id("select-page")).await;
    until(&c, "every card selected", "document.getElementById('selection-count').textContent === `${document.querySelectorAll('#results .card').length} selected` && document.querySelectorAll('#results .card:not(.selected)').length === 0").await;
    click(&c, Locator::Id("select-none")).await;
    until(
        &c,
        "none selected",
        "document.getElementById('selection-count').textContent === ''",
    )
    .await;
    click(&c, Locator::Id("tab-collections")).await;
    until(&c, "the collection listed", "document.querySelector('#collections-table tr[data-name=picked] td:nth-child(3)')?.textContent === '2'").await;
    screenshot(&c, "collections-1280").await;
    contrast_meets_aa(&c, "collections-1280").await;
    at_390_px(&c, "collections-390").await;
    // Rename it in one call: the same two records under the new name only.
    click(
        &c,
        Locator::Css("#collections-table tr[data-name=picked] button[aria-label='Rename picked']"),
    )
    .await;
    let field = c
        .find(Locator::Css(
            "#collections-table input[aria-label='New name for picked']",
        ))
        .await
        .unwrap();
    field.clear().await.unwrap();
    field.send_keys("picked-dogs").await.unwrap();
    click(
        &c,
        Locator::Css("#collections-table tr[data-name=picked] td.actions button"),
    )
    .await;
    until(&c, "the collection renamed", "document.querySelector('#collections-table tr[data-name=picked-dogs] td:nth-child(3)')?.textContent === '2' && !document.querySelector('#collections-table tr[data-name=picked]')").await;
    let renames = js(&c, "performance.getEntriesByType('resource').filter(e => new URL(e.name).pathname.startsWith('/v1/collections/picked')).length").await;
    assert_eq!(renames, 1, "one call renames (no create + delete)");

    // Export it: the dialog's Download saves a zip holding the two records, their annotations
    // and the provenance manifest naming who exported them and why.
    click(
        &c,
        Locator::Css(
            "#collections-table tr[data-name=picked-dogs] button[aria-label='Export picked-dogs']",
        ),
    )
    .await;
    until(
        &c,
        "the export dialog",
        "document.getElementById('export-dialog').open",
    )
    .await;
    click(&c, Locator::Id("export-ok")).await;
    let archive = downloaded(&chromium::downloads(&profile(&fx)), "picked-dogs").await;
    check_export(&archive, 2, "cur", "picked-dogs");
    // Delete it (after the page's confirmation): gone from the list, its records stay.
    click(
        &c,
        Locator::Css(
            "#collections-table tr[data-name=picked-dogs] button[aria-label='Delete picked-dogs']",
        ),
    )
    .await;
    c.accept_alert().await.unwrap();
    until(&c, "the collection deleted", "!document.querySelector('#collections-table tr[data-name=picked-dogs]') && document.getElementById('collections-status').textContent === 'No collections yet.'").await;

    // Facet counts follow the query: "dogs without cars" counts its own candidates, none of
    // them a car, where the empty query counted every car.
    c.goto(&format!("{base}?q=dogs%20without%20cars"))
        .await
        .unwrap();
    let query_total = until(&c, "facets over the query's candidates", "document.body.dataset.facetScope === 'query' && document.getElementById('facet-total').textContent").await;
    assert_ne!(query_total, whole_total);
    assert!(
        query_total.as_str().unwrap().contains("among the top 1000"),
        "{query_total}"
    );
    let car_now = js(
        &c,
        "document.querySelector('#label-list li[data-value=car] .count')?.textContent ?? '0'",
    )
    .await;
    assert_eq!(car_now, "0", "no car among the candidates");
    assert_ne!(whole_cars, "0", "the empty query counted cars");
    until(
        &c,
        "results for the query",
        "document.querySelectorAll('#results .card').length > 0",
    )
    .await;

    // Export the search itself (not a collection): YOLO in a tar, at most 5 results. The
    // archive holds 5 records, the manifest names the curator and the query, and its classes
    // are the exported boxes' labels: dogs, and no car (the query excluded them).
    click(&c, Locator::Id("export-search")).await;
    until(
        &c,
        "the search's export dialog",
        "document.getElementById('export-dialog').open && !document.getElementById('export-max-label').hidden",
    )
    .await;
    js(&c, "(() => { document.getElementById('export-format').value = 'yolo'; document.getElementById('export-archive').value = 'tar'; document.getElementById('export-max').value = '5'; return true; })()").await;
    click(&c, Locator::Id("export-ok")).await;
    let archive = downloaded(&chromium::downloads(&profile(&fx)), "search-yolo").await;
    let mut entries = std::collections::BTreeMap::new();
    let mut tar = tar::Archive::new(std::fs::File::open(&archive).unwrap());
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
        entries.insert(name, bytes);
    }
    let provenance: Value = serde_json::from_slice(&entries["provenance.json"]).unwrap();
    assert_eq!(provenance["requested_by"], "cur", "{provenance}");
    assert_eq!(provenance["format"], "yolo", "{provenance}");
    assert!(
        provenance["source"]
            .to_string()
            .contains("dogs without cars"),
        "{provenance}"
    );
    let listed = provenance["records"].as_array().unwrap();
    assert_eq!(listed.len(), 5, "{provenance}");
    for r in listed {
        let path = r["path"].as_str().unwrap();
        assert!(
            entries.contains_key(&format!("images/{path}")),
            "{path}: {:?}",
            entries.keys()
        );
    }
    let classes = String::from_utf8(entries["classes.txt"].clone()).unwrap();
    assert!(
        classes.lines().any(|l| l == "dog") && !classes.lines().any(|l| l == "car"),
        "{classes}"
    );

    // What was read from the query shows as a chip; removing it searches those words as text
    // (the query taken literally, in the address bar too), and one click reads them again.
    let chip = until(
        &c,
        "the exclusion read from the query",
        "document.querySelector('#interpreted .chip[data-kind=no_label]')?.textContent",
    )
    .await;
    assert!(chip.as_str().unwrap().contains("without car"), "{chip}");
    click(
        &c,
        Locator::Css("#interpreted .chip[data-kind=no_label] button"),
    )
    .await;
    until(&c, "the query taken literally", "location.search.includes('literal=true') && document.getElementById('interpreted').textContent.includes('taken literally') && document.getElementById('q').value === 'dogs without cars'").await;
    until(&c, "cars counted again", "document.body.dataset.facetScope === 'query' && (document.querySelector('#label-list li[data-value=car] .count')?.textContent ?? '0') !== '0'").await;
    click(&c, Locator::Css("#interpreted button")).await;
    until(&c, "the exclusion read again", "!location.search.includes('literal') && !!document.querySelector('#interpreted .chip[data-kind=no_label]') && (document.querySelector('#label-list li[data-value=car] .count')?.textContent ?? '0') === '0'").await;

    // A split from the address bar is a filter like any other: this library has no split, so
    // the Splits list appears only for the chosen one, nothing matches, and unticking it
    // brings the whole library back.
    assert_eq!(
        js(&c, "document.getElementById('f-splits').hidden").await,
        true,
        "no split in this library: no Splits list"
    );
    c.goto(&format!("{base}?split=val")).await.unwrap();
    until(&c, "facets with the split filter", "document.body.dataset.facetScope === 'filters' && document.getElementById('facet-total').textContent.startsWith('0 records') && !document.getElementById('f-splits').hidden").await;
    click(&c, Locator::Css("#split-list input[data-value=val]")).await;
    until(&c, "the split filter removed", &format!("document.getElementById('facet-total').textContent === {whole_total} && !location.search.includes('split')")).await;
    // A box attribute likewise (all ticked must hold).
    assert_eq!(
        js(&c, "document.getElementById('f-attrs').hidden").await,
        true
    );
    c.goto(&format!("{base}?attr=color%3Dwhite")).await.unwrap();
    until(&c, "facets with the attribute filter", "document.getElementById('facet-total').textContent.startsWith('0 records') && !document.getElementById('f-attrs').hidden && document.querySelector('#attr-list input[data-value=\"color=white\"]').checked").await;

    // A label holding a comma travels quoted as in CSV: read from the address as one label
    // (one ticked entry), asked for as one (no record holds "dog, cat": 0 records, not the
    // records holding both dog and cat), and written back to the address quoted.
    c.goto(&format!("{base}?label=%22dog%2C%20cat%22"))
        .await
        .unwrap();
    until(&c, "facets with a label holding a comma", "document.body.dataset.facetScope === 'filters' && document.getElementById('facet-total').textContent.startsWith('0 records') && [...document.querySelectorAll('#label-list input:checked')].map(i => i.dataset.value).join('|') === 'dog, cat'").await;
    click(&c, Locator::Css("#label-list input:checked")).await;
    until(&c, "the quoted label removed", &format!("document.getElementById('facet-total').textContent === {whole_total} && !location.search.includes('label')")).await;

    // The other filter controls. The scenes' capture dates span five years, more than 36
    // months: the captured histogram has a bar per year, empty years included, each counting
    // that year's scenes.
    let mut per_year = std::collections::BTreeMap::<i32, usize>::new();
    for s in &fx.synth.scenes {
        *per_year.entry(s.captured.year()).or_default() += 1;
    }
    let (first, last) = (
        *per_year.keys().next().unwrap(),
        *per_year.keys().last().unwrap(),
    );
    let want: Vec<String> = (first..=last)
        .map(|y| {
            let n = per_year.get(&y).copied().unwrap_or(0);
            // the title for the pointer, the bar's own text as its accessible name (no aria-label)
            format!("{y}: {n} | captured {y}: {n} records | false")
        })
        .collect();
    let bars = until(&c, "a bar per year", "(() => { const h = document.querySelector('#date-list .histogram[data-axis=captured]'); return h && h.getAttribute('aria-label') === 'captured per year' && [...h.querySelectorAll('button.bar')].map(b => `${b.title} | ${b.textContent} | ${b.hasAttribute('aria-label')}`); })()").await;
    assert_eq!(bars, serde_json::json!(want));
    // By keyboard, as a person without a mouse: Tab from the "to" date reaches the histogram
    // (one bar in the tab order), Home and the arrow keys move to the fullest year, Enter sets
    // the range to it. The count becomes the year's, the address holds the range, and the
    // focus stays on the histogram drawn anew.
    let (year, count) = per_year.iter().max_by_key(|(y, n)| (**n, -**y)).unwrap();
    // (A date input takes a Tab per field of its date: month, day, year.)
    js(
        &c,
        "document.querySelector('#date-list input[aria-label=\"captured to\"]').focus() || true",
    )
    .await;
    let mut tabs = 0;
    while js(
        &c,
        "document.activeElement.closest('.histogram')?.dataset.axis ?? null",
    )
    .await
        != "captured"
    {
        tabs += 1;
        assert!(
            tabs <= 4,
            "Tab from the date inputs does not reach the histogram"
        );
        press(&c, '\u{E004}').await; // Tab
    }
    press(&c, '\u{E011}').await; // Home
    for _ in first..*year {
        press(&c, '\u{E014}').await; // ArrowRight
    }
    assert_eq!(
        js(&c, "document.activeElement.title").await,
        format!("{year}: {count}")
    );
    press(&c, '\u{E007}').await; // Enter
    until(&c, "the year's records", &format!("document.getElementById('facet-total').textContent.startsWith('{count} record') && location.search.includes('captured_after={year}-01-01') && location.search.includes('captured_before={year}-12-31') && document.activeElement.closest('.histogram')?.dataset.axis === 'captured'")).await;
    // Within one year the bars are months (first to last month holding scenes); a month's bar
    // sets the range to that month.
    let mut per_month = std::collections::BTreeMap::<u32, usize>::new();
    for s in fx
        .synth
        .scenes
        .iter()
        .filter(|s| s.captured.year() == *year)
    {
        *per_month.entry(s.captured.month()).or_default() += 1;
    }
    let (m0, m1) = (
        *per_month.keys().next().unwrap(),
        *per_month.keys().last().unwrap(),
    );
    let want: Vec<String> = (m0..=m1)
        .map(|m| {
            let n = per_month.get(&m).copied().unwrap_or(0);
            format!("{year}-{m:02}: {n} | captured {year}-{m:02}: {n} records | false")
        })
        .collect();
    let bars = until(&c, "a bar per month of the year", "(() => { const h = document.querySelector('#date-list .histogram[data-axis=captured]'); return h && h.getAttribute('aria-label') === 'captured per month' && [...h.querySelectorAll('button.bar')].map(b => `${b.title} | ${b.textContent} | ${b.hasAttribute('aria-label')}`); })()").await;
    assert_eq!(bars, serde_json::json!(want));
    let (month, count) = per_month
        .iter()
        .max_by_key(|(m, n)| (**n, -(**m as i64)))
        .unwrap();
    let month = format!("{year}-{month:02}");
    click(
        &c,
        Locator::Css(&format!("#date-list button.bar[title='{month}: {count}']")),
    )
    .await;
    until(&c, "the month's records", &format!("document.getElementById('facet-total').textContent.startsWith('{count} record') && location.search.includes('captured_after={month}-01')")).await;
    click(&c, Locator::Id("clear-filters")).await;
    until(&c, "the filters cleared", &format!("document.getElementById('facet-total').textContent === {whole_total} && !location.search.includes('captured')")).await;
    // The date inputs beside the histogram (set as the date picker leaves them): the scenes
    // captured from the middle of that year on, then up to the end of the next.
    let from = chrono::NaiveDate::from_ymd_opt(*year, 7, 1).unwrap();
    let to = chrono::NaiveDate::from_ymd_opt(*year + 1, 12, 31).unwrap();
    let since = fx
        .synth
        .scenes
        .iter()
        .filter(|s| s.captured.date_naive() >= from)
        .count();
    let between = fx
        .synth
        .scenes
        .iter()
        .filter(|s| (from..=to).contains(&s.captured.date_naive()))
        .count();
    let set_date = |label: &str, value: &str| {
        format!(
            "(() => {{ const i = document.querySelector('#date-list input[aria-label=\"{label}\"]'); i.value = '{value}'; i.dispatchEvent(new Event('change', {{ bubbles: true }})); return true; }})()"
        )
    };
    js(&c, &set_date("captured from", &from.to_string())).await;
    until(&c, "captured since the date", &format!("document.getElementById('facet-total').textContent.startsWith('{since} record') && location.search.includes('captured_after={from}')")).await;
    js(&c, &set_date("captured to", &to.to_string())).await;
    until(&c, "captured between the dates", &format!("document.getElementById('facet-total').textContent.startsWith('{between} record') && location.search.includes('captured_before={to}')")).await;
    click(&c, Locator::Id("clear-filters")).await;
    until(&c, "the dates cleared", &format!("document.getElementById('facet-total').textContent === {whole_total} && !location.search.includes('captured')")).await;
    // "not" beside a label excludes it: no car is counted, and the count is the rest.
    let cars: u64 = js(
        &c,
        "document.querySelector('#label-list li[data-value=car] .count').textContent",
    )
    .await
    .as_str()
    .unwrap()
    .parse()
    .unwrap();
    let whole: u64 = whole_total
        .as_str()
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    click(
        &c,
        Locator::Css("#label-list input[data-kind=no-label][data-value=car]"),
    )
    .await;
    until(&c, "cars excluded", &format!("document.getElementById('facet-total').textContent.startsWith('{} record') && location.search.includes('no_label=car') && (document.querySelector('#label-list li[data-value=car] .count')?.textContent ?? '0') === '0'", whole - cars)).await;
    click(
        &c,
        Locator::Css("#label-list input[data-kind=no-label][data-value=car]"),
    )
    .await;
    // The dataset list (one dataset here: ticking it keeps every record) and the file-name
    // filter (a glob: the scenes named IMG_*).
    click(&c, Locator::Css("#dataset-list input[data-value=synth]")).await;
    until(&c, "the dataset ticked", &format!("document.getElementById('facet-total').textContent === {whole_total} && location.search.includes('dataset=synth') && !location.search.includes('no_label')")).await;
    click(&c, Locator::Css("#dataset-list input[data-value=synth]")).await;
    let named = fx
        .synth
        .scenes
        .iter()
        .filter(|s| s.file_name.starts_with("IMG_"))
        .count();
    type_into(&c, "f-filename", "IMG_*\u{E004}").await;
    until(&c, "the file-name filter", &format!("document.getElementById('facet-total').textContent.startsWith('{named} record') && location.search.includes('filename=IMG_')")).await;
    clear(&c, "f-filename").await;
    click(&c, Locator::Id("clear-filters")).await;
    until(&c, "every filter cleared", &format!("document.getElementById('facet-total').textContent === {whole_total} && !location.search.includes('filename') && !location.search.includes('dataset')")).await;

    // An image search counts over its own candidates too: the page posts the image with the
    // facets as it posts it with the search.
    c.goto(&base).await.unwrap();
    until(&c, "facets over the filters again", "document.body.dataset.facetScope === 'filters' && document.getElementById('facet-total').textContent").await;
    let image = fx.synth.images.join(&fx.synth.scenes[0].file_name);
    type_into(&c, "image-file", image.to_str().unwrap()).await;
    let image_total = until(&c, "facets over the image search's candidates", "document.body.dataset.facetScope === 'query' && document.getElementById('facet-total').textContent").await;
    assert!(
        image_total
            .as_str()
            .unwrap()
            .contains("among the top 1000 for “more like this image”"),
        "{image_total}"
    );
    until(
        &c,
        "results for the image",
        "document.querySelectorAll('#results .card').length > 0",
    )
    .await;
    // An image search exports as a text search does: the page sends the image with the
    // export request. CSV in a tar, at most 3: the image search's first 3 cards, and the
    // manifest names the uploaded image by its sha256.
    let first_cards = js(
        &c,
        "[...document.querySelectorAll('#results .card')].slice(0, 3).map(c => c.dataset.id)",
    )
    .await;
    click(&c, Locator::Id("export-search")).await;
    until(
        &c,
        "the image search's export dialog",
        "document.getElementById('export-dialog').open && document.getElementById('export-what').textContent.includes('more like the image')",
    )
    .await;
    js(&c, "(() => { document.getElementById('export-format').value = 'csv'; document.getElementById('export-archive').value = 'tar'; document.getElementById('export-max').value = '3'; return true; })()").await;
    click(&c, Locator::Id("export-ok")).await;
    let archive = downloaded(&chromium::downloads(&profile(&fx)), "search-csv").await;
    let mut tar = tar::Archive::new(std::fs::File::open(&archive).unwrap());
    let provenance: Value = tar
        .entries()
        .unwrap()
        .map(Result::unwrap)
        .find(|e| e.path().unwrap().to_string_lossy() == "provenance.json")
        .map(|e| serde_json::from_reader(e).unwrap())
        .expect("provenance.json in the archive");
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(std::fs::read(&image).unwrap()))
    };
    assert_eq!(
        provenance["source"]["image_sha256"],
        sha.as_str(),
        "{provenance}"
    );
    let exported: Vec<&str> = provenance["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    let first_cards: Vec<&str> = first_cards
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(exported, first_cards, "{provenance}");

    // Dropping an image anywhere on the search view searches by it, as choosing one does: the
    // image of a card, dropped (a real File in a DataTransfer, through the page's drop
    // handler), comes back first. The last card's, so that the answer differs from the image
    // search before it.
    let dropped = js(
        &c,
        "[...document.querySelectorAll('#results .card')].pop().dataset.id",
    )
    .await;
    let dropped = dropped.as_str().unwrap().to_owned();
    assert_ne!(
        js(&c, "document.querySelector('#results .card').dataset.id").await,
        dropped.as_str(),
        "the last card is not already first"
    );
    js(&c, &format!("(async () => {{ const blob = await (await fetch('/v1/records/{dropped}/image')).blob(); const t = new DataTransfer(); t.items.add(new File([blob], 'dropped.jpg', {{ type: blob.type }})); const view = document.getElementById('search-view'); view.dispatchEvent(new DragEvent('dragover', {{ dataTransfer: t, bubbles: true, cancelable: true }})); view.dispatchEvent(new DragEvent('drop', {{ dataTransfer: t, bubbles: true, cancelable: true }})); return blob.type; }})()")).await;
    until(&c, "results for the dropped image", &format!("document.querySelector('#results .card')?.dataset.id === '{dropped}' && document.body.dataset.facetScope === 'query' && document.getElementById('facet-total').textContent.includes('more like this image')")).await;

    // At 390 px wide the page still works: search view, filters above the grid.
    click(&c, Locator::Id("tab-search")).await;
    c.set_window_size(390, 844).await.unwrap();
    until(
        &c,
        "cards at 390 px",
        "document.querySelectorAll('#results .card').length > 0",
    )
    .await;
    let overflow = js(
        &c,
        "document.documentElement.scrollWidth <= window.innerWidth + 1",
    )
    .await;
    assert_eq!(overflow, true, "the page scrolls sideways at 390 px");
    screenshot(&c, "search-390").await;
    contrast_meets_aa(&c, "search-390").await;
    c.set_window_size(1280, 900).await.unwrap();

    // Sign out revokes the session on the server: the old cookie, put back, no longer works.
    let old = c.get_named_cookie("imagelens_session").await.unwrap();
    click(&c, Locator::Id("sign-out")).await;
    until(
        &c,
        "signed out",
        "!document.getElementById('signin-view').hidden",
    )
    .await;
    assert!(c.get_named_cookie("imagelens_session").await.is_err());
    c.add_cookie(old).await.unwrap();
    c.refresh().await.unwrap();
    until(&c, "a revoked session gets the sign-in page", "!document.getElementById('signin-view').hidden && document.getElementById('signin-error').textContent.includes('revoked')").await;

    // The auditor: no search, the audit view lists the curator's reads and verifies.
    sign_in(&c, "aud", "review").await;
    until(
        &c,
        "the audit view",
        "!document.getElementById('audit-view').hidden",
    )
    .await;
    assert_eq!(
        js(&c, "document.getElementById('tab-search').hidden").await,
        true
    );
    until(
        &c,
        "the trail verified",
        "document.getElementById('verify-status').textContent.startsWith('Verified')",
    )
    .await;
    until(&c, "the curator's reads in the trail", "[...document.querySelectorAll('#trail-table tbody tr')].some(r => r.dataset.action === 'view_thumbnail' && r.textContent.includes('cur (curator)') && r.textContent.includes('web test'))").await;
    screenshot(&c, "audit-1280").await;
    contrast_meets_aa(&c, "audit-1280").await;
    at_390_px(&c, "audit-390").await;
    // A look-up by glob, then the original image, which says it is recorded.
    // By the annotation tool's image id: this COCO-made library has none, so none matches.
    let source = c.find(Locator::Id("lk-source")).await.unwrap();
    source.send_keys("input-404\u{E007}").await.unwrap();
    until(
        &c,
        "the look-up by tool id",
        "document.getElementById('lookup-status').textContent.startsWith('0 record(s) match')",
    )
    .await;
    source.clear().await.unwrap();
    type_into(&c, "lk-filename", "*.jpg\u{E007}").await;
    until(
        &c,
        "look-up results",
        "document.querySelectorAll('#lookup-table tbody tr').length > 0",
    )
    .await;
    click(
        &c,
        Locator::Css("#lookup-table tbody tr:first-child button"),
    )
    .await;
    until(
        &c,
        "the record for the auditor",
        "document.querySelector('#record-frame img')?.complete",
    )
    .await;
    click(&c, Locator::Id("record-original")).await;
    until(&c, "the original, recorded", "document.getElementById('record-notice').textContent.includes('recorded in the audit trail (unredacted)')").await;
    c.close().await.unwrap();
}

/// In-page function `(container, label)`: the detail (mean absolute difference of the grey level
/// between neighbouring pixels) inside the first `label` box of `container`'s overlay that no
/// later box covers, one pixel in from its edges, on `container`'s image at its own resolution;
/// `null` until the image and its boxes are there (or without such a box). The generated
/// scenes paint each object with pixel-to-pixel noise, which pixelating and blurring remove.
const TEXTURE: &str = r#"((container, label) => {
  const img = container && container.querySelector('img');
  const svg = container && container.querySelector('svg.boxes');
  if (!img || !svg || !img.complete || !img.naturalWidth) return null;
  const [, , W, H] = svg.getAttribute('viewBox').split(' ').map(Number);
  const boxes = [...svg.querySelectorAll('g.box > rect')].map((r) => ({
    label: r.parentNode.dataset.label,
    x: +r.getAttribute('x'), y: +r.getAttribute('y'),
    w: +r.getAttribute('width'), h: +r.getAttribute('height'),
  }));
  const over = (a, b) => a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
  const i = boxes.findIndex((b, i) => b.label === label && !boxes.slice(i + 1).some((o) => over(b, o)));
  if (i < 0) return null;
  const b = boxes[i];
  const sx = img.naturalWidth / W, sy = img.naturalHeight / H;
  const x0 = Math.ceil(b.x * sx) + 1, y0 = Math.ceil(b.y * sy) + 1;
  const x1 = Math.floor((b.x + b.w) * sx) - 1, y1 = Math.floor((b.y + b.h) * sy) - 1;
  if (x1 - x0 < 4 || y1 - y0 < 4) return null;
  const canvas = document.createElement('canvas');
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const g = canvas.getContext('2d');
  g.drawImage(img, 0, 0);
  const w = x1 - x0, h = y1 - y0;
  const d = g.getImageData(x0, y0, w, h).data;
  const grey = (x, y) => { const k = 4 * (y * w + x); return 0.299 * d[k] + 0.587 * d[k + 1] + 0.114 * d[k + 2]; };
  let sum = 0, n = 0;
  for (let y = 0; y + 1 < h; y++) {
    for (let x = 0; x + 1 < w; x++) {
      sum += Math.abs(grey(x + 1, y) - grey(x, y)) + Math.abs(grey(x, y + 1) - grey(x, y));
      n += 2;
    }
  }
  return sum / n;
})"#;

/// In-page expression: the visible text on the page with the lowest WCAG 2 contrast ratio
/// against what it is drawn on, relative to what WCAG AA asks of it (4.5:1, or 3:1 for large
/// text: 24 px, or 18.66 px bold), as `{ratio, need, what}`. The background is the nearest
/// ancestor's opaque background colour; disabled controls are left out, as WCAG does. The box
/// labels drawn in SVG over the pictures are left out too: their background is the photo (they
/// carry a black outline for it), for which a ratio is not defined.
const CONTRAST: &str = r#"(() => {
  const parse = (c) => {
    const m = c.match(/rgba?\(([^)]+)\)/);
    if (!m) return null;
    const p = m[1].split(',').map(Number);
    return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
  };
  const lum = ({ r, g, b }) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const behind = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c.a > 0.5) return c;
    }
    return { r: 255, g: 255, b: 255, a: 1 };
  };
  let worst = { ratio: 99, need: 4.5, what: 'no text' };
  for (const el of document.querySelectorAll('body *')) {
    const style = getComputedStyle(el);
    if (el instanceof SVGElement || el.disabled || !el.getClientRects().length || style.visibility === 'hidden') continue;
    if (![...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
    const fg = parse(style.color);
    if (!fg) continue;
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
    const need = large ? 3 : 4.5;
    const l1 = lum(fg), l2 = lum(behind(el));
    const ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
    if (ratio / need < worst.ratio / worst.need) {
      worst = { ratio, need, what: `${el.tagName.toLowerCase()}#${el.id}.${el.className}: ${el.textContent.trim().slice(0, 40)}` };
    }
  }
  return worst;
})()"#;

/// At 390 px wide (a phone) the view as it is shown does not scroll sideways and its text
/// meets WCAG AA contrast; the window is 1280 x 900 again afterwards.
async fn at_390_px(c: &Client, view: &str) {
    c.set_window_size(390, 844).await.unwrap();
    // Wait for the layout at the new width before measuring it.
    until(c, "the narrow window", "window.innerWidth <= 400").await;
    let wide = js(c, "(() => { const w = window.innerWidth; return [...document.querySelectorAll('body *')].filter(e => e.getClientRects().length && e.getBoundingClientRect().right > w + 1).slice(0, 5).map(e => `${e.tagName.toLowerCase()}#${e.id}.${e.className} ${Math.round(e.getBoundingClientRect().right)} > ${w}`); })()").await;
    let sideways = js(
        c,
        "document.documentElement.scrollWidth > window.innerWidth + 1",
    )
    .await;
    assert_eq!(
        sideways, false,
        "{view}: the page scrolls sideways at 390 px: {wide}"
    );
    screenshot(c, view).await;
    contrast_meets_aa(c, view).await;
    c.set_window_size(1280, 900).await.unwrap();
    until(c, "the wide window", "window.innerWidth > 1000").await;
}

/// The page's lowest text contrast meets WCAG AA (see [`CONTRAST`]); `view` names the view.
async fn contrast_meets_aa(c: &Client, view: &str) {
    let worst = js(c, CONTRAST).await;
    let (ratio, need) = (
        worst["ratio"].as_f64().unwrap(),
        worst["need"].as_f64().unwrap(),
    );
    eprintln!(
        "{view}: lowest contrast {ratio:.2}:1 (AA asks {need}:1) at {}",
        worst["what"]
    );
    assert!(
        ratio >= need,
        "{view}: contrast {ratio:.2}:1 below {need}:1 at {worst}"
    );
}

/// With `person` a sensitive label: the searcher's thumbnail and record view show the person
/// obscured, the auditor's record view too, and the original the auditor asks for (which the
/// trail records) shows it intact; measured on the pixels the browser drew from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sensitive_box_is_blurred_for_a_searcher_and_intact_in_an_auditors_original() {
    let Some((chromium, driver)) = browser_or_skip() else {
        return;
    };
    let (fx, _server, addr, admin) =
        served(40, Some("[privacy]\nsensitive_labels = [\"person\"]\n"));
    let (_driver, c, base) = open_browser(&fx, &chromium, &driver, addr).await;
    c.goto(&base).await.unwrap();
    sign_in(&c, "see", "blur test").await;

    // The Not field: its comma-separated texts push results away, the address keeps them,
    // and every card whose labels hold one says it was pushed down by it.
    type_into(&c, "q", "dog").await;
    type_into(&c, "not", "cat, boat\u{E007}").await;
    until(&c, "a search with negatives", "document.querySelectorAll('#results .card').length > 0 && location.search.includes('not=cat')").await;
    let pushed = js(&c, "(() => { let pushed = 0; for (const li of document.querySelectorAll('#results .card')) { const alt = li.querySelector('img').alt; const labels = alt.slice(alt.lastIndexOf('(') + 1, -1).split(', '); const why = li.querySelector('.why')?.textContent ?? ''; for (const n of ['cat', 'boat']) { if (labels.includes(n)) { if (!(why.includes('pushed down by') && why.includes(n))) return `${alt}: ${why}`; pushed += 1; } } } return pushed; })()").await;
    assert!(
        pushed.as_u64().is_some_and(|n| n > 0),
        "cards holding a negative's label say so, and some do: {pushed}"
    );
    c.goto(&format!("{base}?q=person")).await.unwrap();
    let found = until(
        &c,
        "a thumbnail with a person in view",
        &format!(
            "(() => {{ for (const li of document.querySelectorAll('#results .card')) {{ \
               const s = {TEXTURE}(li, 'person'); \
               if (s !== null) return {{ id: li.dataset.id, name: li.querySelector('.name').textContent, s }}; \
             }} return null; }})()"
        ),
    )
    .await;
    let thumbnail = found["s"].as_f64().unwrap();
    let name = found["name"].as_str().unwrap().to_owned();
    let id = found["id"].as_str().unwrap().to_owned();
    // The record view's full-size image is obscured for the searcher too.
    click(
        &c,
        Locator::Css(&format!("#results .card[data-id='{id}'] .open")),
    )
    .await;
    let searcher_full = until(
        &c,
        "the searcher's record view",
        &format!("{TEXTURE}(document.getElementById('record-frame'), 'person')"),
    )
    .await
    .as_f64()
    .unwrap();
    screenshot(&c, "record-redacted-1280").await;

    // The auditor finds the same file by name; the view is obscured until the original is
    // asked for.
    click(&c, Locator::Id("record-close")).await;
    click(&c, Locator::Id("sign-out")).await;
    sign_in(&c, "aud", "blur review").await;
    until(
        &c,
        "the audit view",
        "!document.getElementById('audit-view').hidden",
    )
    .await;
    type_into(&c, "lk-filename", &format!("{name}\u{E007}")).await;
    until(
        &c,
        "the look-up of the file",
        "document.querySelectorAll('#lookup-table tbody tr').length === 1",
    )
    .await;
    click(
        &c,
        Locator::Css("#lookup-table tbody tr:first-child button"),
    )
    .await;
    let auditor_view = until(
        &c,
        "the auditor's record view",
        &format!("{TEXTURE}(document.getElementById('record-frame'), 'person')"),
    )
    .await
    .as_f64()
    .unwrap();
    click(&c, Locator::Id("record-original")).await;
    until(&c, "the original, recorded", "document.getElementById('record-notice').textContent.includes('recorded in the audit trail (unredacted)')").await;
    let original = until(
        &c,
        "the original's pixels",
        &format!("{TEXTURE}(document.getElementById('record-frame'), 'person')"),
    )
    .await
    .as_f64()
    .unwrap();
    screenshot(&c, "record-original-1280").await;
    eprintln!(
        "person box detail: searcher thumbnail {thumbnail:.2}, searcher view {searcher_full:.2}, \
         auditor view {auditor_view:.2}, auditor original {original:.2}"
    );
    assert!(
        original > 2.0,
        "the person is drawn with detail ({original})"
    );
    for (what, spread) in [
        ("the searcher's thumbnail", thumbnail),
        ("the searcher's record view", searcher_full),
        ("the auditor's record view", auditor_view),
    ] {
        assert!(
            spread < original / 3.0,
            "{what} is obscured: detail {spread} against the original's {original}"
        );
    }

    // Signing in with an API token instead of a password: a wrong one is refused on the
    // page, the admin's own opens the page as the admin (whose role sees the audit view).
    click(&c, Locator::Id("record-close")).await;
    click(&c, Locator::Id("sign-out")).await;
    until(
        &c,
        "the sign-in form",
        "!document.getElementById('signin-view').hidden",
    )
    .await;
    click(&c, Locator::Css("#signin-view details summary")).await;
    for (token, signed_in) in [("il_not_a_token", false), (admin.as_str(), true)] {
        type_into(&c, "token-input", &format!("{token}\u{E007}")).await;
        if signed_in {
            until(&c, "signed in with the token", "!document.getElementById('who').hidden && document.getElementById('who-name').textContent.includes('boss') && !document.getElementById('tab-audit').hidden").await;
        } else {
            until(&c, "the token refused", "document.getElementById('signin-error').textContent.includes('does not work') && document.getElementById('who').hidden").await;
        }
    }

    // The audit view's other controls, as the admin: look-ups by file-name prefix and by a
    // captured-date range count what the generated scenes say, and the trail's actor and
    // action fields filter its entries.
    click(&c, Locator::Id("tab-audit")).await;
    until(&c, "the audit view, verified", "!document.getElementById('audit-view').hidden && document.getElementById('verify-status').textContent.startsWith('Verified')").await;
    // From here to the record view below, every call the page makes is noted (method, address,
    // body) beside the trail entries it leaves, to be made again as an API caller below.
    let trail = fx.data.join("audit").join("trail.jsonl");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let first_of_page = trail_entries(&trail).len();
    js(&c, "(() => { window.pageCalls = []; const f = window.fetch; window.fetch = (input, init) => { const i = init || {}; window.pageCalls.push({ method: i.method || 'GET', path: String(input), body: typeof i.body === 'string' ? i.body : (i.body ? 'not text' : null) }); return f(input, init); }; return true; })()").await;
    let scenes = &fx.synth.scenes;
    let prefixed = scenes
        .iter()
        .filter(|s| s.file_name.starts_with("IMG_"))
        .count();
    let (from, to) = (
        chrono::NaiveDate::from_ymd_opt(2021, 1, 1).unwrap(),
        chrono::NaiveDate::from_ymd_opt(2022, 12, 31).unwrap(),
    );
    let in_range = scenes
        .iter()
        .filter(|s| (from..=to).contains(&s.captured.date_naive()))
        .count();
    assert!(
        prefixed > 0 && in_range > 0 && in_range < scenes.len(),
        "{prefixed} {in_range}"
    );
    clear(&c, "lk-filename").await;
    type_into(&c, "lk-prefix", "IMG_\u{E007}").await;
    until(&c, "the prefix look-up", &format!("document.getElementById('lookup-status').textContent.startsWith('{prefixed} record(s) match') && [...document.querySelectorAll('#lookup-table tbody tr td:first-child')].every(td => td.textContent.split('/').pop().startsWith('IMG_'))")).await;
    clear(&c, "lk-prefix").await;
    // Date inputs take their value as the date picker leaves it (typing into one depends on
    // the browser's locale).
    js(&c, "(() => { document.getElementById('lk-axis').value = 'captured'; document.getElementById('lk-after').value = '2021-01-01'; document.getElementById('lk-before').value = '2022-12-31'; return true; })()").await;
    click(&c, Locator::Css("#lookup-form button[type=submit]")).await;
    until(&c, "the captured-date look-up", &format!("document.getElementById('lookup-status').textContent.startsWith('{in_range} record(s) match') && [...document.querySelectorAll('#lookup-table tbody tr td:nth-child(3)')].every(td => td.textContent >= '2021' && td.textContent < '2023')")).await;
    type_into(&c, "tr-actor", "see\u{E007}").await;
    until(&c, "the searcher's entries", "document.querySelectorAll('#trail-table tbody tr').length > 0 && [...document.querySelectorAll('#trail-table tbody tr td:nth-child(3)')].every(td => td.textContent.startsWith('see ('))").await;
    clear(&c, "tr-actor").await;
    type_into(&c, "tr-action", "search\u{E007}").await;
    until(&c, "the searches", "document.querySelectorAll('#trail-table tbody tr').length > 0 && [...document.querySelectorAll('#trail-table tbody tr')].every(tr => tr.dataset.action === 'search')").await;

    // A search, its thumbnails and facets, and a record opened with its full-size image, in
    // the same window.
    click(&c, Locator::Id("tab-search")).await;
    type_into(&c, "q", "dog\u{E007}").await;
    until(&c, "the search's thumbnails, all painted", "document.querySelectorAll('#results .card').length > 0 && [...document.querySelectorAll('#results .card img')].every(i => i.complete && i.src.startsWith('blob:'))").await;
    let first = js(&c, "document.querySelector('#results .card').dataset.id").await;
    click(
        &c,
        Locator::Css(&format!(
            "#results .card[data-id='{}'] .open",
            first.as_str().unwrap()
        )),
    )
    .await;
    until(&c, "the record view's image", "(() => { const i = document.querySelector('#record-frame img'); return !!i && i.complete && i.naturalWidth > 0; })()").await;
    click(&c, Locator::Id("record-close")).await;

    // The page's reads leave the entries an API caller's same reads leave: the calls it made
    // above (look-ups, trail queries, a search with its facets and thumbnails, a record and
    // its image), made again with the admin's token and the page's purpose, append the same
    // entries (actor, role, action, purpose, query, records, outcome, unredacted, detail).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let calls = js(&c, "window.pageCalls").await;
    let purpose = js(&c, "sessionStorage.getItem('imagelens.purpose') || ''").await;
    let from_page = trail_entries(&trail)[first_of_page..].to_vec();
    let calls = calls.as_array().unwrap();
    assert!(
        calls.len() >= 4,
        "the look-ups and trail queries: {calls:?}"
    );
    for read in ["/v1/search", "/thumbnail", "/image"] {
        assert!(
            calls
                .iter()
                .any(|c| c["path"].as_str().unwrap().contains(read)),
            "the page read {read}: {calls:?}"
        );
    }
    for call in calls {
        let (method, path) = (
            call["method"].as_str().unwrap(),
            call["path"].as_str().unwrap(),
        );
        assert!(call["body"].is_null() || method != "GET", "{call}");
        let status = api_call(
            addr,
            method,
            path,
            &admin,
            purpose.as_str().unwrap(),
            call["body"].as_str(),
        );
        assert_eq!(status, 200, "{method} {path} as an API caller");
    }
    let from_api = trail_entries(&trail)[first_of_page + from_page.len()..].to_vec();
    let comparable = |entries: &[Value]| -> Vec<String> {
        let mut v: Vec<String> = entries
            .iter()
            .map(|e| {
                let mut e = e.clone();
                for key in ["seq", "time", "prev", "hash", "address"] {
                    e.as_object_mut().unwrap().remove(key);
                }
                e.to_string()
            })
            .collect();
        v.sort();
        v
    };
    assert!(!from_page.is_empty());
    assert_eq!(
        comparable(&from_page),
        comparable(&from_api),
        "the page's entries against an API caller's for the same {} calls",
        calls.len()
    );

    // A trail edited behind the server's back (one purpose, same length) fails verification,
    // and the page says so.
    let text = std::fs::read_to_string(&trail).unwrap();
    assert!(
        text.contains("\"blur test\""),
        "the searcher's purpose is in the trail"
    );
    std::fs::write(&trail, text.replacen("\"blur test\"", "\"blur tesT\"", 1)).unwrap();
    click(&c, Locator::Id("tab-audit")).await;
    click(&c, Locator::Id("verify")).await;
    until(&c, "the failed verification", "document.getElementById('verify-status').className === 'error' && document.getElementById('verify-status').textContent.startsWith('Does not verify')").await;
    screenshot(&c, "audit-tampered-1280").await;
    c.close().await.unwrap();
}

/// The record view shows what the other export formats carry: a CVAT task's split, image id,
/// box and image attributes, outline and an annotation it could not place; an unpacked
/// Clarifai SDK export's negative concept ("not dog").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_record_view_shows_what_cvat_and_clarifai_exports_carry() {
    let Some((chromium, driver)) = browser_or_skip() else {
        return;
    };
    let (fx, _server, addr, _admin) = served_with(4, None, |fx| {
        let more = fx.dir.path().join("more");
        png(&more.join("images/street/a.png"), 200, 100);
        let cvat = more.join("cvat.xml");
        std::fs::write(
            &cvat,
            r#"<annotations><version>1.1</version>
  <meta><task><id>4</id><name>street</name></task></meta>
  <image id="0" name="street/a.png" width="200" height="100" subset="val">
    <box label="car" occluded="1" xtl="10" ytl="20" xbr="60" ybr="70"><attribute name="color">white</attribute></box>
    <polygon label="forklift" occluded="0" points="150,10;190,10;170,90"/>
    <box label="bicycle" occluded="0" xtl="x" ytl="20" xbr="60" ybr="70"/>
    <tag label="night"><attribute name="sky">Clear</attribute></tag>
  </image>
</annotations>"#,
        )
        .unwrap();
        let sdk = more.join("clarifai");
        png(&sdk.join("valid/inputs/in2.png"), 40, 30);
        std::fs::create_dir_all(sdk.join("valid/annotations")).unwrap();
        std::fs::write(
            sdk.join("valid/annotations/in2.json"),
            serde_json::to_vec(&json!([
                {"id": "harbour", "name": "harbour", "value": 1.0},
                {"id": "dog", "name": "dog"}
            ]))
            .unwrap(),
        )
        .unwrap();
        let images = more.join("images");
        for args in [
            vec![
                "--annotations",
                cvat.to_str().unwrap(),
                "--images",
                images.to_str().unwrap(),
                "--dataset",
                "cvat-task",
            ],
            vec![
                "--annotations",
                sdk.to_str().unwrap(),
                "--dataset",
                "clarifai-sdk",
            ],
        ] {
            let mut ingest = vec!["ingest"];
            ingest.extend(args);
            let out = fx.run(&ingest);
            assert!(out.status.success(), "{out:?}");
        }
    });
    let (_driver, c, base) = open_browser(&fx, &chromium, &driver, addr).await;
    c.goto(&base).await.unwrap();
    sign_in(&c, "cur", "record view").await;

    // Opens the result named `name` of the search `q`; returns its facts (term -> text) and
    // its annotation table's rows.
    async fn record_view(c: &Client, base: &str, q: &str, name: &str) -> (Value, Value) {
        c.goto(&format!("{base}?q={q}")).await.unwrap();
        let id = until(c, &format!("{name} among the results for {q}"), &format!("(() => {{ const li = [...document.querySelectorAll('#results .card')].find(li => li.querySelector('.name').textContent === '{name}'); return li ? li.dataset.id : null; }})()")).await;
        let id = id.as_str().unwrap().to_owned();
        click(
            c,
            Locator::Css(&format!("#results .card[data-id='{id}'] .open")),
        )
        .await;
        until(c, "the record view", &format!("document.getElementById('record-title').textContent === '{name}' && document.querySelectorAll('#record-facts dt').length > 0")).await;
        let facts = js(c, "Object.fromEntries([...document.querySelectorAll('#record-facts dt')].map(dt => [dt.textContent, dt.nextElementSibling.textContent]))").await;
        let rows = js(c, "[...document.querySelectorAll('#record-boxes tbody tr')].map(tr => [...tr.cells].map(td => td.textContent))").await;
        (facts, rows)
    }

    let (facts, rows) = record_view(&c, &base, "forklift", "a.png").await;
    assert_eq!(facts["Split"], "val", "{facts}");
    assert_eq!(facts["Source id"], "0", "{facts}");
    assert_eq!(facts["Image attributes"], "sky=Clear", "{facts}");
    assert_eq!(facts["Dataset"], "cvat-task", "{facts}");
    let unplaced = facts["Unplaced annotations"].as_str().unwrap_or_default();
    assert!(
        unplaced.contains("without readable coordinates") && unplaced.contains("(bicycle)"),
        "{facts}"
    );
    // Label (without the "(matched)" a matched box's label carries) and details per box: the
    // car's attributes, the forklift's outline.
    let details: Vec<(String, String)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r[1].as_str()
                    .unwrap()
                    .trim_end_matches(" (matched)")
                    .to_owned(),
                r[5].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        details,
        [
            ("car".to_owned(), "color=white, occluded=true".to_owned()),
            (
                "forklift".to_owned(),
                "shape=polygon, outline of 3 points".to_owned()
            ),
        ],
        "{rows}"
    );
    // Long facts and the six-column table stay inside the dialog (no sideways scroll).
    let overflow = js(&c, "(() => { const d = document.getElementById('record-dialog'); return d.scrollWidth - d.clientWidth; })()").await;
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "the record dialog scrolls sideways by {overflow} px"
    );
    screenshot(&c, "record-cvat-1280").await;
    click(&c, Locator::Id("record-close")).await;

    let (facts, _) = record_view(&c, &base, "harbour", "in2.png").await;
    assert_eq!(facts["Not present"], "not dog", "{facts}");
    assert_eq!(facts["Labels"], "harbour", "{facts}");
    assert_eq!(facts["Split"], "valid", "{facts}");
    assert_eq!(facts["Source id"], "in2", "{facts}");
    c.close().await.unwrap();
}

/// The audit trail's entries as stored, in order.
fn trail_entries(trail: &Path) -> Vec<Value> {
    std::fs::read_to_string(trail)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Makes one API call as a client other than the page would (a bearer token, `X-Purpose`, a
/// JSON body when given) and returns the status.
fn api_call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    purpose: &str,
    body: Option<&str>,
) -> u16 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         X-Purpose: {purpose}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    // Images come back too: read bytes, the status line is ASCII.
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"))
}

/// The file named `prefix...` once the browser has finished saving it under `dir` (30 s).
async fn downloaded(dir: &Path, prefix: &str) -> std::path::PathBuf {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let names: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
            .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        let busy = names.iter().any(|p| {
            p.extension()
                .is_some_and(|e| e == "crdownload" || e == "tmp")
        });
        if !busy
            && let Some(done) = names.iter().find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
            })
        {
            return done.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no download {prefix}* in {}: {names:?}",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A COCO zip the page downloaded from `collection`: `records` images (each the file the
/// provenance manifest names, with its sha256 unless it says the image was redacted), their
/// annotations, and the manifest naming the account that asked.
fn check_export(archive: &Path, records: usize, account: &str, collection: &str) {
    use sha2::Digest;
    let mut zip = zip::ZipArchive::new(std::fs::File::open(archive).unwrap()).unwrap();
    let mut bytes = |name: &str| -> Vec<u8> {
        let mut entry = zip
            .by_name(name)
            .unwrap_or_else(|e| panic!("{name} in {}: {e}", archive.display()));
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut out).unwrap();
        out
    };
    let provenance: Value = serde_json::from_slice(&bytes("provenance.json")).unwrap();
    assert_eq!(provenance["requested_by"], account, "{provenance}");
    assert_eq!(
        provenance["source"]["collection"], collection,
        "{provenance}"
    );
    let listed = provenance["records"].as_array().expect("records listed");
    assert_eq!(listed.len(), records, "{provenance}");
    for r in listed {
        let image = bytes(&format!("images/{}", r["path"].as_str().unwrap()));
        if r["redacted"] != true {
            assert_eq!(
                hex::encode(sha2::Sha256::digest(&image)),
                r["sha256"].as_str().unwrap(),
                "{r}"
            );
        }
    }
    let names: Vec<String> = zip.file_names().map(str::to_owned).collect();
    let annotations = names
        .iter()
        .find(|n| n.ends_with(".json") && n.as_str() != "provenance.json")
        .unwrap_or_else(|| panic!("an annotation file: {names:?}"))
        .clone();
    let coco: Value = serde_json::from_reader(zip.by_name(&annotations).unwrap()).unwrap();
    assert_eq!(coco["images"].as_array().unwrap().len(), records, "{coco}");
    assert!(
        !coco["annotations"].as_array().unwrap().is_empty(),
        "{coco}"
    );
}

/// Clicks `element` with Shift held, as a person would (WebDriver key and pointer actions in
/// step: Shift down, move, press, release, Shift up).
async fn shift_click(c: &Client, element: &fantoccini::elements::Element) {
    use fantoccini::actions::{MOUSE_BUTTON_LEFT, MouseActions, PointerAction};
    let pause = Duration::from_millis(0);
    let keys = KeyActions::new("keyboard".into())
        .then(KeyAction::Down { value: '\u{E008}' })
        .then(KeyAction::Pause { duration: pause })
        .then(KeyAction::Pause { duration: pause })
        .then(KeyAction::Pause { duration: pause })
        .then(KeyAction::Up { value: '\u{E008}' });
    let mouse = MouseActions::new("mouse".into())
        .then(PointerAction::Pause { duration: pause })
        .then(PointerAction::MoveToElement {
            element: element.clone(),
            duration: None,
            x: 0.0,
            y: 0.0,
        })
        .then(PointerAction::Down {
            button: MOUSE_BUTTON_LEFT,
        })
        .then(PointerAction::Up {
            button: MOUSE_BUTTON_LEFT,
        })
        .then(PointerAction::Pause { duration: pause });
    c.perform_actions(fantoccini::actions::Actions::from(keys).and(mouse))
        .await
        .unwrap();
    c.release_actions().await.unwrap();
}

/// Types `text` into the field with id `id` (which must be there), as a person would.
async fn type_into(c: &Client, id: &str, text: &str) {
    c.find(Locator::Id(id))
        .await
        .unwrap()
        .send_keys(text)
        .await
        .unwrap();
}

/// Empties the field with id `id`.
async fn clear(c: &Client, id: &str) {
    c.find(Locator::Id(id))
        .await
        .unwrap()
        .clear()
        .await
        .unwrap();
}

/// Clicks the element at `at` (which must be there). The facet lists are drawn again when
/// each answer arrives: an element found just before that is gone when clicked, so a click on
/// a stale element finds it again (a few times).
async fn click(c: &Client, at: Locator<'_>) {
    for attempt in 0.. {
        match c.find(at).await.unwrap().click().await {
            Ok(()) => return,
            Err(fantoccini::error::CmdError::Standard(e))
                if e.error == fantoccini::error::ErrorStatus::StaleElementReference
                    && attempt < 5 =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("click {at:?}: {e}"),
        }
    }
}

/// Presses one key on whatever has the focus (WebDriver key actions, as a person would).
async fn press(c: &Client, key: char) {
    let keys = KeyActions::new("keyboard".into())
        .then(KeyAction::Down { value: key })
        .then(KeyAction::Up { value: key });
    c.perform_actions(keys).await.unwrap();
}

async fn location_has(c: &Client, part: &str) -> bool {
    js(c, &format!("location.search.includes({part:?})")).await == Value::Bool(true)
}
