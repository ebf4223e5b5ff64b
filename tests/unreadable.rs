//! A bucket others write to: an object that is not what this code writes (here a gzip "bomb", a
//! line without end) wedges nothing. A pass into its hour lands its records, compaction leaves
//! that hour alone and compacts the others, restore restores the rest and exits non-zero naming
//! it, and the object is never deleted.

use std::io::Write;
use std::path::Path;

use serde_json::Value;

use crate::common;
use log_etl::record::fernet::generate_key;

/// The smallest line bound, so a small bomb is past it.
const LINE_BOUND: &str = "1048576";
/// The hour the bomb lands in, and the bomb's key there.
const BOMB: &str = "data/2023/03/18/15/0000000_5959999_feedfacefeedface.json.gz";

/// A gzip object of 2 MiB of one byte and no newline: a line past [`LINE_BOUND`].
fn bomb() -> Vec<u8> {
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(1));
    gzip.write_all(&vec![b'0'; 2 << 20]).unwrap();
    gzip.finish().unwrap()
}

fn run(args: &[&str], key: &str) -> (Option<i32>, Value, String) {
    let out = common::log_etl(args, &[("FERNET_KEY", key), ("MAX_LINE_BYTES", LINE_BOUND)]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let summary = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null);
    (
        out.status.code(),
        summary,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Generates `records` records from `start` (0.3 s apart) into `dir/<name>.json`, with the
/// ground truth beside it; returns the response's path.
fn generate(dir: &Path, name: &str, start: &str, records: &str, seed: &str, key: &str) -> String {
    let response = dir.join(format!("{name}.json"));
    let truth = dir.join(format!("{name}.truth"));
    let (code, _, err) = run(
        &[
            "generate",
            "--records",
            records,
            "--start",
            start,
            "--seed",
            seed,
            "--out",
            response.to_str().unwrap(),
            "--truth",
            truth.to_str().unwrap(),
        ],
        key,
    );
    assert_eq!(code, Some(0), "{err}");
    response.to_str().unwrap().to_owned()
}

fn objects_in(dir: &Path, hour_folder: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join(hour_folder))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with('.'))
        .collect();
    names.sort();
    names
}

#[test]
fn an_unreadable_object_blocks_nothing_and_is_never_deleted() {
    // Given two closed hours (15:00 and 16:00) each landed by two saved responses, and a bomb
    // planted in the first hour
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let out_dir = out.to_str().unwrap();
    let key = generate_key();
    for seed in ["1", "2"] {
        let response = generate(work.path(), seed, "2023-03-18T15:59:00Z", "400", seed, &key);
        let (code, _, err) = run(
            &["process", "--input", &response, "--out-dir", out_dir],
            &key,
        );
        assert_eq!(code, Some(0), "{err}");
    }
    std::fs::write(out.join(BOMB), bomb()).unwrap();
    let hour_15 = objects_in(&out, "data/2023/03/18/15");
    assert_eq!(hour_15.len(), 3);

    // When a third response lands records in both hours
    let third = generate(work.path(), "3", "2023-03-18T15:59:30Z", "200", "3", &key);
    let (code, pass, err) = run(&["process", "--input", &third, "--out-dir", out_dir], &key);
    // Then they all land (nothing in the bomb counts as present) and the bomb is counted
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(pass["records_landed"], pass["records_in"], "{pass}");
    assert_eq!(pass["objects_unreadable"], 1, "{pass}");
    assert!(err.contains("unreadable object"), "{err}");

    // When the closed hours are compacted
    let (code, compaction, err) = run(&["compact", "--dir", out_dir], &key);
    // Then the bomb's hour is left as it is and the other hour is merged into one object
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(compaction["hours_unreadable"], 1, "{compaction}");
    assert_eq!(compaction["unreadable_objects"], serde_json::json!([BOMB]));
    assert_eq!(compaction["hours"], serde_json::json!(["2023-03-18T16"]));
    assert_eq!(
        compaction["objects_read"], 3,
        "only the merged hour's inputs count"
    );
    assert_eq!(objects_in(&out, "data/2023/03/18/15").len(), 4);
    assert_eq!(objects_in(&out, "data/2023/03/18/16").len(), 1);

    // When the folder is restored
    let restored = common::log_etl(&["restore", out_dir], &[("MAX_LINE_BYTES", LINE_BOUND)]);
    // Then every record of the readable objects comes out, and the run fails naming the bomb
    assert_eq!(restored.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&restored.stderr);
    assert!(stderr.contains(BOMB), "{stderr}");
    let mut served = 0;
    for name in ["1", "2", "3"] {
        let truth = std::fs::read_to_string(work.path().join(format!("{name}.truth"))).unwrap();
        served += truth.lines().count();
    }
    let mut restored: Vec<&str> = std::str::from_utf8(&restored.stdout)
        .unwrap()
        .lines()
        .collect();
    restored.sort();
    restored.dedup();
    assert_eq!(restored.len(), served);
    // and the bomb is still where it was planted
    assert_eq!(std::fs::read(out.join(BOMB)).unwrap(), bomb());
}
