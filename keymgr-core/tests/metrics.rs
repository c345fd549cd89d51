//! Metrics through the `metrics` facade, captured with metrics-util's debugging
//! recorder: every family is recorded, and no label carries key material or payloads.
//! One test per binary: the recorder is process-global.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use keymgr_core::layer::{BreakerPolicy, Failover, Layer as _, MetricsPolicy, RetryPolicy};
use keymgr_core::{Error, KeyBackend, KeyManager, KeyRef, RecommendedLayers, SignPayload, metrics};
use keymgr_env::EnvBackend;
use keymgr_testkit::fault::Faulty;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

#[tokio::test(start_paused = true)]
async fn every_family_is_recorded_without_secrets_in_labels() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    let secret = k256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let secret_hex = hex::encode(secret.to_bytes());
    let member = || {
        Arc::new(Faulty::new(
            EnvBackend::new().with_secp256k1_key("evm", secret.clone()),
        ))
    };
    let (a, b) = (member(), member());
    let wrap = |name: &str, threshold: u32, inner: Arc<dyn KeyBackend>| -> Arc<dyn KeyBackend> {
        let breaker = BreakerPolicy {
            failure_threshold: threshold,
            open_for: Duration::from_secs(60),
        };
        Arc::new(
            MetricsPolicy::named(name).layer(Arc::new(breaker.layer(inner)) as Arc<dyn KeyBackend>),
        )
    };
    let failover = Failover::named(vec![
        ("hsm".to_owned(), wrap("hsm", 1, a.clone())),
        ("env".to_owned(), wrap("env", 5, b.clone())),
    ])
    .unwrap();
    let manager = KeyManager::builder(Arc::new(failover))
        .recommended_layers(RecommendedLayers {
            retry: Some(RetryPolicy {
                jitter: 0.0,
                ..RetryPolicy::default()
            }),
            breaker: None,
            timeout: None,
            ..RecommendedLayers::default()
        })
        .build();
    let key = KeyRef::new("evm");
    let digest = [0x5a; 32];
    manager
        .sign(&key, &SignPayload::Prehash(digest))
        .await
        .unwrap();
    a.fail_next(1, || Error::unavailable("env", "injected outage", None));
    manager
        .sign(&key, &SignPayload::Prehash(digest))
        .await
        .unwrap();
    // Both members down once: the failover fails, the retry layer retries, then succeeds.
    b.fail_next(1, || Error::unavailable("env", "injected outage", None));
    manager
        .sign(&key, &SignPayload::Prehash(digest))
        .await
        .unwrap();
    manager.public_key(&key).await.unwrap();

    let snapshot = snapshotter.snapshot().into_vec();
    let mut seen = std::collections::BTreeSet::new();
    let mut hsm_failovers = false;
    let forbidden = [
        secret_hex.clone(),
        hex::encode(digest),
        "5a5a5a".to_owned(),
        "injected".to_owned(),
    ];
    for (composite, _, _, value) in &snapshot {
        let key = composite.key();
        seen.insert(key.name().to_owned());
        for label in key.labels() {
            for bad in &forbidden {
                assert!(
                    !label.value().contains(bad.as_str()),
                    "{}={}",
                    label.key(),
                    label.value()
                );
            }
            assert!(
                label.value().len() <= 32,
                "labels are names: {}={}",
                label.key(),
                label.value()
            );
        }
        if key.name() == metrics::FAILOVERS_TOTAL
            && key
                .labels()
                .any(|l| l.key() == "member" && l.value() == "hsm")
        {
            assert!(matches!(value, DebugValue::Counter(n) if *n >= 1));
            hsm_failovers = true;
        }
    }
    assert!(hsm_failovers, "failovers away from hsm are counted");
    for family in [
        metrics::OPERATIONS_TOTAL,
        metrics::OPERATION_DURATION_SECONDS,
        metrics::ERRORS_TOTAL,
        metrics::RETRIES_TOTAL,
        metrics::BREAKER_TRANSITIONS_TOTAL,
        metrics::FAILOVERS_TOTAL,
        metrics::CACHE_LOOKUPS_TOTAL,
        metrics::AUDIT_COMMIT_SECONDS,
    ] {
        assert!(seen.contains(family), "{family} recorded; saw {seen:?}");
    }
    let providers: std::collections::BTreeSet<_> = snapshot
        .iter()
        .filter(|(c, ..)| c.key().name() == metrics::OPERATIONS_TOTAL)
        .flat_map(|(c, ..)| {
            c.key()
                .labels()
                .filter(|l| l.key() == "provider")
                .map(|l| l.value().to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(providers, ["env".to_owned(), "hsm".to_owned()].into());
}
