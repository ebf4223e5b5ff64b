//! Placing a record in time: the UTC hour it belongs to and its `mmssSSS` stamp, from `inDate`.

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};
use serde_json::Value;

/// A UTC date and hour: the partition a record lands in. Hours are always UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HourKey {
    date: NaiveDate,
    hour: u32,
}

impl HourKey {
    /// The hour containing `instant`.
    pub fn of(instant: DateTime<Utc>) -> Self {
        Self {
            date: instant.date_naive(),
            hour: instant.hour(),
        }
    }

    pub fn year(self) -> i32 {
        self.date.year()
    }
    pub fn month(self) -> u32 {
        self.date.month()
    }
    pub fn day(self) -> u32 {
        self.date.day()
    }
    pub fn hour(self) -> u32 {
        self.hour
    }
}

impl fmt::Display for HourKey {
    /// `YYYY-MM-DDTHH`, as in logs and summaries.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}T{:02}", self.date.format("%Y-%m-%d"), self.hour)
    }
}

/// Minute, second and millisecond of a record inside its hour, written `mmssSSS` (the original
/// script's object naming).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp(u32);

impl Stamp {
    pub fn of(instant: DateTime<Utc>) -> Self {
        let millis = instant.nanosecond() / 1_000_000;
        // A leap second (nanosecond >= 1e9) is written as second 59, ms 999.
        let (second, millis) = if millis >= 1000 {
            (59, 999)
        } else {
            (instant.second(), millis)
        };
        Self(instant.minute() * 100_000 + second * 1000 + millis)
    }
}

impl fmt::Display for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:07}", self.0)
    }
}

/// Where a record goes: its hour and its stamp within the hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub hour: HourKey,
    pub stamp: Stamp,
}

impl Placement {
    pub fn of(instant: DateTime<Utc>) -> Self {
        Self {
            hour: HourKey::of(instant),
            stamp: Stamp::of(instant),
        }
    }
}

/// Why a record cannot be placed in an hour. Never contains the value itself.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum PlaceError {
    #[error("record has no inDate")]
    Missing,
    #[error("inDate is not a string")]
    NotAString,
    #[error("inDate is not an RFC 3339 timestamp with a time zone")]
    Unparseable,
}

/// Places a record by its `inDate`: the server's `YYYY-MM-DDThh:mm:ss.mmmZ`, or any RFC 3339
/// timestamp with an offset (converted to UTC). Times without a zone are refused rather than
/// guessed.
pub fn place(in_date: Option<&Value>) -> Result<Placement, PlaceError> {
    let text = match in_date {
        None => return Err(PlaceError::Missing),
        Some(Value::String(text)) => text,
        Some(_) => return Err(PlaceError::NotAString),
    };
    parse_server_format(text)
        .or_else(|| {
            DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        })
        .map(Placement::of)
        .ok_or(PlaceError::Unparseable)
}

/// Fast path for the server's own format, the usual case.
fn parse_server_format(text: &str) -> Option<DateTime<Utc>> {
    let b = text.as_bytes();
    if b.len() != 24 || &b[4..5] != b"-" || b[23] != b'Z' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        b[range].iter().try_fold(0u32, |acc, &d| {
            d.is_ascii_digit().then(|| acc * 10 + u32::from(d - b'0'))
        })
    };
    let seps = [(7, b'-'), (10, b'T'), (13, b':'), (16, b':'), (19, b'.')];
    if seps.iter().any(|&(i, c)| b[i] != c) {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
    let time = date.and_hms_milli_opt(num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?)?;
    Some(time.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn placed(v: Value) -> Placement {
        place(Some(&v)).unwrap()
    }

    #[test]
    fn server_format_gives_hour_and_stamp() {
        let p = placed(json!("2023-03-18T15:08:02.284Z"));
        assert_eq!(p.hour.to_string(), "2023-03-18T15");
        assert_eq!(p.stamp.to_string(), "0802284");
    }

    #[test]
    fn offsets_are_converted_to_utc() {
        let p = placed(json!("2023-03-19T00:30:00.5+09:00"));
        assert_eq!(p.hour.to_string(), "2023-03-18T15");
        assert_eq!(p.stamp.to_string(), "3000500");
    }

    #[test]
    fn midnight_changes_the_date() {
        assert_eq!(
            placed(json!("2023-12-31T23:59:59.999Z")).hour.to_string(),
            "2023-12-31T23"
        );
        assert_eq!(
            placed(json!("2024-01-01T00:00:00.000Z")).hour.to_string(),
            "2024-01-01T00"
        );
    }

    #[test]
    fn unplaceable_values_are_typed_errors() {
        assert_eq!(place(None), Err(PlaceError::Missing));
        assert_eq!(place(Some(&json!(5))), Err(PlaceError::NotAString));
        for bad in [
            "2023-02-30T10:00:00.000Z",
            "2023-03-18T25:00:00.000Z",
            "2023-03-18 15:08:02",
            "2023-03-18T15:08:02.284",
            "230318150802284",
            "",
        ] {
            assert_eq!(
                place(Some(&json!(bad))),
                Err(PlaceError::Unparseable),
                "{bad}"
            );
        }
    }
}
