//! Properties over random keys and hashes: EvmSigner equals PrivateKeySigner byte for
//! byte on the env backend, and backends that return high-s or DER signatures still
//! give a low-s signature with the right parity that alloy recovers to `address()`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use alloy_primitives::B256;
use alloy_signer::Signer as _;
use alloy_signer_local::PrivateKeySigner;
use async_trait::async_trait;
use k256::ecdsa::SigningKey;
use k256::elliptic_curve::scalar::IsHigh as _;
use k256::{NonZeroScalar, Scalar};
use keymgr_core::{
    HealthReport, KeyBackend, KeyRef, PublicKey, RawSignature, Result, SignPayload,
    VerifiedSignature, finish_signature,
};
use keymgr_env::EnvBackend;
use keymgr_evm::EvmSigner;
use proptest::prelude::*;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

/// A device that signs like an HSM's `CKM_ECDSA` or a KMS: plain ECDSA with its own
/// nonce, no low-s normalization, answering raw `r ‖ s` or DER. Its answer goes through
/// `finish_signature` like every provider's.
#[derive(Debug)]
struct RawEcdsaDevice {
    key: SigningKey,
    nonce: Scalar,
    der: bool,
}

impl RawEcdsaDevice {
    /// The signature exactly as the device produces it (s may be high).
    fn raw_sign(&self, hash: &[u8; 32]) -> k256::ecdsa::Signature {
        let d: &Scalar = self.key.as_nonzero_scalar().as_ref();
        let (sig, _) = k256::ecdsa::hazmat::sign_prehashed::<k256::Secp256k1, Scalar>(
            d,
            self.nonce,
            &(*hash).into(),
        )
        .expect("nonzero nonce");
        sig
    }
}

#[async_trait]
impl KeyBackend for RawEcdsaDevice {
    fn name(&self) -> &str {
        "raw-ecdsa-device"
    }
    async fn public_key(&self, _key: &KeyRef) -> Result<PublicKey> {
        Ok(PublicKey::Secp256k1(*self.key.verifying_key()))
    }
    async fn sign(&self, key: &KeyRef, payload: &SignPayload) -> Result<VerifiedSignature> {
        let SignPayload::Prehash(h) = payload else {
            panic!("EvmSigner must send a prehash")
        };
        let sig = self.raw_sign(h);
        let pk = self.public_key(key).await?;
        if self.der {
            finish_signature(
                key.name(),
                &pk,
                payload,
                RawSignature::EcdsaDer(sig.to_der().as_bytes()),
            )
        } else {
            finish_signature(
                key.name(),
                &pk,
                payload,
                RawSignature::EcdsaRaw(&sig.to_bytes()),
            )
        }
    }
    async fn health(&self) -> HealthReport {
        HealthReport::healthy("raw-ecdsa-device", std::time::Duration::ZERO)
    }
}

fn signing_key(seed: [u8; 32]) -> Option<SigningKey> {
    SigningKey::from_bytes(&seed.into()).ok()
}

/// Checks the device's signature through EvmSigner: same r, s normalized to low, and
/// alloy recovers `address()`. Returns whether the device's raw s was high.
fn check_device(key: SigningKey, nonce: Scalar, der: bool, hash: [u8; 32]) -> bool {
    let device = RawEcdsaDevice { key, nonce, der };
    let raw = device.raw_sign(&hash);
    let raw_high = bool::from(raw.s().is_high());
    let reference = PrivateKeySigner::from_signing_key(device.key.clone());
    let signer = block_on(EvmSigner::new(Arc::new(device), "k")).unwrap();
    assert_eq!(signer.address(), reference.address());
    let sig = block_on(signer.sign_hash(&B256::from(hash))).unwrap();
    let low = raw.normalize_s().unwrap_or(raw);
    assert_eq!(
        sig.r().to_be_bytes::<32>(),
        <[u8; 32]>::from(raw.r().to_bytes())
    );
    assert_eq!(
        sig.s().to_be_bytes::<32>(),
        <[u8; 32]>::from(low.s().to_bytes())
    );
    assert!(sig.normalize_s().is_none(), "high-s left the signer");
    assert_eq!(
        sig.recover_address_from_prehash(&B256::from(hash)).unwrap(),
        signer.address()
    );
    raw_high
}

/// A raw signature with high s exists and is handled (found by trying nonces; about
/// half of all nonces give one, so this ends within a few tries).
#[test]
fn a_high_s_raw_signature_is_normalized_with_the_right_parity() {
    let key = SigningKey::from_bytes(&[0x42; 32].into()).unwrap();
    let hash = [0x17; 32];
    let mut seen = (false, false);
    for k in 1u64..64 {
        let high = check_device(key.clone(), Scalar::from(k), k % 2 == 0, hash);
        if high {
            seen.0 = true;
        } else {
            seen.1 = true;
        }
        if seen == (true, true) {
            return;
        }
    }
    panic!("no high-s and low-s raw signatures among 63 nonces: {seen:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn env_backend_equals_private_key_signer(seed in any::<[u8; 32]>(), hash in any::<[u8; 32]>()) {
        let Some(key) = signing_key(seed) else { return Ok(()) };
        let reference = PrivateKeySigner::from_signing_key(key.clone());
        let backend = Arc::new(EnvBackend::new().with_secp256k1_key("evm", key));
        let signer = block_on(EvmSigner::new(backend, "evm")).unwrap();
        prop_assert_eq!(signer.address(), reference.address());
        let hash = B256::from(hash);
        let ours = block_on(signer.sign_hash(&hash)).unwrap();
        let theirs = block_on(reference.sign_hash(&hash)).unwrap();
        prop_assert_eq!(ours.as_bytes(), theirs.as_bytes());
        prop_assert_eq!(ours.recover_address_from_prehash(&hash).unwrap(), signer.address());
    }

    #[test]
    fn raw_and_der_devices_high_or_low_s(
        seed in any::<[u8; 32]>(),
        nonce in any::<[u8; 32]>(),
        hash in any::<[u8; 32]>(),
        der in any::<bool>(),
    ) {
        let Some(key) = signing_key(seed) else { return Ok(()) };
        let Some(nonce) = Option::<NonZeroScalar>::from(NonZeroScalar::from_repr(nonce.into())) else {
            return Ok(())
        };
        check_device(key, *nonce, der, hash);
    }
}
