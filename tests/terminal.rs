//! The command line's manners on a terminal and in a pipe, through a pseudo-terminal
//! (`script` from util-linux): the progress bar only on a terminal stderr and never with
//! `--quiet`, a summary for people on a terminal stdout, the one JSON line of the summary's
//! struct into a pipe and with `--json`, and no info lines on a terminal unless `-v`.

use std::path::{Path, PathBuf};
use std::process::Command;

use log_etl::pipeline::RunSummary;
use serde_json::Value;

use crate::common::log_etl;

/// Runs `shell` (a command line for `sh`, which may redirect stdout or stderr to files) under
/// a pseudo-terminal, within two minutes, and returns what reached the terminal.
pub fn in_terminal(shell: &str, env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &format!("timeout 120 {shell}"), "/dev/null"]);
    for setting in log_etl::config::var::ALL {
        cmd.env_remove(setting.name);
    }
    cmd.env_remove("RUST_LOG");
    cmd.envs(env.iter().copied());
    let out = cmd
        .output()
        .expect("`script` (util-linux) runs: install util-linux");
    assert!(
        out.status.success(),
        "{shell}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `log-etl` binary, for a shell command line.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_log-etl")
}

pub struct Saved {
    pub dir: tempfile::TempDir,
    pub key: String,
    pub response: PathBuf,
}

impl Saved {
    /// A saved response of `records` records from `start`, some undecryptable.
    pub fn new(records: u32, start: &str) -> Self {
        let keygen = log_etl(&["keygen"], &[]);
        let key = String::from_utf8(keygen.stdout).unwrap().trim().to_owned();
        let dir = tempfile::tempdir().unwrap();
        let response = dir.path().join("response.json");
        let made = log_etl(
            &[
                "generate",
                "--records",
                &records.to_string(),
                "--start",
                start,
                "--bad-per-mille",
                "20",
                "--out",
                response.to_str().unwrap(),
            ],
            &[("FERNET_KEY", &key)],
        );
        assert!(made.status.success());
        Self { dir, key, response }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `log-etl <flags> process` of the response into `out`, as a shell command line.
    fn process(&self, flags: &str, out: &Path) -> String {
        format!(
            "{} {flags} process --input {} --dir {}",
            binary(),
            self.response.display(),
            out.display()
        )
    }

    fn env(&self) -> [(&str, &str); 1] {
        [("FERNET_KEY", self.key.as_str())]
    }
}

/// The progress bar's mark: its label.
const BAR: &str = "Processing";

fn keys_of(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

#[test]
fn the_progress_bar_is_drawn_on_a_terminal_stderr_and_never_into_a_pipe() {
    // Given a saved response
    let saved = Saved::new(3000, "2023-03-18T14:50:00.000Z");
    // When it is processed with stderr a terminal and stdout a file
    let json = saved.path("summary.json");
    let seen = in_terminal(
        &format!(
            "{} > {}",
            saved.process("", &saved.path("a")),
            json.display()
        ),
        &saved.env(),
    );
    // Then the terminal shows the bar, and the file holds only the one JSON line
    assert!(seen.contains(BAR) && seen.contains("ETA"), "{seen}");
    let printed = std::fs::read_to_string(&json).unwrap();
    assert_eq!(printed.lines().count(), 1, "{printed}");
    let summary: Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(summary["records_in"], 3000);
    // When stderr goes to a file instead
    let errors = saved.path("stderr.txt");
    let seen = in_terminal(
        &format!(
            "{} 2> {}",
            saved.process("", &saved.path("b")),
            errors.display()
        ),
        &saved.env(),
    );
    // Then no bar is drawn anywhere
    let stderr = std::fs::read_to_string(&errors).unwrap();
    assert!(!stderr.contains(BAR), "{stderr}");
    assert!(!seen.contains(BAR), "{seen}");
}

#[test]
fn quiet_silences_the_progress_bar_on_a_terminal() {
    // Given a saved response
    let saved = Saved::new(3000, "2023-03-18T14:50:00.000Z");
    // When it is processed on a terminal with --quiet (before or after the command)
    let before = in_terminal(&saved.process("--quiet", &saved.path("a")), &saved.env());
    let after = in_terminal(
        &format!("{} -q", saved.process("", &saved.path("b"))),
        &saved.env(),
    );
    // Then no bar is drawn, and the summary is still there
    for seen in [before, after] {
        assert!(!seen.contains(BAR), "{seen}");
        assert!(seen.contains("Finished"), "{seen}");
    }
}

#[test]
fn a_terminal_gets_a_summary_for_people_and_json_gets_the_summary_struct_unchanged() {
    // Given a saved response with undecryptable records
    let saved = Saved::new(2000, "2023-03-18T14:50:00.000Z");
    // When it is processed on a terminal
    let seen = in_terminal(&saved.process("", &saved.path("a")), &saved.env());
    // Then the summary is for people: the Finished line and the figures, no JSON
    assert!(seen.contains("Finished"), "{seen}");
    assert!(seen.contains("landed in 1 hour(s)"), "{seen}");
    assert!(seen.contains("quarantined"), "{seen}");
    assert!(!seen.contains("{\""), "{seen}");
    // When it is processed into a pipe, and on a terminal with --json
    let piped = log_etl(
        &[
            "process",
            "--input",
            saved.response.to_str().unwrap(),
            "--dir",
            saved.path("b").to_str().unwrap(),
        ],
        &saved.env(),
    );
    assert!(piped.status.success());
    let on_terminal = in_terminal(
        &format!("{} --json", saved.process("--quiet", &saved.path("c"))),
        &saved.env(),
    );
    // Then both print one line of JSON: the summary struct's fields, and the same figures
    let piped: Value = serde_json::from_slice(&piped.stdout).unwrap();
    let json_lines: Vec<&str> = on_terminal
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(json_lines.len(), 1, "{on_terminal}");
    let on_terminal: Value = serde_json::from_str(json_lines[0]).unwrap();
    let fields = serde_json::to_value(RunSummary::default()).unwrap();
    assert_eq!(keys_of(&piped), keys_of(&fields));
    assert_eq!(keys_of(&on_terminal), keys_of(&fields));
    for figure in [
        "records_in",
        "records_landed",
        "records_quarantined",
        "bytes_out",
    ] {
        assert_eq!(piped[figure], on_terminal[figure], "{figure}");
    }
    assert_eq!(piped["records_in"], 2000);
}

#[test]
fn a_terminal_gets_no_info_lines_unless_asked_with_v() {
    // Given a folder with a closed hour of two objects (two responses of the same hour)
    let saved = Saved::new(200, "2023-03-18T14:10:00.000Z");
    let other = Saved::new(200, "2023-03-18T14:40:00.000Z");
    let out = saved.path("out");
    for (response, key) in [(&saved.response, &saved.key), (&other.response, &other.key)] {
        let done = log_etl(
            &[
                "process",
                "--input",
                response.to_str().unwrap(),
                "--dir",
                out.to_str().unwrap(),
            ],
            &[("FERNET_KEY", key)],
        );
        assert!(done.status.success());
    }
    let compact = |flags: &str| {
        in_terminal(
            &format!("{} {flags} compact --dir {}", binary(), out.display()),
            &[],
        )
    };
    // When it is compacted on a terminal
    let quiet = compact("");
    // Then only the summary is shown, no info line
    assert!(quiet.contains("1 hour(s) merged"), "{quiet}");
    assert!(!quiet.contains("INFO"), "{quiet}");
    // When the hour gets a second object again and is compacted with -v
    let again = Saved::new(100, "2023-03-18T14:55:00.000Z");
    let done = log_etl(
        &[
            "process",
            "--input",
            again.response.to_str().unwrap(),
            "--dir",
            out.to_str().unwrap(),
        ],
        &[("FERNET_KEY", &again.key)],
    );
    assert!(done.status.success());
    let logged = compact("-v");
    // Then the compaction's info line is shown too
    assert!(logged.contains("INFO"), "{logged}");
    assert!(logged.contains("1 hour(s) merged"), "{logged}");
}
