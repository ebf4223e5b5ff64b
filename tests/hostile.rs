//! Hostile peers: a source that redirects (to another origin, on its own origin, in a long
//! chain) never gets the source URL's credential sent anywhere else.

use std::time::{Duration, Instant};

use crate::common::raw_http::{self, RecordingServer};
use crate::common::{self, log_etl_async};
use log_etl::record::fernet::generate_key;
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

/// `log-etl run --out-dir` a fresh folder against `url`, logging at the most verbose level.
async fn run_pass(url: &str, key: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    log_etl_async(
        &["run", "--out-dir", out_dir.to_str().unwrap()],
        &[
            ("LOG_API_URL", url),
            ("FERNET_KEY", key),
            ("RUST_LOG", "trace"),
        ],
    )
    .await
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
    assert!(stderr.contains("error: FetchError: "), "{stderr}");
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
