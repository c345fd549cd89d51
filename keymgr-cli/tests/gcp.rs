//! The `keymgr` binary with `KEY_BACKEND=gcp-kms`, against the Cloud KMS stand-in
//! (served from this test process). Signatures are verified with k256 and
//! ed25519-dalek from the public keys the CLI printed.
#![cfg(feature = "gcp")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
use keymgr_testkit::gcp::{Algorithm, StandIn};

fn keymgr(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keymgr"));
    cmd.args(args);
    for (var, _) in std::env::vars() {
        if var.starts_with("GCP_") || var.starts_with("KEYMGR_") || var == "KEY_BACKEND" {
            cmd.env_remove(var);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run keymgr")
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

#[test]
fn sign_public_key_health_and_versions_with_gcp_kms() {
    // The stand-in runs on this runtime's worker threads while the CLI runs.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let stand_in = runtime.block_on(StandIn::start());
    stand_in.create_key("evm-key", Algorithm::Secp256k1);
    let xrp = stand_in.create_key("xrp-key", Algorithm::Ed25519);
    let env = [
        ("KEY_BACKEND", "gcp-kms".to_owned()),
        ("GCP_PROJECT_ID", "keymgr-test".to_owned()),
        ("GCP_LOCATION_ID", "us-east1".to_owned()),
        ("GCP_KEY_RING_ID", "standin".to_owned()),
        ("GCP_KMS_EVM_KEY_ID", "evm-key".to_owned()),
        ("GCP_KMS_XRP_KEY_ID", xrp),
        ("GCP_KMS_ENDPOINT", stand_in.endpoint()),
    ];

    let pk = json(&keymgr(&["public-key", "--key", "evm", "--json"], &env));
    assert_eq!(pk["algorithm"], "secp256k1");
    let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(
        &hex::decode(pk["public_key"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    let digest = "5a".repeat(32);
    let sig = json(&keymgr(
        &["sign", "--key", "evm", "--digest", &digest, "--json"],
        &env,
    ));
    let sig = k256::ecdsa::Signature::from_slice(
        &hex::decode(sig["signature"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    vk.verify_prehash(&hex::decode(&digest).unwrap(), &sig)
        .unwrap();

    let pk = json(&keymgr(&["public-key", "--key", "xrp", "--json"], &env));
    assert_eq!(pk["algorithm"], "ed25519");
    let msg = hex::encode(b"claim");
    let sig = json(&keymgr(
        &["sign", "--key", "xrp", "--message", &msg, "--json"],
        &env,
    ));
    let vk = ed25519_dalek::VerifyingKey::from_bytes(
        &hex::decode(pk["public_key"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap(),
    )
    .unwrap();
    let sig: [u8; 64] = hex::decode(sig["signature"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    vk.verify_strict(b"claim", &ed25519_dalek::Signature::from_bytes(&sig))
        .unwrap();

    let health = json(&keymgr(&["health", "--json"], &env));
    assert!(health.to_string().contains("gcp-kms"), "{health}");
    let status = json(&keymgr(&["keys", "status", "--key", "evm", "--json"], &env));
    assert!(status.to_string().contains("evm"), "{status}");
    assert!(stand_in.calls("asymmetricSign") >= 2);

    // A configuration error names the variable.
    let mut bad = env.to_vec();
    bad.retain(|(k, _)| *k != "GCP_KEY_RING_ID");
    let out = keymgr(&["public-key", "--key", "evm", "--json"], &bad);
    assert!(!out.status.success());
    let err: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(err["error"]["kind"], "config", "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("GCP_KEY_RING_ID"),
        "{err}"
    );
}
