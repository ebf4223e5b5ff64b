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

/// The quarantine line of the summary of the mixed response (6 records under another key, 2
/// elements that are not JSON), processed once.
const MIXED_REASONS: &str = "quarantined 8 record(s), 0 already in quarantine; by reason: \
                             decrypt: no key matched 6, shape: element not JSON 2";

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

/// The keys of `process`'s JSON line, in order, as scripts read it: a new figure for people must
/// not add one.
const PROCESS_JSON_KEYS: [&str; 19] = [
    "records_in",
    "bytes_in",
    "records_undecryptable",
    "no_record_verified",
    "records_landed",
    "records_already_present",
    "duplicates_dropped",
    "records_quarantined",
    "quarantined_already_present",
    "objects_written",
    "objects_already_present",
    "bytes_uncompressed",
    "bytes_out",
    "hours",
    "lists",
    "objects_read",
    "existing_read_ms",
    "objects_unreadable",
    "duration_ms",
];

/// Whether `element`'s token opens under `key`.
fn opens(key: &str, element: &Value) -> bool {
    let ring = log_etl::record::fernet::KeyRing::parse(key).unwrap();
    ring.decrypt(element["data"].as_str().unwrap()).is_ok()
}

/// A response of the saved records whose tokens open under its key, then `stranger` records
/// under another key, then the elements `not_json` as written (not JSON); its path.
fn mixed_response(saved: &Saved, stranger: usize, not_json: &[&str]) -> PathBuf {
    let other = Saved::new(stranger as u32 * 2, "2023-03-18T14:52:00.000Z");
    let elements = |path: &Path| -> Vec<Value> {
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    };
    // The generator's own undecryptable tokens are left out: only the stranger's count.
    let mut parts: Vec<String> = elements(&saved.response)
        .iter()
        .filter(|v| opens(&saved.key, v))
        .map(Value::to_string)
        .collect();
    let strangers: Vec<String> = elements(&other.response)
        .iter()
        .filter(|v| opens(&other.key, v))
        .take(stranger)
        .map(Value::to_string)
        .collect();
    assert_eq!(strangers.len(), stranger);
    parts.extend(strangers);
    parts.extend(not_json.iter().map(|s| (*s).to_owned()));
    let path = saved.path("mixed.json");
    std::fs::write(&path, format!("[{}]", parts.join(",\n"))).unwrap();
    path
}

#[test]
fn a_terminal_summary_counts_the_quarantined_records_by_reason() {
    // Given a response of good records, 6 under another key and 2 elements that are not JSON
    let saved = Saved::new(50, "2023-03-18T14:50:00.000Z");
    let mixed = mixed_response(&saved, 6, &["NaN", "[1, Infinity]"]);
    // When it is processed on a terminal
    let seen = in_terminal(
        &format!(
            "{} process --input {} --dir {}",
            binary(),
            mixed.display(),
            saved.path("out").display()
        ),
        &saved.env(),
    );
    // Then the quarantine line gives the count, and each reason with its count, most first
    let line = seen
        .lines()
        .find(|l| l.trim_start().starts_with("quarantined"))
        .unwrap_or_else(|| panic!("no quarantine line: {seen}"));
    assert!(line.contains(MIXED_REASONS), "{line}");
    // When the same response is processed again into the same folder
    let again = in_terminal(
        &format!(
            "{} process --input {} --dir {}",
            binary(),
            mixed.display(),
            saved.path("out").display()
        ),
        &saved.env(),
    );
    // Then the reasons count the records refused again, already in quarantine
    assert!(
        again.contains(
            "quarantined 0 record(s), 8 already in quarantine; by reason: \
             decrypt: no key matched 6, shape: element not JSON 2"
        ),
        "{again}"
    );
}

#[test]
fn the_json_line_carries_no_reason_counts_and_keeps_its_keys() {
    // Given the same kind of response: records under another key and elements not JSON
    let saved = Saved::new(50, "2023-03-18T14:50:00.000Z");
    let mixed = mixed_response(&saved, 6, &["NaN", "[1, Infinity]"]);
    // When it is processed into a pipe, and on a terminal with --json
    let piped = log_etl(
        &[
            "process",
            "--input",
            mixed.to_str().unwrap(),
            "--dir",
            saved.path("a").to_str().unwrap(),
        ],
        &saved.env(),
    );
    assert!(piped.status.success());
    let on_terminal = in_terminal(
        &format!(
            "{} --json --quiet process --input {} --dir {}",
            binary(),
            mixed.display(),
            saved.path("b").display()
        ),
        &saved.env(),
    );
    // Then each is one JSON line with today's keys in today's order, and no reason in it
    for printed in [String::from_utf8(piped.stdout).unwrap(), on_terminal] {
        let lines: Vec<&str> = printed
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(lines.len(), 1, "{printed}");
        let summary: serde_json::Map<String, Value> = serde_json::from_str(lines[0]).unwrap();
        let keys: Vec<&str> = summary.keys().map(String::as_str).collect();
        assert_eq!(keys, PROCESS_JSON_KEYS, "{printed}");
        assert_eq!(summary["records_quarantined"], 8);
        assert!(!lines[0].contains("no key matched"), "{printed}");
        assert!(!lines[0].contains("by reason"), "{printed}");
    }
}

#[test]
fn backfill_and_demo_on_a_terminal_count_the_quarantined_records_by_reason() {
    // Given a folder holding the mixed response under saved/
    let saved = Saved::new(50, "2023-03-18T14:50:00.000Z");
    let mixed = mixed_response(&saved, 6, &["NaN", "[1, Infinity]"]);
    let root = saved.path("root");
    std::fs::create_dir_all(root.join("saved")).unwrap();
    std::fs::copy(&mixed, root.join("saved/response.json")).unwrap();
    // When it is backfilled on a terminal
    let seen = in_terminal(
        &format!(
            "{} backfill --dir {} --prefix saved/",
            binary(),
            root.display()
        ),
        &saved.env(),
    );
    // Then the summary is for people, with the reasons counted
    assert!(seen.contains("Finished") && !seen.contains("{\""), "{seen}");
    assert!(seen.contains(MIXED_REASONS), "{seen}");
    // When the demo runs a few passes (its simulator mixes in tokens that do not decrypt)
    let demo = in_terminal(
        &format!(
            "{} demo --passes 3 --out-dir {}",
            binary(),
            saved.path("demo").display()
        ),
        &[],
    );
    // Then its passes name the reason of what they quarantined
    assert!(demo.contains("quarantined; "), "{demo}");
    assert!(demo.contains("by reason: decrypt: "), "{demo}");
}
