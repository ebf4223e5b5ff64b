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

/// An error and every cause under it, on one line: `error: cause: cause…`.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
