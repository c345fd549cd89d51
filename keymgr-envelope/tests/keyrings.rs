//! Keyrings against real components: AWS KMS on moto through keymgr-aws and a
//! `KeyManager`; the multi-keyring with its first provider down (unreachable, and with
//! its circuit breaker open); KEK rotation; re-wrapping without touching the body.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use keymgr_core::ErrorKind;
use keymgr_envelope::{
    Decryptor, Encryptor, EnvelopeError, MaterialsProvider, MultiKeyring, PROVIDER_ID_AWS_KMS,
};
use support::*;

#[tokio::test]
async fn aws_kms_round_trip_through_key_manager() {
    let Some(endpoint) = moto() else { return };
    let client = client(&endpoint);
    let arn = symmetric_key(&client).await;
    let keyring = multi(&[kms_keyring(manager(client.clone()), &arn)]);
    let ctx = context(&[("tenant", "acme")]);
    let data = vec![7u8; 100_000];
    let message = Encryptor::new(keyring.clone())
        .encrypt(&data, &ctx)
        .await
        .unwrap();
    let decrypted = Decryptor::new(keyring.clone())
        .decrypt(&message)
        .await
        .unwrap();
    assert_eq!(decrypted.plaintext, data);
    let edk = &decrypted.header.encrypted_data_keys[0];
    assert_eq!(edk.provider_id, PROVIDER_ID_AWS_KMS);
    assert_eq!(edk.provider_info, arn.as_bytes());
    // Independent check: KMS itself unwraps the entry under the message's context
    // and the data key commits to the message (decrypting succeeded with it).
    let out = client
        .decrypt()
        .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(edk.ciphertext.clone()))
        .set_encryption_context(Some(ctx.clone().into_iter().collect()))
        .send()
        .await
        .unwrap();
    assert_eq!(out.plaintext.unwrap().into_inner().len(), 32);
    assert_eq!(out.key_id.unwrap(), arn);
    // KMS binds the context: another context cannot unwrap the data key.
    let mut forged = message.clone();
    let at = forged.windows(4).position(|w| w == b"acme").unwrap();
    forged[at] = b'A';
    match Decryptor::new(keyring).decrypt(&forged).await.unwrap_err() {
        EnvelopeError::NoDecryptableKey { attempts, .. } => assert_eq!(attempts.len(), 1),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn key_arn_required() {
    let backend = down_backend();
    for bad in [
        "alias/envelope",
        "1234abcd-12ab-34cd-56ef-1234567890ab",
        "arn:aws:kms:us-east-1:1:alias/x",
    ] {
        let e = keymgr_envelope::AwsKmsKeyring::new(backend.clone(), bad).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad}");
    }
}

#[tokio::test]
async fn decrypts_with_the_first_provider_down() {
    let Some(endpoint) = moto() else { return };
    let client = client(&endpoint);
    let arn = symmetric_key(&client).await;
    let raw = raw_keyring("backup", "kek-1", &[3; 32]);
    // Written while both providers are up: the data key is wrapped under both.
    let up = multi(&[kms_keyring(manager(client), &arn), raw.clone()]);
    let ctx = context(&[("k", "v")]);
    let message = Encryptor::new(up)
        .encrypt(b"still readable", &ctx)
        .await
        .unwrap();

    // Read with KMS down, listed first.
    let down = multi(&[kms_keyring(down_backend(), &arn), raw]);
    let decryptor = Decryptor::new(down.clone());
    for _ in 0..2 {
        let d = decryptor.decrypt(&message).await.unwrap();
        assert_eq!(d.plaintext, b"still readable");
    }
    // The breaker is open now: KMS is skipped at once, the backup still decrypts.
    let started = Instant::now();
    let d = decryptor.decrypt(&message).await.unwrap();
    assert_eq!(d.plaintext, b"still readable");
    assert!(started.elapsed() < Duration::from_secs(2));
    // With no backup, the failure says why, per attempt.
    let only_down = multi(&[kms_keyring(down_backend(), &arn)]);
    match Decryptor::new(only_down)
        .decrypt(&message)
        .await
        .unwrap_err()
    {
        e @ EnvelopeError::NoDecryptableKey { .. } => {
            assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        }
        other => panic!("{other:?}"),
    }
    // Encrypting needs every wrapping keyring: a down one is an error naming it.
    match Encryptor::new(down).encrypt(b"x", &ctx).await.unwrap_err() {
        EnvelopeError::Keyring { keyring, source } => {
            assert!(keyring.starts_with("aws-kms:"), "{keyring}");
            assert!(source.is_retryable(), "{source}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn kek_rotation_new_messages_use_the_new_kek() {
    let old = raw_keyring("ns", "kek-v1", &[1; 32]);
    let new = raw_keyring("ns", "kek-v2", &[2; 32]);
    let ctx = context(&[("k", "v")]);
    let before = Encryptor::new(multi(std::slice::from_ref(&old)))
        .encrypt(b"old", &ctx)
        .await
        .unwrap();
    let rotated = Arc::new(MultiKeyring::new(new.clone()).decrypt_with(old));
    let after = Encryptor::new(rotated.clone())
        .encrypt(b"new", &ctx)
        .await
        .unwrap();
    let d = Decryptor::new(rotated.clone());
    assert_eq!(d.decrypt(&before).await.unwrap().plaintext, b"old");
    let decrypted = d.decrypt(&after).await.unwrap();
    assert_eq!(decrypted.plaintext, b"new");
    let names: Vec<_> = decrypted
        .header
        .encrypted_data_keys
        .iter()
        .map(|e| e.provider_info[..6].to_vec())
        .collect();
    assert_eq!(names, vec![b"kek-v2".to_vec()]);
    // The new KEK alone reads new messages, not old ones.
    let only_new: Arc<dyn MaterialsProvider> = multi(&[new]);
    assert!(
        Decryptor::new(only_new.clone())
            .decrypt(&after)
            .await
            .is_ok()
    );
    assert!(Decryptor::new(only_new).decrypt(&before).await.is_err());
}

#[tokio::test]
async fn rewrap_keeps_the_body() {
    let Some(endpoint) = moto() else { return };
    let client = client(&endpoint);
    let arn = symmetric_key(&client).await;
    let old = multi(&[raw_keyring("ns", "kek-v1", &[1; 32])]);
    let new_kms = kms_keyring(manager(client), &arn);
    let new_raw = raw_keyring("ns", "kek-v2", &[2; 32]);
    let new = MultiKeyring::new(new_kms.clone()).wrap_with(new_raw.clone());
    let data = vec![9u8; 300_000];
    let ctx = context(&[("k", "v")]);
    let message = Encryptor::new(old.clone())
        .encrypt(&data, &ctx)
        .await
        .unwrap();
    let mut rewrapped = Vec::new();
    let (header, body_bytes) = Decryptor::new(old.clone())
        .rewrap(&mut &message[..], &mut rewrapped, &new)
        .await
        .unwrap();
    assert_eq!(header.encrypted_data_keys.len(), 2);
    // The body is byte for byte the same.
    let body = body_bytes as usize;
    assert_eq!(
        &rewrapped[rewrapped.len() - body..],
        &message[message.len() - body..]
    );
    for keyring in [new_kms, new_raw] {
        let d = Decryptor::new(multi(&[keyring]))
            .decrypt(&rewrapped)
            .await
            .unwrap();
        assert_eq!(d.plaintext, data);
        assert_eq!(d.header.message_id, header.message_id);
    }
    assert!(matches!(
        Decryptor::new(old).decrypt(&rewrapped).await.unwrap_err(),
        EnvelopeError::NoDecryptableKey { .. }
    ));
}
