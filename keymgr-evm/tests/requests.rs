//! Requests are checked at the door: every contradiction kind, unknown and repeated
//! fields, chain id 0 and impossible creations are refused naming the JSON fields; an
//! explicit `type` is honoured exactly; deployments sign. Signed bytes are checked with
//! alloy's recovery and against eth-account's own signing of the same request.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use alloy_consensus::transaction::SignerRecoverable as _;
use alloy_consensus::{Transaction as _, TxEnvelope, TxType};
use alloy_network::eip2718::Encodable2718 as _;
use alloy_primitives::{Address, TxKind, address};
use keymgr_core::KeyBackend;
use keymgr_env::EnvBackend;
use keymgr_evm::{CheckedRequest, EvmSigner, RequestError, TransactionRequest, request_error};
use keymgr_testkit::verifiers;
use serde_json::{Value, json};

/// web3.js documentation key and its address.
const KEY: &str = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
const ADDRESS: Address = address!("2c7536E3605D9C16a7a3D7b1898e529396a65c23");
const USDC: &str = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48";

/// The issue's USDC transfer: `data` pays 10 units to 0x3535…; `input` pays 10^24 to
/// 0x6666….
const TRANSFER_DATA: &str = "0xa9059cbb000000000000000000000000353535353535353535353535353535353535353500000000000000000000000000000000000000000000000000000000000000000a";
const TRANSFER_INPUT: &str = "0xa9059cbb000000000000000000000000666666666666666666666666666666666666666600000000000000000000000000000000000000000000d3c21bcecceda1000000";

async fn signer() -> EvmSigner {
    let backend: Arc<dyn KeyBackend> =
        Arc::new(EnvBackend::new().with_secp256k1_hex("evm", KEY).unwrap());
    EvmSigner::new(backend, "evm").await.unwrap()
}

fn eip1559(extra: Value) -> Value {
    let mut base = json!({
        "to": USDC, "value": "0x0", "nonce": "0x2a", "gas": "0x186a0",
        "maxFeePerGas": "0x77359400", "maxPriorityFeePerGas": "0x3b9aca00", "chainId": "0x1",
    });
    merge(&mut base, extra);
    base
}

fn legacy(extra: Value) -> Value {
    let mut base = json!({
        "to": USDC, "value": "0x0", "nonce": "0x2a", "gas": "0x186a0",
        "gasPrice": "0x3b9aca00", "chainId": "0x1",
    });
    merge(&mut base, extra);
    base
}

/// Adds `extra`'s fields; a `null` removes the field.
fn merge(base: &mut Value, extra: Value) {
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            base.as_object_mut().unwrap().remove(k);
        } else {
            base[k] = v.clone();
        }
    }
}

fn refused(request: &Value) -> RequestError {
    CheckedRequest::from_json(&request.to_string()).expect_err(&request.to_string())
}

fn signed_by_us(envelope: &TxEnvelope) {
    assert_eq!(envelope.recover_signer().unwrap(), ADDRESS);
}

/// eth-account's raw transaction for the same request (RFC 6979 on both sides, so the
/// bytes must be identical), or `None` when the verifiers are not provisioned.
fn eth_account_raw(request: &Value) -> Option<String> {
    let python = verifiers::python()?;
    let out = verifiers::run(&python, "sign-tx", &[KEY, &request.to_string()]);
    let v: Value = serde_json::from_str(&out).unwrap();
    Some(v["raw"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn data_and_input_that_differ_are_refused_in_the_library() {
    let request = eip1559(json!({ "data": TRANSFER_DATA, "input": TRANSFER_INPUT }));
    let e = refused(&request);
    assert!(matches!(e, RequestError::Conflict { .. }), "{e}");
    assert_eq!(e.fields(), ["data", "input"]);
    // Also when the caller deserialized the request with alloy (which would keep `input`).
    let parsed: TransactionRequest = serde_json::from_value(request).unwrap();
    let e = signer().await.sign_request(parsed).await.unwrap_err();
    assert_eq!(request_error(&e).unwrap().fields(), ["data", "input"]);

    // Equal `data` and `input` say one thing: signed, and eth-account agrees on the bytes.
    let same = eip1559(json!({ "data": TRANSFER_DATA, "input": TRANSFER_DATA }));
    let checked = CheckedRequest::from_json(&same.to_string()).unwrap();
    let envelope = signer().await.sign_checked(checked).await.unwrap();
    signed_by_us(&envelope);
    assert_eq!(envelope.input().to_string(), TRANSFER_DATA);
    let only_data = eip1559(json!({ "data": TRANSFER_DATA }));
    if let Some(raw) = eth_account_raw(&only_data) {
        assert_eq!(format!("0x{}", hex::encode(envelope.encoded_2718())), raw);
    }
}

#[test]
fn every_contradiction_kind_names_its_fields() {
    let blob_hash = "0x01ae39c06daecb6a178655e3fab2e56bd61e81392027947529e4def3280c546e";
    let authorization = json!([{ "chainId": "0x1", "address": USDC, "nonce": "0x0",
        "yParity": "0x0", "r": "0x1", "s": "0x1" }]);
    let cases: Vec<(Value, Vec<&str>)> = vec![
        // legacy and EIP-1559 fees together, with and without an explicit type
        (
            legacy(json!({ "maxFeePerGas": "0x1" })),
            vec!["gasPrice", "maxFeePerGas"],
        ),
        (
            eip1559(json!({ "gasPrice": "0x1" })),
            vec!["gasPrice", "maxFeePerGas", "maxPriorityFeePerGas"],
        ),
        (
            legacy(json!({ "type": "0x0", "maxPriorityFeePerGas": "0x1" })),
            vec!["type", "maxPriorityFeePerGas"],
        ),
        (
            eip1559(json!({ "type": "0x2", "gasPrice": "0x1" })),
            vec!["type", "gasPrice"],
        ),
        (
            legacy(json!({ "type": "0x1", "maxFeePerGas": "0x1" })),
            vec!["type", "maxFeePerGas"],
        ),
        // an explicit type the builder would replace
        (legacy(json!({ "type": "0x2" })), vec!["type", "gasPrice"]),
        (
            eip1559(json!({ "type": "0x0" })),
            vec!["type", "maxFeePerGas", "maxPriorityFeePerGas"],
        ),
        // an access list on a legacy request
        (
            legacy(json!({ "type": "0x0", "accessList": [] })),
            vec!["type", "accessList"],
        ),
        // blob fields on a non-blob type
        (
            eip1559(json!({ "maxFeePerBlobGas": "0x1" })),
            vec!["maxFeePerBlobGas"],
        ),
        (
            eip1559(json!({ "type": "0x2", "blobVersionedHashes": [blob_hash] })),
            vec!["type", "blobVersionedHashes"],
        ),
        (
            legacy(json!({ "type": "0x0", "maxFeePerBlobGas": "0x1" })),
            vec!["type", "maxFeePerBlobGas"],
        ),
        // an authorization list on another type
        (
            eip1559(json!({ "type": "0x2", "authorizationList": authorization })),
            vec!["type", "authorizationList"],
        ),
        (
            eip1559(
                json!({ "authorizationList": authorization, "blobVersionedHashes": [blob_hash] }),
            ),
            vec!["blobVersionedHashes"],
        ),
        // a tip above the fee cap
        (
            eip1559(json!({ "maxPriorityFeePerGas": "0x77359401" })),
            vec!["maxFeePerGas", "maxPriorityFeePerGas"],
        ),
    ];
    for (request, fields) in cases {
        let e = refused(&request);
        assert!(matches!(e, RequestError::Conflict { .. }), "{request}: {e}");
        assert_eq!(e.fields(), fields, "{request}: {e}");
    }
}

#[test]
fn unknown_repeated_and_malformed_fields_are_refused() {
    // A typo would otherwise sign value 0.
    let e = refused(&legacy(
        json!({ "value": null, "valeu": "0xde0b6b3a7640000" }),
    ));
    assert_eq!(
        e,
        RequestError::UnknownField {
            field: "valeu".into(),
            suggestion: Some("value")
        }
    );
    let e = refused(&legacy(json!({ "gasLimit": "0x5208" })));
    assert_eq!(e.fields(), ["gasLimit"]);
    let e = refused(&legacy(json!({ "ChainId": "0x1" })));
    assert!(
        matches!(
            e,
            RequestError::UnknownField {
                suggestion: Some("chainId"),
                ..
            }
        ),
        "{e}"
    );

    // A repeated field: serde_json would keep the last one silently.
    let text = format!(
        r#"{{"to":"{USDC}","nonce":"0x1","gas":"0x5208","gasPrice":"0x1","chainId":"0x1","value":"0x1","value":"0xde0b6b3a7640000"}}"#
    );
    assert_eq!(
        CheckedRequest::from_json(&text).unwrap_err(),
        RequestError::DuplicateField {
            field: "value".into()
        }
    );

    // Bad values name their field.
    for (field, value) in [
        ("nonce", json!("zz")),
        ("to", json!("0x1234")),
        ("value", json!("0x1".to_owned() + &"0".repeat(64))),
        ("chainId", json!(-1)),
        ("accessList", json!("none")),
        ("type", json!("0x100")),
        // "10": decimal to alloy, 0x10 to a reader thinking in hex; geth refuses it.
        ("value", json!("10")),
        ("nonce", json!("42")),
        ("chainId", json!("1")),
    ] {
        let e = refused(&legacy(json!({ field: value })));
        assert!(
            matches!(e, RequestError::InvalidValue { .. }),
            "{field}: {e}"
        );
        assert_eq!(e.fields(), [field], "{e}");
    }
    // JSON numbers are unambiguous decimal.
    let numbers = legacy(json!({ "value": 10, "nonce": 42, "chainId": 1 }));
    let checked = CheckedRequest::from_json(&numbers.to_string()).unwrap();
    assert_eq!(
        checked.request().value,
        Some(alloy_primitives::U256::from(10))
    );
    assert_eq!(checked.request().nonce, Some(42));
    for text in ["", "[]", "{", "{} {}", "null"] {
        assert!(
            matches!(
                CheckedRequest::from_json(text),
                Err(RequestError::NotJson { .. })
            ),
            "{text:?}"
        );
    }
    let huge = " ".repeat(keymgr_evm::MAX_REQUEST_JSON_BYTES + 1);
    assert!(matches!(
        CheckedRequest::from_json(&huge),
        Err(RequestError::TooLarge { .. })
    ));
    let e = refused(&legacy(json!({ "type": "0x7e" })));
    assert_eq!(e, RequestError::UnsupportedType { tx_type: 0x7e });
}

#[tokio::test]
async fn chain_id_zero_is_refused() {
    let e = refused(&legacy(json!({ "chainId": "0x0" })));
    assert_eq!(e.fields(), ["chainId"]);
    let e = refused(&eip1559(json!({ "chainId": 0 })));
    assert_eq!(e.fields(), ["chainId"]);
    // Also from a signer whose chain id is 0, for a request without one.
    let mut signer = signer().await;
    alloy_signer::Signer::set_chain_id(&mut signer, Some(0));
    let checked =
        CheckedRequest::from_json(&legacy(json!({ "chainId": null })).to_string()).unwrap();
    let e = signer.sign_checked(checked).await.unwrap_err();
    assert_eq!(request_error(&e).unwrap().fields(), ["chainId"]);
}

#[tokio::test]
async fn an_explicit_type_is_honoured_exactly() {
    let signer = signer().await;
    // alloy's builder would make this legacy (gasPrice without accessList): type 1 it is.
    let typed = legacy(json!({ "type": "0x1" }));
    let checked = CheckedRequest::from_json(&typed.to_string()).unwrap();
    assert_eq!(checked.tx_type(), TxType::Eip2930);
    let envelope = signer.sign_checked(checked).await.unwrap();
    assert!(envelope.is_eip2930());
    signed_by_us(&envelope);
    if let Some(raw) = eth_account_raw(&legacy(json!({ "type": "0x1", "accessList": [] }))) {
        assert_eq!(format!("0x{}", hex::encode(envelope.encoded_2718())), raw);
    }
    for (request, want) in [
        (legacy(json!({ "type": "0x0" })), TxType::Legacy),
        (legacy(json!({})), TxType::Legacy),
        (legacy(json!({ "accessList": [] })), TxType::Eip2930),
        (
            eip1559(json!({ "type": "0x2", "accessList": [] })),
            TxType::Eip1559,
        ),
        (eip1559(json!({})), TxType::Eip1559),
    ] {
        let checked = CheckedRequest::from_json(&request.to_string()).unwrap();
        assert_eq!(checked.tx_type(), want, "{request}");
        let envelope = signer.sign_checked(checked).await.unwrap();
        assert_eq!(envelope.tx_type(), want, "{request}");
        signed_by_us(&envelope);
        if let Some(raw) = eth_account_raw(&request) {
            assert_eq!(
                format!("0x{}", hex::encode(envelope.encoded_2718())),
                raw,
                "{request}"
            );
        }
    }
}

#[tokio::test]
async fn contract_creation_signs_a_deployment() {
    let signer = signer().await;
    let init_code = "0x6080604052348015600f57600080fd5b50603f80601d6000396000f3fe6080604052600080fdfea164736f6c6343000818000a";
    for request in [
        eip1559(json!({ "to": null, "data": init_code })),
        legacy(json!({ "to": null, "input": init_code })),
    ] {
        let checked = CheckedRequest::from_json(&request.to_string()).unwrap();
        assert_eq!(checked.request().to, Some(TxKind::Create));
        let envelope = signer.sign_checked(checked).await.unwrap();
        assert_eq!(envelope.kind(), TxKind::Create);
        signed_by_us(&envelope);
        if let Some(raw) = eth_account_raw(&request) {
            assert_eq!(
                format!("0x{}", hex::encode(envelope.encoded_2718())),
                raw,
                "{request}"
            );
        }
    }
    // `"to": null` as alloy deserializes it, through sign_request.
    let mut explicit_null = eip1559(json!({ "data": init_code }));
    explicit_null["to"] = Value::Null;
    let parsed: TransactionRequest = serde_json::from_value(explicit_null.clone()).unwrap();
    let envelope = signer.sign_request(parsed).await.unwrap();
    assert_eq!(envelope.kind(), TxKind::Create);
    let checked = CheckedRequest::from_json(&explicit_null.to_string()).unwrap();
    assert_eq!(checked.request().to, Some(TxKind::Create));

    // No `to` and no init code is neither a call nor a deployment.
    let e = refused(&eip1559(json!({ "to": null })));
    assert!(matches!(e, RequestError::Missing { .. }), "{e}");
    assert_eq!(e.fields(), ["to"]);
    // Blob and set-code transactions cannot create.
    let e = refused(&eip1559(
        json!({ "to": null, "data": init_code, "type": "0x4", "authorizationList": [] }),
    ));
    assert_eq!(e.fields(), ["to"]);
}

#[test]
fn missing_fields_are_named_as_in_json() {
    let e = refused(&eip1559(
        json!({ "nonce": null, "gas": null, "maxPriorityFeePerGas": null }),
    ));
    assert_eq!(e.fields(), ["nonce", "gas", "maxPriorityFeePerGas"]);
    let e = refused(&legacy(json!({ "gasPrice": null })));
    assert_eq!(e.fields(), ["maxFeePerGas", "maxPriorityFeePerGas"]);
    // Every message names each field once.
    let message = e.to_string();
    assert_eq!(message.matches("maxFeePerGas").count(), 1, "{message}");
}

#[test]
fn the_core_error_keeps_the_fields() {
    let e = refused(&eip1559(
        json!({ "data": TRANSFER_DATA, "input": TRANSFER_INPUT }),
    ));
    let core = keymgr_core::Error::from(e);
    assert!(
        matches!(&core, keymgr_core::Error::InvalidInput { field, .. } if field == "data, input"),
        "{core}"
    );
}

#[tokio::test]
async fn blob_and_set_code_requests() {
    let signer = signer().await;
    // A blob request without its sidecar cannot be sent: refused, naming what is missing.
    let blob_hash = "0x01ae39c06daecb6a178655e3fab2e56bd61e81392027947529e4def3280c546e";
    let e = refused(&eip1559(json!({ "blobVersionedHashes": [blob_hash] })));
    assert!(matches!(e, RequestError::Missing { tx_type: 3, .. }), "{e}");
    assert_eq!(e.fields(), ["maxFeePerBlobGas", "blobs"]);

    // EIP-7702: an authorization signed by keymgr goes into a type 4 transaction.
    let delegate = address!("5FbDB2315678afecb367f032d93F642f64180aa3");
    let auth = signer
        .sign_authorization(alloy_primitives::U256::from(1), delegate, 43)
        .await
        .unwrap();
    assert_eq!(auth.recover_authority().unwrap(), ADDRESS);
    let request = eip1559(json!({ "authorizationList": [auth], "to": ADDRESS.to_string() }));
    let checked = CheckedRequest::from_json(&request.to_string()).unwrap();
    assert_eq!(checked.tx_type(), TxType::Eip7702);
    let envelope = signer.sign_checked(checked).await.unwrap();
    signed_by_us(&envelope);
    let list = envelope.authorization_list().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].recover_authority().unwrap(), ADDRESS);
}
