//! The bucket: the one place that calls `PutObject` (create-only, `If-None-Match: *`), and the
//! reads `restore` needs. The only module that speaks to S3.

use std::io::Write as _;

use aws_sdk_s3::Client;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::primitives::ByteStream;

use super::PutOutcome;
use crate::aws::{SdkCause, sdk_reason};
use crate::batch::EncodedObject;
use crate::batch::spool::{Body, Spool, SpoolPolicy};
use crate::retry::retry_delay;

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
                        reason: sdk_reason(&err),
                        source: SdkCause::new(err),
                    });
                }
            }
        }
    }

    /// Every key under `prefix`, in key order.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, S3Error> {
        let objects = self.list_with_sizes(prefix).await?;
        Ok(objects.into_iter().map(|(key, _)| key).collect())
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
                reason: sdk_reason(&err),
                source: SdkCause::new(err),
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
                    reason: sdk_reason(&err),
                    source: SdkCause::new(err),
                },
            })?;
        let mut body = Spool::new(spool);
        while let Some(chunk) = output.body.try_next().await.map_err(|err| S3Error::Get {
            location: location.clone(),
            reason: "the body could not be read to its end".to_owned(),
            source: SdkCause::other("the body could not be read to its end", err),
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
                reason: sdk_reason(&err),
                source: SdkCause::new(err),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::error_chain;
    use aws_sdk_s3::config::http::HttpResponse;
    use aws_sdk_s3::error::ErrorMetadata;
    use aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Error;
    use aws_smithy_types::body::SdkBody;

    /// The error of a ListObjectsV2 the service refused with `code` and `message`.
    fn refused(status: u16, code: &str, message: &str) -> S3Error {
        let err = SdkError::service_error(
            ListObjectsV2Error::generic(
                ErrorMetadata::builder().code(code).message(message).build(),
            ),
            HttpResponse::new(status.try_into().unwrap(), SdkBody::empty()),
        );
        S3Error::List {
            location: "s3://logs/data".to_owned(),
            reason: sdk_reason(&err),
            source: SdkCause::new(err),
        }
    }

    #[test]
    fn a_refused_call_is_one_short_line_with_its_code_and_what_to_check() {
        // Given the answers people meet most
        for (status, code, message, check) in [
            (
                404,
                "NoSuchBucket",
                "The specified bucket does not exist",
                "bucket's name",
            ),
            (403, "AccessDenied", "Access Denied", "permissions"),
            (
                400,
                "ExpiredToken",
                "The provided token has expired.",
                "renew them",
            ),
        ] {
            // When the error is put on one line
            let err = refused(status, code, message);
            let line = error_chain(&err);
            // Then it names the call, the location, the code and message, and what to check,
            // and stops there, with the SDK's whole error still its source
            assert!(
                line.starts_with("ListObjectsV2 s3://logs/data failed: "),
                "{line}"
            );
            assert!(
                line.contains(&format!("{code} (HTTP {status}): {message}")),
                "{line}"
            );
            assert!(line.contains(check), "{line}");
            assert!(line.len() < 250, "{line}");
            let cause = std::error::Error::source(&err).expect("the SDK's error is kept");
            assert!(cause.source().is_some());
            assert!(format!("{err:?}").contains(code));
        }
    }
}
