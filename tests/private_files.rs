//! Files of decrypted records stay private and are not left behind: the real binaries killed by
//! a signal mid-run, started beside folders a killed run left, writing under a given umask, and
//! facing symlinks planted in their output folder.

use crate::common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use common::folder::{PipedProcess, files_under, process_args, spill_dirs};
use common::runtime_api::function_env;
use common::wait_bounded;
use log_etl::batch::spool::{SPILL_DIR_PREFIX, STALE_SPILL_AFTER};

/// A folder for one test (its own temporary folder included, given to the binaries as
/// `TMPDIR`), and a Fernet key.
struct Fixture {
    dir: tempfile::TempDir,
    key: String,
}

impl Fixture {
    fn new() -> Self {
        let out = common::log_etl(&["keygen"], &[]);
        assert!(out.status.success());
        let fx = Self {
            dir: tempfile::tempdir().unwrap(),
            key: String::from_utf8(out.stdout).unwrap().trim().to_owned(),
        };
        fs::create_dir(fx.tmp()).unwrap();
        fx
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn tmp(&self) -> PathBuf {
        self.path("tmp")
    }

    /// `program` with the key and `TMPDIR` set, and no other setting from the caller's
    /// environment.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        for setting in log_etl::config::var::ALL {
            cmd.env_remove(setting.name);
        }
        cmd.env("FERNET_KEY", &self.key).env("TMPDIR", self.tmp());
        cmd
    }

    fn log_etl(&self, args: &[&str]) -> Output {
        let out = self
            .command(env!("CARGO_BIN_EXE_log-etl"))
            .args(args)
            .output()
            .unwrap();
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        out
    }

    /// A saved response of `records` records from `start` in `<name>.json`, and its records
    /// (the ground truth) as JSON lines.
    fn generate(&self, name: &str, records: u32, start: &str) -> (PathBuf, Vec<String>) {
        let run = |args: &[&str]| self.log_etl(args);
        let (response, truth) =
            common::generate_response(run, self.dir.path(), name, records, start, &[]);
        (response, truth.iter().map(|l| canonical(l)).collect())
    }

    fn process(&self, input: &Path, out_dir: &Path) -> Output {
        self.log_etl(&process_args(input, out_dir))
    }
}

/// A JSON line as serde_json writes it, to compare records whatever their spacing.
fn canonical(line: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(line).unwrap();
    value.to_string()
}

/// Sets the modification time of `path` `ago` back from now.
fn age(path: &Path, ago: Duration) {
    fs::File::open(path)
        .unwrap()
        .set_modified(SystemTime::now() - ago)
        .unwrap();
}

/// Sends `signal` (`TERM`, `INT`) to `child`.
fn send(child: &Child, signal: &str) {
    let sent = Command::new("kill")
        .args(["-s", signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -s {signal}");
}

/// Every entry under `root` (symlinks not followed) with its content: a file's bytes, a
/// symlink's target, nothing for a folder.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut found = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let content = if meta.is_symlink() {
                fs::read_link(&path)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else if meta.is_dir() {
                stack.push(path.clone());
                Vec::new()
            } else {
                fs::read(&path).unwrap()
            };
            found.insert(path.strip_prefix(root).unwrap().to_owned(), content);
        }
    }
    found
}

/// A `process` run reading a response through a named pipe, sent `signal` (`TERM`, `INT`)
/// once its bodies have spilled: it exits with `code` and leaves no spill folder, in its output
/// folder or in its temporary folder.
fn assert_stopped_by_signal_leaving_no_spill_folder(signal: &str, code: i32) {
    let fx = Fixture::new();
    let (response, _) = fx.generate("input", 15_000, "2023-03-18T15:00:00.000Z");
    let out_dir = fx.path("out");
    let mut process = PipedProcess::spilled(
        fx.command(env!("CARGO_BIN_EXE_log-etl")),
        &response,
        &out_dir,
    );
    send(&process.child, signal);
    let status = wait_bounded(&mut process.child);
    process.close_pipe();
    assert_eq!(status.code(), Some(code), "{status}");
    assert_eq!(spill_dirs(&out_dir), Vec::<PathBuf>::new());
    assert_eq!(spill_dirs(&fx.tmp()), Vec::<PathBuf>::new());
}

#[test]
fn a_process_run_stopped_by_sigterm_leaves_no_spill_folder() {
    // Given a `process` run with spilled bodies, waiting for the rest of its input
    // When it is sent SIGTERM
    // Then it exits with 143 and no spill folder is left
    assert_stopped_by_signal_leaving_no_spill_folder("TERM", 143);
}

#[test]
fn a_process_run_interrupted_by_sigint_leaves_no_spill_folder() {
    // Given a `process` run with spilled bodies, waiting for the rest of its input
    // When it is sent SIGINT (Ctrl-C)
    // Then it exits with 130 and no spill folder is left
    assert_stopped_by_signal_leaving_no_spill_folder("INT", 130);
}

/// Plants in `parent` a stale spill folder (holding a file), a fresh one and an old unrelated
/// hidden folder; returns them in that order.
fn plant_left_folders(parent: &Path) -> [PathBuf; 3] {
    let old = STALE_SPILL_AFTER + Duration::from_secs(60);
    let stale = parent.join(format!("{SPILL_DIR_PREFIX}killed"));
    let fresh = parent.join(format!("{SPILL_DIR_PREFIX}fresh"));
    let unrelated = parent.join(".unrelated");
    for dir in [&stale, &fresh, &unrelated] {
        fs::create_dir_all(dir).unwrap();
    }
    fs::write(stale.join("body"), b"decrypted").unwrap();
    age(&stale.join("body"), old);
    age(&stale, old);
    age(&unrelated, old);
    [stale, fresh, unrelated]
}

#[test]
fn a_stale_spill_folder_is_removed_at_the_next_start_while_fresh_and_unrelated_ones_stay() {
    // Given, in the temporary folder and in the output folder, a spill folder left by a run
    // killed longer ago than the bound, a fresh one, and an old unrelated hidden folder
    let fx = Fixture::new();
    let out_dir = fx.path("out");
    fs::create_dir(&out_dir).unwrap();
    let in_tmp = plant_left_folders(&fx.tmp());
    let in_out = plant_left_folders(&out_dir);
    // When `process` runs
    let (response, _) = fx.generate("input", 100, "2023-03-18T15:00:00.000Z");
    assert!(fx.process(&response, &out_dir).status.success());
    // Then the stale folders are gone and the others stay
    for [stale, fresh, unrelated] in [in_tmp, in_out] {
        assert!(!stale.exists(), "{}", stale.display());
        assert!(fresh.is_dir(), "{}", fresh.display());
        assert!(unrelated.is_dir(), "{}", unrelated.display());
    }
}

#[test]
fn the_lambda_binary_sweeps_its_temporary_folder_at_start_and_exits_143_on_sigterm() {
    // Given a stale spill folder in the function's temporary folder, and a Runtime API
    // stand-in that takes the function's poll for an event and never answers it
    let fx = Fixture::new();
    let [stale, fresh, unrelated] = plant_left_folders(&fx.tmp());
    let runtime = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    runtime.set_nonblocking(true).unwrap();
    let mut child = fx
        .command(env!("CARGO_BIN_EXE_log-etl-lambda"))
        .envs(function_env(runtime.local_addr().unwrap()))
        .env("BUCKET_NAME", "bucket")
        .env("LOG_API_URL", "http://127.0.0.1:9/logs")
        // Nothing listens there: the function makes no call before an event.
        .envs(common::aws_env("http://127.0.0.1:9"))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // When it has started (its poll arrived)
    let started = Instant::now();
    let _poll = loop {
        match runtime.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the function exited before polling for an event: {status}");
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the function never polled for an event");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Then the stale folder is gone, the others stay
    assert!(!stale.exists());
    assert!(fresh.is_dir() && unrelated.is_dir());
    // and SIGTERM ends it with 143
    send(&child, "TERM");
    assert_eq!(wait_bounded(&mut child).code(), Some(143));
}

/// Runs `process` under `umask` and checks every object it wrote has `mode` (in octal).
fn assert_objects_written_under_umask_have_mode(umask: &str, mode: &str) {
    let fx = Fixture::new();
    let (response, _) = fx.generate("input", 3_000, "2023-03-18T15:00:00.000Z");
    let out_dir = fx.path("out");
    let out = fx
        .command("sh")
        .args(["-c", &format!("umask {umask} && exec \"$0\" \"$@\"")])
        .arg(env!("CARGO_BIN_EXE_log-etl"))
        .args(process_args(&response, &out_dir))
        .output()
        .unwrap();
    common::assert_success(&out);
    let files = files_under(&out_dir);
    assert!(!files.is_empty());
    let modes: Vec<String> = files
        .iter()
        .map(|f| {
            let mode = fs::metadata(out_dir.join(f)).unwrap().permissions().mode();
            format!("{:o}", mode & 0o777)
        })
        .collect();
    assert!(modes.iter().all(|m| m == mode), "{modes:?}");
}

#[test]
fn objects_written_under_umask_077_are_the_owners_alone() {
    // Given a umask of 077, when `process` writes objects (linked from 0600 spill files)
    // Then every object is 0600
    assert_objects_written_under_umask_have_mode("077", "600");
}

#[test]
fn objects_written_under_umask_022_are_readable_by_all() {
    // Given a umask of 022, when `process` writes objects
    // Then every object is 0644
    assert_objects_written_under_umask_have_mode("022", "644");
}

#[test]
fn process_does_not_write_through_a_symlinked_hour_folder() {
    // Given an output folder whose hour folder is a symlink to a folder outside
    let fx = Fixture::new();
    let outside = fx.path("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("keep.txt"), b"mine").unwrap();
    let out_dir = fx.path("out");
    fs::create_dir_all(out_dir.join("data/2023/03/18")).unwrap();
    std::os::unix::fs::symlink(&outside, out_dir.join("data/2023/03/18/15")).unwrap();
    let before = snapshot(&outside);
    // When `process` lands records of that hour
    let (response, _) = fx.generate("input", 100, "2023-03-18T15:00:00.000Z");
    let out = fx.process(&response, &out_dir);
    // Then it fails naming the refused key, and nothing outside changed
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("data/2023/03/18/15/") && stderr.contains("symlink"),
        "{stderr}"
    );
    assert_eq!(snapshot(&outside), before);
}

#[test]
fn compact_and_restore_do_not_follow_symlinks_planted_in_the_output_folder() {
    // Given an hour landed in two objects
    let fx = Fixture::new();
    let out_dir = fx.path("out");
    let (first, mut truth) = fx.generate("first", 100, "2023-03-18T15:00:00.000Z");
    let (second, more) = fx.generate("second", 100, "2023-03-18T15:30:00.000Z");
    truth.extend(more);
    truth.sort();
    assert!(fx.process(&first, &out_dir).status.success());
    assert!(fx.process(&second, &out_dir).status.success());
    // and, outside, another hour in two objects and a third hour in one
    let outside = fx.path("outside");
    for (name, start) in [
        ("o1", "2023-03-18T16:00:00.000Z"),
        ("o2", "2023-03-18T16:30:00.000Z"),
        ("o3", "2023-03-18T17:00:00.000Z"),
    ] {
        let (response, _) = fx.generate(name, 100, start);
        assert!(fx.process(&response, &outside).status.success());
    }
    // planted in the output folder: the outside hour as a symlinked hour folder, and the
    // outside object as a symlinked object among the real ones
    std::os::unix::fs::symlink(
        outside.join("data/2023/03/18/16"),
        out_dir.join("data/2023/03/18/16"),
    )
    .unwrap();
    let outside_object = files_under(&outside.join("data/2023/03/18/17")).remove(0);
    std::os::unix::fs::symlink(
        outside.join("data/2023/03/18/17").join(outside_object),
        out_dir.join("data/2023/03/18/15/9999999_9999999_ffffffffffffffff.json.gz"),
    )
    .unwrap();
    let before = snapshot(&outside);
    // When the output folder is compacted
    let out = fx.log_etl(&[
        "compact",
        "--out-dir",
        out_dir.to_str().unwrap(),
        "--hours",
        "2023-03-18T00..2023-03-18T23",
    ]);
    common::assert_success(&out);
    // Then the real hour is one object, the planted links are left as they were, and
    // nothing outside changed
    let hour: Vec<_> = snapshot(&out_dir.join("data/2023/03/18/15"))
        .into_keys()
        .collect();
    assert_eq!(hour.len(), 2, "{hour:?}");
    assert_eq!(files_under(&out_dir.join("data/2023/03/18/15")).len(), 1);
    assert_eq!(snapshot(&outside), before);
    // and `restore` reads back exactly the hour's own records, none from outside
    let out = fx.log_etl(&["restore", out_dir.to_str().unwrap()]);
    assert!(out.status.success());
    let mut restored: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(canonical)
        .collect();
    restored.sort();
    assert_eq!(restored, truth);
    assert_eq!(snapshot(&outside), before);
}

#[test]
fn a_hidden_key_prefix_is_refused_at_start_naming_the_variable() {
    // Given a response and a KEY_PREFIX whose objects listings would skip
    let fx = Fixture::new();
    let (response, _) = fx.generate("input", 10, "2023-03-18T15:00:00.000Z");
    let out_dir = fx.path("out");
    for (variable, value) in [("KEY_PREFIX", ".hidden"), ("QUARANTINE_PREFIX", "q/.old")] {
        // When `process` starts with it
        let out = fx
            .command(env!("CARGO_BIN_EXE_log-etl"))
            .env(variable, value)
            .args(process_args(&response, &out_dir))
            .output()
            .unwrap();
        // Then it is a usage error naming the variable, and nothing is written
        assert_eq!(out.status.code(), Some(2), "{variable}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(variable), "{stderr}");
        assert!(!out_dir.exists());
    }
}
