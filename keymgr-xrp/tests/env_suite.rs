//! The shared XRP claim suite (keymgr_testkit::xrp) against the env backend, directly and
//! behind a KeyManager, with an Ed25519 and a secp256k1 key.

// Test helpers panic to fail the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use keymgr_core::{KeyBackend, KeyManager, KeyRef};
use keymgr_env::EnvBackend;

fn backend() -> EnvBackend {
    // ripple-keypairs fixture seeds (public test seeds; never fund them).
    EnvBackend::new()
        .with_xrpl_seed("xrp-ed", "sEdSKaCy2JT7JaM7v95H9SxkhP9wS2r")
        .unwrap()
        .with_xrpl_seed("xrp-secp", "sp5fghtJtpUorTwvof1NpDXAzNwf5")
        .unwrap()
}

#[tokio::test]
async fn env_ed25519() {
    keymgr_testkit::xrp::run(Arc::new(backend()), KeyRef::new("xrp-ed")).await;
}

#[tokio::test]
async fn env_secp256k1() {
    keymgr_testkit::xrp::run(Arc::new(backend()), KeyRef::new("xrp-secp")).await;
}

#[tokio::test]
async fn env_generated_keys() {
    // Fresh random keys, so the suite does not only pass for the fixture seeds.
    let generated = Arc::new(EnvBackend::generate());
    let names: Vec<String> = generated.key_names().map(str::to_owned).collect();
    assert!(!names.is_empty());
    for name in names {
        keymgr_testkit::xrp::run(generated.clone(), KeyRef::new(name)).await;
    }
}

#[tokio::test]
async fn behind_key_manager() {
    let manager: Arc<dyn KeyBackend> =
        Arc::new(KeyManager::recommended(Arc::new(backend())).build());
    keymgr_testkit::xrp::run(manager.clone(), KeyRef::new("xrp-ed")).await;
    keymgr_testkit::xrp::run(manager, KeyRef::new("xrp-secp")).await;
}
