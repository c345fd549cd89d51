//! What the audit log records for each EVM signature, read back with `keymgr_audit`'s
//! export (the chain verified while reading): every signing path says what it signed
//! (never a `null` context), and a transaction's success entry carries the hash of the
//! signed EIP-2718 envelope, the same as alloy's `TxEnvelope::tx_hash` and eth-account's
//! hash of the same request.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use alloy_consensus::transaction::SignerRecoverable as _;
use alloy_consensus::{
    SignableTransaction, TxEip1559, TxEip2930, TxEip7702, TxEnvelope, TxLegacy, TypedTransaction,
};
use alloy_network::TxSigner as _;
use alloy_primitives::{Address, B256, Bytes, Signature, TxKind, U256, address};
use alloy_signer::Signer as _;
use keymgr_evm::{EvmSigner, TransactionRequest};
use keymgr_testkit::verifiers;
#[path = "support/audit.rs"]
mod audit_support;
use audit_support::{ADDRESS, KEY, exported, logged};
use serde_json::{Value, json};

const USDC: Address = address!("A0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48");
const DELEGATE: Address = address!("5FbDB2315678afecb367f032d93F642f64180aa3");

fn events<'a>(entries: &'a [Value], event: &str) -> Vec<&'a Value> {
    entries.iter().filter(|e| e["event"] == event).collect()
}

fn hex_hash(h: &B256) -> String {
    hex::encode(h)
}

/// Signs `tx` through alloy's `TxSigner` and returns the signed envelope.
async fn sign(signer: &EvmSigner, mut tx: TypedTransaction) -> TxEnvelope {
    let sig: Signature = signer.sign_transaction(&mut tx).await.unwrap();
    let envelope = tx.into_envelope(sig);
    assert_eq!(envelope.recover_signer().unwrap(), ADDRESS);
    envelope
}

#[tokio::test]
async fn transaction_entries_carry_the_signed_envelope_hash() {
    let l = logged("evm-audit-txhash", Some(1)).await;
    let authorization = l
        .signer
        .sign_authorization(U256::from(1), DELEGATE, 8)
        .await
        .unwrap();
    let transfer = Bytes::from(hex::decode("a9059cbb00").unwrap());
    let txs: Vec<TypedTransaction> = vec![
        // Legacy, EIP-155 (chain id filled in by the signer).
        TxLegacy {
            nonce: 7,
            gas_price: 1_000_000_000,
            gas_limit: 21_000,
            to: TxKind::Call(USDC),
            value: U256::from(5),
            ..Default::default()
        }
        .into(),
        TxEip2930 {
            chain_id: 1,
            nonce: 8,
            gas_price: 1_000_000_000,
            gas_limit: 50_000,
            to: TxKind::Call(USDC),
            input: transfer.clone(),
            ..Default::default()
        }
        .into(),
        TxEip1559 {
            chain_id: 1,
            nonce: 9,
            gas_limit: 100_000,
            max_fee_per_gas: 2_000_000_000,
            max_priority_fee_per_gas: 1_000_000_000,
            to: TxKind::Call(USDC),
            value: U256::from(10u64).pow(U256::from(16)),
            input: transfer,
            ..Default::default()
        }
        .into(),
        // A contract creation.
        TxEip1559 {
            chain_id: 1,
            nonce: 10,
            gas_limit: 300_000,
            max_fee_per_gas: 2_000_000_000,
            to: TxKind::Create,
            input: Bytes::from_static(&[0x60, 0x00, 0x60, 0x00, 0xf3]),
            ..Default::default()
        }
        .into(),
        TxEip7702 {
            chain_id: 1,
            nonce: 11,
            gas_limit: 100_000,
            max_fee_per_gas: 2_000_000_000,
            to: ADDRESS,
            authorization_list: vec![authorization],
            ..Default::default()
        }
        .into(),
    ];
    let mut envelopes = Vec::new();
    for tx in txs {
        envelopes.push(sign(&l.signer, tx).await);
    }
    // Concrete types straight to the TxSigner (as alloy's EthereumWallet passes them).
    let mut legacy = TxLegacy {
        nonce: 12,
        gas_price: 3,
        gas_limit: 21_000,
        to: TxKind::Call(DELEGATE),
        ..Default::default()
    };
    let sig = l.signer.sign_transaction(&mut legacy).await.unwrap();
    envelopes.push(legacy.into_signed(sig).into());

    let entries = exported(l.dir.path());
    let requests: Vec<_> = events(&entries, "SIGN_REQUEST")
        .into_iter()
        .filter(|e| e["context"]["kind"] == "evm_transaction")
        .collect();
    let successes: Vec<_> = events(&entries, "SIGN_SUCCESS")
        .into_iter()
        .filter(|e| e["context"]["kind"] == "evm_transaction")
        .collect();
    assert_eq!(successes.len(), envelopes.len());
    assert_eq!(requests.len(), envelopes.len());
    for ((envelope, request), success) in envelopes.iter().zip(&requests).zip(&successes) {
        let c = &success["context"];
        assert_eq!(c["tx_hash"], hex_hash(envelope.tx_hash()), "{success}");
        assert_ne!(c["tx_hash"], c["signing_hash"]);
        assert_eq!(c["signing_hash"], hex_hash(&envelope.signature_hash()));
        assert_eq!(c["tx_type"], u8::from(envelope.tx_type()));
        assert_eq!(c["chain_id"], 1);
        // The hash depends on the signature: the request cannot know it.
        assert!(request["context"].get("tx_hash").is_none(), "{request}");
        assert_eq!(request["context"]["signing_hash"], c["signing_hash"]);
    }
    assert!(successes[3]["context"].get("to").is_none(), "a creation");
}

#[tokio::test]
async fn legacy_without_chain_id_records_its_hash() {
    // Pre-EIP-155: v is 27/28 and the hash covers it.
    let l = logged("evm-audit-txhash-pre155", None).await;
    let tx = TxLegacy {
        nonce: 0,
        gas_price: 1,
        gas_limit: 21_000,
        to: TxKind::Call(USDC),
        ..Default::default()
    };
    let envelope = sign(&l.signer, tx.into()).await;
    let entries = exported(l.dir.path());
    let success = events(&entries, "SIGN_SUCCESS")[0];
    assert!(success["context"].get("chain_id").is_none(), "{success}");
    assert_eq!(
        success["context"]["tx_hash"],
        hex_hash(envelope.tx_hash()),
        "{success}"
    );
}

/// eth-account signs the same requests independently (RFC 6979 on both sides, so the
/// transactions and their hashes must be identical).
#[tokio::test]
async fn recorded_tx_hash_matches_eth_account() {
    let Some(python) = verifiers::python() else {
        return;
    };
    let l = logged("evm-audit-txhash-eth-account", None).await;
    let authorization = l
        .signer
        .sign_authorization(U256::from(1), DELEGATE, 43)
        .await
        .unwrap();
    let base = json!({
        "to": USDC.to_string(), "value": "0x2386f26fc10000", "nonce": "0x2a", "gas": "0x186a0",
        "chainId": "0x1",
    });
    let mut legacy = base.clone();
    legacy["gasPrice"] = json!("0x3b9aca00");
    let mut eip1559 = base.clone();
    eip1559["maxFeePerGas"] = json!("0x77359400");
    eip1559["maxPriorityFeePerGas"] = json!("0x3b9aca00");
    let mut eip7702 = eip1559.clone();
    eip7702["to"] = json!(ADDRESS.to_string());
    eip7702["authorizationList"] = json!([authorization]);
    let requests = [legacy, eip1559, eip7702];
    let mut hashes = Vec::new();
    for request in &requests {
        let parsed: TransactionRequest = serde_json::from_value(request.clone()).unwrap();
        let envelope = l.signer.sign_request(parsed).await.unwrap();
        let theirs: Value = serde_json::from_str(&verifiers::run(
            &python,
            "sign-tx",
            &[KEY, &request.to_string()],
        ))
        .unwrap();
        let raw = format!(
            "0x{}",
            hex::encode(alloy_eips::Encodable2718::encoded_2718(&envelope))
        );
        assert_eq!(raw, theirs["raw"], "{request}");
        assert_eq!(
            theirs["hash"],
            format!("0x{}", hex_hash(envelope.tx_hash())),
            "{request}"
        );
        hashes.push(
            theirs["hash"]
                .as_str()
                .unwrap()
                .trim_start_matches("0x")
                .to_owned(),
        );
    }
    let entries = exported(l.dir.path());
    let recorded: Vec<_> = events(&entries, "SIGN_SUCCESS")
        .into_iter()
        .filter(|e| e["context"]["kind"] == "evm_transaction")
        .map(|e| e["context"]["tx_hash"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(recorded, hashes);
    let types: Vec<_> = events(&entries, "SIGN_SUCCESS")
        .into_iter()
        .filter(|e| e["context"]["kind"] == "evm_transaction")
        .map(|e| e["context"]["tx_type"].as_u64().unwrap())
        .collect();
    assert_eq!(types, [0, 2, 4]);
}

/// Every way EvmSigner signs records what it signed: no entry has a `null` context.
#[tokio::test]
async fn every_signing_path_records_a_context() {
    let l = logged("evm-audit-every-path", Some(8453)).await;
    let hash = B256::repeat_byte(0x42);
    l.signer.sign_hash(&hash).await.unwrap();
    l.signer.sign_prehash(&hash).await.unwrap();
    l.signer.sign_message(b"hello").await.unwrap();
    let typed: alloy_dyn_abi::TypedData = serde_json::from_value(json!({
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "chainId", "type": "uint256"}
            ],
            "Mail": [{"name": "contents", "type": "string"}]
        },
        "primaryType": "Mail",
        "domain": {"name": "Ether Mail", "chainId": 8453},
        "message": {"contents": "Hello"}
    }))
    .unwrap();
    l.signer.sign_dynamic_typed_data(&typed).await.unwrap();
    l.signer
        .sign_authorization(U256::from(8453), DELEGATE, 1)
        .await
        .unwrap();
    let mut tx: TypedTransaction = TxEip1559 {
        chain_id: 8453,
        nonce: 1,
        gas_limit: 21_000,
        to: TxKind::Call(USDC),
        ..Default::default()
    }
    .into();
    l.signer.sign_transaction(&mut tx).await.unwrap();

    let entries = exported(l.dir.path());
    let signing: Vec<_> = entries
        .iter()
        .filter(|e| e["event"] == "SIGN_REQUEST" || e["event"] == "SIGN_SUCCESS")
        .collect();
    assert_eq!(signing.len(), 12);
    for e in &signing {
        assert!(e["context"].is_object(), "no context: {e}");
    }
    let kinds: Vec<_> = events(&entries, "SIGN_SUCCESS")
        .iter()
        .map(|e| e["context"]["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds,
        [
            "raw_digest",
            "raw_digest",
            "evm_message",
            "evm_typed_data",
            "evm_authorization",
            "evm_transaction"
        ]
    );
    // A bare hash is a raw digest with the signer's chain id, identified by its SHA-256.
    let raw = events(&entries, "SIGN_SUCCESS")[0];
    assert_eq!(
        raw["context"],
        json!({"kind": "raw_digest", "chain_id": 8453})
    );
    assert_eq!(
        raw["payload_sha256"],
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(hash))
    );
    assert_eq!(
        events(&entries, "SIGN_SUCCESS")[5]["context"]["chain_id"],
        8453
    );
}
