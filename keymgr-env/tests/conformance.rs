//! The env backend through the shared conformance suite: signing, and rotation being
//! manual (one version, `create_version`/`disable_version` unsupported with the reason).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use keymgr_core::{ErrorKind, KeyBackend, KeyManager, KeyRef};
use keymgr_env::EnvBackend;
use keymgr_testkit::conformance::{self, SuiteKeys};

/// ripple-keypairs test fixture (xrpl.js `packages/ripple-keypairs/test/fixtures/api.json`).
const XRP_SECP_SEED: &str = "sp5fghtJtpUorTwvof1NpDXAzNwf5";

#[tokio::test]
async fn signing_conformance() {
    let generated = Arc::new(EnvBackend::generate());
    conformance::run(generated, &SuiteKeys::new(Some("evm"), Some("xrp"))).await;
    // A secp256k1 key from an XRPL seed, under another name.
    let seeded = EnvBackend::new()
        .with_xrpl_seed("secp", XRP_SECP_SEED)
        .unwrap();
    conformance::run(Arc::new(seeded), &SuiteKeys::new(Some("secp"), None)).await;
}

#[tokio::test]
async fn rotation_is_manual() {
    let backend = EnvBackend::generate();
    for name in ["evm", "xrp"] {
        conformance::manual_rotation(&backend, name).await;
    }
    let e = backend.create_version("evm").await.unwrap_err();
    let keymgr_core::Error::Unsupported { reason, .. } = &e else {
        panic!("{e:?}")
    };
    assert!(reason.contains("rotation is manual"), "{reason}");
    // The one version is "1"; no other version exists.
    let listed = backend.list_versions("evm").await.unwrap();
    assert_eq!(listed[0].key, KeyRef::versioned("evm", "1"));
    let e = backend
        .public_key(&KeyRef::versioned("evm", "2"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    // KeyManager never rotates (keymgr-rotation's Rotator is the one rotation path).
    let manager = KeyManager::builder(Arc::new(EnvBackend::generate())).build();
    let e = manager.create_version("evm").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
}
