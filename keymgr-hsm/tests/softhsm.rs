//! keymgr-hsm against a real SoftHSM2 token (provisioned by `cargo xtask test`).
//!
//! Every signature is verified with k256 / ed25519-dalek from the public key bytes the
//! token reported, not with keymgr's own verification.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
use keymgr_core::{
    ErrorKind, KeyAlgorithm, KeyBackend, KeyRef, PublicKey, SignPayload, VersionState,
};
use keymgr_hsm::{HSM_PIN, HSM_SLOT_ID, HSM_TOKEN_LABEL, HsmBackend, TokenSelector};
use keymgr_testkit::conformance::{self, SuiteKeys};
use rand_core::RngCore as _;

fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut b);
    b
}

/// Verifies with k256 / ed25519-dalek, from the public key's bytes.
fn verify_independently(pk: &PublicKey, payload: &SignPayload, sig: &keymgr_core::Signature) {
    match (pk, payload) {
        (PublicKey::Secp256k1(_), SignPayload::Prehash(h)) => {
            let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(&pk.to_bytes()).unwrap();
            let s = k256::ecdsa::Signature::from_slice(&sig.to_bytes()).unwrap();
            assert!(s.normalize_s().is_none(), "high-s signature");
            vk.verify_prehash(h, &s)
                .expect("secp256k1 signature verifies with k256");
        }
        (PublicKey::Ed25519(_), SignPayload::Message(m)) => {
            let vk = ed25519_dalek::VerifyingKey::from_bytes(&pk.to_bytes().try_into().unwrap())
                .unwrap();
            let s = ed25519_dalek::Signature::from_bytes(&sig.to_bytes());
            vk.verify_strict(m, &s)
                .expect("Ed25519 signature verifies with ed25519-dalek");
        }
        other => panic!("unexpected combination {other:?}"),
    }
}

/// A raw cryptoki session on the test token, sharing the process's login (open the
/// backend first so the module stays initialized).
fn raw_session() -> (Pkcs11, Session) {
    let ctx = Pkcs11::new(common::var(keymgr_hsm::HSM_PKCS11_LIBRARY_PATH)).unwrap();
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => panic!("C_Initialize: {e}"),
    }
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| s.id().to_string() == common::var(HSM_SLOT_ID))
        .expect("the provisioned slot");
    let session = ctx.open_rw_session(slot).unwrap();
    let pin = AuthPin::from(common::var(HSM_PIN));
    match session.login(UserType::User, Some(&pin)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(e) => panic!("C_Login: {e}"),
    }
    (ctx, session)
}

fn private_key_attrs(s: &Session, label: &str, types: &[AttributeType]) -> Vec<Attribute> {
    let keys = s
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .unwrap();
    assert_eq!(keys.len(), 1, "one private key labelled {label}");
    s.get_attributes(keys[0], types).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_with_pkcs11_tool_keys() {
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

    let mut mismatch = base.clone();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_creates_lists_disables_and_prunes() {
    let Some(config) = common::config() else {
        return;
    };
    let hsm = HsmBackend::connect(config.with_keep_versions(5))
        .await
        .unwrap();
    let name = common::unique("rot");
    let key = KeyRef::new(name.as_str());
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

    let mut public_keys = vec![hsm.public_key(&key).await.unwrap()];
    for n in 2u32..=7 {
        let v = hsm.create_version(&name).await.unwrap();
        assert_eq!(v.key, KeyRef::versioned(name.as_str(), n.to_string()));
        assert_eq!(v.backend_id, format!("{name}.v{n}"));
        assert!(v.current && v.state == VersionState::Enabled);
        assert_eq!(v.algorithm, KeyAlgorithm::Secp256k1);
        let pk = hsm.public_key(&key).await.unwrap();
        assert_eq!(
            pk,
            hsm.public_key(&v.key).await.unwrap(),
            "current = newest"
        );
        assert!(!public_keys.contains(&pk), "a new key pair each time");
        public_keys.push(pk.clone());
        let payload = SignPayload::Prehash(random32());
        verify_independently(&pk, &payload, &hsm.sign(&key, &payload).await.unwrap());

        let versions = hsm.list_versions(&name).await.unwrap();
        let numbers: Vec<String> = versions
            .iter()
            .map(|v| v.key.version().unwrap().to_owned())
            .collect();
        let expected: Vec<String> = (n.saturating_sub(4).max(1)..=n)
            .map(|i| i.to_string())
            .collect();
        assert_eq!(numbers, expected, "keeps the newest 5");
        assert_eq!(
            versions
                .iter()
                .filter(|v| v.current)
                .map(|v| v.key.clone())
                .collect::<Vec<_>>(),
            vec![v.key.clone()]
        );
    }
    // v1 and v2 were pruned.
    for gone in ["1", "2"] {
        let e = hsm
            .public_key(&KeyRef::versioned(name.as_str(), gone))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    }

    // An older version signs while enabled (overlap), and not once disabled.
    let v3 = KeyRef::versioned(name.as_str(), "3");
    let payload = SignPayload::Prehash(random32());
    verify_independently(
        &public_keys[2],
        &payload,
        &hsm.sign(&v3, &payload).await.unwrap(),
    );
    hsm.disable_version(&v3).await.unwrap();
    let attrs = private_key_attrs(&raw, &format!("{name}.v3"), &[AttributeType::Sign]);
    assert!(
        matches!(attrs.as_slice(), [Attribute::Sign(false)]),
        "{attrs:?}"
    );
    let states: Vec<(String, VersionState)> = hsm
        .list_versions(&name)
        .await
        .unwrap()
        .into_iter()
        .map(|v| (v.key.version().unwrap().to_owned(), v.state))
        .collect();
    assert_eq!(
        states,
        vec![
            ("3".to_owned(), VersionState::Disabled),
            ("4".to_owned(), VersionState::Enabled),
            ("5".to_owned(), VersionState::Enabled),
            ("6".to_owned(), VersionState::Enabled),
            ("7".to_owned(), VersionState::Enabled),
        ]
    );
    let e = hsm.sign(&v3, &payload).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");
    assert!(
        e.to_string().contains("disabled") && e.to_string().contains(&format!("{name}.v3")),
        "{e}"
    );
    // The public key of a disabled version stays readable (to verify old signatures).
    assert_eq!(hsm.public_key(&v3).await.unwrap(), public_keys[2]);
    let payload = SignPayload::Prehash(random32());
    verify_independently(
        &public_keys[6],
        &payload,
        &hsm.sign(&key, &payload).await.unwrap(),
    );

    let e = hsm.disable_version(&key).await.unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::InvalidInput,
        "needs an explicit version: {e}"
    );
    let e = hsm
        .disable_version(&KeyRef::versioned(name.as_str(), "x"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");

    for v in hsm.list_versions(&name).await.unwrap() {
        hsm.delete_version(&v.key).await.unwrap();
    }
    assert_eq!(
        hsm.list_versions(&name).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        hsm.public_key(&key).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

/// Keys made outside keymgr: an Ed25519 key whose `CKA_EC_PARAMS` is the PrintableString
/// `edwards25519` and an arbitrary `CKA_ID` is served and rotated with the same
/// parameters; a key whose `CKA_SIGN` cannot change is disabled by keymgr's marker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_keys_rotation_and_disable_marker() {
    let Some(hsm) = common::backend().await else {
        return;
    };
    let (_ctx, raw) = raw_session();
    let name = common::unique("vendor-ed");
    let printable = b"\x13\x0cedwards25519".to_vec();
    let (pub_h, _) = raw
        .generate_key_pair(
            &Mechanism::EccEdwardsKeyPairGen,
            &[
                Attribute::Token(true),
                Attribute::Verify(true),
                Attribute::EcParams(printable.clone()),
                Attribute::Label(name.as_bytes().to_vec()),
                Attribute::Id(b"vendor-7".to_vec()),
            ],
            &[
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Sign(true),
                Attribute::Label(name.as_bytes().to_vec()),
                Attribute::Id(b"vendor-7".to_vec()),
            ],
        )
        .unwrap();
    let key = KeyRef::new(name.as_str());
    let pk = hsm.public_key(&key).await.unwrap();
    let point = raw
        .get_attributes(pub_h, &[AttributeType::EcPoint])
        .unwrap();
    assert!(
        matches!(point.as_slice(), [Attribute::EcPoint(p)] if p[2..] == pk.to_bytes()[..]),
        "public key from CKA_EC_POINT"
    );
    let msg = SignPayload::message(b"CLM\0 claim bytes".to_vec());
    verify_independently(&pk, &msg, &hsm.sign(&key, &msg).await.unwrap());

    let v1 = hsm.create_version(&name).await.unwrap();
    assert_eq!(v1.key.version(), Some("1"));
    let params = private_key_attrs(&raw, &format!("{name}.v1"), &[AttributeType::EcParams]);
    assert!(
        matches!(params.as_slice(), [Attribute::EcParams(p)] if *p == printable),
        "the new version uses the original's curve encoding: {params:?}"
    );
    let pk1 = hsm.public_key(&key).await.unwrap();
    assert_ne!(pk1, pk);
    verify_independently(&pk1, &msg, &hsm.sign(&key, &msg).await.unwrap());
    let v0 = KeyRef::versioned(name.as_str(), "0");
    verify_independently(&pk, &msg, &hsm.sign(&v0, &msg).await.unwrap());
    let listed: Vec<_> = hsm
        .list_versions(&name)
        .await
        .unwrap()
        .into_iter()
        .map(|v| (v.backend_id, v.current))
        .collect();
    assert_eq!(
        listed,
        vec![(name.clone(), false), (format!("{name}.v1"), true)]
    );
    hsm.delete_version(&v1.key).await.unwrap();
    hsm.delete_version(&v0).await.unwrap();

    // A secp256k1 key whose attributes cannot be modified: CKA_SIGN stays true, so
    // keymgr disables it with its marker object, and honours that marker.
    let fixed = common::unique("fixed");
    raw.generate_key_pair(
        &Mechanism::EccKeyPairGen,
        &[
            Attribute::Token(true),
            Attribute::EcParams(b"\x06\x05\x2b\x81\x04\x00\x0a".to_vec()),
            Attribute::Label(fixed.as_bytes().to_vec()),
        ],
        &[
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Sign(true),
            Attribute::Modifiable(false),
            Attribute::Label(fixed.as_bytes().to_vec()),
        ],
    )
    .unwrap();
    let fixed_key = KeyRef::new(fixed.as_str());
    let h = SignPayload::Prehash(random32());
    let fixed_pk = hsm.public_key(&fixed_key).await.unwrap();
    verify_independently(&fixed_pk, &h, &hsm.sign(&fixed_key, &h).await.unwrap());
    let fixed_v0 = KeyRef::versioned(fixed.as_str(), "0");
    hsm.disable_version(&fixed_v0).await.unwrap();
    let attrs = private_key_attrs(&raw, &fixed, &[AttributeType::Sign]);
    assert!(
        matches!(attrs.as_slice(), [Attribute::Sign(true)]),
        "{attrs:?}"
    );
    let markers = || {
        raw.find_objects(&[
            Attribute::Class(ObjectClass::DATA),
            Attribute::Label(format!("keymgr.disabled:{fixed}").into_bytes()),
        ])
        .unwrap()
        .len()
    };
    assert_eq!(markers(), 1);
    let e = hsm.sign(&fixed_key, &h).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");
    assert!(e.to_string().contains("marker"), "{e}");
    let versions = hsm.list_versions(&fixed).await.unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].state, VersionState::Disabled);
    // Disabling twice is fine and leaves one marker.
    hsm.disable_version(&fixed_v0).await.unwrap();
    assert_eq!(markers(), 1);
    hsm.delete_version(&fixed_v0).await.unwrap();
    assert_eq!(markers(), 0, "deleting a version removes its marker");
    assert_eq!(
        hsm.public_key(&fixed_key).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}
