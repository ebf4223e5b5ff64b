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
