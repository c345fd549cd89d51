//! Fault injection through the stand-in: checksums, throttling, outages, non-canonical
//! and wrong signatures, malformed bodies. Errors are matched on their kind and fields.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use k256::elliptic_curve::scalar::IsHigh as _;
use keymgr_core::layer::RetryPolicy;
use keymgr_core::{Error, ErrorKind, KeyBackend, KeyManager, KeyRef, SignPayload};
use support::{Fault, evm_and_xrp, k256_verifies};

const SIGN: &str = "asymmetricSign";

fn evm() -> KeyRef {
    KeyRef::new("evm")
}

/// The detail text of an error that carries one (integrity, unavailable, throttled, ...).
fn detail(e: &Error) -> &str {
    match e {
        Error::Integrity { detail, .. }
        | Error::Unavailable { detail, .. }
        | Error::Throttled { detail, .. }
        | Error::NotFound { detail, .. }
        | Error::AccessDenied { detail, .. }
        | Error::Backend { detail, .. } => detail,
        Error::InvalidInput { reason, .. } | Error::Unsupported { reason, .. } => reason,
        other => panic!("unexpected error {other:?}"),
    }
}

#[tokio::test]
async fn a_wrong_signature_checksum_is_retried_once_then_an_integrity_error() {
    let (stand_in, b, _, _) = evm_and_xrp().await;
    b.public_key(&evm()).await.unwrap();
    // Once: the retry succeeds, with a signature k256 accepts.
    stand_in.inject(SIGN, Fault::WrongChecksum);
    support::sign_and_check(&*b, &evm()).await.unwrap();
    assert_eq!(stand_in.calls(SIGN), 2);
    // Twice: an integrity error naming the key, after exactly two attempts.
    stand_in.inject(SIGN, Fault::WrongChecksum);
    stand_in.inject(SIGN, Fault::WrongChecksum);
    let e = b
        .sign(&evm(), &SignPayload::Prehash([3; 32]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Integrity, "{e}");
    assert!(!e.is_retryable());
    let Error::Integrity { key, detail, .. } = &e else {
        unreachable!()
    };
    assert_eq!(key, "evm");
    assert!(detail.contains("signatureCrc32c"), "{detail}");
    assert_eq!(stand_in.calls(SIGN), 4);
}

#[tokio::test]
async fn unverified_request_checksums_and_pem_checksums_are_integrity_errors() {
    let (stand_in, b, _, _) = evm_and_xrp().await;
    for key in [evm(), KeyRef::new("xrp")] {
        let payload = if key.name() == "evm" {
            SignPayload::Prehash([5; 32])
        } else {
            SignPayload::message(b"claim".to_vec())
        };
        b.public_key(&key).await.unwrap();
        stand_in.inject(SIGN, Fault::Unverified);
        stand_in.inject(SIGN, Fault::Unverified);
        let e = b.sign(&key, &payload).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Integrity, "{e}");
        assert!(detail(&e).contains("checksum"), "{e}");
    }
    // pemCrc32c: a fresh backend reads the public key; twice wrong is an error, once is
    // retried.
    let fresh = support::backend(
        &stand_in,
        &[("evm", &format!("{}/cryptoKeys/evm-key", support::KEY_RING))],
    )
    .await;
    stand_in.inject("getPublicKey", Fault::WrongChecksum);
    stand_in.inject("getPublicKey", Fault::WrongChecksum);
    let e = fresh.public_key(&evm()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Integrity, "{e}");
    assert!(detail(&e).contains("pemCrc32c"), "{e}");
    stand_in.inject("getPublicKey", Fault::WrongChecksum);
    assert_eq!(
        fresh.public_key(&evm()).await.unwrap(),
        b.public_key(&evm()).await.unwrap()
    );
}

#[tokio::test]
async fn high_s_signatures_are_normalized_and_verified() {
    let (stand_in, b, _, _) = evm_and_xrp().await;
    let pk = b.public_key(&evm()).await.unwrap();
    for i in 0..4u8 {
        stand_in.inject(SIGN, Fault::HighS);
        let h = [i + 1; 32];
        let sig = b.sign(&evm(), &SignPayload::Prehash(h)).await.unwrap();
        let raw = k256::ecdsa::Signature::from_slice(&sig.to_bytes()).unwrap();
        assert!(!bool::from(raw.s().is_high()), "high-s signature returned");
        assert!(k256_verifies(&pk, &h, sig.signature()));
    }
}

#[tokio::test]
async fn wrong_and_malformed_responses_are_integrity_errors() {
    let (stand_in, b, _, _) = evm_and_xrp().await;
    for key in [evm(), KeyRef::new("xrp")] {
        let payload = if key.name() == "evm" {
            SignPayload::Prehash([9; 32])
        } else {
            SignPayload::message(b"claim".to_vec())
        };
        b.public_key(&key).await.unwrap();
        for fault in [Fault::WrongSignature, Fault::Malformed, Fault::WrongShape] {
            stand_in.inject(SIGN, fault.clone());
            let e = b.sign(&key, &payload).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Integrity, "{fault:?}: {e}");
            let Error::Integrity { key: named, .. } = &e else {
                unreachable!()
            };
            assert_eq!(named, key.name(), "{fault:?}");
        }
    }
}

#[tokio::test]
async fn outages_and_throttling_are_retryable_with_status_and_request_id() {
    let (stand_in, b, _, _) = evm_and_xrp().await;
    b.public_key(&evm()).await.unwrap();
    for (fault, kind, status) in [
        (Fault::Unavailable, ErrorKind::Unavailable, "UNAVAILABLE"),
        (Fault::Throttled, ErrorKind::Throttled, "RESOURCE_EXHAUSTED"),
        (
            Fault::Status(504, "DEADLINE_EXCEEDED", "deadline".into()),
            ErrorKind::Unavailable,
            "DEADLINE_EXCEEDED",
        ),
    ] {
        let before = stand_in.calls(SIGN);
        stand_in.inject(SIGN, fault.clone());
        let e = b
            .sign(&evm(), &SignPayload::Prehash([1; 32]))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), kind, "{fault:?}: {e}");
        assert!(e.is_retryable(), "{fault:?}");
        assert!(detail(&e).contains(status), "{e}");
        assert!(detail(&e).contains("request id standin-"), "{e}");
        assert!(
            std::error::Error::source(&e).is_some(),
            "cause dropped: {e}"
        );
        // The Google client itself never retried.
        assert_eq!(stand_in.calls(SIGN), before + 1, "{fault:?}");
    }
    // Also for idempotent GETs, which the client's default policy would retry.
    let fresh = support::backend(
        &stand_in,
        &[("evm", &format!("{}/cryptoKeys/evm-key", support::KEY_RING))],
    )
    .await;
    let before = stand_in.calls("getCryptoKey");
    stand_in.inject("getCryptoKey", Fault::Unavailable);
    let e = fresh.public_key(&evm()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert_eq!(stand_in.calls("getCryptoKey"), before + 1);
}

#[tokio::test]
async fn throttling_is_retried_by_keymgrs_retry_layer_only() {
    let (stand_in, b, _, _) = evm_and_xrp().await;
    let policy = RetryPolicy {
        max_retries: 1,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(5),
        jitter: 0.0,
    };
    let manager = KeyManager::builder(b.clone() as Arc<dyn KeyBackend>)
        .layer(policy)
        .build();
    manager.public_key(&evm()).await.unwrap();
    stand_in.inject(SIGN, Fault::Throttled);
    support::sign_and_check(&manager, &evm()).await.unwrap();
    assert_eq!(stand_in.calls(SIGN), 2, "one attempt and one retry");
    stand_in.inject(SIGN, Fault::Throttled);
    stand_in.inject(SIGN, Fault::Throttled);
    let e = manager
        .sign(&evm(), &SignPayload::Prehash([2; 32]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Throttled, "{e}");
    assert_eq!(
        stand_in.calls(SIGN),
        4,
        "exactly one retry, none inside the client"
    );
}

#[tokio::test]
async fn service_errors_map_to_kinds() {
    let (stand_in, b, _, _) = evm_and_xrp().await;
    b.public_key(&evm()).await.unwrap();
    for (code, status, kind) in [
        (403, "PERMISSION_DENIED", ErrorKind::AccessDenied),
        (401, "UNAUTHENTICATED", ErrorKind::AccessDenied),
        (404, "NOT_FOUND", ErrorKind::NotFound),
        (400, "INVALID_ARGUMENT", ErrorKind::InvalidInput),
        (500, "INTERNAL", ErrorKind::Unavailable),
    ] {
        stand_in.inject(
            SIGN,
            Fault::Status(code, status, format!("{status} says no")),
        );
        let e = b
            .sign(&evm(), &SignPayload::Prehash([4; 32]))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), kind, "{status}: {e}");
        assert!(e.to_string().contains(&format!("{status} says no")), "{e}");
        assert!(e.to_string().contains("standin-"), "request id lost: {e}");
    }
}
