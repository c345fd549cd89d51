//! A new operator's path from the command line: `keymgr demo`, then `cargo xtask
//! provision` (SoftHSM2 token and moto's KMS with demo keys), then signing on both with
//! exactly the variables it printed. Every signature is checked by alloy (EIP-191
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
        check_evm(backend, &vars);
        check_xrp(backend, &vars);
    }
}
