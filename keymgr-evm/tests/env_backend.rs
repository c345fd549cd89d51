//! EvmSigner over the env backend: the shared EVM suite, byte-identical results against
//! alloy's `PrivateKeySigner`, published vectors, chain id handling and errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use alloy_consensus::transaction::SignerRecoverable as _;
use alloy_consensus::{TxEip1559, TxLegacy};
use alloy_network::TxSigner;
use alloy_network::eip2718::Encodable2718 as _;
use alloy_primitives::{Address, B256, ChainId, Signature, TxKind, U256, address, keccak256};
use alloy_signer::Signer;
use alloy_signer_local::PrivateKeySigner;
use k256::ecdsa::SigningKey;
use keymgr_core::{ErrorKind, KeyBackend, KeyManager, KeyRef};
use keymgr_env::EnvBackend;
use keymgr_evm::{EvmSigner, TransactionRequest, keymgr_error};
use keymgr_testkit::evm::{self, CHAIN_ID};
use keymgr_testkit::fault::{Fault, Faulty};

fn env_with(key: &SigningKey) -> Arc<dyn KeyBackend> {
    Arc::new(EnvBackend::new().with_secp256k1_key("evm", key.clone()))
}

fn reference(key: &SigningKey) -> PrivateKeySigner {
    PrivateKeySigner::from_signing_key(key.clone())
}

#[tokio::test]
async fn suite_on_env_backend_matches_private_key_signer_byte_for_byte() {
    for _ in 0..3 {
        let key = SigningKey::random(&mut rand_core::OsRng);
        let ours = evm::run(env_with(&key), KeyRef::new("evm")).await;
        let theirs = evm::sign_fixtures(&reference(&key).with_chain_id(Some(CHAIN_ID))).await;
        assert_eq!(ours, theirs);
    }
}

#[tokio::test]
async fn suite_through_key_manager_layers() {
    let key = SigningKey::random(&mut rand_core::OsRng);
    let manager: Arc<dyn KeyBackend> = Arc::new(KeyManager::new(env_with(&key)));
    let ours = evm::run(manager, KeyRef::new("evm")).await;
    let theirs = evm::sign_fixtures(&reference(&key).with_chain_id(Some(CHAIN_ID))).await;
    assert_eq!(ours, theirs);
}

/// The EIP-712 `Mail` example: private key keccak256("cow"), published signature
/// (v = 28, r, s) from the EIP's reference implementation (`Example.js`).
#[tokio::test]
async fn eip712_mail_known_answer() {
    let secret = keccak256("cow");
    let backend = Arc::new(
        EnvBackend::new()
            .with_secp256k1_hex("evm", &secret.to_string())
            .unwrap(),
    );
    let signer = EvmSigner::new(backend, "evm").await.unwrap();
    assert_eq!(
        signer.address(),
        address!("CD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826")
    );
    let typed: alloy_dyn_abi::eip712::TypedData =
        serde_json::from_str(evm::EIP712_MAIL_JSON).unwrap();
    let sig = signer.sign_dynamic_typed_data(&typed).await.unwrap();
    let expected = Signature::from_scalars_and_parity(
        "0x4355c47d63924e8a72e509b65029052eb6c299d53a04e167c5775fd466751c9d"
            .parse()
            .unwrap(),
        "0x07299936d304c153f6443dfa05f40ff007d72911b6f72307f996231605b91562"
            .parse()
            .unwrap(),
        true, // v = 28
    );
    assert_eq!(sig, expected);
}

/// web3.js `eth.accounts.signTransaction` documentation vector, as alloy-signer-local
/// tests it: the same legacy transaction for chain 1 gives the published signature.
#[tokio::test]
async fn legacy_eip155_known_answer() {
    let backend = Arc::new(
        EnvBackend::new()
            .with_secp256k1_hex(
                "evm",
                "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318",
            )
            .unwrap(),
    );
    let signer = EvmSigner::new(backend, "evm")
        .await
        .unwrap()
        .with_chain_id(Some(1));
    let mut tx = TxLegacy {
        to: address!("F0109fC8DF283027b6285cc889F5aA624EaC1F55").into(),
        value: U256::from(1_000_000_000u64),
        gas_limit: 2_000_000,
        nonce: 0,
        gas_price: 21_000_000_000,
        input: Default::default(),
        chain_id: None,
    };
    let sig = signer.sign_transaction(&mut tx).await.unwrap();
    assert_eq!(tx.chain_id, Some(1), "the signer's chain id is filled in");
    let expected: Signature = "c9cf86333bcb065d140032ecaab5d9281bde80f21b9687b3e94161de42d51895727a108a0b8d101465414033c3f705a9c7b826e596766046ee1183dbc8aeaa6825".parse().unwrap();
    assert_eq!(sig, expected);
}

/// Every combination of signer chain id and transaction chain id gives exactly what
/// `PrivateKeySigner` gives: the same signature and the same filled-in transaction, or
/// the same `TransactionChainIdMismatch` error.
#[tokio::test]
async fn chain_id_handling_matches_private_key_signer() {
    let key = SigningKey::random(&mut rand_core::OsRng);
    let base = EvmSigner::new(env_with(&key), "evm").await.unwrap();
    let to = TxKind::Call(address!("70997970C51812dc3A010C7d01b50e0d17dc79C8"));
    let chains: [Option<ChainId>; 3] = [None, Some(1), Some(CHAIN_ID)];
    let mut mismatches = 0;
    for signer_chain in chains {
        let ours = base.clone().with_chain_id(signer_chain);
        let theirs = reference(&key).with_chain_id(signer_chain);
        assert_eq!(Signer::chain_id(&ours), signer_chain);
        for tx_chain in chains {
            let legacy = TxLegacy {
                chain_id: tx_chain,
                nonce: 3,
                gas_price: 7,
                gas_limit: 21_000,
                to,
                value: U256::from(5u64),
                input: Default::default(),
            };
            let (mut a, mut b) = (legacy.clone(), legacy);
            let (ra, rb) = (
                ours.sign_transaction(&mut a).await,
                theirs.sign_transaction(&mut b).await,
            );
            assert_eq!(
                a, b,
                "legacy tx after signing ({signer_chain:?}, {tx_chain:?})"
            );
            match (ra, rb) {
                (Ok(x), Ok(y)) => assert_eq!(x, y),
                (Err(x), Err(y)) => {
                    assert!(matches!(
                        x,
                        alloy_signer::Error::TransactionChainIdMismatch { .. }
                    ));
                    assert_eq!(x.to_string(), y.to_string());
                    mismatches += 1;
                }
                (x, y) => panic!("legacy ({signer_chain:?}, {tx_chain:?}): {x:?} vs {y:?}"),
            }

            let Some(typed_chain) = tx_chain else {
                continue;
            };
            let typed = TxEip1559 {
                chain_id: typed_chain,
                nonce: 4,
                gas_limit: 21_000,
                max_fee_per_gas: 9,
                max_priority_fee_per_gas: 1,
                to,
                ..Default::default()
            };
            let (mut a, mut b) = (typed.clone(), typed);
            let (ra, rb) = (
                ours.sign_transaction(&mut a).await,
                theirs.sign_transaction(&mut b).await,
            );
            assert_eq!(a, b);
            match (ra, rb) {
                (Ok(x), Ok(y)) => assert_eq!(x, y),
                (Err(x), Err(y)) => {
                    assert_eq!(x.to_string(), y.to_string());
                    mismatches += 1;
                }
                (x, y) => panic!("1559 ({signer_chain:?}, {typed_chain:?}): {x:?} vs {y:?}"),
            }
        }
    }
    // (1, 8453) and (8453, 1), for both transaction types.
    assert_eq!(mismatches, 4);
}

#[tokio::test]
async fn sign_hash_message_and_typed_data_equal_private_key_signer() {
    let key = SigningKey::random(&mut rand_core::OsRng);
    let ours = EvmSigner::new(env_with(&key), "evm").await.unwrap();
    let theirs = reference(&key);
    assert_eq!(Signer::address(&ours), theirs.address());
    for hash in [B256::ZERO, B256::repeat_byte(0xff), keccak256("x")] {
        assert_eq!(
            ours.sign_hash(&hash).await.unwrap().as_bytes(),
            theirs.sign_hash(&hash).await.unwrap().as_bytes()
        );
    }
    let (proof, domain) = evm::sample_balance_proof();
    assert_eq!(
        ours.sign_typed_data(&proof, &domain).await.unwrap(),
        theirs.sign_typed_data(&proof, &domain).await.unwrap()
    );
    // Trait objects work too.
    let boxed: Box<dyn Signer + Send + Sync> = Box::new(ours.clone());
    assert_eq!(
        boxed.sign_message(b"dyn").await.unwrap(),
        theirs.sign_message(b"dyn").await.unwrap()
    );
}

#[tokio::test]
async fn sign_request_builds_signs_and_encodes() {
    let key = SigningKey::random(&mut rand_core::OsRng);
    let signer = EvmSigner::new(env_with(&key), "evm")
        .await
        .unwrap()
        .with_chain_id(Some(CHAIN_ID));
    let request: TransactionRequest = serde_json::from_value(serde_json::json!({
        "to": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
        "value": "0xde0b6b3a7640000",
        "nonce": "0x5",
        "gas": "0x5208",
        "maxFeePerGas": "0x77359400",
        "maxPriorityFeePerGas": "0xf4240"
    }))
    .unwrap();
    let envelope = signer.sign_request(request.clone()).await.unwrap();
    assert!(envelope.is_eip1559());
    assert_eq!(
        alloy_consensus::Transaction::chain_id(&envelope),
        Some(CHAIN_ID),
        "missing chainId is taken from the signer"
    );
    assert_eq!(envelope.recover_signer().unwrap(), signer.address());

    // Same bytes as alloy's wallet with PrivateKeySigner for the same request.
    let wallet = alloy_network::EthereumWallet::from(reference(&key).with_chain_id(Some(CHAIN_ID)));
    let mut with_chain = request.clone();
    with_chain.chain_id = Some(CHAIN_ID);
    let theirs =
        alloy_network::NetworkWallet::<alloy_network::Ethereum>::sign_request(&wallet, with_chain)
            .await
            .unwrap();
    assert_eq!(envelope.encoded_2718(), theirs.encoded_2718());

    // A request from another address is refused, naming both.
    let mut other = request.clone();
    other.from = Some(Address::repeat_byte(0x11));
    let e = signer.sign_request(other).await.unwrap_err();
    let r = keymgr_evm::request_error(&e).expect("request error inside");
    assert_eq!(r.fields(), ["from"]);
    assert!(e.to_string().contains(&signer.address().to_string()), "{e}");

    // An incomplete request names what is missing.
    let mut incomplete = request;
    incomplete.nonce = None;
    let e = signer.sign_request(incomplete).await.unwrap_err();
    let r = keymgr_evm::request_error(&e).expect("request error inside");
    assert_eq!(r.fields(), ["nonce"]);
}

#[tokio::test]
async fn integrity_error_when_the_backend_signature_is_not_ours() {
    let key = SigningKey::random(&mut rand_core::OsRng);
    let faulty = Arc::new(Faulty::new(env_with(&key)));
    let signer = EvmSigner::new(faulty.clone(), "evm").await.unwrap();
    faulty.inject(Fault::CorruptSignature);
    let e = signer
        .sign_prehash(&B256::repeat_byte(3))
        .await
        .unwrap_err();
    assert_eq!(
        e.integrity_reason(),
        Some(keymgr_core::IntegrityReason::PayloadMismatch),
        "{e}"
    );
    assert!(matches!(&e, keymgr_core::Error::Integrity { key, .. } if key == "evm@1"));
    assert!(e.to_string().contains(&signer.address().to_string()), "{e}");

    // Through alloy's trait: wrapped, and recoverable with keymgr_error.
    faulty.inject(Fault::CorruptSignature);
    let e = signer.sign_message(b"m").await.unwrap_err();
    assert_eq!(keymgr_error(&e).unwrap().kind(), ErrorKind::Integrity);

    // A signer built with the wrong public key never signs for that wrong address.
    let other = SigningKey::random(&mut rand_core::OsRng);
    let wrong = EvmSigner::from_public_key(
        env_with(&key),
        KeyRef::versioned("evm", "1"),
        &keymgr_core::PublicKey::Secp256k1(*other.verifying_key()),
    )
    .unwrap();
    let e = wrong.sign_hash(&B256::repeat_byte(4)).await.unwrap_err();
    assert_eq!(keymgr_error(&e).unwrap().kind(), ErrorKind::Integrity);
    let mut tx = TxEip1559::default();
    let e = wrong.sign_transaction(&mut tx).await.unwrap_err();
    assert_eq!(keymgr_error(&e).unwrap().kind(), ErrorKind::Integrity);
}

#[tokio::test]
async fn backend_errors_keep_their_kind() {
    let key = SigningKey::random(&mut rand_core::OsRng);
    let e = EvmSigner::new(env_with(&key), "nope").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);

    let faulty = Arc::new(Faulty::new(env_with(&key)));
    let signer = EvmSigner::new(faulty.clone(), "evm").await.unwrap();
    faulty.fail_next(1, || {
        keymgr_core::Error::unavailable("kms", "connection reset", None)
    });
    let e = signer.sign_hash(&B256::ZERO).await.unwrap_err();
    let k = keymgr_error(&e).unwrap();
    assert_eq!(k.kind(), ErrorKind::Unavailable);
    assert!(k.is_retryable());

    // Ed25519 keys cannot sign for Ethereum.
    let ed = Arc::new(
        EnvBackend::new().with_ed25519_key("xrp", ed25519_dalek::SigningKey::from_bytes(&[7; 32])),
    );
    let e = EvmSigner::new(ed, "xrp").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(
        e.to_string().contains("xrp") && e.to_string().contains("secp256k1"),
        "{e}"
    );
}

#[tokio::test]
async fn debug_shows_no_secret() {
    let key = SigningKey::random(&mut rand_core::OsRng);
    let secret_hex = alloy_primitives::hex::encode(key.to_bytes());
    let signer = EvmSigner::new(env_with(&key), "evm").await.unwrap();
    let debug = format!("{signer:?}");
    assert!(!debug.contains(&secret_hex), "{debug}");
    assert!(
        debug
            .to_lowercase()
            .contains(&signer.address().to_string().to_lowercase()),
        "{debug}"
    );
    let wallet = alloy_network::EthereumWallet::from(signer);
    let debug = format!("{wallet:?}");
    assert!(!debug.contains(&secret_hex), "{debug}");
}
