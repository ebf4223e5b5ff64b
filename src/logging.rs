//! Log set-up for every binary: fields first, a short message; JSON when Lambda asks for it
//! (`AWS_LAMBDA_LOG_FORMAT=JSON`); level from `RUST_LOG`, else `AWS_LAMBDA_LOG_LEVEL`, else info.
//! Logs go to stderr, leaving stdout to results (summaries, restored records, metrics). Errors are
//! logged and reported on one line with their causes ([`error_chain`]).

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; later calls do nothing.
pub fn init() {
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| {
        let level = std::env::var("AWS_LAMBDA_LOG_LEVEL").unwrap_or_else(|_| "info".to_owned());
        EnvFilter::new(level.to_ascii_lowercase())
    });
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
