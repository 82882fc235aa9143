//! Where an interpretation's inputs come from: the library's labels and datasets (its facet
//! counts), its optional `interpret.json` (time zone and synonyms), the caller's time zone and
//! the clock. The only part of [`crate::interpret`] that reads anything.
//!
//! `DIR/interpret.json` (optional, written by whoever curates the library):
//! `{"time_zone": "Europe/Paris", "synonyms": {"lorry": "truck", "number plate": "licence plate"}}`.
//! It is at most [`MAX_SETTINGS_BYTES`] long with at most [`MAX_SYNONYMS`] entries; a time
//! zone given with a request (`--time-zone`, `"time_zone"`) wins over the file's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, NaiveDate, Utc};
use indexer::Library;
use indexer::filter::RecordFilter;
use serde::{Deserialize, Serialize};

use super::{Clock, Interpretation, Vocabulary, Zone, interpret};
use crate::search::SearchError;

/// File name of the library's interpretation settings.
pub const SETTINGS_FILE: &str = "interpret.json";
/// Largest `interpret.json` read, in bytes.
pub const MAX_SETTINGS_BYTES: u64 = 1 << 20;
/// Most synonyms read.
pub const MAX_SYNONYMS: usize = 10_000;

/// The library's interpretation settings (`DIR/interpret.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InterpretSettings {
    /// Time zone relative dates are read in: `UTC` (default), an offset such as `+01:00` or an
    /// IANA name such as `Europe/Paris`.
    pub time_zone: Option<String>,
    /// Word or phrase -> one of the library's labels.
    pub synonyms: BTreeMap<String, String>,
}

impl InterpretSettings {
    /// Reads `dir/interpret.json`; defaults when there is none.
    ///
    /// # Errors
    /// [`SearchError::Invalid`] naming the file when it is too large, not JSON of this shape, or
    /// has too many synonyms.
    pub fn load(dir: &Path) -> Result<Self, SearchError> {
        let path = dir.join(SETTINGS_FILE);
        let bad = |why: String| SearchError::Invalid(format!("{}: {why}", path.display()));
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(bad(e.to_string())),
        };
        if meta.len() > MAX_SETTINGS_BYTES {
            return Err(bad(format!(
                "larger than {MAX_SETTINGS_BYTES} bytes ({})",
                meta.len()
            )));
        }
        let bytes = std::fs::read(&path).map_err(|e| bad(e.to_string()))?;
        let s: Self = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        if s.synonyms.len() > MAX_SYNONYMS {
            return Err(bad(format!(
                "{} synonyms; the limit is {MAX_SYNONYMS}",
                s.synonyms.len()
            )));
        }
        if let Some(tz) = &s.time_zone {
            parse_time_zone(tz).map_err(|e| bad(e.to_string()))?;
        }
        Ok(s)
    }
}

/// Parses a time zone: `UTC`, a fixed offset such as `+01:00`, or an IANA name such as
/// `Europe/Paris` ([`Zone::parse`]).
///
/// # Errors
/// [`SearchError::Invalid`] naming the accepted forms.
pub fn parse_time_zone(text: &str) -> Result<Zone, SearchError> {
    Zone::parse(text)
}

/// The library's vocabulary: every label and dataset it holds, with `synonyms`.
///
/// # Errors
/// Index failures.
pub fn vocabulary(
    library: &Library,
    synonyms: &BTreeMap<String, String>,
) -> Result<Arc<Vocabulary>, SearchError> {
    // Counting every label of the library is a pass over all its records (tens of ms at 100k):
    // kept per library while its index content and the synonyms stay the same.
    type Cached = (String, BTreeMap<String, String>, Arc<Vocabulary>);
    static CACHE: Mutex<BTreeMap<PathBuf, Cached>> = Mutex::new(BTreeMap::new());
    let key = library.keyword().content_key();
    let dir = library.dir().to_path_buf();
    {
        let cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((k, s, v)) = cache.get(&dir)
            && *k == key
            && s == synonyms
        {
            return Ok(v.clone());
        }
    }
    let facets = library.keyword().facets(&RecordFilter::default())?;
    let vocab = Arc::new(
        Vocabulary::new(facets.labels.keys(), facets.datasets.keys(), synonyms)
            .with_splits(facets.splits.keys()),
    );
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if cache.len() >= MAX_CACHED_LIBRARIES
        && !cache.contains_key(&dir)
        && let Some(evicted) = cache.keys().next().cloned()
    {
        cache.remove(&evicted);
    }
    cache.insert(dir, (key, synonyms.clone(), vocab.clone()));
    Ok(vocab)
}

/// Libraries whose vocabulary is kept at once (a server has one; a test process opens a few
/// dozen); past it one other library's entry is dropped.
const MAX_CACHED_LIBRARIES: usize = 64;

/// Interprets `query` against `library` at `now`, in `time_zone` (else the library's, else
/// UTC); relative dates are read against `pinned` when given (the day a cursor carries, see
/// [`super::unpin_cursor`]), else against the local date at `now`.
///
/// # Errors
/// A bad time zone or `interpret.json`, index failures.
pub fn interpret_in(
    library: &Library,
    query: &str,
    time_zone: Option<&str>,
    now: DateTime<Utc>,
    pinned: Option<NaiveDate>,
) -> Result<Interpretation, SearchError> {
    let settings = InterpretSettings::load(library.dir())?;
    let zone = match time_zone.or(settings.time_zone.as_deref()) {
        Some(tz) => parse_time_zone(tz)?,
        None => Zone::utc(),
    };
    let vocab = vocabulary(library, &settings.synonyms)?;
    let clock = Clock {
        today: pinned.unwrap_or_else(|| zone.today(now)),
    };
    Ok(interpret(query, &vocab, &clock, zone))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_file_is_optional_bounded_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            InterpretSettings::load(dir.path()).unwrap(),
            InterpretSettings::default()
        );
        std::fs::write(
            dir.path().join(SETTINGS_FILE),
            r#"{"time_zone":"+02:00","synonyms":{"lorry":"truck"}}"#,
        )
        .unwrap();
        let s = InterpretSettings::load(dir.path()).unwrap();
        assert_eq!(s.time_zone.as_deref(), Some("+02:00"));
        assert_eq!(s.synonyms["lorry"], "truck");
        std::fs::write(
            dir.path().join(SETTINGS_FILE),
            r#"{"time_zone":"Europe/Paris"}"#,
        )
        .unwrap();
        assert_eq!(
            InterpretSettings::load(dir.path())
                .unwrap()
                .time_zone
                .as_deref(),
            Some("Europe/Paris")
        );
        std::fs::write(dir.path().join(SETTINGS_FILE), r#"{"time_zone":"Mars"}"#).unwrap();
        assert!(InterpretSettings::load(dir.path()).is_err());
        std::fs::write(dir.path().join(SETTINGS_FILE), r#"{"synonym":{}}"#).unwrap();
        assert!(InterpretSettings::load(dir.path()).is_err());
    }
}
