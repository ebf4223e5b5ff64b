//! A stand-in for the Lambda Runtime API (`next`, `response`, `error`) that hands out one event
//! with a deadline of the test's choosing and notes when each answer arrives.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::routing::{get, post};
use serde_json::Value;

/// An answer of the function: `"response"` or `"error"`, its body, and when it arrived.
#[derive(Debug, Clone)]
pub struct Answer {
    pub kind: String,
    pub body: Value,
    pub at: Instant,
}

struct Shared {
    event: Mutex<Option<String>>,
    deadline: SystemTime,
    answers: Mutex<Vec<Answer>>,
}

/// The runtime stand-in, serving on 127.0.0.1 until the test ends.
pub struct RuntimeApi {
    pub addr: std::net::SocketAddr,
    /// The invocation's deadline, as the function is told it.
    pub deadline: Instant,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl RuntimeApi {
    /// Hands out `event` once, due `time_limit` from now.
    pub async fn start(event: &str, time_limit: Duration) -> Self {
        let shared = Arc::new(Shared {
            event: Mutex::new(Some(event.to_owned())),
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

    /// The first answer, waiting for it at most `limit` (polling every 50 ms).
    pub async fn first_answer(&self, limit: Duration) -> Option<Answer> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(answer) = self.shared.answers.lock().unwrap().first() {
                return Some(answer.clone());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn next(State(shared): State<Arc<Shared>>) -> (HeaderMap, String) {
    let event = shared.event.lock().unwrap().take();
    let Some(event) = event else {
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
        HeaderValue::from_static("req-1"),
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
    Path((_id, kind)): Path<(String, String)>,
    body: Bytes,
) {
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    shared.answers.lock().unwrap().push(Answer {
        kind,
        body,
        at: Instant::now(),
    });
}
