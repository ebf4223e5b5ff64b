//! Object bodies that stay in memory while small and move to a temporary file when they grow,
//! so a batch of any size is encoded in bounded memory; and the spill folders those files live
//! in, which no exit the program sees leaves behind.

use std::collections::BTreeSet;
use std::fs::{self, File, Permissions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use tempfile::{TempDir, TempPath};

/// Permissions of a spill file: it holds decrypted records until it becomes an object, so only
/// its owner may read it (the folder that holds it is the owner's alone too, see [`spill_dir`]).
pub const SPILL_MODE: u32 = 0o600;

/// How every spill folder's name starts. The start-up sweep removes folders with this prefix
/// only, so it never touches anything the program did not make.
pub const SPILL_DIR_PREFIX: &str = ".log-etl-tmp-";

/// Age past which a spill folder left in a parent folder counts as left by a killed run. A
/// constant rather than a setting: no Lambda invocation outlives the Lambda maximum timeout
/// (15 minutes), so a folder untouched for longer is no live invocation's; a local run's folder
/// is kept while its process lives, whatever its age (see [`sweep_stale_spill_dirs`]).
pub const STALE_SPILL_AFTER: Duration = Duration::from_secs(15 * 60);

/// The spill folders this process has alive, and the parents already swept of stale ones. One
/// lock guards both, and folders are made and removed while holding it, so the signal handler
/// (which takes it and never gives it back) sees every folder that exists.
static SPILL_DIRS: Mutex<SpillRegistry> = Mutex::new(SpillRegistry {
    live: BTreeSet::new(),
    swept: BTreeSet::new(),
});

struct SpillRegistry {
    live: BTreeSet<PathBuf>,
    swept: BTreeSet<PathBuf>,
}

fn registry() -> MutexGuard<'static, SpillRegistry> {
    // A panic while holding the lock leaves the sets whole (each change is one insert or
    // remove), so they stay usable.
    SPILL_DIRS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A private folder for spill files, removed when dropped, on SIGINT and SIGTERM (once
/// [`remove_spill_dirs_on_signal`] is installed) and, if the process is killed outright, by the
/// next run's sweep.
#[derive(Debug)]
pub struct SpillDir {
    dir: Option<TempDir>,
}

impl SpillDir {
    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("present until dropped").path()
    }
}

impl Drop for SpillDir {
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else { return };
        let mut registry = registry();
        registry.live.remove(dir.path());
        // Removed under the lock, so a signal arriving now finds it either listed or gone.
        if let Err(error) = dir.close() {
            tracing::warn!(%error, "spill folder not removed");
        }
    }
}

/// A new temporary folder under `parent` for spill files, readable by its owner only (0700),
/// removed when dropped. The first folder made under a parent sweeps that parent of stale ones
/// first (see [`sweep_stale_spill_dirs`]).
pub fn spill_dir(parent: &Path) -> io::Result<SpillDir> {
    let mut registry = registry();
    if registry.swept.insert(parent.to_owned()) {
        sweep_locked(&registry, parent, SystemTime::now());
    }
    let dir = tempfile::Builder::new()
        .prefix(&format!("{SPILL_DIR_PREFIX}{}-", std::process::id()))
        .permissions(Permissions::from_mode(0o700))
        .tempdir_in(parent)?;
    registry.live.insert(dir.path().to_owned());
    Ok(SpillDir { dir: Some(dir) })
}

/// Removes from `parent` the spill folders of this program that a killed run left: a folder
/// whose name has [`SPILL_DIR_PREFIX`], that is not a symlink, that neither it nor anything in
/// it was changed for [`STALE_SPILL_AFTER`] before `now`, and whose maker (the process id in its
/// name) is no other live process. Nothing else is touched; failures are logged, not returned,
/// since a folder left is no reason to fail a run. Returns how many folders were removed.
pub fn sweep_stale_spill_dirs(parent: &Path, now: SystemTime) -> usize {
    sweep_locked(&registry(), parent, now)
}

fn sweep_locked(registry: &SpillRegistry, parent: &Path, now: SystemTime) -> usize {
    let Ok(entries) = fs::read_dir(parent) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten().take(100_000) {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(SPILL_DIR_PREFIX)) else {
            continue;
        };
        let path = entry.path();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        let stale = || last_change(&path).is_some_and(|at| at + STALE_SPILL_AFTER <= now);
        if !is_dir || registry.live.contains(&path) || maker_is_alive(rest) || !stale() {
            continue;
        }
        match fs::remove_dir_all(&path) {
            Ok(()) => removed += 1,
            Err(error) => tracing::warn!(%error, "stale spill folder not removed"),
        }
    }
    if removed > 0 {
        tracing::info!(removed, "stale spill folders removed");
    }
    removed
}

/// Whether the folder named `<prefix><pid>-<random>` was made by a live process other than this
/// one. A process id reused by this process (a new Lambda runtime often gets the old one's) is
/// not the maker: this process's own folders are in the registry.
fn maker_is_alive(rest: &str) -> bool {
    let Some(pid) = rest
        .split_once('-')
        .and_then(|(pid, _)| pid.parse::<u32>().ok())
    else {
        return false;
    };
    pid != std::process::id() && Path::new("/proc").join(pid.to_string()).exists()
}

/// The latest change of a folder or of anything directly in it (a file being written changes
/// its own time, not its folder's). Symlinks are not followed.
fn last_change(dir: &Path) -> Option<SystemTime> {
    let own = fs::symlink_metadata(dir).and_then(|m| m.modified()).ok()?;
    let entries = fs::read_dir(dir).ok()?;
    let inner = entries
        .flatten()
        .take(100_000)
        .filter_map(|e| e.metadata().and_then(|m| m.modified()).ok());
    Some(inner.fold(own, SystemTime::max))
}

/// Sweeps the temporary folder of stale spill folders, then makes SIGINT and SIGTERM remove
/// every live spill folder and exit with the shell's status for them (130, 143). Both binaries
/// call this first thing; a `SIGKILL` cannot be caught, and is what the sweep is for.
pub fn remove_spill_dirs_on_signal() -> io::Result<()> {
    let temp = std::env::temp_dir();
    let mut registry = registry();
    if registry.swept.insert(temp.clone()) {
        sweep_locked(&registry, &temp, SystemTime::now());
    }
    drop(registry);
    // A runtime of its own on a thread of its own: the signal is seen even while the program's
    // runtime is blocked in a read or a long computation.
    use tokio::signal::unix::{SignalKind, signal};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let (mut interrupt, mut terminate) = {
        let _entered = runtime.enter();
        (
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        )
    };
    std::thread::Builder::new()
        .name("spill-cleanup".into())
        .spawn(move || {
            let status = runtime.block_on(async {
                tokio::select! {
                    _ = interrupt.recv() => 130,
                    _ = terminate.recv() => 143,
                }
            });
            remove_live_spill_dirs_and_exit(status)
        })?;
    Ok(())
}

/// Removes every live spill folder and exits holding the lock, so none is made after.
fn remove_live_spill_dirs_and_exit(status: i32) -> ! {
    let registry = registry();
    for dir in &registry.live {
        // A worker may add a file while the folder is emptied: try again, a few times.
        for _ in 0..5 {
            match fs::remove_dir_all(dir) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => continue,
                _ => break,
            }
        }
    }
    std::process::exit(status)
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
    pub fn finish(self) -> io::Result<Body> {
        self.finish_synced(true)
    }

    /// As [`Spool::finish`], without waiting for the file to reach the disk: for what only this
    /// process reads back (a batch's overflow and line hashes), never for an object's body.
    pub fn finish_scratch(self) -> io::Result<Body> {
        self.finish_synced(false)
    }

    fn finish_synced(mut self, sync: bool) -> io::Result<Body> {
        self.spill()?;
        match self.state {
            State::Memory(bytes) => Ok(Body::Memory(bytes)),
            State::File(writer, path) => {
                let file = writer
                    .into_inner()
                    .map_err(io::IntoInnerError::into_error)?;
                if sync {
                    file.sync_data()?;
                }
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

    /// Sets the modification time of `path` (a file or a folder) `ago` back from now.
    fn age(path: &Path, ago: Duration) {
        File::open(path)
            .unwrap()
            .set_modified(SystemTime::now() - ago)
            .unwrap();
    }

    #[test]
    fn a_spill_folder_is_listed_while_alive_and_removed_with_its_files_on_drop() {
        // Given a spill folder holding a spilled body
        let parent = tempfile::tempdir().unwrap();
        let dir = spill_dir(parent.path()).unwrap();
        let path = dir.path().to_owned();
        let mut spool = Spool::new(&SpoolPolicy::spill_to(path.clone(), 1));
        spool.write_all(b"decrypted records").unwrap();
        let body = spool.finish().unwrap();
        // Then it is named with the prefix and listed among the live ones
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        assert!(name.starts_with(SPILL_DIR_PREFIX), "{name}");
        assert!(registry().live.contains(&path));
        // When it is dropped, then it is gone from disk and from the list
        drop(body);
        drop(dir);
        assert!(!path.exists());
        assert!(!registry().live.contains(&path));
    }

    #[test]
    fn the_sweep_removes_only_old_spill_folders_of_dead_makers() {
        // Given, in one parent folder: an old spill folder with a file in it, one from an older
        // version (no process id), one fresh, an old one with a recent file, one of this
        // process that is alive, an old unrelated hidden folder and an old file with the prefix
        let parent = tempfile::tempdir().unwrap();
        let p = parent.path();
        let live = spill_dir(p).unwrap();
        let old = STALE_SPILL_AFTER + Duration::from_secs(60);
        let make = |name: &str| {
            let dir = p.join(name);
            fs::create_dir(&dir).unwrap();
            dir
        };
        let stale = make(".log-etl-tmp-4194999-abcdef");
        fs::write(stale.join("body"), b"x").unwrap();
        age(&stale.join("body"), old);
        age(&stale, old);
        let unnamed = make(".log-etl-tmp-abcdef");
        age(&unnamed, old);
        make(".log-etl-tmp-fresh");
        let busy = make(".log-etl-tmp-busy");
        fs::write(busy.join("body"), b"x").unwrap();
        age(&busy, old);
        age(live.path(), old);
        let unrelated = make(".cache");
        age(&unrelated, old);
        fs::write(p.join(".log-etl-tmp-file"), b"x").unwrap();
        age(&p.join(".log-etl-tmp-file"), old);
        // When the parent is swept
        let removed = sweep_stale_spill_dirs(p, SystemTime::now());
        // Then the two stale folders are gone and everything else stays
        assert_eq!(removed, 2);
        let mut left: Vec<String> = fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let live_name = live.path().file_name().unwrap().to_str().unwrap();
        let mut expected = vec![
            ".cache",
            ".log-etl-tmp-busy",
            ".log-etl-tmp-file",
            ".log-etl-tmp-fresh",
            live_name,
        ];
        expected.sort();
        assert_eq!(left, expected);
    }

    #[test]
    fn the_first_spill_folder_made_in_a_parent_sweeps_it() {
        // Given a parent holding a spill folder left by a killed run
        let parent = tempfile::tempdir().unwrap();
        let left = parent.path().join(".log-etl-tmp-killed");
        fs::create_dir(&left).unwrap();
        age(&left, STALE_SPILL_AFTER * 2);
        // When a spill folder is made there, then the old one is gone
        let dir = spill_dir(parent.path()).unwrap();
        assert!(!left.exists());
        assert!(dir.path().exists());
    }

    #[test]
    fn a_folder_made_by_a_live_process_is_kept_however_old() {
        // Given an old spill folder named after a live process (the parent of this test)
        let parent = tempfile::tempdir().unwrap();
        let maker = std::os::unix::process::parent_id();
        let dir = parent
            .path()
            .join(format!("{SPILL_DIR_PREFIX}{maker}-abcdef"));
        fs::create_dir(&dir).unwrap();
        age(&dir, STALE_SPILL_AFTER * 4);
        // When the parent is swept, then it stays
        assert_eq!(sweep_stale_spill_dirs(parent.path(), SystemTime::now()), 0);
        assert!(dir.exists());
    }

    #[test]
    fn a_symlink_with_the_prefix_is_not_followed_by_the_sweep() {
        // Given an old folder elsewhere, reached by a symlink named like a spill folder
        let parent = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        fs::write(elsewhere.path().join("keep"), b"x").unwrap();
        let link = parent.path().join(".log-etl-tmp-link");
        std::os::unix::fs::symlink(elsewhere.path(), &link).unwrap();
        age(elsewhere.path(), STALE_SPILL_AFTER * 2);
        // When the parent is swept, then neither the link nor its target is touched
        assert_eq!(sweep_stale_spill_dirs(parent.path(), SystemTime::now()), 0);
        assert!(link.exists());
        assert!(elsewhere.path().join("keep").exists());
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
