//! `keymgr health` and `keymgr sign` over `KEY_BACKENDS=aws-kms,env` when the AWS
//! member's KMS is stopped (moto's endpoint, behind a `FaultProxy` that is then stopped,
//! refuses connections): health is degraded (exit 10), the env member signs, and the
//! signature verifies with k256 under the env key. Needs moto (`cargo xtask test`).
#![cfg(all(feature = "aws", feature = "env"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
use keymgr_testkit::proxy::FaultProxy;

const KEY: &str = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";

fn keymgr(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keymgr"));
    cmd.args(args);
    for (var, _) in std::env::vars() {
        if var.starts_with("HSM_")
            || var.starts_with("EVM_")
            || var.starts_with("XRP_")
            || var.starts_with("KEYMGR_")
            || var.starts_with("KEY_BACKEND")
            || var.starts_with("AWS_KMS_")
        {
            cmd.env_remove(var);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run keymgr")
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "one JSON object ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn health_is_degraded_and_env_signs_when_the_aws_members_kms_is_stopped() {
    let Some(moto) = std::env::var("AWS_ENDPOINT_URL")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        keymgr_testkit::skip_or_fail(
            "moto's KMS server (AWS_ENDPOINT_URL)",
            "`cargo xtask test` installs moto[server] into target/keymgr-test and starts it",
        );
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let endpoint = runtime.block_on(async {
        let mut proxy = FaultProxy::start(&moto).await.unwrap();
        let url = proxy.url();
        proxy.stop().await;
        url
    });
    let env = [
        ("KEY_BACKENDS", "aws-kms,env"),
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_KMS_EVM_KEY_ID", "alias/keymgr-test/stopped"),
        ("EVM_PRIVATE_KEY", KEY),
        ("KEYMGR_HEALTH_KEYS", "evm"),
        ("KEYMGR_RETRY_MAX", "0"),
        ("KEYMGR_BREAKER_FAILURES", "1"),
    ];

    let out = keymgr(&["health", "--json"], &env);
    let v = json(&out);
    assert_eq!(out.status.code(), Some(10), "{v}");
    assert_eq!(v["aggregate"], "degraded", "{v}");
    assert_eq!(v["exit_code"], 10);
    assert_eq!(v["components"][0]["backend"], "aws-kms", "{v}");
    assert_eq!(v["components"][0]["status"], "unhealthy", "{v}");
    assert_eq!(v["components"][1]["backend"], "env", "{v}");
    assert_eq!(v["components"][1]["status"], "healthy", "{v}");
    assert!(!v.to_string().contains(&KEY[2..]));

    let digest = [0x42u8; 32];
    let out = keymgr(
        &[
            "sign",
            "--key",
            "evm",
            "--digest",
            &hex::encode(digest),
            "--json",
        ],
        &env,
    );
    let v = json(&out);
    assert!(out.status.success(), "{v}");
    let sig =
        k256::ecdsa::Signature::from_slice(&hex::decode(v["signature"].as_str().unwrap()).unwrap())
            .unwrap();
    let key = k256::ecdsa::SigningKey::from_slice(&hex::decode(&KEY[2..]).unwrap()).unwrap();
    key.verifying_key()
        .verify_prehash(&digest, &sig)
        .expect("the env member's key signed");
}
