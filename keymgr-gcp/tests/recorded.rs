//! A disabled version's public key from any process: keymgr records it on the crypto key
//! (label `keymgr-public-key-N`) before disabling the version, because Cloud KMS refuses
//! `getPublicKey` on a `DISABLED` version. Checked from new instances, which never read
//! the version while it was enabled; the recorded key verifies what the version signed
//! (k256, independently of keymgr).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use keymgr_core::{Error, ErrorKind, IntegrityReason, KeyBackend, KeyRef, SignPayload};
use keymgr_gcp::LABEL_PUBLIC_KEY_PREFIX;
use support::{State, backend, evm_and_xrp, k256_verifies};

#[tokio::test]
async fn a_new_instance_reads_a_disabled_versions_public_key_from_its_label() {
    let (stand_in, b, evm, xrp) = evm_and_xrp().await;
    let configured = [("evm", evm.as_str()), ("xrp", xrp.as_str())];
    let v1 = KeyRef::versioned("evm", "1");
    let digest = [0x5a; 32];
    let signed = b.sign(&v1, &SignPayload::Prehash(digest)).await.unwrap();
    let pk = b.public_key(&v1).await.unwrap();
    b.create_version("evm").await.unwrap();
    b.disable_version(&v1).await.unwrap();
    let label = format!("{LABEL_PUBLIC_KEY_PREFIX}1");
    assert!(
        stand_in.labels(&evm).iter().any(|(k, _)| *k == label),
        "{:?}",
        stand_in.labels(&evm)
    );

    let fresh = backend(&stand_in, &configured).await;
    let read = fresh.public_key(&v1).await.unwrap();
    assert_eq!(read, pk);
    assert!(k256_verifies(&read, &digest, signed.signature()));
    let e = fresh
        .sign(&v1, &SignPayload::Prehash(digest))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");
    // Disabling again records nothing new and stays a no-op.
    fresh.disable_version(&v1).await.unwrap();
    assert_eq!(
        stand_in.state(&format!("{evm}/cryptoKeyVersions/1")),
        State::Disabled
    );
}

#[tokio::test]
async fn without_a_record_or_with_a_bad_one_the_public_key_is_refused() {
    let (stand_in, b, evm, xrp) = evm_and_xrp().await;
    let configured = [("evm", evm.as_str()), ("xrp", xrp.as_str())];
    b.create_version("evm").await.unwrap();
    let v1 = KeyRef::versioned("evm", "1");
    // Disabled outside keymgr (console): nothing recorded, Cloud KMS refuses.
    stand_in.set_state(&format!("{evm}/cryptoKeyVersions/1"), State::Disabled);
    let e = backend(&stand_in, &configured)
        .await
        .public_key(&v1)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");

    // A record that is not a secp256k1 key (an Ed25519 key's length, garbage).
    let label = format!("{LABEL_PUBLIC_KEY_PREFIX}1");
    for bad in ["aaaaaaaa", "not-base32", &"a".repeat(52)] {
        stand_in.set_label(&evm, &label, bad);
        let e = backend(&stand_in, &configured)
            .await
            .public_key(&v1)
            .await
            .unwrap_err();
        assert_eq!(
            e.integrity_reason(),
            Some(IntegrityReason::MalformedResponse),
            "{bad}: {e}"
        );
        let Error::Integrity { key, .. } = &e else {
            unreachable!()
        };
        assert_eq!(key, "evm@1");
    }
}

#[tokio::test]
async fn when_the_record_cannot_be_written_the_version_stays_enabled() {
    let (stand_in, b, evm, _) = evm_and_xrp().await;
    b.create_version("evm").await.unwrap();
    // Cloud KMS allows 64 labels; fill the key up (keymgr-current-version is one).
    let used = stand_in.labels(&evm).len();
    for i in used..64 {
        stand_in.set_label(&evm, &format!("team-{i}"), "x");
    }
    let e = b
        .disable_version(&KeyRef::versioned("evm", "1"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert_eq!(
        stand_in.state(&format!("{evm}/cryptoKeyVersions/1")),
        State::Enabled
    );
}
