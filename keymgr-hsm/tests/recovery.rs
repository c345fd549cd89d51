//! Recovery from stale sessions and handles: another component of the process logs the
//! token out, then finalizes the PKCS#11 module underneath keymgr (as a token removal or
//! module reset would). Signing must carry on after re-initializing, re-logging in and
//! re-resolving the key.
//!
//! Its own test binary (its own process under `cargo test`): it disturbs process-wide
//! PKCS#11 state on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{SessionState, UserType};
use cryptoki::types::AuthPin;
use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
use keymgr_core::{KeyBackend, KeyRef, SignPayload};
use keymgr_hsm::HsmBackend;

async fn sign_and_verify(hsm: &HsmBackend, h: [u8; 32]) {
    let key = KeyRef::new("evm");
    let sig = hsm.sign(&key, &SignPayload::Prehash(h)).await.unwrap();
    let pk = hsm.public_key(&key).await.unwrap();
    let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(&pk.to_bytes()).unwrap();
    let sig = k256::ecdsa::Signature::from_slice(&sig.to_bytes()).unwrap();
    vk.verify_prehash(&h, &sig).expect("verifies with k256");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_logout_and_module_reset() {
    let Some(config) = common::config() else {
        return;
    };
    let hsm = HsmBackend::connect(config.with_pool_size(2)).await.unwrap();
    sign_and_verify(&hsm, [1; 32]).await;

    // Someone else in the process logs the token out: every session of the process
    // drops to the public state and the private key handle stops working.
    let other = Pkcs11::new(common::var(keymgr_hsm::HSM_PKCS11_LIBRARY_PATH)).unwrap();
    match other.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        other => panic!("the backend initialized the module already: {other:?}"),
    }
    let slot = other
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| s.id() == hsm.slot_id())
        .unwrap();
    let session = other.open_ro_session(slot).unwrap();
    session.logout().unwrap();
    assert!(matches!(
        session.get_session_info().unwrap().session_state(),
        SessionState::RoPublic
    ));
    drop(session);
    for i in 0..4u8 {
        sign_and_verify(&hsm, [10 + i; 32]).await;
    }

    // Someone finalizes the module: every session and object handle is gone.
    other.clone().finalize().unwrap();
    for i in 0..4u8 {
        sign_and_verify(&hsm, [20 + i; 32]).await;
    }
    let health = hsm.health().await;
    assert_eq!(
        health.status,
        keymgr_core::HealthStatus::Healthy,
        "{health:?}"
    );

    // And the login is this process's again: a fresh session is logged in.
    let session = other.open_ro_session(slot).unwrap();
    assert!(matches!(
        session.get_session_info().unwrap().session_state(),
        SessionState::RoUser
    ));
    let pin = AuthPin::from(common::var(keymgr_hsm::HSM_PIN));
    assert!(matches!(
        session.login(UserType::User, Some(&pin)),
        Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _))
    ));
}
