//! Replay of quarantine: the records quarantined in some run hours go through the pipeline
//! again (a key set right, a window widened), so those that now pass land, exactly once, and
//! those that still fail stay where they are. [`crate::pipeline::Pipeline::replay`] drives it;
//! here are the hours' listing, the one decision per quarantine line ([`Replayer`]) and the
//! summary.
//!
//! The quarantine is never deleted or rewritten (the ingest role cannot delete). A record still
//! refused whose reason changed gets a new line, with its reason now, in the quarantine of the
//! replay's own run hour (where, as for a pass, a record already in that hour's quarantine or
//! the hour before's adds no copy); a record refused for the same reason as before adds nothing.
//! A record is judged by its newest line in the hours replayed: hours are read newest first and
//! a record seen once is not replayed again in the same run.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::batch::layout::ObjectLayout;
use crate::batch::{Batch, EncodeError, quarantine};
use crate::exactly_once::WriteReport;
use crate::record::fernet::KeyRing;
use crate::record::hour::{Hour, HourWindow};
use crate::record::{self, RecordLimits};
use crate::store::{Store, StoreError};

/// Hours a listing is made hour by hour rather than over the whole quarantine prefix.
const LIST_HOUR_BY_HOUR: i64 = 1000;

/// `FROM..TO`, each `YYYY-MM-DDTHH` (UTC), both ends included: the hours of a compaction or a
/// replay, as the command line and the replay function's event write them.
pub fn parse_hour_range(text: &str) -> Result<(Hour, Hour), String> {
    let (from, to) = text
        .split_once("..")
        .ok_or_else(|| format!("{text:?} is not FROM..TO"))?;
    let (from, to): (Hour, Hour) = (from.parse()?, to.parse()?);
    if from > to {
        return Err(format!("{from} is after {to}"));
    }
    Ok((from, to))
}

/// What a replay did; printed as one JSON line, returned by the function, the source of its
/// metrics. `records_replayed` = `records_landed` + `records_already_present` +
/// `records_still_refused`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReplaySummary {
    /// The run hours replayed (UTC, `YYYY-MM-DDTHH`, both ends included); `None`: all of them.
    pub from: Option<String>,
    pub to: Option<String>,
    /// Quarantine objects read, and those that cannot be read (left in place, by key).
    pub objects_read: u64,
    pub objects_unreadable: u64,
    pub unreadable_objects: Vec<String>,
    /// Quarantined records taken up (each once, however many lines hold it).
    pub records_replayed: u64,
    /// Records that pass now and were written by this run.
    pub records_landed: u64,
    /// Records that pass now and were already landed (an earlier replay, a later pass).
    pub records_already_present: u64,
    /// Records refused again, and how many for each reason (`stage: reason`).
    pub records_still_refused: u64,
    pub still_refused_reasons: BTreeMap<String, u64>,
    /// Still-refused records whose reason changed, given a new line in this run's quarantine.
    pub reasons_updated: u64,
    /// Of those, records this run's quarantine (its hour or the hour before) already held.
    pub reasons_already_present: u64,
    /// Lines of quarantine objects that are not quarantine lines (left as they are).
    pub lines_not_quarantine: u64,
    /// Objects written (data and quarantine) and their compressed bytes.
    pub objects_written: u64,
    pub bytes_out: u64,
    pub duration_ms: u64,
}

impl ReplaySummary {
    /// Adds what writing the replayed records did.
    pub fn add_written(&mut self, written: &WriteReport) {
        self.records_landed += written.records_landed;
        // Two tokens of one plaintext are one record: the second is already present.
        self.records_already_present +=
            written.records_already_present + written.duplicates_dropped;
        self.reasons_updated += written.records_quarantined;
        self.reasons_already_present += written.quarantined_already_present;
        self.objects_written += written.objects_written;
        self.bytes_out += written.bytes_out;
    }
}

/// The keys of the quarantine objects of the run hours `hours` (every hour when `None`),
/// newest hour first.
pub async fn quarantine_keys(
    store: &Store,
    layout: &ObjectLayout,
    hours: Option<(Hour, Hour)>,
) -> Result<Vec<String>, StoreError> {
    let mut keys = match hours {
        Some((from, to)) if (to.start() - from.start()).num_hours() <= LIST_HOUR_BY_HOUR => {
            let mut keys = Vec::new();
            let mut hour = to;
            while hour >= from {
                let folder = format!("{}/", layout.quarantine_hour_path(hour));
                let mut listed = store.list(&folder).await?;
                listed.sort_by(|a, b| b.cmp(a));
                keys.extend(listed);
                hour = hour.previous();
            }
            keys
        }
        _ => {
            let mut keys = store
                .list(&format!("{}/", layout.quarantine_prefix()))
                .await?;
            keys.retain(|key| {
                let hour = hour_of_quarantine_key(layout, key);
                hour.is_some()
                    && hours.is_none_or(|(from, to)| hour.is_some_and(|h| h >= from && h <= to))
            });
            // Both layouts name hour folders so that key order is time order.
            keys.sort_by(|a, b| b.cmp(a));
            keys
        }
    };
    keys.retain(|key| layout.is_object(key));
    Ok(keys)
}

/// The run hour of a quarantine object's key (`<quarantine-prefix>/<hour folder>/<name>`): the
/// four numbers of its folder, checked by naming that hour's folder again.
fn hour_of_quarantine_key(layout: &ObjectLayout, key: &str) -> Option<Hour> {
    let (folder, _) = key.rsplit_once('/')?;
    let rest = folder
        .strip_prefix(layout.quarantine_prefix())?
        .strip_prefix('/')?;
    let numbers: Vec<u32> = rest
        .split(|c: char| !c.is_ascii_digit())
        .filter(|part| !part.is_empty())
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let [year, month, day, hour] = numbers[..] else {
        return None;
    };
    let hour = Hour::at(NaiveDate::from_ymd_opt(year as i32, month, day)?, hour)?;
    (layout.quarantine_hour_path(hour) == folder).then_some(hour)
}

/// A quarantine line, as [`quarantine`] writes it.
#[derive(Deserialize)]
struct HeldLine<'a> {
    #[serde(default)]
    stage: String,
    #[serde(default)]
    reason: String,
    #[serde(borrow)]
    record: Option<&'a RawValue>,
    #[serde(borrow)]
    element: Option<&'a RawValue>,
}

/// Quarantine lines into a batch: each record once, through the pipeline's record stages at the
/// replay's time; what passes goes to the batch's hours, what is refused for a new reason to
/// its quarantine, the rest only into the summary.
pub struct Replayer<'a> {
    batch: Batch<'a>,
    ring: &'a KeyRing,
    limits: RecordLimits,
    window: HourWindow,
    /// Records seen in this run, by a 128-bit hash of their identity: a collision (odds far
    /// below any disk's) would only leave a record for the next replay, never lose it.
    seen: HashSet<u128>,
    pub summary: ReplaySummary,
}

impl<'a> Replayer<'a> {
    /// A replay at `now` (its window, its quarantine hour) into `batch`.
    pub fn new(
        batch: Batch<'a>,
        ring: &'a KeyRing,
        limits: RecordLimits,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            batch,
            ring,
            limits,
            window: limits.window(now),
            seen: HashSet::new(),
            summary: ReplaySummary::default(),
        }
    }

    /// Takes up one quarantine line. Only I/O on a spool file can fail.
    pub fn line(&mut self, line: &[u8]) -> Result<(), EncodeError> {
        let Ok(held) = serde_json::from_slice::<HeldLine<'_>>(line) else {
            self.summary.lines_not_quarantine += 1;
            return Ok(());
        };
        if held.record.is_none() && held.element.is_none() {
            self.summary.lines_not_quarantine += 1;
            return Ok(());
        }
        let identity = xxhash_rust::xxh3::xxh3_128(quarantine::identity(line));
        if !self.seen.insert(identity) {
            return Ok(());
        }
        self.summary.records_replayed += 1;
        let Some(raw) = held.record else {
            // An element that was not JSON cannot pass: it stays, for the reason it had.
            self.refused(&held.stage, &held.reason);
            return Ok(());
        };
        match record::process_record(raw.get(), self.ring, &self.limits, &self.window) {
            Ok(placed) => self
                .batch
                .push_processed(&raw.into(), Ok(placed.as_placed())),
            Err(err) => {
                let reason = err.to_string();
                self.refused(err.stage(), &reason);
                if (err.stage(), reason.as_str()) == (held.stage.as_str(), held.reason.as_str()) {
                    return Ok(());
                }
                self.batch.push_processed(&raw.into(), Err(err))
            }
        }
    }

    fn refused(&mut self, stage: &str, reason: &str) {
        self.summary.records_still_refused += 1;
        *self
            .summary
            .still_refused_reasons
            .entry(format!("{stage}: {reason}"))
            .or_default() += 1;
    }

    /// The batch of what passed and what is refused anew, and the summary so far.
    pub fn finish(self) -> Result<(crate::batch::BatchOutput, ReplaySummary), EncodeError> {
        Ok((self.batch.finish()?, self.summary))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::layout::PartitionStyle;
    use crate::batch::{BatchSettings, ObjectKind, ObjectSettings};
    use crate::record::RecordError;
    use crate::record::fernet::generate_key;
    use chrono::TimeZone;

    fn settings() -> BatchSettings {
        let layout = ObjectLayout::new("data", "quarantine", PartitionStyle::Flat).unwrap();
        BatchSettings::new(ObjectSettings::new(layout), RecordLimits::default())
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, 10, 0, 0).unwrap()
    }

    fn record(ring: &KeyRing, in_date: &str) -> Box<RawValue> {
        let plain = format!("{{'record_id': 1, 'method': 'GET', 'inDate': '{in_date}'}}");
        let json = serde_json::json!({ "data": ring.encrypt(plain.as_bytes()) }).to_string();
        RawValue::from_string(json).unwrap()
    }

    /// The quarantine line of `raw` as the ring `refusing` refused it.
    fn refused_line(raw: &RawValue, refusing: &KeyRing, limits: RecordLimits) -> Vec<u8> {
        let err = record::process_record(raw.get(), refusing, &limits, &limits.window(now()))
            .unwrap_err();
        quarantine::line(raw, &err)
    }

    #[test]
    fn hour_ranges_are_from_to_both_ends_included() {
        let (from, to) = parse_hour_range("2024-01-01T00..2024-01-02T23").unwrap();
        assert_eq!(
            (from.to_string(), to.to_string()),
            ("2024-01-01T00".into(), "2024-01-02T23".into())
        );
        assert!(
            parse_hour_range("2024-01-02T00..2024-01-01T00")
                .unwrap_err()
                .contains("after")
        );
        assert!(
            parse_hour_range("2024-01-01T00")
                .unwrap_err()
                .contains("FROM..TO")
        );
    }

    #[test]
    fn a_quarantine_key_names_its_run_hour_in_either_layout() {
        for style in [PartitionStyle::Flat, PartitionStyle::Hive] {
            let layout = ObjectLayout::new("data", "q/bad", style).unwrap();
            let hour = Hour::of(now());
            let key = layout.quarantine_key(
                hour,
                "abc",
                crate::batch::encode::ObjectEncoding::GzipNdjson,
            );
            assert_eq!(hour_of_quarantine_key(&layout, &key), Some(hour), "{key}");
            assert_eq!(
                hour_of_quarantine_key(&layout, "q/bad/2024/01/01/x.json.gz"),
                None
            );
            assert_eq!(
                hour_of_quarantine_key(&layout, "data/2024/01/01/10/x.json.gz"),
                None
            );
        }
    }

    #[test]
    fn a_record_refused_for_a_wrong_key_passes_with_the_right_one_once() {
        // Given a record quarantined by a pass with a stranger's key, held by two lines
        let (ring, stranger) = (
            KeyRing::parse(&generate_key()).unwrap(),
            KeyRing::parse(&generate_key()).unwrap(),
        );
        let settings = settings();
        let raw = record(&ring, "2024-01-01T09:30:00.000Z");
        let line = refused_line(&raw, &stranger, settings.limits);
        // When both lines are replayed with the right key
        let mut replayer = Replayer::new(
            Batch::new(&ring, &settings, now()),
            &ring,
            settings.limits,
            now(),
        );
        replayer.line(&line).unwrap();
        replayer.line(&line).unwrap();
        let (output, summary) = replayer.finish().unwrap();
        // Then the record is taken up once and placed in its hour; nothing goes to quarantine
        assert_eq!(summary.records_replayed, 1);
        assert_eq!(summary.records_still_refused, 0);
        assert_eq!(output.objects.len(), 1);
        assert!(matches!(output.objects[0].kind, ObjectKind::Data { .. }));
        assert_eq!(output.stats.records_placed, 1);
    }

    #[test]
    fn a_record_refused_again_adds_a_line_only_when_its_reason_changed() {
        // Given a record from 1999 refused for its date, one refused for a wrong key that is
        // still wrong, and an element that was not JSON
        let ring = KeyRing::parse(&generate_key()).unwrap();
        let stranger = KeyRing::parse(&generate_key()).unwrap();
        let settings = settings();
        let old = record(&ring, "1999-12-31T23:00:00.000Z");
        let old_line = refused_line(&old, &ring, settings.limits);
        let foreign = record(&stranger, "2024-01-01T09:30:00.000Z");
        let foreign_line = refused_line(&foreign, &ring, settings.limits);
        let not_json = quarantine::not_json_line(b"{\"a\": NaN}", "element is not valid JSON");
        // When they are replayed with the same key and window
        let mut replayer = Replayer::new(
            Batch::new(&ring, &settings, now()),
            &ring,
            settings.limits,
            now(),
        );
        for line in [&old_line, &foreign_line, &not_json] {
            replayer.line(line).unwrap();
        }
        let (output, summary) = replayer.finish().unwrap();
        // Then all three are still refused, each for the reason it had, and nothing is written
        assert_eq!(
            (summary.records_replayed, summary.records_still_refused),
            (3, 3)
        );
        assert!(output.objects.is_empty(), "{:?}", output.objects);
        assert_eq!(summary.still_refused_reasons.len(), 3);
        assert_eq!(
            summary.still_refused_reasons["shape: element is not valid JSON"],
            1
        );
        // When the 1999 record is replayed with a key that does not open it
        let mut replayer = Replayer::new(
            Batch::new(&stranger, &settings, now()),
            &stranger,
            settings.limits,
            now(),
        );
        replayer.line(&old_line).unwrap();
        let (output, summary) = replayer.finish().unwrap();
        // Then its new reason goes to this run's quarantine, the record as it was received
        assert_eq!(
            summary
                .still_refused_reasons
                .keys()
                .next()
                .unwrap()
                .split(':')
                .next(),
            Some("decrypt")
        );
        assert_eq!(output.objects.len(), 1);
        assert_eq!(
            output.objects[0].kind,
            ObjectKind::Quarantine {
                run_hour: Hour::of(now())
            }
        );
        assert_eq!(output.stats.records_refused, 1);
        assert!(matches!(
            record::process_record(
                old.get(),
                &stranger,
                &settings.limits,
                &settings.limits.window(now())
            ),
            Err(RecordError::Decrypt(_))
        ));
    }

    #[test]
    fn lines_that_are_not_quarantine_lines_are_counted_and_left() {
        let ring = KeyRing::parse(&generate_key()).unwrap();
        let settings = settings();
        let mut replayer = Replayer::new(
            Batch::new(&ring, &settings, now()),
            &ring,
            settings.limits,
            now(),
        );
        replayer.line(br#"{"user_id": "x"}"#).unwrap();
        let (output, summary) = replayer.finish().unwrap();
        assert_eq!(
            (summary.lines_not_quarantine, summary.records_replayed),
            (1, 0)
        );
        assert!(output.objects.is_empty());
    }
}
