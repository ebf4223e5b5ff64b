//! Output folders as the tests read them: the files a run left, the spill folders of a run in
//! progress, and `process` caught mid-run with its bodies spilled.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use log_etl::batch::spool::SPILL_DIR_PREFIX;

/// The arguments of `log-etl process` reading `input` and writing into `out_dir`.
pub fn process_args<'a>(input: &'a Path, out_dir: &'a Path) -> [&'a str; 5] {
    [
        "process",
        "--input",
        input.to_str().unwrap(),
        "--out-dir",
        out_dir.to_str().unwrap(),
    ]
}

/// Every file under `root` (hidden ones included), as `/`-separated paths relative to `root`,
/// sorted. Symlinks are neither followed nor listed: only what was written in place counts.
pub fn files_under(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                let path = entry.path();
                let relative = path.strip_prefix(root).unwrap();
                let parts: Vec<_> = relative.iter().map(|p| p.to_string_lossy()).collect();
                found.push(parts.join("/"));
            }
        }
    }
    found.sort();
    found
}

/// The spill folders directly in `parent` (none if it does not exist).
pub fn spill_dirs(parent: &Path) -> Vec<PathBuf> {
    fs::read_dir(parent)
        .map(|entries| entries.map(|e| e.unwrap().path()).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(SPILL_DIR_PREFIX)
        })
        .collect()
}

/// The files in the spill folders directly in `parent`, each with its folder.
pub fn spill_files(parent: &Path) -> Vec<(PathBuf, PathBuf)> {
    spill_dirs(parent)
        .into_iter()
        .flat_map(|dir| {
            fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .map(move |f| (dir.clone(), f.unwrap().path()))
        })
        .collect()
}

/// `log-etl process` reading a saved response through a named pipe, fed two thirds of it and
/// left waiting for the rest once its bodies have spilled.
pub struct PipedProcess {
    pub child: Child,
    pipe: Option<fs::File>,
    rest: Vec<u8>,
}

impl PipedProcess {
    /// Starts `command` (the `log-etl` binary, its environment set) as `process --input <a
    /// named pipe beside response> --out-dir out_dir`, feeds it two thirds of `response`, and
    /// waits (at most 30 s, polling every 20 ms) until a spill file appears in `out_dir`.
    pub fn spilled(mut command: Command, response: &Path, out_dir: &Path) -> Self {
        let body = fs::read(response).unwrap();
        let fifo = response.with_extension("fifo");
        let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success(), "mkfifo {}", fifo.display());
        let child = command
            .args(process_args(&fifo, out_dir))
            .stdout(Stdio::null())
            .spawn()
            .expect("log-etl process starts");
        let mut pipe = fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        let split = body.len() * 2 / 3;
        pipe.write_all(&body[..split]).unwrap();
        let started = Instant::now();
        while spill_files(out_dir).is_empty() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no spill file appeared"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            pipe: Some(pipe),
            rest: body[split..].to_vec(),
        }
    }

    /// Feeds the rest of the response and closes the pipe, so the run can complete.
    pub fn feed_rest(&mut self) {
        let mut pipe = self.pipe.take().expect("the rest is fed once");
        pipe.write_all(&self.rest).unwrap();
    }

    /// Closes the pipe without feeding the rest.
    pub fn close_pipe(&mut self) {
        self.pipe = None;
    }
}

impl Drop for PipedProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
