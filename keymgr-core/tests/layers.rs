//! Layers and KeyManager behaviour, driven through fault injection on the env backend.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use keymgr_core::layer::{
    BreakerPolicy, BreakerState, Cached, CircuitBreaker, Failover, RateLimit, RateLimitPolicy,
    Retry, RetryPolicy, Timeout,
};
use keymgr_core::{
    AuditEvent, AuditRecord, AuditSink, Error, ErrorKind, HealthStatus, IntegrityReason,
    KeyBackend, KeyManager, KeyRef, Outcome, RecommendedLayers, SignPayload,
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
        Error::access_denied("evm", "no"),
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
        .recommended_layers(RecommendedLayers {
            retry: None,
            ..Default::default()
        })
        .build();
    let payload = SignPayload::Prehash([9; 32]);
    manager.sign(&KeyRef::new("evm"), &payload).await.unwrap();
    inner.fail_next(1, || Error::access_denied("evm", "policy"));
    manager
        .sign(&KeyRef::new("evm"), &payload)
        .await
        .unwrap_err();
    manager
        .sign(
            &KeyRef::new("evm"),
            &SignPayload::message(b"secret business data".to_vec()),
        )
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
    let manager = KeyManager::recommended(inner.clone()).audit(sink).build();
    let e = manager
        .sign(&KeyRef::new("evm"), &SignPayload::Prehash([1; 32]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert_eq!(
        inner.sign_calls(),
        0,
        "nothing is signed without an audit record"
    );
}

#[tokio::test]
async fn key_manager_never_returns_a_signature_that_does_not_verify() {
    for (key, payload) in [
        ("evm", SignPayload::Prehash([5; 32])),
        ("xrp", SignPayload::message(b"claim".to_vec())),
    ] {
        let inner = faulty();
        let sink = Arc::new(MemorySink::default());
        let manager = KeyManager::recommended(inner.clone())
            .audit(sink.clone())
            .build();
        inner.inject(Fault::CorruptSignature);
        let e = manager.sign(&KeyRef::new(key), &payload).await.unwrap_err();
        assert_eq!(
            e.integrity_reason(),
            Some(IntegrityReason::PayloadMismatch),
            "{e}"
        );
        assert!(matches!(&e, Error::Integrity { key: k, .. } if k == key));
        let last = sink.records.lock().unwrap().last().cloned().unwrap();
        assert_eq!(last.event, AuditEvent::SignFailure);
        assert_eq!(last.error_kind, Some(ErrorKind::Integrity));
    }
}

#[tokio::test(start_paused = true)]
async fn rate_limit_refuses_over_the_limit_per_key_and_refills() {
    let inner = faulty();
    let limited = RateLimit::new(
        inner.clone(),
        RateLimitPolicy {
            limit: 3,
            per: Duration::from_secs(60),
        },
    );
    let evm = KeyRef::new("evm");
    let p = SignPayload::Prehash([1; 32]);
    for _ in 0..3 {
        limited.sign(&evm, &p).await.unwrap();
    }
    let e = limited.sign(&evm, &p).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RateLimited);
    assert!(!e.is_retryable());
    let Error::RateLimited {
        key,
        limit,
        retry_after,
        ..
    } = e
    else {
        unreachable!()
    };
    assert_eq!((key.as_str(), limit), ("evm", 3));
    assert!(retry_after <= Duration::from_secs(20) && retry_after > Duration::ZERO);
    assert_eq!(
        inner.sign_calls(),
        3,
        "refused calls never reach the backend"
    );
    // Another key has its own budget.
    limited
        .sign(&KeyRef::new("xrp"), &SignPayload::message(vec![1]))
        .await
        .unwrap();
    // One permit every 20 s.
    tokio::time::advance(Duration::from_secs(21)).await;
    limited.sign(&evm, &p).await.unwrap();
    assert!(limited.sign(&evm, &p).await.is_err());
}

#[tokio::test]
async fn rate_limited_signing_is_audited() {
    let sink = Arc::new(MemorySink::default());
    let manager = KeyManager::builder(faulty())
        .audit(sink.clone())
        .recommended_layers(RecommendedLayers {
            rate_limit: Some(RateLimitPolicy {
                limit: 1,
                per: Duration::from_secs(60),
            }),
            ..Default::default()
        })
        .build();
    let p = SignPayload::Prehash([1; 32]);
    manager.sign(&KeyRef::new("evm"), &p).await.unwrap();
    let e = manager.sign(&KeyRef::new("evm"), &p).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RateLimited);
    let last = sink.records.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.event, AuditEvent::RateLimited);
    assert_eq!(last.outcome, Outcome::Denied);
}

#[tokio::test(start_paused = true)]
async fn breaker_opens_fails_fast_then_half_opens() {
    let inner = faulty();
    let breaker = CircuitBreaker::new(inner.clone(), BreakerPolicy::default());
    let k = KeyRef::new("evm");
    let p = SignPayload::Prehash([1; 32]);
    // Caller mistakes do not count.
    for _ in 0..10 {
        breaker
            .sign(&k, &SignPayload::message(vec![1]))
            .await
            .unwrap_err();
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
    inner.fail_next(5, unavailable);
    for _ in 0..5 {
        breaker.sign(&k, &p).await.unwrap_err();
    }
    assert_eq!(breaker.state(), BreakerState::Open);
    let calls = inner.sign_calls();
    let e = breaker.sign(&k, &p).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert_eq!(e.operation(), None, "refused without calling the backend");
    assert_eq!(
        inner.sign_calls(),
        calls,
        "open breaker does not call the backend"
    );
    let health = breaker.health().await;
    assert_eq!(health.status, HealthStatus::Unhealthy);
    assert_eq!(health.breaker, Some(BreakerState::Open));

    tokio::time::advance(Duration::from_secs(61)).await;
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    // A failed trial re-opens at once.
    inner.fail_next(1, unavailable);
    breaker.sign(&k, &p).await.unwrap_err();
    assert_eq!(breaker.state(), BreakerState::Open);
    tokio::time::advance(Duration::from_secs(61)).await;
    breaker.sign(&k, &p).await.unwrap();
    assert_eq!(breaker.state(), BreakerState::Closed);
    let health = breaker.health().await;
    assert_eq!(health.status, HealthStatus::Healthy);
    assert_eq!(health.breaker, Some(BreakerState::Closed));
}

#[tokio::test]
async fn failover_moves_on_for_outages_only_and_requires_the_same_key() {
    let key = k256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let same = || {
        Arc::new(Faulty::new(
            EnvBackend::new().with_secp256k1_key("evm", key.clone()),
        ))
    };
    let (primary, secondary) = (same(), same());
    let failover = Failover::new(vec![primary.clone(), secondary.clone()]).unwrap();
    let k = KeyRef::new("evm");
    let p = SignPayload::Prehash([4; 32]);
    failover.sign(&k, &p).await.unwrap();
    assert_eq!((primary.sign_calls(), secondary.sign_calls()), (1, 0));

    primary.fail_next(1, unavailable); // the primary's public_key lookup fails: move on
    failover.sign(&k, &p).await.unwrap();
    assert_eq!(secondary.sign_calls(), 1);

    primary.fail_next(1, || Error::not_found("evm", "gone"));
    let e = failover.sign(&k, &p).await.unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::NotFound,
        "permanent errors are not failed over"
    );

    // A member holding a different key is refused, not used.
    let impostor = Arc::new(Faulty::new(EnvBackend::generate()));
    let down = faulty();
    down.fail_next(10, unavailable);
    let f = Failover::new(vec![primary.clone(), impostor.clone()]).unwrap();
    f.public_key(&k).await.unwrap();
    primary.fail_next(1, unavailable);
    let e = f.sign(&k, &p).await.unwrap_err();
    assert_eq!(
        e.integrity_reason(),
        Some(IntegrityReason::MembersDisagree),
        "{e}"
    );
    assert_eq!(impostor.sign_calls(), 0);

    // Health: aggregate and per member.
    let f = Failover::new(vec![
        Arc::new(CircuitBreaker::new(
            down.clone(),
            BreakerPolicy {
                failure_threshold: 1,
                open_for: Duration::from_secs(60),
            },
        )),
        secondary.clone(),
    ])
    .unwrap();
    f.sign(&k, &p).await.unwrap();
    let h = f.health().await;
    assert_eq!(h.status, HealthStatus::Degraded);
    assert_eq!(h.components.len(), 2);
    assert_eq!(h.components[0].status, HealthStatus::Unhealthy);
    assert!(Failover::new(vec![]).is_err());
}
