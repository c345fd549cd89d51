//! The real AWS SDK client talking to moto through a fault-injecting HTTP proxy
//! (`keymgr_testkit::proxy`): delays past the timeout, HTTP 500s, `ThrottlingException`s,
//! connection resets and truncated bodies give typed, retryable errors, never a panic,
//! an integrity error or a wrong signature; every signature that comes back is checked
//! with k256 against the key's public key from KMS. Runs under `cargo xtask test`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use keymgr_core::layer::{RetryPolicy, TimeoutPolicy};
use keymgr_core::{ErrorKind, KeyManager, KeyRef, PublicKey, RecommendedLayers, SignPayload};
use keymgr_testkit::proxy::{Fault, FaultProxy};

/// Per-attempt timeout in these tests; [`SLOW`] is past it, [`JITTER`] well within.
const TIMEOUT: Duration = Duration::from_millis(300);
const SLOW: Duration = Duration::from_millis(450);
const JITTER: Duration = Duration::from_millis(20);

struct Setup {
    proxy: FaultProxy,
    manager: KeyManager,
    key: KeyRef,
    pk: PublicKey,
}

/// A secp256k1 key in moto, and a manager whose client reaches moto only through the
/// proxy: retries 3 (1 ms base), a per-attempt timeout, no breaker (every call reaches
/// the proxy).
async fn setup(purpose: &str) -> Option<Setup> {
    let moto = support::moto()?;
    let created = support::secp256k1_key(&support::client(&moto), purpose).await;
    let proxy = FaultProxy::start(&moto).await.unwrap();
    let backend = support::backend(
        &support::client(&proxy.url()),
        &[("evm", created.alias.as_str())],
    );
    let manager = KeyManager::builder(Arc::new(backend))
        .recommended_layers(RecommendedLayers {
            retry: Some(RetryPolicy {
                base_delay: Duration::from_millis(1),
                ..RetryPolicy::default()
            }),
            timeout: Some(TimeoutPolicy { limit: TIMEOUT }),
            breaker: None,
            ..RecommendedLayers::default()
        })
        .build();
    let key = KeyRef::new("evm");
    // Learned while nothing is injected: the key every signature must verify under.
    let pk = manager.public_key(&key).await.unwrap();
    Some(Setup {
        proxy,
        manager,
        key,
        pk,
    })
}

fn availability(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::Unavailable | ErrorKind::Timeout | ErrorKind::Throttled
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_persistent_fault_is_one_typed_error_after_one_plus_three_sign_calls() {
    let Some(s) = setup("fault-proxy-persistent").await else {
        return;
    };
    let cases = [
        (Fault::throttling(), ErrorKind::Throttled),
        (Fault::internal_error(), ErrorKind::Unavailable),
        (Fault::Reset, ErrorKind::Unavailable),
        (Fault::Truncate, ErrorKind::Unavailable),
        (Fault::Delay(SLOW), ErrorKind::Timeout),
    ];
    for (fault, kind) in cases {
        let before = s.proxy.requests("Sign");
        let injected = fault.clone();
        s.proxy
            .set_plan(move |op, _| (op == "Sign").then(|| injected.clone()));
        let e = s
            .manager
            .sign(&s.key, &SignPayload::Prehash(support::random32()))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), kind, "{fault:?}: {e:?}");
        assert!(e.is_retryable(), "{fault:?}: {e:?}");
        assert_eq!(
            s.proxy.requests("Sign") - before,
            1 + 3,
            "{fault:?}: one attempt and keymgr's three retries, none by the SDK"
        );
        if kind == ErrorKind::Throttled {
            assert_eq!(e.provider_code(), Some("ThrottlingException"));
            assert_eq!(e.request_id(), Some("fault-proxy-Sign"));
            assert_eq!(e.operation(), Some("Sign"));
        }
    }

    // Faults over: the same manager signs, and k256 verifies under KMS's key.
    s.proxy.clear_plan();
    let digest = support::random32();
    let sig = s
        .manager
        .sign(&s.key, &SignPayload::Prehash(digest))
        .await
        .unwrap();
    assert!(support::k256_verifies(&s.pk, &digest, &sig));
}

/// A fixed pseudo-random mix (splitmix64 of the request number): about half the
/// requests are forwarded untouched, the rest get one of the faults.
fn mixed(op_seed: u64, n: usize) -> Option<Fault> {
    let mut z = op_seed.wrapping_add((n as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    match z % 14 {
        0..=6 => None,
        7 => Some(Fault::Delay(JITTER)),
        8 => Some(Fault::Delay(SLOW)),
        9 => Some(Fault::internal_error()),
        10 => Some(Fault::throttling()),
        11 => Some(Fault::Reset),
        12 => Some(Fault::Truncate),
        _ => Some(Fault::Respond {
            status: 503,
            body: String::new(),
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_signatures_through_mixed_faults_are_right_or_typed_errors() {
    let Some(s) = setup("fault-proxy-mixed").await else {
        return;
    };
    // Every operation the backend sends (Sign, and any metadata refresh) is at risk.
    s.proxy
        .set_plan(|op, n| mixed(op.bytes().map(u64::from).sum::<u64>(), n));
    let (mut signed, mut failed) = (0, Vec::new());
    for _ in 0..30 {
        let digest = support::random32();
        match s.manager.sign(&s.key, &SignPayload::Prehash(digest)).await {
            Ok(sig) => {
                assert!(
                    support::k256_verifies(&s.pk, &digest, &sig),
                    "a signature that does not verify under KMS's key"
                );
                assert_eq!(sig.public_key(), &s.pk);
                signed += 1;
            }
            Err(e) => {
                assert!(availability(e.kind()), "not an availability error: {e:?}");
                assert!(e.is_retryable(), "{e:?}");
                failed.push(e.kind());
            }
        }
    }
    let applied = s.proxy.applied();
    for kind in [
        "delay",
        "status-500",
        "status-400",
        "status-503",
        "reset",
        "truncate",
    ] {
        assert!(applied.get(kind).is_some_and(|n| *n > 0), "{applied:?}");
    }
    assert!(signed >= 20, "{signed} signed, failures {failed:?}");
}
