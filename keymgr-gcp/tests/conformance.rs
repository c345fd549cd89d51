//! The shared conformance (signing, key versions contract, unreachable service), EVM and
//! XRP suites against the Cloud KMS stand-in, through Google's real client
//! (`google-cloud-kms-v1`). Every signature is checked by the suites with k256,
//! ed25519-dalek or alloy's recovery, independently of keymgr.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use keymgr_core::{KeyBackend, KeyManager, KeyRef};
use keymgr_testkit::conformance::{self, SuiteKeys};
use support::{Algorithm, KEY_RING, StandIn, backend, evm_and_xrp};

fn keys(secp: Option<&str>, ed: Option<&str>) -> SuiteKeys {
    SuiteKeys {
        secp256k1: secp.map(KeyRef::new),
        ed25519: ed.map(KeyRef::new),
        missing: KeyRef::new(format!("{KEY_RING}/cryptoKeys/no-such-key")),
    }
}

#[tokio::test]
async fn conformance_secp256k1_and_ed25519() {
    let (_stand_in, b, evm, xrp) = evm_and_xrp().await;
    conformance::run(b.clone(), &keys(Some("evm"), Some("xrp"))).await;
    // A name that is neither configured nor a resource name is not found, too.
    conformance::missing_key(&*b, &KeyRef::new("not-configured")).await;
    // Resource names work directly, and name the same keys.
    let direct: Arc<dyn KeyBackend> = b.clone();
    conformance::run(direct, &keys(Some(&evm), Some(&xrp))).await;
    assert_eq!(
        b.public_key(&KeyRef::new("evm")).await.unwrap(),
        b.public_key(&KeyRef::new(evm.as_str())).await.unwrap()
    );
}

#[tokio::test]
async fn conformance_behind_a_key_manager() {
    let (_stand_in, b, _, _) = evm_and_xrp().await;
    let manager: Arc<dyn KeyBackend> = Arc::new(KeyManager::builder(b).build());
    conformance::run(manager, &keys(Some("evm"), Some("xrp"))).await;
}

#[tokio::test]
async fn conformance_with_pinned_versions() {
    let stand_in = StandIn::start().await;
    let evm = stand_in.create_key("evm-pinned", Algorithm::Secp256k1);
    let xrp = stand_in.create_key("xrp-pinned", Algorithm::Ed25519);
    // A second version that is not the pinned one.
    stand_in.add_version(&evm);
    let b = backend(
        &stand_in,
        &[
            ("evm", &format!("{evm}/cryptoKeyVersions/1")),
            ("xrp", &format!("{xrp}/cryptoKeyVersions/1")),
        ],
    )
    .await;
    let b = Arc::new(b);
    conformance::run(b.clone(), &keys(Some("evm"), Some("xrp"))).await;
    let v1 = b.public_key(&KeyRef::new("evm")).await.unwrap();
    let v2 = b.public_key(&KeyRef::versioned("evm", "2")).await.unwrap();
    assert_ne!(v1, v2, "the pinned name must stay on version 1");
    conformance::secp256k1_signatures(&*b, &KeyRef::versioned("evm", "2")).await;
}

#[tokio::test]
async fn versions_contract() {
    let (stand_in, b, evm, xrp) = evm_and_xrp().await;
    let configured = [("evm", evm.as_str()), ("xrp", xrp.as_str())];
    // Each check gets a new instance (another process, in effect) that must read a
    // disabled version's public key from the label recorded before disabling it:
    // Cloud KMS answers FAILED_PRECONDITION to getPublicKey on a DISABLED version.
    for name in ["evm", "xrp", "evm"] {
        let fresh = backend(&stand_in, &configured).await;
        conformance::versions(&*b, &fresh, name).await;
    }
}

#[tokio::test]
async fn unreachable_service_is_unavailable_and_retryable() {
    let client = google_cloud_kms_v1::client::KeyManagementService::builder()
        .with_endpoint(conformance::closed_endpoint("http"))
        .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build())
        .with_retry_policy(google_cloud_gax::retry_policy::NeverRetry)
        .build()
        .await
        .unwrap();
    let evm = format!("{KEY_RING}/cryptoKeys/evm-key");
    let b = keymgr_gcp::GcpKmsBackend::from_client(
        client,
        [("evm".to_owned(), evm)].into_iter().collect(),
    );
    conformance::unreachable(&b, &KeyRef::new("evm")).await;
}

#[tokio::test]
async fn evm_suite() {
    let (_stand_in, b, _, _) = evm_and_xrp().await;
    keymgr_testkit::evm::run(b.clone(), KeyRef::new("evm")).await;
    let manager: Arc<dyn KeyBackend> = Arc::new(KeyManager::builder(b).build());
    keymgr_testkit::evm::run(manager, KeyRef::new("evm")).await;
}

#[tokio::test]
async fn xrp_suite_with_ed25519_and_secp256k1_keys() {
    let (_stand_in, b, _, _) = evm_and_xrp().await;
    // Ed25519 (`xrp`) and secp256k1 (`evm`) XRPL accounts.
    keymgr_testkit::xrp::run(b.clone(), KeyRef::new("xrp")).await;
    keymgr_testkit::xrp::run(b.clone(), KeyRef::new("evm")).await;
    let manager: Arc<dyn KeyBackend> = Arc::new(KeyManager::builder(b).build());
    keymgr_testkit::xrp::run(manager, KeyRef::new("xrp")).await;
}
