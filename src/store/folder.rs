//! A local folder standing in for the bucket: each object is created once, atomically, under
//! the same key it would have in S3, with the permissions the user's umask gives a new file, and
//! never through a symlink out of the folder.

use std::fs::{self, File, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use tempfile::NamedTempFile;

use super::PutOutcome;
use crate::batch::EncodedObject;
use crate::batch::spool::Body;

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
    #[error(
        "{key} is not a plain path inside {root}: a part of it is a symlink (or '..'), which is \
         not followed; remove it"
    )]
    LeavesFolder { key: String, root: PathBuf },
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

    /// The path of `key`, refused when a part of it below the root (a folder, or the file
    /// itself) is a symlink or is not a plain name, so nothing is read, written or deleted
    /// outside the folder. The root itself may be a symlink: the user chose it.
    fn checked_path(&self, key: &str) -> Result<PathBuf, FolderStoreError> {
        let leaves = || FolderStoreError::LeavesFolder {
            key: key.to_owned(),
            root: self.root.clone(),
        };
        let mut path = self.root.clone();
        let mut exists = true;
        for part in Path::new(key).components() {
            let Component::Normal(name) = part else {
                return Err(leaves());
            };
            path.push(name);
            if !exists {
                continue;
            }
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.file_type().is_symlink() => return Err(leaves()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => exists = false,
                Err(e) => return Err(self.io_error("checking", key, e)),
            }
        }
        Ok(path)
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
    /// of writes in progress, spill folders, the demo's marker) are not objects, and neither
    /// are symlinks: the listing does not descend into a symlinked folder or report a
    /// symlinked file. A prefix whose folder is reached through a symlink holds no objects
    /// (as a listing of the folder above would say), so the other hours of a run go on.
    pub fn list(&self, prefix: &str) -> Result<Vec<String>, FolderStoreError> {
        let folder = prefix.rsplit_once('/').map_or("", |(folder, _)| folder);
        let start = match self.checked_path(folder) {
            Ok(start) => start,
            Err(FolderStoreError::LeavesFolder { .. }) => {
                tracing::warn!(folder, "folder reached through a symlink not listed");
                return Ok(Vec::new());
            }
            Err(e) => return Err(e),
        };
        let mut keys = Vec::new();
        match walk(&self.root, &start, &mut keys) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => other.map_err(|e| self.io_error("listing", prefix, e))?,
        }
        keys.retain(|key| key.starts_with(prefix));
        keys.sort();
        Ok(keys)
    }

    /// Every key under `prefix` with its size in bytes, in key order (as [`Self::list`]).
    pub fn list_with_sizes(&self, prefix: &str) -> Result<Vec<(String, u64)>, FolderStoreError> {
        self.list(prefix)?
            .into_iter()
            .map(|key| {
                let meta = fs::metadata(self.checked_path(&key)?)
                    .map_err(|e| self.io_error("listing", &key, e))?;
                Ok((key, meta.len()))
            })
            .collect()
    }

    /// The object's bytes.
    pub fn get(&self, key: &str) -> Result<Vec<u8>, FolderStoreError> {
        fs::read(self.checked_path(key)?).map_err(|e| self.io_error("reading", key, e))
    }

    /// A reader of the object's file.
    pub fn open(&self, key: &str) -> Result<Box<dyn Read + Send>, FolderStoreError> {
        let path = self.checked_path(key)?;
        let file = File::open(path).map_err(|e| self.io_error("reading", key, e))?;
        Ok(Box::new(io::BufReader::new(file)))
    }

    /// Removes the object's file.
    pub fn delete(&self, key: &str) -> Result<(), FolderStoreError> {
        let path = self.checked_path(key)?;
        fs::remove_file(path).map_err(|e| self.io_error("deleting", key, e))
    }

    /// Creates `root/<key>` unless it exists. Readers never see a partial file: the body is
    /// written beside it and linked into place in one step that fails if the name is taken.
    pub fn put_once(&self, object: &EncodedObject) -> Result<PutOutcome, FolderStoreError> {
        let io_err = |source| self.io_error("writing", &object.key, source);
        // Checked before any folder is made, so none is made through a symlink.
        let dest = self.checked_path(&object.key)?;
        let parent = dest.parent().expect("a key has a folder");
        fs::create_dir_all(parent).map_err(io_err)?;
        let linked = match &object.body {
            // The spill file is private until it is an object: then it reads like any new file.
            Body::File { path, .. } => match fs::hard_link(path, &dest) {
                Ok(()) => fs::set_permissions(&dest, Permissions::from_mode(object_mode())),
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
        // The entry's own type, not its target's: symlinks are neither folders nor files here.
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(root, &path, keys)?;
        } else if !kind.is_file() {
            continue;
        } else if let Ok(relative) = path.strip_prefix(root) {
            let parts: Vec<_> = relative.iter().map(|p| p.to_string_lossy()).collect();
            keys.push(parts.join("/"));
        }
    }
    Ok(())
}

/// The permissions of an object file: what a new file gets under the process's umask
/// (`0666 & !umask`), as `cp` or a redirect would give it, so objects are no more readable than
/// the user asked for.
fn object_mode() -> u32 {
    static MODE: OnceLock<u32> = OnceLock::new();
    *MODE.get_or_init(|| {
        let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
        0o666 & !umask_in_status(&status).unwrap_or(UMASK_UNKNOWN)
    })
}

/// The umask assumed where it cannot be read (no `/proc`, or a kernel before 4.7): the
/// strictest, so an object is never more readable than the user asked for.
const UMASK_UNKNOWN: u32 = 0o077;

/// The `Umask:` line of `/proc/<pid>/status`. Read there because `umask(2)`, the only other way,
/// sets it to read it, which races with every thread creating a file.
fn umask_in_status(status: &str) -> Option<u32> {
    let value = status
        .lines()
        .find_map(|line| line.strip_prefix("Umask:"))?;
    u32::from_str_radix(value.trim(), 8)
        .ok()
        .filter(|mask| *mask <= 0o777)
}

fn copy_into_place(bytes: &[u8], parent: &Path, dest: &Path) -> io::Result<()> {
    let mut tmp = NamedTempFile::new_in(parent)?;
    tmp.as_file()
        .set_permissions(Permissions::from_mode(object_mode()))?;
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
            distinct_in_batch: false,
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

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_umask_is_read_from_the_status_line() {
        let status = "Name:\tlog-etl\nUmask:\t0027\nState:\tR (running)\n";
        assert_eq!(umask_in_status(status), Some(0o027));
        assert_eq!(umask_in_status("Name:\tlog-etl\n"), None);
        assert_eq!(umask_in_status("Umask:\tzz\n"), None);
        assert_eq!(umask_in_status("Umask:\t7777\n"), None);
    }

    #[test]
    fn objects_get_the_mode_of_any_new_file_of_the_process_even_linked_from_a_private_one() {
        // Given the mode the kernel gives a new file of this process (0666 less the umask)
        let dir = tempfile::tempdir().unwrap();
        let probe = dir.path().join("probe");
        File::create(&probe).unwrap();
        let new_file_mode = mode(&probe);
        // and a private (0600) spill file
        let (mut file, path) = tempfile::Builder::new()
            .permissions(Permissions::from_mode(0o600))
            .tempfile_in(dir.path())
            .unwrap()
            .into_parts();
        file.write_all(b"spilled").unwrap();
        let mut linked = object("data/linked.json.gz", b"");
        linked.body = Body::File { path, len: 7 };
        // When it and a body in memory become objects
        let store = FolderStore::new(dir.path().join("out"));
        store.put_once(&linked).unwrap();
        store
            .put_once(&object("data/copied.json.gz", b"abc"))
            .unwrap();
        // Then both have that mode, no more and no less
        for key in ["data/linked.json.gz", "data/copied.json.gz"] {
            assert_eq!(mode(&store.path_of(key)), new_file_mode, "{key}");
        }
    }

    /// A store in `dir/out`, a folder `dir/outside` holding one file, and `out/data/<link>`
    /// pointing at it.
    fn store_with_link_out(dir: &Path, link: &str, to_file: bool) -> (FolderStore, PathBuf) {
        let outside = dir.join("outside");
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("x.json.gz"), b"outside").unwrap();
        let store = FolderStore::new(dir.join("out"));
        fs::create_dir_all(store.path_of("data")).unwrap();
        let target = if to_file {
            outside.join("x.json.gz")
        } else {
            outside.clone()
        };
        std::os::unix::fs::symlink(target, store.path_of(&format!("data/{link}"))).unwrap();
        (store, outside)
    }

    fn leaves(result: Result<impl std::fmt::Debug, FolderStoreError>, key: &str) {
        match result {
            Err(err @ FolderStoreError::LeavesFolder { .. }) => {
                assert!(err.to_string().starts_with(key), "{err}")
            }
            other => panic!("expected a refusal for {key}, got {other:?}"),
        }
    }

    #[test]
    fn nothing_is_written_read_or_deleted_through_a_symlinked_folder() {
        // Given a store whose data/hour folder is a symlink to a folder outside
        let dir = tempfile::tempdir().unwrap();
        let (store, outside) = store_with_link_out(dir.path(), "hour", false);
        // When objects under it are written, read, opened and deleted, then each is refused
        leaves(
            store.put_once(&object("data/hour/new/y.json.gz", b"in")),
            "data/hour/new/y.json.gz",
        );
        leaves(
            store.put_once(&object("data/hour/y.json.gz", b"in")),
            "data/hour/y.json.gz",
        );
        leaves(store.get("data/hour/x.json.gz"), "data/hour/x.json.gz");
        leaves(
            store.open("data/hour/x.json.gz").map(|_| ()),
            "data/hour/x.json.gz",
        );
        leaves(store.delete("data/hour/x.json.gz"), "data/hour/x.json.gz");
        assert!(store.list("data/hour/").unwrap().is_empty());
        // and the folder outside is as it was
        let names: Vec<_> = fs::read_dir(&outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["x.json.gz"]);
        assert_eq!(fs::read(outside.join("x.json.gz")).unwrap(), b"outside");
    }

    #[test]
    fn an_object_that_is_a_symlink_is_neither_replaced_read_nor_deleted() {
        // Given a store where data/x.json.gz is a symlink to a file outside
        let dir = tempfile::tempdir().unwrap();
        let (store, outside) = store_with_link_out(dir.path(), "x.json.gz", true);
        // When it is written, read and deleted, then each is refused
        leaves(
            store.put_once(&object("data/x.json.gz", b"in")),
            "data/x.json.gz",
        );
        leaves(store.get("data/x.json.gz"), "data/x.json.gz");
        leaves(store.delete("data/x.json.gz"), "data/x.json.gz");
        // and the link and the file outside are as they were
        assert!(
            fs::symlink_metadata(store.path_of("data/x.json.gz"))
                .unwrap()
                .is_symlink()
        );
        assert_eq!(fs::read(outside.join("x.json.gz")).unwrap(), b"outside");
    }

    #[test]
    fn listing_reports_no_symlink_and_descends_into_none() {
        // Given a real object beside a symlinked file and a symlinked folder
        let dir = tempfile::tempdir().unwrap();
        let (store, _outside) = store_with_link_out(dir.path(), "file.json.gz", true);
        std::os::unix::fs::symlink(dir.path().join("outside"), store.path_of("data/folder"))
            .unwrap();
        store.put_once(&object("data/real.json.gz", b"x")).unwrap();
        // When the store is listed, then only the real object is there
        assert_eq!(store.list("").unwrap(), ["data/real.json.gz"]);
        assert_eq!(store.list("data/").unwrap(), ["data/real.json.gz"]);
    }

    #[test]
    fn a_key_climbing_out_of_the_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = FolderStore::new(dir.path().join("out"));
        leaves(
            store.put_once(&object("../x.json.gz", b"x")),
            "../x.json.gz",
        );
        leaves(store.get("/etc/passwd"), "/etc/passwd");
        assert!(!dir.path().join("x.json.gz").exists());
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
