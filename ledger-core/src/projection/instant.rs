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
///
/// Held as whole seconds and the nanoseconds within (fields in that order, so the
/// derived order is time order): sixteen bytes aligned to eight, where one `i128`
/// is aligned to sixteen and pads every record that holds one. Seconds in an `i64`
/// reach every time an event can name (years 0–9999) moved by any policy duration
/// (below 2^53 seconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant {
    secs: i64,
    nanos: u32,
}

impl Serialize for Instant {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            s.serialize_i128(self.nanos())
        }
    }
}

impl<'de> Deserialize<'de> for Instant {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            Instant::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("bad time {s:?}")))
        } else {
            i128::deserialize(d).map(Instant::from_nanos)
        }
    }
}

const NANOS: i128 = 1_000_000_000;
/// The Julian day number of 1970-01-01.
const UNIX_EPOCH_JULIAN_DAY: i32 = 2_440_588;

impl Instant {
    /// The Unix epoch, the evaluation time of an empty log.
    pub const EPOCH: Instant = Instant { secs: 0, nanos: 0 };

    /// From nanoseconds since the epoch; beyond the seconds' reach (never for a
    /// time the ledger computes), the nearest instant within it.
    fn from_nanos(n: i128) -> Instant {
        let secs = n.div_euclid(NANOS);
        match i64::try_from(secs) {
            Ok(secs) => Instant {
                secs,
                nanos: n.rem_euclid(NANOS) as u32,
            },
            Err(_) if secs < 0 => Instant {
                secs: i64::MIN,
                nanos: 0,
            },
            Err(_) => Instant {
                secs: i64::MAX,
                nanos: (NANOS - 1) as u32,
            },
        }
    }

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
        i128::from(self.secs) * NANOS + i128::from(self.nanos)
    }

    /// The UTC year and month (1–12), None beyond the calendar's reach.
    pub fn year_month(self) -> Option<(i32, u8)> {
        let t = OffsetDateTime::from_unix_timestamp_nanos(self.nanos()).ok()?;
        Some((t.year(), u8::from(t.month())))
    }

    /// This instant moved by `seconds` (negative: earlier).
    pub fn plus_seconds(self, seconds: i64) -> Instant {
        Instant::from_nanos(self.nanos() + i128::from(seconds) * NANOS)
    }
}

impl From<OffsetDateTime> for Instant {
    fn from(t: OffsetDateTime) -> Self {
        Instant::from_nanos(t.unix_timestamp_nanos())
    }
}

/// UTC with exactly nine fraction digits: one spelling per instant, for output and
/// digests. (Beyond the calendar's years 1–9999, which only absurd policy durations
/// reach, the nanosecond count is written instead.)
impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match OffsetDateTime::from_unix_timestamp_nanos(self.nanos()) {
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
            Err(_) => write!(f, "{}ns", self.nanos()),
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
    let nanos: u32 = match &b[19..b.len() - 1] {
        [] => 0,
        [b'.', frac @ ..] if (1..=9).contains(&frac.len()) => {
            let mut n = 0u32;
            for &c in frac {
                if !c.is_ascii_digit() {
                    return None;
                }
                n = n * 10 + u32::from(c - b'0');
            }
            n * 10u32.pow(9 - frac.len() as u32)
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
    Some(Instant {
        secs: days * 86_400 + h * 3600 + mi * 60 + s,
        nanos,
    })
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
    fn seconds_and_nanoseconds_keep_the_order_and_the_count() {
        for n in [
            0i128,
            1,
            -1,
            NANOS - 1,
            -NANOS,
            -NANOS - 1,
            1_688_083_200_123_456_789,
        ] {
            assert_eq!(Instant::from_nanos(n).nanos(), n, "{n}");
            assert!(Instant::from_nanos(n) < Instant::from_nanos(n + 1), "{n}");
        }
        let late = Instant::parse("9999-12-31T23:59:59.999999999Z").unwrap();
        let far = late.plus_seconds((1 << 53) - 1);
        assert_eq!(far.nanos(), late.nanos() + ((1i128 << 53) - 1) * NANOS);
        assert_eq!(std::mem::align_of::<Instant>(), 8);
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
