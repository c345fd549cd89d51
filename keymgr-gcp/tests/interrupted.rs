//! A rotation interrupted at each step (the call that would follow fails, as if the
//! process died there): the key keeps signing with the old version in every process,
//! and the next rotation adopts the version already created instead of making another.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use keymgr_core::{KeyBackend, KeyRef, VersionState};
use keymgr_gcp::{LABEL_CURRENT_VERSION, LABEL_ROTATING_FROM};
use support::{Fault, StandIn, backend, evm_and_xrp, sign_and_check};

#[derive(Debug, Clone, Copy)]
enum CrashPoint {
    /// Before the intent label is written.
    BeforeIntent,
    /// After the intent label, before CreateCryptoKeyVersion answered.
    BeforeCreate,
    /// After CreateCryptoKeyVersion, while the version is still PENDING_GENERATION.
    DuringGeneration,
    /// After the version is ENABLED, before the current-version label moved.
    BeforeLabelMove,
}

impl CrashPoint {
    fn fail_next(self, stand_in: &StandIn) {
        let unavailable = || Fault::Unavailable;
        match self {
            CrashPoint::BeforeIntent => stand_in.inject("updateCryptoKey", unavailable()),
            CrashPoint::BeforeCreate => stand_in.inject("createCryptoKeyVersion", unavailable()),
            CrashPoint::DuringGeneration => {
                stand_in.set_pending_generation_gets(2);
                stand_in.inject("getCryptoKeyVersion", unavailable());
            }
            CrashPoint::BeforeLabelMove => {
                // The intent update goes through; the label move does not.
                stand_in.inject_after("updateCryptoKey", 1, unavailable());
            }
        }
    }

    /// Versions the interrupted attempt left behind.
    fn created(self) -> usize {
        match self {
            CrashPoint::BeforeIntent | CrashPoint::BeforeCreate => 0,
            CrashPoint::DuringGeneration | CrashPoint::BeforeLabelMove => 1,
        }
    }
}

fn label(stand_in: &StandIn, key: &str, name: &str) -> Option<String> {
    stand_in
        .labels(key)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

#[tokio::test]
async fn every_crash_point_leaves_a_key_that_signs_and_is_adopted() {
    for point in [
        CrashPoint::BeforeIntent,
        CrashPoint::BeforeCreate,
        CrashPoint::DuringGeneration,
        CrashPoint::BeforeLabelMove,
    ] {
        let (stand_in, b, evm, _) = evm_and_xrp().await;
        let name = "evm";
        let old_pk = b.public_key(&KeyRef::new(name)).await.unwrap();
        point.fail_next(&stand_in);
        let e = b.create_version(name).await;
        assert!(
            e.is_err(),
            "{point:?}: the interrupted rotation reports failure"
        );
        assert_eq!(
            b.list_versions(name).await.unwrap().len(),
            1 + point.created(),
            "{point:?}"
        );
        // Every process (including one that never cached anything) still signs with
        // the old version.
        let fresh = backend(&stand_in, &[(name, &evm)])
            .await
            .with_current_version_ttl(Duration::ZERO);
        for process in [&*b as &dyn KeyBackend, &fresh] {
            assert_eq!(
                process.public_key(&KeyRef::new(name)).await.unwrap(),
                old_pk,
                "{point:?}"
            );
            sign_and_check(process, &KeyRef::new(name)).await.unwrap();
        }
        // The next rotation finishes the job with exactly one new version.
        stand_in.set_pending_generation_gets(0);
        let created = b.create_version(name).await.unwrap();
        assert_eq!(created.key, KeyRef::versioned(name, "2"), "{point:?}");
        assert!(created.current);
        assert_eq!(created.state, VersionState::Enabled);
        assert_eq!(
            b.list_versions(name).await.unwrap().len(),
            2,
            "{point:?}: no second version"
        );
        assert_eq!(
            label(&stand_in, &evm, LABEL_CURRENT_VERSION).as_deref(),
            Some("2")
        );
        assert_eq!(
            label(&stand_in, &evm, LABEL_ROTATING_FROM),
            None,
            "{point:?}"
        );
        let new_pk = fresh.public_key(&KeyRef::new(name)).await.unwrap();
        assert_ne!(new_pk, old_pk, "{point:?}");
        sign_and_check(&fresh, &KeyRef::new(name)).await.unwrap();
        sign_and_check(&*b, &KeyRef::versioned(name, "1"))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_version_made_outside_a_rotation_is_not_adopted() {
    let (stand_in, b, evm, _) = evm_and_xrp().await;
    // A version an operator added by hand, with no rotation intent recorded: the
    // rotation makes its own version and leaves that one alone.
    b.create_version("evm").await.unwrap();
    let manual = stand_in.add_version(&evm);
    let created = b.create_version("evm").await.unwrap();
    assert_ne!(created.backend_id, manual);
    assert_eq!(b.list_versions("evm").await.unwrap().len(), 4);
}
