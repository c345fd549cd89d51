//! Login behaviour against SoftHSM2: wrong PINs, and several processes logging in to one
//! token at the same moment (SoftHSM rewrites its token file on `C_Login`, so some of
//! them see `CKR_GENERAL_ERROR`, `CKR_SLOT_ID_INVALID` or no token at all; start-up must
//! retry those).
//!
//! Its own test binary (its own process under `cargo test`), because PKCS#11 login
//! state is per process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use keymgr_core::{ErrorKind, KeyBackend, KeyRef, SignPayload};
use keymgr_hsm::{HSM_PIN, HsmBackend, Pin};

const CHILD: &str = "KEYMGR_HSM_LOGIN_CHILD";
const WRONG_PIN: &str = "wrong-pin-Zx81q";

#[tokio::test]
async fn wrong_pin_is_access_denied_and_never_shown() {
    let Some(config) = common::config() else {
        return;
    };
    let good = common::var(HSM_PIN);
    let mut wrong = config.clone();
    wrong.pin = Pin::new(WRONG_PIN);
    let check = |e: &keymgr_core::Error| {
        assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");
        let shown = format!("{e} {e:?}");
        assert!(shown.contains("HSM PIN rejected"), "{shown}");
        assert!(
            !shown.contains(WRONG_PIN) && !shown.contains(&good),
            "{shown}"
        );
        assert!(!e.is_retryable());
    };

    // Nothing in this process is logged in yet: the token itself says no.
    let e = HsmBackend::connect(wrong.clone()).await.unwrap_err();
    check(&e);
    assert!(e.to_string().contains("CKR_PIN_INCORRECT"), "{e}");

    // Once this process is logged in, PKCS#11 would answer any second C_Login with
    // CKR_USER_ALREADY_LOGGED_IN whatever the PIN; keymgr must still refuse.
    let hsm = HsmBackend::connect(config).await.unwrap();
    hsm.public_key(&KeyRef::new("evm")).await.unwrap();
    let e = HsmBackend::connect(wrong).await.unwrap_err();
    check(&e);

    // The token did not lock the user out: the right PIN still works.
    hsm.sign(&KeyRef::new("evm"), &SignPayload::Prehash([9; 32]))
        .await
        .unwrap();
}

#[test]
fn processes_logging_in_at_once_all_start() {
    if common::config().is_none() {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let mut spawned: Vec<std::process::Child> = (0..8)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "login_child",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD, "1")
                // The parent's private token copy, shared by all children on purpose.
                .env(common::SHARE_TOKEN, "1")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, child) in spawned.drain(..).enumerate() {
        let out = child.wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "child {i} failed:\n{text}");
        assert!(
            text.contains("1 passed"),
            "child {i} did not run the login test:\n{text}"
        );
    }
}

/// Run by [`processes_logging_in_at_once_all_start`] in child processes.
#[tokio::test]
#[ignore = "child process of processes_logging_in_at_once_all_start"]
async fn login_child() {
    assert!(
        std::env::var_os(CHILD).is_some(),
        "only run as a child process"
    );
    let config = common::config().expect("the parent checked the provisioning");
    let hsm = HsmBackend::connect(config)
        .await
        .expect("start-up despite concurrent logins");
    let h = [7u8; 32];
    let sig = hsm
        .sign(&KeyRef::new("evm"), &SignPayload::Prehash(h))
        .await
        .unwrap();
    let pk = hsm.public_key(&KeyRef::new("evm")).await.unwrap();
    let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(&pk.to_bytes()).unwrap();
    let sig = k256::ecdsa::Signature::from_slice(&sig.to_bytes()).unwrap();
    k256::ecdsa::signature::hazmat::PrehashVerifier::verify_prehash(&vk, &h, &sig)
        .expect("verifies with k256");
}
