//! `keymgr config check` and configuration sources from the command line: a good and
//! a broken configuration (env backend, and the HSM backend on SoftHSM2), precedence
//! flag > environment > --env-file > config file, the inline-secret warning, and no
//! secret in any output. Canary signatures are verified again here with k256 /
//! ed25519-dalek.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
use keymgr_testkit::TempDir;
use serde_json::Value;
use sha2::Digest as _;

const KEY: &str = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
const ED_SEED: &str = "sEdSKaCy2JT7JaM7v95H9SxkhP9wS2r";
const PIN_VAR: &str = "HSM_PIN";
const CANARY: &[u8] = b"keymgr config check canary";

/// `keymgr` with none of the variables keymgr reads inherited, except `keep`.
fn keymgr(args: &[&str], env: &[(&str, &str)], keep: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keymgr"));
    cmd.args(args);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if (keymgr::config::variable(&k).is_some() || k == "KEYMGR_CONFIG")
            && !keep.contains(&k.as_str())
        {
            cmd.env_remove(&k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run keymgr")
}

fn json(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn all_output(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn setting<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("{name} missing"))
}

fn problem_variables(report: &Value) -> Vec<String> {
    let mut v: Vec<String> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["variable"].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

/// Verifies a key's canary signature with k256 / ed25519-dalek, not keymgr.
fn verify_canary(key: &Value) {
    let public_key = hex::decode(key["public_key"].as_str().unwrap()).unwrap();
    let signature = hex::decode(key["canary_signature"].as_str().unwrap()).unwrap();
    match key["algorithm"].as_str().unwrap() {
        "secp256k1" => {
            let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(&public_key).unwrap();
            let sig = k256::ecdsa::Signature::from_slice(&signature).unwrap();
            let digest: [u8; 32] = sha2::Sha256::digest(CANARY).into();
            vk.verify_prehash(&digest, &sig).unwrap();
        }
        "ed25519" => {
            let vk =
                ed25519_dalek::VerifyingKey::from_bytes(&public_key.try_into().unwrap()).unwrap();
            let sig = ed25519_dalek::Signature::from_slice(&signature).unwrap();
            vk.verify_strict(CANARY, &sig).unwrap();
        }
        other => panic!("algorithm {other}"),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn a_good_env_configuration_passes_and_every_canary_verifies() {
    let env = [("EVM_PRIVATE_KEY", KEY), ("XRP_SEED", ED_SEED)];
    let out = keymgr(&["config", "check", "--json"], &env, &[]);
    assert!(out.status.success(), "{}", all_output(&out));
    let report = json(&out);
    assert_eq!(report["schema"], 1);
    assert_eq!(report["ok"], true);
    assert_eq!(report["problems"].as_array().unwrap().len(), 0);
    let keys = report["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    for k in keys {
        assert_eq!(k["ok"], true, "{k}");
        verify_canary(k);
    }
    let evm = setting(&report, "EVM_PRIVATE_KEY");
    assert_eq!(
        (&evm["value"], &evm["origin"]),
        (&"[REDACTED]".into(), &"env".into())
    );
    assert_eq!(setting(&report, "KEY_BACKEND")["origin"], "default");
    // Text output: same verdict, no secrets.
    let out = keymgr(&["config", "check"], &env, &[]);
    assert!(out.status.success());
    let text = all_output(&out);
    assert!(text.contains("configuration OK"), "{text}");
    for secret in [&KEY[2..], ED_SEED] {
        assert!(!text.contains(secret), "secret in output: {text}");
    }
}

#[test]
fn a_broken_configuration_lists_every_problem_and_exits_3() {
    let dir = TempDir::new("config-broken");
    let file = write(
        dir.path(),
        "keymgr.toml",
        "KEYMGR_RETRY_MAX = 1000000000000\nKEYMGR_BREAKER_OPEN_SEC = 5\n",
    );
    let env = [
        ("EVM_PRIVATE_KEY", "0x1234"),
        ("XRP_SEED", ED_SEED),
        ("KEYMGR_TIMEOUT_MS", "18446744073709551615"),
        ("KEYMGR_AUDIT_DURABILITY", "sometimes"),
        ("KEYMGR_AUDIT_CHECKPOINT_KEY", "xrp"),
        ("KEYMGR_CONFIG", &file),
    ];
    let out = keymgr(&["config", "check", "--json"], &env, &[]);
    assert_eq!(out.status.code(), Some(3), "{}", all_output(&out));
    let report = json(&out);
    assert_eq!(report["ok"], false);
    assert_eq!(
        problem_variables(&report),
        [
            "EVM_PRIVATE_KEY",
            "KEYMGR_AUDIT_CHECKPOINT_KEY",
            "KEYMGR_AUDIT_DURABILITY",
            "KEYMGR_BREAKER_OPEN_SEC",
            "KEYMGR_RETRY_MAX",
            "KEYMGR_TIMEOUT_MS",
        ],
        "{report}"
    );
    assert!(!all_output(&out).contains(ED_SEED));
    let out = keymgr(&["config", "check"], &env, &[]);
    assert_eq!(out.status.code(), Some(3));
    let text = all_output(&out);
    assert!(text.contains("problems (6)"), "{text}");
    assert!(
        text.contains("did you mean KEYMGR_BREAKER_OPEN_SECS"),
        "{text}"
    );
    assert!(!text.contains(ED_SEED), "{text}");
    // Any other command refuses the same configuration.
    let out = keymgr(&["public-key", "--key", "xrp"], &env, &[]);
    assert!(!out.status.success());
}

#[test]
fn flags_beat_environment_beat_env_file_beat_config_file() {
    let dir = TempDir::new("config-stack");
    let file = write(
        dir.path(),
        "keymgr.toml",
        "KEY_BACKEND = \"hsm\"\nKEYMGR_ACTOR = \"file\"\nKEYMGR_NODE_ID = \"file\"\n\
         KEYMGR_TIMEOUT_MS = 1000\nKEYMGR_RETRY_MAX = 1\n",
    );
    let env_file = write(
        dir.path(),
        "keymgr.env",
        "KEYMGR_NODE_ID=env-file\nKEYMGR_TIMEOUT_MS=2000\n",
    );
    let env = [("EVM_PRIVATE_KEY", KEY), ("KEYMGR_ACTOR", "env")];
    let out = keymgr(
        &[
            "config",
            "check",
            "--json",
            "--backend",
            "env",
            "--config",
            &file,
            "--env-file",
            &env_file,
        ],
        &env,
        &[],
    );
    assert!(out.status.success(), "{}", all_output(&out));
    let r = json(&out);
    let got = |n: &str| {
        let s = setting(&r, n);
        (
            s["value"].as_str().unwrap().to_owned(),
            s["origin"].as_str().unwrap().to_owned(),
        )
    };
    assert_eq!(got("KEY_BACKEND"), ("env".into(), "flag".into()));
    assert_eq!(got("KEYMGR_ACTOR"), ("env".into(), "env".into()));
    assert_eq!(
        got("KEYMGR_NODE_ID"),
        ("env-file".into(), "env-file".into())
    );
    assert_eq!(got("KEYMGR_TIMEOUT_MS"), ("2000".into(), "env-file".into()));
    assert_eq!(got("KEYMGR_RETRY_MAX"), ("1".into(), "file".into()));
    assert_eq!(r["config_file"], file.as_str());

    // The file alone configures a working signer for every command.
    let file2 = write(dir.path(), "only.toml", "KEY_BACKEND = \"env\"\n");
    let out = keymgr(
        &["public-key", "--key", "evm", "--json"],
        &[("EVM_PRIVATE_KEY", KEY), ("KEYMGR_CONFIG", &file2)],
        &[],
    );
    assert!(out.status.success(), "{}", all_output(&out));
}

#[test]
fn a_secret_inline_in_the_config_file_is_warned_about_never_printed() {
    let dir = TempDir::new("config-secret");
    let file = write(
        dir.path(),
        "keymgr.toml",
        &format!("XRP_SEED = \"{ED_SEED}\"\nEVM_PRIVATE_KEY = \"{KEY}\"\n"),
    );
    let out = keymgr(&["config", "check", "--json", "--config", &file], &[], &[]);
    // A warning, not a failure: the keys work.
    assert!(out.status.success(), "{}", all_output(&out));
    let r = json(&out);
    let warnings = r["warnings"].to_string();
    assert!(
        warnings.contains("XRP_SEED") && warnings.contains("EVM_PRIVATE_KEY"),
        "{warnings}"
    );
    assert_eq!(setting(&r, "XRP_SEED")["origin"], "file");
    let all = all_output(&out);
    assert!(all.contains("WARN"), "no tracing warning: {all}");
    for secret in [&KEY[2..], ED_SEED] {
        assert!(!all.contains(secret), "secret in output: {all}");
    }
    // A syntax error is reported by file and line, without the line's text.
    let bad = write(dir.path(), "bad.toml", &format!("XRP_SEED = {ED_SEED}\n"));
    let out = keymgr(&["config", "check", "--config", &bad], &[], &[]);
    assert_eq!(out.status.code(), Some(3));
    let all = all_output(&out);
    assert!(
        all.contains("KEYMGR_CONFIG") && all.contains("line 1"),
        "{all}"
    );
    assert!(!all.contains(ED_SEED), "{all}");
}

const HSM_VARS: [&str; 6] = [
    "SOFTHSM2_CONF",
    "HSM_PKCS11_LIBRARY_PATH",
    PIN_VAR,
    "HSM_TOKEN_LABEL",
    "HSM_EVM_KEY_LABEL",
    "HSM_XRP_KEY_LABEL",
];

fn hsm_available() -> bool {
    if let Some(missing) = HSM_VARS[..5].iter().find(|v| std::env::var_os(v).is_none()) {
        keymgr_testkit::skip_or_fail(
            &format!("SoftHSM2 token ({missing} unset)"),
            "run `cargo xtask test`, or `eval \"$(cargo xtask provision)\"` first",
        );
        return false;
    }
    true
}

#[test]
fn hsm_configuration_on_softhsm2_good_and_broken() {
    if !hsm_available() {
        return;
    }
    let pin = std::env::var(PIN_VAR).unwrap();
    let out = keymgr(
        &["config", "check", "--json"],
        &[("KEY_BACKEND", "hsm")],
        &HSM_VARS,
    );
    assert!(out.status.success(), "{}", all_output(&out));
    let r = json(&out);
    let keys = r["keys"].as_array().unwrap();
    assert!(!keys.is_empty());
    for k in keys {
        assert_eq!(k["ok"], true, "{k}");
        verify_canary(k);
    }
    assert_eq!(setting(&r, PIN_VAR)["value"], "[REDACTED]");
    assert!(!all_output(&out).contains(&pin));

    // A label that is not on the token and a pool size that would abort: both
    // reported, exit 3, the PIN never printed.
    let out = keymgr(
        &["config", "check", "--json"],
        &[
            ("KEY_BACKEND", "hsm"),
            ("HSM_EVM_KEY_LABEL", "no-such-key-label"),
            ("HSM_POOL_SIZE", "1000000000000"),
        ],
        &HSM_VARS,
    );
    assert_eq!(out.status.code(), Some(3), "{}", all_output(&out));
    let r = json(&out);
    let problems = problem_variables(&r);
    assert!(problems.contains(&"HSM_POOL_SIZE".to_owned()), "{r}");
    // The missing label: refused at start-up (a problem naming it) or by its canary.
    let evm_failed = r["keys"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["key"] == "evm" && k["ok"] == false);
    assert!(
        evm_failed || problems.contains(&"HSM_EVM_KEY_LABEL".to_owned()),
        "{r}"
    );
    assert!(!all_output(&out).contains(&pin));
}
