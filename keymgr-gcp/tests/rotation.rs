//! Rotation beyond the versions contract that `conformance.rs` checks: waiting for
//! generation, the current-version label, the service's refusal of disabled versions,
//! keys that are not rotated, and keymgr-rotation's scheduler end to end, through the
//! real client.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use keymgr_core::{Error, ErrorKind, KeyBackend, KeyRef, VersionState};
use keymgr_gcp::LABEL_CURRENT_VERSION;
use support::{Algorithm, StandIn, State, backend, evm_and_xrp, sign_and_check};

/// What the versions contract (`conformance.rs`) leaves to Cloud KMS: waiting out
/// `PENDING_GENERATION`, the current-version label other processes follow, and the
/// service's own refusal of a disabled version.
#[tokio::test]
async fn create_version_waits_for_generation_and_labels_the_current_version() {
    let (stand_in, b, evm, _) = evm_and_xrp().await;
    // Generation is asynchronous in Cloud KMS: the new version is PENDING first.
    stand_in.set_pending_generation_gets(3);
    let name = "evm";
    let before = b.list_versions(name).await.unwrap();
    assert_eq!(before[0].backend_id, format!("{evm}/cryptoKeyVersions/1"));
    assert!(before[0].created_at_ms.is_some());
    let old_pk = b.public_key(&KeyRef::new(name)).await.unwrap();

    // Another process, reading the key with no cache.
    let other = backend(&stand_in, &[(name, &evm)])
        .await
        .with_current_version_ttl(Duration::ZERO);
    assert_eq!(other.public_key(&KeyRef::new(name)).await.unwrap(), old_pk);

    let created = b.create_version(name).await.unwrap();
    assert_eq!(created.key, KeyRef::versioned(name, "2"));
    assert_eq!(created.state, VersionState::Enabled);
    assert!(
        stand_in.calls("getCryptoKeyVersion") >= 3,
        "did not wait for ENABLED"
    );
    assert!(
        stand_in
            .labels(&evm)
            .contains(&(LABEL_CURRENT_VERSION.to_owned(), "2".to_owned()))
    );
    let new_pk = b.public_key(&KeyRef::new(name)).await.unwrap();
    assert_eq!(other.public_key(&KeyRef::new(name)).await.unwrap(), new_pk);
}

#[tokio::test]
async fn disabled_versions_are_refused_by_the_service_with_its_status() {
    let (stand_in, b, evm, _) = evm_and_xrp().await;
    let name = "evm";
    let v1 = KeyRef::versioned(name, "1");
    b.create_version(name).await.unwrap();
    b.disable_version(&v1).await.unwrap();
    assert_eq!(
        stand_in.state(&format!("{evm}/cryptoKeyVersions/1")),
        State::Disabled
    );
    // Cloud KMS refuses to sign with it: FAILED_PRECONDITION → access denied, with the
    // status and request id kept.
    let e = sign_and_check(&*b, &v1).await.unwrap_err();
    let Error::AccessDenied { key, detail, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(key, "evm@1");
    assert!(
        detail.contains("FAILED_PRECONDITION") && detail.contains("standin-"),
        "{detail}"
    );
    // Unknown and malformed versions.
    let e = b
        .disable_version(&KeyRef::versioned(name, "9"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let e = b
        .disable_version(&KeyRef::versioned(name, "x"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
}

#[tokio::test]
async fn pinned_and_symmetric_keys_are_not_rotated() {
    let stand_in = StandIn::start().await;
    let evm = stand_in.create_key("pinned", Algorithm::Secp256k1);
    let aes = stand_in.create_key("kek", Algorithm::Symmetric);
    let b = backend(
        &stand_in,
        &[
            ("evm", &format!("{evm}/cryptoKeyVersions/1")),
            ("kek", &aes),
        ],
    )
    .await;
    for name in ["evm", "kek"] {
        let e = b.create_version(name).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{name}: {e}");
    }
    assert_eq!(stand_in.calls("createCryptoKeyVersion"), 0);
}

#[tokio::test]
async fn without_a_label_the_newest_enabled_version_is_current() {
    let stand_in = StandIn::start().await;
    let evm = stand_in.create_key("created-elsewhere", Algorithm::Secp256k1);
    let v2 = stand_in.add_version(&evm);
    let v3 = stand_in.add_version(&evm);
    stand_in.set_state(&v3, State::Disabled);
    let b = backend(&stand_in, &[("evm", &evm)]).await;
    let versions = b.list_versions("evm").await.unwrap();
    assert_eq!(versions.len(), 3, "all pages were read");
    let current: Vec<_> = versions.iter().filter(|v| v.current).collect();
    assert_eq!(current[0].backend_id, v2);
    assert_eq!(
        b.public_key(&KeyRef::new("evm")).await.unwrap(),
        b.public_key(&KeyRef::versioned("evm", "2")).await.unwrap()
    );
}

/// keymgr-rotation end to end: the scheduler's state machine drives version creation,
/// the label and the disable through the real client.
#[tokio::test]
async fn scheduled_rotation_through_keymgr_rotation() {
    use keymgr_rotation::{ManualClock, MemoryStateStore, RotationEvent, RotationPolicy, Rotator};
    let (stand_in, b, evm, _) = evm_and_xrp().await;
    let gcp: Arc<dyn KeyBackend> = b.clone();
    let clock = Arc::new(ManualClock::new(0));
    let rotator = Rotator::new(
        gcp.clone(),
        Arc::new(MemoryStateStore::default()),
        Arc::new(keymgr_core::TracingAuditSink),
        RotationPolicy::default(),
        clock.clone(),
        "gcp-e2e",
    )
    .unwrap();
    // The stand-in reports the version's real creation time; start the clock there.
    rotator.tick("evm").await.unwrap();
    let since = rotator.status("evm").await.unwrap().state.active_since_ms;
    clock.advance(Duration::from_millis(since));
    let day = Duration::from_secs(86_400);
    let mut kinds = Vec::new();
    let mut rotated = None;
    for d in 0..=100u64 {
        for e in rotator.tick("evm").await.unwrap() {
            kinds.push((
                d,
                match &e {
                    RotationEvent::Notice { .. } => "notice",
                    RotationEvent::Rotated(_) => "rotated",
                    RotationEvent::Disabled { .. } => "disabled",
                    _ => "other",
                },
            ));
            if let RotationEvent::Rotated(r) = e {
                rotated = Some(r);
            }
        }
        clock.advance(day);
    }
    assert_eq!(
        kinds,
        vec![(76, "notice"), (90, "rotated"), (97, "disabled")]
    );
    let rotated = rotated.unwrap();
    assert_eq!(rotated.old.as_ref().map(|o| o.version()), Some("1"));
    assert_eq!(rotated.new.version(), "2");
    // Cloud KMS itself: the label names version 2, version 1 is disabled (not destroyed).
    assert!(
        stand_in
            .labels(&evm)
            .contains(&(LABEL_CURRENT_VERSION.to_owned(), "2".to_owned()))
    );
    assert_eq!(
        stand_in.state(&format!("{evm}/cryptoKeyVersions/1")),
        State::Disabled
    );
    let e = rotator
        .check_version(&KeyRef::versioned("evm", "1"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AccessDenied);
    sign_and_check(&*gcp, &KeyRef::new("evm")).await.unwrap();
}
