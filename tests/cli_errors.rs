//! The command line's errors: every command's usage errors, bad input and failures with their
//! exit codes and the first words of their one line; a pass in which no record verifies under
//! the key (exit 3); AWS errors in one short line; and inputs as people have them (standard
//! input, a gzip'd response).

use std::fs;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use flate2::Compression;
use flate2::write::GzEncoder;
use log_etl::local::simulator::Simulator;
use log_etl::local::synth::SynthOptions;
use log_etl::record::fernet::{KeyRing, generate_key};
use serde_json::Value;

use crate::common::{self, log_etl, log_etl_async, world::world};

/// The one error line of a run (`log-etl: error: …`), or clap's (`error: …`), checked to be
/// the only one.
fn error_line(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("log-etl: error:") || l.starts_with("error:"))
        .collect();
    assert_eq!(lines.len(), 1, "one error line expected in:\n{stderr}");
    lines[0].to_owned()
}

/// A saved response of `records` records under `key`, at `path`.
fn generate(path: &Path, records: u32, key: &str) {
    let n = records.to_string();
    let out = log_etl(
        &["generate", "--records", &n, "--out", path.to_str().unwrap()],
        &[("FERNET_KEY", key)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `log-etl` with `stdin` as its standard input, and only the settings `env` gives.
fn log_etl_with_stdin(args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_log-etl"));
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for setting in log_etl::config::var::ALL {
        cmd.env_remove(setting.name);
    }
    cmd.envs(env.iter().copied());
    let mut child = cmd.spawn().expect("log-etl starts");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().expect("log-etl ends")
}

/// A message for people, not a type name: `KeyError: …`, `StoreError: …` are for CloudWatch.
fn starts_with_a_type_name(message: &str) -> bool {
    let first = message
        .trim_start_matches("log-etl: error: ")
        .split(':')
        .next()
        .unwrap_or("");
    first.ends_with("Error") && !first.contains(' ')
}

#[test]
fn every_command_says_what_failed_on_one_line_with_its_exit_code() {
    // Given a folder with a saved response, a file that is not one, an empty folder, an
    // existing file and a port that is taken
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let key = generate_key();
    generate(Path::new(&at("response.json")), 10, &key);
    fs::write(at("not-json.json"), "this is not JSON").unwrap();
    fs::write(at("not-gzip.ndjson"), "{\"a\": 1}\n").unwrap();
    fs::write(at("existing.key"), "kept").unwrap();
    fs::create_dir(at("empty")).unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port().to_string();
    let closed = format!("http://127.0.0.1:{}/api/data/log", common::free_port());
    let (response, out_dir) = (at("response.json"), at("out"));
    let (not_json, not_gzip) = (at("not-json.json"), at("not-gzip.ndjson"));
    let (empty, existing) = (at("empty"), at("existing.key"));
    let key_env = [("FERNET_KEY", key.as_str())];
    struct Case<'a> {
        args: Vec<&'a str>,
        env: Vec<(&'a str, &'a str)>,
        code: i32,
        first_words: String,
    }
    let case = |args: &[&'static str], code: i32, first_words: &str| Case {
        args: args.to_vec(),
        env: vec![],
        code,
        first_words: first_words.to_owned(),
    };
    let cases = vec![
        // usage errors (clap's own line)
        case(
            &["demo", "--passes", "0"],
            2,
            "error: invalid value '0' for '--passes",
        ),
        case(
            &["process", "--input", "x.json"],
            2,
            "error: the following required arguments",
        ),
        Case {
            args: vec!["simulate", "--batch-size", "0"],
            env: key_env.to_vec(),
            code: 2,
            first_words: "log-etl: error: --batch-size, --window and --step".into(),
        },
        Case {
            args: vec!["process", "--input", &response, "--out-dir", &out_dir],
            env: vec![],
            code: 2,
            first_words: "log-etl: error: no Fernet key: pass --key-file FILE or set FERNET_KEY"
                .into(),
        },
        Case {
            args: vec!["settings"],
            env: vec![("GZIP_LEVEL", "12")],
            code: 2,
            first_words: "log-etl: error: a setting is invalid: GZIP_LEVEL".into(),
        },
        Case {
            args: vec!["run", "--out-dir", &out_dir],
            env: key_env.to_vec(),
            code: 2,
            first_words: "log-etl: error: configuration is invalid: LOG_API_URL is not set".into(),
        },
        // bad input
        Case {
            args: vec!["process", "--input", "missing.json", "--out-dir", &out_dir],
            env: key_env.to_vec(),
            code: 2,
            first_words: "log-etl: error: cannot read missing.json".into(),
        },
        Case {
            args: vec!["process", "--input", &not_json, "--out-dir", &out_dir],
            env: key_env.to_vec(),
            code: 2,
            first_words: format!("log-etl: error: {} is not a usable API response", not_json),
        },
        Case {
            args: vec![
                "process",
                "--input",
                &response,
                "--out-dir",
                &out_dir,
                "--key",
                "short",
            ],
            env: vec![],
            code: 2,
            first_words: "log-etl: error: the Fernet key is unusable".into(),
        },
        case(
            &["restore", "no-such-file"],
            2,
            "log-etl: error: cannot read no-such-file: no such file",
        ),
        Case {
            args: vec!["restore", &not_gzip],
            env: vec![],
            code: 2,
            first_words: format!("log-etl: error: cannot restore {}", not_gzip),
        },
        Case {
            args: vec!["restore", &empty],
            env: vec![],
            code: 2,
            first_words: format!(
                "log-etl: error: nothing to restore: {} holds no records",
                empty
            ),
        },
        Case {
            args: vec!["keygen", "--out", &existing],
            env: vec![],
            code: 2,
            first_words: format!("log-etl: error: {} exists and is left alone", existing),
        },
        Case {
            args: vec!["compact", "--dir", &response],
            env: vec![],
            code: 2,
            first_words: format!("log-etl: error: {response} is not a folder"),
        },
        // runtime failures
        Case {
            args: vec!["run", "--out-dir", &out_dir],
            env: vec![
                ("FERNET_KEY", key.as_str()),
                ("LOG_API_URL", closed.as_str()),
                ("FETCH_MAX_ATTEMPTS", "1"),
            ],
            code: 1,
            first_words: "log-etl: error: fetching the batch failed".into(),
        },
        Case {
            args: vec!["generate", "--out", "/nonexistent-folder/r.json"],
            env: key_env.to_vec(),
            code: 1,
            first_words: "log-etl: error: writing the response failed".into(),
        },
        Case {
            args: vec!["simulate", "--port", &taken_port],
            env: key_env.to_vec(),
            code: 1,
            first_words: format!("log-etl: error: cannot serve on 127.0.0.1:{taken_port}"),
        },
    ];
    for case in cases {
        // When the command runs
        let out = log_etl(&case.args, &case.env);
        // Then it exits with the documented code and one line that starts as expected, in words
        let line = error_line(&out);
        assert_eq!(
            out.status.code(),
            Some(case.code),
            "{:?}: {line}",
            case.args
        );
        assert!(
            line.starts_with(&case.first_words),
            "{:?}: {line:?} does not start with {:?}",
            case.args,
            case.first_words
        );
        assert!(!starts_with_a_type_name(&line), "{line}");
        assert!(!line.contains(&key), "{:?} printed the key", case.args);
    }
    // and the existing key file is left as it was
    assert_eq!(fs::read_to_string(at("existing.key")).unwrap(), "kept");
    drop(taken);
}

#[test]
fn a_saved_response_no_record_of_which_verifies_exits_3_naming_the_key_and_quarantines_all() {
    // Given a saved response made under one key
    let dir = tempfile::tempdir().unwrap();
    let response = dir.path().join("response.json");
    generate(&response, 20, &generate_key());
    let out_dir = dir.path().join("out");
    // When it is processed with another key
    let out = log_etl(
        &[
            "process",
            "--input",
            response.to_str().unwrap(),
            "--out-dir",
            out_dir.to_str().unwrap(),
        ],
        &[("FERNET_KEY", &generate_key())],
    );
    // Then the command exits 3 naming the likely cause and where the key came from
    let line = error_line(&out);
    assert_eq!(out.status.code(), Some(3), "{line}");
    assert!(
        line.starts_with("log-etl: error: no record verified under the Fernet key(s)"),
        "{line}"
    );
    assert!(line.contains("wrong or was rotated"), "{line}");
    assert!(
        line.contains("--key-file") && line.contains("FERNET_KEY"),
        "{line}"
    );
    // and the summary is printed, every record in quarantine
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["records_undecryptable"], 20);
    assert_eq!(summary["no_record_verified"], true);
    assert_eq!(summary["records_quarantined"], 20);
    assert_eq!(summary["records_landed"], 0);
    assert!(out_dir.join("quarantine").is_dir());
}

#[tokio::test]
async fn a_pass_no_record_of_which_verifies_exits_3_naming_the_key() {
    // Given a log API serving records under one key
    let sim = Simulator::start(
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        KeyRing::parse(&generate_key()).unwrap(),
        common::world::source(SynthOptions::default()),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    // When a pass runs with another key
    let (url, key) = (sim.url(), generate_key());
    let out = log_etl_async(
        &["run", "--out-dir", out_dir.to_str().unwrap()],
        &[("LOG_API_URL", &url), ("FERNET_KEY", &key)],
    )
    .await;
    sim.stop().await;
    // Then it exits 3, naming the key's sources, with every record in quarantine
    let line = error_line(&out);
    assert_eq!(out.status.code(), Some(3), "{line}");
    assert!(
        line.contains("FERNET_KEY") && line.contains("FERNET_SECRET_ID"),
        "{line}"
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["records_quarantined"], 100);
    assert_eq!(summary["no_record_verified"], true);
}

#[test]
fn a_gzipd_response_and_standard_input_are_processed_as_the_file_is() {
    // Given a saved response, the same gzip'd
    let dir = tempfile::tempdir().unwrap();
    let key = generate_key();
    let response = dir.path().join("response.json");
    generate(&response, 30, &key);
    let json = fs::read(&response).unwrap();
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(&json).unwrap();
    let gzipped = dir.path().join("response.json.gz");
    fs::write(&gzipped, gz.finish().unwrap()).unwrap();
    let landed = |out: &Output| -> Value {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["records_landed"].clone()
    };
    let out_dir = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let env = [("FERNET_KEY", key.as_str())];
    // When each is processed: the file, the gzip'd file, and the file on standard input
    let plain = log_etl(
        &[
            "process",
            "--input",
            response.to_str().unwrap(),
            "--out-dir",
            &out_dir("a"),
        ],
        &env,
    );
    let from_gzip = log_etl(
        &[
            "process",
            "--input",
            gzipped.to_str().unwrap(),
            "--out-dir",
            &out_dir("b"),
        ],
        &env,
    );
    let from_stdin = log_etl_with_stdin(
        &["process", "--input", "-", "--out-dir", &out_dir("c")],
        &env,
        &json,
    );
    // Then every record lands each time, and the objects restore to the same records
    assert_eq!(landed(&plain), 30);
    assert_eq!(landed(&from_gzip), 30);
    assert_eq!(landed(&from_stdin), 30);
    let restored = |name: &str| common::restore_path(&dir.path().join(name));
    assert_eq!(restored("a"), restored("b"));
    assert_eq!(restored("a"), restored("c"));
}

#[test]
fn settings_shows_each_value_but_never_a_key_or_a_credential_in_a_url() {
    // Given an environment with a key, a URL holding credentials and a gzip level
    let key = generate_key();
    let env = [
        ("FERNET_KEY", key.as_str()),
        (
            "LOG_API_URL",
            "https://user:hunter2@logs.example/api/data/log?token=s3cr3t",
        ),
        ("GZIP_LEVEL", "9"),
    ];
    // When the settings are listed
    let out = log_etl(&["settings"], &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let line = |name: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no line for {name}"))
            .to_owned()
    };
    // Then each value is shown, the key only as set and the URL without its credentials
    assert!(line("GZIP_LEVEL").contains("= 9"), "{}", line("GZIP_LEVEL"));
    assert!(
        line("FERNET_KEY").contains("(set)"),
        "{}",
        line("FERNET_KEY")
    );
    assert!(line("LOG_API_URL").contains("= https://logs.example/api/data/log"));
    assert!(line("BUCKET_NAME").contains("(not set)"));
    for secret in [key.as_str(), "hunter2", "s3cr3t", "user:"] {
        assert!(!text.contains(secret), "{secret} printed");
    }
}

#[tokio::test]
async fn a_missing_bucket_is_one_short_line_naming_nosuchbucket_the_bucket_and_the_endpoint() {
    // Given S3 (moto) without the bucket asked for, and a source serving records
    let world = world(SynthOptions::default()).await;
    let endpoint = world.moto.endpoint();
    let mut env = common::aws_env(&endpoint);
    env.extend([
        ("LOG_API_URL", world.sim.url()),
        ("BUCKET_NAME", "nope-bucket".to_owned()),
        ("FERNET_KEY", world.key.clone()),
        ("PUT_MAX_ATTEMPTS", "1".to_owned()),
    ]);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // When a pass runs into it, and a restore reads it
    let run = log_etl_async(&["run"], &env).await;
    let restore = log_etl_async(&["restore", "s3://nope-bucket/data"], &env).await;
    // Then each fails with one line under 300 characters naming the code, bucket and endpoint
    for out in [run, restore] {
        let line = error_line(&out);
        assert_eq!(out.status.code(), Some(1), "{line}");
        assert!(line.len() < 300, "{} characters: {line}", line.len());
        for needed in [
            "NoSuchBucket",
            "s3://nope-bucket/",
            &endpoint,
            "region us-east-1",
        ] {
            assert!(line.contains(needed), "{needed} missing from {line}");
        }
        assert!(!starts_with_a_type_name(&line), "{line}");
    }
}

#[tokio::test]
async fn an_unreachable_s3_endpoint_is_one_short_line_naming_it() {
    // Given an endpoint on a closed local port
    let endpoint = format!("http://127.0.0.1:{}", common::free_port());
    let mut env = common::aws_env(&endpoint);
    env.extend([
        ("PUT_MAX_ATTEMPTS", "1".to_owned()),
        ("AWS_CONNECT_TIMEOUT_MS", "500".to_owned()),
    ]);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // When a restore reads a bucket there
    let out = log_etl_async(&["restore", "s3://some-bucket/data"], &env).await;
    // Then it fails with one short line saying the endpoint could not be reached, and which
    let line = error_line(&out);
    assert_eq!(out.status.code(), Some(1), "{line}");
    assert!(line.len() < 300, "{} characters: {line}", line.len());
    for needed in ["could not be reached", "s3://some-bucket/", &endpoint] {
        assert!(line.contains(needed), "{needed} missing from {line}");
    }
}
