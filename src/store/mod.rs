//! Where objects go: one [`Store`] over a local folder ([`folder`]) or an S3 bucket ([`s3`]).
//! Pure I/O: objects are only ever created once under their key, and nothing here overwrites.

mod folder;
pub mod s3;

use std::io::Read;
use std::path::PathBuf;

use crate::batch::EncodedObject;
use crate::batch::spool::SpoolPolicy;
use crate::config::{Config, ConfigError};

pub use folder::{FolderStore, FolderStoreError};
pub use s3::{S3Error, S3Store};

/// Whether a put created the object or found it already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Written,
    /// An object with this key exists; since keys carry the content digest, it is this object.
    AlreadyPresent,
}

/// Why a store operation failed (after retries).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Folder(#[from] FolderStoreError),
    #[error(transparent)]
    S3(#[from] S3Error),
    #[error("the objects under {folder} kept disappearing while they were read")]
    Unsettled { folder: String },
    #[error(
        "the run's deadline came before its writes ended (what was written stays; the next run writes the rest, once)"
    )]
    OutOfTime,
}

impl StoreError {
    /// Whether the object asked for does not exist (for instance, compaction merged it away).
    pub fn is_not_found(&self) -> bool {
        match self {
            StoreError::Folder(FolderStoreError::Io { source, .. }) => {
                source.kind() == std::io::ErrorKind::NotFound
            }
            StoreError::S3(S3Error::NotFound { .. }) => true,
            _ => false,
        }
    }
}

/// A folder standing in for the bucket, or the bucket.
#[derive(Debug, Clone)]
pub enum Store {
    Folder(FolderStore),
    S3(S3Store),
}

impl Store {
    /// The bucket named by `BUCKET_NAME`, through the given SDK configuration.
    pub fn bucket(sdk: &aws_config::SdkConfig, config: &Config) -> Result<Self, ConfigError> {
        let bucket = config.require_bucket()?.to_owned();
        Ok(Store::S3(S3Store::new(
            s3::client(sdk),
            bucket,
            config.put_max_attempts,
        )))
    }

    /// Where a run keeps its temporary files: beside a folder's objects (so finished bodies are
    /// linked into place), else the system's temporary folder (`/tmp` on Lambda).
    pub fn spill_parent(&self) -> PathBuf {
        match self {
            Store::Folder(store) => store.path_of(""),
            Store::S3(_) => std::env::temp_dir(),
        }
    }

    /// Creates the object unless its key exists.
    pub async fn put_once(&self, object: &EncodedObject) -> Result<PutOutcome, StoreError> {
        match self {
            Store::Folder(store) => Ok(store.put_once(object)?),
            Store::S3(store) => Ok(store.put_once(object).await?),
        }
    }

    /// Every key under `prefix` (a key prefix, not only a folder), in key order.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        match self {
            Store::Folder(store) => Ok(store.list(prefix)?),
            Store::S3(store) => Ok(store.list(prefix).await?),
        }
    }

    /// Every key under `prefix` with its size in bytes, in key order: a listing, no object read.
    pub async fn list_with_sizes(&self, prefix: &str) -> Result<Vec<(String, u64)>, StoreError> {
        match self {
            Store::Folder(store) => Ok(store.list_with_sizes(prefix)?),
            Store::S3(store) => Ok(store.list_with_sizes(prefix).await?),
        }
    }

    /// The object's bytes as stored.
    pub async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        match self {
            Store::Folder(store) => Ok(store.get(key)?),
            Store::S3(store) => {
                let mut bytes = Vec::new();
                store
                    .download(key, &SpoolPolicy::in_memory())
                    .await?
                    .read_to_end(&mut bytes)
                    .map_err(|source| S3Error::Body {
                        location: store.url_of(key),
                        source,
                    })?;
                Ok(bytes)
            }
        }
    }

    /// A reader of the object's bytes. An S3 object is downloaded first, into memory or a spill
    /// file as `spool` says; a folder's object is read in place.
    pub async fn open(
        &self,
        key: &str,
        spool: &SpoolPolicy,
    ) -> Result<Box<dyn Read + Send>, StoreError> {
        match self {
            Store::Folder(store) => Ok(store.open(key)?),
            Store::S3(store) => Ok(store.download(key, spool).await?),
        }
    }

    /// Removes the object (closed-hour compaction only: the ingest never deletes).
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self {
            Store::Folder(store) => Ok(store.delete(key)?),
            Store::S3(store) => Ok(store.delete(key).await?),
        }
    }

    /// `s3://bucket/key` or the file's path: where an object is, for messages.
    pub fn locate(&self, key: &str) -> String {
        match self {
            Store::Folder(store) => store.path_of(key).display().to_string(),
            Store::S3(store) => store.url_of(key),
        }
    }
}
