//! Bare TCP peers for tests of hostile networks: an HTTP server that records every request as
//! it arrives and answers by a rule, and a server that accepts connections and never answers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How long either server lives at most, whatever the test does.
const LIFETIME: Duration = Duration::from_secs(120);
/// Largest request head read; a larger one is recorded cut.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// An HTTP/1.1 server on 127.0.0.1 that keeps the head (request line and headers) of every
/// request it gets and answers each with `answer(request target)`, then closes the connection.
pub struct RecordingServer {
    pub port: u16,
    requests: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl RecordingServer {
    pub async fn start(answer: impl Fn(&str) -> Vec<u8> + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (seen, answer) = (requests.clone(), Arc::new(answer));
        let task = tokio::spawn(async move {
            let serve = async {
                loop {
                    let Ok((mut stream, _)) = listener.accept().await else {
                        return;
                    };
                    let (seen, answer) = (seen.clone(), answer.clone());
                    tokio::spawn(tokio::time::timeout(Duration::from_secs(10), async move {
                        let head = read_head(&mut stream).await;
                        let target = head.split(' ').nth(1).unwrap_or("").to_owned();
                        seen.lock().unwrap().push(head);
                        let _ = stream.write_all(&answer(&target)).await;
                        let _ = stream.shutdown().await;
                    }));
                }
            };
            let _ = tokio::time::timeout(LIFETIME, serve).await;
        });
        Self {
            port,
            requests,
            task,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The head of every request received so far, in order of arrival.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for RecordingServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read_head(stream: &mut tokio::net::TcpStream) -> String {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while head.len() < MAX_HEAD_BYTES && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// A `302 Found` to `location`.
pub fn redirect(location: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

/// A `200 OK` with a JSON body.
pub fn json(body: &[u8]) -> Vec<u8> {
    let mut response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(body);
    response
}

/// A server on 127.0.0.1 that accepts every connection and never reads or writes: each stays
/// open until the server is dropped (or its lifetime ends), as a stalled endpoint behaves.
pub struct StalledServer {
    pub port: u16,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl StalledServer {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            let mut open = Vec::new();
            let hold = async {
                // Bounded by LIFETIME below, and by connections held at most.
                while open.len() < 10_000 {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    count.fetch_add(1, Ordering::SeqCst);
                    open.push(stream);
                }
                std::future::pending::<()>().await;
            };
            let _ = tokio::time::timeout(LIFETIME, hold).await;
        });
        Self {
            port,
            accepted,
            task,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for StalledServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
