//! A stand-in for the Lambda Runtime API (`next`, `response`, `error`) that hands out events, in
//! order, with a deadline of the test's choosing, and notes each answer and when it arrived.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::routing::{get, post};
use serde_json::Value;

/// An answer of the function: the request id it answers, `"response"` or `"error"`, its body,
/// and when it arrived.
#[derive(Debug, Clone)]
pub struct Answer {
    pub id: String,
    pub kind: String,
    pub body: Value,
    pub at: Instant,
}

struct Shared {
    /// The events not handed out yet, each with its request id.
    events: Mutex<VecDeque<(String, String)>>,
    deadline: SystemTime,
    answers: Mutex<Vec<Answer>>,
}

/// The runtime stand-in, serving on 127.0.0.1 until dropped.
pub struct RuntimeApi {
    pub addr: std::net::SocketAddr,
    /// The invocations' deadline, as the function is told it.
    pub deadline: Instant,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl RuntimeApi {
    /// Hands out `event` once, due `time_limit` from now.
    pub async fn start(event: &str, time_limit: Duration) -> Self {
        Self::start_with(&[event], time_limit).await
    }

    /// Hands out `events` in order (request ids `req-1`, `req-2`, ...), each due `time_limit`
    /// from now; then holds the next poll open, as the real API does when there is no work.
    pub async fn start_with(events: &[&str], time_limit: Duration) -> Self {
        let events = events
            .iter()
            .enumerate()
            .map(|(i, event)| (format!("req-{}", i + 1), (*event).to_owned()))
            .collect();
        let shared = Arc::new(Shared {
            events: Mutex::new(events),
            deadline: SystemTime::now() + time_limit,
            answers: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/{kind}", post(answer))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            addr,
            deadline: Instant::now() + time_limit,
            shared,
            task,
        }
    }

    /// The first answer, waiting for it at most `limit`.
    pub async fn first_answer(&self, limit: Duration) -> Option<Answer> {
        Some(self.answers_within(1, limit).await?.remove(0))
    }

    /// The first `n` answers, in arrival order; fails the test if they do not all arrive
    /// within `limit`.
    pub async fn answers(&self, n: usize, limit: Duration) -> Vec<Answer> {
        self.answers_within(n, limit)
            .await
            .unwrap_or_else(|| panic!("the function did not answer {n} time(s) within {limit:?}"))
    }

    /// The answers once there are `n`, polled every 50 ms for at most `limit`.
    async fn answers_within(&self, n: usize, limit: Duration) -> Option<Vec<Answer>> {
        let started = Instant::now();
        while started.elapsed() < limit {
            let answers = self.shared.answers.lock().unwrap().clone();
            if answers.len() >= n {
                return Some(answers);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }
}

/// The environment Lambda gives a function whose Runtime API is at `runtime`.
pub fn function_env(runtime: std::net::SocketAddr) -> [(&'static str, String); 4] {
    [
        ("AWS_LAMBDA_RUNTIME_API", runtime.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", "log-etl-test".to_owned()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".to_owned()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
    ]
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn next(State(shared): State<Arc<Shared>>) -> (HeaderMap, String) {
    let event = shared.events.lock().unwrap().pop_front();
    let Some((id, event)) = event else {
        // No more events: hold the poll open, as the real API does, until the test ends.
        std::future::pending::<()>().await;
        unreachable!()
    };
    let deadline_ms = shared
        .deadline
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let mut headers = HeaderMap::new();
    headers.insert(
        "lambda-runtime-aws-request-id",
        HeaderValue::from_str(&id).unwrap(),
    );
    headers.insert(
        "lambda-runtime-deadline-ms",
        HeaderValue::from_str(&deadline_ms.to_string()).unwrap(),
    );
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        HeaderValue::from_static("arn:aws:lambda:us-east-1:123456789012:function:log-etl-test"),
    );
    (headers, event)
}

async fn answer(
    State(shared): State<Arc<Shared>>,
    Path((id, kind)): Path<(String, String)>,
    body: Bytes,
) {
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    shared.answers.lock().unwrap().push(Answer {
        id,
        kind,
        body,
        at: Instant::now(),
    });
}
