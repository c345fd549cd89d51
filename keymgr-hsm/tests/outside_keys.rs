//! Keys made outside keymgr, by another application on the same token (simulated with
//! raw cryptoki calls). Its own test binary: under `cargo test` the raw calls must not
//! overlap keymgr's own object changes in other tests (separate tools run in separate
//! processes in real life).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{private_key_attrs, random32, raw_session, verify_independently};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use keymgr_core::{ErrorKind, KeyBackend, KeyRef, SignPayload, VersionState};

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
    // Nothing is deleted unless deletion is configured: every version stays.
    for n in 2..=6 {
        let v = hsm.create_version(&name).await.unwrap();
        assert_eq!(v.key.version(), Some(n.to_string().as_str()));
    }
    let numbers: Vec<String> = hsm
        .list_versions(&name)
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.key.version().unwrap().to_owned())
        .collect();
    assert_eq!(numbers, ["0", "1", "2", "3", "4", "5", "6"]);
    verify_independently(&pk, &msg, &hsm.sign(&v0, &msg).await.unwrap());
    common::purge(&name);

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
    // The only version is current, and the current version is never disabled.
    let e = hsm.disable_version(&fixed_v0).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let v1 = hsm.create_version(&fixed).await.unwrap();
    assert_eq!(v1.key, KeyRef::versioned(fixed.as_str(), "1"));
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
    let e = hsm.sign(&fixed_v0, &h).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");
    assert!(e.to_string().contains("marker"), "{e}");
    assert_eq!(hsm.public_key(&fixed_v0).await.unwrap(), fixed_pk);
    let versions = hsm.list_versions(&fixed).await.unwrap();
    let states: Vec<_> = versions.iter().map(|v| (v.state, v.current)).collect();
    assert_eq!(
        states,
        [
            (VersionState::Disabled, false),
            (VersionState::Enabled, true)
        ]
    );
    // Disabling twice is fine and leaves one marker.
    hsm.disable_version(&fixed_v0).await.unwrap();
    assert_eq!(markers(), 1);
    // Version 0 (the original label, made outside keymgr) is never deleted by keymgr.
    let e = hsm.delete_version(&fixed_v0).await.unwrap_err();
    assert!(
        matches!(&e, keymgr_core::Error::InvalidInput { field, .. } if field == "key"),
        "{e:?}"
    );
    assert_eq!(markers(), 1);
    common::purge(&fixed);
    assert_eq!(
        hsm.public_key(&fixed_key).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}
