//! The `log-etl-lambda` binary itself, served a scheduled event through a local stand-in for
//! the Lambda Runtime API (its `next`, `response` and `error` routes), against moto and the
//! simulator; and the `log-etl` command against the same peers.

use crate::common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::runtime_api::{RuntimeApi, function_env};
use common::world::{BUCKET, World, bad_tokens, world};
use log_etl::local::synth::SynthOptions;
use serde_json::Value;

/// The Lambda binary with the environment Lambda gives it, killed when dropped. Its output is
/// drained as it comes, so verbose logging never blocks it on a full pipe.
struct Function {
    child: Child,
    stdout: Option<std::thread::JoinHandle<String>>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

fn drain(mut pipe: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

impl Function {
    /// `env` is set last, over the defaults.
    fn start(
        world: &World,
        runtime: std::net::SocketAddr,
        secret_id: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_log-etl-lambda"));
        cmd.env_clear()
            .envs(function_env(runtime))
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
            // The most verbose level, every crate included.
            .env("RUST_LOG", "trace")
            .env("LOG_API_URL", world.sim.url())
            .env("BUCKET_NAME", BUCKET)
            .env("FERNET_SECRET_ID", secret_id)
            .envs(common::aws_env(&world.moto.endpoint()))
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("log-etl-lambda starts");
        let stdout = child.stdout.take().map(drain);
        let stderr = child.stderr.take().map(drain);
        Self {
            child,
            stdout,
            stderr,
        }
    }

    /// Stops the function and returns what it printed (stdout, stderr).
    fn finish(mut self) -> (String, String) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let join = |h: Option<std::thread::JoinHandle<String>>| {
            h.map(|h| h.join().unwrap()).unwrap_or_default()
        };
        (join(self.stdout.take()), join(self.stderr.take()))
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long a test waits for the function's answers.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);

/// The runtime stand-in holding `event`, due in 60 s.
async fn runtime_api(event: &str) -> RuntimeApi {
    RuntimeApi::start(event, Duration::from_secs(60)).await
}

/// The function's answer to the first event: `(request id, "response" or "error", body)`.
async fn first_answer(runtime: &RuntimeApi) -> (String, String, Value) {
    let answer = runtime.answers(1, ANSWER_WITHIN).await.remove(0);
    (answer.id, answer.kind, answer.body)
}

fn event_text() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/events/scheduled-event.json"
    ))
    .unwrap()
}

#[tokio::test]
async fn the_binary_answers_a_scheduled_event_through_the_runtime_api() {
    // Given moto, the simulator and a runtime API holding the checked-in scheduled event
    let world = world(bad_tokens(50)).await;
    let runtime = runtime_api(&event_text()).await;
    // When the Lambda binary starts and polls for work
    let function = Function::start(&world, runtime.addr, &world.secret_arn, &[]);
    let (id, kind, summary) = first_answer(&runtime).await;
    let (stdout, stderr) = function.finish();
    // Then it answers the event with its summary
    assert_eq!(
        (id.as_str(), kind.as_str()),
        ("req-1", "response"),
        "{summary}\n{stderr}"
    );
    assert_eq!(summary["records_in"], 100);
    let truth = world.sim.ground_truth();
    assert_eq!(summary["records_quarantined"], truth.undecryptable);
    // and the records are in the bucket
    world.assert_holds_what_was_served(BUCKET).await;
    // and it printed one EMF document on stdout, with every figure of the run beside its
    // metrics, and a JSON line in its logs saying the pass is complete
    let emf: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("_aws").is_some())
        .collect();
    assert_eq!(emf.len(), 1, "{stdout}");
    assert_eq!(emf[0]["RecordsFetched"], 100);
    assert_eq!(emf[0]["FunctionName"], "log-etl-test");
    let summary_lines: Vec<Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "pass complete")
        .collect();
    assert_eq!(summary_lines.len(), 1, "{stderr}");
    assert_eq!(emf[0]["records_in"], 100);
    assert!(emf[0]["lists"].as_u64().unwrap() >= 1, "{}", emf[0]);
    // and, with every crate logging at trace level, no key, token or decrypted payload appears
    // in anything it printed
    assert!(
        stderr.contains("\"level\":\"TRACE\""),
        "trace logging was not on"
    );
    assert_nothing_secret_in(&world, &format!("{stdout}\n{stderr}")).await;
}

/// No key, no token (its IV and ciphertext) and no decrypted value served appears in `printed`.
async fn assert_nothing_secret_in(world: &World, printed: &str) {
    assert!(!printed.contains(&world.key));
    let tokens = tokens_served(world).await;
    assert!(!tokens.is_empty());
    for token in tokens {
        assert!(!printed.contains(&token[12..60]));
    }
    let truth = world.sim.ground_truth();
    assert!(!truth.records.is_empty());
    for record in &truth.records {
        if let Some(Value::String(user_id)) = record.get("user_id") {
            assert!(!printed.contains(user_id.as_str()));
        }
    }
    assert!(
        !printed.contains("json_logger"),
        "a plaintext field value was printed"
    );
}

#[tokio::test]
async fn a_pass_failing_after_decryption_prints_no_secret_at_trace_level() {
    // Given a bucket that does not exist, so the pass fails after the batch was decrypted
    let world = world(bad_tokens(50)).await;
    let runtime = runtime_api(&event_text()).await;
    let function = Function::start(
        &world,
        runtime.addr,
        &world.secret_arn,
        &[("BUCKET_NAME", "no-such-bucket")],
    );
    let (_, kind, error) = first_answer(&runtime).await;
    let (stdout, stderr) = function.finish();
    // Then it reports the store's failure
    assert_eq!(kind, "error", "{stderr}");
    assert_eq!(error["errorType"], "StoreError", "{error}");
    assert_eq!(world.sim.requests(), 1);
    // and neither its logs nor its error name a key, a token or a decrypted value
    assert!(stderr.contains("\"level\":\"TRACE\""));
    assert_nothing_secret_in(&world, &format!("{stdout}\n{stderr}\n{error}")).await;
}

#[tokio::test]
async fn a_failing_pass_is_reported_to_the_runtime_with_its_stage() {
    let world = world(SynthOptions::default()).await;
    let runtime = runtime_api(&event_text()).await;
    let function = Function::start(&world, runtime.addr, "log-etl/missing", &[]);
    let (_, kind, error) = first_answer(&runtime).await;
    let (_, stderr) = function.finish();
    assert_eq!(kind, "error", "{stderr}");
    assert_eq!(error["errorType"], "SecretError");
    assert!(
        error["errorMessage"]
            .as_str()
            .unwrap()
            .contains("log-etl/missing")
    );
    assert!(world.objects(BUCKET).await.is_empty());
}

/// The events a function may be invoked with: the template's Scheduler input (as Scheduler fills
/// it in), Scheduler's own default event (its `detail` a string), an EventBridge rule's event,
/// a manual invoke's `{}`, and `null`.
fn invocation_events() -> Vec<(&'static str, String)> {
    let template: serde_norway::Value = serde_norway::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/template.yaml")).unwrap(),
    )
    .unwrap();
    let input = &template["Resources"]["LogEtlFunction"]["Properties"]["Events"]["Schedule"]["Properties"]
        ["Input"];
    let serde_norway::Value::Tagged(sub) = input else {
        panic!("the schedule's Input is a !Sub: {input:?}")
    };
    let scheduler_input = sub
        .value
        .as_str()
        .expect("a !Sub of text")
        .replace("${AWS::AccountId}", "123456789012")
        .replace("${AWS::Region}", "us-east-1")
        .replace(
            "<aws.scheduler.execution-id>",
            "d2b4e8a0-5b8e-4c2c-9c7d-1f0e6f1c2a3b",
        )
        .replace("<aws.scheduler.scheduled-time>", "2023-03-18T15:09:00Z")
        .replace(
            "<aws.scheduler.schedule-arn>",
            "arn:aws:scheduler:us-east-1:123456789012:schedule/default/log-etl",
        );
    let scheduler_default = serde_json::json!({
        "version": "0", "id": "a1b2c3", "detail-type": "Scheduled Event",
        "source": "aws.scheduler", "account": "123456789012", "time": "2023-03-18T15:12:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:scheduler:us-east-1:123456789012:schedule/default/log-etl"],
        "detail": "{}"
    });
    vec![
        ("the template's Scheduler input", scheduler_input),
        ("Scheduler's default event", scheduler_default.to_string()),
        ("an EventBridge rule's event", event_text()),
        ("a manual invoke", "{}".to_owned()),
        ("null", "null".to_owned()),
    ]
}

#[tokio::test]
async fn any_event_starts_a_pass() {
    // Given a runtime API holding every kind of event the function may be invoked with
    let world = world(SynthOptions::default()).await;
    let events = invocation_events();
    let texts: Vec<&str> = events.iter().map(|(_, text)| text.as_str()).collect();
    let runtime = RuntimeApi::start_with(&texts, Duration::from_secs(60)).await;
    // When the binary serves them
    let function = Function::start(&world, runtime.addr, &world.secret_arn, &[]);
    let answers = runtime.answers(events.len(), ANSWER_WITHIN).await;
    let (_, stderr) = function.finish();
    // Then each one ran a pass over the batch, which landed once
    let mut landed = 0;
    for ((label, _), answer) in events.iter().zip(&answers) {
        let summary = &answer.body;
        assert_eq!(answer.kind, "response", "{label}: {summary}\n{stderr}");
        assert_eq!(summary["records_in"], 100, "{label}");
        landed += summary["records_landed"].as_u64().unwrap();
    }
    assert_eq!(landed, 100);
    world.assert_holds_what_was_served(BUCKET).await;
}

#[tokio::test]
async fn a_credential_in_the_source_url_is_never_printed_or_reported() {
    // Given source URLs carrying a credential in the query and in the user info, for a source
    // that refuses connections and for one that answers 500
    let world = world(SynthOptions::default()).await;
    let refused = format!("127.0.0.1:{}", common::free_port());
    let answering = world.sim.url().trim_start_matches("http://").to_owned();
    let answering = answering.split('/').next().unwrap().to_owned();
    for (label, host) in [("refused", &refused), ("500", &answering)] {
        for url in [
            format!("http://{host}/api/data/log?api_key=hunter2-in-the-query"),
            format!("http://reader:hunter2-in-the-user-info@{host}/api/data/log"),
        ] {
            for _ in 0..2 {
                world
                    .sim
                    .push_fault(log_etl::local::simulator::Fault::Status(500));
            }
            let runtime = runtime_api(&event_text()).await;
            // When the function's pass fails to fetch, at trace level
            let function = Function::start(
                &world,
                runtime.addr,
                &world.secret_arn,
                &[("LOG_API_URL", &url), ("FETCH_MAX_ATTEMPTS", "2")],
            );
            let (_, kind, error) = first_answer(&runtime).await;
            let (stdout, stderr) = function.finish();
            // Then the error sent to the runtime (and so to the failure destination) is a
            // fetch error, and neither it nor any log line holds the credential
            assert_eq!(kind, "error", "{label}: {stderr}");
            assert_eq!(error["errorType"], "FetchError", "{label}: {error}");
            assert!(stderr.contains("\"level\":\"TRACE\""));
            for printed in [&stdout, &stderr, &error.to_string()] {
                assert!(!printed.contains("hunter2"), "{label}, {url}: {printed}");
            }
        }
    }
}

/// The tokens in the simulator's current batch.
async fn tokens_served(world: &World) -> Vec<String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let body = reqwest::get(world.sim.url())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let items: Vec<Value> = serde_json::from_str(&body).unwrap();
    items
        .iter()
        .map(|i| i["data"].as_str().unwrap().to_owned())
        .collect()
}
