//! Settings of every `imagelens` command: defaults, then a TOML file, then environment and flags.
//!
//! One serde tree with defaults for everything ([`Settings`]); `--config FILE` (or
//! `IMAGELENS_CONFIG`, a global flag, so every command reads the same file) overlays a TOML
//! file; flags and their environment variables overlay that (clap reads the variables, so a
//! flag and its variable are one layer, the flag winning). The result is validated once, in
//! [`Settings::validate`], before anything is opened. `imagelens settings` prints what a
//! command would run with.
//!
//! Every command uses `data_dir`, `model`, `no_model`, `precision`, `[store]` and `[fusion]` (the default
//! weights of `search`, `eval` and the server's searches, which a request's own `weights`
//! overlay); `addr`, `[limits]` and `[privacy]` are `serve`'s.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::search::Fusion;

/// Everything a command needs from settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Library data directory.
    pub data_dir: PathBuf,
    /// CLIP model folder or hub id (default: the library's model).
    pub model: Option<String>,
    /// Never load a model.
    pub no_model: bool,
    /// The model's number format: `f32`, `f16` or `bf16` (default: what the library records,
    /// else f16 on a GPU, bf16 on a CPU with bf16 dot products, f32 on other CPUs). A library
    /// refuses vectors of another precision.
    pub precision: Option<models::Precision>,
    /// Address `serve` listens on.
    pub addr: SocketAddr,
    /// `[store]`: where the library's vectors live.
    pub store: StoreSection,
    /// `[fusion]`: default fusion weights and RRF k (`imagelens eval --sweep` prints a table to
    /// adopt here); a request's `weights` / `--weights` overlay them.
    pub fusion: Fusion,
    /// `[limits]`: limits that protect the service.
    pub limits: Limits,
    /// `[privacy]`: which labels are blurred in served images and exports.
    pub privacy: crate::governance::redact::Redaction,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            model: None,
            no_model: false,
            precision: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 7878)),
            store: StoreSection::default(),
            fusion: Fusion::default(),
            limits: Limits::default(),
            privacy: crate::governance::redact::Redaction::default(),
        }
    }
}

/// Data directory when neither `--data-dir`, `IMAGELENS_DATA_DIR` nor a settings file names one.
pub const DEFAULT_DATA_DIR: &str = "imagelens-data";

/// What the command line and its environment variables say about the settings every command
/// shares (the layer above the file).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--data-dir` / `IMAGELENS_DATA_DIR`.
    pub data_dir: Option<PathBuf>,
    /// `--model` / `IMAGELENS_MODEL`.
    pub model: Option<String>,
    /// `--no-model` / `IMAGELENS_NO_MODEL` (only ever turns model loading off).
    pub no_model: bool,
    /// `--precision` / `IMAGELENS_PRECISION`.
    pub precision: Option<models::Precision>,
    /// `--store` / `IMAGELENS_STORE`, as given (checked by [`store_url`]).
    pub store: Option<String>,
    /// `IMAGELENS_QDRANT_API_KEY`.
    pub api_key: Option<String>,
}

/// `[store]`: the vector store of the library (`--store` / `IMAGELENS_STORE` take precedence
/// over `url`, `IMAGELENS_QDRANT_API_KEY` over `api_key`). A library keeps the store it was
/// made with; naming another one is refused.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSection {
    /// `edge` or `qdrant+http://HOST:6334[/COLLECTION][?shards=N&replication=N]`
    /// (default: the store the library records, else `edge`).
    pub url: Option<String>,
    /// Qdrant API key; never serialised back out.
    #[serde(skip_serializing)]
    pub api_key: Option<String>,
}

impl std::fmt::Debug for StoreSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSection")
            .field("url", &self.url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl StoreSection {
    /// The store `url` names, if any.
    ///
    /// # Errors
    /// [`SettingsError::Range`] naming `store.url` when it does not parse.
    pub fn parsed(&self) -> Result<Option<indexer::StoreSettings>, SettingsError> {
        self.url
            .as_deref()
            .map(|u| {
                u.parse::<indexer::StoreSettings>()
                    .map_err(|_| SettingsError::Range {
                        key: "store.url",
                        value: u.to_owned(),
                        why: "`edge` or `qdrant+http://HOST:6334[/COLLECTION]`",
                    })
            })
            .transpose()
    }
}

/// Checks a store URL as given on the command line and keeps its text (options included).
///
/// # Errors
/// What [`indexer::StoreSettings`] says is wrong with it.
pub fn store_url(text: &str) -> Result<String, String> {
    text.parse::<indexer::StoreSettings>()?;
    Ok(text.trim().to_owned())
}

/// Bounds on what one request may ask for and on concurrent heavy work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest request body in bytes (image uploads included).
    pub max_body_bytes: usize,
    /// Largest uploaded or served image, in pixels, checked from the header before decoding.
    pub max_image_pixels: u64,
    /// Largest page of results.
    pub max_page: usize,
    /// Longest query text, in characters.
    pub max_query_chars: usize,
    /// Whole-request timeout in seconds (exports excepted: they stream).
    pub request_timeout_secs: u64,
    /// Concurrent embedding jobs (query texts, uploaded images).
    pub max_concurrent_embeds: usize,
    /// Concurrent image decodes (thumbnails).
    pub max_concurrent_decodes: usize,
    /// Concurrent rankings (searches and a query's facets: BM25 and vector lists). More than
    /// the cores only slows each one down; look-ups, records and thumbnails do not wait for
    /// these slots, so they are not queued behind vector scans. Default: the cores.
    pub max_concurrent_searches: usize,
    /// How long a request waits for an embedding or decoding slot before it is answered 503.
    pub queue_wait_ms: u64,
    /// Largest thumbnail edge in pixels.
    pub max_thumbnail: u32,
    /// Most records in one export.
    pub max_export_records: usize,
    /// How long a streamed export waits for a client that stopped reading before it is
    /// abandoned, in seconds.
    pub export_send_timeout_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 16 << 20,
            // The same default as ingest's, so whatever was ingested can be served.
            max_image_pixels: models::preprocess::DEFAULT_MAX_PIXELS,
            max_page: crate::search::MAX_LIMIT,
            max_query_chars: crate::search::MAX_QUERY_CHARS,
            request_timeout_secs: 30,
            max_concurrent_embeds: 2,
            max_concurrent_decodes: 4,
            max_concurrent_searches: std::thread::available_parallelism().map_or(2, usize::from),
            queue_wait_ms: 2000,
            max_thumbnail: 1024,
            max_export_records: 50_000,
            export_send_timeout_secs: 60,
        }
    }
}

impl Limits {
    /// The request timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    /// How long an export waits for a client that stopped reading.
    pub fn export_send_timeout(&self) -> Duration {
        Duration::from_secs(self.export_send_timeout_secs)
    }

    /// How long to wait for a work slot.
    pub fn queue_wait(&self) -> Duration {
        Duration::from_millis(self.queue_wait_ms)
    }
}

/// A settings problem, naming the file or key.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for these settings.
    #[error("config file {path} is not valid: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What the parser said (names the key).
        message: String,
    },
    /// A table holds a value it cannot take.
    #[error("setting [{key}] is not valid: {why}")]
    Invalid {
        /// The table.
        key: &'static str,
        /// What is wrong (names the field).
        why: String,
    },
    /// A value is out of range.
    #[error("setting {key} = {value} is out of range: {why}")]
    Range {
        /// The key.
        key: &'static str,
        /// The value given.
        value: String,
        /// The allowed range.
        why: &'static str,
    },
}

impl Settings {
    /// Defaults, overlaid by the TOML file at `path` when there is one.
    ///
    /// # Errors
    /// As [`Settings::from_file`].
    pub fn load(path: Option<&Path>) -> Result<Self, SettingsError> {
        path.map_or_else(|| Ok(Self::default()), Self::from_file)
    }

    /// Overlays the command line and environment: what they name wins over the file.
    #[must_use]
    pub fn overlaid(mut self, o: Overrides) -> Self {
        if let Some(d) = o.data_dir {
            self.data_dir = d;
        }
        if o.model.is_some() {
            self.model = o.model;
        }
        self.no_model |= o.no_model;
        if o.precision.is_some() {
            self.precision = o.precision;
        }
        if o.store.is_some() {
            self.store.url = o.store;
        }
        if o.api_key.is_some() {
            self.store.api_key = o.api_key;
        }
        self
    }

    /// The vector store a command opens: `[store] url` (after the flag's overlay), else what
    /// the library's manifest records, else the embedded shard; the API key attached.
    ///
    /// # Errors
    /// A store URL that does not parse, or an unreadable manifest.
    pub fn resolve_store(&self) -> anyhow::Result<indexer::StoreSettings> {
        Ok(indexer::StoreSettings::resolve(
            &self.data_dir,
            self.store.parsed()?,
            self.store.api_key.clone(),
        )?)
    }

    /// Defaults overlaid by a TOML file.
    ///
    /// # Errors
    /// [`SettingsError::Read`] or [`SettingsError::Parse`] naming the file.
    pub fn from_file(path: &Path) -> Result<Self, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text).map_err(|message| SettingsError::Parse {
            path: path.display().to_string(),
            message,
        })
    }

    /// Defaults overlaid by TOML text.
    ///
    /// # Errors
    /// The parser's message (it names the key and line).
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim().to_owned())
    }

    /// Checks every limit is usable.
    ///
    /// # Errors
    /// [`SettingsError::Range`] naming the key.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let l = &self.limits;
        let checks: [(&'static str, u64, u64, u64, &'static str); 11] = [
            (
                "limits.max_body_bytes",
                l.max_body_bytes as u64,
                1024,
                1 << 32,
                "1 KiB to 4 GiB",
            ),
            (
                "limits.max_image_pixels",
                l.max_image_pixels,
                1,
                1 << 32,
                "1 to 2^32",
            ),
            (
                "limits.max_page",
                l.max_page as u64,
                1,
                crate::search::MAX_LIMIT as u64,
                "1 to 500",
            ),
            (
                "limits.max_query_chars",
                l.max_query_chars as u64,
                1,
                crate::search::MAX_QUERY_CHARS as u64,
                "1 to 1000",
            ),
            (
                "limits.request_timeout_secs",
                l.request_timeout_secs,
                1,
                3600,
                "1 to 3600",
            ),
            (
                "limits.max_concurrent_embeds",
                l.max_concurrent_embeds as u64,
                1,
                1024,
                "1 to 1024",
            ),
            (
                "limits.max_concurrent_decodes",
                l.max_concurrent_decodes as u64,
                1,
                1024,
                "1 to 1024",
            ),
            (
                "limits.max_concurrent_searches",
                l.max_concurrent_searches as u64,
                1,
                1024,
                "1 to 1024",
            ),
            (
                "limits.max_thumbnail",
                u64::from(l.max_thumbnail),
                16,
                8192,
                "16 to 8192",
            ),
            (
                "limits.max_export_records",
                l.max_export_records as u64,
                1,
                10_000_000,
                "1 to 10^7",
            ),
            (
                "limits.export_send_timeout_secs",
                l.export_send_timeout_secs,
                1,
                3600,
                "1 to 3600",
            ),
        ];
        self.store.parsed()?;
        self.fusion.validate().map_err(|e| SettingsError::Invalid {
            key: "fusion",
            why: e.to_string(),
        })?;
        for (key, value, lo, hi, why) in checks {
            if !(lo..=hi).contains(&value) {
                return Err(SettingsError::Range {
                    key,
                    value: value.to_string(),
                    why,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_overlays_defaults_and_names_unknown_keys() {
        let s =
            Settings::from_toml("addr = \"127.0.0.1:9000\"\n[limits]\nmax_page = 50\n").unwrap();
        assert_eq!(s.addr.port(), 9000);
        assert_eq!(s.limits.max_page, 50);
        assert_eq!(s.limits.max_thumbnail, Limits::default().max_thumbnail);
        let err = Settings::from_toml("[limits]\nmax_pages = 50\n").unwrap_err();
        assert!(err.contains("max_pages"), "{err}");
    }

    #[test]
    fn the_store_section_parses_checks_its_url_and_hides_the_key() {
        let s = Settings::from_toml(
            "[store]\nurl = \"qdrant+http://10.0.0.5:6334/lib\"\napi_key = \"k3y\"\n",
        )
        .unwrap();
        s.validate().unwrap();
        assert_eq!(
            s.store.parsed().unwrap().unwrap().to_string(),
            "qdrant+http://10.0.0.5:6334/lib"
        );
        assert!(!format!("{s:?}").contains("k3y"));
        assert!(!toml::to_string(&s).unwrap().contains("k3y"));
        assert_eq!(Settings::default().store.parsed().unwrap(), None);
        let mut bad = Settings::default();
        bad.store.url = Some("http://10.0.0.5:6334".into());
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("store.url"), "{err}");
    }

    #[test]
    fn the_file_is_overlaid_by_flags_and_fusion_tables_are_checked() {
        let file = Settings::from_toml(
            "data_dir = \"/lib/file\"\nmodel = \"m-file\"\n[store]\nurl = \"edge\"\n\
             [fusion]\nimage = 0.25\nk = 30\n",
        )
        .unwrap();
        assert_eq!(file.fusion.image, 0.25);
        assert_eq!(file.fusion.keyword, Fusion::default().keyword);
        file.validate().unwrap();
        // Nothing on the command line: the file stands.
        let same = file.clone().overlaid(Overrides::default());
        assert_eq!(same, file);
        // What the command line names wins; --no-model only ever turns the model off.
        let o = Overrides {
            data_dir: Some("/lib/flag".into()),
            model: None,
            no_model: true,
            precision: Some(models::Precision::Bf16),
            store: Some("qdrant+http://10.0.0.5:6334/c?shards=2".into()),
            api_key: Some("k3y".into()),
        };
        let s = file.clone().overlaid(o);
        assert_eq!(s.data_dir, PathBuf::from("/lib/flag"));
        assert_eq!(s.model.as_deref(), Some("m-file"));
        assert!(s.no_model);
        assert_eq!(s.precision, Some(models::Precision::Bf16));
        assert_eq!(file.precision, None, "no precision in the file");
        let p = Settings::from_toml("precision = \"f16\"\n").unwrap();
        assert_eq!(p.precision, Some(models::Precision::F16));
        let err = Settings::from_toml("precision = \"int4\"\n").unwrap_err();
        assert!(err.contains("int4") || err.contains("variant"), "{err}");
        assert_eq!(
            s.store.url.as_deref(),
            Some("qdrant+http://10.0.0.5:6334/c?shards=2"),
            "the URL keeps its options"
        );
        let indexer::StoreSettings::Server(server) = s.resolve_store().unwrap() else {
            panic!("a server store")
        };
        assert_eq!(server.shard_number, Some(2));
        assert_eq!(server.api_key.as_deref(), Some("k3y"));
        // Fusion tables are checked like --weights.
        for (text, names) in [
            ("[fusion]\nk = 0\n", "k must be"),
            ("[fusion]\nimage = -1\n", "image"),
            ("[fusion]\ndepth = 5\n", "depth"),
        ] {
            let err = Settings::from_toml(text)
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string();
            assert!(err.contains(names) && err.contains("fusion"), "{err}");
        }
        let err = Settings::from_toml("[fusion]\nimages = 1\n").unwrap_err();
        assert!(err.contains("images"), "{err}");
        assert!(store_url("http://x:6334").is_err());
        assert_eq!(store_url(" edge ").unwrap(), "edge");
    }

    #[test]
    fn out_of_range_limits_are_refused_by_name() {
        let mut s = Settings::default();
        s.validate().unwrap();
        s.limits.max_concurrent_embeds = 0;
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("limits.max_concurrent_embeds"), "{err}");
    }
}
