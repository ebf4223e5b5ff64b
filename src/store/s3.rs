//! The bucket: the one place that calls `PutObject` (create-only, `If-None-Match: *`), and the
//! reads `restore` needs. The only module that speaks to S3.

use std::error::Error as StdError;
use std::io::Write as _;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;

use super::PutOutcome;
use crate::batch::EncodedObject;
use crate::batch::spool::{Body, Spool, SpoolPolicy};
use crate::retry::retry_delay;

/// The SDK's error of a failed call, kept whole as the cause.
pub type SdkCause = Box<dyn StdError + Send + Sync>;

/// Why an S3 call failed (after the SDK's retries, and ours for 409). Each names its operation
/// and object, with the service's error code when there is one; the SDK's error is the source.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    #[error("PutObject {location} failed after {attempts} attempt(s): {reason}")]
    Put {
        location: String,
        attempts: u32,
        reason: String,
        #[source]
        source: SdkCause,
    },
    #[error("GetObject {location} failed: {reason}")]
    Get {
        location: String,
        reason: String,
        #[source]
        source: SdkCause,
    },
    #[error("ListObjectsV2 {location} failed: {reason}")]
    List {
        location: String,
        reason: String,
        #[source]
        source: SdkCause,
    },
    #[error("DeleteObject {location} failed: {reason}")]
    Delete {
        location: String,
        reason: String,
        #[source]
        source: SdkCause,
    },
    #[error("reading the body of {location} failed")]
    Body {
        location: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{location} does not exist (any more)")]
    NotFound { location: String },
}

/// What went wrong in a call, in a few words: the service's code and message, or why no answer
/// came (the rest stays in the error's source).
fn reason<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> String {
    match err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            match (err.code(), err.message()) {
                (Some(code), Some(message)) => format!("{code} (HTTP {status}): {message}"),
                (Some(code), None) => format!("{code} (HTTP {status})"),
                _ => format!("HTTP {status}"),
            }
        }
        SdkError::TimeoutError(_) => "no answer in time".to_owned(),
        SdkError::DispatchFailure(_) => "the endpoint could not be reached".to_owned(),
        SdkError::ResponseError(_) => "the answer could not be read".to_owned(),
        _ => "the request could not be made".to_owned(),
    }
}

/// Writes objects to one bucket.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    max_attempts: u32,
}

/// Builds the S3 client from the shared SDK configuration. With a custom endpoint (a local
/// emulator) requests use path-style addressing, which emulators serve without wildcard DNS.
pub fn client(sdk: &aws_config::SdkConfig) -> Client {
    let path_style = sdk.endpoint_url().is_some();
    Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(path_style)
            .build(),
    )
}

/// What a failed put means for the run.
enum PutFailure {
    /// 412: an object with this key exists. Keys carry the content digest, so it is ours.
    AlreadyPresent,
    /// 409 ConditionalRequestConflict: another conditional write to the key is in flight.
    Conflict,
    Other,
}

fn classify<E>(err: &SdkError<E>) -> PutFailure {
    match err.raw_response().map(|r| r.status().as_u16()) {
        Some(412) => PutFailure::AlreadyPresent,
        Some(409) => PutFailure::Conflict,
        _ => PutFailure::Other,
    }
}

impl S3Store {
    /// `max_attempts` bounds our retries of 409 conflicts; throttling and 5xx are retried by the
    /// SDK's standard policy (configured with the same bound).
    pub fn new(client: Client, bucket: String, max_attempts: u32) -> Self {
        Self {
            client,
            bucket,
            max_attempts: max_attempts.max(1),
        }
    }

    /// `s3://<bucket>/<key>`.
    pub fn url_of(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    /// Creates the object unless its key exists (`If-None-Match: *`). A 412 means the object is
    /// already there and counts as written; a 409 (a concurrent conditional write) is retried.
    pub async fn put_once(&self, object: &EncodedObject) -> Result<PutOutcome, S3Error> {
        let mut rng = fastrand::Rng::new();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let body = match &object.body {
                Body::Memory(bytes) => ByteStream::from(bytes.clone()),
                Body::File { path, .. } => {
                    ByteStream::from_path(path)
                        .await
                        .map_err(|e| S3Error::Body {
                            location: self.url_of(&object.key),
                            source: std::io::Error::other(e),
                        })?
                }
            };
            let result = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(&object.key)
                .body(body)
                .content_length(object.body.len() as i64)
                .content_type(object.encoding.content_type())
                .content_encoding(object.encoding.content_encoding())
                .if_none_match("*")
                .send()
                .await;
            let err = match result {
                Ok(_) => return Ok(PutOutcome::Written),
                Err(err) => err,
            };
            match classify(&err) {
                PutFailure::AlreadyPresent => return Ok(PutOutcome::AlreadyPresent),
                PutFailure::Conflict if attempt < self.max_attempts => {
                    tokio::time::sleep(retry_delay(attempt, &mut rng)).await;
                }
                PutFailure::Conflict | PutFailure::Other => {
                    return Err(S3Error::Put {
                        location: self.url_of(&object.key),
                        attempts: attempt,
                        reason: reason(&err),
                        source: Box::new(err),
                    });
                }
            }
        }
    }

    /// Every key under `prefix`, in key order.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, S3Error> {
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|err| S3Error::List {
                location: self.url_of(prefix),
                reason: reason(&err),
                source: Box::new(err),
            })?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
        }
        keys.sort();
        Ok(keys)
    }

    /// Every key under `prefix` with its size in bytes (from the listing: no object is read),
    /// in key order.
    pub async fn list_with_sizes(&self, prefix: &str) -> Result<Vec<(String, u64)>, S3Error> {
        let mut objects = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|err| S3Error::List {
                location: self.url_of(prefix),
                reason: reason(&err),
                source: Box::new(err),
            })?;
            objects.extend(page.contents().iter().filter_map(|o| {
                let size = o
                    .size()
                    .and_then(|size| u64::try_from(size).ok())
                    .unwrap_or(0);
                o.key().map(|key| (key.to_owned(), size))
            }));
        }
        objects.sort();
        Ok(objects)
    }

    /// Downloads the object into a body kept as `spool` says (memory, or a spill file once it
    /// grows), and returns a reader of it.
    pub async fn download(
        &self,
        key: &str,
        spool: &SpoolPolicy,
    ) -> Result<Box<dyn std::io::Read + Send>, S3Error> {
        let location = self.url_of(key);
        let mut output = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|err| match err.as_service_error() {
                Some(e) if e.is_no_such_key() => S3Error::NotFound {
                    location: location.clone(),
                },
                _ => S3Error::Get {
                    location: location.clone(),
                    reason: reason(&err),
                    source: Box::new(err),
                },
            })?;
        let mut body = Spool::new(spool);
        while let Some(chunk) = output.body.try_next().await.map_err(|err| S3Error::Get {
            location: location.clone(),
            reason: "the body could not be read to its end".to_owned(),
            source: Box::new(err),
        })? {
            body.write_all(&chunk).map_err(|source| S3Error::Body {
                location: location.clone(),
                source,
            })?;
        }
        body.finish()
            .and_then(Body::into_reader)
            .map_err(|source| S3Error::Body { location, source })
    }

    /// Deletes the object.
    pub async fn delete(&self, key: &str) -> Result<(), S3Error> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map(|_| ())
            .map_err(|err| S3Error::Delete {
                location: self.url_of(key),
                reason: reason(&err),
                source: Box::new(err),
            })
    }
}
