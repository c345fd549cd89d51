//! A new operator's path from the command line: `keymgr config check` on a broken
//! configuration, `keymgr demo`, then `cargo xtask provision` (SoftHSM2 token and moto's
//! KMS with demo keys), `config check` on exactly the variables it printed, then signing
//! on both with them. Every signature is checked by alloy (EIP-191
//! recovery) and ed25519-dalek (XRPL claims), not by keymgr.
//!
//! `cargo xtask test` provisions the stand-ins and passes the file the variables were
//! saved to (`KEYMGR_DEMO_ENV_FILE`, the same text `cargo xtask provision` prints).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

use serde_json::Value;

const CHANNEL: &str = "5DB01B7FFED6B67E6B0414DED11E051D2EE2B7619CE0EAA6286D67A3A4D5BDB3";
const MESSAGE: &str = "keymgr operator path";

/// The `export NAME='value'` lines `cargo xtask provision` printed, parsed as a shell would.
fn provisioned() -> Option<Vec<(String, String)>> {
    let Some(path) = std::env::var_os("KEYMGR_DEMO_ENV_FILE") else {
        keymgr_testkit::skip_or_fail(
            "the provisioned demo stand-ins (KEYMGR_DEMO_ENV_FILE unset)",
            "run `cargo xtask test`, or `cargo xtask provision` and set KEYMGR_DEMO_ENV_FILE \
             to target/keymgr-test/provision/demo.env",
        );
        return None;
    };
    let text = std::fs::read_to_string(&path).expect("read the provisioned variables");
    let vars: Vec<(String, String)> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (name, value) = l
                .strip_prefix("export ")
                .and_then(|l| l.split_once('='))
                .unwrap_or_else(|| panic!("not an export line: {l}"));
            let value = value
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .unwrap_or_else(|| panic!("unquoted value: {l}"))
                .replace(r"'\''", "'");
            (name.to_owned(), value)
        })
        .collect();
    Some(vars)
}

/// Runs keymgr with only the provisioned variables (plus KEY_BACKEND) from the outside.
fn keymgr(args: &[&str], backend: &str, vars: &[(String, String)]) -> Value {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keymgr"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("KEY_BACKEND", backend)
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .args(args)
        .arg("--json");
    let out: Output = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{backend} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["schema"], 1);
    v
}

/// `keymgr config check --json` with `args` and only `vars` in the environment: (exit
/// status, report).
fn config_check(args: &[&str], vars: &[(String, String)]) -> (Option<i32>, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_keymgr"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .args(["config", "check", "--json"])
        .args(args)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stderr));
    });
    assert_eq!(v["schema"], 1);
    (out.status.code(), v)
}

fn problem_variables(report: &Value) -> Vec<&str> {
    report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["variable"].as_str().unwrap_or("?"))
        .collect()
}

/// A first configuration with the usual mistakes: a misspelt name in the file (so the
/// HSM token is not configured), a retry count out of range. `config check` lists every one by name
/// and exits 3 (configuration), printing no secret.
fn broken_configuration_is_reported_whole() {
    let dir = std::env::temp_dir().join(format!("keymgr-operator-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("keymgr.toml");
    std::fs::write(
        &file,
        "KEY_BACKEND = \"hsm\"\nHSM_TOKEN_LABLE = \"keymgr\"\nKEYMGR_RETRY_MAX = 99\n",
    )
    .unwrap();
    let vars = [(
        "HSM_PKCS11_LIBRARY_PATH".to_owned(),
        "/nonexistent/libsofthsm2.so".to_owned(),
    )];
    let (code, report) = config_check(&["--config", file.to_str().unwrap()], &vars);
    assert_eq!(code, Some(3), "{report}");
    assert_eq!(report["ok"], false);
    let names = problem_variables(&report);
    // The misspelt name, the value out of range, and the token the misspelling left
    // unset.
    for expected in ["HSM_TOKEN_LABLE", "KEYMGR_RETRY_MAX", "HSM_TOKEN_LABEL"] {
        assert!(
            names.iter().any(|n| n.contains(expected)),
            "{expected} not among the problems {names:?}"
        );
    }
    let misspelt = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["variable"] == "HSM_TOKEN_LABLE")
        .unwrap();
    assert!(
        misspelt["reason"]
            .as_str()
            .unwrap()
            .contains("did you mean HSM_TOKEN_LABEL"),
        "{misspelt}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The printed variables pass `config check` for `backend`: no problem, and both keys'
/// canaries signed and verified (re-checked here with k256 / ed25519-dalek).
fn good_configuration_passes(backend: &str, vars: &[(String, String)]) {
    let mut vars = vars.to_vec();
    vars.push(("KEY_BACKEND".to_owned(), backend.to_owned()));
    let (code, report) = config_check(&[], &vars);
    assert_eq!(code, Some(0), "{backend}: {report}");
    assert_eq!(report["ok"], true, "{report}");
    let keys = report["keys"].as_array().unwrap();
    assert_eq!(
        keys.len(),
        2,
        "{backend}: evm and xrp are checked: {report}"
    );
    for k in keys {
        let pk = hex::decode(k["public_key"].as_str().unwrap()).unwrap();
        let sig = hex::decode(k["canary_signature"].as_str().unwrap()).unwrap();
        if k["algorithm"] == "ed25519" {
            let vk = ed25519_dalek::VerifyingKey::from_bytes(&pk.try_into().unwrap()).unwrap();
            let sig = ed25519_dalek::Signature::from_slice(&sig).unwrap();
            vk.verify_strict(b"keymgr config check canary", &sig)
                .unwrap_or_else(|e| panic!("{backend}: canary does not verify: {e}"));
        } else {
            use k256::ecdsa::signature::DigestVerifier as _;
            use sha2::Digest as _;
            let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(&pk).unwrap();
            let sig = k256::ecdsa::Signature::from_slice(&sig).unwrap();
            vk.verify_digest(
                sha2::Sha256::new_with_prefix(b"keymgr config check canary"),
                &sig,
            )
            .unwrap_or_else(|e| panic!("{backend}: canary does not verify: {e}"));
        }
    }
    // Secrets are redacted: the PIN is set and never printed.
    for setting in report["settings"].as_array().unwrap() {
        if setting["secret"] == true {
            assert!(
                setting["value"].is_null() || setting["value"] == "[REDACTED]",
                "{setting}"
            );
        }
    }
    let pin = &vars.iter().find(|(k, _)| k == "HSM_PIN").unwrap().1;
    assert!(!report.to_string().contains(&format!("\"{pin}\"")));
}

fn check_evm(backend: &str, vars: &[(String, String)]) {
    let address: alloy_primitives::Address = keymgr(&["evm", "address"], backend, vars)["address"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let v = keymgr(&["evm", "sign-message", MESSAGE], backend, vars);
    let sig: alloy_primitives::Signature = v["signature"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        sig.recover_address_from_msg(MESSAGE).unwrap(),
        address,
        "{backend}: alloy recovers the EVM address"
    );
}

fn check_xrp(backend: &str, vars: &[(String, String)]) {
    let pk = keymgr(&["xrp", "public-key"], backend, vars);
    let public_key = hex::decode(pk["public_key"].as_str().unwrap()).unwrap();
    assert_eq!(
        public_key[0], 0xED,
        "{backend}: the demo XRP key is Ed25519"
    );
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&public_key[1..].try_into().unwrap()).unwrap();
    let v = keymgr(
        &[
            "xrp",
            "sign-claim",
            "--channel",
            CHANNEL,
            "--amount",
            "2500",
        ],
        backend,
        vars,
    );
    let mut claim = b"CLM\0".to_vec();
    claim.extend(hex::decode(CHANNEL).unwrap());
    claim.extend(2500u64.to_be_bytes());
    let signature = hex::decode(v["signature"].as_str().unwrap()).unwrap();
    let signature = ed25519_dalek::Signature::from_slice(&signature).unwrap();
    vk.verify_strict(&claim, &signature)
        .unwrap_or_else(|e| panic!("{backend}: ed25519-dalek rejects the claim: {e}"));
}

#[test]
fn demo_then_provisioned_hsm_and_kms() {
    // 0. A broken first configuration: every problem at once, by name.
    broken_configuration_is_reported_whole();

    // 1. The demo needs nothing.
    let dir = std::env::temp_dir().join(format!("keymgr-operator-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_keymgr"))
        .args(["demo", "--audit-dir"])
        .arg(&dir)
        .env_remove("KEY_BACKEND")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("cargo xtask provision"));
    let _ = std::fs::remove_dir_all(&dir);

    // 2. The printed variables, on SoftHSM2 and on moto's KMS.
    let Some(vars) = provisioned() else { return };
    for name in [
        "HSM_TOKEN_LABEL",
        "HSM_PIN",
        "AWS_ENDPOINT_URL",
        "AWS_KMS_EVM_KEY_ID",
    ] {
        assert!(vars.iter().any(|(k, _)| k == name), "{name} is printed");
    }
    for backend in ["hsm", "aws-kms"] {
        good_configuration_passes(backend, &vars);
        check_evm(backend, &vars);
        check_xrp(backend, &vars);
    }
}
