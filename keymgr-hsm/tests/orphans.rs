//! What a crash inside rotation can leave on a token, and that the key still signs:
//! the public half of a pair whose generation was killed, a half pair without its
//! public key, a private key that vanished while rotation wanted to disable it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass};
use cryptoki::session::Session;
use k256::pkcs8::der::Encode as _;
use keymgr_core::{AuditEvent, KeyAlgorithm, KeyBackend, KeyRef, OID_SECP256K1, SignPayload};
use keymgr_hsm::HsmBackend;
use keymgr_rotation::{ManualClock, MemoryStateStore, RotationEvent, RotationPolicy, Rotator};

/// `pkcs11-tool --keypairgen --key-type EC:secp256k1 --label LABEL --id ID` with cryptoki.
fn keypairgen(s: &Session, label: &str, id: &[u8]) {
    let params = OID_SECP256K1.to_der().unwrap();
    let common = |extra: Vec<Attribute>| {
        let mut a = vec![
            Attribute::Token(true),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.to_vec()),
        ];
        a.extend(extra);
        a
    };
    s.generate_key_pair(
        &Mechanism::EccKeyPairGen,
        &common(vec![Attribute::EcParams(params), Attribute::Verify(true)]),
        &common(vec![
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Sign(true),
        ]),
    )
    .unwrap();
}

/// `pkcs11-tool --delete-object --type privkey|pubkey --id ID`.
fn delete(s: &Session, class: ObjectClass, id: &[u8]) {
    for h in s
        .find_objects(&[Attribute::Class(class), Attribute::Id(id.to_vec())])
        .unwrap()
    {
        s.destroy_object(h).unwrap();
    }
}

async fn signs(hsm: &HsmBackend, name: &str) {
    let key = KeyRef::new(name);
    let payload = SignPayload::Prehash(common::random32());
    let sig = hsm.sign(&key, &payload).await.unwrap();
    common::verify_independently(&hsm.public_key(&key).await.unwrap(), &payload, &sig);
}

fn versions(list: &[keymgr_core::KeyVersion]) -> Vec<(String, bool)> {
    list.iter()
        .map(|v| (v.key.version().unwrap().to_owned(), v.current))
        .collect()
}

/// The reproduction: an orphan public key `LABEL.vN` (its private key deleted, as
/// a kill inside `C_GenerateKeyPair` leaves it) must not make the next rotation create a
/// second `LABEL.vN`, and signing keeps working before and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orphan_public_key_never_collides_with_the_next_version() {
    let Some(hsm) = common::backend().await else {
        return;
    };
    let name = common::unique("orphan");
    hsm.create_key(&name, KeyAlgorithm::Secp256k1)
        .await
        .unwrap();
    let (_ctx, raw) = common::raw_session();
    keypairgen(&raw, &format!("{name}.v2"), &[0x99]);
    delete(&raw, ObjectClass::PRIVATE_KEY, &[0x99]);
    hsm.invalidate(&name);
    signs(&hsm, &name).await;

    let v = hsm.create_version(&name).await.unwrap();
    assert_eq!(v.key.version(), Some("3"), "above the orphan's number");
    signs(&hsm, &name).await;
    assert_eq!(
        hsm.public_key(&KeyRef::new(name.as_str())).await.unwrap(),
        hsm.public_key(&v.key).await.unwrap()
    );
    assert_eq!(
        versions(&hsm.list_versions(&name).await.unwrap()),
        vec![("1".into(), false), ("3".into(), true)]
    );
    // And again: numbers keep going up.
    let v = hsm.create_version(&name).await.unwrap();
    assert_eq!(v.key.version(), Some("4"));
    signs(&hsm, &name).await;
}

/// A token already in the broken state older keymgr left: two public keys under the
/// current label, one of them the orphan of another pair. The key pair's own public key
/// is found by its `CKA_ID`, and signing works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_public_key_under_the_label_is_ignored() {
    let Some(hsm) = common::backend().await else {
        return;
    };
    let name = common::unique("twopub");
    let (_ctx, raw) = common::raw_session();
    keypairgen(&raw, &format!("{name}.v1"), &[0x98]);
    delete(&raw, ObjectClass::PRIVATE_KEY, &[0x98]);
    keypairgen(&raw, &format!("{name}.v1"), &[0x97]);
    signs(&hsm, &name).await;
    let v = hsm.create_version(&name).await.unwrap();
    assert_eq!(v.key.version(), Some("2"));
    signs(&hsm, &name).await;
}

/// A half pair at the top (a private key whose public key object is missing, as a module
/// that writes the private half first could leave it) is skipped: the previous complete
/// version stays current and signs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_key_without_public_key_is_not_current() {
    let Some(hsm) = common::backend().await else {
        return;
    };
    let name = common::unique("halfpair");
    let v1 = hsm
        .create_key(&name, KeyAlgorithm::Secp256k1)
        .await
        .unwrap();
    let (_ctx, raw) = common::raw_session();
    keypairgen(&raw, &format!("{name}.v2"), &[0x96]);
    delete(&raw, ObjectClass::PUBLIC_KEY, &[0x96]);
    hsm.invalidate(&name);
    signs(&hsm, &name).await;
    assert_eq!(
        hsm.public_key(&KeyRef::new(name.as_str())).await.unwrap(),
        hsm.public_key(&v1.key).await.unwrap()
    );
    assert_eq!(
        versions(&hsm.list_versions(&name).await.unwrap()),
        vec![("1".into(), true)]
    );
    let v = hsm.create_version(&name).await.unwrap();
    assert_eq!(v.key.version(), Some("3"));
    signs(&hsm, &name).await;
}

/// A version whose private key vanished while rotation was to disable it counts as
/// disabled: the rotation finishes (audited) instead of failing with "not found" forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_private_key_counts_as_disabled() {
    let Some(hsm) = common::backend().await else {
        return;
    };
    let name = common::unique("vanish");
    hsm.create_key(&name, KeyAlgorithm::Secp256k1)
        .await
        .unwrap();
    let hsm: Arc<dyn KeyBackend> = Arc::new(hsm);
    let clock = Arc::new(ManualClock::new(0));
    let audit = Arc::new(common::Recorded::default());
    let rotator = Rotator::new(
        hsm.clone(),
        Arc::new(MemoryStateStore::default()),
        audit.clone(),
        RotationPolicy::default(),
        clock.clone(),
        "vanish",
    )
    .unwrap();
    let events = rotator.rotate_now(&name, false).await.unwrap();
    assert!(
        matches!(events.as_slice(), [RotationEvent::Rotated(_)]),
        "{events:?}"
    );
    let (_ctx, raw) = common::raw_session();
    for h in raw
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(format!("{name}.v1").into_bytes()),
        ])
        .unwrap()
    {
        raw.destroy_object(h).unwrap();
    }
    clock.advance(Duration::from_secs(8 * 86_400));
    let events = rotator.tick(&name).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, RotationEvent::Disabled { version, .. } if version == "1")),
        "{events:?}"
    );
    let disabled = audit.of(AuditEvent::KeyDisabled);
    assert_eq!(disabled.len(), 1);
    assert!(disabled[0].details.contains_key("already_absent"));
    assert!(rotator.status(&name).await.unwrap().action.is_none());
    let key = KeyRef::new(name.as_str());
    let payload = SignPayload::Prehash(common::random32());
    let sig = hsm.sign(&key, &payload).await.unwrap();
    common::verify_independently(&hsm.public_key(&key).await.unwrap(), &payload, &sig);
}
