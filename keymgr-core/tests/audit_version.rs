//! Every signature's audit entries name the key version that signed (as the provider
//! reports it) and carry the adapter's typed context.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
use keymgr_core::{
    AuditEvent, AuditRecord, AuditSink, ErrorKind, KeyAlgorithm, KeyBackend, KeyManager, KeyRef,
    PublicKey, SignContext, SignPayload, VerifiedSignature,
};
use keymgr_env::EnvBackend;
use keymgr_testkit::memory::MemoryBackend;

#[derive(Debug, Default)]
struct Records(Mutex<Vec<AuditRecord>>);

#[async_trait]
impl AuditSink for Records {
    async fn record(&self, record: AuditRecord) -> keymgr_core::Result<()> {
        self.0.lock().unwrap().push(record);
        Ok(())
    }
}

impl Records {
    fn last(&self, event: AuditEvent) -> AuditRecord {
        self.0
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|r| r.event == event)
            .cloned()
            .unwrap()
    }
}

fn verify(public_key: &PublicKey, prehash: &[u8; 32], sig: &keymgr_core::VerifiedSignature) {
    let PublicKey::Secp256k1(vk) = public_key else {
        panic!("secp256k1 expected")
    };
    vk.verify_prehash(prehash, sig.as_secp256k1().unwrap().as_k256())
        .unwrap();
}

#[tokio::test]
async fn success_entries_name_the_version_that_signed() {
    let backend = Arc::new(MemoryBackend::with_key("k", KeyAlgorithm::Secp256k1));
    let records = Arc::new(Records::default());
    let manager = KeyManager::recommended(backend.clone())
        .audit(records.clone())
        .actor("svc-a")
        .build();
    let key = KeyRef::new("k");
    let h = [3; 32];

    let sig = manager.sign(&key, &SignPayload::Prehash(h)).await.unwrap();
    assert_eq!(sig.key_version(), Some("1"));
    verify(&backend.public_key(&key).await.unwrap(), &h, &sig);
    let success = records.last(AuditEvent::SignSuccess);
    assert_eq!(success.key_version.as_deref(), Some("1"));
    assert_eq!(success.actor.as_deref(), Some("svc-a"));
    // The request names what was asked (unversioned): the version is not known yet.
    assert_eq!(records.last(AuditEvent::SignRequest).key_version, None);

    manager.backend().create_version("k").await.unwrap();
    let sig = manager.sign(&key, &SignPayload::Prehash(h)).await.unwrap();
    verify(&backend.public_key(&key).await.unwrap(), &h, &sig);
    assert_eq!(
        records.last(AuditEvent::SignSuccess).key_version.as_deref(),
        Some("2")
    );

    // A pinned older version is what signs, and what is recorded.
    let old = KeyRef::versioned("k", "1");
    let sig = manager.sign(&old, &SignPayload::Prehash(h)).await.unwrap();
    verify(&backend.public_key(&old).await.unwrap(), &h, &sig);
    assert_eq!(
        records.last(AuditEvent::SignSuccess).key_version.as_deref(),
        Some("1")
    );
}

#[tokio::test]
async fn context_reaches_both_entries_through_a_dyn_backend() {
    let env = EnvBackend::new()
        .with_secp256k1_hex(
            "evm",
            "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318",
        )
        .unwrap();
    let records = Arc::new(Records::default());
    let manager: Arc<dyn KeyBackend> = Arc::new(
        KeyManager::recommended(Arc::new(env))
            .audit(records.clone())
            .build(),
    );
    let context = SignContext::EvmAuthorization {
        chain_id: "8453".into(),
        address: "0x000000000000000000000000000000000000dEaD".into(),
        nonce: 4,
    };
    let key = KeyRef::new("evm");
    let h = [5; 32];
    let sig = manager
        .sign_with_context(&key, &SignPayload::Prehash(h), &context)
        .await
        .unwrap();
    verify(&manager.public_key(&key).await.unwrap(), &h, &sig);
    let request = records.last(AuditEvent::SignRequest);
    let success = records.last(AuditEvent::SignSuccess);
    assert_eq!(request.context.as_ref(), Some(&context));
    assert_eq!(success.context.as_ref(), Some(&context));
    assert_eq!(success.key_version.as_deref(), Some("1"));

    // A plain sign records what it is, a raw digest; a provider ignores a context
    // (nothing to audit there).
    manager.sign(&key, &SignPayload::Prehash(h)).await.unwrap();
    let raw = SignContext::RawDigest { chain_id: None };
    assert_eq!(
        records.last(AuditEvent::SignRequest).context,
        Some(raw.clone())
    );
    assert_eq!(records.last(AuditEvent::SignSuccess).context, Some(raw));
    let provider = MemoryBackend::with_key("k", KeyAlgorithm::Secp256k1);
    let sig = provider
        .sign_with_context(&KeyRef::new("k"), &SignPayload::Prehash(h), &context)
        .await
        .unwrap();
    verify(
        &provider.public_key(&KeyRef::new("k")).await.unwrap(),
        &h,
        &sig,
    );
}

/// The success entry carries what the outcome hook computes from the signature (e.g. a
/// signed transaction's hash); the request and a failure carry the request's context;
/// a raw message signed without a context says so.
#[tokio::test]
async fn outcome_context_completes_only_the_success_entry() {
    let backend = Arc::new(MemoryBackend::with_key("k", KeyAlgorithm::Secp256k1));
    let records = Arc::new(Records::default());
    let manager: Arc<dyn KeyBackend> = Arc::new(
        KeyManager::recommended(backend.clone())
            .audit(records.clone())
            .build(),
    );
    let key = KeyRef::new("k");
    let h = [9; 32];
    let asked = SignContext::RawDigest {
        chain_id: Some(8453),
    };
    // The hook sees the verified signature: it records its r as a stand-in fact.
    let hook = |sig: &VerifiedSignature| SignContext::EvmAuthorization {
        chain_id: "8453".into(),
        address: hex::encode(sig.as_secp256k1().unwrap().r()),
        nonce: 1,
    };
    let sig = manager
        .sign_with_outcome_context(&key, &SignPayload::Prehash(h), &asked, &hook)
        .await
        .unwrap();
    verify(&backend.public_key(&key).await.unwrap(), &h, &sig);
    assert_eq!(
        records.last(AuditEvent::SignRequest).context,
        Some(asked.clone())
    );
    assert_eq!(
        records.last(AuditEvent::SignSuccess).context,
        Some(hook(&sig))
    );

    // A failed signature (a version that does not exist) keeps the request's context.
    let missing = KeyRef::versioned("k", "7");
    let e = manager
        .sign_with_outcome_context(&missing, &SignPayload::Prehash(h), &asked, &hook)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let failure = records.last(AuditEvent::SignFailure);
    assert_eq!(failure.context, Some(asked));

    // Ed25519 message without a context: a raw message of that length.
    let ed = Arc::new(MemoryBackend::with_key("ed", KeyAlgorithm::Ed25519));
    let records = Arc::new(Records::default());
    let manager = KeyManager::recommended(ed).audit(records.clone()).build();
    manager
        .sign(&KeyRef::new("ed"), &SignPayload::message(b"hello".to_vec()))
        .await
        .unwrap();
    assert_eq!(
        records.last(AuditEvent::SignSuccess).context,
        Some(SignContext::RawMessage { message_len: 5 })
    );
}
