//! Failover: aggregated errors, start-up key checks, audit of the route, canary health,
//! and breakers under paused time. Members are env backends behind fault injection;
//! signatures are checked with k256 directly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
use keymgr_core::layer::{BreakerPolicy, BreakerState, CanaryPolicy, CircuitBreaker, Failover};
use keymgr_core::{
    AuditEvent, AuditRecord, AuditSink, Error, ErrorKind, HealthStatus, IntegrityReason,
    KeyBackend, KeyManager, KeyRef, RecommendedLayers, SignPayload, Signature,
};
use keymgr_env::EnvBackend;
use keymgr_testkit::fault::Faulty;

type Member = Arc<Faulty<EnvBackend>>;

fn member(key: &k256::ecdsa::SigningKey) -> Member {
    Arc::new(Faulty::new(
        EnvBackend::new().with_secp256k1_key("evm", key.clone()),
    ))
}

fn down() -> Error {
    Error::unavailable("env", "injected outage", None)
}

fn evm() -> KeyRef {
    KeyRef::new("evm")
}

fn named(members: &[(&str, Arc<dyn KeyBackend>)]) -> Failover {
    Failover::named(
        members
            .iter()
            .map(|(n, b)| ((*n).to_owned(), b.clone()))
            .collect(),
    )
    .unwrap()
}

/// Verifies with k256 against the key the test made, not keymgr's own check.
fn assert_signed_by(
    sig: &keymgr_core::VerifiedSignature,
    key: &k256::ecdsa::SigningKey,
    digest: &[u8; 32],
) {
    let Signature::Secp256k1(s) = sig.signature() else {
        panic!("not secp256k1")
    };
    key.verifying_key()
        .verify_prehash(digest, s.as_k256())
        .expect("signature verifies under the shared key");
}

#[tokio::test]
async fn every_member_down_gives_one_error_listing_each_failure() {
    let key = k256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let (a, b, c) = (member(&key), member(&key), member(&key));
    a.fail_next(1, down);
    b.fail_next(1, || Error::Timeout {
        backend: "env".into(),
        operation: "public_key",
        after: Duration::from_secs(2),
    });
    c.fail_next(1, || Error::throttled("env", "slow down", None));
    let f = named(&[("hsm", a.clone()), ("hsm:2", b.clone()), ("env", c.clone())]);
    let e = f
        .sign(&evm(), &SignPayload::Prehash([1; 32]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert!(e.is_retryable());
    let failures = Failover::member_failures(&e).expect("member failures as source");
    let got: Vec<_> = failures
        .failures()
        .iter()
        .map(|f| (f.member(), f.error().kind()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("hsm", ErrorKind::Unavailable),
            ("hsm:2", ErrorKind::Timeout),
            ("env", ErrorKind::Throttled)
        ]
    );
    assert_eq!(failures.operation(), "sign");
    assert_eq!(failures.key(), "evm");
    for name in ["hsm:", "hsm:2:", "env:"] {
        assert!(e.to_string().contains(name), "{e}");
    }

    // Every member throttled: the aggregate says throttled, so callers back off.
    for m in [&a, &b, &c] {
        m.fail_next(1, || Error::throttled("env", "slow down", None));
    }
    let e = f
        .sign(&evm(), &SignPayload::Prehash([1; 32]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Throttled);
    assert_eq!(Failover::member_failures(&e).unwrap().failures().len(), 3);
}

#[tokio::test]
async fn non_availability_errors_stop_at_the_member_that_gave_them() {
    let key = k256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    for make in [
        (|| Error::not_found("evm", "no such key")) as fn() -> Error,
        || Error::access_denied("evm", "policy"),
        || Error::invalid_input("digest", "bad"),
        || Error::integrity_failure("evm", IntegrityReason::Other, "corrupt"),
    ] {
        let (a, b) = (member(&key), member(&key));
        a.fail_next(1, make);
        let f = named(&[("a", a.clone()), ("b", b.clone())]);
        let e = f
            .sign(&evm(), &SignPayload::Prehash([1; 32]))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), make().kind());
        assert_eq!(b.sign_calls() + b.public_key_calls(), 0, "{e}");
    }
}

#[tokio::test]
async fn members_with_different_keys_are_refused_at_start_up() {
    let key = k256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let other = k256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let f = named(&[("hsm", member(&key)), ("env", member(&other))]);
    let e = f
        .verify_members(&[evm()], "KEY_BACKENDS")
        .await
        .unwrap_err();
    let Error::Config { variable, .. } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(variable, "KEY_BACKENDS");
    assert!(e.to_string().contains("env"), "{e}");

    // A member lacking a key the others hold is refused too.
    let empty: Arc<dyn KeyBackend> = Arc::new(EnvBackend::new());
    let f = named(&[("hsm", member(&key)), ("env", empty)]);
    let e = f
        .verify_members(&[evm()], "KEY_BACKENDS")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);

    // A member that is down now is checked on first use instead; agreeing ones pass.
    let unreachable = member(&other);
    unreachable.fail_next(1, down);
    let first = member(&key);
    let f = named(&[("hsm", first.clone()), ("aws-kms", unreachable.clone())]);
    let held = f
        .verify_members(&[evm(), KeyRef::new("xrp")], "KEY_BACKENDS")
        .await
        .unwrap();
    assert_eq!(
        held,
        vec![evm()],
        "nobody holds xrp: not checked, not an error"
    );
    first.fail_next(2, down);
    let e = f
        .sign(&evm(), &SignPayload::Prehash([2; 32]))
        .await
        .unwrap_err();
    assert_eq!(
        e.integrity_reason(),
        Some(IntegrityReason::MembersDisagree),
        "{e}"
    );
    assert_eq!(
        unreachable.sign_calls(),
        0,
        "never a signature by another key"
    );
}

#[derive(Debug, Default)]
struct MemorySink {
    records: Mutex<Vec<AuditRecord>>,
}

#[async_trait]
impl AuditSink for MemorySink {
    async fn record(&self, record: AuditRecord) -> keymgr_core::Result<()> {
        self.records.lock().unwrap().push(record);
        Ok(())
    }
}

#[tokio::test]
async fn the_audit_entry_names_the_member_that_signed_and_why_others_were_skipped() {
    let key = k256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let (a, b) = (member(&key), member(&key));
    let sink = Arc::new(MemorySink::default());
    let manager = KeyManager::builder(Arc::new(named(&[("hsm", a.clone()), ("env", b.clone())])))
        .audit(sink.clone())
        .recommended_layers(RecommendedLayers {
            retry: None,
            ..Default::default()
        })
        .build();
    let digest = [5; 32];
    let sig = manager
        .sign(&evm(), &SignPayload::Prehash(digest))
        .await
        .unwrap();
    assert_signed_by(&sig, &key, &digest);
    a.fail_next(1, down);
    let sig = manager
        .sign(&evm(), &SignPayload::Prehash(digest))
        .await
        .unwrap();
    assert_signed_by(&sig, &key, &digest);

    let records = sink.records.lock().unwrap().clone();
    let successes: Vec<_> = records
        .iter()
        .filter(|r| r.event == AuditEvent::SignSuccess)
        .collect();
    assert_eq!(successes.len(), 2);
    assert_eq!(
        successes[0]
            .details
            .get("failover.member")
            .map(String::as_str),
        Some("hsm")
    );
    assert!(!successes[0].details.contains_key("failover.skipped"));
    assert_eq!(
        successes[1]
            .details
            .get("failover.member")
            .map(String::as_str),
        Some("env")
    );
    let skipped = &successes[1].details["failover.skipped"];
    assert!(skipped.starts_with("hsm: unavailable ("), "{skipped}");
}

fn breaker(inner: Member, threshold: u32, open_for: Duration) -> Arc<dyn KeyBackend> {
    Arc::new(CircuitBreaker::new(
        inner,
        BreakerPolicy {
            failure_threshold: threshold,
            open_for,
        },
    ))
}

#[tokio::test(start_paused = true)]
async fn breaker_opens_skips_the_member_then_half_opens_and_closes() {
    let key = k256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let (a, b) = (member(&key), member(&key));
    let f = named(&[
        ("hsm", breaker(a.clone(), 2, Duration::from_secs(30))),
        ("env", b.clone()),
    ])
    .with_canary(CanaryPolicy {
        cache_for: Duration::ZERO,
        ..CanaryPolicy::default()
    });
    let p = SignPayload::Prehash([3; 32]);
    a.fail_next(2, down);
    f.sign(&evm(), &p).await.unwrap();
    f.sign(&evm(), &p).await.unwrap();
    let h = f.health().await;
    assert_eq!(h.status, HealthStatus::Degraded);
    assert_eq!(h.components[0].backend, "hsm");
    assert_eq!(h.components[0].breaker, Some(BreakerState::Open));
    assert_eq!(h.components[0].next_trial_ms, Some(30_000));
    assert_eq!(h.components[1].status, HealthStatus::Healthy);

    // Open: the member is not called at all.
    let calls = a.public_key_calls() + a.sign_calls();
    f.sign(&evm(), &p).await.unwrap();
    assert_eq!(a.public_key_calls() + a.sign_calls(), calls);

    tokio::time::advance(Duration::from_secs(20)).await;
    let h = f.health().await;
    assert_eq!(h.components[0].next_trial_ms, Some(10_000));
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(
        f.health().await.components[0].breaker,
        Some(BreakerState::HalfOpen)
    );
    // The trial succeeds: closed again, and the first member signs.
    let b_calls = b.sign_calls();
    f.sign(&evm(), &p).await.unwrap();
    assert_eq!(b.sign_calls(), b_calls);
    let h = f.health().await;
    assert_eq!(h.components[0].breaker, Some(BreakerState::Closed));
    assert_eq!(h.components[0].next_trial_ms, None);
    assert_eq!(h.status, HealthStatus::Healthy);
}

#[tokio::test(start_paused = true)]
async fn canary_health_signs_and_verifies_per_member_and_is_cached() {
    let key = k256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let other = k256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let (a, b) = (member(&key), member(&key));
    let policy = CanaryPolicy {
        sign_keys: vec![evm()],
        cache_for: Duration::from_secs(10),
        ..CanaryPolicy::default()
    };
    let f = named(&[("hsm", a.clone()), ("env", b.clone())]).with_canary(policy.clone());
    let h = f.health().await;
    assert_eq!(h.status, HealthStatus::Healthy, "{h:?}");
    assert_eq!((a.sign_calls(), b.sign_calls()), (1, 1), "one canary each");
    assert!(
        h.components[0]
            .detail
            .as_deref()
            .unwrap()
            .contains("canary evm: signed and verified")
    );

    // Cached for 10 s; a failure seen by traffic drops the cache at once.
    f.health().await;
    assert_eq!(a.sign_calls(), 1);
    a.fail_next(1, down);
    f.sign(&evm(), &SignPayload::Prehash([1; 32]))
        .await
        .unwrap();
    a.fail_next(1, down);
    let h = f.health().await;
    assert_eq!(h.status, HealthStatus::Degraded);
    assert_eq!(h.components[0].status, HealthStatus::Unhealthy);
    tokio::time::advance(Duration::from_secs(11)).await;
    assert_eq!(f.health().await.status, HealthStatus::Healthy);

    // Every member down: down.
    a.fail_next(1, down);
    b.fail_next(1, down);
    tokio::time::advance(Duration::from_secs(11)).await;
    assert_eq!(f.health().await.status, HealthStatus::Unhealthy);

    // A member that signs with another key fails its canary.
    let f = named(&[("hsm", a.clone()), ("env", member(&other))]).with_canary(policy.clone());
    let h = f.health().await;
    assert_eq!(h.status, HealthStatus::Degraded);
    assert_eq!(h.components[1].status, HealthStatus::Unhealthy);

    // A member that does not answer within the deadline is unhealthy; the check as a
    // whole is bounded by the deadline.
    let slow = member(&key);
    slow.inject(keymgr_testkit::fault::Fault::Delay(Duration::from_secs(60)));
    let f = named(&[("hsm", slow), ("env", member(&key))]).with_canary(CanaryPolicy {
        deadline: Duration::from_secs(2),
        ..policy
    });
    let started = tokio::time::Instant::now();
    let h = f.health().await;
    assert!(started.elapsed() <= Duration::from_secs(3));
    assert_eq!(h.status, HealthStatus::Degraded);
    assert!(
        h.components[0]
            .detail
            .as_deref()
            .unwrap()
            .contains("deadline")
    );
}
