//! AES-GCM with AES keys in SoftHSM2 (`CKM_AES_GCM`): every ciphertext is opened by
//! RustCrypto's `aes-gcm` with the provisioned test key's known value, and what
//! `aes-gcm` seals decrypts in the token; tampering, a wrong context and keys keymgr must
//! not use are typed errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use aes_gcm::aead::{Aead as _, KeyInit as _, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use cryptoki::object::{Attribute, KeyType, ObjectClass};
use keymgr_core::{EncryptionContext, ErrorKind, KeyBackend, KeyRef};
use keymgr_hsm::HsmBackend;

const AES_LABEL_VAR: &str = "KEYMGR_TEST_HSM_AES_LABEL";
const AES_KEY_VAR: &str = "KEYMGR_TEST_HSM_AES_KEY";

struct Setup {
    backend: HsmBackend,
    key: KeyRef,
    cipher: Aes256Gcm,
}

async fn setup() -> Option<Setup> {
    if std::env::var_os(AES_LABEL_VAR).is_none() {
        keymgr_testkit::skip_or_fail(
            &format!("the provisioned test AES key ({AES_LABEL_VAR} unset)"),
            "run `cargo xtask test` or `eval \"$(cargo xtask provision)\"`",
        );
        return None;
    }
    let backend = common::backend().await?;
    let value = hex::decode(common::var(AES_KEY_VAR)).unwrap();
    Some(Setup {
        backend,
        key: KeyRef::new(common::var(AES_LABEL_VAR)),
        cipher: Aes256Gcm::new_from_slice(&value).unwrap(),
    })
}

fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The AWS Encryption SDK's context serialization, written out independently of
/// `keymgr_hsm::symmetric::context_aad`.
fn esdk_aad(context: &EncryptionContext) -> Vec<u8> {
    if context.is_empty() {
        return Vec::new();
    }
    let mut out = (context.len() as u16).to_be_bytes().to_vec();
    for (k, v) in context {
        out.extend((k.len() as u16).to_be_bytes());
        out.extend(k.as_bytes());
        out.extend((v.len() as u16).to_be_bytes());
        out.extend(v.as_bytes());
    }
    out
}

fn open_independently(cipher: &Aes256Gcm, ct: &[u8], context: &EncryptionContext) -> Vec<u8> {
    let (iv, body) = ct.split_at(12);
    let aad = esdk_aad(context);
    cipher
        .decrypt(
            &Nonce::from(<[u8; 12]>::try_from(iv).unwrap()),
            Payload {
                msg: body,
                aad: &aad,
            },
        )
        .expect("the HSM's ciphertext opens with aes-gcm and the known key")
}

fn contexts() -> Vec<EncryptionContext> {
    vec![
        EncryptionContext::new(),
        ctx(&[("tenant", "acme"), ("é-key", "välue ✓"), ("a", "")]),
    ]
}

#[tokio::test]
async fn aes_gcm_round_trips_both_ways_with_rustcrypto() {
    let Some(s) = setup().await else { return };
    for context in contexts() {
        for len in [0usize, 1, 32, 1000] {
            let plaintext: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
            let ct = s
                .backend
                .encrypt(&s.key, &plaintext, &context)
                .await
                .unwrap();
            assert_eq!(ct.len(), 12 + len + 16);
            assert_eq!(open_independently(&s.cipher, &ct, &context), plaintext);
            let back = s.backend.decrypt(&s.key, &ct, &context).await.unwrap();
            assert_eq!(back.expose(), plaintext);

            // Sealed outside the token, opened inside.
            let iv = [len as u8; 12];
            let aad = esdk_aad(&context);
            let body = s
                .cipher
                .encrypt(
                    &Nonce::from(iv),
                    Payload {
                        msg: &plaintext,
                        aad: &aad,
                    },
                )
                .unwrap();
            let foreign = [&iv[..], &body].concat();
            let back = s.backend.decrypt(&s.key, &foreign, &context).await.unwrap();
            assert_eq!(back.expose(), plaintext);
        }
    }
    let a = s.backend.encrypt(&s.key, b"same", &ctx(&[])).await.unwrap();
    let b = s.backend.encrypt(&s.key, b"same", &ctx(&[])).await.unwrap();
    assert_ne!(a[..12], b[..12], "a fresh IV per encryption");
}

#[tokio::test]
async fn generated_data_keys_unwrap_independently() {
    let Some(s) = setup().await else { return };
    let context = ctx(&[("purpose", "dek")]);
    let one = s.backend.generate_data_key(&s.key, &context).await.unwrap();
    let two = s.backend.generate_data_key(&s.key, &context).await.unwrap();
    assert_eq!(one.plaintext.len(), 32);
    assert_ne!(one.plaintext.expose(), two.plaintext.expose());
    assert_eq!(
        open_independently(&s.cipher, &one.ciphertext, &context),
        one.plaintext.expose()
    );
    assert!(!format!("{one:?}").contains(&hex::encode(one.plaintext.expose())));
}

#[tokio::test]
async fn tampering_and_wrong_context_are_integrity_errors() {
    let Some(s) = setup().await else { return };
    let context = ctx(&[("tenant", "acme")]);
    let ct = s.backend.encrypt(&s.key, &[9; 32], &context).await.unwrap();
    // IV, ciphertext body and tag, each flipped.
    for i in [0, 11, 12, 43, ct.len() - 1] {
        let mut bad = ct.clone();
        bad[i] ^= 0x01;
        let e = s.backend.decrypt(&s.key, &bad, &context).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Integrity, "byte {i}: {e}");
    }
    for other in [
        ctx(&[]),
        ctx(&[("tenant", "acmf")]),
        ctx(&[("tenant", "acme"), ("x", "")]),
    ] {
        let e = s.backend.decrypt(&s.key, &ct, &other).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Integrity, "{other:?}: {e}");
    }
    for short in [0usize, 12, 27] {
        let e = s
            .backend
            .decrypt(&s.key, &ct[..short], &context)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{short} bytes: {e}");
    }
    // Still usable afterwards (no operation left active in a pooled session).
    let back = s.backend.decrypt(&s.key, &ct, &context).await.unwrap();
    assert_eq!(back.expose(), [9; 32]);
}

/// Creates a secret key object on the token (this process's private copy).
fn create_secret(label: &str, key_type: KeyType, attrs: Vec<Attribute>) {
    let (_ctx, session) = common::raw_session();
    let mut template = vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(key_type),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Value(common::random32().to_vec()),
    ];
    template.extend(attrs);
    session.create_object(&template).unwrap();
}

#[tokio::test]
async fn keys_keymgr_must_not_use_are_refused_with_the_reason() {
    let Some(s) = setup().await else { return };
    let context = ctx(&[]);
    let e = s
        .backend
        .encrypt(&KeyRef::new(common::unique("absent")), b"x", &context)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");

    let usable = |extra: &[Attribute]| {
        let mut v = vec![
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
        ];
        for a in extra {
            v.retain(|b| b.attribute_type() != a.attribute_type());
            v.push(a.clone());
        }
        v
    };
    let cases = [
        (
            "extractable",
            KeyType::AES,
            usable(&[Attribute::Extractable(true)]),
            ErrorKind::AccessDenied,
        ),
        (
            "not-sensitive",
            KeyType::AES,
            usable(&[Attribute::Sensitive(false)]),
            ErrorKind::AccessDenied,
        ),
        (
            "no-encrypt",
            KeyType::AES,
            usable(&[Attribute::Encrypt(false)]),
            ErrorKind::AccessDenied,
        ),
        (
            "generic",
            KeyType::GENERIC_SECRET,
            usable(&[]),
            ErrorKind::Config,
        ),
    ];
    for (what, key_type, attrs, kind) in cases {
        let label = common::unique(what);
        create_secret(&label, key_type, attrs);
        let e = s
            .backend
            .encrypt(&KeyRef::new(label.clone()), b"x", &context)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), kind, "{what}: {e}");
        assert!(e.to_string().contains(&label), "{what}: {e}");
    }

    // CKA_ENCRYPT false still decrypts; CKA_DECRYPT false does not.
    let label = common::unique("decrypt-only");
    create_secret(&label, KeyType::AES, usable(&[Attribute::Encrypt(false)]));
    let e = s
        .backend
        .decrypt(&KeyRef::new(label), &[0; 40], &context)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Integrity, "{e}");
    let label = common::unique("encrypt-only");
    create_secret(&label, KeyType::AES, usable(&[Attribute::Decrypt(false)]));
    let key = KeyRef::new(label);
    let ct = s.backend.encrypt(&key, b"x", &context).await.unwrap();
    let e = s.backend.decrypt(&key, &ct, &context).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");

    // Two AES keys under one label: keymgr does not guess.
    let label = common::unique("twice");
    create_secret(&label, KeyType::AES, usable(&[]));
    create_secret(&label, KeyType::AES, usable(&[]));
    let e = s
        .backend
        .encrypt(&KeyRef::new(label), b"x", &context)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
}
