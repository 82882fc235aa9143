//! [`QdrantProcess`]: a real Qdrant server started on loopback ports for tests and scripts.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Environment variable naming the Qdrant server binary for tests and scripts.
pub const QDRANT_BIN_ENV: &str = "IMAGELENS_QDRANT_BIN";

/// Environment variable that makes a missing server binary a test failure instead of a skip
/// (`.ci/run` sets it, so CI cannot pass with every server test skipped).
pub const REQUIRE_QDRANT_ENV: &str = "IMAGELENS_REQUIRE_QDRANT";

/// How long [`QdrantProcess::start`] waits for `GET /readyz` to answer 200 and the gRPC port.
const READY_WAIT: Duration = Duration::from_secs(60);

/// A Qdrant server (`../shared/bin/qdrant` by default) running as a child process on free
/// loopback ports with its own storage folder, for tests and scripts. Killed (SIGKILL) and its
/// folder removed when dropped, whatever happened.
#[derive(Debug)]
pub struct QdrantProcess {
    binary: PathBuf,
    child: Option<Child>,
    dir: PathBuf,
    /// Remove `dir` on drop (not when the caller owns it).
    owns_dir: bool,
    http_port: u16,
    grpc_port: u16,
    p2p_port: Option<u16>,
    bootstrap: Option<u16>,
    /// API key the server demands (`QDRANT__SERVICE__API_KEY`), if any.
    api_key: Option<String>,
    /// Certificate and key (PEM) the server serves TLS with on both ports, if any.
    tls: Option<(PathBuf, PathBuf)>,
}

/// How a node joins a cluster.
#[derive(Debug, Clone, Copy)]
pub enum ClusterRole {
    /// A single server, not in a cluster.
    Single,
    /// The first node of a new cluster.
    First,
    /// A node joining through the first node's p2p port.
    Join(u16),
}

impl QdrantProcess {
    /// The server binary: `$IMAGELENS_QDRANT_BIN`, else `../shared/bin/qdrant` beside the
    /// workspace; `None` when that file does not exist.
    pub fn binary() -> Option<PathBuf> {
        let path = match std::env::var_os(QDRANT_BIN_ENV) {
            Some(p) => PathBuf::from(p),
            None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/bin/qdrant"),
        };
        path.is_file().then_some(path)
    }

    /// For a test: the server binary ([`QdrantProcess::binary`]), or `None` after saying on
    /// stderr that the test skipped because there is none.
    ///
    /// # Panics
    /// When there is no binary and [`REQUIRE_QDRANT_ENV`] (`IMAGELENS_REQUIRE_QDRANT`) is set:
    /// CI sets it, so a missing server fails the run instead of skipping every server test.
    pub fn binary_or_skip() -> Option<PathBuf> {
        let found = Self::binary();
        if found.is_none() {
            assert!(
                std::env::var_os(REQUIRE_QDRANT_ENV).is_none(),
                "{REQUIRE_QDRANT_ENV} is set but there is no Qdrant server binary (set \
                 {QDRANT_BIN_ENV} or put one at ../shared/bin/qdrant)"
            );
            eprintln!(
                "skipped: no Qdrant server binary at ../shared/bin/qdrant (set {QDRANT_BIN_ENV}, \
                 or {REQUIRE_QDRANT_ENV}=1 to make this a failure)"
            );
        }
        found
    }

    /// For a test: a single server started ([`QdrantProcess::start`]), or `None` after
    /// saying the test skipped ([`QdrantProcess::binary_or_skip`]).
    ///
    /// # Panics
    /// As [`QdrantProcess::binary_or_skip`], and when the server does not start.
    pub fn start_or_skip() -> Option<Self> {
        Self::binary_or_skip()?;
        Some(Self::start().expect("start the Qdrant server"))
    }

    /// Starts a single server in a fresh temporary folder and waits until it is ready.
    ///
    /// # Errors
    /// When the binary is absent, or the server exits or is not ready within a minute (the
    /// message carries the end of its log).
    pub fn start() -> std::io::Result<Self> {
        Self::start_node(ClusterRole::Single)
    }

    /// Starts a server, or a cluster node, in a fresh temporary folder (removed on drop).
    ///
    /// # Errors
    /// As [`QdrantProcess::start`].
    pub fn start_node(role: ClusterRole) -> std::io::Result<Self> {
        Self::start_as(role, None, None)
    }

    /// Starts a single server that demands `api_key` on every request but the health
    /// checks (`QDRANT__SERVICE__API_KEY`), in a fresh temporary folder.
    ///
    /// # Errors
    /// As [`QdrantProcess::start`].
    pub fn start_with_api_key(api_key: &str) -> std::io::Result<Self> {
        Self::start_as(ClusterRole::Single, Some(api_key.to_owned()), None)
    }

    /// Starts a single server that serves TLS on its gRPC and REST ports
    /// (`QDRANT__SERVICE__ENABLE_TLS`) with the PEM certificate `cert` and private key `key`,
    /// in a fresh temporary folder. [`QdrantProcess::grpc_url`] is then `https://`; the
    /// plain-HTTP helpers ([`QdrantProcess::http_get`], [`QdrantProcess::http_send`]) do not
    /// speak TLS, and readiness is both ports accepting connections (Qdrant binds them after
    /// loading its storage) instead of `GET /readyz`.
    ///
    /// # Errors
    /// As [`QdrantProcess::start`].
    pub fn start_with_tls(cert: &Path, key: &Path) -> std::io::Result<Self> {
        Self::start_as(
            ClusterRole::Single,
            None,
            Some((cert.to_owned(), key.to_owned())),
        )
    }

    fn start_as(
        role: ClusterRole,
        api_key: Option<String>,
        tls: Option<(PathBuf, PathBuf)>,
    ) -> std::io::Result<Self> {
        let binary = Self::binary().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "no Qdrant binary (set {QDRANT_BIN_ENV} or put one at ../shared/bin/qdrant)"
                ),
            )
        })?;
        let dir = fresh_dir()?;
        // Free ports can be taken by someone else between our probe and the server's bind:
        // try a few times with new ones.
        let mut last = None;
        for _ in 0..3 {
            let mut node = Self {
                binary: binary.clone(),
                child: None,
                dir: dir.clone(),
                owns_dir: true,
                http_port: free_port()?,
                grpc_port: free_port()?,
                p2p_port: match role {
                    ClusterRole::Single => None,
                    _ => Some(free_port()?),
                },
                bootstrap: match role {
                    ClusterRole::Join(port) => Some(port),
                    _ => None,
                },
                api_key: api_key.clone(),
                tls: tls.clone(),
            };
            match node.spawn() {
                Ok(()) => return Ok(node),
                Err(e) => {
                    node.owns_dir = false;
                    drop(node);
                    let _ = std::fs::remove_dir_all(dir.join("storage"));
                    last = Some(e);
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        Err(last.unwrap_or_else(|| std::io::Error::other("qdrant did not start")))
    }

    /// gRPC URL for qdrant-client (`http://127.0.0.1:PORT`, `https://` with TLS).
    pub fn grpc_url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme(), self.grpc_port)
    }

    /// REST URL (`http://127.0.0.1:PORT`, `https://` with TLS).
    pub fn http_url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme(), self.http_port)
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// The p2p port of a cluster node.
    pub fn p2p_port(&self) -> Option<u16> {
        self.p2p_port
    }

    /// The child's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server with SIGKILL (no chance to flush), keeping its storage.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same ports and storage and waits until it is ready.
    ///
    /// # Errors
    /// As [`QdrantProcess::start`].
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.kill();
        self.spawn()
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`) to the server with `kill(1)`: `STOP` makes a
    /// server that accepts connections and never answers.
    ///
    /// # Errors
    /// When it is not running or `kill` fails.
    pub fn signal(&self, signal: &str) -> std::io::Result<()> {
        let pid = self
            .pid()
            .ok_or_else(|| std::io::Error::other("qdrant is not running"))?;
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "kill -{signal} {pid}: {status}"
            )))
        }
    }

    /// `GET path` on the REST port: the status code and body, within `timeout`.
    ///
    /// # Errors
    /// Connection or i/o failures.
    pub fn http_get(&self, path: &str, timeout: Duration) -> std::io::Result<(u16, String)> {
        http_get(self.http_port, path, timeout)
    }

    /// `method path` with a JSON `body` on the REST port (another client of the server, for
    /// tests): the status code and body, within `timeout`.
    ///
    /// # Errors
    /// Connection or i/o failures.
    pub fn http_send(
        &self,
        method: &str,
        path: &str,
        body: &str,
        timeout: Duration,
    ) -> std::io::Result<(u16, String)> {
        http(self.http_port, method, path, Some(body), timeout)
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("qdrant.log"))?;
        let mut command = Command::new(&self.binary);
        command
            .current_dir(&self.dir)
            .env("QDRANT__SERVICE__HOST", "127.0.0.1")
            .env("QDRANT__SERVICE__HTTP_PORT", self.http_port.to_string())
            .env("QDRANT__SERVICE__GRPC_PORT", self.grpc_port.to_string())
            .env("QDRANT__STORAGE__STORAGE_PATH", self.dir.join("storage"))
            .env(
                "QDRANT__STORAGE__SNAPSHOTS_PATH",
                self.dir.join("snapshots"),
            )
            .env("QDRANT__TELEMETRY_DISABLED", "true")
            .env("QDRANT__LOG_LEVEL", "WARN")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some(key) = &self.api_key {
            command.env("QDRANT__SERVICE__API_KEY", key);
        }
        if let Some((cert, key)) = &self.tls {
            command
                .env("QDRANT__SERVICE__ENABLE_TLS", "true")
                .env("QDRANT__TLS__CERT", cert)
                .env("QDRANT__TLS__KEY", key);
        }
        if let Some(p2p) = self.p2p_port {
            command
                .env("QDRANT__CLUSTER__ENABLED", "true")
                .env("QDRANT__CLUSTER__P2P__PORT", p2p.to_string())
                .arg("--uri")
                .arg(format!("http://127.0.0.1:{p2p}"));
            if let Some(first) = self.bootstrap {
                command
                    .arg("--bootstrap")
                    .arg(format!("http://127.0.0.1:{first}"));
            }
        }
        self.child = Some(command.spawn()?);
        let until = Instant::now() + READY_WAIT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                return Err(std::io::Error::other(format!(
                    "qdrant exited with {status} before it was ready; its log ends:\n{}",
                    self.log_tail()
                )));
            }
            // `/readyz` can answer before the gRPC port listens: wait for both. With TLS the
            // plain-HTTP probe cannot ask, so the REST port accepting a connection stands in.
            let rest_ready = if self.tls.is_some() {
                TcpStream::connect_timeout(
                    &SocketAddr::from((Ipv4Addr::LOCALHOST, self.http_port)),
                    Duration::from_secs(1),
                )
                .is_ok()
            } else {
                matches!(
                    http_get(self.http_port, "/readyz", Duration::from_secs(1)),
                    Ok((200, _))
                )
            };
            if rest_ready
                && TcpStream::connect_timeout(
                    &SocketAddr::from((Ipv4Addr::LOCALHOST, self.grpc_port)),
                    Duration::from_secs(1),
                )
                .is_ok()
            {
                return Ok(());
            }
            if Instant::now() >= until {
                self.kill();
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "qdrant was not ready within {}s; its log ends:\n{}",
                        READY_WAIT.as_secs(),
                        self.log_tail()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("qdrant.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for QdrantProcess {
    fn drop(&mut self) {
        self.kill();
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A new empty folder under the system temp dir.
fn fresh_dir() -> std::io::Result<PathBuf> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!(
        "imagelens-qdrant-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A loopback port nobody listens on right now.
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// A minimal HTTP/1.0 GET on loopback (no client crate needed for a readiness probe).
fn http_get(port: u16, path: &str, timeout: Duration) -> std::io::Result<(u16, String)> {
    http(port, "GET", path, None, timeout)
}

/// One HTTP/1.0 request on loopback `port`, with a JSON `body` when given.
fn http(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    match body {
        Some(body) => write!(
            stream,
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Type: \
             application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?,
        None => write!(
            stream,
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
        )?,
    }
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {response:.80}")))?;
    let body = response
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned());
    Ok((code, body))
}
