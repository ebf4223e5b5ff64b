//! Placing a record in time: the UTC hour it belongs to and its `mmssSSS` stamp, from `inDate`.

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};
use serde_json::Value;

/// A UTC date and hour: the partition a record lands in. Hours are always UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hour {
    date: NaiveDate,
    hour: u32,
}

impl Hour {
    /// The hour containing `instant`.
    pub fn of(instant: DateTime<Utc>) -> Self {
        Self {
            date: instant.date_naive(),
            hour: instant.hour(),
        }
    }

    /// The hour at `hour` on `date`, if `hour` is below 24.
    pub fn at(date: NaiveDate, hour: u32) -> Option<Self> {
        (hour < 24).then_some(Self { date, hour })
    }

    /// The first instant of the hour.
    pub fn start(self) -> DateTime<Utc> {
        self.date
            .and_hms_opt(self.hour, 0, 0)
            .expect("an hour below 24")
            .and_utc()
    }

    /// The hour before this one.
    pub fn previous(self) -> Self {
        match self.hour {
            0 => Self {
                date: self.date.pred_opt().unwrap_or(self.date),
                hour: 23,
            },
            h => Self {
                date: self.date,
                hour: h - 1,
            },
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

impl std::str::FromStr for Hour {
    type Err = String;

    /// `YYYY-MM-DDTHH`, as [`Hour`] is displayed.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{text:?} is not an hour written YYYY-MM-DDTHH");
        let (date, hour) = text.split_once('T').ok_or_else(bad)?;
        let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").map_err(|_| bad())?;
        let hour = (hour.len() == 2)
            .then(|| hour.parse::<u32>().ok())
            .flatten();
        hour.and_then(|h| Self::at(date, h)).ok_or_else(bad)
    }
}

impl fmt::Display for Hour {
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
    pub hour: Hour,
    pub stamp: Stamp,
}

impl Placement {
    pub fn of(instant: DateTime<Utc>) -> Self {
        Self {
            hour: Hour::of(instant),
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
    #[error(
        "inDate falls in hour {hour}, outside the hours the table shows ({earliest} to {latest}, \
         EARLIEST_YEAR and MAX_HOURS_AHEAD)"
    )]
    OutOfRange {
        hour: Hour,
        earliest: Hour,
        latest: Hour,
    },
}

/// Default first year a record may be dated in (`EARLIEST_YEAR`).
pub const DEFAULT_EARLIEST_YEAR: u64 = 2000;
/// Default hours a record may be dated after the run's hour (`MAX_HOURS_AHEAD`): a source clock
/// running fast by up to a day still lands.
pub const DEFAULT_MAX_HOURS_AHEAD: u64 = 24;

/// The hours a record may land in, both ends included: from the start of a year to some hours
/// after the run. The Athena table's partition projection covers the same hours, so a record
/// outside them would land where no query finds it; such a record is quarantined instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HourWindow {
    pub earliest: Hour,
    pub latest: Hour,
}

impl HourWindow {
    /// From 00:00 UTC on January 1 of `earliest_year` to `max_hours_ahead` hours after the hour
    /// of `run_time`.
    pub fn new(earliest_year: i32, max_hours_ahead: u32, run_time: DateTime<Utc>) -> Self {
        let first_day = NaiveDate::from_ymd_opt(earliest_year, 1, 1).unwrap_or(NaiveDate::MIN);
        let latest = run_time
            .checked_add_signed(chrono::Duration::hours(max_hours_ahead.into()))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        Self {
            earliest: Hour {
                date: first_day,
                hour: 0,
            },
            latest: Hour::of(latest),
        }
    }

    /// Any hour at all (tests and tools that place records without a run).
    pub fn unbounded() -> Self {
        Self {
            earliest: Hour::of(DateTime::<Utc>::MIN_UTC),
            latest: Hour::of(DateTime::<Utc>::MAX_UTC),
        }
    }

    /// The placement, if its hour is inside the window.
    pub fn admit(&self, placement: Placement) -> Result<Placement, PlaceError> {
        if (self.earliest..=self.latest).contains(&placement.hour) {
            Ok(placement)
        } else {
            Err(PlaceError::OutOfRange {
                hour: placement.hour,
                earliest: self.earliest,
                latest: self.latest,
            })
        }
    }
}

/// Places a record by its `inDate`: the server's `YYYY-MM-DDThh:mm:ss.mmmZ`, or any RFC 3339
/// timestamp with an offset (converted to UTC). Times without a zone are refused rather than
/// guessed.
pub fn place(in_date: Option<&Value>) -> Result<Placement, PlaceError> {
    instant(in_date).map(Placement::of)
}

/// The instant an `inDate` names, read as [`place`] reads it.
pub fn instant(in_date: Option<&Value>) -> Result<DateTime<Utc>, PlaceError> {
    match in_date {
        None => Err(PlaceError::Missing),
        Some(Value::String(text)) => instant_of_str(text),
        Some(_) => Err(PlaceError::NotAString),
    }
}

/// Places a record by an `inDate` that is a string, read as [`place`] reads it (the
/// transcoder's entry point, which has the text but no [`Value`]).
pub fn place_str(text: &str) -> Result<Placement, PlaceError> {
    instant_of_str(text).map(Placement::of)
}

fn instant_of_str(text: &str) -> Result<DateTime<Utc>, PlaceError> {
    parse_server_format(text)
        .or_else(|| {
            DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        })
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
    use chrono::TimeZone;
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
    fn hours_are_read_as_they_are_written() {
        let hour: Hour = "2023-03-18T15".parse().unwrap();
        assert_eq!(hour.to_string(), "2023-03-18T15");
        assert_eq!(
            hour.start(),
            Utc.with_ymd_and_hms(2023, 3, 18, 15, 0, 0).unwrap()
        );
        for bad in [
            "2023-03-18T24",
            "2023-03-18 15",
            "2023-02-30T01",
            "2023-03-18T5",
        ] {
            assert!(bad.parse::<Hour>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_hour_before_midnight_is_the_day_before() {
        let hour = |y, m, d, h| Hour::of(Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap());
        assert_eq!(hour(2024, 1, 1, 0).previous(), hour(2023, 12, 31, 23));
        assert_eq!(hour(2024, 3, 1, 5).previous(), hour(2024, 3, 1, 4));
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
    fn hours_outside_the_window_are_refused_with_its_ends() {
        // Given a run at 2023-03-18 15:40 with the default window
        let run = Utc.with_ymd_and_hms(2023, 3, 18, 15, 40, 0).unwrap();
        let window = HourWindow::new(2000, 24, run);
        // Then the first hour of 2000 and the hour a day after the run's are in
        for inside in ["2000-01-01T00:00:00.000Z", "2023-03-19T15:59:59.999Z"] {
            assert!(window.admit(placed(json!(inside))).is_ok(), "{inside}");
        }
        // and the hours just outside are refused, naming the window
        for outside in ["1999-12-31T23:59:59.999Z", "2023-03-19T16:00:00.000Z"] {
            let err = window.admit(placed(json!(outside))).unwrap_err();
            assert!(
                err.to_string()
                    .contains("outside the hours the table shows (2000-01-01T00 to 2023-03-19T15"),
                "{err}"
            );
        }
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
