//! Rotation against the Key Vault stand-in, beyond the versions contract that
//! `conformance.rs` checks: new versions under the same name, tagged; disabling sets
//! `enabled: false`; listing follows `nextLink`; pinned names are not rotated; end to
//! end through `keymgr-rotation`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
use keymgr_core::{Error, ErrorKind, KeyBackend, KeyRef, SignPayload};
use support::fixture;

/// What the versions contract (`conformance.rs`) leaves to Key Vault: a new version
/// under the same key name, tagged, that the unversioned name follows at once.
#[tokio::test]
async fn new_version_is_created_under_the_same_name_and_tagged() {
    let (stand_in, b) = fixture().await;
    let v1 = stand_in.versions("evm-signer")[0].clone();
    let created = b.create_version("evm").await.unwrap();
    let v2 = created.key.version().unwrap().to_owned();
    assert_eq!(
        stand_in.versions("evm-signer"),
        vec![v1.clone(), v2.clone()]
    );
    assert_eq!(
        stand_in.tags("evm-signer", &v2),
        vec![("created-by".to_owned(), "keymgr".to_owned())]
    );
    // The unversioned name moved at once (no stale cache).
    let after = b.public_key(&KeyRef::new("evm")).await.unwrap();
    assert_eq!(
        after.as_secp256k1(),
        Some(&stand_in.verifying_key("evm-signer", &v2))
    );
}

#[tokio::test]
async fn listing_follows_next_link() {
    let (stand_in, b) = fixture().await;
    for _ in 0..4 {
        b.create_version("evm").await.unwrap();
    }
    // The stand-in serves at most two versions per page: five versions take three pages.
    let listed = b.list_versions("evm").await.unwrap();
    let versions: Vec<String> = listed
        .iter()
        .map(|v| v.key.version().unwrap().to_owned())
        .collect();
    assert_eq!(versions, stand_in.versions("evm-signer"));
    assert!(stand_in.calls("listVersions") >= 3);
    assert!(listed.last().unwrap().current);
}

#[tokio::test]
async fn disable_sets_enabled_false_in_the_vault() {
    let (stand_in, b) = fixture().await;
    let v1 = stand_in.versions("evm-signer")[0].clone();
    b.create_version("evm").await.unwrap();
    b.disable_version(&KeyRef::versioned("evm", v1.clone()))
        .await
        .unwrap();
    assert!(!stand_in.enabled("evm-signer", &v1));
    assert_eq!(stand_in.versions("evm-signer").len(), 2, "never deleted");
}

#[tokio::test]
async fn pinned_configuration_is_not_rotated() {
    let stand_in = support::StandIn::start(support::SECRET).await;
    let v1 = stand_in.create_secp256k1("pinned");
    let b = support::backend(&stand_in, &format!("pinned/{v1}"), "pinned");
    match b.create_version("evm").await.unwrap_err() {
        Error::InvalidInput { reason, .. } => assert!(reason.contains(&v1), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(stand_in.versions("pinned").len(), 1);
}

#[tokio::test]
async fn scheduled_rotation_through_keymgr_rotation() {
    use keymgr_rotation::{ManualClock, MemoryStateStore, RotationEvent, RotationPolicy, Rotator};
    let (stand_in, b) = fixture().await;
    let v1 = stand_in.versions("evm-signer")[0].clone();
    let azure: Arc<dyn KeyBackend> = b.clone();
    let clock = Arc::new(ManualClock::new(0));
    let rotator = Rotator::new(
        azure,
        Arc::new(MemoryStateStore::default()),
        Arc::new(keymgr_core::TracingAuditSink),
        RotationPolicy::default(),
        clock.clone(),
        "azure-e2e",
    )
    .unwrap();
    // Key Vault reports the version's creation time; start the virtual clock there.
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
    assert_eq!(rotated.old.as_ref().map(|o| o.version()), Some(v1.as_str()));
    let versions = stand_in.versions("evm-signer");
    assert_eq!(versions, vec![v1.clone(), rotated.new.version().to_owned()]);
    assert!(!stand_in.enabled("evm-signer", &v1), "old version disabled");
    assert!(stand_in.enabled("evm-signer", rotated.new.version()));
    let e = rotator
        .check_version(&KeyRef::versioned("evm", v1.as_str()))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AccessDenied);
    // The name now signs with the new version, checked against the vault's own key.
    b.invalidate("evm");
    let digest = [0x37; 32];
    let sig = b
        .sign(&KeyRef::new("evm"), &SignPayload::Prehash(digest))
        .await
        .unwrap();
    assert_eq!(sig.key_version(), Some(rotated.new.version()));
    stand_in
        .verifying_key("evm-signer", rotated.new.version())
        .verify_prehash(&digest, sig.as_secp256k1().unwrap().as_k256())
        .unwrap();
}
