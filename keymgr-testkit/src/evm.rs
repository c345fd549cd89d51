//! The EVM signer suite (cargo feature `evm`): one function every backend with a
//! secp256k1 key runs through `keymgr_evm::EvmSigner`.
//!
//! Every signature is checked with alloy's own recovery (`Signature::recover_address_*`,
//! `SignerRecoverable::recover_signer` on the decoded raw transaction,
//! `SignedAuthorization::recover_authority`), never with keymgr's code, against the
//! address computed here from the backend's public key.
//!
//! ```no_run
//! # async fn demo(backend: std::sync::Arc<dyn keymgr_core::KeyBackend>) {
//! let report = keymgr_testkit::evm::run(backend, keymgr_core::KeyRef::new("evm")).await;
//! # let _ = report; }
//! ```

use std::sync::Arc;

use alloy_consensus::Transaction as _;
use alloy_consensus::transaction::SignerRecoverable as _;
use alloy_consensus::{
    SignableTransaction, TxEip1559, TxEip2930, TxEip4844, TxEip4844Variant, TxEip7702, TxEnvelope,
    TxLegacy, TypedTransaction,
};
use alloy_dyn_abi::eip712::TypedData;
use alloy_eips::eip2930::{AccessList, AccessListItem};
use alloy_eips::eip7702::Authorization;
use alloy_network::eip2718::{Decodable2718 as _, Encodable2718 as _};
use alloy_network::{Ethereum, EthereumWallet, NetworkWallet, TxSigner};
use alloy_primitives::{
    Address, B256, Bytes, ChainId, Signature, TxKind, U256, address, b256, bytes, keccak256,
};
use alloy_signer::Signer;
use alloy_sol_types::{Eip712Domain, SolStruct as _};
use keymgr_core::{KeyBackend, KeyRef};
use keymgr_evm::EvmSigner;
use keymgr_evm::payment_channel::{self, BalanceProof};

/// The chain id the suite's signer is set to (Base mainnet).
pub const CHAIN_ID: ChainId = payment_channel::BASE_CHAIN_ID;

/// The `Mail` example of EIP-712 in the JSON form `eth_signTypedData_v4` takes
/// (<https://eips.ethereum.org/EIPS/eip-712>, reference implementation `Example.js`).
pub const EIP712_MAIL_JSON: &str = r#"{
  "types": {
    "EIP712Domain": [
      { "name": "name", "type": "string" },
      { "name": "version", "type": "string" },
      { "name": "chainId", "type": "uint256" },
      { "name": "verifyingContract", "type": "address" }
    ],
    "Person": [
      { "name": "name", "type": "string" },
      { "name": "wallet", "type": "address" }
    ],
    "Mail": [
      { "name": "from", "type": "Person" },
      { "name": "to", "type": "Person" },
      { "name": "contents", "type": "string" }
    ]
  },
  "primaryType": "Mail",
  "domain": {
    "name": "Ether Mail",
    "version": "1",
    "chainId": 1,
    "verifyingContract": "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC"
  },
  "message": {
    "from": { "name": "Cow", "wallet": "0xCD2a3D9F938E13CD947Ec05AbC7FE734Df8DD826" },
    "to": { "name": "Bob", "wallet": "0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB" },
    "contents": "Hello, Bob!"
  }
}"#;

/// The EIP-712 signing hash of [`EIP712_MAIL_JSON`], as published with the EIP.
pub const EIP712_MAIL_SIGNING_HASH: B256 =
    b256!("be609aee343fb3c4b28e1df9e632fca64fcfaede20f02e86244efddf30957bd2");

/// The EIP-191 messages the suite signs.
pub fn sample_messages() -> Vec<Vec<u8>> {
    vec![
        Vec::new(),
        b"hello keymgr".to_vec(),
        "signed by a key that never leaves the HSM \u{1F510}"
            .repeat(20)
            .into_bytes(),
    ]
}

/// The balance proof and domain the suite signs with `sol!` typed data.
pub fn sample_balance_proof() -> (BalanceProof, Eip712Domain) {
    let proof = BalanceProof {
        channelId: keccak256("keymgr-testkit channel"),
        transferredAmount: U256::from(1_500_000u64),
        lockedAmount: U256::from(250_000u64),
        locksroot: keccak256("locks"),
        nonce: U256::from(42u64),
    };
    let contract = address!("5FbDB2315678afecb367f032d93F642f64180aa3");
    (proof, payment_channel::domain(CHAIN_ID, contract))
}

/// One unsigned transaction of each type alloy signs, for chain [`CHAIN_ID`]. The legacy
/// one has no chain id, so the signer's is filled in (EIP-155). The 7702 transaction's
/// authorization list is filled by the suite (it is signed by the signer under test).
pub fn sample_transactions() -> Vec<(&'static str, TypedTransaction)> {
    let to = address!("70997970C51812dc3A010C7d01b50e0d17dc79C8");
    let access_list = AccessList(vec![AccessListItem {
        address: to,
        storage_keys: vec![B256::ZERO, B256::with_last_byte(1)],
    }]);
    let input: Bytes = bytes!(
        "a9059cbb0000000000000000000000003c44cdddb6a900fa2b585dd299e03d12fa4293bc00000000000000000000000000000000000000000000000000000000000f4240"
    );
    vec![
        (
            "legacy",
            TxLegacy {
                chain_id: None,
                nonce: 7,
                gas_price: 1_000_000_000,
                gas_limit: 21_000,
                to: TxKind::Call(to),
                value: U256::from(1_000_000_000_000_000u64),
                input: Bytes::new(),
            }
            .into(),
        ),
        (
            "eip2930",
            TxEip2930 {
                chain_id: CHAIN_ID,
                nonce: 8,
                gas_price: 1_000_000_000,
                gas_limit: 60_000,
                to: TxKind::Call(to),
                value: U256::ZERO,
                access_list: access_list.clone(),
                input: input.clone(),
            }
            .into(),
        ),
        (
            "eip1559",
            TxEip1559 {
                chain_id: CHAIN_ID,
                nonce: 9,
                gas_limit: 60_000,
                max_fee_per_gas: 2_000_000_000,
                max_priority_fee_per_gas: 1_000_000,
                to: TxKind::Call(to),
                value: U256::ZERO,
                access_list: access_list.clone(),
                input: input.clone(),
            }
            .into(),
        ),
        (
            "eip4844",
            TypedTransaction::Eip4844(TxEip4844Variant::TxEip4844(TxEip4844 {
                chain_id: CHAIN_ID,
                nonce: 10,
                gas_limit: 100_000,
                max_fee_per_gas: 2_000_000_000,
                max_priority_fee_per_gas: 1_000_000,
                to,
                value: U256::ZERO,
                access_list: AccessList::default(),
                blob_versioned_hashes: vec![
                    b256!("0100000000000000000000000000000000000000000000000000000000000001"),
                    b256!("0100000000000000000000000000000000000000000000000000000000000002"),
                ],
                max_fee_per_blob_gas: 1_000_000,
                input: Bytes::new(),
            })),
        ),
        (
            "eip7702",
            TxEip7702 {
                chain_id: CHAIN_ID,
                nonce: 11,
                gas_limit: 100_000,
                max_fee_per_gas: 2_000_000_000,
                max_priority_fee_per_gas: 1_000_000,
                to,
                value: U256::ZERO,
                access_list: AccessList::default(),
                authorization_list: Vec::new(),
                input,
            }
            .into(),
        ),
    ]
}

/// Everything one signer produced over the suite's fixtures, in a fixed order, so two
/// signers with the same key can be compared byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvmSuiteReport {
    /// The signer's address.
    pub address: Address,
    /// EIP-191 signatures over [`sample_messages`].
    pub messages: Vec<Signature>,
    /// EIP-712 signature over [`sample_balance_proof`] (`sol!` struct).
    pub balance_proof: Signature,
    /// EIP-712 signature over [`EIP712_MAIL_JSON`] (dynamic `TypedData`).
    pub mail: Signature,
    /// The EIP-7702 authorization the signer signed for its own 7702 transaction.
    pub authorization: Signature,
    /// Per [`sample_transactions`] entry: name, signature, signed raw transaction (EIP-2718).
    pub transactions: Vec<(&'static str, Signature, Bytes)>,
}

/// Signs every fixture with `signer` (whose chain id must be [`CHAIN_ID`]) and checks
/// each signature with alloy's recovery against `signer`'s address; panics naming the
/// fixture on failure. Works for any alloy signer, so a reference signer
/// (`PrivateKeySigner`) can produce the report a keymgr signer must match.
pub async fn sign_fixtures<S>(signer: &S) -> EvmSuiteReport
where
    S: Signer + TxSigner<Signature> + Send + Sync,
{
    let address = Signer::address(signer);
    assert_eq!(
        TxSigner::address(signer),
        address,
        "Signer and TxSigner report different addresses"
    );
    assert_eq!(
        Signer::chain_id(signer),
        Some(CHAIN_ID),
        "sign_fixtures needs a signer with chain id {CHAIN_ID}"
    );

    // EIP-191.
    let mut messages = Vec::new();
    for msg in sample_messages() {
        let sig = signer
            .sign_message(&msg)
            .await
            .unwrap_or_else(|e| panic!("sign_message ({} bytes) failed: {e}", msg.len()));
        assert_low_s(&sig, "EIP-191 message");
        assert_eq!(
            sig.recover_address_from_msg(&msg)
                .expect("EIP-191 recovery"),
            address,
            "EIP-191 signature over {} bytes does not recover to the signer",
            msg.len()
        );
        messages.push(sig);
    }

    // EIP-712 with a sol! struct; the dynamic encoding of the same struct must agree.
    let (proof, domain) = sample_balance_proof();
    let balance_proof = signer
        .sign_typed_data(&proof, &domain)
        .await
        .unwrap_or_else(|e| panic!("sign_typed_data(BalanceProof) failed: {e}"));
    let proof_hash = proof.eip712_signing_hash(&domain);
    assert_eq!(
        TypedData::from_struct(&proof, Some(domain.clone()))
            .eip712_signing_hash()
            .expect("dynamic encoding of BalanceProof"),
        proof_hash,
        "sol! and dynamic EIP-712 encodings of BalanceProof disagree"
    );
    assert_low_s(&balance_proof, "EIP-712 BalanceProof");
    assert_eq!(
        balance_proof
            .recover_address_from_prehash(&proof_hash)
            .expect("EIP-712 recovery"),
        address,
        "EIP-712 BalanceProof signature does not recover to the signer"
    );

    // EIP-712 from JSON (eth_signTypedData_v4 form).
    let typed: TypedData = serde_json::from_str(EIP712_MAIL_JSON).expect("EIP-712 JSON parses");
    let mail_hash = typed.eip712_signing_hash().expect("EIP-712 Mail hash");
    assert_eq!(
        mail_hash, EIP712_MAIL_SIGNING_HASH,
        "Mail signing hash differs from the EIP's"
    );
    let mail = signer
        .sign_dynamic_typed_data(&typed)
        .await
        .unwrap_or_else(|e| panic!("sign_dynamic_typed_data(Mail) failed: {e}"));
    assert_low_s(&mail, "EIP-712 Mail");
    assert_eq!(
        mail.recover_address_from_prehash(&mail_hash)
            .expect("EIP-712 recovery"),
        address,
        "EIP-712 Mail signature does not recover to the signer"
    );

    // EIP-7702 authorization, then every transaction type.
    let auth = Authorization {
        chain_id: U256::from(CHAIN_ID),
        address: address!("00000000000000000000000000000000000c0de1"),
        nonce: 12,
    };
    let authorization = signer
        .sign_hash(&auth.signature_hash())
        .await
        .unwrap_or_else(|e| panic!("signing the EIP-7702 authorization failed: {e}"));
    let signed_auth = auth.clone().into_signed(authorization);
    assert_eq!(
        signed_auth
            .recover_authority()
            .expect("EIP-7702 authority recovery"),
        address,
        "EIP-7702 authorization does not recover to the signer"
    );

    let mut transactions = Vec::new();
    for (name, mut tx) in sample_transactions() {
        if let TypedTransaction::Eip7702(t) = &mut tx {
            t.authorization_list = vec![signed_auth.clone()];
        }
        let sig = signer
            .sign_transaction(&mut tx)
            .await
            .unwrap_or_else(|e| panic!("sign_transaction({name}) failed: {e}"));
        let raw = check_signed_transaction(name, tx, sig, address, CHAIN_ID);
        transactions.push((name, sig, raw));
    }

    EvmSuiteReport {
        address,
        messages,
        balance_proof,
        mail,
        authorization,
        transactions,
    }
}

/// Checks a signed transaction the way a node would: encodes it, decodes the raw bytes,
/// recovers the sender with alloy and compares it to `address`; returns the raw bytes.
fn check_signed_transaction(
    name: &str,
    tx: TypedTransaction,
    sig: Signature,
    address: Address,
    chain_id: ChainId,
) -> Bytes {
    assert_low_s(&sig, name);
    assert_eq!(
        tx.chain_id(),
        Some(chain_id),
        "{name}: the transaction's chain id after signing"
    );
    assert_eq!(
        sig.recover_address_from_prehash(&tx.signature_hash())
            .expect("recovery"),
        address,
        "{name}: signature does not recover to the signer"
    );
    let envelope: TxEnvelope = tx.into_signed(sig).into();
    let raw = envelope.encoded_2718();
    let decoded = TxEnvelope::decode_2718(&mut raw.as_slice())
        .unwrap_or_else(|e| panic!("{name}: signed raw transaction does not decode: {e}"));
    assert_eq!(decoded, envelope, "{name}: raw transaction round trip");
    assert_eq!(
        decoded.recover_signer().expect("sender recovery"),
        address,
        "{name}: the decoded raw transaction's sender is not the signer"
    );
    assert_eq!(
        decoded.chain_id(),
        Some(chain_id),
        "{name}: chain id in the raw transaction (EIP-155 for legacy)"
    );
    raw.into()
}

fn assert_low_s(sig: &Signature, what: &str) {
    assert!(sig.normalize_s().is_none(), "{what}: high-s signature");
}

/// Runs the EVM suite against `key` in `backend`: builds an [`EvmSigner`] (chain id
/// [`CHAIN_ID`]), checks its address against the backend's public key, signs every
/// fixture ([`sign_fixtures`]), signs through `EthereumWallet`, and checks chain id
/// handling as alloy's signers do it. Returns the report for byte comparisons.
pub async fn run(backend: Arc<dyn KeyBackend>, key: KeyRef) -> EvmSuiteReport {
    let name = backend.name().to_owned();
    let signer = EvmSigner::new(backend.clone(), key.clone())
        .await
        .unwrap_or_else(|e| panic!("{name}: EvmSigner::new({key}) failed: {e}"))
        .with_chain_id(Some(CHAIN_ID));

    // The address is keccak-256 of the uncompressed public key, minus the 0x04 tag.
    let public_key = backend
        .public_key(signer.key())
        .await
        .unwrap_or_else(|e| panic!("{name}: public_key({key}) failed: {e}"));
    let uncompressed = public_key
        .to_uncompressed()
        .unwrap_or_else(|| panic!("{name}: {key} is not a secp256k1 key"));
    let expected = Address::from_slice(&keccak256(&uncompressed[1..])[12..]);
    assert_eq!(
        signer.address(),
        expected,
        "{name}: address of {key} is not derived from its public key"
    );

    let report = sign_fixtures(&signer).await;
    wallet_signs(&signer).await;
    chain_id_handling(&signer).await;
    report
}

/// `EthereumWallet::from(signer)` signs and alloy recovers the sender.
async fn wallet_signs<B: KeyBackend + Clone + 'static>(signer: &EvmSigner<B>) {
    let address = signer.address();
    let wallet = EthereumWallet::from(signer.clone());
    assert_eq!(
        NetworkWallet::<Ethereum>::default_signer_address(&wallet),
        address
    );
    let (_, tx) = sample_transactions()
        .into_iter()
        .find(|(n, _)| *n == "eip1559")
        .expect("eip1559 fixture");
    let envelope = NetworkWallet::<Ethereum>::sign_transaction_from(&wallet, address, tx)
        .await
        .unwrap_or_else(|e| panic!("EthereumWallet signing failed: {e}"));
    assert_eq!(
        envelope.recover_signer().expect("sender recovery"),
        address,
        "wallet-signed transaction does not recover to the signer"
    );
}

/// Chain id rules of alloy's `sign_transaction_with_chain_id!`, as `PrivateKeySigner`
/// follows them.
async fn chain_id_handling<B: KeyBackend + Clone>(signer: &EvmSigner<B>) {
    let address = signer.address();
    let legacy = || TxLegacy {
        chain_id: None,
        nonce: 1,
        gas_price: 1_000_000_000,
        gas_limit: 21_000,
        to: TxKind::Call(address!("70997970C51812dc3A010C7d01b50e0d17dc79C8")),
        value: U256::from(1u64),
        input: Bytes::new(),
    };

    // A transaction for another chain is refused, naming both ids, and left unchanged.
    let mut tx = TxLegacy {
        chain_id: Some(1),
        ..legacy()
    };
    let before = tx.clone();
    match signer.sign_transaction(&mut tx).await {
        Err(alloy_signer::Error::TransactionChainIdMismatch { signer: s, tx: t }) => {
            assert_eq!((s, t), (CHAIN_ID, 1));
        }
        other => panic!("legacy tx for chain 1 on a chain {CHAIN_ID} signer: {other:?}"),
    }
    assert_eq!(tx, before, "a refused transaction must not be modified");
    let mut typed = TxEip1559 {
        chain_id: 1,
        ..Default::default()
    };
    match signer.sign_transaction(&mut typed).await {
        Err(alloy_signer::Error::TransactionChainIdMismatch { signer: s, tx: t }) => {
            assert_eq!((s, t), (CHAIN_ID, 1));
        }
        other => panic!("1559 tx for chain 1 on a chain {CHAIN_ID} signer: {other:?}"),
    }

    // The same chain id is accepted as is.
    let mut tx = TxLegacy {
        chain_id: Some(CHAIN_ID),
        ..legacy()
    };
    let sig = signer
        .sign_transaction(&mut tx)
        .await
        .expect("matching chain id");
    check_signed_transaction("legacy (same chain id)", tx.into(), sig, address, CHAIN_ID);

    // Without a signer chain id: transactions are signed as given; a legacy one without
    // chain id gets a pre-EIP-155 signature (v = 27/28), one with chain id 1 keeps it.
    let unchained = signer.clone().with_chain_id(None);
    let mut tx = legacy();
    let sig = unchained
        .sign_transaction(&mut tx)
        .await
        .expect("legacy without any chain id");
    assert_eq!(tx.chain_id, None, "no chain id must be invented");
    assert_eq!(
        sig.recover_address_from_prehash(&tx.signature_hash())
            .expect("recovery"),
        address
    );
    let envelope: TxEnvelope = tx.into_signed(sig).into();
    let raw = envelope.encoded_2718();
    let decoded = TxEnvelope::decode_2718(&mut raw.as_slice()).expect("pre-EIP-155 decodes");
    assert_eq!(decoded.chain_id(), None);
    assert_eq!(decoded.recover_signer().expect("recovery"), address);

    let mut tx = TxLegacy {
        chain_id: Some(1),
        ..legacy()
    };
    let sig = unchained
        .sign_transaction(&mut tx)
        .await
        .expect("legacy for chain 1 on a signer without chain id");
    check_signed_transaction(
        "legacy (chain 1, unchained signer)",
        tx.into(),
        sig,
        address,
        1,
    );

    // Messages and typed data ignore the signer's chain id.
    let msg = b"chain id does not apply to messages";
    for s in [signer, &unchained] {
        let sig = s.sign_message(msg).await.expect("sign_message");
        assert_eq!(
            sig.recover_address_from_msg(msg).expect("recovery"),
            address
        );
    }
}
