//! The shared EVM and XRP suites against the SoftHSM2 keys (made by pkcs11-tool).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use keymgr_core::{KeyBackend, KeyRef};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evm_suite_on_the_secp256k1_key() {
    let Some(hsm) = common::backend().await else {
        return;
    };
    let backend: Arc<dyn KeyBackend> = Arc::new(hsm);
    keymgr_testkit::evm::run(backend, KeyRef::new("evm")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xrp_suite_on_the_ed25519_and_secp256k1_keys() {
    let Some(hsm) = common::backend().await else {
        return;
    };
    let backend: Arc<dyn KeyBackend> = Arc::new(hsm);
    keymgr_testkit::xrp::run(backend.clone(), KeyRef::new("xrp")).await;
    keymgr_testkit::xrp::run(backend, KeyRef::new("evm")).await;
}
