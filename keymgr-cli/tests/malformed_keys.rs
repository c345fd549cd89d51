//! Malformed key references from an operator (`--key`, settings that name keys) are
//! clean errors with the documented exit code that name what was wrong, never a panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

const KEY: &str = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
const ED_SEED: &str = "sEdSKaCy2JT7JaM7v95H9SxkhP9wS2r";
/// Texts that are not key references: empty parts, or a second `@`.
const MALFORMED: [&str; 5] = ["", "a@", "@1", "a@b@c", "@"];

fn keymgr(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keymgr"));
    cmd.args(args);
    for var in [
        "KEY_BACKEND",
        "KEY_BACKENDS",
        "KEYMGR_CONFIG",
        "KEYMGR_AUDIT_PATH",
        "KEYMGR_HEALTH_KEYS",
        "KEYMGR_HEALTH_SYMMETRIC_KEYS",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs([("EVM_PRIVATE_KEY", KEY), ("XRP_SEED", ED_SEED)]);
    cmd.envs(env.iter().copied());
    cmd.output().expect("run keymgr")
}

/// `out` failed with `code`, its message names `needle`, and nothing panicked.
fn refused(out: &Output, code: i32, needle: &str, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stderr.contains("panicked") && out.status.code() != Some(101),
        "{what}: panicked: {stderr}"
    );
    assert_eq!(out.status.code(), Some(code), "{what}: {stdout} {stderr}");
    let json: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    let message = json["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(needle), "{what}: {json}");
    for secret in [KEY.trim_start_matches("0x"), ED_SEED] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{what}"
        );
    }
}

#[test]
fn malformed_key_flags_are_invalid_input() {
    let digest = "11".repeat(32);
    for bad in MALFORMED {
        for args in [
            vec!["public-key", "--key", bad, "--json"],
            vec!["sign", "--key", bad, "--digest", &digest, "--json"],
        ] {
            let out = keymgr(&args, &[]);
            refused(&out, 9, "key", &format!("{args:?}"));
        }
    }
}

#[test]
fn malformed_key_settings_are_config_errors_naming_the_variable() {
    for bad in MALFORMED.iter().filter(|b| !b.is_empty()) {
        for (variable, value) in [
            ("KEYMGR_HEALTH_KEYS", format!("evm,{bad}")),
            ("KEYMGR_HEALTH_SYMMETRIC_KEYS", (*bad).to_owned()),
        ] {
            let out = keymgr(
                &["public-key", "--key", "evm", "--json"],
                &[("KEY_BACKENDS", "env"), (variable, &value)],
            );
            refused(&out, 3, variable, &format!("{variable}={value:?}"));
        }
    }
}
