//! Object bodies that stay in memory while small and move to a temporary file when they grow,
//! so a batch of any size is encoded in bounded memory.

use std::fs::{File, Permissions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use tempfile::TempPath;

/// Permissions of an object file in a local folder: like any file its owner writes.
pub const OBJECT_MODE: u32 = 0o644;
/// Permissions of a spill file: it holds decrypted records until it becomes an object, so only
/// its owner may read it (the folder that holds it is the owner's alone too, see [`spill_dir`]).
pub const SPILL_MODE: u32 = 0o600;

/// A new temporary folder under `parent` for spill files, readable by its owner only (0700),
/// removed when dropped.
pub fn spill_dir(parent: &std::path::Path) -> io::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(".log-etl-tmp-")
        .permissions(Permissions::from_mode(0o700))
        .tempdir_in(parent)
}

/// Where bodies go once they outgrow memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolPolicy {
    /// Bytes a body may hold in memory before it moves to a file.
    pub memory_limit: usize,
    /// Folder for those files; `None` keeps every body in memory (small batches, the Lambda).
    pub dir: Option<PathBuf>,
}

impl SpoolPolicy {
    /// Everything in memory.
    pub fn in_memory() -> Self {
        Self {
            memory_limit: usize::MAX,
            dir: None,
        }
    }

    /// Bodies over `memory_limit` bytes go to files under `dir`.
    pub fn spill_to(dir: PathBuf, memory_limit: usize) -> Self {
        Self {
            memory_limit,
            dir: Some(dir),
        }
    }
}

/// A body being written.
#[derive(Debug)]
pub struct Spool {
    state: State,
    policy: SpoolPolicy,
    len: u64,
}

#[derive(Debug)]
enum State {
    Memory(Vec<u8>),
    File(BufWriter<File>, TempPath),
}

/// A finished body: bytes in memory, or a temporary file removed when dropped.
#[derive(Debug)]
pub enum Body {
    Memory(Vec<u8>),
    File { path: TempPath, len: u64 },
}

impl Spool {
    pub fn new(policy: &SpoolPolicy) -> Self {
        Self {
            state: State::Memory(Vec::new()),
            policy: policy.clone(),
            len: 0,
        }
    }

    /// Flushes and hands over the body. With a spill folder every finished body is a file, so
    /// bodies waiting to be written hold no memory however many there are.
    pub fn finish(mut self) -> io::Result<Body> {
        self.spill()?;
        match self.state {
            State::Memory(bytes) => Ok(Body::Memory(bytes)),
            State::File(writer, path) => {
                let file = writer
                    .into_inner()
                    .map_err(io::IntoInnerError::into_error)?;
                file.sync_data()?;
                Ok(Body::File {
                    path,
                    len: self.len,
                })
            }
        }
    }

    fn spill(&mut self) -> io::Result<()> {
        let (State::Memory(bytes), Some(dir)) = (&mut self.state, &self.policy.dir) else {
            return Ok(());
        };
        let (file, path) = tempfile::Builder::new()
            .permissions(Permissions::from_mode(SPILL_MODE))
            .tempfile_in(dir)?
            .into_parts();
        let mut writer = BufWriter::with_capacity(64 * 1024, file);
        writer.write_all(bytes)?;
        self.state = State::File(writer, path);
        Ok(())
    }
}

impl Write for Spool {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let State::Memory(bytes) = &self.state
            && bytes.len() + buf.len() > self.policy.memory_limit
        {
            self.spill()?;
        }
        let n = match &mut self.state {
            State::Memory(bytes) => {
                bytes.extend_from_slice(buf);
                buf.len()
            }
            State::File(writer, _) => writer.write(buf)?,
        };
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.state {
            State::Memory(_) => Ok(()),
            State::File(writer, _) => writer.flush(),
        }
    }
}

impl Body {
    /// Size in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Body::Memory(bytes) => bytes.len() as u64,
            Body::File { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A reader of the body's bytes.
    pub fn reader(&self) -> io::Result<Box<dyn Read + Send + '_>> {
        Ok(match self {
            Body::Memory(bytes) => Box::new(&bytes[..]),
            Body::File { path, .. } => Box::new(File::open(path)?),
        })
    }

    /// A reader that owns the body (a file body is removed when the reader is dropped).
    pub fn into_reader(self) -> io::Result<Box<dyn Read + Send>> {
        Ok(match self {
            Body::Memory(bytes) => Box::new(io::Cursor::new(bytes)),
            Body::File { path, .. } => Box::new(OwnedFile {
                file: File::open(&path)?,
                _path: path,
            }),
        })
    }

    /// The whole body in memory (tests, and stores that need a buffer).
    pub fn to_vec(&self) -> io::Result<Vec<u8>> {
        match self {
            Body::Memory(bytes) => Ok(bytes.clone()),
            Body::File { path, len } => {
                let mut out = Vec::with_capacity(*len as usize);
                File::open(path)?.read_to_end(&mut out)?;
                Ok(out)
            }
        }
    }
}

/// A spill file read to its end, removed with the reader.
struct OwnedFile {
    file: File,
    _path: TempPath,
}

impl Read for OwnedFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_a_folder_finished_bodies_wait_in_files() {
        // Given a spool with a folder, written under its memory limit
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::new(&SpoolPolicy::spill_to(dir.path().into(), 10));
        spool.write_all(b"0123456789").unwrap();
        // When it is finished, the body is a file readable like any object
        let body = spool.finish().unwrap();
        let Body::File { path, len } = &body else {
            panic!("expected a file body")
        };
        assert_eq!(*len, 10);
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, SPILL_MODE);
        assert_eq!(body.to_vec().unwrap(), b"0123456789");
    }

    #[test]
    fn large_bodies_move_to_a_file_that_is_removed_on_drop() {
        // Given a 10-byte memory limit
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::new(&SpoolPolicy::spill_to(dir.path().into(), 10));
        // When 15 bytes are written
        spool.write_all(b"01234567").unwrap();
        spool.write_all(b"89abcde").unwrap();
        let body = spool.finish().unwrap();
        // Then they are in a file with every byte kept
        let Body::File { path, len } = &body else {
            panic!("expected a file body")
        };
        assert_eq!(*len, 15);
        assert!(path.exists());
        assert_eq!(body.to_vec().unwrap(), b"0123456789abcde");
        // and the file goes away with the body
        drop(body);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn spill_folders_and_files_are_the_owners_alone() {
        // Given a spill folder and a body spilled into it
        let parent = tempfile::tempdir().unwrap();
        let dir = spill_dir(parent.path()).unwrap();
        let mut spool = Spool::new(&SpoolPolicy::spill_to(dir.path().into(), 1));
        spool.write_all(b"decrypted records").unwrap();
        let body = spool.finish().unwrap();
        // Then the folder is 0700 and the file 0600
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(dir.path()), 0o700);
        let Body::File { path, .. } = &body else {
            panic!("expected a file body")
        };
        assert_eq!(mode(path), 0o600);
    }

    #[test]
    fn without_a_folder_nothing_spills() {
        let mut spool = Spool::new(&SpoolPolicy {
            memory_limit: 1,
            dir: None,
        });
        spool.write_all(b"abc").unwrap();
        assert!(matches!(spool.finish().unwrap(), Body::Memory(_)));
    }
}
