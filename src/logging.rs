//! Log set-up for every binary: fields first, a short message; JSON when Lambda asks for it
//! (`AWS_LAMBDA_LOG_FORMAT=JSON`); level from `RUST_LOG`, else `AWS_LAMBDA_LOG_LEVEL`, else info
//! (the command line: `RUST_LOG`, else `-v`, else warnings on a terminal and info elsewhere).
//! Logs go to stderr, leaving stdout to results (summaries, restored records, metrics). Errors are
//! logged and reported on one line with their causes ([`error_chain`]).

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; later calls do nothing.
pub fn init() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL").unwrap_or_else(|_| "info".to_owned());
    install(&level);
}

/// Installs the global subscriber of the command line. `RUST_LOG` wins; else each `-v` raises
/// the level (1 info, 2 debug, 3 trace); else a terminal gets warnings only, so progress and
/// summaries are not interleaved with timestamped lines, and anything else (a pipe, a file, a
/// CI log) gets info, as the Lambda does.
pub fn init_cli(verbosity: u8, stderr_is_terminal: bool) {
    let level = match (verbosity, stderr_is_terminal) {
        (0, true) => "warn",
        (0, false) | (1, _) => "info",
        (2, _) => "debug",
        _ => "trace",
    };
    install(level);
}

fn install(default_level: &str) {
    let filter = EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| EnvFilter::new(default_level.to_ascii_lowercase()));
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        builder.compact().try_init()
    };
}

/// An error and its causes, on one line: `error: cause: cause…`. A cause whose text the line
/// already holds ends it: what lies under it is the detail of something already said (an S3
/// error's code and message, above the SDK's own error). The whole error is its `Debug`, logged
/// at debug level by the callers that report it.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if said.is_empty() || text.contains(&said) {
            break;
        }
        text.push_str(": ");
        text.push_str(&said);
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct Layer {
        text: &'static str,
        #[source]
        under: Option<Box<Layer>>,
    }

    fn chain(texts: &[&'static str]) -> Layer {
        texts
            .iter()
            .rev()
            .fold(None, |under, text| {
                Some(Layer {
                    text,
                    under: under.map(Box::new),
                })
            })
            .unwrap()
    }

    #[test]
    fn every_cause_is_on_the_line_until_one_repeats_what_it_says() {
        // Given an error whose causes are new, and one whose second cause repeats the first's
        let new = chain(&["writing failed", "disk full"]);
        let repeated = chain(&[
            "GetObject s3://b/k failed: NoSuchBucket (HTTP 404)",
            "NoSuchBucket (HTTP 404)",
            "service error",
            "long SDK detail",
        ]);
        // When each is put on one line
        // Then the first keeps every cause and the second stops where the repetition starts
        assert_eq!(error_chain(&new), "writing failed: disk full");
        assert_eq!(
            error_chain(&repeated),
            "GetObject s3://b/k failed: NoSuchBucket (HTTP 404)"
        );
    }
}
