//! A local folder standing in for the bucket: each object is created once, atomically, under
//! the same key it would have in S3.

use std::fs::{self, File, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use super::PutOutcome;
use crate::batch::EncodedObject;
use crate::batch::spool::{Body, OBJECT_MODE};

/// Why a folder operation failed.
#[derive(Debug, thiserror::Error)]
pub enum FolderStoreError {
    #[error("{operation} {key} under {root} failed")]
    Io {
        operation: &'static str,
        key: String,
        root: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{key} already exists with different content")]
    Conflict { key: String },
}

/// Objects as files under `root`, at `root/<key>`.
#[derive(Debug, Clone)]
pub struct FolderStore {
    root: PathBuf,
}

impl FolderStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Where the object `key` is (or would be).
    pub fn path_of(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    fn io_error(&self, operation: &'static str, key: &str, source: io::Error) -> FolderStoreError {
        FolderStoreError::Io {
            operation,
            key: key.to_owned(),
            root: self.root.clone(),
            source,
        }
    }

    /// Every key under `prefix`, in key order (as S3 lists them). Hidden files (temporary files
    /// of writes in progress, spill folders, the demo's marker) are not objects.
    pub fn list(&self, prefix: &str) -> Result<Vec<String>, FolderStoreError> {
        let folder = prefix.rsplit_once('/').map_or("", |(folder, _)| folder);
        let mut keys = Vec::new();
        match walk(&self.root, &self.root.join(folder), &mut keys) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => other.map_err(|e| self.io_error("listing", prefix, e))?,
        }
        keys.retain(|key| key.starts_with(prefix));
        keys.sort();
        Ok(keys)
    }

    /// The object's bytes.
    pub fn get(&self, key: &str) -> Result<Vec<u8>, FolderStoreError> {
        fs::read(self.path_of(key)).map_err(|e| self.io_error("reading", key, e))
    }

    /// A reader of the object's file.
    pub fn open(&self, key: &str) -> Result<Box<dyn Read + Send>, FolderStoreError> {
        let file = File::open(self.path_of(key)).map_err(|e| self.io_error("reading", key, e))?;
        Ok(Box::new(io::BufReader::new(file)))
    }

    /// Removes the object's file.
    pub fn delete(&self, key: &str) -> Result<(), FolderStoreError> {
        fs::remove_file(self.path_of(key)).map_err(|e| self.io_error("deleting", key, e))
    }

    /// Creates `root/<key>` unless it exists. Readers never see a partial file: the body is
    /// written beside it and linked into place in one step that fails if the name is taken.
    pub fn put_once(&self, object: &EncodedObject) -> Result<PutOutcome, FolderStoreError> {
        let io_err = |source| self.io_error("writing", &object.key, source);
        let dest = self.root.join(&object.key);
        let parent = dest.parent().expect("a key has a folder");
        fs::create_dir_all(parent).map_err(io_err)?;
        let linked = match &object.body {
            // The spill file is private until it is an object: then it reads like any file.
            Body::File { path, .. } => match fs::hard_link(path, &dest) {
                Ok(()) => fs::set_permissions(&dest, Permissions::from_mode(OBJECT_MODE)),
                Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
                    copy_into_place(&fs::read(path).map_err(io_err)?, parent, &dest)
                }
                Err(e) => Err(e),
            },
            Body::Memory(bytes) => copy_into_place(bytes, parent, &dest),
        };
        match linked {
            Ok(()) => Ok(PutOutcome::Written),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let existing = fs::read(&dest).map_err(io_err)?;
                if existing == object.body.to_vec().map_err(io_err)? {
                    Ok(PutOutcome::AlreadyPresent)
                } else {
                    Err(FolderStoreError::Conflict {
                        key: object.key.clone(),
                    })
                }
            }
            Err(e) => Err(io_err(e)),
        }
    }
}

/// Collects the keys (paths relative to `root`, `/`-separated) of the files under `dir`.
fn walk(root: &Path, dir: &Path, keys: &mut Vec<String>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            walk(root, &path, keys)?;
        } else if let Ok(relative) = path.strip_prefix(root) {
            let parts: Vec<_> = relative.iter().map(|p| p.to_string_lossy()).collect();
            keys.push(parts.join("/"));
        }
    }
    Ok(())
}

fn copy_into_place(bytes: &[u8], parent: &Path, dest: &Path) -> io::Result<()> {
    let mut tmp = NamedTempFile::new_in(parent)?;
    tmp.as_file()
        .set_permissions(Permissions::from_mode(OBJECT_MODE))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_data()?;
    tmp.persist_noclobber(dest)
        .map(|_: File| ())
        .map_err(|e| e.error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::ObjectKind;
    use crate::batch::encode::ObjectEncoding;
    use crate::record::hour::Hour;

    fn object(key: &str, bytes: &[u8]) -> EncodedObject {
        EncodedObject {
            key: key.into(),
            kind: ObjectKind::Quarantine {
                run_hour: Hour::of(chrono::Utc::now()),
            },
            encoding: ObjectEncoding::GzipNdjson,
            body: Body::Memory(bytes.to_vec()),
            records: 1,
            uncompressed: bytes.len() as u64,
            distinct: true,
        }
    }

    #[test]
    fn writes_once_then_reports_present() {
        // Given an empty folder
        let dir = tempfile::tempdir().unwrap();
        let store = FolderStore::new(dir.path());
        // When the same object is put twice
        let first = store
            .put_once(&object("data/2023/03/18/15/a.json.gz", b"abc"))
            .unwrap();
        let second = store
            .put_once(&object("data/2023/03/18/15/a.json.gz", b"abc"))
            .unwrap();
        // Then it is written once and found the second time, with no stray files beside it
        assert_eq!(
            (first, second),
            (PutOutcome::Written, PutOutcome::AlreadyPresent)
        );
        let folder = dir.path().join("data/2023/03/18/15");
        assert_eq!(fs::read_dir(&folder).unwrap().count(), 1);
        assert_eq!(fs::read(folder.join("a.json.gz")).unwrap(), b"abc");
    }

    #[test]
    fn different_content_under_a_taken_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = FolderStore::new(dir.path());
        store.put_once(&object("q/x.json.gz", b"abc")).unwrap();
        assert!(matches!(
            store.put_once(&object("q/x.json.gz", b"abcd")),
            Err(FolderStoreError::Conflict { .. })
        ));
        assert_eq!(fs::read(dir.path().join("q/x.json.gz")).unwrap(), b"abc");
    }

    #[test]
    fn listing_finds_objects_under_a_prefix_in_key_order_without_hidden_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = FolderStore::new(dir.path());
        for key in ["data/b/2.json.gz", "data/a/1.json.gz", "data-x/3.json.gz"] {
            store.put_once(&object(key, b"x")).unwrap();
        }
        fs::write(dir.path().join("data/a/.tmp1"), b"partial").unwrap();
        assert_eq!(
            store.list("data/").unwrap(),
            ["data/a/1.json.gz", "data/b/2.json.gz"]
        );
        assert_eq!(store.list("data").unwrap().len(), 3);
        assert!(store.list("nothing/here/").unwrap().is_empty());
    }

    #[test]
    fn file_bodies_are_linked_into_place() {
        let dir = tempfile::tempdir().unwrap();
        let (mut file, path) = NamedTempFile::new_in(dir.path()).unwrap().into_parts();
        file.write_all(b"spilled").unwrap();
        let mut obj = object("data/k.json.gz", b"");
        obj.body = Body::File { path, len: 7 };
        let store = FolderStore::new(dir.path().join("out"));
        assert_eq!(store.put_once(&obj).unwrap(), PutOutcome::Written);
        assert_eq!(
            fs::read(dir.path().join("out/data/k.json.gz")).unwrap(),
            b"spilled"
        );
    }
}
