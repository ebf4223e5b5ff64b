//! A stand-in for the log API: serves `GET /api/data/log` as the real server does (a JSON array
//! of the current batch of Fernet tokens), replaces the batch on a period or on demand, keeps the
//! ground truth of what it served, and injects faults on request for the tests.
//!
//! Beside the real server's rhythm (a new batch of 100 replacing the last), it drifts as real
//! sources do: a rolling window (the last `window` records, `step` new ones at a time, so
//! windows overlap) and re-ordered reads (each read in another order).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State as AxumState;
use axum::http::{StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::local::synth::{SourceItem, Synth, SynthOptions, response_body};
use crate::record::fernet::KeyRing;

/// Path the real server serves.
pub const PATH: &str = "/api/data/log";

/// How the simulated server behaves.
#[derive(Debug, Clone)]
pub struct SimulatorOptions {
    /// Records served at once: the last `window` records made (the server: 100).
    pub window: usize,
    /// New records made at each step (the server: 100, the same as the window, so each batch
    /// replaces the last; fewer makes windows overlap).
    pub step: usize,
    /// Serve each read in a new random order.
    pub shuffle: bool,
    /// Real time between steps; `None` steps only on [`Simulator::next_batch`].
    pub period: Option<Duration>,
    pub synth: SynthOptions,
    /// `inDate` of the first record.
    pub record_start: DateTime<Utc>,
    /// How far `inDate` moves on between steps (the server: 3 minutes).
    pub record_step: Duration,
    /// Where to append the records served (NDJSON), as the ground truth.
    pub truth_file: Option<PathBuf>,
}

impl SimulatorOptions {
    /// The real server's rhythm: 100 records every 3 minutes, starting now.
    pub fn like_the_server(now: DateTime<Utc>) -> Self {
        Self {
            window: 100,
            step: 100,
            shuffle: false,
            period: Some(Duration::from_secs(180)),
            synth: SynthOptions::default(),
            record_start: now,
            record_step: Duration::from_secs(180),
            truth_file: None,
        }
    }

    /// Batches of `size` records, each replacing the last.
    pub fn batches_of(mut self, size: usize) -> Self {
        self.window = size;
        self.step = size;
        self
    }
}

/// A misbehaviour for the next request (queued; each request takes one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and a short text body.
    Status(u16),
    /// Wait this long, then answer normally.
    Delay(Duration),
    /// Answer 200 with an HTML page.
    Html,
    /// Answer 200 with the first half of the body.
    Truncated,
    /// Answer 200 with a JSON object instead of an array.
    NotAnArray,
    /// Answer 200 with `[]`.
    EmptyArray,
    /// Answer 200 with the batch followed by whitespace up to this many bytes.
    Oversized(usize),
    /// Answer 200 with every record of the batch twice.
    Duplicates,
    /// Answer 200 with an array of zeros (`[0,0,…]`) of this many bytes: the most elements a
    /// body of that size can hold.
    TinyElements(usize),
}

/// What the simulator has served so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroundTruth {
    /// Plaintext records served at least once, each once, in the order they were made.
    pub records: Vec<Map<String, Value>>,
    /// Records served whose tokens cannot be decrypted, each counted once.
    pub undecryptable: u64,
    /// Distinct windows served at least once.
    pub batches: u64,
    /// Bytes of the source records served, each record counted once.
    pub bytes: u64,
}

/// A record in the current window, and whether it has been served yet.
struct Served {
    item: SourceItem,
    served: bool,
}

struct State {
    ring: KeyRing,
    synth: Synth,
    options: SimulatorOptions,
    steps: u32,
    window: VecDeque<Served>,
    /// Whether the current window has been served at least once.
    window_served: bool,
    rng: fastrand::Rng,
    truth: GroundTruth,
    truth_file: Option<BufWriter<File>>,
    faults: VecDeque<Fault>,
    requests: u64,
}

impl State {
    /// Makes the next `step` records and keeps the last `window`.
    fn step(&mut self) {
        let start = self.options.record_start + self.options.record_step * self.steps;
        self.steps += 1;
        let made = self.synth.batch(&self.ring, start, self.options.step);
        self.window.extend(made.into_iter().map(|item| Served {
            item,
            served: false,
        }));
        while self.window.len() > self.options.window {
            self.window.pop_front();
        }
        self.window_served = false;
    }

    /// The window's items, in order or shuffled, as the next read sees them.
    fn read(&mut self) -> Vec<SourceItem> {
        let mut items: Vec<SourceItem> = self.window.iter().map(|s| s.item.clone()).collect();
        if self.options.shuffle {
            self.rng.shuffle(&mut items);
        }
        items
    }

    fn mark_served(&mut self) {
        if !self.window_served {
            self.window_served = true;
            self.truth.batches += 1;
        }
        for served in self.window.iter_mut().filter(|s| !s.served) {
            served.served = true;
            self.truth.bytes += served.item.source.len() as u64;
            match &served.item.truth {
                Some(record) => {
                    if let Some(file) = self.truth_file.as_mut() {
                        let _ = serde_json::to_writer(&mut *file, record);
                        let _ = file.write_all(b"\n").and_then(|()| file.flush());
                    }
                    self.truth.records.push(record.clone());
                }
                None => self.truth.undecryptable += 1,
            }
        }
    }
}

/// A running simulator; stops when [`Simulator::stop`] is called or it is dropped.
pub struct Simulator {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    server: Option<JoinHandle<()>>,
    ticker: Option<JoinHandle<()>>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Simulator {
    /// Binds `addr` (port 0 picks a free port) and starts serving the first batch.
    pub async fn start(
        addr: SocketAddr,
        ring: KeyRing,
        options: SimulatorOptions,
    ) -> std::io::Result<Self> {
        let truth_file = match &options.truth_file {
            Some(path) => Some(BufWriter::new(File::create(path)?)),
            None => None,
        };
        let mut state = State {
            ring,
            synth: Synth::new(options.synth),
            rng: fastrand::Rng::with_seed(options.synth.seed),
            options: options.clone(),
            steps: 0,
            window: VecDeque::new(),
            window_served: false,
            truth: GroundTruth::default(),
            truth_file,
            faults: VecDeque::new(),
            requests: 0,
        };
        state.step();
        let state = Arc::new(Mutex::new(state));
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let router = Router::new()
            .route(PATH, get(serve))
            .with_state(state.clone());
        let (shutdown, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        let ticker = options.period.map(|period| {
            let state = state.clone();
            tokio::spawn(async move {
                let mut interval =
                    tokio::time::interval_at(tokio::time::Instant::now() + period, period);
                loop {
                    interval.tick().await;
                    lock(&state).step();
                }
            })
        });
        Ok(Self {
            addr,
            state,
            server: Some(server),
            ticker,
            shutdown: Some(shutdown),
        })
    }

    /// The URL to give as `LOG_API_URL`.
    pub fn url(&self) -> String {
        format!("http://{}{PATH}", self.addr)
    }

    /// Makes the next step now (a new batch, or the window moved on), as the server does every
    /// period.
    pub fn next_batch(&self) {
        lock(&self.state).step();
    }

    /// Queues a fault for a coming request.
    pub fn push_fault(&self, fault: Fault) {
        lock(&self.state).faults.push_back(fault);
    }

    /// What has been served so far.
    pub fn ground_truth(&self) -> GroundTruth {
        lock(&self.state).truth.clone()
    }

    /// Requests answered so far, faults included.
    pub fn requests(&self) -> u64 {
        lock(&self.state).requests
    }

    /// Stops serving and waits for the server to finish.
    pub async fn stop(mut self) {
        self.halt();
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }

    fn halt(&mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
        }
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.halt();
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while holding the lock cannot leave the state half-updated in a way that matters
    // to a test double; keep serving.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn serve(AxumState(state): AxumState<Arc<Mutex<State>>>) -> Response {
    let (fault, items) = {
        let mut s = lock(&state);
        s.requests += 1;
        (s.faults.pop_front(), s.read())
    };
    let body = response_body(&items).into_bytes();
    let json = |status: StatusCode, body: Vec<u8>| {
        Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .expect("a valid response")
    };
    let served = |state: &Arc<Mutex<State>>| lock(state).mark_served();
    match fault {
        None => {
            served(&state);
            json(StatusCode::OK, body)
        }
        Some(Fault::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            served(&state);
            json(StatusCode::OK, body)
        }
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            json(
                status,
                format!("{{\"error\": \"simulated {code}\"}}").into_bytes(),
            )
        }
        Some(Fault::Html) => Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "text/html")
            .body(Body::from("<html><body>502 Bad Gateway</body></html>"))
            .expect("a valid response"),
        Some(Fault::Truncated) => json(StatusCode::OK, body[..body.len() / 2].to_vec()),
        Some(Fault::NotAnArray) => json(StatusCode::OK, b"{\"data\": []}".to_vec()),
        Some(Fault::EmptyArray) => json(StatusCode::OK, b"[]".to_vec()),
        Some(Fault::Oversized(size)) => {
            served(&state);
            let mut padded = body;
            padded.resize(size.max(padded.len()), b' ');
            json(StatusCode::OK, padded)
        }
        Some(Fault::TinyElements(size)) => {
            let mut zeros = Vec::with_capacity(size.max(2));
            zeros.push(b'[');
            while zeros.len() + 2 < size {
                zeros.extend_from_slice(b"0,");
            }
            zeros.extend_from_slice(b"0]");
            json(StatusCode::OK, zeros)
        }
        Some(Fault::Duplicates) => {
            served(&state);
            let doubled: Vec<SourceItem> =
                items.iter().flat_map(|i| [i.clone(), i.clone()]).collect();
            json(StatusCode::OK, response_body(&doubled).into_bytes())
        }
    }
}
