//! Symmetric keys on moto: data keys and encrypt/decrypt with an encryption context,
//! audited through a KeyManager.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use aws_sdk_kms::types::KeySpec;
use aws_sdk_kms::types::KeyUsageType;
use keymgr_core::EncryptionContext;
use keymgr_core::ErrorKind;
use keymgr_core::KeyBackend;
use keymgr_core::KeyManager;
use keymgr_core::KeyRef;
use sha2::Digest as _;
use std::sync::Arc;
use support::*;

/// Keeps every audit record in memory (the file log's own tests cover the disk).
#[derive(Debug, Default)]
struct Recorded(std::sync::Mutex<Vec<keymgr_core::AuditRecord>>);

#[async_trait::async_trait]
impl keymgr_core::AuditSink for Recorded {
    async fn record(&self, r: keymgr_core::AuditRecord) -> keymgr_core::Result<()> {
        self.0.lock().unwrap().push(r);
        Ok(())
    }
}

#[tokio::test]
async fn data_keys_round_trip_with_encryption_context() {
    let Some(endpoint) = moto() else { return };
    let client = client(&endpoint);
    let kek = create_key(
        &client,
        KeySpec::SymmetricDefault,
        KeyUsageType::EncryptDecrypt,
        "kek",
        &[],
    )
    .await;
    let b = backend(&client, &[("kek", &kek.alias)]);
    let key = KeyRef::new("kek");
    let ctx: EncryptionContext = [
        ("tenant".to_owned(), "acme".to_owned()),
        ("purpose".to_owned(), "claims".to_owned()),
    ]
    .into_iter()
    .collect();

    let dk = b.generate_data_key(&key, &ctx).await.unwrap();
    assert_eq!(dk.plaintext.len(), 32);
    assert!(!dk.ciphertext.is_empty());
    let debug = format!("{dk:?}");
    let hex: String = dk
        .plaintext
        .expose()
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect();
    assert!(
        !debug.contains(&hex) && debug.contains("REDACTED"),
        "{debug}"
    );
    let unwrapped = b.decrypt(&key, &dk.ciphertext, &ctx).await.unwrap();
    assert_eq!(unwrapped.expose(), dk.plaintext.expose());
    // Also through an explicit version (the alias's current key id).
    let unwrapped = b
        .decrypt(
            &KeyRef::versioned("kek", kek.key_id.as_str()),
            &dk.ciphertext,
            &ctx,
        )
        .await
        .unwrap();
    assert_eq!(unwrapped.expose(), dk.plaintext.expose());

    let mut wrong = ctx.clone();
    wrong.insert("tenant".into(), "globex".into());
    for bad in [wrong, EncryptionContext::new()] {
        let e = b
            .decrypt(&key, &dk.ciphertext, &bad)
            .await
            .expect_err("wrong context");
        assert_eq!(e.kind(), ErrorKind::Integrity, "{e}");
        assert!(
            e.to_string().contains("kek") && e.to_string().contains("InvalidCiphertextException"),
            "{e}"
        );
        assert!(!e.is_retryable());
    }

    let ciphertext = b.encrypt(&key, b"channel secret", &ctx).await.unwrap();
    assert!(!ciphertext.windows(14).any(|w| w == b"channel secret"));
    assert_eq!(
        b.decrypt(&key, &ciphertext, &ctx).await.unwrap().expose(),
        b"channel secret"
    );
    let e = b
        .encrypt(&key, &vec![0u8; 4097], &ctx)
        .await
        .expect_err("too large");
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");

    // A ciphertext made by a key that is not a version of `kek` is refused.
    let other = create_key(
        &client,
        KeySpec::SymmetricDefault,
        KeyUsageType::EncryptDecrypt,
        "other-kek",
        &[],
    )
    .await;
    let b2 = backend(&client, &[("kek", &kek.alias), ("other", &other.alias)]);
    let foreign = b2.encrypt(&KeyRef::new("other"), b"x", &ctx).await.unwrap();
    let e = b2
        .decrypt(&key, &foreign, &ctx)
        .await
        .expect_err("foreign ciphertext");
    assert_eq!(e.kind(), ErrorKind::Integrity, "{e}");

    // When checking which key made a ciphertext fails (here: DescribeKey cannot reach
    // KMS), the failure keeps its kind and stays retryable; it is not an integrity error.
    let flaky = backend(
        &unreachable_client(&endpoint, &["DescribeKey"]),
        &[("kek", &kek.alias)],
    );
    let e = flaky
        .decrypt(&key, &ciphertext, &ctx)
        .await
        .expect_err("DescribeKey unreachable");
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.is_retryable(), "{e}");
    assert!(e.to_string().contains("DescribeKey"), "{e}");

    // Signing keys do not encrypt.
    let signer = secp256k1_key(&client, "not-kek").await;
    let e = b2
        .encrypt(&KeyRef::new(signer.alias.as_str()), b"x", &ctx)
        .await
        .expect_err("signing key");
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains(&signer.alias), "{e}");
}

/// Symmetric operations through a KeyManager are audited like signatures: a request and
/// an outcome each, with the encryption context and never the plaintext.
#[tokio::test]
async fn key_manager_audits_symmetric_operations() {
    let Some(endpoint) = moto() else { return };
    let client = client(&endpoint);
    let kek = create_key(
        &client,
        KeySpec::SymmetricDefault,
        KeyUsageType::EncryptDecrypt,
        "audited-kek",
        &[],
    )
    .await;
    let sink = Arc::new(Recorded::default());
    let manager = KeyManager::builder(Arc::new(backend(&client, &[("kek", &kek.alias)])))
        .audit(sink.clone())
        .actor("payments")
        .build();
    let key = KeyRef::new("kek");
    let ctx: EncryptionContext = [("tenant".to_owned(), "acme".to_owned())].into();
    let secret = b"channel secret 42";
    let ciphertext = manager.encrypt(&key, secret, &ctx).await.unwrap();
    let plain = manager.decrypt(&key, &ciphertext, &ctx).await.unwrap();
    assert_eq!(plain.expose(), secret);
    let dk = manager.generate_data_key(&key, &ctx).await.unwrap();
    assert!(
        manager
            .decrypt(&key, &ciphertext, &EncryptionContext::new())
            .await
            .is_err()
    );

    let to_hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let records = sink.0.lock().unwrap().clone();
    let events: Vec<&str> = records.iter().map(|r| r.event.as_str()).collect();
    assert_eq!(
        events,
        [
            "ENCRYPT_REQUEST",
            "ENCRYPT_SUCCESS",
            "DECRYPT_REQUEST",
            "DECRYPT_SUCCESS",
            "GENERATE_DATA_KEY_REQUEST",
            "GENERATE_DATA_KEY_SUCCESS",
            "DECRYPT_REQUEST",
            "DECRYPT_FAILURE",
        ]
    );
    assert!(
        records
            .iter()
            .all(|r| r.actor.as_deref() == Some("payments"))
    );
    assert_eq!(records[0].details["context.tenant"], "acme");
    assert_eq!(
        records[0].details["plaintext_len"],
        secret.len().to_string()
    );
    let ct_hash = to_hex(&sha2::Sha256::digest(&ciphertext));
    assert_eq!(records[2].payload_sha256.as_deref(), Some(ct_hash.as_str()));
    assert_eq!(records[7].error_kind, Some(ErrorKind::Integrity));
    let all = format!("{records:?}");
    assert!(!all.contains(&to_hex(secret)) && !all.contains("channel secret"));
    assert!(!all.contains(&to_hex(dk.plaintext.expose())));
}
