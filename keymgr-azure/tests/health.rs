//! The health canary: every configured key signs a fixed digest and the signature is
//! verified, so "healthy" means the keys can sign, not only that the vault answers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use keymgr_azure::HEALTH_CANARY_DIGEST;
use keymgr_core::{HealthStatus, KeyBackend};
use sha2::Digest as _;
use support::{Fault, fixture};

#[test]
fn canary_digest_is_the_documented_sha256() {
    let digest: [u8; 32] = sha2::Sha256::digest(b"keymgr health canary").into();
    assert_eq!(digest, HEALTH_CANARY_DIGEST);
}

#[tokio::test]
async fn healthy_means_every_key_signed_the_canary() {
    let (stand_in, b) = fixture().await;
    let report = b.health().await;
    assert_eq!(report.status, HealthStatus::Healthy, "{report:?}");
    // One canary per configured key (evm, xrp), each through Key Vault's sign.
    assert_eq!(stand_in.calls("sign"), 2);
    let detail = report.detail.clone().unwrap_or_default();
    for name in ["evm-signer", "xrp-signer"] {
        let version = &stand_in.versions(name)[0];
        assert!(detail.contains(version.as_str()), "{detail}");
    }
    // Run again: the canary re-reads the current version rather than trusting a cache.
    let gets = stand_in.calls("getKey");
    assert_eq!(b.health().await.status, HealthStatus::Healthy);
    assert_eq!(stand_in.calls("getKey"), gets + 2);
}

#[tokio::test]
async fn a_key_that_cannot_sign_is_unhealthy() {
    let (stand_in, b) = fixture().await;
    // Reachable but signing garbage: the canary's verification catches it.
    stand_in.inject("sign", Fault::WrongSignature);
    let report = b.health().await;
    assert_eq!(report.status, HealthStatus::Unhealthy, "{report:?}");
    // The current version disabled: Key Vault refuses to sign.
    let (stand_in, b) = fixture().await;
    let v = stand_in.versions("xrp-signer")[0].clone();
    stand_in.set_enabled("xrp-signer", &v, false);
    let report = b.health().await;
    assert_eq!(report.status, HealthStatus::Unhealthy, "{report:?}");
    let detail = report.detail.unwrap_or_default();
    assert!(detail.contains("xrp"), "the failing key is named: {detail}");
}
