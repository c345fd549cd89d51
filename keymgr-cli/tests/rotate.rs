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
    let version = &keys[0]["status"]["versions"][0];
    assert_eq!(version["version"]["key"]["version"], "1");
    assert_eq!(version["stage"], serde_json::json!({ "stage": "active" }));
    // The env key's identity, derived from its public key.
    let address = version["identity"]["evm_address"].as_str().unwrap();
    assert_eq!(address.len(), 42, "{version}");
    // No state yet and the env backend records no creation time: the next rotation is
    // not made up (it would drift with every call).
    assert!(keys[0]["status"]["next_rotation_ms"].is_null(), "{v}");
    let text = keymgr(&["keys", "status"], &[]);
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(text.contains("next rotation: not scheduled yet"), "{text}");
    assert!(text.contains(address), "{text}");
    assert!(
        !text.contains("Some(") && !text.contains("Idle"),
        "no Debug output: {text}"
    );
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
    // A dry run makes the real run's checks: approval required and not given.
    let out = keymgr(
        &["rotate", "--key", "evm", "--now", "--dry-run", "--json"],
        &[("KEYMGR_ROTATION_APPROVAL", "true")],
    );
    assert!(out.status.success());
    let v = json(&out);
    assert_eq!(v["would_rotate"], false, "{v}");
    assert!(
        v["blocked_by"].as_str().unwrap().contains("approval"),
        "{v}"
    );
    let out = keymgr(
        &["rotate", "--key", "evm", "--now", "--dry-run", "--json"],
        &[],
    );
    assert_eq!(json(&out)["would_rotate"], true);

    let out = keymgr(
        &[
            "rotate", "approve", "--key", "evm", "--actor", "bob", "--json",
        ],
        &[("KEYMGR_ROTATION_STATE_PATH", &path)],
    );
    assert!(!out.status.success(), "nothing awaits approval");
    assert_eq!(json(&out)["error"]["kind"], "invalid_input");
    let _ = std::fs::remove_dir_all(dir);
}

/// A rotation refused because another live rotator holds the key's lease exits 75 and
/// says who holds it and until when.
#[test]
fn a_held_lease_exits_75_naming_the_holder() {
    use keymgr_rotation::{FileStateStore, LeaseOutcome, StateStore as _};
    let dir = keymgr_testkit::TempDir::new("cli-lease");
    let path = dir.path().to_string_lossy().into_owned();
    let store = FileStateStore::new(dir.path()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    // Held by this (live) test process under another holder id.
    let held = store
        .acquire_lease(
            "evm",
            "ops-host:4242",
            now,
            std::time::Duration::from_secs(300),
        )
        .unwrap();
    assert!(matches!(held, LeaseOutcome::Acquired { .. }));
    let out = keymgr(
        &["rotate", "--key", "evm", "--now", "--json"],
        &[("KEYMGR_ROTATION_STATE_PATH", &path)],
    );
    assert_eq!(out.status.code(), Some(75), "{out:?}");
    let v = json(&out);
    assert_eq!(v["error"]["kind"], "lease_held");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("ops-host:4242") && message.contains("until"),
        "{message}"
    );
    // Released: the next run gets past the lease (and meets the env backend's refusal).
    store.release_lease("evm", "ops-host:4242").unwrap();
    let out = keymgr(
        &["rotate", "--key", "evm", "--now", "--json"],
        &[("KEYMGR_ROTATION_STATE_PATH", &path)],
    );
    // Unsupported is "invalid input or unsupported": exit 9 (README, exit codes).
    assert_eq!(out.status.code(), Some(9));
    assert_eq!(json(&out)["error"]["kind"], "unsupported");
    assert_eq!(json(&out)["error"]["exit_code"], 9);
}

#[test]
fn rotate_run_needs_scheduled_rotation_enabled() {
    let out = keymgr(&["rotate", "run", "--json"], &[]);
    assert!(!out.status.success());
    let v = json(&out);
    assert_eq!(v["error"]["kind"], "config", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("KEYMGR_ROTATION_ENABLED"),
        "{v}"
    );
}

/// The scheduler runs in the foreground and stops cleanly on SIGTERM with a summary.
#[test]
fn rotate_run_stops_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("keymgr-cli-run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut child = Command::new(env!("CARGO_BIN_EXE_keymgr"))
        .args(["rotate", "run", "--key", "evm", "--json"])
        .env_remove("KEY_BACKEND")
        .env_remove("KEYMGR_AUDIT_PATH")
        .env_remove("XRP_SEED")
        .env("EVM_PRIVATE_KEY", KEY)
        .env("KEYMGR_ROTATION_ENABLED", "true")
        .env("KEYMGR_ROTATION_STATE_PATH", &dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Running: the first tick records the key's state.
    let state = dir.join("evm.json");
    let started = std::time::Instant::now();
    while !state.exists() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "the scheduler never recorded {}",
            state.display()
        );
        assert!(child.try_wait().unwrap().is_none(), "exited early");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["stopped"], true, "{stdout}");
    assert_eq!(last["keys"][0], "evm");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `rotate --now` inside the overlap of the last rotation is a policy refusal (exit 8,
/// kind `policy`, README exit codes) that says how to override it, before anything
/// reaches the backend; `--dry-run` names the same block and exits 0.
#[test]
fn rotating_inside_the_overlap_is_refused_by_policy() {
    use keymgr_rotation::{FileStateStore, KeyState, Phase, StateStore as _};
    let dir = keymgr_testkit::TempDir::new("cli-overlap");
    let path = dir.path().to_string_lossy().into_owned();
    let store = FileStateStore::new(dir.path()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut state = KeyState {
        name: "evm".into(),
        phase: Phase::Overlapping {
            old: "1".into(),
            new: "2".into(),
            until_ms: now + 86_400_000,
        },
        active: Some("2".into()),
        active_since_ms: now,
        disabled: Vec::new(),
        notice_sent_for: None,
        request: None,
        revision: 0,
    };
    store.save(&mut state).unwrap();
    let env = [("KEYMGR_ROTATION_STATE_PATH", path.as_str())];
    let out = keymgr(&["rotate", "--key", "evm", "--now", "--json"], &env);
    assert_eq!(out.status.code(), Some(8), "{out:?}");
    let v = json(&out);
    assert_eq!(v["error"]["kind"], "policy");
    assert_eq!(v["error"]["exit_code"], 8);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("--force"),
        "{v}"
    );
    // Text mode: the same exit status, the reason on stderr.
    let out = keymgr(&["rotate", "--key", "evm", "--now"], &env);
    assert_eq!(out.status.code(), Some(8));
    assert!(String::from_utf8_lossy(&out.stderr).contains("overlap"));
    // The dry run reports the block without failing.
    let v = json(&keymgr(
        &["rotate", "--key", "evm", "--now", "--dry-run", "--json"],
        &env,
    ));
    assert_eq!(v["would_rotate"], false, "{v}");
    assert!(v["blocked_by"].as_str().unwrap().contains("overlap"), "{v}");
    // With --force the policy lets it through (and the env backend's manual-rotation
    // refusal is what stops it: exit 9).
    let out = keymgr(
        &["rotate", "--key", "evm", "--now", "--force", "--json"],
        &env,
    );
    assert_eq!(out.status.code(), Some(9), "{out:?}");
}

/// An overlap that has ended is no refusal: `rotate --now` goes on to finish that
/// rotation (here the env backend's manual-rotation refusal stops it: exit 9, not 8).
#[test]
fn an_ended_overlap_is_not_a_policy_refusal() {
    use keymgr_rotation::{FileStateStore, KeyState, Phase, StateStore as _};
    let dir = keymgr_testkit::TempDir::new("cli-overlap-ended");
    let path = dir.path().to_string_lossy().into_owned();
    let store = FileStateStore::new(dir.path()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut state = KeyState {
        name: "evm".into(),
        phase: Phase::Overlapping {
            old: "1".into(),
            new: "2".into(),
            until_ms: now - 1,
        },
        active: Some("2".into()),
        active_since_ms: now - 86_400_000,
        disabled: Vec::new(),
        notice_sent_for: None,
        request: None,
        revision: 0,
    };
    store.save(&mut state).unwrap();
    let env = [("KEYMGR_ROTATION_STATE_PATH", path.as_str())];
    let out = keymgr(&["rotate", "--key", "evm", "--now", "--json"], &env);
    assert_ne!(out.status.code(), Some(8), "{out:?}");
    assert_ne!(json(&out)["error"]["kind"], "policy");
}
