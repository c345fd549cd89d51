//! The in-memory backend through the conformance suite (signing and the versions
//! contract), and the suite's own checks failing on backends that break the contract.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use async_trait::async_trait;
use keymgr_core::{
    HealthReport, KeyAlgorithm, KeyBackend, KeyRef, KeyVersion, PublicKey, Result, SignPayload,
    VerifiedSignature,
};
use keymgr_testkit::conformance::{self, SuiteKeys};
use keymgr_testkit::memory::MemoryBackend;

#[tokio::test]
async fn memory_backend_signs_and_keeps_the_versions_contract() {
    let secp = Arc::new(MemoryBackend::with_key("evm", KeyAlgorithm::Secp256k1));
    let ed = Arc::new(MemoryBackend::with_key("xrp", KeyAlgorithm::Ed25519));
    conformance::run(secp.clone(), &SuiteKeys::new(Some("evm"), None)).await;
    conformance::run(ed.clone(), &SuiteKeys::new(None, Some("xrp"))).await;
    // The memory backend keeps no per-instance cache: it is its own fresh instance.
    conformance::versions(&*secp, &*secp, "evm").await;
    conformance::versions(&*ed, &*ed, "xrp").await;
    // Twice more: the contract holds from any version on, not only the first.
    conformance::versions(&*secp, &*secp, "evm").await;
    assert_eq!(
        secp.versions("evm"),
        [("1", false), ("2", false), ("3", true)].map(|(v, e)| (v.to_owned(), e))
    );
}

/// Delegates to a [`MemoryBackend`] but "disables" the current version by ignoring
/// the request, as a backend that fails to refuse it would appear.
#[derive(Debug)]
struct AcceptsDisablingCurrent(MemoryBackend);

#[async_trait]
impl KeyBackend for AcceptsDisablingCurrent {
    fn name(&self) -> &str {
        "accepts-disabling-current"
    }
    async fn public_key(&self, key: &KeyRef) -> Result<PublicKey> {
        self.0.public_key(key).await
    }
    async fn sign(&self, key: &KeyRef, payload: &SignPayload) -> Result<VerifiedSignature> {
        self.0.sign(key, payload).await
    }
    async fn health(&self) -> HealthReport {
        self.0.health().await
    }
    async fn list_versions(&self, name: &str) -> Result<Vec<KeyVersion>> {
        self.0.list_versions(name).await
    }
    async fn create_version(&self, name: &str) -> Result<KeyVersion> {
        self.0.create_version(name).await
    }
    async fn disable_version(&self, key: &KeyRef) -> Result<()> {
        match self.0.disable_version(key).await {
            Err(e) if e.kind() == keymgr_core::ErrorKind::InvalidInput => Ok(()),
            other => other,
        }
    }
}

#[tokio::test]
#[should_panic(expected = "disabling the current version must be refused")]
async fn versions_fails_a_backend_that_accepts_disabling_the_current_version() {
    let b = AcceptsDisablingCurrent(MemoryBackend::with_key("evm", KeyAlgorithm::Secp256k1));
    conformance::versions(&b, &b, "evm").await;
}

/// A second instance over the same keys that cannot read a disabled version's public
/// key (as a cache-only answer would leave a new process).
#[derive(Debug)]
struct ForgetsDisabledPublicKeys(Arc<MemoryBackend>);

#[async_trait]
impl KeyBackend for ForgetsDisabledPublicKeys {
    fn name(&self) -> &str {
        "forgets-disabled-public-keys"
    }
    async fn public_key(&self, key: &KeyRef) -> Result<PublicKey> {
        let disabled = self
            .0
            .versions(key.name())
            .into_iter()
            .any(|(v, enabled)| Some(v.as_str()) == key.version() && !enabled);
        if disabled {
            return Err(keymgr_core::Error::access_denied(
                key.to_string(),
                "disabled; public key not readable",
            ));
        }
        self.0.public_key(key).await
    }
    async fn sign(&self, key: &KeyRef, payload: &SignPayload) -> Result<VerifiedSignature> {
        self.0.sign(key, payload).await
    }
    async fn health(&self) -> HealthReport {
        self.0.health().await
    }
    async fn list_versions(&self, name: &str) -> Result<Vec<KeyVersion>> {
        self.0.list_versions(name).await
    }
}

#[tokio::test]
#[should_panic(expected = "of a disabled version")]
async fn versions_fails_a_fresh_instance_that_cannot_read_a_disabled_public_key() {
    let b = Arc::new(MemoryBackend::with_key("evm", KeyAlgorithm::Secp256k1));
    conformance::versions(&*b, &ForgetsDisabledPublicKeys(b.clone()), "evm").await;
}

#[tokio::test]
#[should_panic(expected = "create_version must be Unsupported with a reason")]
async fn manual_rotation_fails_a_backend_that_rotates() {
    let b = MemoryBackend::with_key("evm", KeyAlgorithm::Secp256k1);
    conformance::manual_rotation(&b, "evm").await;
}

#[tokio::test]
#[should_panic(expected = "succeeded without its service")]
async fn unreachable_fails_a_backend_that_answers() {
    let b = MemoryBackend::with_key("evm", KeyAlgorithm::Secp256k1);
    conformance::unreachable(&b, &KeyRef::new("evm")).await;
}
