//! Faults between the SDK and the emulator, for error sequences moto cannot produce on its own:
//! S3 refusing connections (as if stopped), going away after some object reads, writes or
//! deletes (stopped in the middle of a run), answering `503 SlowDown` (throttling), or `409
//! ConditionalRequestConflict` (a conditional write racing another). Secrets Manager requests
//! pass.

use std::sync::{Arc, Mutex};

use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::{Response, StatusCode};
use aws_smithy_types::body::SdkBody;

/// What S3 does next. Change it between runs to let the fault clear.
#[derive(Debug, Default, Clone)]
pub struct Plan {
    /// Every S3 request fails to connect.
    pub down: bool,
    /// After this many object writes, S3 goes down.
    pub down_after_puts: Option<u32>,
    /// After this many object reads (GetObject, not listings), S3 goes down.
    pub down_after_gets: Option<u32>,
    /// After this many object deletes, S3 goes down.
    pub down_after_deletes: Option<u32>,
    /// The next this-many object writes are answered `503 SlowDown`.
    pub throttle_puts: u32,
    /// The next this-many object writes are answered `409 ConditionalRequestConflict`.
    pub conflict_puts: u32,
    /// Object writes, reads and deletes let through so far.
    pub puts: u32,
    pub gets: u32,
    pub deletes: u32,
    /// Object writes answered `503`.
    pub throttled: u32,
    /// Object writes answered `409`.
    pub conflicted: u32,
}

fn s3_error(status: u16, code: &str, message: &str) -> HttpConnectorFuture {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <Error><Code>{code}</Code><Message>{message}</Message></Error>"
    );
    let response = Response::new(StatusCode::try_from(status).unwrap(), SdkBody::from(body));
    HttpConnectorFuture::ready(Ok(response))
}

/// An HTTP client wrapping the real one, applying a [`Plan`] to S3 requests.
#[derive(Debug, Clone)]
pub struct FaultyS3 {
    inner: SharedHttpClient,
    pub plan: Arc<Mutex<Plan>>,
}

impl FaultyS3 {
    pub fn new() -> Self {
        Self {
            inner: aws_smithy_http_client::Builder::new()
                .tls_provider(Provider::Rustls(CryptoMode::Ring))
                .build_https(),
            plan: Arc::default(),
        }
    }

    pub fn set(&self, plan: Plan) {
        *self.plan.lock().unwrap() = plan;
    }

    pub fn plan(&self) -> Plan {
        self.plan.lock().unwrap().clone()
    }
}

impl HttpClient for FaultyS3 {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(Connector {
            inner: self.inner.http_connector(settings, components),
            plan: self.plan.clone(),
        })
    }
}

#[derive(Debug)]
struct Connector {
    inner: SharedHttpConnector,
    plan: Arc<Mutex<Plan>>,
}

impl HttpConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        // Secrets Manager speaks JSON-RPC with an X-Amz-Target header; S3 does not.
        if request.headers().get("x-amz-target").is_some() {
            return self.inner.call(request);
        }
        let mut plan = self.plan.lock().unwrap();
        let refused = || {
            HttpConnectorFuture::ready(Err(ConnectorError::io(
                std::io::Error::new(
                    std::io::ErrorKind::ConnectionRefused,
                    "S3 is down (simulated)",
                )
                .into(),
            )))
        };
        if plan.down {
            return refused();
        }
        let listing = request.uri().contains("list-type=");
        if request.method() == "GET" && !listing {
            if plan.down_after_gets.is_some_and(|n| plan.gets >= n) {
                plan.down = true;
                return refused();
            }
            plan.gets += 1;
        }
        if request.method() == "DELETE" {
            if plan.down_after_deletes.is_some_and(|n| plan.deletes >= n) {
                plan.down = true;
                return refused();
            }
            plan.deletes += 1;
        }
        if request.method() == "PUT" {
            if plan.throttle_puts > 0 {
                plan.throttle_puts -= 1;
                plan.throttled += 1;
                return s3_error(503, "SlowDown", "Please reduce your request rate.");
            }
            if plan.conflict_puts > 0 {
                plan.conflict_puts -= 1;
                plan.conflicted += 1;
                return s3_error(
                    409,
                    "ConditionalRequestConflict",
                    "A conflicting conditional operation is currently in progress.",
                );
            }
            if plan.down_after_puts.is_some_and(|n| plan.puts >= n) {
                plan.down = true;
                return refused();
            }
            plan.puts += 1;
        }
        drop(plan);
        self.inner.call(request)
    }
}
