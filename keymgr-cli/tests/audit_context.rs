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

/// Writes `request` to a file in `dir` and signs it with `evm sign-tx --json`.
fn sign_tx(dir: &Path, log: &Path, name: &str, request: &Value) -> Value {
    let file = dir.join(name);
    std::fs::write(&file, request.to_string()).unwrap();
    let out = keymgr(
        &["evm", "sign-tx", "--file", file.to_str().unwrap(), "--json"],
        log,
        None,
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `audit export` shows, for each signed transaction, the hash of the signed envelope:
/// what alloy computes from the raw transaction the CLI put out, and what eth-account
/// computes signing the same request on its own; legacy, EIP-1559 and EIP-7702.
#[test]
fn exported_transactions_carry_the_transaction_hash() {
    let dir = TempDir::new("cli-audit-txhash");
    let log = dir.path().join("log");
    let out = keymgr(
        &[
            "evm",
            "sign-authorization",
            "--chain-id",
            "1",
            "--address",
            "0x5FbDB2315678afecb367f032d93F642f64180aa3",
            "--nonce",
            "43",
            "--json",
        ],
        &log,
        None,
    );
    let authorization =
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["authorization"].clone();
    let base = json!({
        "to": USDC, "value": "0x2386f26fc10000", "nonce": "0x2a", "gas": "0x186a0",
        "chainId": "0x1",
    });
    let mut legacy = base.clone();
    legacy["gasPrice"] = json!("0x3b9aca00");
    let mut eip1559 = base.clone();
    eip1559["maxFeePerGas"] = json!("0x77359400");
    eip1559["maxPriorityFeePerGas"] = json!("0x3b9aca00");
    let mut eip7702 = eip1559.clone();
    eip7702["to"] = json!("0x2c7536E3605D9C16a7a3D7b1898e529396a65c23");
    eip7702["authorizationList"] = json!([authorization]);

    let mut expected = Vec::new();
    for (i, request) in [&legacy, &eip1559, &eip7702].into_iter().enumerate() {
        let signed = sign_tx(dir.path(), &log, &format!("tx{i}.json"), request);
        let raw = hex::decode(signed["raw"].as_str().unwrap().trim_start_matches("0x")).unwrap();
        // alloy, from the raw bytes alone.
        let envelope = TxEnvelope::decode_2718(&mut raw.as_slice()).unwrap();
        let hash = hex::encode(envelope.tx_hash());
        if let Some(python) = keymgr_testkit::verifiers::python() {
            let theirs: Value = serde_json::from_str(&keymgr_testkit::verifiers::run(
                &python,
                "sign-tx",
                &[EVM_KEY, &request.to_string()],
            ))
            .unwrap();
            assert_eq!(theirs["raw"], signed["raw"], "{request}");
            assert_eq!(
                theirs["hash"],
                format!("0x{hash}"),
                "eth-account: {request}"
            );
        }
        expected.push((u64::from(u8::from(envelope.tx_type())), hash));
    }

    let entries = exported(&log);
    let recorded: Vec<_> = entries
        .iter()
        .filter(|e| e["event"] == "SIGN_SUCCESS" && e["context"]["kind"] == "evm_transaction")
        .map(|e| {
            (
                e["context"]["tx_type"].as_u64().unwrap(),
                e["context"]["tx_hash"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(recorded, expected);
    assert_eq!(
        expected.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
        [0, 2, 4]
    );
}

/// `keymgr sign --digest` and `--message` record what they signed (a raw digest, a raw
/// message of that length), so no signing entry of the CLI has a `null` context.
#[test]
fn cli_sign_records_raw_digest_and_raw_message() {
    let dir = TempDir::new("cli-audit-raw");
    let log = dir.path().join("log");
    let digest = "11".repeat(32);
    keymgr(&["sign", "--key", "evm", "--digest", &digest], &log, None);
    keymgr(
        &["sign", "--key", "xrp", "--message", "68656c6c6f"],
        &log,
        None,
    );
    keymgr(&["evm", "sign-message", "hello"], &log, None);
    let entries = exported(&log);
    let signing: Vec<_> = entries
        .iter()
        .filter(|e| e["event"] == "SIGN_REQUEST" || e["event"] == "SIGN_SUCCESS")
        .collect();
    assert_eq!(signing.len(), 6);
    for e in &signing {
        assert!(e["context"].is_object(), "no context: {e}");
    }
    let (request, success) = signature(&entries, 0);
    assert_eq!(success["context"], json!({"kind": "raw_digest"}));
    assert_eq!(request["context"], success["context"]);
    assert_eq!(
        success["payload_sha256"],
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
            hex::decode(&digest).unwrap()
        ))
    );
    let (_, success) = signature(&entries, 1);
    assert_eq!(
        success["context"],
        json!({"kind": "raw_message", "message_len": 5})
    );
    let (_, success) = signature(&entries, 2);
    assert_eq!(success["context"]["kind"], "evm_message");
}
