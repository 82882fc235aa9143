//! Date phrases of plain English ("last March", "since May 3", "between 2020 and 2022") read
//! as inclusive ranges of whole days in the caller's time zone.
//!
//! Pure: every function takes the words and a [`Clock`] (today's date where the user is) and
//! returns a range or `None`. A phrase that only *could* be a date (a bare year, "may 3") needs
//! a preposition or a verb before it; an unmistakable one ("yesterday", "2021-03-04",
//! "last 30 days") needs none. Every date produced lies in the years the index accepts
//! ([`indexer::dates::MIN_YEAR`]..=[`indexer::dates::MAX_YEAR`]); any arithmetic that would
//! leave them gives `None`, so the words stay ranking text.

use chrono::{Datelike, Days, Months, NaiveDate};
use indexer::dates::{MAX_YEAR, MIN_YEAR};
use indexer::record::DateAxis;

/// Today's date in the user's time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    /// The local date "today" means.
    pub today: NaiveDate,
}

/// An inclusive range of local days; either end may be open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayRange {
    /// First day included.
    pub after: Option<NaiveDate>,
    /// Last day included.
    pub before: Option<NaiveDate>,
}

/// Largest count in "last N days/weeks/months/years" read (beyond it the words stay text).
pub const MAX_COUNT: u32 = 100_000;

/// The time axis a verb names (`taken` -> captured, `annotated`, `uploaded` -> ingested, ...).
pub fn axis_verb(word: &str) -> Option<DateAxis> {
    Some(match word {
        "taken" | "captured" | "shot" | "photographed" | "recorded" => DateAxis::Captured,
        "annotated" | "labelled" | "labeled" => DateAxis::Annotated,
        "ingested" | "uploaded" | "added" | "indexed" | "imported" => DateAxis::Ingested,
        "created" => DateAxis::Created,
        _ => return None,
    })
}

/// Month number of an English month name or its usual abbreviation.
pub fn month(word: &str) -> Option<u32> {
    Some(match word {
        "january" | "jan" => 1,
        "february" | "feb" => 2,
        "march" | "mar" => 3,
        "april" | "apr" => 4,
        "may" => 5,
        "june" | "jun" => 6,
        "july" | "jul" => 7,
        "august" | "aug" => 8,
        "september" | "sep" | "sept" => 9,
        "october" | "oct" => 10,
        "november" | "nov" => 11,
        "december" | "dec" => 12,
        _ => return None,
    })
}

fn in_years(d: NaiveDate) -> Option<NaiveDate> {
    (MIN_YEAR..=MAX_YEAR).contains(&d.year()).then_some(d)
}

fn day(y: i32, m: u32, d: u32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(y, m, d).and_then(in_years)
}

/// First and last day of month `m` of year `y`.
fn month_span(y: i32, m: u32) -> Option<(NaiveDate, NaiveDate)> {
    let first = day(y, m, 1)?;
    let last = first.checked_add_months(Months::new(1))?.pred_opt()?;
    Some((first, in_years(last)?))
}

fn year(word: &str) -> Option<i32> {
    if word.len() != 4 || !word.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let y: i32 = word.parse().ok()?;
    (MIN_YEAR..=MAX_YEAR).contains(&y).then_some(y)
}

/// Day of month: `3`, `03`, `3rd`, `21st`.
fn day_of_month(word: &str) -> Option<u32> {
    let digits = word
        .strip_suffix("st")
        .or_else(|| word.strip_suffix("nd"))
        .or_else(|| word.strip_suffix("rd"))
        .or_else(|| word.strip_suffix("th"))
        .unwrap_or(word);
    if digits.is_empty() || digits.len() > 2 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let d: u32 = digits.parse().ok()?;
    (1..=31).contains(&d).then_some(d)
}

fn count(word: &str) -> Option<u32> {
    let small = [
        "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
        "twelve",
    ];
    if let Some(i) = small.iter().position(|w| *w == word) {
        return Some(i as u32 + 1);
    }
    if word.is_empty() || word.len() > 6 || !word.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u32 = word.parse().ok()?;
    (1..=MAX_COUNT).contains(&n).then_some(n)
}

/// ISO forms: `2021-03-04`, `2021/03/04` (a day), `2021-03` (a month).
fn iso(word: &str) -> Option<(NaiveDate, NaiveDate)> {
    for fmt in ["%Y-%m-%d", "%Y/%m/%d"] {
        if word.len() == 10
            && let Ok(d) = NaiveDate::parse_from_str(word, fmt)
        {
            let d = in_years(d)?;
            return Some((d, d));
        }
    }
    let (y, m) = word.split_once('-')?;
    if m.len() != 2 || !m.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    month_span(year(y)?, m.parse().ok()?)
}

/// A point in time the words at `w[0..]` name: the days it covers, how many words it took,
/// and whether it is unmistakably a date (needs no preposition).
pub fn point(w: &[&str], clock: &Clock) -> Option<(usize, NaiveDate, NaiveDate, bool)> {
    let today = clock.today;
    let first = *w.first()?;
    if let Some((a, b)) = iso(first) {
        return Some((1, a, b, true));
    }
    match first {
        "today" => return Some((1, today, today, true)),
        "yesterday" => {
            let y = in_years(today.pred_opt()?)?;
            return Some((1, y, y, true));
        }
        _ => {}
    }
    if matches!(first, "last" | "past" | "previous" | "this") {
        let second = *w.get(1)?;
        let this = first == "this";
        match second {
            "week" => {
                let monday = today
                    .checked_sub_days(Days::new(today.weekday().num_days_from_monday().into()))?;
                let (a, b) = if this {
                    (monday, today)
                } else {
                    (monday.checked_sub_days(Days::new(7))?, monday.pred_opt()?)
                };
                return Some((2, in_years(a)?, in_years(b)?, true));
            }
            "month" => {
                let (a, b) = if this {
                    (day(today.year(), today.month(), 1)?, today)
                } else {
                    let prev = today.checked_sub_months(Months::new(1))?;
                    month_span(prev.year(), prev.month())?
                };
                return Some((2, a, b, true));
            }
            "year" => {
                let (a, b) = if this {
                    (day(today.year(), 1, 1)?, today)
                } else {
                    (day(today.year() - 1, 1, 1)?, day(today.year() - 1, 12, 31)?)
                };
                return Some((2, a, b, true));
            }
            _ => {}
        }
        if !this {
            // last N days/weeks/months/years: up to today.
            if let (Some(n), Some(unit)) = (count(second), w.get(2)) {
                let start = match unit.trim_end_matches('s') {
                    "day" => today.checked_sub_days(Days::new(n.into()))?,
                    "week" => today.checked_sub_days(Days::new(u64::from(n) * 7))?,
                    "month" => today.checked_sub_months(Months::new(n))?,
                    "year" => today.checked_sub_months(Months::new(n.checked_mul(12)?))?,
                    _ => return None,
                };
                return Some((3, in_years(start)?, today, true));
            }
            // last March: the latest March that has ended.
            if first == "last"
                && let Some(m) = month(second)
            {
                let y = if m < today.month() {
                    today.year()
                } else {
                    today.year() - 1
                };
                let (a, b) = month_span(y, m)?;
                return Some((2, a, b, true));
            }
        }
        return None;
    }
    if let Some(y) = year(first) {
        return Some((1, day(y, 1, 1)?, day(y, 12, 31)?, false));
    }
    // March 2021 / May 3 / May 3, 2021 / May 3rd 2021
    if let Some(m) = month(first) {
        if let Some(y) = w.get(1).and_then(|s| year(s)) {
            let (a, b) = month_span(y, m)?;
            return Some((2, a, b, true));
        }
        if let Some(d) = w.get(1).and_then(|s| day_of_month(s)) {
            if let Some(y) = w.get(2).and_then(|s| year(s)) {
                let x = day(y, m, d)?;
                return Some((3, x, x, true));
            }
            return latest(today, m, d).map(|x| (2, x, x, false));
        }
        // A bare month: the latest one that has begun.
        let y = if m <= today.month() {
            today.year()
        } else {
            today.year() - 1
        };
        let (a, b) = month_span(y, m)?;
        return Some((1, a, b, false));
    }
    // 3 May / 3 May 2021
    if let (Some(d), Some(m)) = (day_of_month(first), w.get(1).and_then(|s| month(s))) {
        if let Some(y) = w.get(2).and_then(|s| year(s)) {
            let x = day(y, m, d)?;
            return Some((3, x, x, true));
        }
        return latest(today, m, d).map(|x| (2, x, x, false));
    }
    None
}

/// The latest `m`/`d` on or before today.
fn latest(today: NaiveDate, m: u32, d: u32) -> Option<NaiveDate> {
    match day(today.year(), m, d) {
        Some(x) if x <= today => Some(x),
        _ => day(today.year() - 1, m, d),
    }
}

/// A date phrase at `w[0..]`: `between X and Y`, `from X to Y`, `since X`, `after X`,
/// `before X`, `until X`, `in|on|during|from X`, or an unmistakable `X` alone; `verb` says
/// whether a time verb came just before (then an ambiguous `X` alone counts too). Returns the
/// words taken, the range, and whether the phrase is unmistakable (`between .. and ..`, or an
/// unmistakable `X`): a caller keeps any other phrase only where a clause ends after it.
pub fn phrase(w: &[&str], clock: &Clock, verb: bool) -> Option<(usize, DayRange, bool)> {
    let first = *w.first()?;
    let rest = w.get(1..).unwrap_or_default();
    match first {
        "between" | "from" => {
            if let Some((n1, a, _, _)) = point(rest, clock) {
                let sep = rest.get(n1).copied();
                let joined = if first == "between" {
                    matches!(sep, Some("and"))
                } else {
                    matches!(sep, Some("to" | "until" | "till" | "through"))
                };
                if joined && let Some((n2, _, b, _)) = point(&rest[n1 + 1..], clock) {
                    if b < a {
                        return None;
                    }
                    let range = DayRange {
                        after: Some(a),
                        before: Some(b),
                    };
                    return Some((1 + n1 + 1 + n2, range, true));
                }
            }
            if first == "between" {
                return None;
            }
        }
        "since" | "after" => {
            let (n, a, b, sure) = point(rest, clock)?;
            let after = if first == "since" {
                a
            } else {
                in_years(b.succ_opt()?)?
            };
            let range = DayRange {
                after: Some(after),
                before: None,
            };
            return Some((1 + n, range, sure));
        }
        "before" | "until" | "till" => {
            let (n, a, b, sure) = point(rest, clock)?;
            let before = if first == "before" {
                in_years(a.pred_opt()?)?
            } else {
                b
            };
            let range = DayRange {
                after: None,
                before: Some(before),
            };
            return Some((1 + n, range, sure));
        }
        _ => {}
    }
    if matches!(first, "in" | "on" | "during" | "from" | "over") {
        // "in the last 30 days", "over the past week"
        let the = usize::from(
            rest.first() == Some(&"the")
                && matches!(rest.get(1), Some(&("last" | "past" | "previous"))),
        );
        let (n, a, b, sure) = point(&rest[the..], clock)?;
        let range = DayRange {
            after: Some(a),
            before: Some(b),
        };
        return Some((1 + the + n, range, sure));
    }
    let (n, a, b, sure) = point(w, clock)?;
    let range = DayRange {
        after: Some(a),
        before: Some(b),
    };
    (sure || verb).then_some((n, range, sure))
}
