//! Symmetric encryption with GOOGLE_SYMMETRIC_ENCRYPTION keys: the encryption context is
//! bound as additional authenticated data, checked by opening ciphertexts with the
//! stand-in's key material directly (not through keymgr).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use keymgr_core::{EncryptionContext, Error, ErrorKind, KeyBackend, KeyRef};
use keymgr_gcp::aad_of;
use support::{Algorithm, Fault, StandIn, backend};

fn context(pairs: &[(&str, &str)]) -> EncryptionContext {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[tokio::test]
async fn encrypt_decrypt_and_data_keys_bind_the_context() {
    let stand_in = StandIn::start().await;
    let kek = stand_in.create_key("kek", Algorithm::Symmetric);
    let b = backend(&stand_in, &[("kek", &kek)]).await;
    let key = KeyRef::new("kek");
    let ctx = context(&[("purpose", "audit-hmac"), ("tenant", "42")]);
    for plaintext in [&b""[..], b"x", &[7u8; 4096][..]] {
        let ct = b.encrypt(&key, plaintext, &ctx).await.unwrap();
        assert_eq!(
            stand_in.open(&kek, &ct, &aad_of(&ctx)).as_deref(),
            Some(plaintext),
            "not bound to the documented AAD encoding"
        );
        assert!(stand_in.open(&kek, &ct, b"").is_none() || ctx.is_empty());
        let back = b.decrypt(&key, &ct, &ctx).await.unwrap();
        assert_eq!(back.expose(), plaintext);
        // A different context does not decrypt: an integrity error naming the key.
        let e = b
            .decrypt(&key, &ct, &context(&[("purpose", "other")]))
            .await
            .unwrap_err();
        let Error::Integrity { key: named, .. } = &e else {
            panic!("{e}")
        };
        assert_eq!(named, "kek");
    }
    let dk = b.generate_data_key(&key, &ctx).await.unwrap();
    assert_eq!(dk.plaintext.len(), 32);
    assert_eq!(
        stand_in
            .open(&kek, &dk.ciphertext, &aad_of(&ctx))
            .as_deref(),
        Some(dk.plaintext.expose())
    );
    assert_eq!(
        b.decrypt(&key, &dk.ciphertext, &ctx).await.unwrap(),
        dk.plaintext
    );
    assert!(!format!("{dk:?}").contains(&format!("{:?}", dk.plaintext.expose())));
}

#[tokio::test]
async fn old_ciphertexts_decrypt_after_the_primary_moves() {
    let stand_in = StandIn::start().await;
    let kek = stand_in.create_key("kek", Algorithm::Symmetric);
    let b = backend(&stand_in, &[("kek", &kek)]).await;
    let key = KeyRef::new("kek");
    let ctx = EncryptionContext::new();
    let old = b.encrypt(&key, b"before", &ctx).await.unwrap();
    stand_in.add_version(&kek);
    stand_in.set_primary(&kek, 2);
    let new = b.encrypt(&key, b"after", &ctx).await.unwrap();
    assert_eq!(
        &new[..4],
        &2u32.to_be_bytes(),
        "encrypted with the new primary"
    );
    assert_eq!(
        b.decrypt(&key, &old, &ctx).await.unwrap().expose(),
        b"before"
    );
    assert_eq!(
        b.decrypt(&key, &new, &ctx).await.unwrap().expose(),
        b"after"
    );
    // An explicit version encrypts with that version.
    let v1 = b
        .encrypt(&KeyRef::versioned("kek", "1"), b"v1", &ctx)
        .await
        .unwrap();
    assert_eq!(&v1[..4], &1u32.to_be_bytes());
}

#[tokio::test]
async fn checksums_limits_and_wrong_keys() {
    let stand_in = StandIn::start().await;
    let kek = stand_in.create_key("kek", Algorithm::Symmetric);
    let evm = stand_in.create_key("evm", Algorithm::Secp256k1);
    let b = backend(&stand_in, &[("kek", &kek), ("evm", &evm)]).await;
    let key = KeyRef::new("kek");
    let ctx = EncryptionContext::new();
    // One wrong ciphertextCrc32c is retried; two are an integrity error.
    stand_in.inject("encrypt", Fault::WrongChecksum);
    let ct = b.encrypt(&key, b"data", &ctx).await.unwrap();
    assert_eq!(stand_in.calls("encrypt"), 2);
    stand_in.inject("decrypt", Fault::WrongChecksum);
    stand_in.inject("decrypt", Fault::WrongChecksum);
    let e = b.decrypt(&key, &ct, &ctx).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Integrity, "{e}");
    stand_in.inject("encrypt", Fault::Unverified);
    stand_in.inject("encrypt", Fault::Unverified);
    let e = b.encrypt(&key, b"data", &ctx).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Integrity, "{e}");
    // Over Cloud KMS's 64 KiB limit: refused before any call.
    let before = stand_in.calls("encrypt");
    let e = b
        .encrypt(&key, &vec![0u8; keymgr_gcp::MAX_DATA_BYTES + 1], &ctx)
        .await
        .unwrap_err();
    let Error::InvalidInput { field, reason, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(field, "plaintext");
    assert!(
        reason.contains("65536") && reason.contains("generate_data_key"),
        "{reason}"
    );
    assert_eq!(stand_in.calls("encrypt"), before);
    // A signing key cannot encrypt: Cloud KMS's FAILED_PRECONDITION.
    let e = b
        .encrypt(&KeyRef::new("evm"), b"x", &ctx)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");
}
