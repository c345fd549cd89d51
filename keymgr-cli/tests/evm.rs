//! `keymgr evm`: every signature is recovered with alloy's own code to the key's address.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

use alloy_consensus::transaction::SignerRecoverable as _;
use alloy_eips::eip2718::Decodable2718 as _;
use alloy_primitives::{Address, Signature, address};

/// web3.js documentation key and its address.
const KEY: &str = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
const ADDRESS: Address = address!("2c7536E3605D9C16a7a3D7b1898e529396a65c23");

fn keymgr(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keymgr"))
        .args(args)
        .env_remove("KEY_BACKEND")
        .env_remove("KEYMGR_AUDIT_PATH")
        .env_remove("XRP_SEED")
        .env("EVM_PRIVATE_KEY", KEY)
        .output()
        .unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `keymgr evm sign-tx --file FILE EXTRA... --json`.
fn sign_tx(file: &std::path::Path, extra: &[&str]) -> Output {
    let mut args = vec!["evm", "sign-tx", "--file", file.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.push("--json");
    keymgr(&args)
}

/// The `{"error": ...}` object of a command that must fail.
fn error(out: &Output) -> serde_json::Value {
    assert!(!out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["error"].clone()
}

/// The signed transaction in `sign-tx` output, recovered (with alloy) to the key's
/// address.
fn signed_tx(v: &serde_json::Value) -> alloy_consensus::TxEnvelope {
    let raw = hex::decode(v["raw"].as_str().unwrap().trim_start_matches("0x")).unwrap();
    let envelope = alloy_consensus::TxEnvelope::decode_2718(&mut raw.as_slice()).unwrap();
    assert_eq!(envelope.recover_signer().unwrap(), ADDRESS);
    envelope
}

fn signature(v: &serde_json::Value) -> Signature {
    let bytes = hex::decode(v["signature"].as_str().unwrap().trim_start_matches("0x")).unwrap();
    Signature::from_raw(&bytes).unwrap()
}

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("keymgr-cli-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn address_is_derived_from_the_backend_key() {
    let v = json(&keymgr(&["evm", "address", "--json"]));
    assert_eq!(v["address"], ADDRESS.to_checksum(None));
    assert_eq!(v["key"], "evm@1");
}

#[test]
fn eip191_message_recovers_to_the_address() {
    let v = json(&keymgr(&[
        "evm",
        "sign-message",
        "hello settlement",
        "--json",
    ]));
    let sig = signature(&v);
    assert_eq!(
        sig.recover_address_from_msg("hello settlement").unwrap(),
        ADDRESS
    );
}

#[test]
fn eip712_typed_data_recovers_to_the_address() {
    let typed = r#"{
      "types": {
        "EIP712Domain": [
          {"name": "name", "type": "string"}, {"name": "version", "type": "string"},
          {"name": "chainId", "type": "uint256"}, {"name": "verifyingContract", "type": "address"}
        ],
        "BalanceProof": [
          {"name": "channelId", "type": "bytes32"}, {"name": "transferredAmount", "type": "uint256"},
          {"name": "lockedAmount", "type": "uint256"}, {"name": "locksroot", "type": "bytes32"},
          {"name": "nonce", "type": "uint256"}
        ]
      },
      "primaryType": "BalanceProof",
      "domain": {"name": "PaymentChannel", "version": "1", "chainId": 8453,
                 "verifyingContract": "0x5FbDB2315678afecb367f032d93F642f64180aa3"},
      "message": {"channelId": "0xc1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1",
                  "transferredAmount": "1500000", "lockedAmount": "0",
                  "locksroot": "0x0000000000000000000000000000000000000000000000000000000000000000",
                  "nonce": "7"}
    }"#;
    let file = temp_file("typed.json", typed);
    let v = json(&keymgr(&[
        "evm",
        "sign-typed-data",
        "--file",
        file.to_str().unwrap(),
        "--json",
    ]));
    let parsed: alloy_dyn_abi::TypedData = serde_json::from_str(typed).unwrap();
    let hash = parsed.eip712_signing_hash().unwrap();
    assert_eq!(v["signing_hash"], format!("{hash}"));
    assert_eq!(
        signature(&v).recover_address_from_prehash(&hash).unwrap(),
        ADDRESS
    );

    let bad = temp_file("bad.json", "{\"types\": 1}");
    let e = error(&keymgr(&[
        "evm",
        "sign-typed-data",
        "--file",
        bad.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(e["kind"], "invalid_input");
    let _ = std::fs::remove_file(file);
    let _ = std::fs::remove_file(bad);
}

#[test]
fn transactions_decode_and_recover_to_the_address() {
    let requests = [
        // EIP-1559
        r#"{"to": "0x5FbDB2315678afecb367f032d93F642f64180aa3", "value": "0x1", "nonce": "0x0",
            "gas": "0x5208", "maxFeePerGas": "0x3b9aca00", "maxPriorityFeePerGas": "0x1",
            "chainId": "0x2105"}"#,
        // legacy, EIP-155
        r#"{"to": "0x5FbDB2315678afecb367f032d93F642f64180aa3", "value": "0x1", "nonce": "0x1",
            "gas": "0x5208", "gasPrice": "0x3b9aca00", "chainId": "0x1"}"#,
    ];
    for (i, request) in requests.iter().enumerate() {
        let file = temp_file(&format!("tx{i}.json"), request);
        let v = json(&sign_tx(&file, &[]));
        let envelope = signed_tx(&v);
        assert_eq!(v["hash"], format!("{}", envelope.tx_hash()));
        let _ = std::fs::remove_file(file);
    }
    // A request from another address is refused, naming the field.
    let file = temp_file(
        "txfrom.json",
        r#"{"from": "0x5FbDB2315678afecb367f032d93F642f64180aa3", "to": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
            "nonce": "0x0", "gas": "0x5208", "gasPrice": "0x1", "chainId": "0x1"}"#,
    );
    let e = error(&sign_tx(&file, &[]));
    assert_eq!(e["kind"], "invalid_input");
    assert!(e["message"].as_str().unwrap().contains("from"));
    let _ = std::fs::remove_file(file);

    // The chain id comes from the file or --chain-id; never neither, never two different.
    let file = temp_file(
        "txnochain.json",
        r#"{"to": "0x5FbDB2315678afecb367f032d93F642f64180aa3", "nonce": "0x0",
            "gas": "0x5208", "gasPrice": "0x1"}"#,
    );
    let e = error(&sign_tx(&file, &[]));
    assert_eq!(e["kind"], "invalid_input");
    assert!(e["message"].as_str().unwrap().contains("chainId"), "{e}");
    let v = json(&sign_tx(&file, &["--chain-id", "1440002"]));
    assert_eq!(
        alloy_consensus::Transaction::chain_id(&signed_tx(&v)),
        Some(1_440_002),
        "EIP-155 protected for the given chain"
    );
    let _ = std::fs::remove_file(file);
    let file = temp_file(
        "txtwochains.json",
        r#"{"to": "0x5FbDB2315678afecb367f032d93F642f64180aa3", "nonce": "0x0",
            "gas": "0x5208", "gasPrice": "0x1", "chainId": "0x1"}"#,
    );
    let e = error(&sign_tx(&file, &["--chain-id", "5"]));
    assert!(
        e["message"].as_str().unwrap().contains("--chain-id is 5"),
        "{e}"
    );
    let _ = std::fs::remove_file(file);
}

/// `evm sign-message --file PATH|-` signs a file's bytes unchanged (any bytes, not only
/// UTF-8), from a file or standard input; alloy recovers the address from both.
#[test]
fn sign_message_reads_a_file_or_standard_input_as_bytes() {
    use std::io::Write as _;
    let message: &[u8] = b"settle batch 42\n\xff\x00binary tail";
    let dir = std::env::temp_dir().join(format!("keymgr-evm-msg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("message.bin");
    std::fs::write(&file, message).unwrap();
    let from_file = json(&keymgr(&[
        "evm",
        "sign-message",
        "--file",
        file.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(from_file["reading"], "file");

    let mut child = Command::new(env!("CARGO_BIN_EXE_keymgr"))
        .args(["evm", "sign-message", "--file", "-", "--json"])
        .env_remove("KEY_BACKEND")
        .env_remove("KEYMGR_AUDIT_PATH")
        .env("EVM_PRIVATE_KEY", KEY)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(message).unwrap();
    let from_stdin = json(&child.wait_with_output().unwrap());
    assert_eq!(from_stdin["reading"], "stdin");

    for v in [from_file, from_stdin] {
        assert_eq!(v["message_bytes"], message.len());
        let sig: Signature = v["signature"].as_str().unwrap().parse().unwrap();
        assert_eq!(sig.recover_address_from_msg(message).unwrap(), ADDRESS);
    }
    // A missing file is named, and nothing is signed.
    let out = keymgr(&[
        "evm",
        "sign-message",
        "--file",
        "/nonexistent/msg",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(9));
    let _ = std::fs::remove_dir_all(&dir);
}
