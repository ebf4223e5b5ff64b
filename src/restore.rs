//! Reading landed objects back: gunzip, parse each line, undo the compaction, and write the
//! original records as NDJSON in the order stored.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use serde_json::{Map, Value};

use crate::compact;

/// Why an object could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("reading {name} failed")]
    Io {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("{name} line {line} is not a JSON object")]
    Line {
        name: String,
        line: u64,
        #[source]
        source: serde_json::Error,
    },
    #[error("writing the restored records failed")]
    Output(#[source] io::Error),
}

/// Restores every line of one gzip'd NDJSON object into `out`; `name` only labels errors.
/// Returns the number of records.
pub fn restore_object(
    name: &str,
    gzipped: impl Read,
    out: &mut impl Write,
) -> Result<u64, RestoreError> {
    let reader = BufReader::with_capacity(1 << 16, MultiGzDecoder::new(gzipped));
    let mut count = 0;
    for line in reader.split(b'\n') {
        let line = line.map_err(|source| RestoreError::Io {
            name: name.to_owned(),
            source,
        })?;
        if line.is_empty() {
            continue;
        }
        count += 1;
        let mut record: Map<String, Value> =
            serde_json::from_slice(&line).map_err(|source| RestoreError::Line {
                name: name.to_owned(),
                line: count,
                source,
            })?;
        compact::restore(&mut record);
        serde_json::to_writer(&mut *out, &record).map_err(|e| RestoreError::Output(e.into()))?;
        out.write_all(b"\n").map_err(RestoreError::Output)?;
    }
    Ok(count)
}

/// The object files named by `paths`: files as given, folders walked recursively for
/// `*.<extension>` files, each folder's entries in name order (so keys come out in time order).
/// Folders whose path under a given root starts with `skip` (the quarantine prefix) are left out.
pub fn find_object_files(
    paths: &[PathBuf],
    extension: &str,
    skip: Option<&str>,
) -> io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for path in paths {
        if fs::metadata(path)?.is_dir() {
            walk(path, path, extension, skip, &mut found)?;
        } else {
            found.push(path.clone());
        }
    }
    Ok(found)
}

fn walk(
    root: &Path,
    dir: &Path,
    extension: &str,
    skip: Option<&str>,
    found: &mut Vec<PathBuf>,
) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let relative = path.strip_prefix(root).unwrap_or(&path);
        if let Some(skip) = skip
            && relative.starts_with(skip)
        {
            continue;
        }
        if entry.file_type()?.is_dir() {
            walk(root, &path, extension, skip, found)?;
        } else if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(&format!(".{extension}")) && !n.starts_with('.'))
        {
            found.push(path);
        }
    }
    Ok(())
}

/// Restores each file in turn into `out`. Returns the number of records.
pub fn restore_files(files: &[PathBuf], out: &mut impl Write) -> Result<u64, RestoreError> {
    let mut total = 0;
    for path in files {
        let name = path.display().to_string();
        let file = File::open(path).map_err(|source| RestoreError::Io {
            name: name.clone(),
            source,
        })?;
        total += restore_object(&name, file, out)?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::ObjectWriter;
    use crate::spool::SpoolPolicy;

    #[test]
    fn compact_lines_come_back_as_the_original_records() {
        // Given an object with one compacted record
        let mut w = ObjectWriter::new(6, &SpoolPolicy::in_memory());
        w.write_line(br#"{"user_id":null,"method":2,"inDate":"230318150802284","n":1.50}"#)
            .unwrap();
        let body = w.finish().unwrap().body.to_vec().unwrap();
        // When it is restored
        let mut out = Vec::new();
        let n = restore_object("obj", &body[..], &mut out).unwrap();
        // Then the original fields are back and the number keeps its text
        assert_eq!(n, 1);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"user_id\":null,\"method\":\"POST\",\"inDate\":\"2023-03-18T15:08:02.284Z\",\"n\":1.50}\n"
        );
    }

    #[test]
    fn a_corrupt_line_is_named() {
        let mut w = ObjectWriter::new(6, &SpoolPolicy::in_memory());
        w.write_line(b"{}").unwrap();
        w.write_line(b"not json").unwrap();
        let body = w.finish().unwrap().body.to_vec().unwrap();
        let err = restore_object("obj", &body[..], &mut Vec::new()).unwrap_err();
        assert_eq!(err.to_string(), "obj line 2 is not a JSON object");
    }

    #[test]
    fn folders_are_walked_in_key_order_without_quarantine() {
        let dir = tempfile::tempdir().unwrap();
        for rel in [
            "data/2023/03/18/16/a.json.gz",
            "data/2023/03/18/15/b.json.gz",
            "data/2023/03/18/15/a.json.gz",
            "data/2023/03/18/15/.tmp123",
            "quarantine/2023/03/18/15/q.json.gz",
        ] {
            let p = dir.path().join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, b"").unwrap();
        }
        let files =
            find_object_files(&[dir.path().to_owned()], "json.gz", Some("quarantine")).unwrap();
        let rel: Vec<_> = files
            .iter()
            .map(|p| {
                p.strip_prefix(dir.path())
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(
            rel,
            [
                "data/2023/03/18/15/a.json.gz",
                "data/2023/03/18/15/b.json.gz",
                "data/2023/03/18/16/a.json.gz"
            ]
        );
    }
}
