//! A rotation made by another process is not an outage: this process's `KeyManager`
//! (with its public key cached for an hour) keeps signing, with the new version, after a
//! child process rotated the key on the same SoftHSM2 token.
//!
//! Its own test binary (its own process under `cargo test`); the child is this binary
//! again, running only `rotate_child`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use keymgr_core::{KeyAlgorithm, KeyBackend as _, KeyManager, KeyRef, SignPayload};
use keymgr_hsm::HsmBackend;

const CHILD: &str = "KEYMGR_HSM_ROTATE_CHILD";

/// The child: creates a new version of the key named in `KEYMGR_HSM_ROTATE_CHILD` (what a
/// rotator in another process does first).
#[tokio::test]
#[ignore = "run by two_processes_sign_across_a_rotation in a child process"]
async fn rotate_child() {
    let Ok(name) = std::env::var(CHILD) else {
        return;
    };
    let hsm = common::backend().await.expect("the parent's token");
    hsm.create_version(&name).await.unwrap();
}

#[tokio::test]
async fn two_processes_sign_across_a_rotation() {
    let Some(config) = common::config() else {
        return;
    };
    // The HSM backend looks the current version up on every call; the manager above it
    // still caches the public key for an hour, as in production.
    let hsm = HsmBackend::connect(config.with_key_cache_ttl(Duration::ZERO))
        .await
        .unwrap();
    let name = common::unique("two-proc");
    hsm.create_key(&name, KeyAlgorithm::Secp256k1)
        .await
        .unwrap();
    let manager = KeyManager::new(Arc::new(hsm));
    let key = KeyRef::new(name.as_str());
    let payload = SignPayload::Prehash(common::random32());
    let before = manager.public_key(&key).await.unwrap();
    let sig = manager.sign(&key, &payload).await.unwrap();
    common::verify_independently(&before, &payload, &sig);

    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "rotate_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, &name)
        // This process's private token copy, shared with the child on purpose.
        .env(common::SHARE_TOKEN, "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "child failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    for _ in 0..3 {
        let payload = SignPayload::Prehash(common::random32());
        let sig = manager.sign(&key, &payload).await.unwrap();
        assert_ne!(sig.public_key(), &before, "signed by the new version");
        common::verify_independently(sig.public_key(), &payload, &sig);
    }
    let versions = manager.list_versions(&name).await.unwrap();
    assert_eq!(versions.len(), 2, "{versions:?}");
}
