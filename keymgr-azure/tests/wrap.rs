//! Data keys wrapped by a Key Vault RSA key (Wrap Key / Unwrap Key, `RSA-OAEP-256`):
//! through the backend and keymgr-envelope's Azure keyring, every wrapped key unwrapped
//! independently with aws-lc-rs and the stand-in's private key.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use async_trait::async_trait;
use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, PrivateDecryptingKey};
use keymgr_azure::WrappedKey;
use keymgr_core::{EncryptionContext, Error, ErrorKind, KeyBackend, KeyManager, KeyRef};
use keymgr_envelope::{
    AzureKvKeyring, DataKey, Decryptor, EncryptedDataKey, Encryptor, EnvelopeError, Keyring,
    MultiKeyring, PROVIDER_ID_AZURE_KV,
};
use support::{Fault, StandIn, fixture};

/// RFC 8017 RSAES-OAEP (SHA-256, MGF1-SHA-256) with aws-lc-rs, not the stand-in's code.
fn unwrap_independently(stand_in: &StandIn, name: &str, wrapped: &[u8]) -> Vec<u8> {
    let w = WrappedKey::from_bytes(wrapped).unwrap();
    let der = stand_in.rsa_private_key_pkcs8(name, &w.version);
    let key =
        OaepPrivateDecryptingKey::new(PrivateDecryptingKey::from_pkcs8(&der).unwrap()).unwrap();
    let mut out = vec![0u8; key.min_output_size()];
    key.decrypt(&OAEP_SHA256_MGF1SHA256, &w.ciphertext, &mut out, None)
        .unwrap()
        .to_vec()
}

fn context(pairs: &[(&str, &str)]) -> EncryptionContext {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[tokio::test]
async fn data_keys_round_trip_and_unwrap_independently() {
    let (stand_in, b) = fixture().await;
    let v1 = stand_in.create_rsa("kek");
    let manager: Arc<dyn KeyBackend> = Arc::new(KeyManager::builder(b.clone()).build());
    let kek = KeyRef::new("kek");
    let empty = EncryptionContext::new();
    let dk = manager.generate_data_key(&kek, &empty).await.unwrap();
    assert_eq!(dk.plaintext.len(), 32);
    let w = WrappedKey::from_bytes(&dk.ciphertext).unwrap();
    assert_eq!(w.version, v1);
    assert_eq!(w.ciphertext.len(), 256, "2048-bit modulus");
    assert_eq!(
        unwrap_independently(&stand_in, "kek", &dk.ciphertext),
        dk.plaintext.expose()
    );
    let back = manager.decrypt(&kek, &dk.ciphertext, &empty).await.unwrap();
    assert_eq!(back.expose(), dk.plaintext.expose());
    // encrypt wraps caller-chosen bytes the same way.
    let c = manager
        .encrypt(&kek, b"seventeen bytes!!", &empty)
        .await
        .unwrap();
    assert_eq!(
        unwrap_independently(&stand_in, "kek", &c),
        b"seventeen bytes!!"
    );
    assert_eq!(stand_in.calls("wrapKey"), 2);
    assert_eq!(stand_in.calls("unwrapKey"), 1);
}

#[tokio::test]
async fn rotation_wraps_with_the_newest_version_and_old_keys_still_unwrap() {
    let (stand_in, b) = fixture().await;
    let v1 = stand_in.create_rsa("kek");
    let kek = KeyRef::new("kek");
    let empty = EncryptionContext::new();
    let old = b.generate_data_key(&kek, &empty).await.unwrap();
    let v2 = stand_in.create_rsa("kek");
    let new = b.generate_data_key(&kek, &empty).await.unwrap();
    assert_eq!(WrappedKey::from_bytes(&old.ciphertext).unwrap().version, v1);
    assert_eq!(WrappedKey::from_bytes(&new.ciphertext).unwrap().version, v2);
    for dk in [&old, &new] {
        let back = b.decrypt(&kek, &dk.ciphertext, &empty).await.unwrap();
        assert_eq!(back.expose(), dk.plaintext.expose());
        assert_eq!(
            unwrap_independently(&stand_in, "kek", &dk.ciphertext),
            dk.plaintext.expose()
        );
    }
    // A pinned version wraps with that version; it refuses keys wrapped by another.
    let pinned = KeyRef::versioned("kek", v1.clone());
    let dk = b.generate_data_key(&pinned, &empty).await.unwrap();
    assert_eq!(WrappedKey::from_bytes(&dk.ciphertext).unwrap().version, v1);
    let e = b
        .decrypt(&pinned, &new.ciphertext, &empty)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::InvalidInput { field, .. } if field == "ciphertext"),
        "{e:?}"
    );
    // The old version disabled (never deleted): its keys no longer unwrap, with Key
    // Vault's reason kept.
    stand_in.set_enabled("kek", &v1, false);
    let e = b.decrypt(&kek, &old.ciphertext, &empty).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e:?}");
    assert_eq!(e.provider_code(), Some("Forbidden"));
    assert_eq!(e.operation(), Some("unwrapKey"));
}

#[tokio::test]
async fn refusals_name_what_is_wrong() {
    let (stand_in, b) = fixture().await;
    stand_in.create_rsa("kek");
    let kek = KeyRef::new("kek");
    let empty = EncryptionContext::new();
    // RSA-OAEP binds no context: refused, never silently dropped.
    let ctx = context(&[("tenant", "acme")]);
    for e in [
        b.encrypt(&kek, &[1; 32], &ctx).await.unwrap_err(),
        b.generate_data_key(&kek, &ctx).await.unwrap_err(),
        b.decrypt(&kek, &[1; 40], &ctx).await.unwrap_err(),
    ] {
        assert!(
            matches!(&e, Error::InvalidInput { field, .. } if field == "encryption context"),
            "{e:?}"
        );
    }
    assert_eq!(stand_in.calls("wrapKey") + stand_in.calls("unwrapKey"), 0);
    let e = b.encrypt(&kek, &[], &empty).await.unwrap_err();
    assert!(
        matches!(&e, Error::InvalidInput { field, .. } if field == "plaintext"),
        "{e:?}"
    );
    // Not a wrapped key: refused before any call.
    let e = b.decrypt(&kek, b"garbage", &empty).await.unwrap_err();
    assert!(
        matches!(&e, Error::InvalidInput { field, .. } if field == "ciphertext"),
        "{e:?}"
    );
    // A tampered RSA ciphertext: Key Vault's BadParameter, typed.
    let dk = b.generate_data_key(&kek, &empty).await.unwrap();
    let mut tampered = dk.ciphertext.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let e = b.decrypt(&kek, &tampered, &empty).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e:?}");
    assert_eq!(e.provider_code(), Some("BadParameter"));
    // An unknown key: NotFound with Key Vault's code.
    let e = b
        .generate_data_key(&KeyRef::new("no-such-kek"), &empty)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e:?}");
    assert_eq!(e.provider_code(), Some("KeyNotFound"));
    // Throttling is retryable; a malformed answer is an integrity error.
    stand_in.inject("wrapKey", Fault::Throttled);
    let e = b.encrypt(&kek, &[1; 32], &empty).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Throttled);
    assert!(e.is_retryable());
    stand_in.inject("unwrapKey", Fault::Malformed);
    let e = b.decrypt(&kek, &dk.ciphertext, &empty).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Integrity, "{e:?}");
}

/// A keyring that hands out one data key, for decrypting with an independently
/// unwrapped key.
#[derive(Debug)]
struct Fixed(DataKey);

#[async_trait]
impl Keyring for Fixed {
    fn name(&self) -> String {
        "fixed".into()
    }
    async fn wrap(
        &self,
        _: &DataKey,
        _: &EncryptionContext,
    ) -> keymgr_core::Result<EncryptedDataKey> {
        unreachable!("decrypt only")
    }
    fn matches(&self, edk: &EncryptedDataKey) -> bool {
        edk.provider_id == PROVIDER_ID_AZURE_KV
    }
    async fn unwrap(
        &self,
        _: &EncryptedDataKey,
        _: &EncryptionContext,
    ) -> keymgr_core::Result<DataKey> {
        Ok(self.0.clone())
    }
}

#[tokio::test]
async fn envelope_messages_through_the_azure_keyring() {
    let (stand_in, b) = fixture().await;
    stand_in.create_rsa("kek");
    let manager: Arc<dyn KeyBackend> = Arc::new(KeyManager::builder(b.clone()).build());
    let keyring: Arc<dyn Keyring> = Arc::new(AzureKvKeyring::new(manager, "kek").unwrap());
    let materials = Arc::new(MultiKeyring::new(keyring));
    let ctx = context(&[("tenant", "acme"), ("purpose", "settlement")]);
    let data = vec![9u8; 70_000];
    let message = Encryptor::new(materials.clone())
        .encrypt(&data, &ctx)
        .await
        .unwrap();
    let decrypted = Decryptor::new(materials.clone())
        .decrypt(&message)
        .await
        .unwrap();
    assert_eq!(decrypted.plaintext, data);
    let edk = &decrypted.header.encrypted_data_keys[0];
    assert_eq!(edk.provider_id, PROVIDER_ID_AZURE_KV);
    assert_eq!(edk.provider_info, b"kek");
    // The entry unwrapped by aws-lc-rs decrypts the message: it is the message's key.
    let key = DataKey::from_slice(&unwrap_independently(&stand_in, "kek", &edk.ciphertext))
        .expect("32 bytes");
    let fixed = Arc::new(MultiKeyring::new(Arc::new(Fixed(key))));
    let again = Decryptor::new(fixed).decrypt(&message).await.unwrap();
    assert_eq!(again.plaintext, data);
    // A wrong-length unwrap never becomes a data key.
    stand_in.inject("unwrapKey", Fault::WrongLength);
    match Decryptor::new(materials)
        .decrypt(&message)
        .await
        .unwrap_err()
    {
        EnvelopeError::NoDecryptableKey { attempts, .. } => {
            assert_eq!(attempts.len(), 1);
            assert_eq!(attempts[0].error.kind(), ErrorKind::Integrity);
        }
        other => panic!("{other:?}"),
    }
    // Key names with a version or bad characters are refused.
    for bad in ["", "kek/0123", "kek key"] {
        let backend: Arc<dyn KeyBackend> = b.clone();
        assert!(AzureKvKeyring::new(backend, bad).is_err(), "{bad:?}");
    }
}
