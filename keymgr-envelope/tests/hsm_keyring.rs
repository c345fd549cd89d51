//! The HSM AES keyring against SoftHSM2 (`CKM_AES_GCM` through keymgr-hsm and a
//! `KeyManager`): its entries are raw AES keyring entries, so the Python AWS Encryption
//! SDK's `RawAESKeyring` holding the provisioned test key's value decrypts keymgr's
//! messages and keymgr decrypts the SDK's; with AWS KMS on moto in one multi-keyring,
//! either provider down leaves the message readable through the other.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use keymgr_core::{
    AuditEvent, AuditRecord, AuditSink, EncryptionContext, Error, ErrorKind, HealthReport,
    KeyBackend, KeyManager, KeyRef, PublicKey, SignPayload, VerifiedSignature,
};
use keymgr_envelope::{Decryptor, Encryptor, EnvelopeError, HsmAesKeyring, Keyring};
use keymgr_hsm::HsmBackend;
use support::*;

const NAMESPACE: &str = "keymgr-hsm";

/// An audit sink that keeps every record.
#[derive(Debug, Default)]
struct Recorded(Mutex<Vec<AuditRecord>>);

#[async_trait]
impl AuditSink for Recorded {
    async fn record(&self, record: AuditRecord) -> keymgr_core::Result<()> {
        self.0.lock().unwrap().push(record);
        Ok(())
    }
}

impl Recorded {
    fn count(&self, event: AuditEvent) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.event == event)
            .count()
    }
}

struct Hsm {
    keyring: Arc<dyn Keyring>,
    label: String,
    key: [u8; 32],
    audit: Arc<Recorded>,
}

/// The provisioned SoftHSM2 token's test AES key behind an audited `KeyManager`, or
/// `None` (test skipped) outside `cargo xtask test`.
async fn hsm() -> Option<Hsm> {
    let (Ok(label), Ok(key)) = (
        std::env::var("KEYMGR_TEST_HSM_AES_LABEL"),
        std::env::var("KEYMGR_TEST_HSM_AES_KEY"),
    ) else {
        keymgr_testkit::skip_or_fail(
            "the SoftHSM2 test AES key (KEYMGR_TEST_HSM_AES_LABEL)",
            "`cargo xtask test` provisions it into the SoftHSM2 test token",
        );
        return None;
    };
    let backend: Arc<dyn KeyBackend> = Arc::new(HsmBackend::from_env().await.unwrap());
    let audit = Arc::new(Recorded::default());
    let manager: Arc<dyn KeyBackend> =
        Arc::new(KeyManager::builder(backend).audit(audit.clone()).build());
    Some(Hsm {
        keyring: Arc::new(HsmAesKeyring::new(manager, NAMESPACE, &label).unwrap()),
        key: hex::decode(key).unwrap().try_into().unwrap(),
        label,
        audit,
    })
}

fn ctx() -> EncryptionContext {
    context(&[("tenant", "acme"), ("é-key", "välue ✓")])
}

fn plaintext(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 13 % 251) as u8).collect()
}

#[tokio::test]
async fn hsm_entries_are_raw_aes_entries_and_every_call_is_audited() {
    let Some(h) = hsm().await else { return };
    let hsm = multi(std::slice::from_ref(&h.keyring));
    // The same key value in process memory: an implementation independent of the HSM.
    let raw = multi(&[raw_keyring(NAMESPACE, &h.label, &h.key)]);
    let data = plaintext(10_000);
    let message = Encryptor::new(hsm.clone())
        .frame_length(4096)
        .unwrap()
        .encrypt(&data, &ctx())
        .await
        .unwrap();
    let edk = &Decryptor::new(raw.clone())
        .decrypt(&message)
        .await
        .unwrap()
        .header
        .encrypted_data_keys[0];
    assert_eq!(edk.provider_id, NAMESPACE);
    assert_eq!(&edk.provider_info[..h.label.len()], h.label.as_bytes());
    assert_eq!(edk.ciphertext.len(), 48);
    let back = Decryptor::new(hsm.clone()).decrypt(&message).await.unwrap();
    assert_eq!(back.plaintext, data);
    // And the other way: wrapped in memory, unwrapped in the HSM.
    let theirs = Encryptor::new(raw).encrypt(&data, &ctx()).await.unwrap();
    let back = Decryptor::new(hsm.clone()).decrypt(&theirs).await.unwrap();
    assert_eq!(back.plaintext, data);
    assert_eq!(h.audit.count(AuditEvent::GenerateDataKeySuccess), 1);
    assert_eq!(h.audit.count(AuditEvent::DecryptSuccess), 2);

    // A tampered wrapped key is the HSM's integrity error, reported per attempt.
    let mut tampered = theirs.clone();
    let at = tampered
        .windows(h.label.len())
        .position(|w| w == h.label.as_bytes())
        .unwrap();
    // provider info = label ‖ 8 ‖ IV (12), then ciphertext length (2), ciphertext.
    tampered[at + h.label.len() + 8 + 12 + 2 + 5] ^= 1;
    match Decryptor::new(hsm).decrypt(&tampered).await.unwrap_err() {
        EnvelopeError::NoDecryptableKey { attempts, .. } => {
            assert_eq!(attempts.len(), 1);
            assert_eq!(
                attempts[0].error.kind(),
                ErrorKind::Integrity,
                "{:?}",
                attempts[0]
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.audit.count(AuditEvent::DecryptFailure), 1);
}

#[tokio::test]
async fn python_raw_aes_keyring_reads_hsm_messages_and_hsm_reads_python() {
    let Some(h) = hsm().await else { return };
    let Some(esdk) = PythonEsdk::find() else {
        return;
    };
    let keyring = multi(std::slice::from_ref(&h.keyring));
    let python_key = raw_aes_keyring_arg(NAMESPACE, &h.label, &h.key);
    for (len, frame) in [(0usize, 4096u32), (3000, 1024), (70_000, 65_536)] {
        let data = plaintext(len);
        let message = Encryptor::new(keyring.clone())
            .frame_length(frame)
            .unwrap()
            .encrypt(&data, &ctx())
            .await
            .unwrap();
        let out = esdk.run("decrypt", &python_key, &message).await;
        assert!(out.ok, "len {len}: {}", out.stderr);
        assert_eq!(out.stdout, data, "len {len}");

        let mut args = python_key.clone();
        args.extend(context_arg(&ctx()));
        args.extend(["--frame-length".into(), frame.to_string()]);
        let out = esdk.run("encrypt", &args, &data).await;
        assert!(out.ok, "len {len}: {}", out.stderr);
        let back = Decryptor::new(keyring.clone())
            .decrypt(&out.stdout)
            .await
            .unwrap();
        assert_eq!(back.plaintext, data, "len {len}");
        assert_eq!(back.header.context, ctx());
    }
}

/// A provider that is down: every call fails as unavailable.
#[derive(Debug)]
struct Down;

#[async_trait]
impl KeyBackend for Down {
    fn name(&self) -> &str {
        "hsm"
    }
    async fn public_key(&self, _: &KeyRef) -> keymgr_core::Result<PublicKey> {
        Err(Error::unavailable("hsm", "token not present", None))
    }
    async fn sign(&self, _: &KeyRef, _: &SignPayload) -> keymgr_core::Result<VerifiedSignature> {
        Err(Error::unavailable("hsm", "token not present", None))
    }
    async fn health(&self) -> HealthReport {
        HealthReport::unhealthy("hsm", std::time::Duration::ZERO, "token not present")
    }
    async fn decrypt(
        &self,
        _: &KeyRef,
        _: &[u8],
        _: &EncryptionContext,
    ) -> keymgr_core::Result<keymgr_core::SecretBytes> {
        Err(Error::unavailable("hsm", "token not present", None))
    }
}

#[tokio::test]
async fn hsm_and_kms_multi_keyring_survives_either_provider_down() {
    let Some(h) = hsm().await else { return };
    let Some(endpoint) = moto() else { return };
    let client = client(&endpoint);
    let arn = symmetric_key(&client).await;
    let kms = kms_keyring(manager(client), &arn);
    let data = plaintext(5000);
    let message = Encryptor::new(multi(&[kms.clone(), h.keyring.clone()]))
        .encrypt(&data, &ctx())
        .await
        .unwrap();

    let kms_down = kms_keyring(down_backend(), &arn);
    let hsm_down: Arc<dyn Keyring> =
        Arc::new(HsmAesKeyring::new(Arc::new(Down), NAMESPACE, &h.label).unwrap());
    for (order, keyrings) in [
        ("KMS down, then HSM", [kms_down.clone(), h.keyring.clone()]),
        ("HSM down, then KMS", [hsm_down.clone(), kms.clone()]),
    ] {
        let decrypted = Decryptor::new(multi(&keyrings))
            .decrypt(&message)
            .await
            .unwrap_or_else(|e| panic!("{order}: {e:?}"));
        assert_eq!(decrypted.plaintext, data, "{order}");
        assert_eq!(decrypted.header.encrypted_data_keys.len(), 2);
    }
    match Decryptor::new(multi(&[kms_down, hsm_down]))
        .decrypt(&message)
        .await
        .unwrap_err()
    {
        EnvelopeError::NoDecryptableKey { attempts, .. } => {
            let kinds: Vec<_> = attempts.iter().map(|a| a.error.kind()).collect();
            assert_eq!(kinds.len(), 2, "{attempts:?}");
            assert!(
                kinds.iter().all(|k| *k == ErrorKind::Unavailable),
                "{kinds:?}"
            );
        }
        other => panic!("{other:?}"),
    }
}
