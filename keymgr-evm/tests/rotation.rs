//! Rotation: a signer is bound to one key version; rotating the logical key changes the
//! address, and the API says so.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use alloy_primitives::{Address, B256};
use alloy_signer::Signer as _;
use async_trait::async_trait;
use k256::ecdsa::SigningKey;
use keymgr_core::{
    Error, ErrorKind, HealthReport, KeyAlgorithm, KeyBackend, KeyManager, KeyRef, KeyVersion,
    PublicKey, RawSignature, Result, SignPayload, VerifiedSignature, VersionState,
    finish_signature,
};
use keymgr_evm::EvmSigner;

/// An in-memory backend with versioned keys, like a KMS: versions "1", "2", ...; the
/// newest is current; old versions stay usable until disabled.
#[derive(Debug, Default)]
struct VersionedBackend {
    versions: Mutex<Vec<(SigningKey, bool)>>,
}

impl VersionedBackend {
    fn with_one_version() -> Self {
        let b = Self::default();
        b.add();
        b
    }

    fn add(&self) -> String {
        let mut v = self.versions.lock().unwrap();
        v.push((SigningKey::random(&mut rand_core::OsRng), true));
        v.len().to_string()
    }

    fn get(&self, key: &KeyRef) -> Result<SigningKey> {
        let v = self.versions.lock().unwrap();
        let index = match key.version() {
            Some(n) => n
                .parse::<usize>()
                .ok()
                .and_then(|n| n.checked_sub(1))
                .ok_or_else(|| Error::not_found(key.to_string(), "no such version"))?,
            None => v.len() - 1,
        };
        match v.get(index) {
            Some((k, true)) => Ok(k.clone()),
            Some((_, false)) => Err(Error::not_found(key.to_string(), "version is disabled")),
            None => Err(Error::not_found(key.to_string(), "no such version")),
        }
    }
}

#[async_trait]
impl KeyBackend for VersionedBackend {
    fn name(&self) -> &str {
        "versioned"
    }
    async fn public_key(&self, key: &KeyRef) -> Result<PublicKey> {
        Ok(PublicKey::Secp256k1(*self.get(key)?.verifying_key()))
    }
    async fn sign(&self, key: &KeyRef, payload: &SignPayload) -> Result<VerifiedSignature> {
        let k = self.get(key)?;
        let SignPayload::Prehash(h) = payload else {
            return Err(Error::invalid_input("payload", "prehash only"));
        };
        let (sig, _) = k.sign_prehash_recoverable(h).unwrap();
        let pk = PublicKey::Secp256k1(*k.verifying_key());
        finish_signature(
            &key.to_string(),
            &pk,
            payload,
            RawSignature::EcdsaRaw(&sig.to_bytes()),
        )
    }
    async fn health(&self) -> HealthReport {
        HealthReport::healthy("versioned", std::time::Duration::ZERO)
    }
    async fn list_versions(&self, name: &str) -> Result<Vec<KeyVersion>> {
        let v = self.versions.lock().unwrap();
        let n = v.len();
        Ok(v.iter()
            .enumerate()
            .map(|(i, (_, enabled))| KeyVersion {
                key: KeyRef::versioned(name, (i + 1).to_string()),
                backend_id: format!("versioned:{name}:{}", i + 1),
                algorithm: KeyAlgorithm::Secp256k1,
                state: if *enabled {
                    VersionState::Enabled
                } else {
                    VersionState::Disabled
                },
                created_at_ms: None,
                current: i + 1 == n,
            })
            .collect())
    }
    async fn create_version(&self, name: &str) -> Result<KeyVersion> {
        let version = self.add();
        Ok(KeyVersion {
            key: KeyRef::versioned(name, version.clone()),
            backend_id: format!("versioned:{name}:{version}"),
            algorithm: KeyAlgorithm::Secp256k1,
            state: VersionState::Enabled,
            created_at_ms: None,
            current: true,
        })
    }
    async fn disable_version(&self, key: &KeyRef) -> Result<()> {
        let i: usize = key.version().unwrap().parse().unwrap();
        self.versions.lock().unwrap()[i - 1].1 = false;
        Ok(())
    }
}

async fn recovered(signer: &EvmSigner<impl KeyBackend>, hash: B256) -> Address {
    signer
        .sign_hash(&hash)
        .await
        .unwrap()
        .recover_address_from_prehash(&hash)
        .unwrap()
}

#[tokio::test]
async fn signer_is_pinned_to_the_version_current_when_built() {
    let backend = Arc::new(VersionedBackend::with_one_version());
    let signer = EvmSigner::new(backend.clone(), "settlement")
        .await
        .unwrap()
        .with_chain_id(Some(8453));
    assert_eq!(signer.key(), &KeyRef::versioned("settlement", "1"));
    assert_eq!(signer.check_rotation().await.unwrap(), None);
    let old_address = signer.address();
    let h = B256::repeat_byte(9);

    backend.create_version("settlement").await.unwrap();

    // The old signer still signs for its own (old) address during the overlap...
    assert_eq!(signer.address(), old_address);
    assert_eq!(recovered(&signer, h).await, old_address);
    // ...and says the logical key has moved on.
    let change = signer
        .check_rotation()
        .await
        .unwrap()
        .expect("rotation detected");
    assert_eq!(change.bound, KeyRef::versioned("settlement", "1"));
    assert_eq!(change.bound_address, old_address);
    assert_eq!(change.current, KeyRef::versioned("settlement", "2"));
    assert_ne!(change.current_address, old_address);

    // The signer for the new version has the new address and keeps the chain id.
    let fresh = signer.to_current_version().await.unwrap();
    assert_eq!(fresh.key(), &KeyRef::versioned("settlement", "2"));
    assert_eq!(fresh.address(), change.current_address);
    assert_eq!(fresh.chain_id(), Some(8453));
    assert_eq!(recovered(&fresh, h).await, change.current_address);

    // Once the old version is disabled, the old signer fails; it never signs with v2.
    backend
        .disable_version(&KeyRef::versioned("settlement", "1"))
        .await
        .unwrap();
    let e = signer.sign_prehash(&h).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

#[tokio::test]
async fn signer_from_the_rotation_result() {
    use keymgr_rotation::{MemoryStateStore, RotationEvent, RotationPolicy, Rotator, SystemClock};
    let backend: Arc<dyn KeyBackend> = Arc::new(VersionedBackend::with_one_version());
    let manager = Arc::new(KeyManager::new(backend));
    let before = EvmSigner::new(manager.clone(), "settlement").await.unwrap();
    let rotator = Rotator::from_manager(
        &manager,
        Arc::new(MemoryStateStore::default()),
        RotationPolicy::default(),
        Arc::new(SystemClock),
    )
    .unwrap();
    let events = rotator.rotate_now("settlement", false).await.unwrap();
    let Some(RotationEvent::Rotated(rotation)) = events.last() else {
        panic!("{events:?}")
    };
    let after = EvmSigner::from_public_key(
        manager.clone(),
        rotation.new.key.clone(),
        &rotation.new.public_key,
    )
    .unwrap();
    assert_eq!(after.key(), &KeyRef::versioned("settlement", "2"));
    assert_ne!(after.address(), before.address());
    // The result's address is the signer's, and the old one is the previous signer's.
    assert_eq!(
        rotation
            .new
            .evm_address()
            .unwrap()
            .parse::<Address>()
            .unwrap(),
        after.address()
    );
    assert_eq!(
        rotation
            .old
            .as_ref()
            .unwrap()
            .evm_address()
            .unwrap()
            .parse::<Address>()
            .unwrap(),
        before.address()
    );
    let h = B256::repeat_byte(1);
    assert_eq!(recovered(&after, h).await, after.address());
    assert_eq!(recovered(&before, h).await, before.address());
    assert_eq!(
        before
            .check_rotation()
            .await
            .unwrap()
            .unwrap()
            .current_address,
        after.address()
    );
}

/// A backend without versions, whose key behind the name is replaced (manual rotation).
#[derive(Debug)]
struct Unversioned(Mutex<SigningKey>);

#[async_trait]
impl KeyBackend for Unversioned {
    fn name(&self) -> &str {
        "unversioned"
    }
    async fn public_key(&self, _key: &KeyRef) -> Result<PublicKey> {
        Ok(PublicKey::Secp256k1(
            *self.0.lock().unwrap().verifying_key(),
        ))
    }
    async fn sign(&self, key: &KeyRef, payload: &SignPayload) -> Result<VerifiedSignature> {
        let k = self.0.lock().unwrap().clone();
        let SignPayload::Prehash(h) = payload else {
            return Err(Error::invalid_input("payload", "prehash only"));
        };
        let (sig, _) = k.sign_prehash_recoverable(h).unwrap();
        finish_signature(
            key.name(),
            &PublicKey::Secp256k1(*k.verifying_key()),
            payload,
            RawSignature::EcdsaRaw(&sig.to_bytes()),
        )
    }
    async fn health(&self) -> HealthReport {
        HealthReport::healthy("unversioned", std::time::Duration::ZERO)
    }
}

#[tokio::test]
async fn unversioned_backend_key_swap_is_an_integrity_error() {
    let backend = Arc::new(Unversioned(Mutex::new(SigningKey::random(
        &mut rand_core::OsRng,
    ))));
    let signer = EvmSigner::new(backend.clone(), "evm").await.unwrap();
    assert_eq!(signer.key(), &KeyRef::new("evm"), "nothing to pin to");
    let old = signer.address();
    *backend.0.lock().unwrap() = SigningKey::random(&mut rand_core::OsRng);

    let e = signer.sign_prehash(&B256::ZERO).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Integrity);
    assert!(e.to_string().contains(&old.to_string()), "{e}");
    assert!(e.to_string().contains("rotated"), "{e}");

    let change = signer.check_rotation().await.unwrap().unwrap();
    let fresh = signer.to_current_version().await.unwrap();
    assert_eq!(fresh.address(), change.current_address);
    assert_eq!(recovered(&fresh, B256::ZERO).await, fresh.address());
}
