//! Shared by the integration tests: the Python peers (reference implementations, moto) and
//! the project's binaries.
#![allow(dead_code)]

pub mod faulty_s3;
pub mod folder;
pub mod raw_http;
pub mod runtime_api;
pub mod world;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use flate2::read::GzDecoder;
use serde_json::{Map, Value};

/// The Python of the test virtual environment. Fails loudly when it is missing: these tests
/// check against real peers and must never pass without them.
pub fn python() -> PathBuf {
    let path = std::env::var_os("LOG_ETL_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    assert!(
        path.exists(),
        "Python test peers not found at {}: run scripts/python-env (scripts/test does) or set LOG_ETL_PYTHON",
        path.display()
    );
    path
}

/// Runs `tests/py/<script>` with `args`, feeding `stdin`; panics with its stderr if it fails.
pub fn run_python(script: &str, args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/py")
        .join(script);
    let mut child = Command::new(python())
        .arg(&script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", script.display()));
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Fails, showing what the process printed on stderr, unless it exited successfully.
pub fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "{}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs the `log-etl` binary built for this test run.
pub fn log_etl(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_log-etl"));
    cmd.args(args);
    // Only what the test sets: no key or setting leaks in from the caller's environment.
    for setting in log_etl::config::var::ALL {
        cmd.env_remove(setting.name);
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("log-etl runs")
}

/// Runs `log-etl generate` through `run` (which sets the key, and whatever else the test's
/// runs need): `records` records from `start` (and `extra` options), saved in `dir/<name>.json`
/// with their ground truth in `dir/<name>.truth`. Returns the response's path and the ground
/// truth, a JSON line a record.
pub fn generate_response(
    run: impl FnOnce(&[&str]) -> Output,
    dir: &std::path::Path,
    name: &str,
    records: u32,
    start: &str,
    extra: &[&str],
) -> (PathBuf, Vec<String>) {
    let (response, truth) = (
        dir.join(format!("{name}.json")),
        dir.join(format!("{name}.truth")),
    );
    let records = records.to_string();
    let mut args = vec![
        "generate",
        "--records",
        &records,
        "--start",
        start,
        "--out",
        response.to_str().unwrap(),
        "--truth",
        truth.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = run(&args);
    assert!(
        out.status.success(),
        "log-etl generate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let truth = std::fs::read_to_string(truth).unwrap();
    (response, truth.lines().map(str::to_owned).collect())
}

/// Waits at most 30 s (polling every 20 ms) for `child` to exit, killing it (and failing) if
/// it does not.
pub fn wait_bounded(child: &mut Child) -> ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the process did not exit within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Fails unless `err`'s message, its causes included, mentions `text`.
pub fn assert_mentions(err: &dyn std::error::Error, text: &str) {
    let chain = log_etl::logging::error_chain(err);
    assert!(chain.contains(text), "{text:?} not in: {chain}");
}

/// Fails unless `err` is typed `error_type` (as the runtime reports it) and mentions `text`.
pub fn assert_run_error(err: &log_etl::pipeline::RunError, error_type: &str, text: &str) {
    let chain = log_etl::logging::error_chain(err);
    assert_eq!(err.error_type(), error_type, "{chain}");
    assert_mentions(err, text);
}

/// A port nobody listens on right now (the test's server takes it next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A moto server (S3 and Secrets Manager over their real HTTP APIs) on a port of its own,
/// stopped when dropped.
pub struct Moto {
    child: std::process::Child,
    pub port: u16,
}

impl Moto {
    pub fn start() -> Self {
        let port = free_port();
        let child = Command::new(python())
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto starts (is moto[server] in the test environment?)");
        let moto = Self { child, port };
        // Bounded wait for the port to answer: 300 tries, 100 ms apart.
        for _ in 0..300 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return moto;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("moto did not listen on port {port} within 30 s");
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops the server now (a test of what happens when S3 is gone).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Environment for a child process that talks to the emulator.
pub fn aws_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint.to_owned()),
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
    ]
}

/// SDK configuration for the emulator, with static test credentials (nothing read from the
/// environment, so tests can run side by side).
pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    sdk_config_via(endpoint, None).await
}

/// As [`sdk_config`], with requests sent through `http` (to inject faults).
pub async fn sdk_config_via(
    endpoint: &str,
    http: Option<faulty_s3::FaultyS3>,
) -> aws_config::SdkConfig {
    let config = log_etl::config::Config::from_lookup(|name| {
        (name == "AWS_ENDPOINT_URL").then(|| endpoint.to_owned())
    })
    .unwrap();
    let loader = log_etl::aws::loader(&config)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test", "test", None, None, "tests",
        ));
    match http {
        Some(http) => loader.http_client(http).load().await,
        None => loader.load().await,
    }
}

/// The checked-in scheduled event (an EventBridge event: `template::schedule` checks its shape).
pub fn scheduled_event() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("events/scheduled-event.json");
    serde_json::from_slice(&std::fs::read(path).unwrap())
        .expect("events/scheduled-event.json is JSON")
}

/// [`log_etl`] from async tests, off the runtime's thread so in-process servers keep serving.
pub async fn log_etl_async(args: &[&str], env: &[(&str, &str)]) -> Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        log_etl(&args, &env)
    })
    .await
    .expect("the command's thread finishes")
}

/// The records of a gzip'd NDJSON object, each line parsed.
pub fn gunzip_lines(bytes: &[u8]) -> Vec<Map<String, Value>> {
    let mut text = String::new();
    GzDecoder::new(bytes).read_to_string(&mut text).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The records `log-etl restore PATH` prints, parsed.
pub fn restore_path(path: &std::path::Path) -> Vec<Map<String, Value>> {
    let out = log_etl(&["restore", path.to_str().unwrap()], &[]);
    assert_success(&out);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// [`log_etl`] with a time limit: the process is killed once `limit` has passed, and `None`
/// is returned. Its output goes to files, so a full pipe never stalls it.
pub async fn log_etl_within(
    args: &[&str],
    env: &[(&str, &str)],
    limit: std::time::Duration,
) -> Option<Output> {
    let (stdout, stderr) = (tempfile::tempfile().unwrap(), tempfile::tempfile().unwrap());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_log-etl"));
    cmd.args(args);
    for setting in log_etl::config::var::ALL {
        cmd.env_remove(setting.name);
    }
    cmd.envs(env.iter().copied())
        .stdout(stdout.try_clone().unwrap())
        .stderr(stderr.try_clone().unwrap());
    let mut child = cmd.spawn().expect("log-etl runs");
    let started = std::time::Instant::now();
    // Bounded: polled every 20 ms until `limit`.
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() >= limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let read = |mut file: std::fs::File| {
        use std::io::Seek;
        let mut bytes = Vec::new();
        file.rewind().unwrap();
        file.read_to_end(&mut bytes).unwrap();
        bytes
    };
    Some(Output {
        status: status?,
        stdout: read(stdout),
        stderr: read(stderr),
    })
}
