//! Layers and KeyManager behaviour, driven through fault injection on the env backend.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use keymgr_core::layer::{Cached, Retry, RetryPolicy, Timeout};
use keymgr_core::{
    AuditEvent, AuditRecord, AuditSink, Error, ErrorKind, KeyBackend, KeyManager, KeyRef,
    Outcome, SignPayload,
};
use keymgr_env::EnvBackend;
use keymgr_testkit::fault::{Fault, Faulty};

fn faulty() -> Arc<Faulty<EnvBackend>> {
    Arc::new(Faulty::new(EnvBackend::generate()))
}

fn unavailable() -> Error {
    Error::unavailable("env", "injected outage", None)
}

#[tokio::test(start_paused = true)]
async fn cache_serves_public_keys_until_ttl_or_invalidation() {
    let inner = faulty();
    let cached = Cached::with_ttl(inner.clone(), Duration::from_secs(60));
    let key = KeyRef::new("evm");
    let a = cached.public_key(&key).await.unwrap();
    let b = cached.public_key(&key).await.unwrap();
    assert_eq!(a, b);
    assert_eq!(inner.public_key_calls(), 1);
    cached.invalidate("evm");
    cached.public_key(&key).await.unwrap();
    assert_eq!(inner.public_key_calls(), 2);
    tokio::time::advance(Duration::from_secs(61)).await;
    cached.public_key(&key).await.unwrap();
    assert_eq!(inner.public_key_calls(), 3);
    // Other keys are independent.
    cached.public_key(&KeyRef::new("xrp")).await.unwrap();
    assert_eq!(inner.public_key_calls(), 4);
}

#[tokio::test(start_paused = true)]
async fn retry_recovers_from_transient_errors_with_backoff() {
    let inner = faulty();
    inner.fail_next(2, unavailable);
    let retry = Retry::new(inner.clone(), RetryPolicy::default());
    let started = tokio::time::Instant::now();
    retry
        .sign(&KeyRef::new("evm"), &SignPayload::Prehash([3; 32]))
        .await
        .unwrap();
    assert_eq!(inner.sign_calls(), 3);
    // 1 s + 2 s, each ±20 %.
    let waited = started.elapsed().as_secs_f64();
    assert!((2.4..=3.6).contains(&waited), "waited {waited}");
}

#[tokio::test(start_paused = true)]
async fn retry_gives_up_after_max_and_never_retries_permanent_errors() {
    let inner = faulty();
    inner.fail_next(10, unavailable);
    let retry = Retry::new(inner.clone(), RetryPolicy::default());
    let e = retry
        .sign(&KeyRef::new("evm"), &SignPayload::Prehash([3; 32]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert_eq!(inner.sign_calls(), 4, "1 attempt + 3 retries");

    for permanent in [
        Error::not_found("evm", "gone"),
        Error::AccessDenied {
            key: "evm".into(),
            detail: "no".into(),
        },
        Error::integrity("evm", "bad"),
    ] {
        let inner = faulty();
        inner.inject(Fault::Fail(permanent));
        let retry = Retry::new(inner.clone(), RetryPolicy::default());
        assert!(
            retry
                .sign(&KeyRef::new("evm"), &SignPayload::Prehash([3; 32]))
                .await
                .is_err()
        );
        assert_eq!(inner.sign_calls(), 1);
    }
}

#[tokio::test(start_paused = true)]
async fn timeout_bounds_each_call() {
    let inner = faulty();
    inner.inject(Fault::Delay(Duration::from_secs(30)));
    let t = Timeout::new(inner.clone(), Duration::from_secs(2));
    let e = t
        .sign(&KeyRef::new("evm"), &SignPayload::Prehash([3; 32]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert!(e.is_retryable());
    // Retry over timeout: the second attempt succeeds.
    inner.inject(Fault::Delay(Duration::from_secs(30)));
    let stacked = Retry::new(
        Timeout::new(inner.clone(), Duration::from_secs(2)),
        RetryPolicy::default(),
    );
    stacked
        .sign(&KeyRef::new("evm"), &SignPayload::Prehash([3; 32]))
        .await
        .unwrap();
}

/// Collects records; can be told to fail.
#[derive(Debug, Default)]
struct MemorySink {
    records: Mutex<Vec<AuditRecord>>,
    fail: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl AuditSink for MemorySink {
    async fn record(&self, record: AuditRecord) -> keymgr_core::Result<()> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Error::unavailable("audit", "disk full", None));
        }
        self.records.lock().unwrap().push(record);
        Ok(())
    }
}

#[tokio::test]
async fn key_manager_audits_sign_requests_and_outcomes() {
    let inner = faulty();
    let sink = Arc::new(MemorySink::default());
    let manager = KeyManager::builder(inner.clone())
        .audit(sink.clone())
        .actor("settlement-service")
        .retry(None)
        .build();
    let payload = SignPayload::Prehash([9; 32]);
    manager.sign(&KeyRef::new("evm"), &payload).await.unwrap();
    inner.fail_next(1, || Error::AccessDenied {
        key: "evm".into(),
        detail: "policy".into(),
    });
    manager.sign(&KeyRef::new("evm"), &payload).await.unwrap_err();
    manager
        .sign(&KeyRef::new("evm"), &SignPayload::message(b"secret business data".to_vec()))
        .await
        .unwrap_err();

    let records = sink.records.lock().unwrap().clone();
    let events: Vec<_> = records.iter().map(|r| (r.event, r.outcome)).collect();
    assert_eq!(
        events,
        vec![
            (AuditEvent::SignRequest, Outcome::Pending),
            (AuditEvent::SignSuccess, Outcome::Success),
            (AuditEvent::SignRequest, Outcome::Pending),
            (AuditEvent::KeyAccessDenied, Outcome::Denied),
            (AuditEvent::SignRequest, Outcome::Pending),
            (AuditEvent::SignFailure, Outcome::Failure),
        ]
    );
    for r in &records {
        assert_eq!(r.actor.as_deref(), Some("settlement-service"));
        assert_eq!(r.key, "evm");
        assert_eq!(r.payload_sha256.as_ref().map(String::len), Some(64));
        assert!(!format!("{r:?}").contains("secret business data"));
    }
    assert_eq!(records[5].error_kind, Some(ErrorKind::InvalidInput));
}

#[tokio::test]
async fn key_manager_refuses_to_sign_when_audit_fails() {
    let inner = faulty();
    let sink = Arc::new(MemorySink::default());
    sink.fail.store(true, std::sync::atomic::Ordering::SeqCst);
    let manager = KeyManager::builder(inner.clone()).audit(sink).build();
    let e = manager
        .sign(&KeyRef::new("evm"), &SignPayload::Prehash([1; 32]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert_eq!(inner.sign_calls(), 0, "nothing is signed without an audit record");
}

#[tokio::test]
async fn key_manager_never_returns_a_signature_that_does_not_verify() {
    for (key, payload) in [
        ("evm", SignPayload::Prehash([5; 32])),
        ("xrp", SignPayload::message(b"claim".to_vec())),
    ] {
        let inner = faulty();
        let sink = Arc::new(MemorySink::default());
        let manager = KeyManager::builder(inner.clone()).audit(sink.clone()).build();
        inner.inject(Fault::CorruptSignature);
        let e = manager.sign(&KeyRef::new(key), &payload).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Integrity, "{e}");
        assert!(e.to_string().contains(key));
        let last = sink.records.lock().unwrap().last().cloned().unwrap();
        assert_eq!(last.event, AuditEvent::SignFailure);
        assert_eq!(last.error_kind, Some(ErrorKind::Integrity));
    }
}
