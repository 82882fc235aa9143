//! The reader: the query's words, the cue words that start or steer a filter, and the rules
//! that turn a phrase at a position into filters.

use super::*;

/// One word of the query: as typed, and folded for matching.
#[derive(Debug)]
pub(super) struct Word<'a> {
    pub(super) raw: &'a str,
    pub(super) norm: String,
    /// The word ends a clause (`,` `;` `.` `!` `?` after it).
    ends_clause: bool,
}

pub(super) fn words(text: &str) -> Vec<Word<'_>> {
    text.split_whitespace()
        .map(|raw| {
            let trimmed = raw.trim_end_matches(['"', '\'', ')', ']']);
            let ends_clause = trimmed.ends_with([',', ';', '.', '!', '?', ':']);
            let norm = raw
                .trim_matches(|c: char| !c.is_alphanumeric() && !matches!(c, '*' | '?'))
                .to_lowercase();
            Word {
                raw,
                norm,
                ends_clause,
            }
        })
        .collect()
}

/// Words after which a label or an ambiguous date is whole (the description does not go on).
const BOUNDARY: [&str; 36] = [
    "and",
    "or",
    "nor",
    "in",
    "on",
    "at",
    "from",
    "during",
    "since",
    "before",
    "after",
    "until",
    "without",
    "with",
    "no",
    "not",
    "excluding",
    "except",
    "near",
    "by",
    "under",
    "over",
    "between",
    "taken",
    "captured",
    "shot",
    "annotated",
    "labelled",
    "labeled",
    "ingested",
    "uploaded",
    "added",
    "created",
    "last",
    "yesterday",
    "today",
];

/// Words after "with" (and the other cues) that may come before the label.
const ARTICLES: [&str; 14] = [
    "a", "an", "the", "some", "any", "one", "two", "three", "four", "five", "several", "many",
    "multiple", "more",
];

const REQUIRE_CUES: [&str; 8] = [
    "with",
    "containing",
    "contains",
    "contain",
    "showing",
    "featuring",
    "including",
    "having",
];

const EXCLUDE_CUES: [&str; 6] = ["without", "no", "not", "excluding", "except", "minus"];

const DATASET_CUES: [&str; 3] = ["in", "from", "dataset"];

/// Words that make a known split name a filter: "val split", "split val", "subset test".
const SPLIT_CUES: [&str; 2] = ["split", "subset"];

/// Split names that "set" makes a filter ("the training set"); "train set" is left as text,
/// since a toy train set is a thing a picture shows.
const SET_SPLITS: [&str; 6] = ["training", "val", "validation", "test", "testing", "dev"];

/// Every word that can start or steer a filter: a query without any of these (and without
/// digits, `*` or `?`) yields no filter. The property tests rely on this list.
pub fn cue_words() -> HashSet<&'static str> {
    let mut s: HashSet<&'static str> = HashSet::new();
    s.extend(REQUIRE_CUES);
    s.extend(EXCLUDE_CUES);
    s.extend(DATASET_CUES);
    s.extend(SPLIT_CUES);
    s.insert("set");
    s.extend([
        "between",
        "from",
        "since",
        "after",
        "before",
        "until",
        "till",
        "in",
        "on",
        "during",
        "today",
        "yesterday",
        "last",
        "past",
        "previous",
        "this",
        "named",
        "matching",
        "over",
    ]);
    s.extend([
        "taken",
        "captured",
        "shot",
        "photographed",
        "recorded",
        "annotated",
        "labelled",
        "labeled",
        "ingested",
        "uploaded",
        "added",
        "indexed",
        "imported",
        "created",
    ]);
    s
}

pub(super) struct Reader<'v, 'w> {
    pub(super) vocab: &'v Vocabulary,
    pub(super) clock: &'v Clock,
    pub(super) zone: Zone,
    pub(super) w: &'w [Word<'w>],
}

impl Reader<'_, '_> {
    fn norm(&self, i: usize) -> &str {
        self.w.get(i).map_or("", |w| w.norm.as_str())
    }

    /// Whether a phrase ending before word `end` is whole.
    fn boundary(&self, end: usize) -> bool {
        end >= self.w.len() || self.w[end - 1].ends_clause || BOUNDARY.contains(&self.norm(end))
    }

    /// The longest known label (or dataset) at `i`, whole: (words taken, name).
    fn name_at(&self, i: usize, dataset: bool) -> Option<(usize, String)> {
        let max = MAX_PHRASE_WORDS.min(self.w.len().saturating_sub(i));
        for n in (1..=max).rev() {
            // A clause end inside the phrase breaks it.
            if self.w[i..i + n - 1].iter().any(|w| w.ends_clause) {
                continue;
            }
            let key = self.w[i..i + n]
                .iter()
                .map(|w| w.norm.as_str())
                .collect::<Vec<_>>()
                .join(" ");
            let found = if dataset {
                self.vocab.dataset(&key)
            } else {
                self.vocab.label(&key)
            };
            if let Some(name) = found
                && self.boundary(i + n)
            {
                return Some((n, name.to_owned()));
            }
        }
        None
    }

    /// A split at `i`: `[in|from] [the] S split|subset`, `[in|from] [the] split|subset S`, or
    /// `[in|from] [the] S set` for the usual names of [`SET_SPLITS`], where S is a split the
    /// library has and the phrase ends there: (words taken from `i`, split).
    fn split_at(&self, i: usize) -> Option<(usize, String)> {
        let mut j = i;
        if matches!(self.norm(j), "in" | "from") {
            j += 1;
        }
        if self.norm(j) == "the" {
            j += 1;
        }
        let (name, cue) = if SPLIT_CUES.contains(&self.norm(j)) {
            (self.norm(j + 1), true)
        } else {
            let next = self.norm(j + 1);
            let name = self.norm(j);
            let cue = SPLIT_CUES.contains(&next) || (next == "set" && SET_SPLITS.contains(&name));
            (name, cue)
        };
        let split = self.vocab.split(name)?;
        // No clause end inside the phrase, and a whole phrase.
        let inside = self.w[i..(j + 1).min(self.w.len())]
            .iter()
            .any(|w| w.ends_clause);
        (cue && !inside && self.boundary(j + 2)).then(|| (j + 2 - i, split.to_owned()))
    }

    /// A list of labels after a cue at `i`: `[article] L (and|or|, [article] [cue] L)*`, as
    /// (words taken, label) per item; the first item's words start at `i`.
    fn labels_after(&self, mut i: usize, cues: &[&str]) -> Option<Vec<(usize, String)>> {
        let mut found = Vec::new();
        let mut item_start = i;
        loop {
            let mut j = i;
            if ARTICLES.contains(&self.norm(j)) {
                j += 1;
            }
            match self.name_at(j, false) {
                Some((n, label)) => {
                    i = j + n;
                    found.push((i - item_start, label));
                }
                None => break,
            }
            // Continue the list: "and a cat", "or dogs", "and no cats".
            let sep = self.norm(i);
            let joined = matches!(sep, "and" | "or" | "nor");
            if !joined && !self.w[i - 1].ends_clause {
                break;
            }
            let mut k = if joined { i + 1 } else { i };
            if cues.contains(&self.norm(k)) {
                k += 1;
            }
            let mut probe = k;
            if ARTICLES.contains(&self.norm(probe)) {
                probe += 1;
            }
            if self.name_at(probe, false).is_none() {
                break;
            }
            item_start = i;
            i = k;
        }
        (!found.is_empty()).then_some(found)
    }

    fn date_at(&self, i: usize) -> Option<(usize, DateAxis, dates::DayRange)> {
        let (axis, verb) = match dates::axis_verb(self.norm(i)) {
            Some(a) => (a, true),
            None => (DateAxis::Captured, false),
        };
        let from = i + usize::from(verb);
        let norms: Vec<&str> = self.w[from..]
            .iter()
            .take(8)
            .map(|w| w.norm.as_str())
            .collect();
        // A clause end inside the phrase cuts it, except the comma of "May 3, 2021".
        let is_year = |s: &str| s.len() == 4 && s.bytes().all(|b| b.is_ascii_digit());
        let cut = self.w[from..]
            .iter()
            .take(8)
            .enumerate()
            .position(|(k, w)| w.ends_clause && !norms.get(k + 1).is_some_and(|n| is_year(n)))
            .map_or(norms.len(), |p| p + 1);
        let (n, range, sure) = dates::phrase(&norms[..cut], self.clock, verb)?;
        if !sure && !self.boundary(from + n) {
            return None;
        }
        Some((from + n - i, axis, range))
    }

    fn glob_at(&self, i: usize) -> Option<(usize, String)> {
        let lead = usize::from(matches!(self.norm(i), "named" | "matching"));
        let raw = self.w.get(i + lead)?.raw;
        let g = raw
            .trim_matches(|c: char| matches!(c, '"' | '\'' | '`' | ',' | ';' | '(' | ')'))
            .trim_end_matches(['.', ':']);
        let has_star = g.contains('*');
        let has_q = g.contains('?')
            && g.rsplit_once('.')
                .is_some_and(|(_, ext)| ext.chars().any(char::is_alphanumeric));
        if !(has_star || has_q)
            || !g.chars().any(char::is_alphanumeric)
            || g.chars().count() > MAX_PATTERN_CHARS
        {
            return None;
        }
        FilenameMatch::Glob(g.to_owned()).compile().ok()?;
        Some((lead + 1, g.to_owned()))
    }

    fn instant(&self, d: NaiveDate, end: bool) -> String {
        self.zone.day_bound(d, end)
    }

    /// The rule at word `i`: its filters in order, each with the number of words it took.
    pub(super) fn rule_at(&self, i: usize) -> Option<Vec<(usize, Interpreted)>> {
        let one = |kind, value: String| Interpreted {
            kind,
            words: String::new(),
            value: Some(value),
            axis: None,
            after: None,
            before: None,
            overridden: false,
        };
        if let Some((n, g)) = self.glob_at(i) {
            return Some(vec![(n, one(FilterKind::Filename, g))]);
        }
        if let Some((n, s)) = self.split_at(i) {
            return Some(vec![(n, one(FilterKind::Split, s))]);
        }
        let word = self.norm(i);
        // Datasets before dates: a dataset named "2021" is the dataset.
        if DATASET_CUES.contains(&word) {
            let lead = if word != "dataset" && self.norm(i + 1) == "dataset" {
                2
            } else {
                1
            };
            if let Some((n, d)) = self.name_at(i + lead, true) {
                let mut at = i + lead + n;
                let mut found = vec![(lead + n, one(FilterKind::Dataset, d))];
                // "in fleet-2024 or fleet-2025"
                while matches!(self.norm(at), "or" | "and")
                    && let Some((n2, d2)) = self.name_at(at + 1, true)
                {
                    found.push((1 + n2, one(FilterKind::Dataset, d2)));
                    at += 1 + n2;
                }
                return Some(found);
            }
        }
        if let Some((n, axis, range)) = self.date_at(i) {
            let f = Interpreted {
                kind: FilterKind::Date,
                words: String::new(),
                value: None,
                axis: Some(axis),
                after: range.after.map(|d| self.instant(d, false)),
                before: range.before.map(|d| self.instant(d, true)),
                overridden: false,
            };
            // Local days at the ends of the accepted years can fall outside them in UTC.
            let valid = [&f.after, &f.before]
                .into_iter()
                .flatten()
                .all(|d| indexer::dates::parse_date(d).is_ok());
            if valid {
                return Some(vec![(n, f)]);
            }
        }
        // "with no dogs" is an exclusion.
        let (exclude, lead) = if word == "with" && matches!(self.norm(i + 1), "no" | "out") {
            (true, 2)
        } else if EXCLUDE_CUES.contains(&word) {
            (true, 1)
        } else if REQUIRE_CUES.contains(&word) {
            (false, 1)
        } else {
            return None;
        };
        let cues: &[&str] = if exclude {
            &EXCLUDE_CUES
        } else {
            &REQUIRE_CUES
        };
        let kind = if exclude {
            FilterKind::NoLabel
        } else {
            FilterKind::Label
        };
        let mut items = self.labels_after(i + lead, cues)?;
        items[0].0 += lead;
        Some(items.into_iter().map(|(n, l)| (n, one(kind, l))).collect())
    }
}
