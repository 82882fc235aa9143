//! Record filters shared by keyword look-ups, keyword search and vector search.
//!
//! A [`RecordFilter`] is exact: the keyword index evaluates every clause, and the parts the
//! vector store can evaluate are pushed down to it ([`RecordFilter::to_vector_filter`]) so
//! candidate lists are not wasted on records the filter would drop anyway.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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

    /// The clauses the vector store can evaluate, as its filter.
    pub fn to_vector_filter(&self) -> VectorFilter {
        let mut f = VectorFilter::default();
        for l in &self.labels {
            f.must.push(Condition::MatchAny {
                key: "labels".into(),
                any: vec![normalize_label(l)],
            });
        }
        if !self.no_labels.is_empty() {
            f.must_not.push(Condition::MatchAny {
                key: "labels".into(),
                any: self.no_labels.iter().map(|l| normalize_label(l)).collect(),
            });
        }
        if !self.datasets.is_empty() {
            f.must.push(Condition::MatchAny {
                key: "dataset".into(),
                any: self.datasets.clone(),
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
                "path"
            } else {
                "filename"
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
    /// Evaluates the whole filter on a point payload (see [`crate::pipeline::payload`]), with
    /// the same semantics as the keyword index. Used to make vector results exact when part of
    /// the filter could not be pushed down.
    pub fn matches_payload(&self, payload: &Payload) -> bool {
        let labels: Vec<&str> = payload
            .get("labels")
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        if !self
            .labels
            .iter()
            .all(|l| labels.contains(&normalize_label(l).as_str()))
        {
            return false;
        }
        if self
            .no_labels
            .iter()
            .any(|l| labels.contains(&normalize_label(l).as_str()))
        {
            return false;
        }
        if !self.datasets.is_empty()
            && !payload
                .get_str("dataset")
                .is_some_and(|d| self.datasets.iter().any(|x| x == d))
        {
            return false;
        }
        for r in &self.dates {
            let Some(t) = payload.get_i64(r.axis.name()) else {
                return false;
            };
            if r.after.is_some_and(|a| t < a.timestamp())
                || r.before.is_some_and(|b| t > b.timestamp())
            {
                return false;
            }
        }
        if let Some(m) = &self.filename {
            let key = if m.on_path() { "path" } else { "filename" };
            let Some(name) = payload.get_str(key) else {
                return false;
            };
            return m.matches(name);
        }
        true
    }
}

impl FilenameMatch {
    /// Whether `name` matches, with the keyword index's semantics.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            FilenameMatch::Exact(p) => name == p,
            FilenameMatch::Prefix(p) => name.starts_with(p.as_str()),
            FilenameMatch::Glob(g) => regex::Regex::new(&format!("^(?:{})$", glob_to_regex(g)))
                .is_ok_and(|re| re.is_match(name)),
        }
    }
}

/// Labels are compared case-insensitively and without surrounding space.
pub fn normalize_label(label: &str) -> String {
    label.trim().to_lowercase()
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
                let mut class = String::new();
                let mut closed = false;
                if chars.peek() == Some(&'!') {
                    chars.next();
                    class.push('^');
                }
                for c in chars.by_ref() {
                    if c == ']' {
                        closed = true;
                        break;
                    }
                    if c == '\\' || c == '[' || c == '^' {
                        class.push('\\');
                    }
                    class.push(c);
                }
                if closed && !class.is_empty() && class != "^" {
                    out.push('[');
                    out.push_str(&class);
                    out.push(']');
                } else {
                    out.push_str(&regex_escape("["));
                    out.push_str(&regex_escape(class.trim_start_matches('^')));
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
mod tests {
    use super::*;

    #[test]
    fn glob_translates_wildcards_and_escapes_the_rest() {
        assert_eq!(glob_to_regex("*.jpg"), ".*\\.jpg");
        assert_eq!(glob_to_regex("img_??.png"), "img_..\\.png");
        assert_eq!(glob_to_regex("a[0-9]b"), "a[0-9]b");
        assert_eq!(glob_to_regex("x[!ab]"), "x[^ab]");
        assert_eq!(glob_to_regex("(a)+"), "\\(a\\)\\+");
    }

    #[test]
    fn only_prefix_and_glob_filenames_are_not_pushable() {
        let mut f = RecordFilter::default();
        assert!(f.fully_pushable());
        f.filename = Some(FilenameMatch::Exact("a.jpg".into()));
        assert!(f.fully_pushable());
        assert_eq!(f.to_vector_filter().must.len(), 1);
        f.filename = Some(FilenameMatch::Glob("*.jpg".into()));
        assert!(!f.fully_pushable());
    }
}
