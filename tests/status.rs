//! `log-etl status` over a folder and a bucket: objects, bytes, records and state per hour, the
//! quarantine per run hour and the totals, checked against the files themselves and against
//! what `restore` reads back; the JSON parses, the terminal shows the table.

use std::fs;
use std::path::Path;

use chrono::{SecondsFormat, Utc};
use serde_json::Value;

use crate::common::{self, log_etl, restore_path, world::BUCKET};
use crate::terminal::{Saved, binary, in_terminal};
use log_etl::local::synth::SynthOptions;

/// Processes `saved`'s response into the folder `out`; returns the summary.
fn process_into(saved: &Saved, out: &Path) -> Value {
    let done = log_etl(
        &[
            "process",
            "--input",
            saved.response.to_str().unwrap(),
            "--dir",
            out.to_str().unwrap(),
        ],
        &[("FERNET_KEY", &saved.key)],
    );
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    serde_json::from_slice(&done.stdout).unwrap()
}

fn status_json(args: &[&str], env: &[(&str, &str)]) -> Value {
    let out = log_etl(&[&["status"], args].concat(), env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The files of a folder and their total size.
fn files_and_bytes(folder: &Path) -> (u64, u64) {
    let mut found = (0, 0);
    for entry in fs::read_dir(folder).unwrap() {
        let meta = entry.unwrap().metadata().unwrap();
        found.0 += 1;
        found.1 += meta.len();
    }
    found
}

fn hour_named<'a>(status: &'a Value, hour: &str) -> &'a Value {
    status["hours"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["hour"] == hour)
        .unwrap_or_else(|| panic!("no hour {hour} in {status}"))
}

#[test]
fn status_of_a_folder_counts_each_hour_and_names_its_state() {
    // Given hours in every state: 14 compacted (one object), 15 closed with two objects, the
    // current hour open, and 13 holding one object that is not gzip
    let first = Saved::new(3000, "2023-03-18T14:50:00.000Z");
    let out = first.path("out");
    let mut quarantined = process_into(&first, &out)["records_quarantined"]
        .as_u64()
        .unwrap();
    let second = Saved::new(200, "2023-03-18T15:20:00.000Z");
    quarantined += process_into(&second, &out)["records_quarantined"]
        .as_u64()
        .unwrap();
    let now =
        (Utc::now() - chrono::Duration::seconds(20)).to_rfc3339_opts(SecondsFormat::Millis, true);
    let current = Saved::new(20, &now);
    let current = process_into(&current, &out);
    quarantined += current["records_quarantined"].as_u64().unwrap();
    let broken = out.join("data/2023/03/18/13");
    fs::create_dir_all(&broken).unwrap();
    fs::write(
        broken.join("0000000_0000000_0123456789abcdef.json.gz"),
        b"not gzip",
    )
    .unwrap();
    let dir = out.to_str().unwrap();
    // When the status is taken from listings only, and again reading every object
    let listed = status_json(&["--dir", dir], &[]);
    let read = status_json(&["--dir", dir, "--records", "--json"], &[]);
    // Then each hour's objects and bytes are the folder's files, and its records what
    // restore reads back
    for (hour, folder) in [
        ("2023-03-18T14", "data/2023/03/18/14"),
        ("2023-03-18T15", "data/2023/03/18/15"),
    ] {
        let (objects, bytes) = files_and_bytes(&out.join(folder));
        for status in [&listed, &read] {
            assert_eq!(hour_named(status, hour)["objects"], objects, "{hour}");
            assert_eq!(hour_named(status, hour)["bytes"], bytes, "{hour}");
        }
        let records = restore_path(&out.join(folder)).len();
        assert_eq!(hour_named(&read, hour)["records"], records, "{hour}");
        assert!(hour_named(&listed, hour).get("records").is_none());
    }
    assert_eq!(hour_named(&read, "2023-03-18T15")["objects"], 2);
    // And the states: one object closed is compacted, two are closed, the current hour is
    // open, and the broken object is only found when read
    let state = |status: &Value, hour: &str| hour_named(status, hour)["state"].clone();
    assert_eq!(state(&read, "2023-03-18T14"), "compacted");
    assert_eq!(state(&read, "2023-03-18T15"), "closed");
    assert_eq!(state(&listed, "2023-03-18T13"), "compacted");
    assert_eq!(state(&read, "2023-03-18T13"), "unreadable");
    let open: Vec<&Value> = read["hours"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["state"] == "open")
        .collect();
    assert!(!open.is_empty(), "{read}");
    assert_eq!(
        open.iter()
            .map(|h| h["records"].as_u64().unwrap())
            .sum::<u64>(),
        current["records_landed"].as_u64().unwrap()
    );
    assert_eq!(
        hour_named(&read, "2023-03-18T13")["unreadable_objects"][0],
        "data/2023/03/18/13/0000000_0000000_0123456789abcdef.json.gz"
    );
    // And the totals add up, the quarantine lines are the records the runs quarantined
    let totals = &read["totals"];
    let hours = read["hours"].as_array().unwrap();
    let sum = |field: &str| {
        hours
            .iter()
            .map(|h| h[field].as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!(totals["objects"], sum("objects"));
    assert_eq!(totals["bytes"], sum("bytes"));
    assert_eq!(totals["records"], sum("records"));
    assert_eq!(totals["hours_unreadable"], 1);
    assert_eq!(totals["hours_compacted"], 1);
    assert_eq!(totals["hours_closed"], 1);
    assert_eq!(totals["quarantine_lines"], quarantined);
    assert!(quarantined > 0);
    let (quarantine_objects, _) =
        read["quarantine"]
            .as_array()
            .unwrap()
            .iter()
            .fold((0, 0), |(o, b), q| {
                (
                    o + q["objects"].as_u64().unwrap(),
                    b + q["bytes"].as_u64().unwrap(),
                )
            });
    assert_eq!(totals["quarantine_objects"], quarantine_objects);
    // When it is shown on a terminal
    let seen = in_terminal(&format!("{} status --dir {dir} --records", binary()), &[]);
    // Then the table has a row per hour with its state and a bar, and the totals
    for hour in hours {
        let name = hour["hour"].as_str().unwrap();
        let row = seen
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no row {name}: {seen}"));
        assert!(row.contains(hour["state"].as_str().unwrap()), "{row}");
        assert!(row.contains(&hour["records"].to_string()), "{row}");
    }
    assert!(seen.contains('#'), "{seen}");
    assert!(seen.contains("total: 4 hour(s)"), "{seen}");
    assert!(!seen.contains("{\""), "{seen}");
}

#[test]
fn status_of_hours_limits_the_rows_to_them() {
    // Given a folder with two hours
    let saved = Saved::new(3000, "2023-03-18T14:50:00.000Z");
    let out = saved.path("out");
    process_into(&saved, &out);
    // When the status of one of them is taken
    let status = status_json(
        &[
            "--dir",
            out.to_str().unwrap(),
            "--hours",
            "2023-03-18T15..2023-03-18T15",
        ],
        &[],
    );
    // Then only it is shown
    let hours: Vec<&Value> = status["hours"].as_array().unwrap().iter().collect();
    assert_eq!(hours.len(), 1, "{status}");
    assert_eq!(hours[0]["hour"], "2023-03-18T15");
    assert_eq!(status["totals"]["hours"], 1);
}

#[tokio::test]
async fn status_of_a_bucket_is_the_status_of_the_same_objects_in_a_folder() {
    // Given the same response processed into a bucket (moto) and into a folder
    let world = common::world::world(SynthOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let response = dir.path().join("r.json");
    let made = log_etl(
        &[
            "generate",
            "--records",
            "2000",
            "--start",
            "2023-03-18T14:55:00.000Z",
            "--bad-per-mille",
            "20",
            "--out",
            response.to_str().unwrap(),
        ],
        &[("FERNET_KEY", &world.key)],
    );
    assert!(made.status.success());
    let mut env = common::aws_env(&world.moto.endpoint());
    env.push(("FERNET_KEY", world.key.clone()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let folder = dir.path().join("out");
    for target in [["--bucket", BUCKET], ["--dir", folder.to_str().unwrap()]] {
        let args = [
            &["process", "--input", response.to_str().unwrap()][..],
            &target,
        ]
        .concat();
        let done = common::log_etl_async(&args, &env).await;
        assert!(
            done.status.success(),
            "{}",
            String::from_utf8_lossy(&done.stderr)
        );
    }
    // When the status of both is taken, reading every object
    let bucket = common::log_etl_async(&["status", "--bucket", BUCKET, "--records"], &env).await;
    assert!(
        bucket.status.success(),
        "{}",
        String::from_utf8_lossy(&bucket.stderr)
    );
    let bucket: Value = serde_json::from_slice(&bucket.stdout).unwrap();
    let folder = status_json(&["--dir", folder.to_str().unwrap(), "--records"], &[]);
    // Then they agree hour by hour (same keys, same bytes) and in the totals
    assert_eq!(bucket["hours"], folder["hours"]);
    assert_eq!(
        bucket["totals"]["records"],
        2000 - folder["totals"]["quarantine_lines"].as_u64().unwrap()
    );
    assert_eq!(bucket["totals"]["records"], folder["totals"]["records"]);
    assert_eq!(bucket["hours"].as_array().unwrap().len(), 2);
}
