//! `keymgr rotate` / `keymgr keys status` on the env backend: status works, rotation is a
//! clear "manual" refusal, and the state path is required for changes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

const KEY: &str = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";

fn keymgr(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keymgr"));
    cmd.args(args)
        .env_remove("KEY_BACKEND")
        .env_remove("KEYMGR_AUDIT_PATH")
        .env_remove("KEYMGR_ROTATION_STATE_PATH")
        .env_remove("XRP_SEED")
        .env("EVM_PRIVATE_KEY", KEY);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn keys_status_lists_versions_and_schedule() {
    let out = keymgr(&["keys", "status", "--json"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    let keys = v["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "only evm is configured: {v}");
    assert_eq!(keys[0]["key"], "evm");
    assert_eq!(keys[0]["status"]["versions"][0]["key"]["version"], "1");
    assert!(keys[0]["status"]["next_rotation_ms"].as_u64().unwrap() > 0);
}

#[test]
fn rotation_needs_a_state_path_and_env_keys_rotate_manually() {
    let out = keymgr(&["rotate", "--key", "evm", "--now", "--json"], &[]);
    assert!(!out.status.success());
    let v = json(&out);
    assert_eq!(v["error"]["kind"], "config");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("KEYMGR_ROTATION_STATE_PATH")
    );

    let dir = std::env::temp_dir().join(format!("keymgr-cli-rotate-{}", std::process::id()));
    let path = dir.to_string_lossy().into_owned();
    let out = keymgr(
        &["rotate", "--key", "evm", "--now", "--json"],
        &[("KEYMGR_ROTATION_STATE_PATH", &path)],
    );
    assert!(!out.status.success());
    let v = json(&out);
    assert_eq!(v["error"]["kind"], "unsupported");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("manual"),
        "{v}"
    );

    let out = keymgr(&["rotate", "--key", "evm", "--dry-run", "--json"], &[]);
    assert!(out.status.success());
    assert_eq!(json(&out)["would_rotate"], false);

    let out = keymgr(
        &["rotate", "approve", "--key", "evm", "--json"],
        &[("KEYMGR_ROTATION_STATE_PATH", &path)],
    );
    assert!(!out.status.success(), "nothing awaits approval");
    assert_eq!(json(&out)["error"]["kind"], "invalid_input");
    let _ = std::fs::remove_dir_all(dir);
}
