//! Shared by the integration tests: the Python peers (reference implementations, moto) and
//! the project's binaries.
#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// The Python of the test virtual environment. Fails loudly when it is missing: these tests
/// check against real peers and must never pass without them.
pub fn python() -> PathBuf {
    let path = std::env::var_os("LOG_ETL_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    assert!(
        path.exists(),
        "Python test peers not found at {}: run scripts/python-env (scripts/test does) or set LOG_ETL_PYTHON",
        path.display()
    );
    path
}

/// Runs `tests/py/<script>` with `args`, feeding `stdin`; panics with its stderr if it fails.
pub fn run_python(script: &str, args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/py")
        .join(script);
    let mut child = Command::new(python())
        .arg(&script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", script.display()));
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs the `log-etl` binary built for this test run.
pub fn log_etl(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_log-etl"));
    cmd.args(args);
    // Only what the test sets: no key or setting leaks in from the caller's environment.
    for var in [
        "FERNET_KEY",
        "FERNET_SECRET_ID",
        "KEY_PREFIX",
        "QUARANTINE_PREFIX",
        "PARTITION_STYLE",
        "GZIP_LEVEL",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("log-etl runs")
}
