//! Query interpretation: plain English becomes exact filters before ranking, visibly.
//!
//! "white pickup trucks at night from last March without people in fleet-2024" is read as the
//! ranking text `white pickup trucks at night`, a captured-date range (March of the latest
//! year it has ended), the excluded label `person` and the dataset `fleet-2024`. What is
//! read, and from which words, is returned as an [`Interpretation`] that every search answer
//! carries (`interpreted`); `--literal` / `"literal": true` turns it off.
//!
//! Owns: the phrase rules ([`interpret`]), the label/dataset [`Vocabulary`], and how an
//! interpretation joins the filter the caller typed ([`Interpretation::apply`]). Does not own:
//! where the vocabulary, today's date and the time zone come from (the front ends, through
//! [`library`]), nor ranking.
//!
//! Invariants:
//! - Pure and deterministic: the same text, vocabulary and [`Clock`] give the same answer; no
//!   I/O, no clock read here.
//! - Every word of the query is accounted for: it is in [`Interpretation::text`] or in the
//!   `words` of exactly one [`Interpreted`] filter.
//! - When in doubt, do not filter: a label is a requirement only after a cue ("with a dog",
//!   "containing plates") and an exclusion only after "without / no / not / excluding"; a
//!   label word followed by more description ("with a dog bowl") stays text; a date word that
//!   could be something else ("may", "march", "2021") needs a preposition or a time verb and,
//!   unless it is unmistakable, a clause end after it; datasets need "in / from / dataset",
//!   splits "split / subset" (or "set" after a usual split name: "the training set").
//! - Work is bounded: at most [`MAX_WORDS`] words are read (longer queries keep the rest as
//!   text), labels and datasets are matched up to [`MAX_PHRASE_WORDS`] words long.

use std::collections::{BTreeMap, HashSet};

use chrono::NaiveDate;
use indexer::filter::{FilenameMatch, MAX_PATTERN_CHARS, normalize_label};
use indexer::record::DateAxis;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::params::FilterParams;
pub use zone::Zone;

pub mod dates;
pub mod library;
mod reader;
#[cfg(test)]
mod tests;
pub mod zone;

pub use dates::Clock;
pub use reader::cue_words;
use reader::{Reader, words};

/// Most words of a query that are read (the rest is kept as text).
pub const MAX_WORDS: usize = 256;
/// Longest label or dataset name matched, in words.
pub const MAX_PHRASE_WORDS: usize = 4;

/// The labels and datasets a library knows, with plural forms and synonyms, for matching.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Vocabulary {
    /// Lower-case form (singular, plural or synonym, words joined by one space) -> label.
    labels: BTreeMap<String, String>,
    /// Lower-case name -> dataset.
    datasets: BTreeMap<String, String>,
    /// Lower-case name (and the long form of a usual short one) -> split.
    splits: BTreeMap<String, String>,
}

/// English plural of the last word of `phrase` (regular rules plus common irregular nouns).
pub fn plural(phrase: &str) -> String {
    let (head, last) = match phrase.rsplit_once(' ') {
        Some((h, l)) => (format!("{h} "), l),
        None => (String::new(), phrase),
    };
    const IRREGULAR: [(&str, &str); 12] = [
        ("person", "people"),
        ("man", "men"),
        ("woman", "women"),
        ("child", "children"),
        ("mouse", "mice"),
        ("foot", "feet"),
        ("tooth", "teeth"),
        ("goose", "geese"),
        ("knife", "knives"),
        ("leaf", "leaves"),
        ("sheep", "sheep"),
        ("deer", "deer"),
    ];
    let plural = if let Some((_, p)) = IRREGULAR.iter().find(|(s, _)| *s == last) {
        (*p).to_owned()
    } else if last.ends_with(['s', 'x', 'z']) || last.ends_with("ch") || last.ends_with("sh") {
        format!("{last}es")
    } else if last.len() > 1
        && last.ends_with('y')
        && !last[..last.len() - 1].ends_with(['a', 'e', 'i', 'o', 'u'])
    {
        format!("{}ies", &last[..last.len() - 1])
    } else {
        format!("{last}s")
    };
    format!("{head}{plural}")
}

/// Lower case, words joined by one space.
fn fold(text: &str) -> String {
    normalize_label(text)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

impl Vocabulary {
    /// The vocabulary of `labels` and `datasets` as the library stores them; `synonyms` maps a
    /// word or phrase to one of the labels (entries naming an unknown label are ignored: a
    /// filter on it could only match nothing).
    pub fn new<L, D>(labels: L, datasets: D, synonyms: &BTreeMap<String, String>) -> Self
    where
        L: IntoIterator,
        L::Item: AsRef<str>,
        D: IntoIterator,
        D::Item: AsRef<str>,
    {
        let mut v = Vocabulary::default();
        let mut known: BTreeMap<String, String> = BTreeMap::new();
        for l in labels {
            let label = l.as_ref();
            let folded = fold(label);
            if folded.is_empty() || folded.split(' ').count() > MAX_PHRASE_WORDS {
                continue;
            }
            known.insert(folded, label.to_owned());
        }
        // Exact names first, then plurals and synonyms where they do not shadow a name.
        for (folded, label) in &known {
            v.labels.insert(folded.clone(), label.clone());
        }
        for (folded, label) in &known {
            v.labels
                .entry(plural(folded))
                .or_insert_with(|| label.clone());
        }
        for (word, target) in synonyms {
            let (w, t) = (fold(word), fold(target));
            if w.is_empty() || w.split(' ').count() > MAX_PHRASE_WORDS {
                continue;
            }
            if let Some(label) = known.get(&t) {
                v.labels.entry(w.clone()).or_insert_with(|| label.clone());
                v.labels.entry(plural(&w)).or_insert_with(|| label.clone());
            }
        }
        for d in datasets {
            let folded = fold(d.as_ref());
            if !folded.is_empty() && folded.split(' ').count() <= MAX_PHRASE_WORDS {
                v.datasets.insert(folded, d.as_ref().to_owned());
            }
        }
        v
    }

    /// The label `words` name, if any.
    pub fn label(&self, words: &str) -> Option<&str> {
        self.labels.get(words).map(String::as_str)
    }

    /// The dataset `words` name, if any.
    pub fn dataset(&self, words: &str) -> Option<&str> {
        self.datasets.get(words).map(String::as_str)
    }

    /// These splits (`train`, `val`, ... as the library stores them) too; the long forms
    /// people type (`training`, `validation`, `testing`) name the usual short ones when the
    /// library has them and no split of that name.
    #[must_use]
    pub fn with_splits<S>(mut self, splits: S) -> Self
    where
        S: IntoIterator,
        S::Item: AsRef<str>,
    {
        for s in splits {
            let folded = fold(s.as_ref());
            if !folded.is_empty() && !folded.contains(' ') {
                self.splits.insert(folded, s.as_ref().to_owned());
            }
        }
        for (long, short) in [
            ("training", "train"),
            ("validation", "val"),
            ("validation", "valid"),
            ("testing", "test"),
        ] {
            if let Some(name) = self.splits.get(short).cloned() {
                self.splits.entry(long.to_owned()).or_insert(name);
            }
        }
        self
    }

    /// The split `word` names, if any.
    pub fn split(&self, word: &str) -> Option<&str> {
        self.splits.get(word).map(String::as_str)
    }
}

/// What kind of filter a phrase added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FilterKind {
    /// A required label ("with a dog").
    Label,
    /// An excluded label ("without people").
    NoLabel,
    /// A dataset ("in fleet-2024").
    Dataset,
    /// A split ("in the val split", "training set").
    Split,
    /// A date range on one time axis ("taken last March").
    Date,
    /// A file-name glob (`IMG_2021*.jpg`).
    Filename,
}

/// One filter read from the query, with the words that produced it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Interpreted {
    /// Kind of filter.
    pub kind: FilterKind,
    /// The words of the query it came from, as typed.
    pub words: String,
    /// The label, dataset or glob (not for dates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The time axis of a date range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub axis: Option<DateAxis>,
    /// First instant included (RFC 3339 in the interpretation's time zone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Last instant included (RFC 3339 in the interpretation's time zone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// Set when a filter the caller gave explicitly took precedence and this one was not
    /// applied (a dataset or file name given by flag or field).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub overridden: bool,
}

/// What the interpreter read from a query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Interpretation {
    /// The ranking text: the words no filter took. When every word became a filter this is
    /// empty and the search ranks by the whole query (see [`Interpretation::ranking_text`]).
    pub text: String,
    /// Filters added, in the order of their words.
    pub filters: Vec<Interpreted>,
    /// The time zone relative dates were read in (`+00:00` is UTC).
    pub time_zone: String,
    /// The local date relative dates ("yesterday", "last 30 days") were read against. The
    /// next page's cursor carries it, so paging on past midnight reads them as the first
    /// page did (see [`Interpretation::pin`]).
    #[schema(value_type = String, format = Date)]
    pub today: NaiveDate,
}

impl Interpretation {
    /// The text to rank by: [`Interpretation::text`], or the whole query when no word was
    /// left (the filters still apply).
    pub fn ranking_text<'a>(&'a self, query: &'a str) -> &'a str {
        if self.text.trim().is_empty() {
            query
        } else {
            &self.text
        }
    }

    /// The cursor a front end hands out for the next page of this interpreted search: the
    /// engine's cursor with the day relative dates were read against (`<cursor>~2026-12-02`).
    /// The engine's cursor is bound to the request with its filters as read, so without the
    /// day a search for "yesterday" paged past midnight would read another range and its
    /// cursor would be refused; [`unpin_cursor`] gives both back.
    #[must_use]
    pub fn pin(&self, next_cursor: Option<String>) -> Option<String> {
        next_cursor.map(|c| format!("{c}{PIN}{}", self.today))
    }

    /// One line for people: `filters: label=dog (with a dog); captured 2026-03-01..2026-03-31
    /// (last March) | text: "white trucks"`.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self
            .filters
            .iter()
            .map(|f| {
                let what = match f.kind {
                    FilterKind::Label => format!("label={}", f.value.as_deref().unwrap_or("")),
                    FilterKind::NoLabel => {
                        format!("no-label={}", f.value.as_deref().unwrap_or(""))
                    }
                    FilterKind::Dataset => {
                        format!("dataset={}", f.value.as_deref().unwrap_or(""))
                    }
                    FilterKind::Split => {
                        format!("split={}", f.value.as_deref().unwrap_or(""))
                    }
                    FilterKind::Filename => {
                        format!("filename={}", f.value.as_deref().unwrap_or(""))
                    }
                    FilterKind::Date => format!(
                        "{} {}..{}",
                        f.axis.map_or("captured", DateAxis::name),
                        f.after.as_deref().map_or("", |d| d.get(..10).unwrap_or(d)),
                        f.before.as_deref().map_or("", |d| d.get(..10).unwrap_or(d)),
                    ),
                };
                let flag = if f.overridden { ", overridden" } else { "" };
                format!("{what} ({}{flag})", f.words)
            })
            .collect();
        format!(
            "interpreted: {} | text: {:?}",
            if parts.is_empty() {
                "no filters".to_owned()
            } else {
                parts.join("; ")
            },
            self.text
        )
    }

    /// Joins these filters to the filter the caller gave: labels and excluded labels are
    /// added, date ranges narrow the caller's range on the same axis (both must hold), a
    /// dataset or file name the caller gave wins (the interpreted one is marked
    /// `overridden`). A date the caller gave that does not parse is left as it is, for the
    /// filter's own check to refuse by its name.
    pub fn apply(&mut self, filter: &mut FilterParams) {
        let explicit_datasets = !filter.datasets.is_empty();
        let explicit_splits = !filter.splits.is_empty();
        let explicit_name = filter.filename.is_some()
            || filter.filename_prefix.is_some()
            || filter.filename_glob.is_some();
        for f in &mut self.filters {
            match f.kind {
                FilterKind::Label | FilterKind::NoLabel => {
                    let list = if f.kind == FilterKind::Label {
                        &mut filter.labels
                    } else {
                        &mut filter.no_labels
                    };
                    let value = f.value.clone().unwrap_or_default();
                    if !list
                        .iter()
                        .any(|l| normalize_label(l) == normalize_label(&value))
                    {
                        list.push(value);
                    }
                }
                FilterKind::Dataset => {
                    if explicit_datasets {
                        f.overridden = true;
                    } else if let Some(v) = &f.value
                        && !filter.datasets.contains(v)
                    {
                        filter.datasets.push(v.clone());
                    }
                }
                FilterKind::Split => {
                    if explicit_splits {
                        f.overridden = true;
                    } else if let Some(v) = &f.value
                        && !filter.splits.contains(v)
                    {
                        filter.splits.push(v.clone());
                    }
                }
                FilterKind::Filename => {
                    if explicit_name || filter.filename_glob.is_some() {
                        f.overridden = true;
                    } else {
                        filter.filename_glob = f.value.clone();
                    }
                }
                FilterKind::Date => {
                    let axis = f.axis.unwrap_or(DateAxis::Captured);
                    let (after, before) = date_fields(filter, axis);
                    narrow(after, f.after.as_deref(), false);
                    narrow(before, f.before.as_deref(), true);
                }
            }
        }
    }
}

fn date_fields(f: &mut FilterParams, axis: DateAxis) -> (&mut Option<String>, &mut Option<String>) {
    match axis {
        DateAxis::Captured => (&mut f.captured_after, &mut f.captured_before),
        DateAxis::Created => (&mut f.created_after, &mut f.created_before),
        DateAxis::Annotated => (&mut f.annotated_after, &mut f.annotated_before),
        DateAxis::Ingested => (&mut f.ingested_after, &mut f.ingested_before),
    }
}

/// Keeps the tighter of the caller's bound and the interpreted one.
fn narrow(slot: &mut Option<String>, ours: Option<&str>, upper: bool) {
    let Some(ours) = ours else { return };
    let Some(theirs) = slot.as_deref() else {
        *slot = Some(ours.to_owned());
        return;
    };
    let parse = if upper {
        indexer::dates::parse_date_end
    } else {
        indexer::dates::parse_date
    };
    if let (Ok(t), Ok(o)) = (parse(theirs), parse(ours))
        && ((upper && o < t) || (!upper && o > t))
    {
        *slot = Some(ours.to_owned());
    }
}

/// Separates the engine's cursor from the day an interpreted search's cursor carries.
const PIN: char = '~';

/// A cursor as a front end received it, split into the engine's cursor and the day its
/// relative dates were read against (`None` without one: a first page, a literal search's
/// cursor). The day is only a reading hint: the engine's cursor stays bound to the filters as
/// read, so a changed day that changes them is refused by the engine.
///
/// # Errors
/// A cursor whose day is not a date, named as the cursor.
pub fn unpin_cursor(
    cursor: Option<&str>,
) -> Result<(Option<String>, Option<NaiveDate>), crate::search::SearchError> {
    let Some(cursor) = cursor.filter(|c| !c.is_empty()) else {
        return Ok((None, None));
    };
    let Some((engine, day)) = cursor.rsplit_once(PIN) else {
        return Ok((Some(cursor.to_owned()), None));
    };
    let day = NaiveDate::parse_from_str(day, "%Y-%m-%d").map_err(|_| {
        crate::search::SearchError::Invalid(format!(
            "cursor {:?} is not valid for this request (pass the next_cursor of the previous \
             page of the same request)",
            indexer::filter::shorten(cursor, 64)
        ))
    })?;
    Ok((Some(engine.to_owned()), Some(day)))
}

/// Reads `query` against the library's `vocab` with today's date from `clock`, in the time
/// zone `zone`. Never fails: what it cannot read stays ranking text.
pub fn interpret(
    query: &str,
    vocab: &Vocabulary,
    clock: &Clock,
    zone: impl Into<Zone>,
) -> Interpretation {
    let zone = zone.into();
    let all = words(query);
    let read = all.len().min(MAX_WORDS);
    let reader = Reader {
        vocab,
        clock,
        zone,
        w: &all[..read],
    };
    let mut kept: Vec<&str> = Vec::new();
    let mut filters = Vec::new();
    let mut i = 0;
    while i < read {
        let Some(found) = reader.rule_at(i) else {
            kept.push(all[i].raw);
            i += 1;
            continue;
        };
        for (n, mut f) in found {
            let n = n.min(read - i);
            f.words = all[i..i + n]
                .iter()
                .map(|w| w.raw)
                .collect::<Vec<_>>()
                .join(" ");
            filters.push(f);
            i += n;
        }
    }
    kept.extend(all[read..].iter().map(|w| w.raw));
    Interpretation {
        text: kept.join(" "),
        filters,
        time_zone: zone.to_string(),
        today: clock.today,
    }
}
