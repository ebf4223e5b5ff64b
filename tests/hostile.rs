//! Hostile peers: a source that redirects (to another origin, on its own origin, in a long
//! chain) never gets the source URL's credential sent anywhere else; S3 and Secrets Manager
//! endpoints that accept connections and never answer fail every command, and the Lambda,
//! with a typed error in bounded time.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common;
use crate::common::raw_http::{self, RecordingServer, StalledServer};
use crate::common::runtime_api::RuntimeApi;
use crate::common::world::{self, BUCKET};
use log_etl::local::simulator::Simulator;
use log_etl::local::synth::SynthOptions;
use log_etl::record::fernet::{KeyRing, generate_key};
use log_etl::source::MAX_REDIRECTS;
use serde_json::Value;

/// The parts of the credential the source URL carries; none may appear outside the source.
const CREDENTIAL_PARTS: [&str; 3] = ["leakyuser", "hunter2pass", "sk_live_9f8e7d"];

/// The source URL on `origin`, with the credential in its user info and its query.
fn source_url(origin: &str) -> String {
    let (user, password, key) = (
        CREDENTIAL_PARTS[0],
        CREDENTIAL_PARTS[1],
        CREDENTIAL_PARTS[2],
    );
    let host = origin.trim_start_matches("http://");
    format!("http://{user}:{password}@{host}/log?api_key={key}")
}

fn assert_no_credential(what: &str, text: &str) {
    for part in CREDENTIAL_PARTS {
        assert!(!text.contains(part), "{what} holds {part:?}:\n{text}");
    }
}

/// A saved response of `records` records, encrypted with a new key; returns the key and body.
fn response_body(records: u32) -> (String, Vec<u8>) {
    let key = generate_key();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("response.json");
    let n = records.to_string();
    let out = common::log_etl(
        &["generate", "--records", &n, "--out", path.to_str().unwrap()],
        &[("FERNET_KEY", &key)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (key, std::fs::read(path).unwrap())
}

/// `log-etl run --out-dir` a fresh folder against `url`, logging at the most verbose level
/// (killed after a minute).
async fn run_pass(url: &str, key: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    common::log_etl_within(
        &["run", "--out-dir", out_dir.to_str().unwrap()],
        &[
            ("LOG_API_URL", url),
            ("FERNET_KEY", key),
            ("RUST_LOG", "trace"),
        ],
        Duration::from_secs(60),
    )
    .await
    .expect("the pass ends within a minute")
}

#[tokio::test]
async fn a_redirect_to_another_origin_is_refused_and_the_credential_stays_with_the_source() {
    // Given a target on another port that records every request it gets
    let target = RecordingServer::start(|_| raw_http::json(b"[]")).await;
    let landing = format!("{}/landing", target.origin());
    // and a source that answers every request with a 302 there, passing the credential on
    let location = format!("{landing}?api_key={}", CREDENTIAL_PARTS[2]);
    let source = RecordingServer::start(move |_| raw_http::redirect(&location)).await;
    let (key, _) = response_body(1);
    // When a pass reads the source through a URL carrying a credential
    let started = Instant::now();
    let out = run_pass(&source_url(&source.origin()), &key).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Then the run fails with the typed error naming both ends of the redirect
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: fetching the batch failed: "),
        "{stderr}"
    );
    let expected = format!(
        "GET {o}/log was redirected from {o}/log to {landing}, which is refused: \
         it leads to another origin",
        o = source.origin()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    // without a retry (one request to the source, well before the retries' backoff would end)
    assert_eq!(source.requests().len(), 1, "{:?}", source.requests());
    assert!(started.elapsed() < Duration::from_secs(20));
    // and no part of the credential is in the error, the logs or the summary
    assert_no_credential("stderr", &stderr);
    assert_no_credential("stdout", &String::from_utf8_lossy(&out.stdout));
    // and the target saw nothing of it: no request at all
    let seen = target.requests();
    assert_no_credential("the target's requests", &seen.join("\n"));
    assert!(seen.is_empty(), "the target was called: {seen:?}");
}

#[tokio::test]
async fn a_redirect_on_the_source_origin_is_followed_without_a_referer() {
    // Given a source that moves its log to /v2 on the same origin
    let (key, body) = response_body(5);
    let source = RecordingServer::start(move |target| {
        if target.starts_with("/v2") {
            raw_http::json(&body)
        } else {
            raw_http::redirect("/v2/log")
        }
    })
    .await;
    // When a pass reads it through a URL carrying a credential
    let out = run_pass(&source_url(&source.origin()), &key).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Then the redirect is followed and the records land
    assert!(out.status.success(), "{stderr}");
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["records_landed"], 5, "{summary}");
    // and neither request carries a Referer, nor the second the query's credential
    let requests = source.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert!(
        requests[1].starts_with("GET /v2/log HTTP/1.1\r\n"),
        "{requests:?}"
    );
    for request in &requests {
        assert!(
            !request.to_ascii_lowercase().contains("\r\nreferer:"),
            "{request}"
        );
    }
    assert_no_credential("the redirected request", &requests[1]);
    assert_no_credential("stderr", &stderr);
}

#[tokio::test]
async fn a_redirect_chain_longer_than_the_limit_is_refused() {
    // Given a source that redirects every request to the next hop on its own origin
    let source = RecordingServer::start(|target| {
        let hop: usize = target
            .strip_prefix("/hop")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        raw_http::redirect(&format!("/hop{}", hop + 1))
    })
    .await;
    let (key, _) = response_body(1);
    // When a pass reads it
    let out = run_pass(&source_url(&source.origin()), &key).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Then the hop over the limit is refused, typed, and not retried
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let expected = format!(
        "redirected from {o}/hop{MAX_REDIRECTS} to {o}/hop{}, which is refused: redirect {} is \
         over the limit of {MAX_REDIRECTS}",
        MAX_REDIRECTS + 1,
        MAX_REDIRECTS + 1,
        o = source.origin()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert_eq!(source.requests().len(), MAX_REDIRECTS + 1);
    assert_no_credential("stderr", &stderr);
}

/// The AWS timeouts the stalled-endpoint tests set, small so they end quickly.
const SMALL_TIMEOUTS: [(&str, &str); 4] = [
    ("AWS_CONNECT_TIMEOUT_MS", "500"),
    ("AWS_ATTEMPT_TIMEOUT_MS", "1000"),
    ("AWS_OPERATION_TIMEOUT_MS", "2500"),
    ("PUT_MAX_ATTEMPTS", "2"),
];

/// Every command against a stalled endpoint must end within this (the operation timeout,
/// the process's start and a margin); without timeouts it would never end.
const STALL_BOUND: Duration = Duration::from_secs(15);

/// The environment of a command whose AWS calls go to `stalled`: static test credentials
/// (nothing to look up), the small timeouts, and `extra`.
fn stalled_env(stalled: &StalledServer, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = common::aws_env(&stalled.endpoint())
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    env.extend(
        SMALL_TIMEOUTS
            .iter()
            .chain(extra)
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    env
}

/// Runs `log-etl args` in `env`, killing it after twice [`STALL_BOUND`]; returns its exit
/// code, its stderr and how long it took.
async fn timed(args: &[&str], env: &[(String, String)]) -> (Option<i32>, String, Duration) {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let started = Instant::now();
    let out = common::log_etl_within(args, &env, 2 * STALL_BOUND).await;
    let took = started.elapsed();
    let out = out.unwrap_or_else(|| panic!("log-etl {args:?} still ran after {took:?}"));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        took,
    )
}

/// The simulator, serving batches encrypted with `key`.
async fn simulator(key: &str) -> Simulator {
    Simulator::start(
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        KeyRing::parse(key).unwrap(),
        world::source(SynthOptions::default()),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn every_command_fails_typed_and_in_bounded_time_when_s3_never_answers() {
    // Given an S3 endpoint that accepts connections and never answers, and a source
    let stalled = StalledServer::start().await;
    let key = generate_key();
    let sim = simulator(&key).await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("response.json");
    let (saved_key, body) = response_body(20);
    std::fs::write(&input, body).unwrap();
    let bucket_url = format!("s3://{BUCKET}");
    let input = input.to_str().unwrap();
    let url = sim.url();
    // (command, its arguments, its settings, the start of its typed error)
    type Case<'a> = (&'a str, Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: [Case; 7] = [
        (
            "run",
            vec!["run"],
            vec![
                ("LOG_API_URL", &url),
                ("BUCKET_NAME", BUCKET),
                ("FERNET_KEY", &key),
            ],
            "error: writing objects failed: ",
        ),
        (
            "process --bucket",
            vec!["process", "--input", input, "--bucket", BUCKET],
            vec![("FERNET_KEY", &saved_key)],
            "error: writing objects failed: ",
        ),
        (
            "compact --bucket",
            vec!["compact", "--bucket", BUCKET],
            vec![],
            "error: compaction failed: ",
        ),
        (
            "restore s3://",
            vec!["restore", &bucket_url],
            vec![],
            "error: restore failed: ",
        ),
        (
            "replay --bucket",
            vec!["replay", "--bucket", BUCKET],
            vec![("FERNET_KEY", &key)],
            "error: writing objects failed: ListObjectsV2 ",
        ),
        (
            "backfill --bucket",
            vec!["backfill", "--prefix", "saved/", "--bucket", BUCKET],
            vec![("FERNET_KEY", &saved_key)],
            "error: backfill: listing the saved responses under ",
        ),
        (
            "status --bucket",
            vec!["status", "--bucket", BUCKET],
            vec![],
            "error: status: listing the objects failed: ",
        ),
    ];
    for (name, args, extra, typed) in cases {
        // When the command runs against it
        let (code, stderr, took) = timed(&args, &stalled_env(&stalled, &extra)).await;
        // Then it fails with the typed one-line error, naming the call and the bucket
        assert_eq!(code, Some(1), "{name}: {stderr}");
        assert!(stderr.contains(typed), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("s3://{BUCKET}/")),
            "{name}: {stderr}"
        );
        assert!(
            stderr.to_ascii_lowercase().contains("timeout"),
            "{name}: {stderr}"
        );
        // within the bound
        assert!(took < STALL_BOUND, "{name} took {took:?}");
    }
    // and the calls did reach the stalled endpoint
    assert!(
        stalled.accepted() >= 7,
        "{} connections",
        stalled.accepted()
    );
    sim.stop().await;
}

#[tokio::test]
async fn a_pass_fails_typed_and_in_bounded_time_when_secrets_manager_never_answers() {
    // Given Secrets Manager (and S3) at an endpoint that accepts connections and never answers
    let stalled = StalledServer::start().await;
    let sim = simulator(&generate_key()).await;
    let url = sim.url();
    let env = stalled_env(
        &stalled,
        &[
            ("LOG_API_URL", &url),
            ("BUCKET_NAME", BUCKET),
            ("FERNET_SECRET_ID", "log-etl/fernet-key"),
        ],
    );
    // When a pass runs
    let (code, stderr, took) = timed(&["run"], &env).await;
    // Then it fails with the typed error, naming the call, the secret and the endpoint
    assert_eq!(code, Some(1), "{stderr}");
    let expected = format!(
        "error: the Fernet key could not be read: GetSecretValue of secret log-etl/fernet-key \
         at {}/ failed: ",
        stalled.endpoint()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(stderr.to_ascii_lowercase().contains("timeout"), "{stderr}");
    // within the bound, having called the endpoint
    assert!(took < STALL_BOUND, "took {took:?}");
    assert!(stalled.accepted() >= 1);
    sim.stop().await;
}

/// A child process, killed and reaped when dropped.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_lambda_reports_a_stalled_s3_or_secrets_manager_before_its_deadline() {
    // Given S3 and Secrets Manager at an endpoint that accepts connections and never answers
    let stalled = StalledServer::start().await;
    let key = generate_key();
    let sim = simulator(&key).await;
    for (error_type, call, key_setting) in [
        (
            "StoreError",
            "ListObjectsV2 s3://",
            ("FERNET_KEY", key.as_str()),
        ),
        (
            "SecretError",
            "GetSecretValue of secret log-etl/fernet-key",
            ("FERNET_SECRET_ID", "log-etl/fernet-key"),
        ),
    ] {
        // and a runtime API handing out one event due in 20 s
        let runtime = RuntimeApi::start("{}", Duration::from_secs(20)).await;
        let log = tempfile::NamedTempFile::new().unwrap();
        // When the function starts and takes the event
        let function = Reaped(
            Command::new(env!("CARGO_BIN_EXE_log-etl-lambda"))
                .env_clear()
                .env("AWS_LAMBDA_RUNTIME_API", runtime.addr.to_string())
                .env("AWS_LAMBDA_FUNCTION_NAME", "log-etl-test")
                .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
                .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
                .env("LOG_API_URL", sim.url())
                .env("BUCKET_NAME", BUCKET)
                .env(key_setting.0, key_setting.1)
                .envs(stalled_env(&stalled, &[]))
                .stdout(Stdio::null())
                .stderr(log.reopen().unwrap())
                .spawn()
                .expect("log-etl-lambda starts"),
        );
        let answer = runtime.first_answer(Duration::from_secs(30)).await;
        drop(function);
        let logged = std::fs::read_to_string(log.path()).unwrap();
        // Then it reports the typed error to the runtime's error endpoint, before the deadline
        let answer = answer.unwrap_or_else(|| panic!("no answer from the function:\n{logged}"));
        assert_eq!(answer.kind, "error", "{:?}\n{logged}", answer.body);
        assert_eq!(answer.body["errorType"], error_type, "{:?}", answer.body);
        let message = answer.body["errorMessage"].as_str().unwrap_or_default();
        assert!(message.contains(call), "{message}");
        assert!(
            answer.at < runtime.deadline,
            "answered {:?} after the deadline",
            answer.at - runtime.deadline
        );
    }
    sim.stop().await;
}

#[tokio::test]
async fn a_pass_whose_writes_outlast_its_deadline_ends_typed_before_it() {
    // Given a source with a batch, and an S3 endpoint that never answers, with AWS timeouts far
    // longer than the pass may take
    let stalled = StalledServer::start().await;
    let key = log_etl::record::fernet::generate_key();
    let sim = simulator(&key).await;
    let url = sim.url();
    let endpoint = stalled.endpoint();
    let settings = [
        ("LOG_API_URL", url.as_str()),
        ("BUCKET_NAME", "logs"),
        ("FERNET_KEY", key.as_str()),
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ATTEMPT_TIMEOUT_MS", "600000"),
        ("AWS_OPERATION_TIMEOUT_MS", "600000"),
    ];
    let config = log_etl::config::Config::from_lookup(|name| {
        settings
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| (*v).to_owned())
    })
    .unwrap();
    let sdk = log_etl::aws::loader(&config)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .load()
        .await;
    let store = log_etl::store::Store::bucket(&sdk, &config).unwrap();
    let pipeline = log_etl::pipeline::Pipeline::new(&config, store, Some(&sdk)).unwrap();
    // When a pass runs with 3 s to its deadline
    let started = Instant::now();
    let deadline = started + Duration::from_secs(3);
    let err = tokio::time::timeout(
        Duration::from_secs(20),
        pipeline.run_pass(chrono::Utc::now(), deadline),
    )
    .await
    .expect("the pass ends by itself")
    .unwrap_err();
    // Then it fails as a store error at its deadline, saying what happens next
    let took = started.elapsed();
    assert_eq!(err.error_type(), "StoreError");
    let text = log_etl::logging::error_chain(&err);
    assert!(
        text.contains("deadline came before its writes ended"),
        "{text}"
    );
    assert!(took < Duration::from_millis(3500), "{took:?}");
    assert!(stalled.accepted() > 0, "the pass never reached S3");
    sim.stop().await;
}
