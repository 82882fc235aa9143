//! Where an interpretation's inputs come from: the library's labels and datasets (its facet
//! counts), its optional `interpret.json` (time zone and synonyms), the caller's time zone and
//! the clock. The only part of [`crate::interpret`] that reads anything.
//!
//! `DIR/interpret.json` (optional, written by whoever curates the library):
//! `{"time_zone": "+01:00", "synonyms": {"lorry": "truck", "number plate": "licence plate"}}`.
//! It is at most [`MAX_SETTINGS_BYTES`] long with at most [`MAX_SYNONYMS`] entries; a time
//! zone given with a request (`--time-zone`, `"time_zone"`) wins over the file's.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, FixedOffset, Utc};
use indexer::Library;
use indexer::filter::RecordFilter;
use serde::{Deserialize, Serialize};

use super::{Clock, Interpretation, Vocabulary, interpret};
use crate::search::SearchError;

/// File name of the library's interpretation settings.
pub const SETTINGS_FILE: &str = "interpret.json";
/// Largest `interpret.json` read, in bytes.
pub const MAX_SETTINGS_BYTES: u64 = 1 << 20;
/// Most synonyms read.
pub const MAX_SYNONYMS: usize = 10_000;
/// Longest time zone accepted, in characters.
pub const MAX_TIME_ZONE_CHARS: usize = 16;

/// The library's interpretation settings (`DIR/interpret.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InterpretSettings {
    /// Time zone relative dates are read in: `UTC` (default) or an offset such as `+01:00`.
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

/// Parses a time zone: `UTC`, `Z`, or a fixed offset `+01:00`, `-0530`, `+2`.
///
/// # Errors
/// [`SearchError::Invalid`] naming the accepted forms.
pub fn parse_time_zone(text: &str) -> Result<FixedOffset, SearchError> {
    let bad = || {
        SearchError::Invalid(format!(
            "time zone {:?} is not UTC or an offset such as +01:00 or -05:30",
            indexer::filter::shorten(text, MAX_TIME_ZONE_CHARS)
        ))
    };
    let t = text.trim();
    if t.chars().count() > MAX_TIME_ZONE_CHARS {
        return Err(bad());
    }
    let upper = t.to_ascii_uppercase();
    let t = upper
        .strip_prefix("UTC")
        .or_else(|| upper.strip_prefix("GMT"))
        .unwrap_or(&upper);
    if t.is_empty() || t == "Z" {
        return Ok(FixedOffset::east_opt(0).expect("zero offset"));
    }
    let (sign, rest) = match t.as_bytes()[0] {
        b'+' => (1, &t[1..]),
        b'-' => (-1, &t[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = match rest.split_once(':') {
        Some((h, m)) => (h, m),
        None if rest.len() == 4 && rest.is_ascii() => rest.split_at(2),
        None => (rest, "0"),
    };
    let digits = |s: &str| !s.is_empty() && s.len() <= 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(h) || !digits(m) {
        return Err(bad());
    }
    let (h, m): (i32, i32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 14 || m > 59 {
        return Err(bad());
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60)).ok_or_else(bad)
}

/// The library's vocabulary: every label and dataset it holds, with `synonyms`.
///
/// # Errors
/// Index failures.
pub fn vocabulary(
    library: &Library,
    synonyms: &BTreeMap<String, String>,
) -> Result<Vocabulary, SearchError> {
    let facets = library.keyword().facets(&RecordFilter::default())?;
    Ok(Vocabulary::new(
        facets.labels.keys(),
        facets.datasets.keys(),
        synonyms,
    ))
}

/// Interprets `query` against `library` at `now`, in `time_zone` (else the library's, else
/// UTC).
///
/// # Errors
/// A bad time zone or `interpret.json`, index failures.
pub fn interpret_in(
    library: &Library,
    query: &str,
    time_zone: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Interpretation, SearchError> {
    let settings = InterpretSettings::load(library.dir())?;
    let offset = match time_zone.or(settings.time_zone.as_deref()) {
        Some(tz) => parse_time_zone(tz)?,
        None => FixedOffset::east_opt(0).expect("zero offset"),
    };
    let vocab = vocabulary(library, &settings.synonyms)?;
    let clock = Clock {
        today: now.with_timezone(&offset).date_naive(),
    };
    Ok(interpret(query, &vocab, &clock, offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_zones_are_utc_or_fixed_offsets() {
        for (tz, secs) in [
            ("UTC", 0),
            ("utc", 0),
            ("Z", 0),
            ("+01:00", 3600),
            ("-05:30", -19800),
            ("+0530", 19800),
            ("UTC+2", 7200),
            ("GMT-3", -10800),
        ] {
            assert_eq!(parse_time_zone(tz).unwrap().local_minus_utc(), secs, "{tz}");
        }
        for tz in [
            "Europe/Paris",
            "+15:00",
            "+1:99",
            "++1",
            "x".repeat(100).as_str(),
        ] {
            let e = parse_time_zone(tz).unwrap_err().to_string();
            assert!(e.contains("time zone") && e.len() < 200, "{e}");
        }
    }

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
        std::fs::write(dir.path().join(SETTINGS_FILE), r#"{"time_zone":"Mars"}"#).unwrap();
        assert!(InterpretSettings::load(dir.path()).is_err());
        std::fs::write(dir.path().join(SETTINGS_FILE), r#"{"synonym":{}}"#).unwrap();
        assert!(InterpretSettings::load(dir.path()).is_err());
    }
}
