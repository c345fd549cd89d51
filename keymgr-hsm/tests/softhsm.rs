//! keymgr-hsm against a real SoftHSM2 token (provisioned by `cargo xtask test`): what is
//! specific to PKCS#11 (the shared conformance suite runs from `conformance.rs`).
//!
//! Every signature is verified with k256 / ed25519-dalek from the public key bytes the
//! token reported, not with keymgr's own verification.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{private_key_attrs, random32, raw_session, verify_independently};

use std::sync::Arc;
use std::time::Duration;

use cryptoki::object::{Attribute, AttributeType};
use keymgr_core::{ErrorKind, KeyAlgorithm, KeyBackend, KeyRef, SignPayload};
use keymgr_hsm::{HSM_PIN, HSM_SLOT_ID, HSM_TOKEN_LABEL, HsmBackend, TokenSelector};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_signing_32_tasks_pool_of_2() {
    let Some(config) = common::config() else {
        return;
    };
    let hsm = Arc::new(HsmBackend::connect(config.with_pool_size(2)).await.unwrap());
    let evm = hsm.public_key(&KeyRef::new("evm")).await.unwrap();
    let xrp = hsm.public_key(&KeyRef::new("xrp")).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..32usize {
        let (hsm, evm, xrp) = (hsm.clone(), evm.clone(), xrp.clone());
        tasks.spawn(async move {
            for j in 0..4usize {
                let (key, pk, payload) = if (i + j) % 2 == 0 {
                    ("evm", &evm, SignPayload::Prehash(random32()))
                } else {
                    (
                        "xrp",
                        &xrp,
                        SignPayload::message(random32()[..(i + j) % 32].to_vec()),
                    )
                };
                let sig = hsm.sign(&KeyRef::new(key), &payload).await.unwrap();
                verify_independently(pk, &payload, &sig);
            }
            i
        });
    }
    let mut done = Vec::new();
    while let Some(r) = tasks.join_next().await {
        done.push(r.expect("signing task"));
    }
    done.sort_unstable();
    assert_eq!(done, (0..32).collect::<Vec<_>>());
    let report = hsm.health().await;
    let detail = report.detail.clone().unwrap_or_default();
    assert_eq!(
        report.status,
        keymgr_core::HealthStatus::Healthy,
        "{detail}"
    );
    assert!(detail.contains("pool 2 session(s), 2 idle"), "{detail}");
}

#[tokio::test]
async fn missing_label_is_not_found_naming_it() {
    let Some(config) = common::config() else {
        return;
    };
    let hsm = HsmBackend::connect(config.with_key("treasury", "keymgr-test-no-such-label"))
        .await
        .unwrap();
    for key in [KeyRef::new("treasury"), KeyRef::versioned("treasury", "4")] {
        let e = hsm.public_key(&key).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        assert!(e.to_string().contains("keymgr-test-no-such-label"), "{e}");
        let e = hsm
            .sign(&key, &SignPayload::Prehash([1; 32]))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        assert!(!e.is_retryable());
    }
    // Configured through the environment, the error names the variable too.
    let mut vars: Vec<(String, String)> = std::env::vars().collect();
    vars.retain(|(k, _)| k != keymgr_hsm::HSM_EVM_KEY_LABEL);
    vars.push((
        keymgr_hsm::HSM_EVM_KEY_LABEL.into(),
        "keymgr-test-absent".into(),
    ));
    let hsm = HsmBackend::from_vars(|n| vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()))
        .await
        .unwrap();
    let e = hsm.public_key(&KeyRef::new("evm")).await.unwrap_err();
    let s = e.to_string();
    assert!(
        s.contains("keymgr-test-absent") && s.contains(keymgr_hsm::HSM_EVM_KEY_LABEL),
        "{s}"
    );
}

#[tokio::test]
async fn wrong_curve_is_unsupported_naming_it() {
    let Some(hsm) = common::backend().await else {
        return;
    };
    let p256 = KeyRef::new(common::var(common::P256_LABEL_VAR));
    let e = hsm.public_key(&p256).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    let s = e.to_string();
    assert!(
        s.contains("1.2.840.10045.3.1.7") && s.contains("P-256"),
        "{s}"
    );
    assert!(s.contains(p256.name()), "{s}");
    let e = hsm
        .sign(&p256, &SignPayload::Prehash([2; 32]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
}

#[tokio::test]
async fn label_collision_is_a_configuration_error() {
    let Some(hsm) = common::backend().await else {
        return;
    };
    let dup = KeyRef::new(common::var(common::DUP_LABEL_VAR));
    for e in [
        hsm.public_key(&dup).await.unwrap_err(),
        hsm.sign(&dup, &SignPayload::Prehash([3; 32]))
            .await
            .unwrap_err(),
        hsm.list_versions(dup.name()).await.unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        let s = e.to_string();
        assert!(s.contains(dup.name()) && s.contains("2 private key"), "{s}");
    }
}

#[tokio::test]
async fn token_selection_and_start_up_errors() {
    let Some(base) = common::config() else {
        return;
    };
    let slot: u64 = common::var(HSM_SLOT_ID).parse().unwrap();
    assert_ne!(slot, 0, "SoftHSM2 reassigns slot ids");
    let token = common::var(HSM_TOKEN_LABEL);

    let mut by_slot = base.clone();
    by_slot.token = TokenSelector::SlotId(slot);
    let hsm = HsmBackend::connect(by_slot).await.unwrap();
    assert_eq!((hsm.slot_id(), hsm.token_label()), (slot, token.as_str()));
    hsm.public_key(&KeyRef::new("evm")).await.unwrap();

    let mut by_label = base.clone();
    by_label.token = TokenSelector::Label(token.clone());
    let hsm = HsmBackend::connect(by_label).await.unwrap();
    assert_eq!(hsm.slot_id(), slot);

    let mut mismatch = base
        .clone()
        .with_startup_timeout(Duration::from_millis(200));
    mismatch.token = TokenSelector::SlotAndLabel(slot, "another-token".into());
    let e = HsmBackend::connect(mismatch).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.to_string().contains(HSM_SLOT_ID) && e.to_string().contains(HSM_TOKEN_LABEL));

    let mut absent = base
        .clone()
        .with_startup_timeout(Duration::from_millis(200));
    absent.token = TokenSelector::Label("keymgr-no-such-token".into());
    let e = HsmBackend::connect(absent).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    let s = e.to_string();
    assert!(
        s.contains(HSM_TOKEN_LABEL) && s.contains("keymgr-no-such-token"),
        "{s}"
    );
    assert!(s.contains(&token), "lists the tokens present: {s}");

    let mut no_module = base.clone();
    no_module.library_path = "/nonexistent/libpkcs11.so".into();
    let e = HsmBackend::connect(no_module).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(
        e.to_string().contains(keymgr_hsm::HSM_PKCS11_LIBRARY_PATH),
        "{e}"
    );

    let not_a_module = std::env::temp_dir().join(common::unique("not-a-module"));
    std::fs::write(&not_a_module, b"not a shared object").unwrap();
    let mut bad_module = base.clone();
    bad_module.library_path = not_a_module.clone();
    let e = HsmBackend::connect(bad_module).await.unwrap_err();
    let _ = std::fs::remove_file(&not_a_module);
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(
        e.to_string().contains(keymgr_hsm::HSM_PKCS11_LIBRARY_PATH),
        "{e}"
    );
}

#[tokio::test]
async fn debug_and_health_never_show_the_pin() {
    let Some(config) = common::config() else {
        return;
    };
    let pin = common::var(HSM_PIN);
    let hsm = HsmBackend::connect(config.clone()).await.unwrap();
    let health = hsm.health().await;
    assert_eq!(
        health.status,
        keymgr_core::HealthStatus::Healthy,
        "{health:?}"
    );
    let shown = format!("{hsm:?} {config:?} {health:?} {:?}", config.pin);
    assert!(!shown.contains(&pin), "{shown}");
    assert!(shown.contains("REDACTED"), "{shown}");
    assert!(shown.contains(&common::var(HSM_TOKEN_LABEL)), "{shown}");
}

/// What the versions contract (`conformance.rs`) leaves to each backend: the label
/// scheme, the attributes of keys keymgr makes, how disabling is recorded on the token,
/// and that the backend deletes nothing on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_labels_attributes_and_no_deletion_behind_the_audit_log() {
    let Some(config) = common::config() else {
        return;
    };
    let hsm = HsmBackend::connect(config.with_keep_versions(5))
        .await
        .unwrap();
    let name = common::unique("rot");
    assert_eq!(
        hsm.list_versions(&name).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        hsm.create_version(&name).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );

    let v1 = hsm
        .create_key(&name, KeyAlgorithm::Secp256k1)
        .await
        .unwrap();
    assert_eq!(
        (v1.key.version(), v1.backend_id.clone()),
        (Some("1"), format!("{name}.v1"))
    );
    let e = hsm
        .create_key(&name, KeyAlgorithm::Secp256k1)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");

    // The private key is sensitive and never extractable.
    let (_ctx, raw) = raw_session();
    let attrs = private_key_attrs(
        &raw,
        &v1.backend_id,
        &[
            AttributeType::Sensitive,
            AttributeType::Extractable,
            AttributeType::Sign,
        ],
    );
    for want in [
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
    ] {
        assert!(
            attrs
                .iter()
                .any(|a| format!("{a:?}") == format!("{want:?}")),
            "{want:?} in {attrs:?}"
        );
    }

    for n in 2u32..=7 {
        let v = hsm.create_version(&name).await.unwrap();
        assert_eq!(v.key, KeyRef::versioned(name.as_str(), n.to_string()));
        assert_eq!(v.backend_id, format!("{name}.v{n}"));
    }
    // `keep_versions` is configured (5), but the backend never deletes on its own: the
    // rotator deletes, audited, through `delete_version` (tests/deletion.rs).
    for old in ["1", "2"] {
        hsm.disable_version(&KeyRef::versioned(name.as_str(), old))
            .await
            .unwrap();
    }
    let v8 = hsm.create_version(&name).await.unwrap();
    assert_eq!(v8.key.version(), Some("8"));
    let numbers: Vec<String> = hsm
        .list_versions(&name)
        .await
        .unwrap()
        .iter()
        .map(|v| v.key.version().unwrap().to_owned())
        .collect();
    assert_eq!(numbers, ["1", "2", "3", "4", "5", "6", "7", "8"]);

    // Disabling clears CKA_SIGN on the token, and the refusal names the label.
    let v3 = KeyRef::versioned(name.as_str(), "3");
    hsm.disable_version(&v3).await.unwrap();
    let attrs = private_key_attrs(&raw, &format!("{name}.v3"), &[AttributeType::Sign]);
    assert!(
        matches!(attrs.as_slice(), [Attribute::Sign(false)]),
        "{attrs:?}"
    );
    let e = hsm
        .sign(&v3, &SignPayload::Prehash(random32()))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");
    assert!(
        e.to_string().contains("disabled") && e.to_string().contains(&format!("{name}.v3")),
        "{e}"
    );

    let e = hsm
        .disable_version(&KeyRef::versioned(name.as_str(), "x"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");

    common::purge(&name);
    assert_eq!(
        hsm.list_versions(&name).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        hsm.public_key(&KeyRef::new(name.as_str()))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
}
