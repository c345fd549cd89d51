//! Deleting HSM key versions on SoftHSM2: only a disabled, non-current version, only when
//! asked, and only through `delete_version`, which the rotator drives and audits
//! (`KEY_DELETED`). Also: each version keymgr makes carries its creation time on the
//! token.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use cryptoki::object::Attribute;
use keymgr_core::{
    AuditEvent, Error, ErrorKind, KeyAlgorithm, KeyBackend, KeyManager, KeyRef, Outcome,
    SignPayload,
};
use keymgr_hsm::HsmBackend;
use keymgr_rotation::{ManualClock, MemoryStateStore, RotationEvent, RotationPolicy, Rotator};

fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// Labels of every object on the token that belongs to `name` (any version, marker or
/// record), read with raw cryptoki.
fn labels_on_token(name: &str) -> Vec<String> {
    let (_ctx, s) = common::raw_session();
    let mut out = Vec::new();
    for h in s.find_objects(&[]).unwrap() {
        let Ok(attrs) = s.get_attributes(h, &[cryptoki::object::AttributeType::Label]) else {
            continue;
        };
        for a in attrs {
            if let Attribute::Label(l) = a
                && let Ok(l) = String::from_utf8(l)
                && l.contains(name)
            {
                out.push(l);
            }
        }
    }
    out.sort();
    out
}

fn refused_as_invalid(e: &Error) {
    assert!(
        matches!(e, Error::InvalidInput { field, .. } if field == "key"),
        "{e:?}"
    );
}

async fn signs(hsm: &dyn KeyBackend, name: &str) {
    let key = KeyRef::new(name);
    let payload = SignPayload::Prehash(common::random32());
    let sig = hsm.sign(&key, &payload).await.unwrap();
    common::verify_independently(&hsm.public_key(&key).await.unwrap(), &payload, &sig);
}

/// The backend's refusals (current, enabled, unversioned, missing) and one deletion that
/// removes every object of the version; creation times read back from the token, also by
/// a second connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_version_refuses_what_may_still_sign_and_creation_times_read_back() {
    let Some(config) = common::config() else {
        return;
    };
    let hsm = HsmBackend::connect(config.clone()).await.unwrap();
    let name = common::unique("del");
    let before = now_ms();
    hsm.create_key(&name, KeyAlgorithm::Secp256k1)
        .await
        .unwrap();
    hsm.create_version(&name).await.unwrap();
    hsm.create_version(&name).await.unwrap();
    let after = now_ms();
    // The creation time is on the token: a fresh connection (another process) reads it.
    let other = HsmBackend::connect(config).await.unwrap();
    for v in other.list_versions(&name).await.unwrap() {
        let t = v.created_at_ms.unwrap_or_else(|| panic!("{v:?}"));
        assert!(
            (before..=after).contains(&t),
            "{t} not in {before}..={after}"
        );
    }

    let v = |n: &str| KeyRef::versioned(name.as_str(), n);
    refused_as_invalid(&hsm.delete_version(&v("3")).await.unwrap_err());
    refused_as_invalid(&hsm.delete_version(&v("1")).await.unwrap_err());
    refused_as_invalid(
        &hsm.delete_version(&KeyRef::new(name.as_str()))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        hsm.delete_version(&v("9")).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(labels_on_token(&name).len(), 9, "3 pairs and 3 records");

    hsm.disable_version(&v("1")).await.unwrap();
    hsm.delete_version(&v("1")).await.unwrap();
    let left = labels_on_token(&name);
    assert!(
        !left.iter().any(|l| l.ends_with(&format!("{name}.v1"))),
        "{left:?}"
    );
    assert_eq!(left.len(), 6, "{left:?}");
    assert_eq!(
        hsm.delete_version(&v("1")).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    signs(&hsm, &name).await;
    common::purge(&name);
}

fn rotator(manager: &KeyManager, keep: Option<usize>) -> Rotator {
    let policy = RotationPolicy {
        overlap: std::time::Duration::ZERO,
        keep_versions: keep,
        ..RotationPolicy::default()
    };
    Rotator::from_manager(
        manager,
        Arc::new(MemoryStateStore::default()),
        policy,
        Arc::new(ManualClock::new(now_ms())),
    )
    .unwrap()
}

fn listed(versions: &[keymgr_core::KeyVersion]) -> Vec<String> {
    versions
        .iter()
        .map(|v| v.key.version().unwrap().to_owned())
        .collect()
}

/// Rotating past the keep count: the rotator deletes exactly the disabled versions beyond
/// it, one `KEY_DELETED` entry each (actor, version, keep count, reason); with deletion
/// off nothing is deleted; a deletion the manager is asked for directly is audited too,
/// and refused for the current version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rotator_deletes_beyond_the_keep_count_and_audits_each_deletion() {
    let Some(hsm) = common::backend().await else {
        return;
    };
    let hsm = Arc::new(hsm);
    for keep in [None, Some(2)] {
        let name = common::unique("keep");
        hsm.create_key(&name, KeyAlgorithm::Secp256k1)
            .await
            .unwrap();
        let audit = Arc::new(common::Recorded::default());
        let backend: Arc<dyn KeyBackend> = hsm.clone();
        let manager = KeyManager::builder(backend)
            .audit(audit.clone())
            .actor("ops-carol")
            .build();
        let r = rotator(&manager, keep);
        let mut deleted_events = Vec::new();
        // Overlap 0: each run creates a version, deletes beyond the keep count, then
        // disables the version it replaced.
        for _ in 0..3 {
            for e in r.rotate_now(&name, false).await.unwrap() {
                if let RotationEvent::Deleted { version, .. } = e {
                    deleted_events.push(version);
                }
            }
            signs(hsm.as_ref(), &name).await;
        }
        let versions = hsm.list_versions(&name).await.unwrap();
        let entries = audit.of(AuditEvent::KeyDeleted);
        // Each deletion: a `pending` entry before the token is asked, then the outcome.
        let (pending, deleted): (Vec<_>, Vec<_>) = entries
            .iter()
            .cloned()
            .partition(|r| r.outcome == Outcome::Pending);
        for (intent, done) in pending.iter().zip(&deleted) {
            assert_eq!(intent.key_version, done.key_version);
        }
        assert_eq!(pending.len(), deleted.len(), "{entries:?}");
        match keep {
            None => {
                assert_eq!(listed(&versions), ["1", "2", "3", "4"]);
                assert!(deleted.is_empty(), "{deleted:?}");
                assert!(deleted_events.is_empty());
            }
            Some(_) => {
                assert_eq!(listed(&versions), ["3", "4"]);
                let audited: Vec<_> = deleted
                    .iter()
                    .map(|r| r.key_version.clone().unwrap())
                    .collect();
                assert_eq!(audited, ["1", "2"]);
                assert_eq!(deleted_events, ["1", "2"]);
                for r in &deleted {
                    assert_eq!(r.outcome, Outcome::Success);
                    assert_eq!(r.actor.as_deref(), Some("ops-carol"));
                    assert_eq!(r.key, name);
                    assert_eq!(r.details["keep_versions"], "2");
                    assert!(r.details["reason"].contains("HSM_KEEP_VERSIONS"), "{r:?}");
                }
                for gone in ["1", "2"] {
                    assert!(
                        !labels_on_token(&name)
                            .iter()
                            .any(|l| l.ends_with(&format!("{name}.v{gone}"))),
                        "v{gone} left objects on the token"
                    );
                }
            }
        }
        // Asked of the manager directly: refused for the current version, audited.
        let current = versions.iter().find(|v| v.current).unwrap().key.clone();
        let e = manager.delete_version(&current).await.unwrap_err();
        refused_as_invalid(&e);
        let refused = audit.of(AuditEvent::KeyDeleted);
        let last = refused.last().unwrap();
        assert_eq!(last.outcome, Outcome::Denied);
        assert_eq!(last.key_version.as_deref(), current.version());
        assert_eq!(last.actor.as_deref(), Some("ops-carol"));
        assert_eq!(last.error_kind, Some(ErrorKind::InvalidInput));
        signs(hsm.as_ref(), &name).await;
        common::purge(&name);
    }
}

/// A rotator whose state is lost (a fresh state store) counts the old version's overlap
/// from the creation time the token recorded, not from its own start: the old version
/// is disabled when the overlap really ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotator_without_state_counts_the_overlap_from_the_token() {
    let Some(hsm) = common::backend().await else {
        return;
    };
    let name = common::unique("lost");
    hsm.create_key(&name, KeyAlgorithm::Secp256k1)
        .await
        .unwrap();
    let hsm: Arc<dyn KeyBackend> = Arc::new(hsm);
    let day = std::time::Duration::from_secs(86_400);
    let clock = Arc::new(ManualClock::new(now_ms()));
    let with_store = || {
        Rotator::new(
            hsm.clone(),
            Arc::new(MemoryStateStore::default()),
            Arc::new(common::Recorded::default()),
            RotationPolicy::default(),
            clock.clone(),
            "lost-state",
        )
        .unwrap()
    };
    with_store().rotate_now(&name, false).await.unwrap();
    // Six days later, a rotator with no state: one day of the 7-day overlap is left.
    clock.advance(day * 6);
    let fresh = with_store();
    assert!(fresh.tick(&name).await.unwrap().is_empty());
    let status = fresh.status(&name).await.unwrap();
    assert!(
        matches!(
            status.state.phase,
            keymgr_rotation::Phase::Overlapping { .. }
        ),
        "{status:?}"
    );
    clock.advance(day + std::time::Duration::from_secs(60));
    let events = with_store().tick(&name).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, RotationEvent::Disabled { version, .. } if version == "1")),
        "the overlap ended 7 days after the rotation: {events:?}"
    );
    signs(hsm.as_ref(), &name).await;
    common::purge(&name);
}
