//! Which vector store backs a library ([`StoreSettings`]): the embedded shard or a Qdrant
//! server, as text (`--store`, `IMAGELENS_STORE`, `[store] url`) and as the manifest records it.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::Manifest;
use crate::Result;
use crate::json_file::read_json;
use crate::store::{MAX_TIMEOUT, ServerOptions};

/// Which vector store backs the library. Recorded in the manifest when the library is made;
/// [`Library::open`](super::Library::open) refuses another one, so a library never silently switches stores.
///
/// As text (the `--store` flag, `IMAGELENS_STORE`, `[store] url`): `edge`, or
/// `qdrant+http://HOST:6334[/COLLECTION][?shards=N&replication=N&write_consistency=N&timeout=SECS]`
/// (`qdrant+https://` for TLS). The port is Qdrant's gRPC port; the collection defaults to
/// [`DEFAULT_COLLECTION`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "backend", rename_all = "lowercase")]
pub enum StoreSettings {
    /// Embedded qdrant-edge shard under `<data-dir>/vectors` (the default).
    #[default]
    Edge,
    /// A Qdrant server or cluster (feature `server`).
    Server(ServerSettings),
}

/// Collection name when a `--store` URL names none.
pub const DEFAULT_COLLECTION: &str = "imagelens";

/// Largest `shards` / `replication` / `write_consistency` accepted in a store URL.
pub const MAX_SHARDS: u32 = 1_000;

/// A Qdrant server or cluster holding the library's vectors.
///
/// The URL, collection and layout are recorded in the manifest; the API key and timeout are
/// not (they come from the environment or settings each time, and the key is never written).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerSettings {
    /// gRPC URL, e.g. `http://localhost:6334` (`https://` for TLS).
    pub url: String,
    /// Collection name.
    pub collection: String,
    /// Shards of the collection when it is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard_number: Option<u32>,
    /// Copies of each shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_factor: Option<u32>,
    /// Replicas that acknowledge a write before it returns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_consistency_factor: Option<u32>,
    /// API key (`IMAGELENS_QDRANT_API_KEY` or `[store] api_key`); never written anywhere.
    #[serde(skip)]
    pub api_key: Option<String>,
    /// Request timeout in seconds (default 30, at most 3600).
    #[serde(skip)]
    pub timeout_secs: Option<u64>,
}

impl std::fmt::Debug for ServerSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSettings")
            .field("url", &self.url)
            .field("collection", &self.collection)
            .field("shard_number", &self.shard_number)
            .field("replication_factor", &self.replication_factor)
            .field("write_consistency_factor", &self.write_consistency_factor)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

impl ServerSettings {
    /// The client options: key, timeout and layout.
    pub fn options(&self) -> ServerOptions {
        ServerOptions {
            api_key: self.api_key.clone(),
            timeout: self.timeout_secs.map(std::time::Duration::from_secs),
            shard_number: self.shard_number,
            replication_factor: self.replication_factor,
            write_consistency_factor: self.write_consistency_factor,
        }
    }
}

impl std::fmt::Display for StoreSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreSettings::Edge => f.write_str("edge"),
            StoreSettings::Server(s) => write!(f, "qdrant+{}/{}", s.url, s.collection),
        }
    }
}

impl std::str::FromStr for StoreSettings {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        let text = text.trim();
        if text == "edge" {
            return Ok(StoreSettings::Edge);
        }
        let usage = "expected `edge` or `qdrant+http://HOST:6334[/COLLECTION]` \
                     (`qdrant+https://` for TLS)";
        let Some(rest) = text.strip_prefix("qdrant+") else {
            return Err(format!("store {text:?}: {usage}"));
        };
        let (scheme, rest) = rest
            .split_once("://")
            .filter(|(s, _)| matches!(*s, "http" | "https"))
            .ok_or_else(|| format!("store {text:?}: {usage}"))?;
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (host, collection) = rest.split_once('/').unwrap_or((rest, ""));
        let collection = collection.trim_end_matches('/');
        if host.is_empty() || host.contains(['@', ' ']) {
            return Err(format!(
                "store {text:?}: no host (or credentials in it); {usage}"
            ));
        }
        let collection = if collection.is_empty() {
            DEFAULT_COLLECTION
        } else {
            collection
        };
        if collection.len() > 255
            || !collection
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
        {
            return Err(format!(
                "store {text:?}: collection {collection:?} must be 1-255 letters, digits, `_` or `-`"
            ));
        }
        let mut settings = ServerSettings {
            url: format!("{scheme}://{host}"),
            collection: collection.to_owned(),
            shard_number: None,
            replication_factor: None,
            write_consistency_factor: None,
            api_key: None,
            timeout_secs: None,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let number = |max: u64| -> std::result::Result<u64, String> {
                value
                    .parse::<u64>()
                    .ok()
                    .filter(|n| (1..=max).contains(n))
                    .ok_or_else(|| format!("store {text:?}: {key}={value:?} must be 1 to {max}"))
            };
            let shards = || number(u64::from(MAX_SHARDS)).map(|n| Some(n as u32));
            match key {
                "shards" => settings.shard_number = shards()?,
                "replication" => settings.replication_factor = shards()?,
                "write_consistency" => settings.write_consistency_factor = shards()?,
                "timeout" => {
                    settings.timeout_secs = Some(number(MAX_TIMEOUT.as_secs())?);
                }
                other => {
                    return Err(format!(
                        "store {text:?}: unknown option {other:?} \
                         (known: shards, replication, write_consistency, timeout)"
                    ));
                }
            }
        }
        Ok(StoreSettings::Server(settings))
    }
}

impl StoreSettings {
    /// Whether two settings name the same store (URL and collection; keys, timeouts and the
    /// creation layout do not make another store).
    pub fn same_store(&self, other: &StoreSettings) -> bool {
        match (self, other) {
            (StoreSettings::Edge, StoreSettings::Edge) => true,
            (StoreSettings::Server(a), StoreSettings::Server(b)) => {
                a.url.trim_end_matches('/') == b.url.trim_end_matches('/')
                    && a.collection == b.collection
            }
            _ => false,
        }
    }

    /// What the manifest records: the same settings without the API key and timeout.
    pub fn recorded(&self) -> StoreSettings {
        match self {
            StoreSettings::Edge => StoreSettings::Edge,
            StoreSettings::Server(s) => StoreSettings::Server(ServerSettings {
                api_key: None,
                timeout_secs: None,
                ..s.clone()
            }),
        }
    }

    /// The store to open the library in `dir` with: `requested` when given (a library that
    /// records another one will refuse it in [`Library::open`](super::Library::open)), else the one its manifest
    /// records, else the embedded shard. `api_key` is attached to a server store.
    ///
    /// # Errors
    /// An unreadable manifest.
    pub fn resolve(
        dir: &Path,
        requested: Option<StoreSettings>,
        api_key: Option<String>,
    ) -> Result<StoreSettings> {
        let mut store = match requested {
            Some(s) => s,
            None => read_json::<Manifest>(&dir.join("manifest.json"))?
                .map(|m| m.store)
                .unwrap_or_default(),
        };
        if let StoreSettings::Server(s) = &mut store
            && s.api_key.is_none()
        {
            s.api_key = api_key.filter(|k| !k.is_empty());
        }
        Ok(store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(url: &str, collection: &str) -> StoreSettings {
        format!("qdrant+{url}/{collection}").parse().unwrap()
    }

    #[test]
    fn store_urls_parse_with_defaults_options_and_clear_errors() {
        assert_eq!("edge".parse::<StoreSettings>(), Ok(StoreSettings::Edge));
        let StoreSettings::Server(s) = "qdrant+http://db.internal:6334".parse().unwrap() else {
            panic!("server")
        };
        assert_eq!(s.url, "http://db.internal:6334");
        assert_eq!(s.collection, DEFAULT_COLLECTION);
        assert_eq!(s.shard_number, None);
        let StoreSettings::Server(s) =
            "qdrant+https://q:6334/faces?shards=6&replication=2&write_consistency=2&timeout=5"
                .parse()
                .unwrap()
        else {
            panic!("server")
        };
        assert_eq!(s.url, "https://q:6334", "TLS when the URL says so");
        assert_eq!(s.collection, "faces");
        assert_eq!(
            (
                s.shard_number,
                s.replication_factor,
                s.write_consistency_factor
            ),
            (Some(6), Some(2), Some(2))
        );
        assert_eq!(s.timeout_secs, Some(5));
        for (bad, says) in [
            ("http://q:6334", "expected `edge`"),
            ("qdrant+ftp://q:6334", "expected `edge`"),
            ("qdrant+http:///x", "no host"),
            ("qdrant+http://user:pw@q:6334", "credentials"),
            ("qdrant+http://q:6334/bad name", "collection"),
            (
                "qdrant+http://q:6334?shards=0",
                "shards=\"0\" must be 1 to 1000",
            ),
            (
                "qdrant+http://q:6334?shards=99999999999",
                "must be 1 to 1000",
            ),
            ("qdrant+http://q:6334?timeout=100000", "must be 1 to 3600"),
            ("qdrant+http://q:6334?shard=2", "unknown option"),
        ] {
            let err = bad.parse::<StoreSettings>().expect_err(bad);
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn the_api_key_is_never_recorded_nor_shown() {
        let dir = std::env::temp_dir().join(format!("lib-key-{}", std::process::id()));
        let resolved = StoreSettings::resolve(
            &dir,
            Some(server("http://q:6334", "c")),
            Some("s3cret".into()),
        )
        .unwrap();
        let StoreSettings::Server(s) = &resolved else {
            panic!("server")
        };
        assert_eq!(s.api_key.as_deref(), Some("s3cret"));
        assert!(!format!("{resolved:?}").contains("s3cret"));
        let recorded = serde_json::to_string(&resolved.recorded()).unwrap();
        assert!(!recorded.contains("s3cret"), "{recorded}");
        assert!(!serde_json::to_string(&resolved).unwrap().contains("s3cret"));
        let back: StoreSettings = serde_json::from_str(&recorded).unwrap();
        assert!(back.same_store(&resolved));
        // Manifests written before the layout fields still read.
        let old: StoreSettings =
            serde_json::from_str(r#"{"backend":"server","url":"http://q:6334","collection":"c"}"#)
                .unwrap();
        assert!(old.same_store(&resolved));
    }
}
