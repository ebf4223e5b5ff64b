//! The one builder of objects: lines (with their stamps) in, a named, encoded object out. Every
//! writer of objects (a batch, exactly-once's parts, a compaction's merge) goes through
//! [`ObjectBuilder`], so an object's key, extension, encoding and body are made in one place.

use std::io;
use std::path::Path;

use crate::batch::encode::{DEFAULT_GZIP_LEVEL, ObjectEncoding, ObjectWriter, ReadLimits};
use crate::batch::layout::ObjectLayout;
use crate::batch::quarantine;
use crate::batch::spool::{Body, SpoolPolicy};
use crate::record::hour::{Hour, Stamp};

/// Bytes a body keeps in memory before it moves to its run's spill folder.
pub const SPILL_AFTER_BYTES: usize = 256 << 10;

/// How objects are named and encoded, made once from the configuration. Bodies stay in memory
/// until a run gives the settings its spill folder ([`ObjectSettings::spilling_into`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectSettings {
    pub layout: ObjectLayout,
    pub encoding: ObjectEncoding,
    /// Compression level of the encoding (gzip: 0–9, zstd: 1–19).
    pub level: u32,
    pub spool: SpoolPolicy,
    /// Bounds on reading stored objects back.
    pub read: ReadLimits,
    /// Each object compresses on a thread of its own ([`ObjectWriter::compressing_apart`]),
    /// for a run whose records come from several cores; the bytes are the same either way.
    pub compress_apart: bool,
}

impl ObjectSettings {
    /// The default encoding and level for `layout`, bodies in memory.
    pub fn new(layout: ObjectLayout) -> Self {
        Self {
            layout,
            encoding: ObjectEncoding::GzipNdjson,
            level: DEFAULT_GZIP_LEVEL,
            spool: SpoolPolicy::in_memory(),
            read: ReadLimits::default(),
            compress_apart: false,
        }
    }

    /// The same settings, each object compressing on a thread of its own.
    pub fn compressing_apart(&self) -> Self {
        Self {
            compress_apart: true,
            ..self.clone()
        }
    }

    /// The same settings, bodies past [`SPILL_AFTER_BYTES`] waiting in files under `dir`.
    pub fn spilling_into(&self, dir: &Path) -> Self {
        Self {
            spool: SpoolPolicy::spill_to(dir.to_owned(), SPILL_AFTER_BYTES),
            ..self.clone()
        }
    }
}

/// What an object holds. Every decision that depends on it is a method here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ObjectKind {
    /// Compact records of one UTC hour.
    Data { hour: Hour },
    /// Records that could not be processed, with their reasons, filed under the run's hour.
    Quarantine { run_hour: Hour },
}

impl ObjectKind {
    /// What makes two lines of this kind the same record: a data line itself; for a quarantine
    /// line, the source object it holds (whatever reason it was refused for).
    pub fn identity(self, line: &[u8]) -> &[u8] {
        match self {
            ObjectKind::Data { .. } => line,
            ObjectKind::Quarantine { .. } => quarantine::identity(line),
        }
    }

    /// The folders whose objects may already hold this kind's records; the first is where a new
    /// object goes. Quarantine is compared with the run's hour and the hour before it (a batch
    /// read again after the hour turned).
    pub fn folders(self, layout: &ObjectLayout) -> Vec<String> {
        match self {
            ObjectKind::Data { hour } => vec![format!("{}/", layout.data_hour_path(hour))],
            ObjectKind::Quarantine { run_hour } => vec![
                format!("{}/", layout.quarantine_hour_path(run_hour)),
                format!("{}/", layout.quarantine_hour_path(run_hour.previous())),
            ],
        }
    }

    /// The key of an object of this kind: a data object is named by its first and last stamps
    /// and its digest, a quarantine object by its digest.
    pub fn key(self, settings: &ObjectSettings, first: Stamp, last: Stamp, digest: &str) -> String {
        let (layout, encoding) = (&settings.layout, settings.encoding);
        match self {
            ObjectKind::Data { hour } => layout.data_key(hour, first, last, digest, encoding),
            ObjectKind::Quarantine { run_hour } => {
                layout.quarantine_key(run_hour, digest, encoding)
            }
        }
    }

    /// The data hour, for a data object.
    pub fn data_hour(self) -> Option<Hour> {
        match self {
            ObjectKind::Data { hour } => Some(hour),
            ObjectKind::Quarantine { .. } => None,
        }
    }
}

/// An object ready to be written once under its key.
#[derive(Debug)]
pub struct EncodedObject {
    pub key: String,
    pub kind: ObjectKind,
    pub encoding: ObjectEncoding,
    pub body: Body,
    /// Lines (records) in the object.
    pub records: u64,
    /// Uncompressed bytes.
    pub uncompressed: u64,
    /// No two lines of the object hash alike, so no two are the same record. When false, the
    /// object may hold a record twice: the writer compares its lines, content against content,
    /// before anything lands.
    pub distinct: bool,
    /// No line of the object has the identity hash of a line in another object of the same
    /// kind (hour) made by the same batch: the writer compares it only with the objects the
    /// hour held before the run, not with the ones the run wrote. Only a batch can know it
    /// ([`crate::batch::Batch::finish`]); every other object says false, and is compared with
    /// everything.
    pub distinct_in_batch: bool,
}

/// Why an object could not be encoded (its body is written to memory or a spill file).
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("the temporary folder for object bodies could not be made")]
    SpillFolder(#[source] io::Error),
    #[error("encoding an object body failed")]
    Body(#[source] io::Error),
    #[error("reading back the body of {key} failed")]
    ReadBack {
        key: String,
        #[source]
        source: io::Error,
    },
}

/// Lines becoming one object of a kind: encoded as they come, named when finished.
pub struct ObjectBuilder {
    kind: ObjectKind,
    writer: ObjectWriter,
    first: Option<Stamp>,
    last: Stamp,
    hashes: LineHashes,
}

impl ObjectBuilder {
    pub fn new(kind: ObjectKind, settings: &ObjectSettings) -> Self {
        Self {
            kind,
            writer: writer(settings),
            first: None,
            last: Stamp::default(),
            hashes: LineHashes::default(),
        }
    }

    /// Appends one line (no newline in it) with the stamp of its record (data objects are named
    /// by their first and last stamps; a quarantine object's name ignores them).
    pub fn push(&mut self, line: &[u8], stamp: Stamp) -> Result<(), EncodeError> {
        self.hashes.add(self.kind.identity(line));
        self.first.get_or_insert(stamp);
        self.last = stamp;
        self.writer.write_line(line).map_err(EncodeError::Body)
    }

    /// Lines so far.
    pub fn lines(&self) -> u64 {
        self.writer.lines()
    }

    /// The finished object, named by its kind, stamps and digest; `None` if it holds no line.
    pub fn finish(self, settings: &ObjectSettings) -> Result<Option<EncodedObject>, EncodeError> {
        Ok(self.finish_with_hashes(settings)?.map(|(object, _)| object))
    }

    /// The finished object, and the identity hashes of its lines, sorted and each once (what a
    /// batch compares its objects of one hour by).
    pub fn finish_with_hashes(
        self,
        settings: &ObjectSettings,
    ) -> Result<Option<(EncodedObject, Vec<u64>)>, EncodeError> {
        let Some(first) = self.first else {
            return Ok(None);
        };
        let encoded = self.writer.finish().map_err(EncodeError::Body)?;
        let (hashes, repeated) = self.hashes.sorted();
        let object = EncodedObject {
            key: self.kind.key(settings, first, self.last, &encoded.digest),
            kind: self.kind,
            encoding: settings.encoding,
            body: encoded.body,
            records: encoded.lines,
            uncompressed: encoded.uncompressed,
            distinct: !repeated,
            distinct_in_batch: false,
        };
        Ok(Some((object, hashes)))
    }
}

/// The body's writer: on a thread of its own when the settings say so and a thread can be
/// had, else on the caller's (the same bytes either way).
fn writer(settings: &ObjectSettings) -> ObjectWriter {
    let (encoding, level, spool) = (settings.encoding, settings.level, &settings.spool);
    if settings.compress_apart {
        match ObjectWriter::compressing_apart(encoding, level, spool) {
            Ok(writer) => return writer,
            Err(error) => tracing::warn!(%error, "no compressor thread: compressing in line"),
        }
    }
    ObjectWriter::encoding(encoding, level, spool)
}

/// Hashes of lines' identities, to tell whether an object may hold a record twice. A list
/// sorted once at the end rather than a set: 8 bytes a line, and no table to grow and rehash.
#[derive(Default)]
struct LineHashes {
    hashes: Vec<u64>,
}

impl LineHashes {
    fn add(&mut self, identity: &[u8]) {
        self.hashes.push(xxhash_rust::xxh3::xxh3_64(identity));
    }

    /// The hashes sorted, each once, and whether any was repeated.
    fn sorted(mut self) -> (Vec<u64>, bool) {
        self.hashes.sort_unstable();
        let before = self.hashes.len();
        self.hashes.dedup();
        let repeated = self.hashes.len() != before;
        (self.hashes, repeated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::encode;
    use crate::batch::layout::PartitionStyle;
    use chrono::{TimeZone, Utc};

    fn settings() -> ObjectSettings {
        ObjectSettings::new(ObjectLayout::new("data", "quarantine", PartitionStyle::Flat).unwrap())
    }

    fn hour() -> Hour {
        Hour::of(Utc.with_ymd_and_hms(2023, 3, 18, 15, 0, 0).unwrap())
    }

    fn stamp(second: u32) -> Stamp {
        Stamp::of(Utc.with_ymd_and_hms(2023, 3, 18, 15, 8, second).unwrap())
    }

    #[test]
    fn a_data_object_is_named_by_its_first_and_last_stamps_and_digest() {
        // Given two lines of one hour
        let mut builder = ObjectBuilder::new(ObjectKind::Data { hour: hour() }, &settings());
        builder.push(br#"{"a":1}"#, stamp(2)).unwrap();
        builder.push(br#"{"a":2}"#, stamp(9)).unwrap();
        // When it is finished
        let object = builder.finish(&settings()).unwrap().unwrap();
        // Then its key, counts and lines are those of the lines given
        assert!(
            object
                .key
                .starts_with("data/2023/03/18/15/0802000_0809000_"),
            "{}",
            object.key
        );
        assert!(object.key.ends_with(".json.gz"));
        assert_eq!((object.records, object.uncompressed), (2, 16));
        assert!(object.distinct);
        let lines: Vec<Vec<u8>> =
            encode::read_lines(object.body.reader().unwrap(), settings().read)
                .map(Result::unwrap)
                .collect();
        assert_eq!(lines, [br#"{"a":1}"#.to_vec(), br#"{"a":2}"#.to_vec()]);
    }

    #[test]
    fn a_zstd_object_is_named_with_its_extension_and_the_same_digest() {
        // Given the same lines built as gzip and as zstd
        let zstd = ObjectSettings {
            encoding: ObjectEncoding::ZstdNdjson,
            level: 3,
            ..settings()
        };
        let build = |settings: &ObjectSettings| {
            let mut builder = ObjectBuilder::new(ObjectKind::Data { hour: hour() }, settings);
            builder.push(br#"{"a":1}"#, stamp(2)).unwrap();
            builder.finish(settings).unwrap().unwrap()
        };
        let (gzip, zstd) = (build(&settings()), build(&zstd));
        // Then only the extension and the encoding differ, and the body is zstd
        assert_eq!(
            zstd.key,
            gzip.key.replace(".json.gz", ".json.zst"),
            "{}",
            zstd.key
        );
        assert_eq!(zstd.encoding, ObjectEncoding::ZstdNdjson);
        let body = zstd.body.to_vec().unwrap();
        assert_eq!(&body[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
        assert_eq!(zstd::stream::decode_all(&body[..]).unwrap(), b"{\"a\":1}\n");
    }

    #[test]
    fn quarantine_lines_of_one_record_make_an_object_that_is_not_distinct() {
        // Given the same source record refused for two reasons
        let kind = ObjectKind::Quarantine { run_hour: hour() };
        let mut builder = ObjectBuilder::new(kind, &settings());
        builder
            .push(
                br#"{"stage":"decrypt","reason":"a","record":{"data":"x"}}"#,
                stamp(0),
            )
            .unwrap();
        builder
            .push(
                br#"{"stage":"decrypt","reason":"b","record":{"data":"x"}}"#,
                stamp(0),
            )
            .unwrap();
        // Then the object may hold a record twice, and is filed under the run's hour
        let object = builder.finish(&settings()).unwrap().unwrap();
        assert!(!object.distinct);
        assert!(object.key.starts_with("quarantine/2023/03/18/15/"));
    }

    #[test]
    fn an_empty_builder_makes_no_object() {
        let builder = ObjectBuilder::new(ObjectKind::Data { hour: hour() }, &settings());
        assert!(builder.finish(&settings()).unwrap().is_none());
    }

    #[test]
    fn quarantine_is_compared_with_the_run_hour_and_the_one_before() {
        let layout = settings().layout;
        assert_eq!(
            ObjectKind::Quarantine { run_hour: hour() }.folders(&layout),
            ["quarantine/2023/03/18/15/", "quarantine/2023/03/18/14/"]
        );
        assert_eq!(
            ObjectKind::Data { hour: hour() }.folders(&layout),
            ["data/2023/03/18/15/"]
        );
    }
}
