//! Shared set-up: the in-process Cloud KMS stand-in and backends reaching it through
//! Google's real client.
//!
//! The stand-in is started by each test (an HTTP server on 127.0.0.1:0 in the test's
//! runtime), so these tests need no provisioned service and never skip.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use google_cloud_gax::retry_policy::NeverRetry;
use google_cloud_kms_v1::client::KeyManagementService;
use keymgr_core::{KeyBackend, KeyRef, PublicKey, SignPayload};
use keymgr_gcp::GcpKmsBackend;
#[allow(unused_imports)]
pub use keymgr_testkit::gcp::{Algorithm, Fault, KEY_RING, StandIn, State};

/// A client for `stand_in` with anonymous credentials and retries off.
pub async fn client(stand_in: &StandIn) -> KeyManagementService {
    KeyManagementService::builder()
        .with_endpoint(stand_in.endpoint())
        .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build())
        .with_retry_policy(NeverRetry)
        .build()
        .await
        .expect("client")
}

/// A backend serving `keys` (logical name → resource name) from `stand_in`.
pub async fn backend(stand_in: &StandIn, keys: &[(&str, &str)]) -> GcpKmsBackend {
    GcpKmsBackend::from_client(
        client(stand_in).await,
        keys.iter()
            .map(|(n, r)| ((*n).to_owned(), (*r).to_owned()))
            .collect::<BTreeMap<_, _>>(),
    )
}

/// A stand-in with an `evm` (secp256k1) and an `xrp` (Ed25519) crypto key, and a backend
/// serving them under those names.
pub async fn evm_and_xrp() -> (StandIn, Arc<GcpKmsBackend>, String, String) {
    let stand_in = StandIn::start().await;
    let evm = stand_in.create_key("evm-key", Algorithm::Secp256k1);
    let xrp = stand_in.create_key("xrp-key", Algorithm::Ed25519);
    let b = backend(&stand_in, &[("evm", &evm), ("xrp", &xrp)]).await;
    (stand_in, Arc::new(b), evm, xrp)
}

/// k256's own verification of a secp256k1 signature (independent of keymgr).
pub fn k256_verifies(pk: &PublicKey, prehash: &[u8; 32], sig: &keymgr_core::Signature) -> bool {
    use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
    let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(&pk.to_bytes()).unwrap();
    let sig = k256::ecdsa::Signature::from_slice(&sig.to_bytes()).unwrap();
    vk.verify_prehash(prehash, &sig).is_ok()
}

/// Signs a random prehash with `key` and checks it with k256.
pub async fn sign_and_check(b: &dyn KeyBackend, key: &KeyRef) -> keymgr_core::Result<()> {
    use rand_core::RngCore as _;
    let mut h = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut h);
    let sig = b.sign(key, &SignPayload::Prehash(h)).await?;
    let pk = b.public_key(key).await?;
    assert!(
        k256_verifies(&pk, &h, sig.signature()),
        "{key}: signature does not verify"
    );
    Ok(())
}
