//! The binary with `KEY_BACKEND=azure-kv` against the in-process Key Vault stand-in
//! (HTTPS, client-secret credential, 401 challenge): public key, sign, health; every
//! signature checked with k256 against the stand-in's own key.
#![cfg(feature = "azure")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
use keymgr_testkit::azure::{CLIENT_ID, StandIn, TENANT_ID};

const SECRET: &str = "cli-standin-SECRET-91d0";

async fn keymgr(stand_in: &StandIn, args: &[&str]) -> Output {
    keymgr_with(stand_in, args, &[], &[]).await
}

/// Runs the binary with the stand-in's variables, `overrides` replacing some and `unset`
/// removing others.
async fn keymgr_with(
    stand_in: &StandIn,
    args: &[&str],
    overrides: &[(&str, &str)],
    unset: &[&str],
) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keymgr"));
    cmd.args(args);
    for var in [
        "EVM_PRIVATE_KEY",
        "XRP_SEED",
        "KEYMGR_AUDIT_PATH",
        "AZURE_CREDENTIAL_KIND",
    ] {
        cmd.env_remove(var);
    }
    let ca = stand_in.ca_file().display().to_string();
    for (k, v) in [
        ("KEY_BACKEND", "azure-kv"),
        ("AZURE_VAULT_URL", &stand_in.url()),
        ("AZURE_AUTHORITY_HOST", &stand_in.url()),
        ("AZURE_EVM_KEY_NAME", "cli-evm"),
        ("AZURE_XRP_KEY_NAME", "cli-xrp"),
        ("AZURE_TENANT_ID", TENANT_ID),
        ("AZURE_CLIENT_ID", CLIENT_ID),
        ("AZURE_CLIENT_SECRET", SECRET),
        ("AZURE_KEYVAULT_VERIFY_CHALLENGE_RESOURCE", "false"),
        ("SSL_CERT_FILE", &ca),
    ] {
        cmd.env(k, v);
    }
    for (k, v) in overrides {
        cmd.env(k, v);
    }
    for k in unset {
        cmd.env_remove(k);
    }
    tokio::task::spawn_blocking(move || cmd.output().expect("run keymgr"))
        .await
        .unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).expect("one JSON object")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_signs_with_azure_key_vault() {
    let stand_in = StandIn::start(SECRET).await;
    stand_in.create_secp256k1("cli-evm");
    stand_in.create_secp256k1("cli-xrp");
    let vk = stand_in.verifying_key("cli-evm", "");

    let pk = json(&keymgr(&stand_in, &["public-key", "--key", "evm", "--json"]).await);
    assert_eq!(pk["algorithm"], "secp256k1");
    let reported = hex::decode(pk["public_key"].as_str().unwrap()).unwrap();
    assert_eq!(
        k256::ecdsa::VerifyingKey::from_sec1_bytes(&reported).unwrap(),
        vk
    );

    let digest = "5a".repeat(32);
    let out = keymgr(
        &stand_in,
        &["sign", "--key", "evm", "--digest", &digest, "--json"],
    )
    .await;
    let sig = json(&out);
    let sig = k256::ecdsa::Signature::from_slice(
        &hex::decode(sig["signature"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    vk.verify_prehash(&hex::decode(&digest).unwrap(), &sig)
        .unwrap();
    assert!(stand_in.calls("sign") >= 1);

    let out = keymgr(&stand_in, &["health", "--json"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains(SECRET));

    // The XRP key is a secp256k1 key too (Key Vault has no Ed25519).
    let pk = json(&keymgr(&stand_in, &["public-key", "--key", "xrp", "--json"]).await);
    assert_eq!(pk["algorithm"], "secp256k1");
    let reported = hex::decode(pk["public_key"].as_str().unwrap()).unwrap();
    assert_eq!(
        k256::ecdsa::VerifyingKey::from_sec1_bytes(&reported).unwrap(),
        stand_in.verifying_key("cli-xrp", "")
    );

    // Versions: `keys status` names the current Key Vault version.
    let version = stand_in.versions("cli-evm")[0].clone();
    let status = json(&keymgr(&stand_in, &["keys", "status", "--key", "evm", "--json"]).await);
    assert!(status.to_string().contains(&version), "{status}");
}

/// The error JSON a failed command prints on stdout, after checking it failed and that
/// no secret appears anywhere in its output.
fn failure(out: &Output, secrets: &[&str]) -> serde_json::Value {
    assert!(!out.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for s in secrets {
        assert!(!all.contains(s), "secret in the output: {all}");
    }
    serde_json::from_slice(&out.stdout).expect("an error JSON object")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_errors_with_azure_key_vault_are_typed_and_clean() {
    let stand_in = StandIn::start(SECRET).await;
    stand_in.create_secp256k1("cli-evm");
    stand_in.create_secp256k1("cli-xrp");
    let args = ["public-key", "--key", "evm", "--json"];
    let wrong = "wrong-cli-SECRET-0000";
    for (overrides, unset, kind, names) in [
        (
            vec![("AZURE_CLIENT_SECRET", wrong)],
            vec![],
            "access_denied",
            "evm",
        ),
        (
            vec![("AZURE_EVM_KEY_NAME", "absent-key")],
            vec![],
            "not_found",
            "evm",
        ),
        (vec![], vec!["AZURE_VAULT_URL"], "config", "AZURE_VAULT_URL"),
    ] {
        let out = keymgr_with(&stand_in, &args, &overrides, &unset).await;
        let err = failure(&out, &[SECRET, wrong]);
        assert_eq!(err["error"]["kind"], kind, "{err}");
        assert!(
            err["error"]["message"].as_str().unwrap().contains(names),
            "{err}"
        );
    }
}
