//! Round trip: random JSON transaction requests, read and signed the way `keymgr evm
//! sign-tx` does (`CheckedRequest::from_json` + `sign_checked`), give the same bytes as
//! alloy's own `PrivateKeySigner` signing the transaction built field by field, and
//! decode back to the request's fields.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use alloy_consensus::{SignableTransaction as _, TxEip1559, TxEip2930, TxEnvelope, TxLegacy};
use alloy_eips::eip2718::{Decodable2718 as _, Encodable2718 as _};
use alloy_network::TxSignerSync as _;
use alloy_primitives::{Address, Bytes, TxKind, U256};
use alloy_signer_local::PrivateKeySigner;
use k256::ecdsa::SigningKey;
use keymgr_env::EnvBackend;
use keymgr_evm::{CheckedRequest, EvmSigner};
use proptest::prelude::*;
use serde_json::{Value, json};

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

#[derive(Debug, Clone)]
struct Fields {
    kind: u8,
    chain_id: u64,
    nonce: u64,
    gas: u64,
    fee: u128,
    tip: u128,
    to: Option<[u8; 20]>,
    value: [u8; 32],
    input: Vec<u8>,
}

fn fields() -> impl Strategy<Value = Fields> {
    (
        0u8..3,
        1u64..=u64::MAX / 2,
        any::<u64>(),
        21_000u64..30_000_000,
        1u128..=u128::from(u64::MAX),
        any::<u64>(),
        proptest::option::weighted(0.8, any::<[u8; 20]>()),
        any::<[u8; 32]>(),
        proptest::collection::vec(any::<u8>(), 0..80),
    )
        .prop_map(
            |(kind, chain_id, nonce, gas, fee, tip, to, value, mut input)| {
                if to.is_none() && input.is_empty() {
                    input.push(0x60); // a creation needs init code
                }
                Fields {
                    kind,
                    chain_id,
                    nonce,
                    gas,
                    fee,
                    tip: u128::from(tip).min(fee),
                    to,
                    value,
                    input,
                }
            },
        )
}

fn request_json(f: &Fields) -> Value {
    let mut v = json!({
        "nonce": format!("{:#x}", f.nonce),
        "gas": format!("{:#x}", f.gas),
        "chainId": format!("{:#x}", f.chain_id),
        "value": format!("{:#x}", U256::from_be_bytes(f.value)),
        "input": format!("0x{}", hex::encode(&f.input)),
    });
    if let Some(to) = f.to {
        v["to"] = json!(Address::from(to).to_checksum(None));
    }
    match f.kind {
        0 => v["gasPrice"] = json!(format!("{:#x}", f.fee)),
        1 => {
            v["gasPrice"] = json!(format!("{:#x}", f.fee));
            v["accessList"] = json!([]);
        }
        _ => {
            v["maxFeePerGas"] = json!(format!("{:#x}", f.fee));
            v["maxPriorityFeePerGas"] = json!(format!("{:#x}", f.tip));
        }
    }
    v
}

/// alloy's own encoding of the same transaction, signed by `PrivateKeySigner`.
fn alloy_reference(f: &Fields, key: &SigningKey) -> Vec<u8> {
    let signer = PrivateKeySigner::from_signing_key(key.clone());
    let to =
        f.to.map_or(TxKind::Create, |a| TxKind::Call(Address::from(a)));
    let value = U256::from_be_bytes(f.value);
    let input = Bytes::from(f.input.clone());
    let envelope: TxEnvelope = match f.kind {
        0 => {
            let mut tx = TxLegacy {
                chain_id: Some(f.chain_id),
                nonce: f.nonce,
                gas_price: f.fee,
                gas_limit: f.gas,
                to,
                value,
                input,
            };
            let sig = signer.sign_transaction_sync(&mut tx).unwrap();
            tx.into_signed(sig).into()
        }
        1 => {
            let mut tx = TxEip2930 {
                chain_id: f.chain_id,
                nonce: f.nonce,
                gas_price: f.fee,
                gas_limit: f.gas,
                to,
                value,
                input,
                access_list: Default::default(),
            };
            let sig = signer.sign_transaction_sync(&mut tx).unwrap();
            tx.into_signed(sig).into()
        }
        _ => {
            let mut tx = TxEip1559 {
                chain_id: f.chain_id,
                nonce: f.nonce,
                gas_limit: f.gas,
                max_fee_per_gas: f.fee,
                max_priority_fee_per_gas: f.tip,
                to,
                value,
                input,
                access_list: Default::default(),
            };
            let sig = signer.sign_transaction_sync(&mut tx).unwrap();
            tx.into_signed(sig).into()
        }
    };
    envelope.encoded_2718()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn json_requests_sign_as_alloy_encodes(f in fields(), secret in any::<[u8; 32]>()) {
        let Ok(key) = SigningKey::from_slice(&secret) else { return Ok(()) };
        let backend = Arc::new(EnvBackend::new().with_secp256k1_key("evm", key.clone()));
        let request = request_json(&f);
        let ours = block_on(async {
            let signer = EvmSigner::new(backend, "evm").await.unwrap();
            let checked = CheckedRequest::from_json(&request.to_string()).unwrap();
            signer.sign_checked(checked).await.unwrap()
        });
        let raw = ours.encoded_2718();
        prop_assert_eq!(&raw, &alloy_reference(&f, &key), "{}", request);
        let decoded = TxEnvelope::decode_2718(&mut raw.as_slice()).unwrap();
        prop_assert_eq!(u8::from(decoded.tx_type()), f.kind);
        prop_assert_eq!(alloy_consensus::Transaction::nonce(&decoded), f.nonce);
        prop_assert_eq!(alloy_consensus::Transaction::input(&decoded).as_ref(), f.input.as_slice());
    }
}
