//! Independent right values from eth-account, xrpl-py and coincurve (pinned in
//! `keymgr-testkit/verifiers/constraints.txt`; `cargo xtask provision --test-env` installs them and
//! sets `KEYMGR_VERIFIERS_PYTHON`). Each call runs `verifiers/verify.py` once and returns
//! its JSON output as text.
//!
//! Never use xrpl-py to judge a rejection: it accepts malleated and non-canonical
//! signatures.

use std::path::PathBuf;
use std::process::Command;

/// Variable `cargo xtask` sets to the verifier virtualenv's Python.
pub const PYTHON_VAR: &str = "KEYMGR_VERIFIERS_PYTHON";

/// The verifier script (see its docstring for the commands).
pub const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/verifiers/verify.py");

/// The verifier Python, or `None` after [`skip_or_fail`](crate::skip_or_fail) (the test
/// should return; under `cargo xtask test` it panics instead).
pub fn python() -> Option<PathBuf> {
    match std::env::var_os(PYTHON_VAR) {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            crate::skip_or_fail(
                "the Python verifiers (eth-account, xrpl-py, coincurve)",
                "run `cargo xtask provision --test-env` and export KEYMGR_VERIFIERS_PYTHON",
            );
            None
        }
    }
}

/// Runs `verify.py COMMAND ARGS...` with `python` and returns its stdout (one JSON
/// object). Panics with the script's stderr when it fails.
pub fn run(python: &std::path::Path, command: &str, args: &[&str]) -> String {
    let out = Command::new(python)
        .arg(SCRIPT)
        .arg(command)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        out.status.success(),
        "verify.py {command} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("verify.py prints UTF-8")
}
