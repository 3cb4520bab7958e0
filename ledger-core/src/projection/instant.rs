//! Instants as the projections compare them: UTC nanoseconds since the Unix epoch.
//!
//! Event times carry any offset and precision; deadlines are compared as instants, so
//! `2023-01-02T10:00:00+01:00` and `2023-01-02T09:00:00Z` are the same time.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::{Date, Month, OffsetDateTime};

use crate::event::parse_time;

/// A point in time, in nanoseconds since 1970-01-01T00:00:00Z.
///
/// Serialized as its RFC 3339 text in human-readable formats (JSON), as the integer
/// in binary ones (the persisted projection).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(i128);

impl Serialize for Instant {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            s.serialize_i128(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Instant {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            Instant::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("bad time {s:?}")))
        } else {
            i128::deserialize(d).map(Instant)
        }
    }
}

const NANOS: i128 = 1_000_000_000;
/// The Julian day number of 1970-01-01.
const UNIX_EPOCH_JULIAN_DAY: i32 = 2_440_588;

impl Instant {
    /// The Unix epoch, the evaluation time of an empty log.
    pub const EPOCH: Instant = Instant(0);

    /// Parses an RFC 3339 timestamp with the event format's strict rules.
    pub fn parse(s: &str) -> Option<Instant> {
        if let Some(fast) = parse_plain_utc(s.as_bytes()) {
            return Some(fast);
        }
        parse_time(s).map(Instant::from)
    }

    /// Parses a time as people type it in a question: a date `YYYY-MM-DD` (the start
    /// of that day, UTC) or a full RFC 3339 time. The error says which forms are taken.
    pub fn parse_input(s: &str) -> Result<Instant, String> {
        let b = s.as_bytes();
        if b.len() == 10
            && b[4] == b'-'
            && b[7] == b'-'
            && b.iter()
                .enumerate()
                .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
        {
            return Instant::parse(&format!("{s}T00:00:00Z"))
                .ok_or_else(|| format!("{s:?} is not a calendar date"));
        }
        Instant::parse(s).ok_or_else(|| {
            format!(
                "{s:?} is neither a date (2023-05-08, meaning 00:00 UTC that day) nor an RFC 3339 \
                 time (2023-05-08T09:30:00Z, 2023-05-08T11:30:00+02:00)"
            )
        })
    }

    /// The current time of the system clock.
    pub fn now() -> Instant {
        Instant::from(OffsetDateTime::now_utc())
    }

    /// Nanoseconds since the epoch.
    pub fn nanos(self) -> i128 {
        self.0
    }

    /// The UTC year and month (1–12), None beyond the calendar's reach.
    pub fn year_month(self) -> Option<(i32, u8)> {
        let t = OffsetDateTime::from_unix_timestamp_nanos(self.0).ok()?;
        Some((t.year(), u8::from(t.month())))
    }

    /// This instant moved by `seconds` (negative: earlier).
    pub fn plus_seconds(self, seconds: i64) -> Instant {
        Instant(self.0 + i128::from(seconds) * NANOS)
    }
}

impl From<OffsetDateTime> for Instant {
    fn from(t: OffsetDateTime) -> Self {
        Instant(t.unix_timestamp_nanos())
    }
}

/// UTC with exactly nine fraction digits: one spelling per instant, for output and
/// digests. (Beyond the calendar's years 1–9999, which only absurd policy durations
/// reach, the nanosecond count is written instead.)
impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match OffsetDateTime::from_unix_timestamp_nanos(self.0) {
            Ok(t) => write!(
                f,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second(),
                t.nanosecond()
            ),
            Err(_) => write!(f, "{}ns", self.0),
        }
    }
}

/// The common UTC forms `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z` (what reporters write, and
/// every `recorded_at`) without the general parser: replay parses two per entry.
/// Anything else, including leap seconds, goes the general way.
fn parse_plain_utc(b: &[u8]) -> Option<Instant> {
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' || *b.last()? != b'Z' {
        return None;
    }
    let nanos: i128 = match &b[19..b.len() - 1] {
        [] => 0,
        [b'.', frac @ ..] if (1..=9).contains(&frac.len()) => {
            let mut n = 0i128;
            for &c in frac {
                if !c.is_ascii_digit() {
                    return None;
                }
                n = n * 10 + i128::from(c - b'0');
            }
            n * 10i128.pow(9 - frac.len() as u32)
        }
        _ => return None,
    };
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        b[r].iter().try_fold(0i64, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
    };
    let month = Month::try_from(u8::try_from(num(5..7)?).ok()?).ok()?;
    let date = Date::from_calendar_date(num(0..4)? as i32, month, num(8..10)? as u8).ok()?;
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if h > 23 || mi > 59 || s > 59 {
        return None;
    }
    let days = i64::from(date.to_julian_day() - UNIX_EPOCH_JULIAN_DAY);
    Some(Instant(
        i128::from(days * 86_400 + h * 3600 + mi * 60 + s) * NANOS + nanos,
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn people_type_dates_and_times() {
        let day = Instant::parse_input("2020-01-01").unwrap();
        assert_eq!(day, Instant::parse("2020-01-01T00:00:00Z").unwrap());
        assert_eq!(
            Instant::parse_input("2020-01-01T01:00:00+01:00").unwrap(),
            day
        );
        assert!(
            Instant::parse_input("2020-02-30")
                .unwrap_err()
                .contains("calendar")
        );
        let e = Instant::parse_input("01.01.2020").unwrap_err();
        assert!(e.contains("neither a date"), "{e}");
        assert!(Instant::parse_input("2020-1-1").is_err());
    }

    use super::*;

    #[test]
    fn fast_path_agrees_with_the_general_parser() {
        for s in [
            "1970-01-01T00:00:00Z",
            "2023-06-30T00:00:00Z",
            "2024-02-29T23:59:59Z",
            "2000-03-01T12:34:56Z",
            "1969-12-31T23:59:59Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "2023-06-30T12:00:00.5Z",
            "2026-11-23T16:40:18.222092Z",
            "2026-11-23T16:40:18.123456789Z",
        ] {
            let general = Instant::from(parse_time(s).unwrap());
            assert_eq!(parse_plain_utc(s.as_bytes()), Some(general), "{s}");
        }
        assert_eq!(parse_plain_utc(b"2023-02-29T00:00:00Z"), None);
        for odd in [
            "2023-01-01T00:00:00.Z",
            "2023-01-01T00:00:00.1234567890Z",
            "2023-01-01T00:00:00+01:00",
        ] {
            assert_eq!(parse_plain_utc(odd.as_bytes()), None, "{odd}");
        }
        assert_eq!(Instant::parse("2023-02-29T00:00:00Z"), None);
    }

    #[test]
    fn offsets_and_fractions_are_instants() {
        let a = Instant::parse("2023-01-02T10:00:00.5+01:00").unwrap();
        let b = Instant::parse("2023-01-02T09:00:00.500Z").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "2023-01-02T09:00:00.500000000Z");
        assert_eq!(Instant::EPOCH.to_string(), "1970-01-01T00:00:00.000000000Z");
        let before = Instant::parse("1969-12-31T23:59:59.25Z").unwrap();
        assert_eq!(before.to_string(), "1969-12-31T23:59:59.250000000Z");
    }
}
