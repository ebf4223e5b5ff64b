//! Reading landed objects back: gunzip, parse each line, undo the compaction, and write the
//! original records as NDJSON in the order stored.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use serde_json::{Map, Value};

use crate::batch::encode::{self, ReadLimits, Unreadable};
use crate::batch::{ObjectSettings, spool};
use crate::progress::Progress;
use crate::record::fields;
use crate::store::{Store, StoreError};

/// Why an object could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("reading {name} failed")]
    Io {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("{name} is unreadable after {records} record(s)")]
    Unreadable {
        name: String,
        records: u64,
        #[source]
        reason: Unreadable,
    },
    #[error("{name} line {line} is not a JSON object")]
    Line {
        name: String,
        line: u64,
        #[source]
        source: serde_json::Error,
    },
    #[error("{} object(s) could not be read, the rest were restored: {}", .names.len(), .names.join(", "))]
    SomeUnreadable { names: Vec<String> },
    #[error("writing the restored records failed")]
    Output(#[source] io::Error),
    #[error("reading the stored objects failed")]
    Store(#[source] StoreError),
}

/// Restores every line of one gzip'd NDJSON object into `out`, read within `limits`; `name`
/// only labels errors. Returns the number of records.
pub fn restore_object(
    name: &str,
    gzipped: impl Read,
    limits: ReadLimits,
    out: &mut impl Write,
) -> Result<u64, RestoreError> {
    let mut count = 0;
    for line in encode::read_lines(gzipped, limits) {
        let line = line.map_err(|reason| RestoreError::Unreadable {
            name: name.to_owned(),
            records: count,
            reason,
        })?;
        count += 1;
        let mut record: Map<String, Value> =
            serde_json::from_slice(&line).map_err(|source| RestoreError::Line {
                name: name.to_owned(),
                line: count,
                source,
            })?;
        fields::restore(&mut record);
        serde_json::to_writer(&mut *out, &record).map_err(|e| RestoreError::Output(e.into()))?;
        out.write_all(b"\n").map_err(RestoreError::Output)?;
    }
    Ok(count)
}

/// Restores every record object under `prefix` in `store`, in key order: objects with the
/// encoding's extension, leaving out the quarantine prefix. Returns the number of records. An
/// unreadable object is reported (its records restored up to where it stops being readable)
/// and the others are still restored; the run then fails naming every such object.
pub async fn restore_store(
    store: &Store,
    prefix: &str,
    settings: &ObjectSettings,
    out: &mut impl Write,
) -> Result<u64, RestoreError> {
    restore_store_with_progress(store, prefix, settings, out, &Progress::default()).await
}

/// As [`restore_store`], counting into `progress` the objects to restore (once listed), and
/// the objects and records restored, an object at a time.
pub async fn restore_store_with_progress(
    store: &Store,
    prefix: &str,
    settings: &ObjectSettings,
    out: &mut impl Write,
    progress: &Progress,
) -> Result<u64, RestoreError> {
    let spill = spool::spill_dir(&std::env::temp_dir()).map_err(|source| RestoreError::Io {
        name: "the temporary folder".to_owned(),
        source,
    })?;
    let settings = settings.spilling_into(spill.path());
    let mut total = 0;
    let mut unreadable = Vec::new();
    let mut keys = store.list(prefix).await.map_err(RestoreError::Store)?;
    keys.retain(|key| settings.layout.holds_records(key));
    progress.add_objects_total(keys.len() as u64);
    for key in &keys {
        let reader = store
            .open(key, &settings.spool)
            .await
            .map_err(RestoreError::Store)?;
        let records = match restore_object(
            &store.locate(key),
            progress.reading(reader),
            settings.read,
            out,
        ) {
            Ok(records) => records,
            Err(RestoreError::Unreadable {
                name,
                records,
                reason,
            }) => {
                tracing::warn!(object = %name, records, reason = %reason, "unreadable object");
                unreadable.push(name);
                records
            }
            Err(other) => return Err(other),
        };
        total += records;
        progress.add_records(records);
        progress.add_objects(1);
    }
    match unreadable.is_empty() {
        true => Ok(total),
        false => Err(RestoreError::SomeUnreadable { names: unreadable }),
    }
}

/// Restores one object file into `out`. Returns the number of records.
pub fn restore_file(
    path: &Path,
    limits: ReadLimits,
    out: &mut impl Write,
) -> Result<u64, RestoreError> {
    let name = path.display().to_string();
    let file = File::open(path).map_err(|source| RestoreError::Io {
        name: name.clone(),
        source,
    })?;
    restore_object(&name, file, limits, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::encode::ObjectWriter;
    use crate::batch::layout::{ObjectLayout, PartitionStyle};
    use crate::batch::spool::SpoolPolicy;
    use crate::logging::error_chain;

    /// A gzip'd object of `lines`.
    fn object(lines: &[&str]) -> Vec<u8> {
        let mut w = ObjectWriter::new(6, &SpoolPolicy::in_memory());
        for line in lines {
            w.write_line(line.as_bytes()).unwrap();
        }
        w.finish().unwrap().body.to_vec().unwrap()
    }

    /// Restores every object of a folder holding `files` (path, bytes).
    async fn restore_folder(files: &[(&str, Vec<u8>)]) -> (Result<u64, RestoreError>, String) {
        let dir = tempfile::tempdir().unwrap();
        for (rel, bytes) in files {
            let path = dir.path().join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
        let store = Store::Folder(crate::store::FolderStore::new(dir.path()));
        let layout = ObjectLayout::new("data", "quarantine", PartitionStyle::Flat).unwrap();
        let mut out = Vec::new();
        let result = restore_store(&store, "", &ObjectSettings::new(layout), &mut out).await;
        for (rel, _) in files {
            assert!(dir.path().join(rel).exists(), "{rel} was removed");
        }
        (result, String::from_utf8(out).unwrap())
    }

    #[test]
    fn compact_lines_come_back_as_the_original_records() {
        // Given an object with one compacted record
        let body = object(&[r#"{"user_id":null,"method":2,"inDate":"230318150802284","n":1.50}"#]);
        // When it is restored
        let mut out = Vec::new();
        let n = restore_object("obj", &body[..], ReadLimits::default(), &mut out).unwrap();
        // Then the original fields are back and the number keeps its text
        assert_eq!(n, 1);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"user_id\":null,\"method\":\"POST\",\"inDate\":\"2023-03-18T15:08:02.284Z\",\"n\":1.50}\n"
        );
    }

    #[test]
    fn a_corrupt_line_is_named() {
        let body = object(&["{}", "not json"]);
        let err =
            restore_object("obj", &body[..], ReadLimits::default(), &mut Vec::new()).unwrap_err();
        assert_eq!(
            error_chain(&err),
            "obj is unreadable after 1 record(s): line 2 is not a JSON object"
        );
    }

    #[tokio::test]
    async fn a_folder_is_restored_in_key_order_without_quarantine() {
        // Given objects in two hours, a quarantine object and a temporary file
        let files = [
            ("data/2023/03/18/16/a.json.gz", object(&[r#"{"n":3}"#])),
            ("data/2023/03/18/15/b.json.gz", object(&[r#"{"n":2}"#])),
            ("data/2023/03/18/15/a.json.gz", object(&[r#"{"n":1}"#])),
            ("data/2023/03/18/15/.tmp123", object(&[r#"{"n":9}"#])),
            (
                "quarantine/2023/03/18/15/q.json.gz",
                object(&[r#"{"n":8}"#]),
            ),
        ];
        // When the folder is restored
        let (restored, out) = restore_folder(&files).await;
        // Then the data records come back in key order, and nothing else
        assert_eq!(restored.unwrap(), 3);
        assert_eq!(out, "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n");
    }

    #[tokio::test]
    async fn an_unreadable_object_is_named_after_every_other_is_restored() {
        // Given a folder of two good objects around one that is not gzip
        let files = [
            ("data/2023/03/18/15/a.json.gz", object(&[r#"{"n":1}"#])),
            ("data/2023/03/18/15/b.json.gz", b"not gzip at all".to_vec()),
            ("data/2023/03/18/15/c.json.gz", object(&[r#"{"n":3}"#])),
        ];
        // When the folder is restored
        let (restored, out) = restore_folder(&files).await;
        // Then both good objects are restored, the bad one is named, and nothing is removed
        assert_eq!(out, "{\"n\":1}\n{\"n\":3}\n");
        let text = restored.unwrap_err().to_string();
        assert!(text.starts_with("1 object(s) could not be read"), "{text}");
        assert!(text.ends_with("b.json.gz"), "{text}");
    }
}
