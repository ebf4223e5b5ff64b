//! What a folder or a bucket holds, hour by hour (`log-etl status`, and the demo's table):
//! objects and bytes from listings alone, records (and unreadable objects) only when asked,
//! since counting them reads every object.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::batch::ObjectSettings;
use crate::batch::encode;
use crate::batch::layout::ObjectLayout;
use crate::record::hour::Hour;
use crate::restore::{self, RestoreError};
use crate::store::{Store, StoreError};

/// What to look at.
#[derive(Debug, Clone)]
pub struct StatusOptions {
    /// The time the states are judged at: an hour is open until `closed_after` past its end.
    pub now: DateTime<Utc>,
    pub closed_after: Duration,
    /// Only these hours, both ends included (data by their own hour, quarantine by run hour).
    pub hours: Option<(Hour, Hour)>,
    /// Read every object to count its records and find unreadable ones.
    pub records: bool,
}

/// The state of a data hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HourState {
    /// Not closed yet (`COMPACT_AFTER` after its end): passes may still write to it.
    Open,
    /// Closed, and holding more than one object: the next compaction merges them.
    Closed,
    /// Closed and holding one object.
    Compacted,
    /// Holds an object that cannot be read (only known when records are counted).
    Unreadable,
}

impl HourState {
    fn label(self) -> &'static str {
        match self {
            HourState::Open => "open",
            HourState::Closed => "closed",
            HourState::Compacted => "compacted",
            HourState::Unreadable => "unreadable",
        }
    }
}

/// One data hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HourStatus {
    /// UTC, `YYYY-MM-DDTHH`.
    pub hour: String,
    pub objects: u64,
    /// Stored (compressed) bytes.
    pub bytes: u64,
    /// Records, when counted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records: Option<u64>,
    pub state: HourState,
    /// Keys of the objects that cannot be read (when counted).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unreadable_objects: Vec<String>,
}

/// The quarantine of one run hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuarantineStatus {
    /// The hour of the runs that wrote it (UTC, `YYYY-MM-DDTHH`).
    pub hour: String,
    pub objects: u64,
    pub bytes: u64,
    /// Quarantine lines, when counted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lines: Option<u64>,
}

/// Sums over every hour shown.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StatusTotals {
    pub hours: u64,
    pub objects: u64,
    pub bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records: Option<u64>,
    pub hours_open: u64,
    pub hours_closed: u64,
    pub hours_compacted: u64,
    pub hours_unreadable: u64,
    pub quarantine_objects: u64,
    pub quarantine_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantine_lines: Option<u64>,
}

/// What a store holds, hour by hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoreStatus {
    pub hours: Vec<HourStatus>,
    pub quarantine: Vec<QuarantineStatus>,
    pub totals: StatusTotals,
}

/// Why the status could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("listing the objects failed")]
    List(#[source] StoreError),
    #[error("reading {key} failed")]
    Read {
        key: String,
        #[source]
        source: StoreError,
    },
    #[error("reading {key} failed")]
    Body {
        key: String,
        #[source]
        source: io::Error,
    },
    #[error("the temporary folder for downloaded objects could not be made")]
    SpillFolder(#[source] io::Error),
}

/// Lists the data and quarantine prefixes of `settings.layout` in `store` (and, with
/// `options.records`, reads every object) into the status of each hour.
pub async fn status(
    store: &Store,
    settings: &ObjectSettings,
    options: &StatusOptions,
) -> Result<StoreStatus, StatusError> {
    // A downloaded object waits in a private spill file past a small size, whatever its size.
    let spill =
        crate::batch::spool::spill_dir(&std::env::temp_dir()).map_err(StatusError::SpillFolder)?;
    let settings = &settings.spilling_into(spill.path());
    let layout = &settings.layout;
    let in_range = |hour: Hour| {
        options
            .hours
            .is_none_or(|(from, to)| (from..=to).contains(&hour))
    };
    let mut data: BTreeMap<Hour, HourStatus> = BTreeMap::new();
    let listed = store
        .list_with_sizes(&format!("{}/", layout.data_prefix()))
        .await
        .map_err(StatusError::List)?;
    for (key, size) in listed {
        let Some(hour) = layout.hour_of_data_key(&key) else {
            continue;
        };
        if !layout.is_object(&key) || !in_range(hour) {
            continue;
        }
        let entry = data.entry(hour).or_insert_with(|| HourStatus {
            hour: hour.to_string(),
            objects: 0,
            bytes: 0,
            records: options.records.then_some(0),
            state: HourState::Open,
            unreadable_objects: Vec::new(),
        });
        entry.objects += 1;
        entry.bytes += size;
        if options.records {
            match count_records(store, settings, &key).await? {
                Some(records) => *entry.records.get_or_insert(0) += records,
                None => entry.unreadable_objects.push(key),
            }
        }
    }
    for (hour, entry) in &mut data {
        let closed =
            hour.start() + chrono::Duration::hours(1) + options.closed_after <= options.now;
        entry.state = match (entry.unreadable_objects.is_empty(), closed, entry.objects) {
            (false, _, _) => HourState::Unreadable,
            (true, false, _) => HourState::Open,
            (true, true, 1) => HourState::Compacted,
            (true, true, _) => HourState::Closed,
        };
    }
    let quarantine = quarantine_status(store, settings, options, &in_range).await?;
    let hours: Vec<HourStatus> = data.into_values().collect();
    let totals = totals(&hours, &quarantine, options.records);
    Ok(StoreStatus {
        hours,
        quarantine,
        totals,
    })
}

async fn quarantine_status(
    store: &Store,
    settings: &ObjectSettings,
    options: &StatusOptions,
    in_range: &impl Fn(Hour) -> bool,
) -> Result<Vec<QuarantineStatus>, StatusError> {
    let layout = &settings.layout;
    // The quarantine folders are laid out as the data's, under the other prefix: the same
    // parser reads their run hour with the prefixes swapped (they never overlap).
    let Ok(swapped) = ObjectLayout::new(
        layout.quarantine_prefix(),
        layout.data_prefix(),
        layout.style(),
    ) else {
        return Ok(Vec::new());
    };
    let mut runs: BTreeMap<Hour, QuarantineStatus> = BTreeMap::new();
    let listed = store
        .list_with_sizes(&format!("{}/", layout.quarantine_prefix()))
        .await
        .map_err(StatusError::List)?;
    for (key, size) in listed {
        let Some(hour) = swapped.hour_of_data_key(&key) else {
            continue;
        };
        if !layout.is_object(&key) || !in_range(hour) {
            continue;
        }
        let entry = runs.entry(hour).or_insert_with(|| QuarantineStatus {
            hour: hour.to_string(),
            objects: 0,
            bytes: 0,
            lines: options.records.then_some(0),
        });
        entry.objects += 1;
        entry.bytes += size;
        if options.records {
            let reader =
                store
                    .open(&key, &settings.spool)
                    .await
                    .map_err(|source| StatusError::Read {
                        key: key.clone(),
                        source,
                    })?;
            // A quarantine object that cannot be read counts the lines read before it stops.
            let lines = encode::read_lines(reader, settings.read)
                .take_while(Result::is_ok)
                .count() as u64;
            *entry.lines.get_or_insert(0) += lines;
        }
    }
    Ok(runs.into_values().collect())
}

/// The records of one data object, or `None` when it cannot be read back.
async fn count_records(
    store: &Store,
    settings: &ObjectSettings,
    key: &str,
) -> Result<Option<u64>, StatusError> {
    let reader = store
        .open(key, &settings.spool)
        .await
        .map_err(|source| StatusError::Read {
            key: key.to_owned(),
            source,
        })?;
    match restore::restore_object(key, reader, settings.read, &mut io::sink()) {
        Ok(records) => Ok(Some(records)),
        Err(RestoreError::Unreadable { .. } | RestoreError::Line { .. }) => Ok(None),
        Err(RestoreError::Io { source, .. } | RestoreError::Output(source)) => {
            Err(StatusError::Body {
                key: key.to_owned(),
                source,
            })
        }
        Err(_) => Ok(None),
    }
}

fn totals(hours: &[HourStatus], quarantine: &[QuarantineStatus], records: bool) -> StatusTotals {
    let count = |state| hours.iter().filter(|h| h.state == state).count() as u64;
    StatusTotals {
        hours: hours.len() as u64,
        objects: hours.iter().map(|h| h.objects).sum(),
        bytes: hours.iter().map(|h| h.bytes).sum(),
        records: records.then(|| hours.iter().filter_map(|h| h.records).sum()),
        hours_open: count(HourState::Open),
        hours_closed: count(HourState::Closed),
        hours_compacted: count(HourState::Compacted),
        hours_unreadable: count(HourState::Unreadable),
        quarantine_objects: quarantine.iter().map(|q| q.objects).sum(),
        quarantine_bytes: quarantine.iter().map(|q| q.bytes).sum(),
        quarantine_lines: records.then(|| quarantine.iter().filter_map(|q| q.lines).sum()),
    }
}

/// Width of the bar chart, in characters, for the largest hour.
const CHART_WIDTH: u64 = 30;

/// Writes the status as a table for people: one row an hour with a bar of its records (bytes
/// when records were not counted), the quarantine per run hour, then the totals.
pub fn write_table(status: &StoreStatus, out: &mut impl Write) -> io::Result<()> {
    let measure = |h: &HourStatus| h.records.unwrap_or(h.bytes);
    let largest = status.hours.iter().map(measure).max().unwrap_or(0).max(1);
    let counted = status.totals.records.is_some();
    let count = |n: Option<u64>| match n {
        Some(n) => format!(" {n:>9}"),
        None => String::new(),
    };
    let heading = |name: &str| match counted {
        true => format!(" {name:>9}"),
        false => String::new(),
    };
    writeln!(
        out,
        "{:<13} {:>7} {:>11}{}  {:<10} {}",
        "hour",
        "objects",
        "bytes",
        heading("records"),
        "state",
        if counted { "records" } else { "bytes" }
    )?;
    for hour in &status.hours {
        let bar = "#".repeat((measure(hour) * CHART_WIDTH).div_ceil(largest) as usize);
        writeln!(
            out,
            "{:<13} {:>7} {:>11}{}  {:<10} {bar}",
            hour.hour,
            hour.objects,
            hour.bytes,
            count(hour.records),
            hour.state.label()
        )?;
        for key in &hour.unreadable_objects {
            writeln!(out, "  unreadable: {key}")?;
        }
    }
    if !status.quarantine.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "{:<13} {:>7} {:>11}{}  quarantine, by run hour",
            "run hour",
            "objects",
            "bytes",
            heading("lines")
        )?;
        for q in &status.quarantine {
            writeln!(
                out,
                "{:<13} {:>7} {:>11}{}",
                q.hour,
                q.objects,
                q.bytes,
                count(q.lines)
            )?;
        }
    }
    let t = &status.totals;
    writeln!(out)?;
    writeln!(
        out,
        "total: {} hour(s) ({} open, {} closed, {} compacted, {} unreadable), {} object(s), {} bytes{}; quarantine: {} object(s), {} bytes{}",
        t.hours,
        t.hours_open,
        t.hours_closed,
        t.hours_compacted,
        t.hours_unreadable,
        t.objects,
        t.bytes,
        t.records
            .map(|r| format!(", {r} records"))
            .unwrap_or_default(),
        t.quarantine_objects,
        t.quarantine_bytes,
        t.quarantine_lines
            .map(|l| format!(", {l} lines"))
            .unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hour(
        name: &str,
        objects: u64,
        bytes: u64,
        records: Option<u64>,
        state: HourState,
    ) -> HourStatus {
        HourStatus {
            hour: name.to_owned(),
            objects,
            bytes,
            records,
            state,
            unreadable_objects: Vec::new(),
        }
    }

    #[test]
    fn the_table_charts_records_when_counted_and_bytes_otherwise_with_the_totals() {
        // Given two hours, one twice the records of the other
        let hours = vec![
            hour("2023-03-18T14", 1, 100, Some(50), HourState::Compacted),
            hour("2023-03-18T15", 3, 400, Some(100), HourState::Open),
        ];
        let quarantine = vec![QuarantineStatus {
            hour: "2026-12-01T10".to_owned(),
            objects: 1,
            bytes: 40,
            lines: Some(2),
        }];
        let status = StoreStatus {
            totals: totals(&hours, &quarantine, true),
            hours,
            quarantine,
        };
        // When it is written as a table
        let mut out = Vec::new();
        write_table(&status, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        // Then each row has its state and a bar in proportion to its records
        let row = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .unwrap()
                .to_owned()
        };
        assert!(row("2023-03-18T14").contains("compacted"));
        assert!(row("2023-03-18T14").ends_with(&format!(" {}", "#".repeat(15))));
        assert!(row("2023-03-18T15").ends_with(&format!(" {}", "#".repeat(30))));
        assert!(row("2026-12-01T10").contains(" 2"));
        // And the totals sum the hours
        assert!(text.contains(
            "total: 2 hour(s) (1 open, 0 closed, 1 compacted, 0 unreadable), 4 object(s), 500 bytes, 150 records; quarantine: 1 object(s), 40 bytes, 2 lines"
        ), "{text}");
    }
}
