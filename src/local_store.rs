//! A local folder standing in for the bucket: each object is created once, atomically, under
//! the same key it would have in S3.

use std::fs::{self, File, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::batch::EncodedObject;
use crate::spool::{Body, OBJECT_MODE};

/// Whether a put created the object or found it already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Written,
    /// An object with this key exists; since keys carry the content digest, it is this object.
    AlreadyPresent,
}

/// Why a local write failed.
#[derive(Debug, thiserror::Error)]
pub enum LocalStoreError {
    #[error("writing {key} under {root} failed")]
    Io {
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
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates `root/<key>` unless it exists. Readers never see a partial file: the body is
    /// written beside it and linked into place in one step that fails if the name is taken.
    pub fn put_once(&self, object: &EncodedObject) -> Result<PutOutcome, LocalStoreError> {
        let io_err = |source| LocalStoreError::Io {
            key: object.key.clone(),
            root: self.root.clone(),
            source,
        };
        let dest = self.root.join(&object.key);
        let parent = dest.parent().expect("a key has a folder");
        fs::create_dir_all(parent).map_err(io_err)?;
        let linked = match &object.body {
            Body::File { path, .. } => match fs::hard_link(path, &dest) {
                Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
                    copy_into_place(&fs::read(path).map_err(io_err)?, parent, &dest)
                }
                other => other,
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
                    Err(LocalStoreError::Conflict {
                        key: object.key.clone(),
                    })
                }
            }
            Err(e) => Err(io_err(e)),
        }
    }
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
    use crate::encode::ObjectEncoding;

    fn object(key: &str, bytes: &[u8]) -> EncodedObject {
        EncodedObject {
            key: key.into(),
            kind: ObjectKind::Quarantine,
            encoding: ObjectEncoding::GzipNdjson,
            body: Body::Memory(bytes.to_vec()),
            records: 1,
            uncompressed: bytes.len() as u64,
        }
    }

    #[test]
    fn writes_once_then_reports_present() {
        // Given an empty folder
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
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
        let store = LocalStore::new(dir.path());
        store.put_once(&object("q/x.json.gz", b"abc")).unwrap();
        assert!(matches!(
            store.put_once(&object("q/x.json.gz", b"abcd")),
            Err(LocalStoreError::Conflict { .. })
        ));
        assert_eq!(fs::read(dir.path().join("q/x.json.gz")).unwrap(), b"abc");
    }

    #[test]
    fn file_bodies_are_linked_into_place() {
        let dir = tempfile::tempdir().unwrap();
        let (mut file, path) = NamedTempFile::new_in(dir.path()).unwrap().into_parts();
        file.write_all(b"spilled").unwrap();
        let mut obj = object("data/k.json.gz", b"");
        obj.body = Body::File { path, len: 7 };
        let store = LocalStore::new(dir.path().join("out"));
        assert_eq!(store.put_once(&obj).unwrap(), PutOutcome::Written);
        assert_eq!(
            fs::read(dir.path().join("out/data/k.json.gz")).unwrap(),
            b"spilled"
        );
    }
}
