//! Faults the stand-in injects, and what keymgr makes of them: Key Vault codes mapped to
//! kinds with code, message and `x-ms-request-id` kept; 429/503 retryable and retried by
//! keymgr's retry layer only (the SDK's retries are off); malformed bodies, wrong-length,
//! high-s and wrong signatures never leave as valid-looking signatures.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
use k256::elliptic_curve::scalar::IsHigh as _;
use keymgr_azure::KeyVaultError;
use keymgr_core::layer::{Retry, RetryPolicy};
use keymgr_core::{Error, ErrorKind, KeyBackend, KeyRef, SignPayload};
use support::{Fault, fixture};

fn payload() -> SignPayload {
    SignPayload::prehash(&[0x42; 32]).unwrap()
}

fn kv_source(e: &Error) -> &KeyVaultError {
    KeyVaultError::of(e).unwrap_or_else(|| panic!("no KeyVaultError source in {e:?}"))
}

fn is_request_id(id: &str) -> bool {
    id.starts_with("00000000-0000-4000-8000-") && id.len() == 36
}

#[tokio::test]
async fn throttling_is_retryable_with_code_request_id_and_retry_after() {
    let (stand_in, b) = fixture().await;
    b.public_key(&KeyRef::new("evm")).await.unwrap();
    for (fault, kind, status, code) in [
        (Fault::Throttled, ErrorKind::Throttled, 429, "Throttled"),
        (
            Fault::Unavailable,
            ErrorKind::Unavailable,
            503,
            "ServiceUnavailable",
        ),
    ] {
        let before = stand_in.calls("sign");
        stand_in.inject("sign", fault);
        let e = b.sign(&KeyRef::new("evm"), &payload()).await.unwrap_err();
        assert_eq!(e.kind(), kind, "{e}");
        assert!(e.is_retryable());
        let kv = kv_source(&e);
        assert_eq!(kv.status, Some(status));
        assert_eq!(kv.code.as_deref(), Some(code));
        assert_eq!(kv.retry_after, Some(Duration::from_secs(1)));
        let id = kv.request_id.clone().expect("x-ms-request-id kept");
        assert_eq!(e.request_id(), Some(id.as_str()));
        assert_eq!(e.provider_code(), Some(code));
        assert_eq!(e.operation(), Some("sign"));
        // One attempt: the SDK did not retry underneath keymgr.
        assert_eq!(stand_in.calls("sign"), before + 1);
    }
}

/// `b` behind keymgr's retry layer with `max_retries` and short fixed delays.
fn retrying(b: &Arc<keymgr_azure::AzureKvBackend>, max_retries: u32) -> Arc<dyn KeyBackend> {
    let policy = RetryPolicy {
        max_retries,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(5),
        jitter: 0.0,
    };
    Arc::new(Retry::new(b.clone(), policy))
}

#[tokio::test]
async fn keymgr_retries_throttling_within_its_budget_only() {
    let (stand_in, b) = fixture().await;
    let retrying = retrying(&b, 2);
    retrying.public_key(&KeyRef::new("evm")).await.unwrap();
    stand_in.inject("sign", Fault::Throttled);
    stand_in.inject("sign", Fault::Unavailable);
    let sig = retrying
        .sign(&KeyRef::new("evm"), &payload())
        .await
        .unwrap();
    stand_in
        .verifying_key("evm-signer", "")
        .verify_prehash(&[0x42; 32], sig.as_secp256k1().unwrap().as_k256())
        .unwrap();
    assert_eq!(stand_in.calls("sign"), 3, "two refusals, then success");
    // Past the budget: the throttling surfaces after exactly two keymgr retries (three
    // Sign calls), none inside the SDK.
    for _ in 0..3 {
        stand_in.inject("sign", Fault::Throttled);
    }
    let e = retrying
        .sign(&KeyRef::new("evm"), &payload())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Throttled, "{e}");
    assert_eq!(e.provider_code(), Some("Throttled"));
    assert_eq!(stand_in.calls("sign"), 6);
}

#[tokio::test]
async fn service_codes_map_to_kinds() {
    let (stand_in, b) = fixture().await;
    b.public_key(&KeyRef::new("evm")).await.unwrap();
    for (status, code, kind) in [
        (403, "Forbidden", ErrorKind::AccessDenied),
        (404, "KeyNotFound", ErrorKind::NotFound),
        (400, "BadParameter", ErrorKind::InvalidInput),
        (500, "InternalServerError", ErrorKind::Unavailable),
        (409, "Conflict", ErrorKind::Backend),
    ] {
        stand_in.inject(
            "sign",
            Fault::Status(status, code, format!("injected {code}")),
        );
        let e = b.sign(&KeyRef::new("evm"), &payload()).await.unwrap_err();
        assert_eq!(e.kind(), kind, "{code}: {e}");
        // Typed fields on every kind: Key Vault's code, message and request id.
        assert_eq!(e.provider_code(), Some(code), "{e:?}");
        assert_eq!(e.operation(), Some("sign"));
        assert!(e.request_id().is_some_and(is_request_id), "{e:?}");
        let kv = kv_source(&e);
        assert_eq!(kv.status, Some(status));
        assert_eq!(kv.message, format!("injected {code}"));
        assert_eq!(kv.request_id.as_deref(), e.request_id());
    }
    // A key that does not exist: the real KeyNotFound answer.
    let e = b.public_key(&KeyRef::new("absent")).await.unwrap_err();
    match &e {
        Error::NotFound { key, .. } => assert_eq!(key, "absent"),
        other => panic!("{other:?}"),
    }
    assert_eq!(e.provider_code(), Some("KeyNotFound"));
    assert_eq!(e.operation(), Some("getKey"));
    assert!(e.request_id().is_some_and(is_request_id), "{e:?}");
    assert_eq!(
        kv_source(&e).message,
        "A key with (name/id) absent/ was not found in this key vault."
    );
    // A disabled version refuses to sign: AccessDenied with Key Vault's Forbidden.
    let version = stand_in.versions("evm-signer")[0].clone();
    stand_in.set_enabled("evm-signer", &version, false);
    let e = b
        .sign(&KeyRef::versioned("evm", version), &payload())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::AccessDenied { key, .. } if key.starts_with("evm")),
        "{e:?}"
    );
    assert_eq!(e.provider_code(), Some("Forbidden"));
    assert_eq!(kv_source(&e).status, Some(403));
    // A payload Key Vault rejects (an EC key asked to wrap): InvalidInput, BadParameter.
    stand_in.create_secp256k1("not-a-kek");
    let e = b
        .encrypt(&KeyRef::new("not-a-kek"), &[1; 32], &Default::default())
        .await
        .unwrap_err();
    assert!(matches!(&e, Error::InvalidInput { .. }), "{e:?}");
    assert_eq!(e.provider_code(), Some("BadParameter"));
    assert_eq!(e.operation(), Some("wrapKey"));
    assert!(e.request_id().is_some_and(is_request_id), "{e:?}");
}

#[tokio::test]
async fn bad_responses_are_integrity_errors() {
    let (stand_in, b) = fixture().await;
    b.public_key(&KeyRef::new("evm")).await.unwrap();
    for fault in [Fault::Malformed, Fault::WrongLength, Fault::WrongSignature] {
        stand_in.inject("sign", fault.clone());
        let e = b.sign(&KeyRef::new("evm"), &payload()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Integrity, "{fault:?}: {e}");
        assert!(!e.is_retryable());
    }
    stand_in.inject("getKey", Fault::Malformed);
    let e = b.public_key(&KeyRef::new("xrp")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Integrity, "{e}");
}

#[tokio::test]
async fn high_s_is_normalized_and_verified() {
    let (stand_in, b) = fixture().await;
    stand_in.inject("sign", Fault::HighS);
    let sig = b.sign(&KeyRef::new("evm"), &payload()).await.unwrap();
    let k = sig.as_secp256k1().unwrap().as_k256();
    assert!(!bool::from(k.s().is_high()));
    stand_in
        .verifying_key("evm-signer", "")
        .verify_prehash(&[0x42; 32], k)
        .unwrap();
}
