//! The `log-etl` command end to end on saved responses: what `process` writes is read back
//! (gunzip, parse, restore) and compared with the records that went in.

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};

use common::folder::{PipedProcess, files_under, process_args, spill_files};
use common::log_etl;
use log_etl::record::fields;
use serde_json::{Map, Value};

/// A folder for a test's files and a fresh key (also the zstd tests').
pub(crate) struct Fixture {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) key: String,
}

impl Fixture {
    pub(crate) fn new() -> Self {
        let out = log_etl(&["keygen"], &[]);
        assert!(out.status.success());
        Self {
            dir: tempfile::tempdir().unwrap(),
            key: String::from_utf8(out.stdout).unwrap().trim().to_owned(),
        }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A saved response of `records` records from `start`, and its ground truth.
    fn generate(
        &self,
        records: u32,
        start: &str,
        extra: &[&str],
    ) -> (PathBuf, Vec<Map<String, Value>>) {
        let run = |args: &[&str]| log_etl(args, &[("FERNET_KEY", &self.key)]);
        let (response, truth) =
            common::generate_response(run, self.dir.path(), "response", records, start, extra);
        let truth = truth
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (response, truth)
    }

    fn process(&self, input: &Path, out_dir: &Path) -> (Value, std::process::Output) {
        self.process_with(input, out_dir, &[])
    }

    /// `process` with settings added to the key in the environment.
    fn process_with(
        &self,
        input: &Path,
        out_dir: &Path,
        settings: &[(&str, &str)],
    ) -> (Value, std::process::Output) {
        let mut env = vec![("FERNET_KEY", self.key.as_str())];
        env.extend_from_slice(settings);
        let out = log_etl(&process_args(input, out_dir), &env);
        let summary = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (summary, out)
    }
}

fn gunzip_file(path: &Path) -> Vec<Map<String, Value>> {
    common::gunzip_lines(&fs::read(path).unwrap())
}

#[test]
fn archives_read_back_are_the_input_records() {
    // Given a response with unusual-but-valid and undecryptable records
    let fx = Fixture::new();
    let (input, truth) = fx.generate(
        3000,
        "2023-03-18T14:50:00.000Z",
        &["--unusual-per-mille", "150", "--bad-per-mille", "20"],
    );
    // When it is processed
    let out_dir = fx.path("out");
    let (summary, out) = fx.process(&input, &out_dir);
    common::assert_success(&out);
    // Then gunzipping and restoring every data object gives back exactly the good records, in order
    let files = files_under(&out_dir);
    let mut restored = Vec::new();
    for file in files.iter().filter(|f| f.starts_with("data/")) {
        assert!(file.ends_with(".json.gz"), "{file}");
        for mut record in gunzip_file(&out_dir.join(file)) {
            fields::restore(&mut record);
            restored.push(record);
        }
    }
    assert_eq!(restored.len(), truth.len());
    assert_eq!(restored, truth);
    // and the quarantine holds the rest, with reasons and the records as received
    let quarantined: Vec<_> = files
        .iter()
        .filter(|f| f.starts_with("quarantine/"))
        .flat_map(|f| gunzip_file(&out_dir.join(f)))
        .collect();
    assert_eq!(quarantined.len() + truth.len(), 3000);
    assert!(!quarantined.is_empty());
    for line in &quarantined {
        assert_eq!(line["stage"], "decrypt");
        assert!(line["record"]["data"].is_string());
        assert!(line["reason"].as_str().unwrap().contains("token"));
    }
    assert_eq!(summary["records_in"], 3000);
    assert_eq!(summary["records_landed"], truth.len());
    assert_eq!(summary["records_quarantined"], quarantined.len());
    // and `restore` prints the same records
    let printed = log_etl(&["restore", out_dir.to_str().unwrap()], &[]);
    assert!(printed.status.success());
    let printed: Vec<Map<String, Value>> = String::from_utf8(printed.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(printed, truth);
}

#[test]
fn records_straddling_an_hour_and_midnight_land_in_separate_objects() {
    // Given 300 records from 23:59:00 (about 90 s, across midnight into a new year)
    let fx = Fixture::new();
    let (input, truth) = fx.generate(300, "2023-12-31T23:59:00.000Z", &[]);
    let out_dir = fx.path("out");
    let (summary, out) = fx.process(&input, &out_dir);
    assert!(out.status.success());
    // Then there are two objects, one per date + hour, named by their first and last records
    let files = files_under(&out_dir);
    assert_eq!(files.len(), 2, "{files:?}");
    let stamp = |r: &Map<String, Value>| {
        let d = r["inDate"].as_str().unwrap();
        format!("{}{}{}", &d[14..16], &d[17..19], &d[20..23])
    };
    let split = truth
        .iter()
        .position(|r| r["inDate"].as_str().unwrap().starts_with("2024"))
        .unwrap();
    let (before, after) = truth.split_at(split);
    assert!(files[0].starts_with(&format!(
        "data/2023/12/31/23/{}_{}_",
        stamp(&before[0]),
        stamp(before.last().unwrap())
    )));
    assert!(files[1].starts_with(&format!(
        "data/2024/01/01/00/{}_{}_",
        stamp(&after[0]),
        stamp(after.last().unwrap())
    )));
    assert_eq!(gunzip_file(&out_dir.join(&files[0])).len(), before.len());
    assert_eq!(
        summary["hours"],
        serde_json::json!(["2023-12-31T23", "2024-01-01T00"])
    );
}

#[test]
fn processing_the_same_response_twice_writes_nothing_new() {
    let fx = Fixture::new();
    let (input, _) = fx.generate(500, "2023-03-18T15:58:00.000Z", &["--bad-per-mille", "10"]);
    let out_dir = fx.path("out");
    let (first, _) = fx.process(&input, &out_dir);
    let before: Vec<_> = files_under(&out_dir)
        .into_iter()
        .map(|f| (fs::read(out_dir.join(&f)).unwrap(), f))
        .collect();
    let (second, out) = fx.process(&input, &out_dir);
    assert!(out.status.success());
    let after: Vec<_> = files_under(&out_dir)
        .into_iter()
        .map(|f| (fs::read(out_dir.join(&f)).unwrap(), f))
        .collect();
    assert_eq!(before, after);
    assert_eq!(second["objects_written"], 0);
    assert_eq!(second["records_landed"], 0);
    assert_eq!(second["records_already_present"], first["records_landed"]);
}

#[test]
fn hive_layout_is_an_option() {
    let fx = Fixture::new();
    let (input, _) = fx.generate(10, "2023-03-18T15:08:02.284Z", &[]);
    let out_dir = fx.path("out");
    let (_, out) = fx.process_with(
        &input,
        &out_dir,
        &[("PARTITION_STYLE", "hive"), ("KEY_PREFIX", "logs")],
    );
    common::assert_success(&out);
    let files = files_under(&out_dir);
    assert!(
        files[0].starts_with("logs/year=2023/month=03/day=18/hour=15/0802284_"),
        "{files:?}"
    );
}

#[test]
fn bad_input_fails_in_one_line_and_leaves_nothing() {
    let fx = Fixture::new();
    let (input, _) = fx.generate(50, "2023-03-18T15:08:02.284Z", &[]);
    let full = fs::read(&input).unwrap();
    let truncated = fx.path("truncated.json");
    fs::write(&truncated, &full[..full.len() / 2]).unwrap();
    let object = fx.path("object.json");
    fs::write(&object, br#"{"data": "x"}"#).unwrap();
    let missing = PathBuf::from("/nonexistent/response.json");
    let out_dir = fx.path("out");
    let existing = fx.path("existing");
    fs::create_dir(&existing).unwrap();
    let key = [("FERNET_KEY", fx.key.as_str())];

    // (input, out dir, environment, what the message says)
    type Case<'a> = (&'a Path, &'a Path, &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 7] = [
        (
            &truncated,
            &out_dir,
            &key,
            "ends before the array is closed",
        ),
        (&object, &out_dir, &key, "not a JSON array"),
        (
            &missing,
            &out_dir,
            &key,
            "cannot read /nonexistent/response.json",
        ),
        (&input, &out_dir, &[], "no Fernet key"),
        (
            &input,
            &out_dir,
            &[("FERNET_KEY", "c2hvcnQ=")],
            "not a Fernet key",
        ),
        (
            &truncated,
            &existing,
            &key,
            "ends before the array is closed",
        ),
        (
            &input,
            &out_dir,
            &[("FERNET_KEY", &fx.key), ("GZIP_LEVEL", "12")],
            "GZIP_LEVEL",
        ),
    ];
    for (input, out, env, expected) in cases {
        let args = process_args(input, out);
        let result = log_etl(&args, env);
        let stderr = String::from_utf8(result.stderr).unwrap();
        assert_eq!(result.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("log-etl: error: ") && stderr.contains(expected),
            "{stderr}"
        );
        // no key material in the message
        assert!(!stderr.contains(&fx.key));
        assert!(!out_dir.exists(), "{args:?} left {out_dir:?}");
        assert_eq!(
            fs::read_dir(&existing).unwrap().count(),
            0,
            "{args:?} left files"
        );
    }
}

#[test]
fn keygen_prints_a_usable_key() {
    let out = log_etl(&["keygen"], &[]);
    let key = String::from_utf8(out.stdout).unwrap();
    assert!(log_etl::record::fernet::KeyRing::parse(key.trim()).is_ok());
    assert_ne!(
        key,
        String::from_utf8(log_etl(&["keygen"], &[]).stdout).unwrap()
    );
}

#[test]
fn the_checked_in_sample_response_processes_to_its_ground_truth() {
    // Given the sample response, its key and its ground truth
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let key = fs::read_to_string(examples.join("sample.key")).unwrap();
    let truth: Vec<Map<String, Value>> = fs::read_to_string(examples.join("sample-truth.ndjson"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("out");
    // When it is processed and restored
    let processed = log_etl(
        &[
            "process",
            "--input",
            examples.join("sample-response.json").to_str().unwrap(),
            "--out-dir",
            out.to_str().unwrap(),
        ],
        &[("FERNET_KEY", key.trim())],
    );
    common::assert_success(&processed);
    let summary: Value = serde_json::from_slice(&processed.stdout).unwrap();
    let restored = log_etl(&["restore", out.to_str().unwrap()], &[]);
    let restored: Vec<Map<String, Value>> = String::from_utf8(restored.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Then the decryptable records come back as they were made, and the other is quarantined
    assert_eq!(restored, truth);
    assert_eq!(summary["records_in"], 12);
    assert_eq!(summary["records_quarantined"], 1);
    assert_eq!(
        summary["hours"],
        serde_json::json!(["2023-03-18T15", "2023-03-18T16"])
    );
}

#[test]
fn the_demo_proves_what_it_landed_and_keeps_away_from_other_folders() {
    // Given an empty folder for the demo
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("demo-out");
    // When the demo runs a few passes
    let out = log_etl(
        &[
            "demo",
            "--out-dir",
            out_dir.to_str().unwrap(),
            "--passes",
            "4",
        ],
        &[],
    );
    // Then it succeeds with its proof, and objects landed
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("identical field for field and none twice: yes"),
        "{stdout}"
    );
    assert!(
        files_under(&out_dir)
            .iter()
            .any(|f| f.starts_with("data/2023/12/31/23/"))
    );
    // and it ends with a compaction of its closed hours, one object an hour, proved again
    assert!(
        stdout.contains("compaction of the closed hours") && stdout.contains("none twice: yes\n"),
        "{stdout}"
    );
    let data_objects: Vec<String> = files_under(&out_dir)
        .into_iter()
        .filter(|f| f.starts_with("data/"))
        .collect();
    let hours: std::collections::BTreeSet<&str> = data_objects.iter().map(|f| &f[..18]).collect();
    assert_eq!(data_objects.len(), hours.len(), "{data_objects:?}");
    // and a second demo may clear its own folder, but never one it did not make
    let again = log_etl(
        &[
            "demo",
            "--out-dir",
            out_dir.to_str().unwrap(),
            "--passes",
            "2",
        ],
        &[],
    );
    assert!(again.status.success());
    let other = dir.path().join("precious");
    fs::create_dir(&other).unwrap();
    fs::write(other.join("keep.txt"), b"mine").unwrap();
    let refused = log_etl(&["demo", "--out-dir", other.to_str().unwrap()], &[]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("is not a demo folder"));
    assert_eq!(fs::read(other.join("keep.txt")).unwrap(), b"mine");
}

/// A child process killed (and reaped) when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_simulated_source_and_a_run_into_a_folder_land_what_was_served() {
    // Given a key file made by `log-etl keygen --out`, readable by its owner only
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("sim.key");
    let made = log_etl(&["keygen", "--out", key_file.to_str().unwrap()], &[]);
    common::assert_success(&made);
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // and `log-etl simulate` with that key on a free port, writing its ground truth
    let truth = dir.path().join("truth.ndjson");
    let out_dir = dir.path().join("out");
    let port = common::free_port();
    let _sim = Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_log-etl"))
            .args(["simulate", "--port", &port.to_string(), "--period", "1h"])
            .args([
                "--seed",
                "7",
                "--bad-per-mille",
                "50",
                "--unusual-per-mille",
                "100",
            ])
            .arg("--truth")
            .arg(&truth)
            .arg("--key-file")
            .arg(&key_file)
            .env_remove("FERNET_KEY")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("log-etl simulate starts"),
    );
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "the simulator did not listen within 20 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let key = fs::read_to_string(&key_file).unwrap().trim().to_owned();
    // When one scheduled pass runs into a folder
    let url = format!("http://127.0.0.1:{port}/api/data/log");
    let out = log_etl(
        &["run", "--out-dir", out_dir.to_str().unwrap()],
        &[("LOG_API_URL", &url), ("FERNET_KEY", &key)],
    );
    common::assert_success(&out);
    // Then its summary accounts for every record, object and byte it wrote
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let served: Vec<Value> = fs::read_to_string(&truth)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(summary["records_in"], 100);
    assert_eq!(summary["records_landed"], served.len() as u64);
    assert_eq!(
        summary["records_quarantined"],
        100 - served.len() as u64,
        "{summary}"
    );
    assert!(served.len() < 100, "no undecryptable record was served");
    let files = files_under(&out_dir);
    assert_eq!(summary["objects_written"], files.len() as u64, "{files:?}");
    assert_eq!(summary["objects_already_present"], 0);
    let stored: u64 = files
        .iter()
        .map(|f| fs::metadata(out_dir.join(f)).unwrap().len())
        .sum();
    assert_eq!(summary["bytes_out"], stored);
    assert!(summary["bytes_in"].as_u64().unwrap() > stored);
    assert!(summary["duration_ms"].is_u64());
    // and restoring the folder gives exactly the records the simulator says it served
    let restored = log_etl(&["restore", out_dir.to_str().unwrap()], &[]);
    assert!(restored.status.success());
    let mut restored: Vec<String> = String::from_utf8(restored.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let mut served: Vec<String> = served.iter().map(Value::to_string).collect();
    restored.sort();
    served.sort();
    assert_eq!(restored, served);
}

#[test]
fn spill_files_of_a_running_process_are_its_owners_alone() {
    use std::os::unix::fs::PermissionsExt;
    // Given a saved response fed to `process` through a named pipe, two thirds of it at first
    let fx = Fixture::new();
    let (response, _) = fx.generate(15_000, "2023-03-18T15:00:00.000Z", &[]);
    let out_dir = fx.path("out");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_log-etl"));
    command.env("FERNET_KEY", &fx.key);
    // When its bodies have spilled (waiting at most 30 s for a spill file to appear)
    let mut process = PipedProcess::spilled(command, &response, &out_dir);
    let spilled = spill_files(&out_dir).remove(0);
    // Then the spill folder and its files are readable by their owner only
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&spilled.0), 0o700, "{}", spilled.0.display());
    assert_eq!(mode(&spilled.1), 0o600, "{}", spilled.1.display());
    // and once the rest arrives, the run completes, its objects readable like any file
    process.feed_rest();
    assert!(common::wait_bounded(&mut process.child).success());
    for file in files_under(&out_dir) {
        assert_eq!(mode(&out_dir.join(&file)), 0o644, "{file}");
    }
}

#[test]
fn a_shuffled_response_over_more_hours_than_may_be_open_lands_each_hour_in_one_object() {
    // Given a response of 1,200 records 70 s apart (about 23 hours, more than the 16 kept open),
    // written shuffled, twice with the same seed
    let fx = Fixture::new();
    let generate = |name| {
        let run = |args: &[&str]| log_etl(args, &[("FERNET_KEY", &fx.key)]);
        let shuffled = ["--shuffle", "--interval-ms", "70000"];
        common::generate_response(
            run,
            fx.dir.path(),
            name,
            1200,
            "2023-03-18T00:00:00.000Z",
            &shuffled,
        )
    };
    let ((input, truth), (again, truth_again)) = (generate("first"), generate("second"));
    assert_eq!(truth, truth_again, "the same seed gives the same order");
    let truth: Vec<Map<String, Value>> = truth
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let in_dates: Vec<&Value> = truth.iter().map(|r| &r["inDate"]).collect();
    let mut sorted = in_dates.clone();
    sorted.sort_by_key(|v| v.as_str().unwrap().to_owned());
    assert_ne!(in_dates, sorted, "the records are not in time order");
    // When it is processed into a folder
    let out_dir = fx.path("out");
    let (summary, out) = fx.process(&input, &out_dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Then every record lands once, each hour in one object, and no spill file is left
    assert_eq!(summary["records_landed"], 1200);
    let hours = summary["hours"].as_array().unwrap().len();
    assert!(hours > 16, "{hours} hours");
    let objects = files_under(&out_dir);
    assert_eq!(objects.len(), hours, "{objects:?}");
    assert_eq!(summary["objects_written"], hours as u64);
    assert!(spill_files(&out_dir).is_empty());
    let restored = common::restore_path(&out_dir);
    assert_eq!(restored.len(), 1200);
    // and the second response (the same records under other tokens) gives the same objects
    let (summary, _) = fx.process(&again, &fx.path("again"));
    assert_eq!(summary["objects_written"], hours as u64);
    assert_eq!(files_under(&fx.path("again")), objects);
    for name in &objects {
        assert_eq!(
            fs::read(out_dir.join(name)).unwrap(),
            fs::read(fx.path("again").join(name)).unwrap(),
            "{name}"
        );
    }
}
