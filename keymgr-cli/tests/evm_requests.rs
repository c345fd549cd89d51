//! `keymgr evm` at the door: refused requests name their JSON fields once, deployments
//! and stdin requests sign, the signed transaction is echoed, messages are read as
//! asked, EIP-7702 authorizations and raw digests carry their parity. Right values come
//! from eth-account and coincurve (keymgr_testkit::verifiers) and alloy's recovery.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use alloy_consensus::Transaction as _;
use alloy_consensus::transaction::SignerRecoverable as _;
use alloy_eips::eip2718::Decodable2718 as _;
use alloy_primitives::{Address, B256, Signature, TxKind, address, keccak256};
use keymgr_testkit::verifiers;
use serde_json::{Value, json};

/// web3.js documentation key and its address.
const KEY: &str = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
const ADDRESS: Address = address!("2c7536E3605D9C16a7a3D7b1898e529396a65c23");
const USDC: &str = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48";
const TRANSFER_DATA: &str = "0xa9059cbb000000000000000000000000353535353535353535353535353535353535353500000000000000000000000000000000000000000000000000000000000000000a";
const TRANSFER_INPUT: &str = "0xa9059cbb000000000000000000000000666666666666666666666666666666666666666600000000000000000000000000000000000000000000d3c21bcecceda1000000";

/// Runs keymgr with the dev key, `stdin` piped in.
fn keymgr(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_keymgr"))
        .args(args)
        .env_remove("KEY_BACKEND")
        .env_remove("KEYMGR_AUDIT_PATH")
        .env_remove("XRP_SEED")
        .env("EVM_PRIVATE_KEY", KEY)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn ok_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn error(out: &Output) -> Value {
    assert!(!out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["error"].clone()
}

fn sign_tx_stdin(request: &Value) -> Output {
    keymgr(
        &["evm", "sign-tx", "--file", "-", "--json"],
        &request.to_string(),
    )
}

fn eip1559(extra: Value) -> Value {
    let mut base = json!({
        "to": USDC, "value": "0x0", "nonce": "0x2a", "gas": "0x186a0",
        "maxFeePerGas": "0x77359400", "maxPriorityFeePerGas": "0x3b9aca00", "chainId": "0x1",
    });
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            base.as_object_mut().unwrap().remove(k);
        } else {
            base[k] = v.clone();
        }
    }
    base
}

fn envelope(v: &Value) -> alloy_consensus::TxEnvelope {
    let raw = hex::decode(v["raw"].as_str().unwrap().trim_start_matches("0x")).unwrap();
    let envelope = alloy_consensus::TxEnvelope::decode_2718(&mut raw.as_slice()).unwrap();
    assert_eq!(envelope.recover_signer().unwrap(), ADDRESS);
    envelope
}

fn verify(command: &str, args: &[&str]) -> Option<Value> {
    let python = verifiers::python()?;
    Some(serde_json::from_str(&verifiers::run(&python, command, args)).unwrap())
}

#[test]
fn data_and_input_that_differ_are_refused_naming_the_fields_once() {
    let request = eip1559(json!({ "data": TRANSFER_DATA, "input": TRANSFER_INPUT }));
    let e = error(&sign_tx_stdin(&request));
    assert_eq!(e["kind"], "invalid_input");
    assert_eq!(e["fields"], json!(["data", "input"]));
    let message = e["message"].as_str().unwrap();
    assert_eq!(message.matches("`data`").count(), 1, "{message}");
    assert_eq!(message.matches("`input`").count(), 1, "{message}");

    // Text mode says the same on stderr, once.
    let out = keymgr(&["evm", "sign-tx", "--file", "-"], &request.to_string());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("`input`").count(), 1, "{stderr}");
}

#[test]
fn refusals_name_json_fields() {
    for (request, fields) in [
        (eip1559(json!({ "valeu": "0x1" })), json!(["valeu"])),
        (eip1559(json!({ "chainId": "0x0" })), json!(["chainId"])),
        (
            eip1559(json!({ "gasPrice": "0x1" })),
            json!(["gasPrice", "maxFeePerGas", "maxPriorityFeePerGas"]),
        ),
        (
            eip1559(
                json!({ "type": "0x0", "gasPrice": "0x1", "maxFeePerGas": null, "maxPriorityFeePerGas": null, "accessList": [] }),
            ),
            json!(["type", "accessList"]),
        ),
        (
            eip1559(json!({ "maxFeePerBlobGas": "0x1" })),
            json!(["maxFeePerBlobGas"]),
        ),
        (eip1559(json!({ "gas": null })), json!(["gas"])),
        (
            eip1559(json!({ "from": "0x5FbDB2315678afecb367f032d93F642f64180aa3" })),
            json!(["from"]),
        ),
    ] {
        let e = error(&sign_tx_stdin(&request));
        assert_eq!(e["kind"], "invalid_input", "{request}: {e}");
        assert_eq!(e["fields"], fields, "{request}: {e}");
    }
}

#[test]
fn deployment_from_stdin_is_signed_and_echoed() {
    let init_code = "0x6080604052348015600f57600080fd5b50603f80601d6000396000f3fe6080604052600080fdfea164736f6c6343000818000a";
    let request = eip1559(json!({ "to": null, "data": init_code, "nonce": "0x0" }));
    let v = ok_json(&sign_tx_stdin(&request));
    let tx = envelope(&v);
    assert_eq!(tx.kind(), TxKind::Create);
    assert_eq!(v["to"], Value::Null);
    assert_eq!(v["create"], true);
    assert_eq!(v["contract_address"], ADDRESS.create(0).to_checksum(None));
    assert_eq!(v["type"], 2);
    assert_eq!(v["chain_id"], 1);
    assert_eq!(v["calldata_bytes"], (init_code.len() - 2) / 2);
    if let Some(right) = verify("sign-tx", &[KEY, &request.to_string()]) {
        assert_eq!(v["raw"], right["raw"]);
        assert_eq!(v["hash"], right["hash"]);
    }
    // Text output shows what was signed.
    let out = keymgr(&["evm", "sign-tx", "--file", "-"], &request.to_string());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for line in [
        "EIP-1559 (type 2)",
        "chain id: 1",
        "to:       create",
        "nonce:    0",
    ] {
        assert!(text.contains(line), "{line:?} in {text}");
    }
}

#[test]
fn transfer_echo_matches_the_signed_bytes_and_eth_account() {
    let request = eip1559(json!({ "data": TRANSFER_DATA, "value": "0x5" }));
    let v = ok_json(&sign_tx_stdin(&request));
    let tx = envelope(&v);
    assert_eq!(v["to"], USDC);
    assert_eq!(v["selector"], "0xa9059cbb");
    assert_eq!(v["calldata_bytes"], tx.input().len());
    assert_eq!(v["value"], "5");
    assert_eq!(v["nonce"], 42);
    assert_eq!(v["gas"], 100_000);
    assert_eq!(v["fees"]["max_fee_per_gas_wei"], "2000000000");
    assert_eq!(v["fees"]["max_priority_fee_per_gas_wei"], "1000000000");
    assert_eq!(v["hash"], format!("{}", tx.tx_hash()));
    if let Some(right) = verify("sign-tx", &[KEY, &request.to_string()]) {
        assert_eq!(v["raw"], right["raw"]);
    }
}

#[test]
fn endless_files_are_refused() {
    for cmd in ["sign-tx", "sign-typed-data"] {
        let e = error(&keymgr(&["evm", cmd, "--file", "/dev/zero", "--json"], ""));
        assert_eq!(e["kind"], "invalid_input", "{cmd}: {e}");
    }
}

#[test]
fn messages_are_read_as_asked() {
    let message = "0x7f3a9c11e2d4b5a6";
    // Default: text, as ethers, viem and eth-account read a string; the output says so.
    let v = ok_json(&keymgr(&["evm", "sign-message", message, "--json"], ""));
    assert_eq!(v["reading"], "text");
    assert_eq!(v["message_bytes"], 18);
    let sig: Signature = v["signature"].as_str().unwrap().parse().unwrap();
    assert_eq!(sig.recover_address_from_msg(message).unwrap(), ADDRESS);
    let text_out = keymgr(&["evm", "sign-message", message], "");
    assert!(String::from_utf8_lossy(&text_out.stdout).contains("--hex"));
    let explicit = ok_json(&keymgr(
        &["evm", "sign-message", "--text", message, "--json"],
        "",
    ));
    assert_eq!(explicit["signature"], v["signature"]);

    let hex_v = ok_json(&keymgr(
        &["evm", "sign-message", "--hex", message, "--json"],
        "",
    ));
    assert_eq!(hex_v["reading"], "hex");
    assert_eq!(hex_v["message_bytes"], 8);
    let hex_sig: Signature = hex_v["signature"].as_str().unwrap().parse().unwrap();
    let bytes = hex::decode(&message[2..]).unwrap();
    assert_eq!(hex_sig.recover_address_from_msg(&bytes).unwrap(), ADDRESS);

    if let Some(right) = verify("sign-message", &[KEY, "text", message]) {
        assert_eq!(v["signature"], right["signature"]);
    }
    if let Some(right) = verify("sign-message", &[KEY, "hex", message]) {
        assert_eq!(hex_v["signature"], right["signature"]);
    }

    // `0xhello` is text by default; as hex it is refused, naming the message.
    let v = ok_json(&keymgr(&["evm", "sign-message", "0xhello", "--json"], ""));
    let sig: Signature = v["signature"].as_str().unwrap().parse().unwrap();
    assert_eq!(sig.recover_address_from_msg("0xhello").unwrap(), ADDRESS);
    let e = error(&keymgr(
        &["evm", "sign-message", "--hex", "0xhello", "--json"],
        "",
    ));
    assert_eq!(e["kind"], "invalid_input");
    assert_eq!(e["fields"], json!(["message"]));
    // Two readings at once is a usage error.
    let out = keymgr(
        &[
            "evm",
            "sign-message",
            "--text",
            "a",
            "--hex",
            "0x00",
            "--json",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn eip7702_authorization_matches_eth_account() {
    let delegate = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
    let v = ok_json(&keymgr(
        &[
            "evm",
            "sign-authorization",
            "--chain-id",
            "1",
            "--address",
            delegate,
            "--nonce",
            "7",
            "--json",
        ],
        "",
    ));
    let a = &v["authorization"];
    assert_eq!(a["chainId"], "0x1");
    assert_eq!(a["nonce"], "0x7");
    // alloy recovers the authority from the tuple.
    let auth = alloy_eips::eip7702::Authorization {
        chain_id: alloy_primitives::U256::from(1),
        address: delegate.parse().unwrap(),
        nonce: 7,
    };
    let y_parity =
        u8::from_str_radix(a["yParity"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
    let signed = auth.into_signed(Signature::new(
        a["r"].as_str().unwrap().parse().unwrap(),
        a["s"].as_str().unwrap().parse().unwrap(),
        y_parity == 1,
    ));
    assert_eq!(signed.recover_authority().unwrap(), ADDRESS);
    if let Some(right) = verify("sign-authorization", &[KEY, "1", delegate, "7"]) {
        assert_eq!(right["yParity"].as_u64().unwrap(), u64::from(y_parity));
        assert_eq!(a["r"], right["r"]);
        assert_eq!(a["s"], right["s"]);
    }
    // Chain id 0 (every chain) only when asked for by name.
    let e = error(&keymgr(
        &[
            "evm",
            "sign-authorization",
            "--chain-id",
            "0",
            "--address",
            delegate,
            "--nonce",
            "0",
            "--json",
        ],
        "",
    ));
    assert_eq!(e["kind"], "invalid_input");
    let v = ok_json(&keymgr(
        &[
            "evm",
            "sign-authorization",
            "--any-chain",
            "--address",
            delegate,
            "--nonce",
            "0",
            "--json",
        ],
        "",
    ));
    assert_eq!(v["authorization"]["chainId"], "0x0");
}

#[test]
fn raw_digest_signatures_carry_v() {
    let digest = keccak256(b"keymgr raw digest");
    let hex_digest = hex::encode(digest);
    let v = ok_json(&keymgr(
        &["sign", "--key", "evm", "--digest", &hex_digest, "--json"],
        "",
    ));
    let rsv = v["signature_rsv"].as_str().unwrap();
    let bytes = hex::decode(rsv).unwrap();
    assert_eq!(bytes.len(), 65);
    assert_eq!(u64::from(bytes[64]), v["v"].as_u64().unwrap());
    assert_eq!(
        v["v"].as_u64().unwrap(),
        27 + v["y_parity"].as_u64().unwrap()
    );
    let sig = Signature::from_raw(&bytes).unwrap();
    assert_eq!(
        sig.recover_address_from_prehash(&B256::from(digest))
            .unwrap(),
        ADDRESS
    );
    if let Some(right) = verify("recover-digest", &[&hex_digest, rsv]) {
        let sk = k256::ecdsa::SigningKey::from_slice(&hex::decode(&KEY[2..]).unwrap()).unwrap();
        let uncompressed = sk.verifying_key().to_encoded_point(false);
        assert_eq!(right["public_key"], hex::encode(uncompressed.as_bytes()));
    }
}
