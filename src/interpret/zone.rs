//! The time zone relative dates are read in: UTC, a fixed offset (`+01:00`), or an IANA zone
//! (`Europe/Paris`) whose offset changes with daylight saving time.
//!
//! A named zone's day is its own: "yesterday" in `Europe/Paris` on a spring-forward day runs
//! from 00:00 +01:00 to 23:59:59 +02:00. Where a local midnight does not exist (zones that
//! skip it when the clocks change) the day starts at the first local time that does; where a
//! local time happens twice (clocks going back) the day's start takes the earlier and its end
//! the later instant, so the range never loses a record of that day.

use std::fmt;

use chrono::{
    DateTime, Duration, FixedOffset, LocalResult, NaiveDate, NaiveDateTime, NaiveTime,
    SecondsFormat, TimeZone, Utc,
};
use chrono_tz::Tz;

use crate::search::SearchError;

/// Longest time zone accepted, in characters (the longest IANA name is 32).
pub const MAX_TIME_ZONE_CHARS: usize = 40;

/// A time zone: a fixed offset from UTC or an IANA zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// A fixed offset (UTC is the zero offset).
    Offset(FixedOffset),
    /// An IANA zone such as `Europe/Paris`, with its daylight saving rules.
    Named(Tz),
}

impl Zone {
    /// UTC.
    #[must_use]
    pub fn utc() -> Self {
        Self::Offset(FixedOffset::east_opt(0).expect("zero offset"))
    }

    /// Parses `UTC`, `Z`, a fixed offset (`+01:00`, `-0530`, `UTC+2`, `GMT-3`) or an IANA
    /// name (`Europe/Paris`, any letter case).
    ///
    /// # Errors
    /// [`SearchError::Invalid`] naming the accepted forms.
    pub fn parse(text: &str) -> Result<Self, SearchError> {
        let bad = || {
            SearchError::Invalid(format!(
                "time zone {:?} is not UTC, an offset such as +01:00 or -05:30, or an IANA \
                 name such as Europe/Paris",
                indexer::filter::shorten(text, MAX_TIME_ZONE_CHARS)
            ))
        };
        let t = text.trim();
        if t.is_empty() || t.chars().count() > MAX_TIME_ZONE_CHARS {
            return Err(bad());
        }
        if let Some(offset) = fixed_offset(t) {
            return Ok(Self::Offset(offset));
        }
        Tz::from_str_insensitive(t)
            .map(Self::Named)
            .map_err(|_| bad())
    }

    /// The local date at `now`.
    #[must_use]
    pub fn today(&self, now: DateTime<Utc>) -> NaiveDate {
        match self {
            Self::Offset(o) => now.with_timezone(o).date_naive(),
            Self::Named(tz) => now.with_timezone(tz).date_naive(),
        }
    }

    /// The first instant of local day `d` (`end` false) or its last second (`end` true), as
    /// RFC 3339 with the offset in force then (`Z` for a zero offset).
    #[must_use]
    pub fn day_bound(&self, d: NaiveDate, end: bool) -> String {
        let t = if end {
            NaiveTime::from_hms_opt(23, 59, 59)
        } else {
            NaiveTime::from_hms_opt(0, 0, 0)
        }
        .expect("valid time");
        let local = d.and_time(t);
        let fixed = match self {
            Self::Offset(o) => resolve(o, local, end),
            Self::Named(tz) => resolve(tz, local, end),
        };
        fixed.to_rfc3339_opts(SecondsFormat::Secs, true)
    }
}

impl Default for Zone {
    fn default() -> Self {
        Self::utc()
    }
}

impl From<FixedOffset> for Zone {
    fn from(o: FixedOffset) -> Self {
        Self::Offset(o)
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Offset(o) => write!(f, "{o}"),
            Self::Named(tz) => f.write_str(tz.name()),
        }
    }
}

/// The instant of `local` in `zone`: the earlier of two for a start, the later for an end;
/// across a gap, the first existing local time after it (a start) or the last before it (an
/// end). Gaps are at most a few hours, so the walk is bounded.
fn resolve<Z: TimeZone>(zone: &Z, local: NaiveDateTime, end: bool) -> DateTime<FixedOffset> {
    let step = if end {
        Duration::minutes(-1)
    } else {
        Duration::minutes(1)
    };
    let mut at = local;
    for _ in 0..=(26 * 60) {
        match zone.from_local_datetime(&at) {
            LocalResult::Single(x) => return x.fixed_offset(),
            LocalResult::Ambiguous(a, b) => return if end { b } else { a }.fixed_offset(),
            LocalResult::None => at += step,
        }
    }
    // No zone has a gap over a day; read it as UTC rather than fail.
    Utc.from_utc_datetime(&local).fixed_offset()
}

/// `UTC`, `GMT`, `Z`, `+01:00`, `-0530`, `+2`, `UTC+2`, `GMT-3` as an offset.
fn fixed_offset(t: &str) -> Option<FixedOffset> {
    let upper = t.to_ascii_uppercase();
    let t = upper
        .strip_prefix("UTC")
        .or_else(|| upper.strip_prefix("GMT"))
        .unwrap_or(&upper);
    if t.is_empty() || t == "Z" {
        return FixedOffset::east_opt(0);
    }
    let (sign, rest) = match t.as_bytes()[0] {
        b'+' => (1, &t[1..]),
        b'-' => (-1, &t[1..]),
        _ => return None,
    };
    let (h, m) = match rest.split_once(':') {
        Some((h, m)) => (h, m),
        None if rest.len() == 4 && rest.is_ascii() => rest.split_at(2),
        None => (rest, "0"),
    };
    let digits = |s: &str| !s.is_empty() && s.len() <= 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(h) || !digits(m) {
        return None;
    }
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    if h > 14 || m > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn zones_are_utc_offsets_or_iana_names() {
        for (tz, shown) in [
            ("UTC", "+00:00"),
            ("utc", "+00:00"),
            ("Z", "+00:00"),
            ("+01:00", "+01:00"),
            ("-05:30", "-05:30"),
            ("+0530", "+05:30"),
            ("UTC+2", "+02:00"),
            ("GMT-3", "-03:00"),
            ("Europe/Paris", "Europe/Paris"),
            ("europe/paris", "Europe/Paris"),
            (
                "America/Argentina/ComodRivadavia",
                "America/Argentina/ComodRivadavia",
            ),
        ] {
            assert_eq!(Zone::parse(tz).unwrap().to_string(), shown, "{tz}");
        }
        for tz in [
            "Europe/Atlantis",
            "Mars",
            "+15:00",
            "+1:99",
            "++1",
            "",
            "x".repeat(100).as_str(),
        ] {
            let e = Zone::parse(tz).unwrap_err().to_string();
            assert!(
                e.contains("time zone") && e.contains("Europe/Paris") && e.len() < 250,
                "{e}"
            );
        }
    }

    #[test]
    fn a_named_zones_days_follow_its_daylight_saving_time() {
        let paris = Zone::parse("Europe/Paris").unwrap();
        // Winter and summer.
        assert_eq!(
            paris.day_bound(day(2026, 1, 15), false),
            "2026-01-15T00:00:00+01:00"
        );
        assert_eq!(
            paris.day_bound(day(2026, 7, 15), true),
            "2026-07-15T23:59:59+02:00"
        );
        // Spring forward (29 March 2026, 02:00 -> 03:00): the day starts in winter time and
        // ends in summer time.
        assert_eq!(
            paris.day_bound(day(2026, 3, 29), false),
            "2026-03-29T00:00:00+01:00"
        );
        assert_eq!(
            paris.day_bound(day(2026, 3, 29), true),
            "2026-03-29T23:59:59+02:00"
        );
        // A fixed offset does not move.
        let plus1 = Zone::parse("+01:00").unwrap();
        assert_eq!(
            plus1.day_bound(day(2026, 7, 15), true),
            "2026-07-15T23:59:59+01:00"
        );
        assert_eq!(
            Zone::utc().day_bound(day(2026, 7, 15), false),
            "2026-07-15T00:00:00Z"
        );
    }

    #[test]
    fn a_skipped_midnight_starts_the_day_at_the_first_local_time_that_exists() {
        // Santiago's clocks went from 00:00 to 01:00 on 8 September 2024.
        let santiago = Zone::parse("America/Santiago").unwrap();
        assert_eq!(
            santiago.day_bound(day(2024, 9, 8), false),
            "2024-09-08T01:00:00-03:00"
        );
        // Clocks going back at midnight (Santiago, 6 April 2025 00:00 -> 5 April 23:00): the
        // last second of 5 April happens twice; the day ends at the later one.
        assert_eq!(
            santiago.day_bound(day(2025, 4, 5), true),
            "2025-04-05T23:59:59-04:00"
        );
    }

    #[test]
    fn today_is_the_local_date() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T23:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(Zone::utc().today(now), day(2026, 12, 1));
        assert_eq!(
            Zone::parse("Asia/Tokyo").unwrap().today(now),
            day(2026, 12, 2)
        );
        assert_eq!(Zone::parse("-05:00").unwrap().today(now), day(2026, 12, 1));
    }
}
