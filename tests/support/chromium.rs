//! Headless Chromium through chromedriver, shared by the browser test (`tests/it/browser.rs`)
//! and the serve bench's first-paint mode (`benches/serve/first_paint.rs`), which include this
//! file with `#[path]`: finding the binaries, starting chromedriver, opening a session.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

/// A child process killed when dropped (a server, chromedriver).
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// Chromium and chromedriver, from `IMAGELENS_CHROMIUM` / `IMAGELENS_CHROMEDRIVER` or `PATH`.
pub fn browser() -> Option<(PathBuf, PathBuf)> {
    let chromium = std::env::var_os("IMAGELENS_CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| on_path(&["chromium", "chromium-browser", "google-chrome"]))?;
    let driver = std::env::var_os("IMAGELENS_CHROMEDRIVER")
        .map(PathBuf::from)
        .or_else(|| on_path(&["chromedriver"]))?;
    Some((chromium, driver))
}

/// A free loopback port.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts chromedriver on a free port and waits (30 s) until it listens.
pub fn start_driver(driver: &Path) -> std::io::Result<(Running, u16)> {
    let port = free_port()?;
    let running = Running(
        Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() >= deadline {
            return Err(std::io::Error::other("chromedriver did not listen"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((running, port))
}

/// Where a session made by [`connect`] with `profile` saves downloads.
pub fn downloads(profile: &Path) -> PathBuf {
    profile.join("downloads")
}

/// A headless Chromium session (1280 x 900, its profile in `profile`, downloads saved without
/// asking under [`downloads`]) through the chromedriver on `port`.
pub async fn connect(
    chromium: &Path,
    port: u16,
    profile: &Path,
) -> Result<Client, fantoccini::error::NewSessionError> {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium.display().to_string(),
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,900", "--force-device-scale-factor=1",
                format!("--user-data-dir={}", profile.display()),
            ],
            "prefs": {
                "download.default_directory": downloads(profile).display().to_string(),
                "download.prompt_for_download": false,
            },
        }),
    );
    ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
}

/// Whether a value from the page counts as true (JavaScript's truthiness, for what
/// `execute` returns).
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        _ => true,
    }
}
