//! Settings from the environment: the same variable names for the Lambda and the command line,
//! each with a default or a clear error naming the variable. Validated once, at start-up.
//!
//! [`var::ALL`] is the one list of them, with each one's default and allowed range: the code
//! reads it, and so do the tests, the template checks and `log-etl settings`.

use std::fmt;
use std::time::Duration;

use crate::batch::ObjectSettings;
use crate::batch::encode::{ObjectEncoding, ReadLimits};
use crate::batch::layout::{LayoutError, ObjectLayout, PartitionStyle};
use crate::record::RecordLimits;
use crate::record::pyrepr::ParseLimits;

/// Every variable read, in one place.
pub mod var {
    use crate::batch::encode::{
        DEFAULT_GZIP_LEVEL, DEFAULT_MAX_LINE_BYTES, DEFAULT_MAX_OBJECT_BYTES, DEFAULT_ZSTD_LEVEL,
    };
    use crate::batch::response::DEFAULT_MAX_RECORDS_PER_RESPONSE;
    use crate::record::DEFAULT_MAX_RECORD_BYTES;
    use crate::record::hour::{DEFAULT_EARLIEST_YEAR, DEFAULT_MAX_HOURS_AHEAD};
    use crate::record::pyrepr::{DEFAULT_MAX_DEPTH, DEFAULT_MAX_STRING_BYTES};

    /// What values a setting takes.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Kind {
        /// Text, with its default when it has one.
        Text { default: Option<&'static str> },
        /// A whole number in `min..=max`.
        Number { default: u64, min: u64, max: u64 },
        /// A duration (`90m`, `1h`, `2h 30m`), at most `max_secs`.
        Duration {
            default: &'static str,
            max_secs: u64,
        },
    }

    /// One environment variable.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Setting {
        pub name: &'static str,
        pub kind: Kind,
        /// What it means, in a few words (`log-etl settings` prints it).
        pub about: &'static str,
    }

    impl Setting {
        const fn text(
            name: &'static str,
            default: Option<&'static str>,
            about: &'static str,
        ) -> Self {
            Self {
                name,
                kind: Kind::Text { default },
                about,
            }
        }

        const fn duration(
            name: &'static str,
            default: &'static str,
            max_secs: u64,
            about: &'static str,
        ) -> Self {
            Self {
                name,
                kind: Kind::Duration { default, max_secs },
                about,
            }
        }

        const fn number(
            name: &'static str,
            default: u64,
            min: u64,
            max: u64,
            about: &'static str,
        ) -> Self {
            Self {
                name,
                kind: Kind::Number { default, min, max },
                about,
            }
        }

        /// The default as it would be written in the environment, if there is one.
        pub fn default_text(&self) -> Option<String> {
            match self.kind {
                Kind::Text { default } => default.map(str::to_owned),
                Kind::Number { default, .. } => Some(default.to_string()),
                Kind::Duration { default, .. } => Some(default.to_owned()),
            }
        }
    }

    pub const LOG_API_URL: Setting = Setting::text("LOG_API_URL", None, "the source API URL");
    pub const BUCKET_NAME: Setting = Setting::text("BUCKET_NAME", None, "target bucket");
    pub const KEY_PREFIX: Setting =
        Setting::text("KEY_PREFIX", Some("data"), "prefix of the data objects");
    pub const QUARANTINE_PREFIX: Setting = Setting::text(
        "QUARANTINE_PREFIX",
        Some("quarantine"),
        "prefix of the quarantine objects; must not overlap KEY_PREFIX",
    );
    pub const PARTITION_STYLE: Setting = Setting::text(
        "PARTITION_STYLE",
        Some("flat"),
        "hour folders: flat (YYYY/MM/DD/HH) or hive (year=YYYY/month=MM/day=DD/hour=HH)",
    );
    pub const FERNET_SECRET_ID: Setting = Setting::text(
        "FERNET_SECRET_ID",
        None,
        "Secrets Manager secret holding the key, or a JSON list of keys (newest first)",
    );
    pub const FERNET_KEY: Setting = Setting::text(
        "FERNET_KEY",
        None,
        "a key (or JSON list) given directly; wins over the secret",
    );
    pub const KEY_CACHE_TTL_SECONDS: Setting = Setting::number(
        "KEY_CACHE_TTL_SECONDS",
        300,
        0,
        86_400,
        "a warm function re-reads the secret after this",
    );
    pub const COMPRESSION: Setting = Setting::text(
        "COMPRESSION",
        Some("gzip"),
        "encoding of new objects: gzip (.json.gz) or zstd (.json.zst); both are always read",
    );
    pub const GZIP_LEVEL: Setting = Setting::number(
        "GZIP_LEVEL",
        DEFAULT_GZIP_LEVEL as u64,
        0,
        9,
        "gzip level of the objects",
    );
    pub const ZSTD_LEVEL: Setting = Setting::number(
        "ZSTD_LEVEL",
        DEFAULT_ZSTD_LEVEL as u64,
        1,
        19,
        "zstd level of the objects (with COMPRESSION=zstd)",
    );
    pub const START_DELAY_MS: Setting = Setting::number(
        "START_DELAY_MS",
        0,
        0,
        60_000,
        "wait before fetching (at most a quarter of the time left)",
    );
    pub const FETCH_TIMEOUT_MS: Setting = Setting::number(
        "FETCH_TIMEOUT_MS",
        10_000,
        100,
        600_000,
        "timeout of one GET, connection to last byte",
    );
    pub const FETCH_MAX_ATTEMPTS: Setting =
        Setting::number("FETCH_MAX_ATTEMPTS", 4, 1, 20, "GETs per run at most");
    pub const PUT_MAX_ATTEMPTS: Setting = Setting::number(
        "PUT_MAX_ATTEMPTS",
        5,
        1,
        20,
        "attempts per AWS call (SDK retries) and per 409 conflict",
    );
    pub const MAX_RESPONSE_BYTES: Setting = Setting::number(
        "MAX_RESPONSE_BYTES",
        64 << 20,
        1024,
        1 << 32,
        "larger responses fail the run",
    );
    pub const MAX_RECORDS_PER_RESPONSE: Setting = Setting::number(
        "MAX_RECORDS_PER_RESPONSE",
        DEFAULT_MAX_RECORDS_PER_RESPONSE,
        1,
        10_000_000,
        "a response with more records fails the run, nothing written",
    );
    pub const MAX_RECORD_BYTES: Setting = Setting::number(
        "MAX_RECORD_BYTES",
        DEFAULT_MAX_RECORD_BYTES,
        256,
        1 << 30,
        "larger source records are quarantined",
    );
    pub const MAX_NESTING_DEPTH: Setting = Setting::number(
        "MAX_NESTING_DEPTH",
        DEFAULT_MAX_DEPTH,
        1,
        512,
        "deeper plaintexts are quarantined",
    );
    pub const MAX_STRING_BYTES: Setting = Setting::number(
        "MAX_STRING_BYTES",
        DEFAULT_MAX_STRING_BYTES,
        1,
        1 << 30,
        "plaintexts with a longer string or key are quarantined",
    );
    pub const MAX_OBJECT_BYTES: Setting = Setting::number(
        "MAX_OBJECT_BYTES",
        DEFAULT_MAX_OBJECT_BYTES,
        1 << 20,
        1 << 40,
        "a stored object expanding past this is unreadable: reported, never deleted",
    );
    pub const MAX_LINE_BYTES: Setting = Setting::number(
        "MAX_LINE_BYTES",
        DEFAULT_MAX_LINE_BYTES,
        1 << 20,
        1 << 30,
        "a stored object with a longer line is unreadable: reported, never deleted",
    );
    pub const EARLIEST_YEAR: Setting = Setting::number(
        "EARLIEST_YEAR",
        DEFAULT_EARLIEST_YEAR,
        1970,
        2100,
        "records dated before this year are quarantined",
    );
    pub const MAX_HOURS_AHEAD: Setting = Setting::number(
        "MAX_HOURS_AHEAD",
        DEFAULT_MAX_HOURS_AHEAD,
        0,
        8_784,
        "records dated more hours after the run's hour are quarantined",
    );
    pub const LOG_ETL_JOB: Setting = Setting::text(
        "LOG_ETL_JOB",
        Some("ingest"),
        "what the Lambda binary does: ingest (scheduled passes), compact (closed hours), replay (quarantine) or backfill (saved responses)",
    );
    pub const COMPACT_AFTER: Setting = Setting::duration(
        "COMPACT_AFTER",
        "1h",
        30 * 86_400,
        "an hour is closed, and may be compacted, this long after it ends",
    );
    pub const COMPACT_LOOKBACK_HOURS: Setting = Setting::number(
        "COMPACT_LOOKBACK_HOURS",
        48,
        1,
        24 * 366,
        "the compaction function looks at the closed hours of this many last hours",
    );
    pub const METRICS_NAMESPACE: Setting = Setting::text(
        "METRICS_NAMESPACE",
        Some("LogEtl"),
        "CloudWatch namespace of the metrics",
    );
    /// Standard AWS SDK variable: every AWS client goes to this endpoint (a local emulator).
    pub const AWS_ENDPOINT_URL: Setting = Setting::text(
        "AWS_ENDPOINT_URL",
        None,
        "S3 and Secrets Manager at a local emulator (path-style S3)",
    );
    pub const AWS_CONNECT_TIMEOUT_MS: Setting = Setting::number(
        "AWS_CONNECT_TIMEOUT_MS",
        3_000,
        100,
        60_000,
        "time to open a connection to S3 or Secrets Manager",
    );
    pub const AWS_ATTEMPT_TIMEOUT_MS: Setting = Setting::number(
        "AWS_ATTEMPT_TIMEOUT_MS",
        10_000,
        100,
        900_000,
        "time one attempt of an AWS call may take (the SDK retries after it)",
    );
    pub const AWS_OPERATION_TIMEOUT_MS: Setting = Setting::number(
        "AWS_OPERATION_TIMEOUT_MS",
        30_000,
        100,
        900_000,
        "time one AWS call may take, retries included",
    );

    /// Every setting, in the order the README lists them.
    pub const ALL: [Setting; 32] = [
        LOG_API_URL,
        BUCKET_NAME,
        KEY_PREFIX,
        QUARANTINE_PREFIX,
        PARTITION_STYLE,
        FERNET_SECRET_ID,
        FERNET_KEY,
        KEY_CACHE_TTL_SECONDS,
        START_DELAY_MS,
        FETCH_TIMEOUT_MS,
        FETCH_MAX_ATTEMPTS,
        MAX_RESPONSE_BYTES,
        MAX_RECORDS_PER_RESPONSE,
        MAX_RECORD_BYTES,
        MAX_NESTING_DEPTH,
        MAX_STRING_BYTES,
        MAX_OBJECT_BYTES,
        MAX_LINE_BYTES,
        EARLIEST_YEAR,
        MAX_HOURS_AHEAD,
        PUT_MAX_ATTEMPTS,
        COMPRESSION,
        GZIP_LEVEL,
        ZSTD_LEVEL,
        LOG_ETL_JOB,
        COMPACT_AFTER,
        COMPACT_LOOKBACK_HOURS,
        METRICS_NAMESPACE,
        AWS_ENDPOINT_URL,
        AWS_CONNECT_TIMEOUT_MS,
        AWS_ATTEMPT_TIMEOUT_MS,
        AWS_OPERATION_TIMEOUT_MS,
    ];
}

use var::{Kind, Setting};

/// Why the configuration is unusable. Names the variable, never echoes a key or the source URL.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{var} = {value:?} is invalid: {expected}")]
    Invalid {
        var: &'static str,
        value: String,
        expected: String,
    },
    #[error("{var} is invalid: {expected} (the value is not shown: it may hold a credential)")]
    InvalidHidden {
        var: &'static str,
        expected: &'static str,
    },
    #[error("key layout: {0}")]
    Layout(#[from] LayoutError),
    #[error("neither FERNET_KEY nor FERNET_SECRET_ID is set")]
    NoKeySource,
}

/// Text that must not be printed (a key given directly).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: String) -> Self {
        Self(text)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Where the Fernet key(s) come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FernetKeySource {
    /// `FERNET_KEY`: given directly (local runs, tests); wins over the secret.
    Direct(Secret),
    /// `FERNET_SECRET_ID`: read from Secrets Manager, re-read after `ttl`.
    SecretsManager { secret_id: String, ttl: Duration },
}

/// How the source API is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchSettings {
    /// Wait before the first request (the source replaces its batch on the minute; the original
    /// script read at second 5).
    pub start_delay: Duration,
    /// Timeout of one request, connection to last byte.
    pub timeout: Duration,
    /// Requests made at most, the first included.
    pub max_attempts: u32,
    /// Largest response body accepted.
    pub max_response_bytes: usize,
    /// Most records a response may hold.
    pub max_records: u64,
}

/// Every setting of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `LOG_API_URL`; may carry a credential, so it is never printed (see [`Secret`]).
    pub api_url: Option<Secret>,
    pub bucket: Option<String>,
    /// How objects are named and encoded (`KEY_PREFIX`, `QUARANTINE_PREFIX`, `PARTITION_STYLE`,
    /// `COMPRESSION`, `GZIP_LEVEL`, `ZSTD_LEVEL`).
    pub objects: ObjectSettings,
    pub key_source: Option<FernetKeySource>,
    pub fetch: FetchSettings,
    pub put_max_attempts: u32,
    pub limits: RecordLimits,
    pub metrics_namespace: String,
    /// `AWS_ENDPOINT_URL`, when set: S3 and Secrets Manager at a local emulator.
    pub aws_endpoint_url: Option<String>,
    /// How long every S3 and Secrets Manager call may take.
    pub aws_timeouts: AwsTimeouts,
    /// What the Lambda binary does.
    pub job: Job,
    /// How closed hours are compacted.
    pub compaction: CompactionSettings,
}

/// The time limits of every AWS SDK call, so a peer that accepts a connection and never answers
/// fails the call instead of hanging the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwsTimeouts {
    /// Opening a connection.
    pub connect: Duration,
    /// One attempt, from sending the request to the end of the response.
    pub attempt: Duration,
    /// The whole call, every attempt and the waits between them included.
    pub operation: Duration,
}

/// What the Lambda binary does when invoked (`LOG_ETL_JOB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    /// A scheduled pass: fetch, decrypt, land.
    Ingest,
    /// Merge the objects of closed hours.
    Compact,
    /// Run quarantined records through the pipeline again.
    Replay,
    /// Land saved responses named by a Distributed Map's items.
    Backfill,
}

/// When an hour is closed and which hours the compaction function looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionSettings {
    /// An hour is closed this long after it ends.
    pub after: Duration,
    /// The function looks at the closed hours among this many last hours.
    pub lookback_hours: u32,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup` (the environment, or a map in tests). Empty values count
    /// as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env {
            lookup: &|name| lookup(name).filter(|v| !v.trim().is_empty()),
        };
        let layout = ObjectLayout::new(
            &env.text(var::KEY_PREFIX),
            &env.text(var::QUARANTINE_PREFIX),
            env.text(var::PARTITION_STYLE).parse::<PartitionStyle>()?,
        )?;

        let key_source = match (env.get(var::FERNET_KEY), env.get(var::FERNET_SECRET_ID)) {
            (Some(key), _) => Some(FernetKeySource::Direct(Secret::new(key))),
            (None, Some(secret_id)) => Some(FernetKeySource::SecretsManager {
                secret_id,
                ttl: Duration::from_secs(env.number(var::KEY_CACHE_TTL_SECONDS)?),
            }),
            (None, None) => None,
        };

        let api_url = env.get(var::LOG_API_URL);
        if let Some(url) = &api_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError::InvalidHidden {
                var: var::LOG_API_URL.name,
                expected: "an http:// or https:// URL",
            });
        }

        let encoding = env
            .text(var::COMPRESSION)
            .parse::<ObjectEncoding>()
            .map_err(|expected| ConfigError::Invalid {
                var: var::COMPRESSION.name,
                value: env.text(var::COMPRESSION),
                expected: expected.to_string(),
            })?;
        // Both levels are checked whichever encoding is chosen, so a switch cannot reveal a bad one.
        let (gzip_level, zstd_level) = (env.number(var::GZIP_LEVEL)?, env.number(var::ZSTD_LEVEL)?);

        Ok(Self {
            api_url: api_url.map(Secret::new),
            bucket: env.get(var::BUCKET_NAME),
            objects: ObjectSettings {
                encoding,
                level: match encoding {
                    ObjectEncoding::GzipNdjson => gzip_level,
                    ObjectEncoding::ZstdNdjson => zstd_level,
                } as u32,
                read: ReadLimits {
                    max_object_bytes: env.number(var::MAX_OBJECT_BYTES)?,
                    max_line_bytes: env.number(var::MAX_LINE_BYTES)? as usize,
                },
                ..ObjectSettings::new(layout)
            },
            key_source,
            fetch: FetchSettings {
                start_delay: Duration::from_millis(env.number(var::START_DELAY_MS)?),
                timeout: Duration::from_millis(env.number(var::FETCH_TIMEOUT_MS)?),
                max_attempts: env.number(var::FETCH_MAX_ATTEMPTS)? as u32,
                max_response_bytes: env.number(var::MAX_RESPONSE_BYTES)? as usize,
                max_records: env.number(var::MAX_RECORDS_PER_RESPONSE)?,
            },
            put_max_attempts: env.number(var::PUT_MAX_ATTEMPTS)? as u32,
            limits: RecordLimits {
                max_record_bytes: env.number(var::MAX_RECORD_BYTES)? as usize,
                parse: ParseLimits {
                    max_depth: env.number(var::MAX_NESTING_DEPTH)? as usize,
                    max_string_len: env.number(var::MAX_STRING_BYTES)? as usize,
                },
                earliest_year: env.number(var::EARLIEST_YEAR)? as i32,
                max_hours_ahead: env.number(var::MAX_HOURS_AHEAD)? as u32,
            },
            metrics_namespace: env.text(var::METRICS_NAMESPACE),
            aws_endpoint_url: env.get(var::AWS_ENDPOINT_URL),
            aws_timeouts: AwsTimeouts {
                connect: Duration::from_millis(env.number(var::AWS_CONNECT_TIMEOUT_MS)?),
                attempt: Duration::from_millis(env.number(var::AWS_ATTEMPT_TIMEOUT_MS)?),
                operation: Duration::from_millis(env.number(var::AWS_OPERATION_TIMEOUT_MS)?),
            },
            job: match env.text(var::LOG_ETL_JOB).trim() {
                "ingest" => Job::Ingest,
                "compact" => Job::Compact,
                "replay" => Job::Replay,
                "backfill" => Job::Backfill,
                other => {
                    return Err(ConfigError::Invalid {
                        var: var::LOG_ETL_JOB.name,
                        value: other.to_owned(),
                        expected: "ingest, compact, replay or backfill".to_owned(),
                    });
                }
            },
            compaction: CompactionSettings {
                after: env.duration(var::COMPACT_AFTER)?,
                lookback_hours: env.number(var::COMPACT_LOOKBACK_HOURS)? as u32,
            },
        })
    }

    /// The API URL, or the error naming its variable.
    pub fn require_api_url(&self) -> Result<&str, ConfigError> {
        self.api_url
            .as_ref()
            .map(Secret::expose)
            .ok_or(ConfigError::Missing(var::LOG_API_URL.name))
    }

    /// The bucket, or the error naming its variable.
    pub fn require_bucket(&self) -> Result<&str, ConfigError> {
        self.bucket
            .as_deref()
            .ok_or(ConfigError::Missing(var::BUCKET_NAME.name))
    }

    /// The key source, or the error naming both variables.
    pub fn require_key_source(&self) -> Result<&FernetKeySource, ConfigError> {
        self.key_source.as_ref().ok_or(ConfigError::NoKeySource)
    }
}

/// The environment as the settings read it: empty values are unset, defaults and ranges come
/// from the setting itself.
struct Env<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl Env<'_> {
    fn get(&self, setting: Setting) -> Option<String> {
        (self.lookup)(setting.name)
    }

    fn text(&self, setting: Setting) -> String {
        self.get(setting)
            .or_else(|| setting.default_text())
            .unwrap_or_default()
    }

    fn duration(&self, setting: Setting) -> Result<Duration, ConfigError> {
        let Kind::Duration { default, max_secs } = setting.kind else {
            unreachable!("{} is not a duration setting", setting.name)
        };
        let value = self.get(setting).unwrap_or_else(|| default.to_owned());
        humantime::parse_duration(value.trim())
            .ok()
            .filter(|d| d.as_secs() <= max_secs)
            .ok_or(ConfigError::Invalid {
                var: setting.name,
                value,
                expected: format!("a duration such as 90m or 1h, at most {max_secs} s"),
            })
    }

    fn number(&self, setting: Setting) -> Result<u64, ConfigError> {
        let Kind::Number { default, min, max } = setting.kind else {
            unreachable!("{} is a text setting", setting.name)
        };
        let Some(value) = self.get(setting) else {
            return Ok(default);
        };
        value
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or(ConfigError::Invalid {
                var: setting.name,
                value,
                expected: format!("a whole number from {min} to {max}"),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::encode::DEFAULT_GZIP_LEVEL;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let c = config(&[]).unwrap();
        assert_eq!(c.objects.layout.data_prefix(), "data");
        assert_eq!(c.objects.layout.quarantine_prefix(), "quarantine");
        assert_eq!(c.objects.layout.style(), PartitionStyle::Flat);
        assert_eq!(c.objects.level, DEFAULT_GZIP_LEVEL);
        assert_eq!(c.fetch.max_attempts, 4);
        assert_eq!(c.key_source, None);
        assert_eq!(c.require_bucket(), Err(ConfigError::Missing("BUCKET_NAME")));
        assert_eq!(c.require_key_source(), Err(ConfigError::NoKeySource));
    }

    #[test]
    fn direct_key_wins_over_the_secret_and_is_never_printed() {
        let c = config(&[("FERNET_KEY", "k3y"), ("FERNET_SECRET_ID", "arn:secret")]).unwrap();
        assert_eq!(
            c.key_source,
            Some(FernetKeySource::Direct(Secret::new("k3y".into())))
        );
        assert!(!format!("{c:?}").contains("k3y"));
        let c = config(&[
            ("FERNET_SECRET_ID", "arn:secret"),
            ("KEY_CACHE_TTL_SECONDS", "60"),
        ])
        .unwrap();
        assert_eq!(
            c.key_source,
            Some(FernetKeySource::SecretsManager {
                secret_id: "arn:secret".into(),
                ttl: Duration::from_secs(60)
            })
        );
    }

    #[test]
    fn every_default_is_a_valid_value() {
        // Given every setting at its default, written out
        let defaults: HashMap<String, String> = var::ALL
            .iter()
            .filter_map(|s| Some((s.name.to_owned(), s.default_text()?)))
            .collect();
        // Then the configuration reads them, and they equal what is read with nothing set
        let written = Config::from_lookup(|name| defaults.get(name).cloned()).unwrap();
        assert_eq!(written, config(&[]).unwrap());
        assert_eq!(written.compaction.after, Duration::from_secs(3600));
        assert_eq!(written.job, Job::Ingest);
        assert_eq!(
            written.aws_timeouts,
            AwsTimeouts {
                connect: Duration::from_secs(3),
                attempt: Duration::from_secs(10),
                operation: Duration::from_secs(30),
            }
        );
    }

    #[test]
    fn compression_chooses_the_encoding_and_its_own_level() {
        // Given nothing set, then gzip at GZIP_LEVEL
        let c = config(&[("ZSTD_LEVEL", "7")]).unwrap();
        assert_eq!(
            (c.objects.encoding, c.objects.level),
            (ObjectEncoding::GzipNdjson, DEFAULT_GZIP_LEVEL)
        );
        // Given zstd, then zstd at ZSTD_LEVEL (3 unless set), whatever GZIP_LEVEL says
        let c = config(&[("COMPRESSION", "zstd"), ("GZIP_LEVEL", "9")]).unwrap();
        assert_eq!(
            (c.objects.encoding, c.objects.level),
            (ObjectEncoding::ZstdNdjson, 3)
        );
        let c = config(&[("COMPRESSION", "ZSTD"), ("ZSTD_LEVEL", "19")]).unwrap();
        assert_eq!(c.objects.level, 19);
        // and a bad value of either names its variable, whichever encoding is chosen
        let err = config(&[("COMPRESSION", "brotli")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "COMPRESSION = \"brotli\" is invalid: gzip or zstd"
        );
        let err = config(&[("ZSTD_LEVEL", "22")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ZSTD_LEVEL = \"22\" is invalid: a whole number from 1 to 19"
        );
    }

    #[test]
    fn bad_values_name_their_variable() {
        let err = config(&[("GZIP_LEVEL", "11")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "GZIP_LEVEL = \"11\" is invalid: a whole number from 0 to 9"
        );
        let err = config(&[("FETCH_MAX_ATTEMPTS", "many")]).unwrap_err();
        assert!(err.to_string().starts_with("FETCH_MAX_ATTEMPTS"), "{err}");
        let err = config(&[("LOG_API_URL", "ftp://user:pw@x/?api_key=k")]).unwrap_err();
        assert!(err.to_string().starts_with("LOG_API_URL"), "{err}");
        assert!(!err.to_string().contains("pw") && !err.to_string().contains("api_key"));
        let err = config(&[("COMPACT_AFTER", "soon")]).unwrap_err();
        assert!(
            err.to_string().starts_with("COMPACT_AFTER = \"soon\""),
            "{err}"
        );
        let err = config(&[("LOG_ETL_JOB", "both")]).unwrap_err();
        assert!(
            err.to_string().ends_with("compact, replay or backfill"),
            "{err}"
        );
        assert!(matches!(
            config(&[("PARTITION_STYLE", "weekly")]),
            Err(ConfigError::Layout(_))
        ));
        assert!(matches!(
            config(&[("QUARANTINE_PREFIX", "data/bad")]),
            Err(ConfigError::Layout(LayoutError::Overlap(..)))
        ));
    }
}
