//! What `audit export` shows about each signature: the key version that signed and, for
//! adapters, typed fields saying what was signed (EVM transaction, typed data, message,
//! authorization; XRPL channel claim), with the actor, and no payload or secret.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use alloy_consensus::{SignableTransaction as _, TxEnvelope};
use alloy_eips::eip2718::Decodable2718 as _;
use keymgr_testkit::TempDir;
use serde_json::{Value, json};

/// web3.js documentation key (public test vector).
const EVM_KEY: &str = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
/// ripple-keypairs fixture seed (public test vector).
const XRP_SEED: &str = "sEdSKaCy2JT7JaM7v95H9SxkhP9wS2r";
const CHANNEL: &str = "5DB01B7FFED6B67E6B0414DED11E051D2EE2B7619CE0EAA6286D67A3A4D5BDB3";
const USDC: &str = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48";

fn keymgr(args: &[&str], log: &Path, stdin_file: Option<&Path>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keymgr"));
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("KEYMGR_") || k == "KEY_BACKEND" {
            cmd.env_remove(k);
        }
    }
    cmd.env("EVM_PRIVATE_KEY", EVM_KEY)
        .env("XRP_SEED", XRP_SEED)
        .env("KEYMGR_AUDIT_PATH", log)
        .env("KEYMGR_ACTOR", "alice@ops")
        .env("RUST_LOG", "error");
    if let Some(f) = stdin_file {
        cmd.stdin(std::fs::File::open(f).unwrap());
    }
    let out = cmd.output().expect("run keymgr");
    assert!(
        out.status.success(),
        "keymgr {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn exported(log: &Path) -> Vec<Value> {
    let out = keymgr(&["audit", "export", log.to_str().unwrap()], log, None);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The SIGN_REQUEST and SIGN_SUCCESS entries of the `n`-th signature (0-based).
fn signature(entries: &[Value], n: usize) -> (&Value, &Value) {
    let requests: Vec<_> = entries
        .iter()
        .filter(|e| e["event"] == "SIGN_REQUEST")
        .collect();
    let successes: Vec<_> = entries
        .iter()
        .filter(|e| e["event"] == "SIGN_SUCCESS")
        .collect();
    (requests[n], successes[n])
}

#[test]
fn exported_signatures_carry_version_actor_and_typed_context() {
    let dir = TempDir::new("cli-audit-context");
    let log = dir.path().join("log");

    // 1. An EIP-1559 transaction.
    let tx = dir.path().join("tx.json");
    std::fs::write(
        &tx,
        json!({
            "to": USDC, "value": "0x2386f26fc10000", "nonce": "0x2a", "gas": "0x186a0",
            "maxFeePerGas": "0x77359400", "maxPriorityFeePerGas": "0x3b9aca00",
            "chainId": "0x2105",
        })
        .to_string(),
    )
    .unwrap();
    let out = keymgr(
        &["evm", "sign-tx", "--file", tx.to_str().unwrap(), "--json"],
        &log,
        None,
    );
    let signed: Value = serde_json::from_slice(&out.stdout).unwrap();

    // 2. EIP-712 typed data.
    let typed = dir.path().join("typed.json");
    std::fs::write(
        &typed,
        json!({
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"}
                ],
                "Mail": [{"name": "contents", "type": "string"}]
            },
            "primaryType": "Mail",
            "domain": {
                "name": "Ether Mail", "version": "1", "chainId": 1,
                "verifyingContract": "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC"
            },
            "message": {"contents": "Hello, Bob!"}
        })
        .to_string(),
    )
    .unwrap();
    keymgr(
        &["evm", "sign-typed-data", "--file", typed.to_str().unwrap()],
        &log,
        None,
    );
    // 3. A personal message; 4. an XRPL claim.
    keymgr(&["evm", "sign-message", "hello"], &log, None);
    keymgr(
        &[
            "xrp",
            "sign-claim",
            "--channel",
            CHANNEL,
            "--amount",
            "1000000",
        ],
        &log,
        None,
    );

    let entries = exported(&log);
    for e in &entries {
        assert_eq!(e["actor"], "alice@ops", "every entry has the actor: {e}");
    }

    let (request, success) = signature(&entries, 0);
    assert_eq!(success["key_version"], "1", "{success}");
    let expected = json!({
        "kind": "evm_transaction",
        "chain_id": 8453,
        "tx_type": 2,
        "to": USDC,
        "value": "10000000000000000",
        "nonce": 42,
    });
    for (k, v) in expected.as_object().unwrap() {
        assert_eq!(&success["context"][k], v, "{k}: {success}");
        assert_eq!(&request["context"][k], v, "{k}: {request}");
    }
    // The signing hash recorded is that of the transaction the CLI put out (decoded
    // from its raw bytes by alloy, not by keymgr).
    let raw = hex::decode(signed["raw"].as_str().unwrap().trim_start_matches("0x")).unwrap();
    let envelope = TxEnvelope::decode_2718(&mut raw.as_slice()).unwrap();
    let expected_hash = envelope.as_eip1559().unwrap().tx().signature_hash();
    assert_eq!(
        success["context"]["signing_hash"],
        hex::encode(expected_hash),
        "{success}"
    );

    let (_, success) = signature(&entries, 1);
    assert_eq!(success["key_version"], "1");
    assert_eq!(success["context"]["kind"], "evm_typed_data");
    assert_eq!(success["context"]["primary_type"], "Mail");
    assert_eq!(
        success["context"]["domain"],
        json!({
            "name": "Ether Mail", "version": "1", "chain_id": "1",
            "verifying_contract": "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC"
        })
    );

    let (_, success) = signature(&entries, 2);
    assert_eq!(
        success["context"],
        json!({"kind": "evm_message", "message_len": 5})
    );

    let (request, success) = signature(&entries, 3);
    assert_eq!(success["key"], "xrp");
    assert_eq!(success["key_version"], "1");
    let claim = json!({
        "kind": "xrp_channel_claim", "channel_id": CHANNEL, "amount_drops": 1_000_000
    });
    assert_eq!(success["context"], claim);
    assert_eq!(request["context"], claim);

    // The log still verifies with the new fields, and holds no secret.
    let out = keymgr(
        &["--json", "audit", "verify", log.to_str().unwrap()],
        &log,
        None,
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["report"]["entries"], entries.len(), "{report}");
    let all = serde_json::to_string(&entries).unwrap();
    assert!(!all.contains(&EVM_KEY[2..]) && !all.contains(XRP_SEED));
}
