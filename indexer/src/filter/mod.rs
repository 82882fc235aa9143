//! Record filters shared by keyword look-ups, keyword search and vector search.
//!
//! A [`RecordFilter`] is exact: the keyword index evaluates every clause, and the parts the
//! vector store can evaluate are pushed down to it ([`RecordFilter::to_vector_filter`]) so
//! candidate lists are not wasted on records the filter would drop anyway.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Longest filename pattern (exact name, prefix or glob) a filter may carry, in characters.
/// Longer patterns are refused before anything is compiled: a glob becomes a regular
/// expression, and its automaton grows with the pattern.
pub const MAX_PATTERN_CHARS: usize = 512;

/// A filename pattern that cannot be used. The pattern is kept shortened (see
/// [`shorten`]) so an error never echoes a huge input back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid filename pattern {pattern:?}: {reason}")]
pub struct PatternError {
    /// The pattern, shortened to its first 64 characters.
    pub pattern: String,
    /// Why.
    pub reason: String,
}

impl PatternError {
    fn new(pattern: &str, reason: impl Into<String>) -> Self {
        Self {
            pattern: shorten(pattern, 64),
            reason: reason.into(),
        }
    }
}

/// `text` cut to its first `max` characters, with `…` and the full length when cut, for error
/// messages that must not echo a huge input.
pub fn shorten(text: &str, max: usize) -> String {
    let n = text.chars().count();
    if n <= max {
        return text.to_owned();
    }
    let head: String = text.chars().take(max).collect();
    format!("{head}… ({n} characters)")
}

use crate::points::key;
use crate::record::DateAxis;
use crate::store::{Condition, Payload, VectorFilter};

/// How a filename pattern matches. Patterns containing `/` are matched against the path
/// relative to the images root, others against the file name alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "pattern")]
pub enum FilenameMatch {
    /// Equal to the text.
    Exact(String),
    /// Starts with the text.
    Prefix(String),
    /// Shell glob: `*` any run, `?` one character, `[abc]` a class.
    Glob(String),
}

impl FilenameMatch {
    /// The pattern text.
    pub fn pattern(&self) -> &str {
        match self {
            FilenameMatch::Exact(p) | FilenameMatch::Prefix(p) | FilenameMatch::Glob(p) => p,
        }
    }

    /// Whether the pattern is matched against the relative path rather than the file name.
    pub fn on_path(&self) -> bool {
        self.pattern().contains('/')
    }

    /// The regular expression both evaluators (the keyword index's automaton and the payload
    /// check of vector hits) match against the whole name; `None` for an exact name.
    ///
    /// `(?s)`: a `*` or `?` also matches a newline, which a file name may contain.
    pub fn to_regex(&self) -> Option<String> {
        match self {
            FilenameMatch::Exact(_) => None,
            FilenameMatch::Prefix(p) => Some(format!("(?s){}.*", regex_escape(p))),
            FilenameMatch::Glob(g) => Some(format!("(?s){}", glob_to_regex(g))),
        }
    }

    /// Refuses a pattern longer than [`MAX_PATTERN_CHARS`].
    ///
    /// # Errors
    /// [`PatternError`] naming the length and the limit.
    pub fn check_length(&self) -> Result<(), PatternError> {
        let pattern = self.pattern();
        // Counting stops early: a huge pattern costs no more than the limit.
        let n = pattern.chars().take(MAX_PATTERN_CHARS + 1).count();
        if n > MAX_PATTERN_CHARS {
            return Err(PatternError::new(
                pattern,
                format!("it is longer than the limit of {MAX_PATTERN_CHARS} characters"),
            ));
        }
        Ok(())
    }

    /// Checks the pattern's length and compiles it once, for many [`FilenameMatcher::matches`].
    ///
    /// # Errors
    /// [`PatternError`] for a pattern over [`MAX_PATTERN_CHARS`] or a glob that is not a valid
    /// pattern (e.g. the class `[z-a]`).
    pub fn compile(&self) -> Result<FilenameMatcher, PatternError> {
        self.check_length()?;
        let pattern = self.pattern();
        let kind = match self {
            FilenameMatch::Exact(p) => MatcherKind::Exact(p.clone()),
            FilenameMatch::Prefix(p) => MatcherKind::Prefix(p.clone()),
            FilenameMatch::Glob(_) => {
                let re = self.to_regex().unwrap_or_default();
                let re = regex::RegexBuilder::new(&format!("^(?:{re})$"))
                    .size_limit(PATTERN_SIZE_LIMIT)
                    .dfa_size_limit(PATTERN_SIZE_LIMIT)
                    .build()
                    .map_err(|e| PatternError::new(pattern, regex_reason(&e)))?;
                MatcherKind::Regex(re)
            }
        };
        Ok(FilenameMatcher {
            on_path: self.on_path(),
            kind,
        })
    }
}

/// Compiled-size limit of a glob's regular expression (the keyword index's automaton has its
/// own, of 10 MiB).
const PATTERN_SIZE_LIMIT: usize = 10 << 20;

/// The first line of a regex error, without the echoed pattern (that can be huge).
fn regex_reason(e: &regex::Error) -> String {
    match e {
        regex::Error::CompiledTooBig(limit) => {
            format!("the pattern compiles to more than {limit} bytes")
        }
        regex::Error::Syntax(text) => text
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("error: "))
            .unwrap_or("not a valid pattern")
            .to_owned(),
        _ => "not a valid pattern".to_owned(),
    }
}

/// A [`FilenameMatch`] compiled once per request ([`FilenameMatch::compile`]).
#[derive(Debug, Clone)]
pub struct FilenameMatcher {
    on_path: bool,
    kind: MatcherKind,
}

#[derive(Debug, Clone)]
enum MatcherKind {
    Exact(String),
    Prefix(String),
    Regex(regex::Regex),
}

impl FilenameMatcher {
    /// Whether the pattern is matched against the relative path rather than the file name.
    pub fn on_path(&self) -> bool {
        self.on_path
    }

    /// Whether `name` matches, with the keyword index's semantics.
    pub fn matches(&self, name: &str) -> bool {
        match &self.kind {
            MatcherKind::Exact(p) => name == p,
            MatcherKind::Prefix(p) => name.starts_with(p.as_str()),
            MatcherKind::Regex(re) => re.is_match(name),
        }
    }
}

/// An inclusive range on one time axis; records without a value on that axis never match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DateRange {
    /// Which axis.
    pub axis: DateAxis,
    /// Inclusive lower bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<DateTime<Utc>>,
    /// Inclusive upper bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<DateTime<Utc>>,
}

/// Conjunction of clauses; the default matches every record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordFilter {
    /// Every one of these labels is present (case-insensitive).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// None of these labels is present.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub no_labels: Vec<String>,
    /// The dataset is one of these (any, when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub datasets: Vec<String>,
    /// Every one of these box attributes is present on some box, as `key=value` (compared
    /// as [`crate::record::attribute_term`] writes them: lower case, trimmed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attrs: Vec<String>,
    /// The split (`train`, `val`, ...) is one of these (any, when empty); a record without a
    /// split matches none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub splits: Vec<String>,
    /// The annotation tool's id of the image ([`crate::record::Record::source_id`]) is one of
    /// these (any, when empty), compared exactly; a record without one matches none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_ids: Vec<String>,
    /// Date ranges, all of which hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dates: Vec<DateRange>,
    /// Filename pattern.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<FilenameMatch>,
}

impl RecordFilter {
    /// Whether the filter matches everything.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
            && self.no_labels.is_empty()
            && self.datasets.is_empty()
            && self.splits.is_empty()
            && self.source_ids.is_empty()
            && self.attrs.is_empty()
            && self.dates.is_empty()
            && self.filename.is_none()
    }

    /// Whether the vector store can evaluate the whole filter by itself (prefix and glob
    /// filenames it cannot).
    pub fn fully_pushable(&self) -> bool {
        !matches!(
            self.filename,
            Some(FilenameMatch::Prefix(_) | FilenameMatch::Glob(_))
        )
    }

    /// The any-of clauses by payload key: datasets, splits, source ids (the keyword index has
    /// a field of the same name for each).
    pub fn any_of(&self) -> [(&'static str, &Vec<String>); 3] {
        [
            (key::DATASET, &self.datasets),
            (key::SPLIT, &self.splits),
            (key::SOURCE_ID, &self.source_ids),
        ]
    }

    /// The clauses the vector store can evaluate, as its filter.
    pub fn to_vector_filter(&self) -> VectorFilter {
        let mut f = VectorFilter::default();
        for l in &self.labels {
            f.must.push(Condition::MatchAny {
                key: key::LABELS.into(),
                any: vec![normalize_label(l)],
            });
        }
        if !self.no_labels.is_empty() {
            f.must_not.push(Condition::MatchAny {
                key: key::LABELS.into(),
                any: self.no_labels.iter().map(|l| normalize_label(l)).collect(),
            });
        }
        for (key, any) in self.any_of() {
            if !any.is_empty() {
                f.must.push(Condition::MatchAny {
                    key: key.into(),
                    any: any.clone(),
                });
            }
        }
        for a in &self.attrs {
            f.must.push(Condition::MatchAny {
                key: key::ATTRS.into(),
                any: vec![normalize_attr(a)],
            });
        }
        for r in &self.dates {
            f.must.push(Condition::Range {
                key: r.axis.name().into(),
                gte: r.after.map(|d| d.timestamp()),
                lte: r.before.map(|d| d.timestamp()),
            });
        }
        if let Some(FilenameMatch::Exact(name)) = &self.filename {
            let key = if name.contains('/') {
                key::PATH
            } else {
                key::FILENAME
            };
            f.must.push(Condition::MatchAny {
                key: key.into(),
                any: vec![name.clone()],
            });
        }
        f
    }
}

impl RecordFilter {
    /// Compiles the filter once for many payload checks ([`PayloadMatcher::matches`]).
    ///
    /// # Errors
    /// [`PatternError`] as [`FilenameMatch::compile`].
    pub fn compile(&self) -> Result<PayloadMatcher, PatternError> {
        Ok(PayloadMatcher {
            labels: self.labels.iter().map(|l| normalize_label(l)).collect(),
            no_labels: self.no_labels.iter().map(|l| normalize_label(l)).collect(),
            datasets: self.datasets.clone(),
            splits: self.splits.clone(),
            source_ids: self.source_ids.clone(),
            attrs: self.attrs.iter().map(|a| normalize_attr(a)).collect(),
            dates: self
                .dates
                .iter()
                .map(|r| {
                    (
                        r.axis.name(),
                        r.after.map(|d| d.timestamp()),
                        r.before.map(|d| d.timestamp()),
                    )
                })
                .collect(),
            filename: self
                .filename
                .as_ref()
                .map(FilenameMatch::compile)
                .transpose()?,
        })
    }

    /// Evaluates the whole filter on one point payload. It compiles the filter on every call:
    /// to check many payloads, [`RecordFilter::compile`] once and use [`PayloadMatcher`]. A
    /// filter that does not compile matches nothing.
    pub fn matches_payload(&self, payload: &Payload) -> bool {
        self.compile().is_ok_and(|m| m.matches(payload))
    }
}

/// A [`RecordFilter`] compiled for payload checks: labels normalised, dates in Unix seconds,
/// the filename pattern compiled.
#[derive(Debug, Clone)]
pub struct PayloadMatcher {
    labels: Vec<String>,
    no_labels: Vec<String>,
    datasets: Vec<String>,
    splits: Vec<String>,
    source_ids: Vec<String>,
    attrs: Vec<String>,
    dates: Vec<(&'static str, Option<i64>, Option<i64>)>,
    filename: Option<FilenameMatcher>,
}

impl PayloadMatcher {
    /// The payload keys [`Self::matches`] reads for this filter (none for an empty one): with
    /// the record id, what a vector search must return of each hit.
    pub fn keys(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        if !self.labels.is_empty() || !self.no_labels.is_empty() {
            keys.push(key::LABELS);
        }
        for (key, any) in [
            (key::DATASET, &self.datasets),
            (key::SPLIT, &self.splits),
            (key::SOURCE_ID, &self.source_ids),
            (key::ATTRS, &self.attrs),
        ] {
            if !any.is_empty() {
                keys.push(key);
            }
        }
        keys.extend(self.dates.iter().map(|&(axis, _, _)| axis));
        if let Some(m) = &self.filename {
            keys.push(if m.on_path() {
                key::PATH
            } else {
                key::FILENAME
            });
        }
        keys
    }

    /// Evaluates the whole filter on a point payload (see [`crate::points::payload`]), with
    /// the same semantics as the keyword index. Used to make vector results exact when part of
    /// the filter could not be pushed down.
    pub fn matches(&self, payload: &Payload) -> bool {
        let strings = |key: &str| -> Vec<&str> {
            payload
                .get(key)
                .and_then(|v| v.as_array())
                .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
                .unwrap_or_default()
        };
        let labels = strings(key::LABELS);
        if !self.labels.iter().all(|l| labels.contains(&l.as_str())) {
            return false;
        }
        if self.no_labels.iter().any(|l| labels.contains(&l.as_str())) {
            return false;
        }
        // Any of the datasets, any of the splits, any of the source ids.
        for (key, any) in [
            (key::DATASET, &self.datasets),
            (key::SPLIT, &self.splits),
            (key::SOURCE_ID, &self.source_ids),
        ] {
            if !any.is_empty()
                && !payload
                    .get_str(key)
                    .is_some_and(|v| any.iter().any(|x| x == v))
            {
                return false;
            }
        }
        if !self.attrs.is_empty() {
            let attrs = strings(key::ATTRS);
            if !self.attrs.iter().all(|a| attrs.contains(&a.as_str())) {
                return false;
            }
        }
        for &(axis, after, before) in &self.dates {
            let Some(t) = payload.get_i64(axis) else {
                return false;
            };
            if after.is_some_and(|a| t < a) || before.is_some_and(|b| t > b) {
                return false;
            }
        }
        if let Some(m) = &self.filename {
            let key = if m.on_path() {
                key::PATH
            } else {
                key::FILENAME
            };
            let Some(name) = payload.get_str(key) else {
                return false;
            };
            return m.matches(name);
        }
        true
    }
}

impl FilenameMatch {
    /// Whether `name` matches, with the keyword index's semantics. Compiles the pattern on
    /// every call: to test many names, [`FilenameMatch::compile`] once. A pattern that does
    /// not compile matches nothing.
    pub fn matches(&self, name: &str) -> bool {
        self.compile().is_ok_and(|m| m.matches(name))
    }
}

/// Labels are compared case-insensitively and without surrounding space.
pub fn normalize_label(label: &str) -> String {
    label.trim().to_lowercase()
}

/// An attribute filter `key=value` as [`crate::record::attribute_term`] writes the terms it
/// matches (`Color = White` is `color=white`); text without `=` is only lower-cased and trimmed.
pub fn normalize_attr(attr: &str) -> String {
    match attr.split_once('=') {
        Some((k, v)) => crate::record::attribute_term(k, &serde_json::Value::String(v.into()))
            .unwrap_or_else(|| normalize_label(attr)),
        None => normalize_label(attr),
    }
}

/// Translates a shell glob into an anchored regular expression over the whole name.
///
/// `*` matches any run, `?` one character, `[...]` a class (`[!...]` negated); every other
/// character is literal.
pub fn glob_to_regex(glob: &str) -> String {
    let mut out = String::with_capacity(glob.len() * 2);
    let mut chars = glob.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => out.push_str(".*"),
            '?' => out.push('.'),
            '[' => {
                let negated = chars.peek() == Some(&'!');
                if negated {
                    chars.next();
                }
                let mut raw: Vec<char> = Vec::new();
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == ']' {
                        closed = true;
                        break;
                    }
                    raw.push(c);
                }
                if closed && !raw.is_empty() {
                    out.push('[');
                    if negated {
                        out.push('^');
                    }
                    let mut prev = None;
                    for &c in &raw {
                        // `&&`, `~~` and `--` are set operations in a regex class; in a glob
                        // they are the characters themselves.
                        if matches!(c, '\\' | '[' | '^' | '&' | '~')
                            || (c == '-' && prev == Some('-'))
                        {
                            out.push('\\');
                        }
                        out.push(c);
                        prev = Some(c);
                    }
                    out.push(']');
                } else {
                    // Not a class (unclosed or empty): every character is literal.
                    out.push_str("\\[");
                    if negated {
                        out.push('!');
                    }
                    out.push_str(&regex_escape(&raw.iter().collect::<String>()));
                    if closed {
                        out.push_str("\\]");
                    }
                }
            }
            c => out.push_str(&regex_escape(&c.to_string())),
        }
    }
    out
}

/// Escapes every regex metacharacter of `text`.
pub fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests;
