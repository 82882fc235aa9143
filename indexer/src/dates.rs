//! Parsing of the date formats found in annotation exports and typed by users.
//!
//! Accepted: RFC 3339 (`2021-03-04T05:06:07Z`, with offset), `YYYY-MM-DD HH:MM:SS`,
//! `YYYY-MM-DDTHH:MM:SS` (both read as UTC), `YYYY-MM-DD`, and the slash forms COCO uses
//! (`2017/09/01`, `2017/09/01 10:00:00`). Anything else is an error naming the value, and so
//! is a year outside 1800..=2200 (the index stores nanoseconds in an i64, which ends in 2262).

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, TimeZone, Utc};

/// A date string that matched none of the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid date {0:?}: use YYYY-MM-DD or RFC 3339 (2024-05-01T12:00:00Z)")]
pub struct DateError(pub String);

/// Parses a date as the start of that instant in UTC.
///
/// # Errors
/// [`DateError`] when the text matches no accepted form.
pub fn parse_date(text: &str) -> Result<DateTime<Utc>, DateError> {
    let d = parse_any(text)?;
    if !(MIN_YEAR..=MAX_YEAR).contains(&d.year()) {
        return Err(DateError(text.chars().take(64).collect()));
    }
    Ok(d)
}

/// Earliest year accepted.
pub const MIN_YEAR: i32 = 1800;
/// Latest year accepted.
pub const MAX_YEAR: i32 = 2200;

fn parse_any(text: &str) -> Result<DateTime<Utc>, DateError> {
    let t = text.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Ok(d.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y/%m/%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(d) = NaiveDateTime::parse_from_str(t, fmt) {
            return Ok(Utc.from_utc_datetime(&d));
        }
    }
    for fmt in ["%Y-%m-%d", "%Y/%m/%d"] {
        if let Ok(d) = NaiveDate::parse_from_str(t, fmt) {
            return Ok(Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight exists")));
        }
    }
    Err(DateError(text.chars().take(64).collect()))
}

/// Parses the upper bound of a range: a bare day (`2024-05-01`) means the end of that day,
/// so `--captured-before 2024-05-01` keeps everything on the 1st. Full timestamps are exact.
///
/// # Errors
/// [`DateError`] as [`parse_date`].
pub fn parse_date_end(text: &str) -> Result<DateTime<Utc>, DateError> {
    let start = parse_date(text)?;
    let t = text.trim();
    let is_bare_day = NaiveDate::parse_from_str(t, "%Y-%m-%d").is_ok()
        || NaiveDate::parse_from_str(t, "%Y/%m/%d").is_ok();
    Ok(if is_bare_day {
        start + chrono::Duration::days(1) - chrono::Duration::seconds(1)
    } else {
        start
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_accepted_form_parses_to_utc() {
        let want = Utc.with_ymd_and_hms(2013, 11, 14, 11, 18, 45).unwrap();
        for s in [
            "2013-11-14 11:18:45",
            "2013-11-14T11:18:45",
            "2013-11-14T11:18:45Z",
            "2013-11-14T12:18:45+01:00",
            "2013/11/14 11:18:45",
        ] {
            assert_eq!(parse_date(s).unwrap(), want, "{s}");
        }
        assert_eq!(
            parse_date("2017/09/01").unwrap(),
            Utc.with_ymd_and_hms(2017, 9, 1, 0, 0, 0).unwrap()
        );
    }

    #[test]
    fn bare_day_upper_bound_covers_the_whole_day() {
        assert_eq!(
            parse_date_end("2020-01-31").unwrap(),
            Utc.with_ymd_and_hms(2020, 1, 31, 23, 59, 59).unwrap()
        );
        assert_eq!(
            parse_date_end("2020-01-31T10:00:00Z").unwrap(),
            Utc.with_ymd_and_hms(2020, 1, 31, 10, 0, 0).unwrap()
        );
    }

    #[test]
    fn garbage_is_an_error_naming_the_value() {
        let err = parse_date("last tuesday").unwrap_err();
        assert!(err.to_string().contains("last tuesday"));
        assert!(parse_date("9999-12-31").is_err());
        assert!(parse_date("0001-01-01").is_err());
    }
}
