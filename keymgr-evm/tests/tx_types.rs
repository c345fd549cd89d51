//! A transaction of a type keymgr does not sign (not 0 to 4), or one whose signing
//! encoding is of another type than it says it is, is refused through alloy's
//! `TxSigner` before any signature is asked for (never signed as something else), and
//! the refusal is audited: a `SIGN_FAILURE` entry with outcome `denied`, the error's
//! kind and the transaction's context, and no `SIGN_REQUEST` or `SIGN_SUCCESS`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use alloy_consensus::transaction::SignerRecoverable as _;
use alloy_consensus::{SignableTransaction, Transaction, TxEip1559, TypedTransaction};
use alloy_eips::Typed2718;
use alloy_eips::eip2930::AccessList;
use alloy_eips::eip7702::SignedAuthorization;
use alloy_network::TxSigner as _;
use alloy_primitives::{Address, B256, Bytes, ChainId, Signature, TxKind, U256, address};
use keymgr_core::{ErrorKind, KeyBackend, Outcome, SignContext};
use keymgr_env::EnvBackend;
use keymgr_evm::{EvmSigner, keymgr_error};
#[path = "support/audit.rs"]
mod audit_support;
use audit_support::{ADDRESS, KEY, exported, logged};
use serde_json::Value;

/// web3.js documentation key (public test vector) and its address.
const TO: Address = address!("A0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48");

/// An EIP-1559 transaction that claims type `ty`; its signing encoding is the EIP-1559
/// fields behind the byte `prefix` (`0x02`: an honest EIP-1559 encoding).
#[derive(Debug, Clone)]
struct Claimed {
    inner: TxEip1559,
    ty: u8,
    prefix: u8,
}

impl Typed2718 for Claimed {
    fn ty(&self) -> u8 {
        self.ty
    }
}

impl Transaction for Claimed {
    fn chain_id(&self) -> Option<ChainId> {
        self.inner.chain_id()
    }
    fn nonce(&self) -> u64 {
        self.inner.nonce()
    }
    fn gas_limit(&self) -> u64 {
        self.inner.gas_limit()
    }
    fn gas_price(&self) -> Option<u128> {
        self.inner.gas_price()
    }
    fn max_fee_per_gas(&self) -> u128 {
        self.inner.max_fee_per_gas()
    }
    fn max_priority_fee_per_gas(&self) -> Option<u128> {
        self.inner.max_priority_fee_per_gas()
    }
    fn max_fee_per_blob_gas(&self) -> Option<u128> {
        self.inner.max_fee_per_blob_gas()
    }
    fn priority_fee_or_price(&self) -> u128 {
        self.inner.priority_fee_or_price()
    }
    fn effective_gas_price(&self, base_fee: Option<u64>) -> u128 {
        self.inner.effective_gas_price(base_fee)
    }
    fn is_dynamic_fee(&self) -> bool {
        self.inner.is_dynamic_fee()
    }
    fn kind(&self) -> TxKind {
        self.inner.kind()
    }
    fn is_create(&self) -> bool {
        self.inner.is_create()
    }
    fn value(&self) -> U256 {
        self.inner.value()
    }
    fn input(&self) -> &Bytes {
        self.inner.input()
    }
    fn access_list(&self) -> Option<&AccessList> {
        self.inner.access_list()
    }
    fn blob_versioned_hashes(&self) -> Option<&[B256]> {
        self.inner.blob_versioned_hashes()
    }
    fn authorization_list(&self) -> Option<&[SignedAuthorization]> {
        self.inner.authorization_list()
    }
}

impl SignableTransaction<Signature> for Claimed {
    fn set_chain_id(&mut self, chain_id: ChainId) {
        self.inner.set_chain_id(chain_id);
    }
    fn encode_for_signing(&self, out: &mut dyn alloy_primitives::bytes::BufMut) {
        let encoded = self.inner.encoded_for_signing();
        assert_eq!(encoded[0], 0x02);
        out.put_u8(self.prefix);
        out.put_slice(&encoded[1..]);
    }
    fn payload_len_for_signature(&self) -> usize {
        self.inner.payload_len_for_signature()
    }
}

fn claimed(ty: u8, prefix: u8) -> Claimed {
    Claimed {
        inner: TxEip1559 {
            chain_id: 1,
            nonce: 7,
            gas_limit: 21_000,
            max_fee_per_gas: 30_000_000_000,
            max_priority_fee_per_gas: 1_000_000_000,
            to: TxKind::Call(TO),
            value: U256::from(1_000_000_000_000_000u64),
            ..Default::default()
        },
        ty,
        prefix,
    }
}

fn signing_events(entries: &[Value]) -> Vec<&Value> {
    entries
        .iter()
        .filter(|e| {
            e["event"]
                .as_str()
                .is_some_and(|ev| ev.starts_with("SIGN_"))
        })
        .collect()
}

#[tokio::test]
async fn unknown_and_contradicting_tx_types_are_refused_and_audited() {
    // (claimed type, first byte of the signing encoding): unknown types encoded as
    // themselves, unknown types whose encoding is a valid EIP-1559 one, and known types
    // whose encoding is of another type.
    let cases = [
        (0x05, 0x05),
        (0x7e, 0x7e),
        (0x7f, 0x7f),
        (0x05, 0x02),
        (0x7e, 0x02),
        (0x00, 0x02),
        (0x01, 0x02),
        (0x04, 0x02),
    ];
    for (ty, prefix) in cases {
        let l = logged("evm-tx-types", None).await;

        let mut tx = claimed(ty, prefix);
        let hash = tx.signature_hash();
        let err = l
            .signer
            .sign_transaction(&mut tx)
            .await
            .expect_err(&format!("type {ty:#x} encoded as {prefix:#x} was signed"));
        let inner = keymgr_error(&err).expect("a keymgr error inside");
        assert_eq!(inner.kind(), ErrorKind::Unsupported, "{ty:#x}/{prefix:#x}");

        l.log.flush().await.unwrap();
        let entries = exported(l.dir.path());
        let signing = signing_events(&entries);
        assert_eq!(signing.len(), 1, "{ty:#x}/{prefix:#x}: {signing:?}");
        let e = signing[0];
        assert_eq!(e["event"], "SIGN_FAILURE");
        let outcome: Outcome = serde_json::from_value(e["outcome"].clone()).unwrap();
        assert_eq!(outcome, Outcome::Denied);
        let kind: ErrorKind = serde_json::from_value(e["error_kind"].clone()).unwrap();
        assert_eq!(kind, ErrorKind::Unsupported);
        assert_eq!(e["key"], "evm");
        let context: SignContext = serde_json::from_value(e["context"].clone()).unwrap();
        assert_eq!(
            context,
            SignContext::EvmTransaction {
                chain_id: Some(1),
                tx_type: ty,
                to: Some(TO.to_checksum(None)),
                value: "1000000000000000".into(),
                nonce: 7,
                signing_hash: hex::encode(hash),
                tx_hash: None,
            }
        );
        let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(hash));
        assert_eq!(e["payload_sha256"], digest.as_str());
    }
}

#[tokio::test]
async fn refused_without_an_audit_layer_too() {
    let env = EnvBackend::new().with_secp256k1_hex("evm", KEY).unwrap();
    let signer = EvmSigner::new(Arc::new(env) as Arc<dyn KeyBackend>, "evm")
        .await
        .unwrap();
    let err = signer
        .sign_transaction(&mut claimed(0x05, 0x02))
        .await
        .unwrap_err();
    assert_eq!(keymgr_error(&err).unwrap().kind(), ErrorKind::Unsupported);
}

/// The same wrapper, honest (type 2 encoded as type 2), signs: the refusals above are
/// for the type, not for the wrapper. Checked by alloy's recovery of the envelope.
#[tokio::test]
async fn an_honest_wrapper_signs() {
    let env = EnvBackend::new().with_secp256k1_hex("evm", KEY).unwrap();
    let signer = EvmSigner::new(Arc::new(env) as Arc<dyn KeyBackend>, "evm")
        .await
        .unwrap();
    let mut tx = claimed(0x02, 0x02);
    let sig = signer.sign_transaction(&mut tx).await.unwrap();
    let envelope = TypedTransaction::Eip1559(tx.inner).into_envelope(sig);
    assert_eq!(envelope.recover_signer().unwrap(), ADDRESS);
}
