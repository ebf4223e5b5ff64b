//! Object keys: where each hour's data and each run's quarantine land. Pure functions of their
//! inputs, so the same batch always names the same objects.

use std::fmt;
use std::str::FromStr;

use crate::batch::encode::ObjectEncoding;
use crate::config::var;
use crate::record::hour::{Hour, Stamp};

/// How the hour folders are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PartitionStyle {
    /// `YYYY/MM/DD/HH` (the original script's layout).
    #[default]
    Flat,
    /// `year=YYYY/month=MM/day=DD/hour=HH`.
    Hive,
}

impl PartitionStyle {
    /// The hour folder in Athena partition projection's date format (Java `DateTimeFormatter`),
    /// so the table's `storage.location.template` can be checked against what is written.
    pub const fn projection_format(self) -> &'static str {
        match self {
            PartitionStyle::Flat => "yyyy/MM/dd/HH",
            PartitionStyle::Hive => "'year='yyyy'/month='MM'/day='dd'/hour='HH",
        }
    }

    fn hour_folder(self, hour: Hour) -> String {
        let (y, m, d, h) = (hour.year(), hour.month(), hour.day(), hour.hour());
        match self {
            PartitionStyle::Flat => format!("{y:04}/{m:02}/{d:02}/{h:02}"),
            PartitionStyle::Hive => format!("year={y:04}/month={m:02}/day={d:02}/hour={h:02}"),
        }
    }
}

impl FromStr for PartitionStyle {
    type Err = LayoutError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "flat" | "" => Ok(PartitionStyle::Flat),
            "hive" => Ok(PartitionStyle::Hive),
            _ => Err(LayoutError::UnknownStyle(s.to_owned())),
        }
    }
}

impl fmt::Display for PartitionStyle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PartitionStyle::Flat => "flat",
            PartitionStyle::Hive => "hive",
        })
    }
}

/// Why a layout setting is unusable.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum LayoutError {
    #[error("partition style {0:?} is neither \"flat\" nor \"hive\"")]
    UnknownStyle(String),
    #[error("prefix {0:?} is empty or has an empty, '.' or '..' segment")]
    BadPrefix(String),
    #[error(
        "{setting} {prefix:?} has a segment starting with '.': listings and restore skip hidden \
         files, so its objects would be invisible; choose a name without a leading '.'"
    )]
    HiddenPrefix {
        setting: &'static str,
        prefix: String,
    },
    #[error("prefixes {0:?} and {1:?} overlap; quarantine must be kept apart from the data")]
    Overlap(String, String),
}

/// Prefixes and folder style of every key the pipeline writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectLayout {
    data_prefix: String,
    quarantine_prefix: String,
    style: PartitionStyle,
}

impl ObjectLayout {
    /// Prefixes are trimmed of slashes; neither may contain the other, so the data table never
    /// reads quarantine.
    pub fn new(
        data_prefix: &str,
        quarantine_prefix: &str,
        style: PartitionStyle,
    ) -> Result<Self, LayoutError> {
        let data_prefix = clean_prefix(data_prefix, var::KEY_PREFIX.name)?;
        let quarantine_prefix = clean_prefix(quarantine_prefix, var::QUARANTINE_PREFIX.name)?;
        let inside = |a: &str, b: &str| a == b || a.starts_with(&format!("{b}/"));
        if inside(&data_prefix, &quarantine_prefix) || inside(&quarantine_prefix, &data_prefix) {
            return Err(LayoutError::Overlap(data_prefix, quarantine_prefix));
        }
        Ok(Self {
            data_prefix,
            quarantine_prefix,
            style,
        })
    }

    pub fn data_prefix(&self) -> &str {
        &self.data_prefix
    }

    pub fn quarantine_prefix(&self) -> &str {
        &self.quarantine_prefix
    }

    pub fn style(&self) -> PartitionStyle {
        self.style
    }

    /// Whether `key` names an object this layout writes, in either encoding (by its extension:
    /// a bucket switched from one to the other holds both).
    pub fn is_object(&self, key: &str) -> bool {
        let name = key.rsplit('/').next().unwrap_or(key);
        ObjectEncoding::ALL.iter().any(|encoding| {
            name.strip_suffix(encoding.extension())
                .is_some_and(|stem| stem.ends_with('.'))
        })
    }

    /// Whether the object `key` (relative to where a listing started) holds records to read
    /// back: an object of this layout, outside the quarantine prefix.
    pub fn holds_records(&self, key: &str) -> bool {
        let quarantine = key
            .strip_prefix(self.quarantine_prefix.as_str())
            .is_some_and(|rest| rest.starts_with('/'));
        !quarantine && self.is_object(key)
    }

    /// The hour of a data object's key (`<data-prefix>/<hour folder>/<name>`), if it is one.
    pub fn hour_of_data_key(&self, key: &str) -> Option<Hour> {
        let rest = key
            .strip_prefix(self.data_prefix.as_str())?
            .strip_prefix('/')?;
        let parts: Vec<&str> = rest.split('/').collect();
        let [y, m, d, h, name] = parts[..] else {
            return None;
        };
        let field = |part: &str, label: &str| -> Option<u32> {
            let digits = match self.style {
                PartitionStyle::Flat => part,
                PartitionStyle::Hive => part.strip_prefix(label)?.strip_prefix('=')?,
            };
            digits.parse().ok()
        };
        let date = chrono::NaiveDate::from_ymd_opt(
            field(y, "year")? as i32,
            field(m, "month")?,
            field(d, "day")?,
        )?;
        let hour = Hour::at(date, field(h, "hour")?)?;
        (!name.is_empty() && self.data_hour_path(hour) == key[..key.len() - name.len() - 1])
            .then_some(hour)
    }

    /// `<data-prefix>/<hour folder>`: the folder a table partition maps to.
    pub fn data_hour_path(&self, hour: Hour) -> String {
        format!("{}/{}", self.data_prefix, self.style.hour_folder(hour))
    }

    /// `<data-prefix>/<hour folder>/<first>_<last>_<digest>.<ext>`.
    pub fn data_key(
        &self,
        hour: Hour,
        first: Stamp,
        last: Stamp,
        digest: &str,
        encoding: ObjectEncoding,
    ) -> String {
        format!(
            "{}/{first}_{last}_{digest}.{}",
            self.data_hour_path(hour),
            encoding.extension()
        )
    }

    /// `<quarantine-prefix>/<hour folder of the run>`.
    pub fn quarantine_hour_path(&self, run_hour: Hour) -> String {
        format!(
            "{}/{}",
            self.quarantine_prefix,
            self.style.hour_folder(run_hour)
        )
    }

    /// `<quarantine-prefix>/<hour folder of the run>/<run-id>.<ext>`.
    pub fn quarantine_key(&self, run_hour: Hour, run_id: &str, encoding: ObjectEncoding) -> String {
        format!(
            "{}/{run_id}.{}",
            self.quarantine_hour_path(run_hour),
            encoding.extension()
        )
    }
}

/// `prefix` without surrounding blanks and slashes; `setting` names where it came from.
fn clean_prefix(prefix: &str, setting: &'static str) -> Result<String, LayoutError> {
    let trimmed = prefix.trim().trim_matches('/');
    let bad_segment = trimmed
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..");
    if bad_segment {
        return Err(LayoutError::BadPrefix(prefix.to_owned()));
    }
    if trimmed.split('/').any(|seg| seg.starts_with('.')) {
        return Err(LayoutError::HiddenPrefix {
            setting,
            prefix: prefix.to_owned(),
        });
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn hour() -> Hour {
        Hour::of(Utc.with_ymd_and_hms(2023, 3, 8, 5, 0, 0).unwrap())
    }

    fn stamp(m: u32, s: u32, ms: u32) -> Stamp {
        Stamp::of(
            Utc.with_ymd_and_hms(2023, 3, 8, 5, m, s).unwrap()
                + chrono::Duration::milliseconds(ms.into()),
        )
    }

    #[test]
    fn default_layout_is_the_original_scripts() {
        let layout = ObjectLayout::new("data", "quarantine", PartitionStyle::Flat).unwrap();
        assert_eq!(
            layout.data_key(
                hour(),
                stamp(8, 2, 284),
                stamp(8, 31, 984),
                "0123456789abcdef",
                ObjectEncoding::GzipNdjson
            ),
            "data/2023/03/08/05/0802284_0831984_0123456789abcdef.json.gz"
        );
        assert_eq!(
            layout.quarantine_key(hour(), "feedfacecafebeef", ObjectEncoding::GzipNdjson),
            "quarantine/2023/03/08/05/feedfacecafebeef.json.gz"
        );
    }

    #[test]
    fn hive_layout_names_the_partitions() {
        let layout = ObjectLayout::new("/logs/app/", "bad", PartitionStyle::Hive).unwrap();
        assert_eq!(
            layout.data_hour_path(hour()),
            "logs/app/year=2023/month=03/day=08/hour=05"
        );
    }

    #[test]
    fn overlapping_or_empty_prefixes_are_refused() {
        use PartitionStyle::Flat;
        assert!(matches!(
            ObjectLayout::new("data", "data/quarantine", Flat),
            Err(LayoutError::Overlap(..))
        ));
        assert!(matches!(
            ObjectLayout::new("data/q", "data", Flat),
            Err(LayoutError::Overlap(..))
        ));
        assert!(matches!(
            ObjectLayout::new("data", "data", Flat),
            Err(LayoutError::Overlap(..))
        ));
        assert!(ObjectLayout::new("data", "data-quarantine", Flat).is_ok());
        for bad in ["", "/", "a//b", "a/../b", "."] {
            assert!(
                matches!(
                    ObjectLayout::new(bad, "q", Flat),
                    Err(LayoutError::BadPrefix(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_prefix_with_a_hidden_segment_is_refused_naming_its_setting() {
        use PartitionStyle::Flat;
        // Given prefixes that listings would skip (a segment starting with '.')
        for (data, quarantine, setting) in [
            (".hidden", "quarantine", "KEY_PREFIX"),
            ("logs/.app", "quarantine", "KEY_PREFIX"),
            ("data", "q/.old/", "QUARANTINE_PREFIX"),
        ] {
            // When a layout is made of them, then it is refused, naming the setting
            let err = ObjectLayout::new(data, quarantine, Flat).unwrap_err();
            assert!(
                matches!(&err, LayoutError::HiddenPrefix { setting: s, .. } if *s == setting),
                "{err:?}"
            );
            assert!(err.to_string().starts_with(setting), "{err}");
        }
        // and a dot inside a segment is fine
        assert!(ObjectLayout::new("logs.v2/app", "q.old", Flat).is_ok());
    }

    #[test]
    fn only_encoded_objects_outside_quarantine_hold_records() {
        let layout = ObjectLayout::new("data", "quarantine", PartitionStyle::Flat).unwrap();
        assert!(layout.holds_records("data/2023/03/18/15/a.json.gz"));
        assert!(layout.holds_records("2023/03/18/15/a.json.gz"));
        assert!(layout.holds_records("quarantined/a.json.gz"));
        assert!(!layout.holds_records("quarantine/2023/03/18/15/q.json.gz"));
        assert!(!layout.holds_records("data/2023/03/18/15/a.json"));
        // both encodings, whichever is configured
        assert!(layout.holds_records("data/2023/03/18/15/a.json.zst"));
        assert!(!layout.holds_records("quarantine/2023/03/18/15/q.json.zst"));
        assert!(!layout.holds_records("data/2023/03/18/15/a.zst"));
        assert!(!layout.holds_records("data/2023/03/18/15/ajson.zst"));
        assert!(!layout.holds_records("data/2023/03/18/15/a.json.zstd"));
    }

    #[test]
    fn a_data_key_names_its_hour_in_either_style() {
        for style in [PartitionStyle::Flat, PartitionStyle::Hive] {
            let layout = ObjectLayout::new("logs/app", "quarantine", style).unwrap();
            let key = layout.data_key(
                hour(),
                stamp(8, 2, 284),
                stamp(8, 3, 0),
                "0123456789abcdef",
                ObjectEncoding::GzipNdjson,
            );
            assert_eq!(layout.hour_of_data_key(&key), Some(hour()), "{key}");
            assert_eq!(layout.hour_of_data_key("logs/app/2023/03/08/05/"), None);
            assert_eq!(
                layout.hour_of_data_key("quarantine/2023/03/08/05/a.json.gz"),
                None
            );
            assert_eq!(
                layout.hour_of_data_key("logs/app/2023/03/08/a.json.gz"),
                None
            );
        }
    }

    #[test]
    fn style_parses_from_config_text() {
        assert_eq!(
            "HIVE".parse::<PartitionStyle>().unwrap(),
            PartitionStyle::Hive
        );
        assert_eq!(
            "flat".parse::<PartitionStyle>().unwrap(),
            PartitionStyle::Flat
        );
        assert!("daily".parse::<PartitionStyle>().is_err());
    }
}
