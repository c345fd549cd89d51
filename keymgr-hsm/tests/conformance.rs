//! keymgr-hsm through the shared conformance suite on a real SoftHSM2 token
//! (provisioned by `cargo xtask test`): signing with the keys pkcs11-tool made, and the
//! key versions contract on keys this test creates (and deletes again).
//!
//! Not run here: `conformance::unreachable` — a PKCS#11 module is loaded in-process, and
//! SoftHSM2 has no device that can be unplugged; `CKR_DEVICE_*` mapping is covered by
//! the unit tests of `error.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use keymgr_core::{KeyAlgorithm, KeyBackend, KeyRef};
use keymgr_testkit::conformance::{self, SuiteKeys};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_with_pkcs11_tool_keys() {
    let Some(hsm) = common::backend().await else {
        return;
    };
    let hsm: Arc<dyn KeyBackend> = Arc::new(hsm);
    conformance::run(hsm.clone(), &SuiteKeys::new(Some("evm"), Some("xrp"))).await;
    // The same keys by their labels, and by explicit version 0 (the original label).
    let evm_label = common::var(keymgr_hsm::HSM_EVM_KEY_LABEL);
    let xrp_label = common::var(keymgr_hsm::HSM_XRP_KEY_LABEL);
    conformance::run(
        hsm.clone(),
        &SuiteKeys::new(Some(&evm_label), Some(&xrp_label)),
    )
    .await;
    assert_eq!(
        hsm.public_key(&KeyRef::versioned("evm", "0"))
            .await
            .unwrap(),
        hsm.public_key(&KeyRef::new(evm_label.as_str()))
            .await
            .unwrap()
    );
}

/// Deletes every version of `name` (test keys only; keymgr itself deletes only disabled
/// versions, audited, through the rotator).
fn remove(name: &str) {
    common::purge(name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_contract() {
    let Some(hsm) = common::backend().await else {
        return;
    };
    for (prefix, algorithm) in [
        ("versions-secp", KeyAlgorithm::Secp256k1),
        ("versions-ed", KeyAlgorithm::Ed25519),
    ] {
        let name = common::unique(prefix);
        hsm.create_key(&name, algorithm).await.unwrap();
        // A new instance (its own sessions and caches, another process in effect)
        // must read the disabled version's public key from the token.
        let fresh = common::backend().await.unwrap();
        conformance::versions(&hsm, &fresh, &name).await;
        remove(&name);
    }
}
