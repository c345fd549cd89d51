//! Contract tests, second half: the Key Vault REST reference's response shapes served
//! verbatim (through the stand-in's TLS, challenge and token flow, [`Fault::Reply`]) to
//! the real SDK and keymgr-azure, then malformed variants of them. Documented responses
//! must give exactly the values they carry; malformed ones a typed error, never a panic
//! or a wrong value; every documented error status/code maps to its kind with Key
//! Vault's code, message, `x-ms-request-id` and `Retry-After` kept. Signatures are
//! checked with k256 (independent of keymgr). Reference pages: see
//! `contract_requests.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use k256::ecdsa::signature::hazmat::{PrehashSigner as _, PrehashVerifier as _};
use keymgr_azure::KeyVaultError;
use keymgr_core::{Error, ErrorKind, IntegrityReason, KeyBackend, KeyRef, PublicKey, SignPayload};
use serde_json::{Value, json};
use support::{Fault, SECRET, StandIn, backend};

/// A version id as Key Vault writes them (the REST reference's Create Key example).
const VERSION: &str = "78deebed173b48e48f55abf87ed4cf71";
const PREHASH: [u8; 32] = [0x42; 32];

fn documented_key() -> k256::ecdsa::SigningKey {
    k256::ecdsa::SigningKey::from_bytes(&[7u8; 32].into()).unwrap()
}

/// A `KeyBundle` as Get Key documents it, for an EC `P-256K` key.
fn bundle(vault: &str, key: &k256::ecdsa::SigningKey) -> Value {
    let point = key.verifying_key().to_encoded_point(false);
    json!({
        "key": {
            "kid": format!("{vault}/keys/evm-signer/{VERSION}"),
            "kty": "EC",
            "key_ops": ["sign", "verify"],
            "crv": "P-256K",
            "x": B64URL.encode(point.x().unwrap()),
            "y": B64URL.encode(point.y().unwrap()),
        },
        "attributes": {
            "enabled": true,
            "created": 1_493_942_451,
            "updated": 1_493_942_451,
            "recoveryLevel": "Recoverable+Purgeable",
            "recoverableDays": 90,
        },
        "tags": { "purpose": "unit test" },
    })
}

/// The Get Key reference's own example: an RSA key (`n`, `e`).
fn documented_rsa_bundle(vault: &str) -> Value {
    json!({
        "key": {
            "kid": format!("{vault}/keys/evm-signer/{VERSION}"),
            "kty": "RSA",
            "key_ops": ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"],
            "n": B64URL.encode([0xc5u8; 256]),
            "e": "AQAB",
        },
        "attributes": {
            "enabled": true, "created": 1_493_942_451, "updated": 1_493_942_451,
            "recoveryLevel": "Recoverable+Purgeable",
        },
    })
}

fn ok(body: &Value) -> Fault {
    Fault::Reply {
        status: 200,
        body: body.to_string(),
        retry_after: None,
    }
}

/// Serves `get_key` verbatim for Get Key and returns what `public_key(evm)` gives.
async fn public_key_from(stand_in: &StandIn, get_key: Fault) -> keymgr_core::Result<PublicKey> {
    let b = backend(stand_in, "evm-signer", "xrp-signer");
    stand_in.inject("getKey", get_key);
    b.public_key(&KeyRef::new("evm")).await
}

fn sign_result(vault: &str, raw: &[u8]) -> Value {
    json!({ "kid": format!("{vault}/keys/evm-signer/{VERSION}"), "value": B64URL.encode(raw) })
}

/// Serves the documented bundle, then `sign` verbatim for Sign; signs `PREHASH`.
async fn sign_from(stand_in: &StandIn, sign: Fault) -> keymgr_core::Result<[u8; 64]> {
    let b = backend(stand_in, "evm-signer", "xrp-signer");
    stand_in.inject("getKey", ok(&bundle(&stand_in.url(), &documented_key())));
    stand_in.inject("sign", sign);
    let sig = b
        .sign(&KeyRef::new("evm"), &SignPayload::Prehash(PREHASH))
        .await?;
    assert_eq!(sig.key_version(), Some(VERSION));
    Ok(sig.as_secp256k1().unwrap().as_k256().to_bytes().into())
}

fn integrity(result: keymgr_core::Result<impl std::fmt::Debug>, case: &str) -> IntegrityReason {
    match result {
        Err(Error::Integrity { key, reason, .. }) => {
            assert!(key.starts_with("evm"), "{case}: {key}");
            reason
        }
        other => panic!("{case}: expected Integrity, got {other:?}"),
    }
}

#[tokio::test]
async fn documented_key_bundle_and_sign_result_give_their_values() {
    let stand_in = StandIn::start(SECRET).await;
    let key = documented_key();
    let pk = public_key_from(&stand_in, ok(&bundle(&stand_in.url(), &key)))
        .await
        .unwrap();
    let sec1 = key.verifying_key().to_encoded_point(false);
    assert_eq!(pk, PublicKey::from_sec1(sec1.as_bytes()).unwrap());

    let expected: k256::ecdsa::Signature = key.sign_prehash(&PREHASH).unwrap();
    let raw = sign_from(
        &stand_in,
        ok(&sign_result(&stand_in.url(), &expected.to_bytes())),
    )
    .await
    .unwrap();
    let got = k256::ecdsa::Signature::from_slice(&raw).unwrap();
    key.verifying_key().verify_prehash(&PREHASH, &got).unwrap();
    assert_eq!(Some(got), expected.normalize_s().or(Some(expected)));
}

#[tokio::test]
async fn unsupported_key_types_are_refused_naming_the_key() {
    let stand_in = StandIn::start(SECRET).await;
    let url = stand_in.url();
    let mut p256 = bundle(&url, &documented_key());
    p256["key"]["crv"] = json!("P-256");
    let mut oct = bundle(&url, &documented_key());
    oct["key"] = json!({ "kid": format!("{url}/keys/evm-signer/{VERSION}"), "kty": "oct-HSM" });
    for (case, body, names) in [
        (
            "RSA (the reference's example)",
            documented_rsa_bundle(&url),
            "RSA",
        ),
        ("EC P-256", p256, "P-256"),
        ("oct-HSM", oct, "oct-HSM"),
    ] {
        match public_key_from(&stand_in, ok(&body)).await {
            Err(Error::Unsupported {
                backend, reason, ..
            }) => {
                assert_eq!(backend, "azure-kv");
                assert!(
                    reason.contains("evm") && reason.contains(names) && reason.contains("P-256K"),
                    "{case}: {reason}"
                );
            }
            other => panic!("{case}: expected Unsupported, got {other:?}"),
        }
    }
    assert_eq!(stand_in.calls("sign"), 0);
}

#[tokio::test]
async fn malformed_key_bundles_are_integrity_errors() {
    let stand_in = StandIn::start(SECRET).await;
    let url = stand_in.url();
    let good = bundle(&url, &documented_key());
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut b = good.clone();
        f(&mut b);
        b
    };
    let cases: Vec<(&str, Value)> = vec![
        (
            "x of 31 bytes",
            edit(&|b| b["key"]["x"] = json!(B64URL.encode([1u8; 31]))),
        ),
        (
            "x not base64url",
            edit(&|b| b["key"]["x"] = json!("!!not base64!!")),
        ),
        (
            "y missing",
            edit(&|b| drop(b["key"].as_object_mut().unwrap().remove("y"))),
        ),
        (
            "crv missing",
            edit(&|b| drop(b["key"].as_object_mut().unwrap().remove("crv"))),
        ),
        (
            "kid missing",
            edit(&|b| drop(b["key"].as_object_mut().unwrap().remove("kid"))),
        ),
        (
            "kty missing",
            edit(&|b| drop(b["key"].as_object_mut().unwrap().remove("kty"))),
        ),
        ("key missing", json!({ "attributes": good["attributes"] })),
        (
            "not on the curve",
            edit(&|b| b["key"]["y"] = b["key"]["x"].clone()),
        ),
        ("an array", json!([])),
    ];
    for (case, body) in cases {
        integrity(public_key_from(&stand_in, ok(&body)).await, case);
    }
    for (case, body) in [("empty", ""), ("HTML", "<html>oops")] {
        let reply = Fault::Reply {
            status: 200,
            body: body.to_owned(),
            retry_after: None,
        };
        integrity(public_key_from(&stand_in, reply).await, case);
    }
    // A pinned version answered by another version's bundle.
    let b = backend(
        &stand_in,
        "evm-signer/0123456789abcdef0123456789abcdef",
        "xrp-signer",
    );
    stand_in.inject("getKey", ok(&good));
    integrity(b.public_key(&KeyRef::new("evm")).await, "other version");
}

#[tokio::test]
async fn malformed_sign_results_never_pass_as_signatures() {
    let stand_in = StandIn::start(SECRET).await;
    let url = stand_in.url();
    let key = documented_key();
    let good: k256::ecdsa::Signature = key.sign_prehash(&PREHASH).unwrap();
    let other_key = k256::ecdsa::SigningKey::from_bytes(&[8u8; 32].into()).unwrap();
    let by_other: k256::ecdsa::Signature = other_key.sign_prehash(&PREHASH).unwrap();
    let over_other: k256::ecdsa::Signature = key.sign_prehash(&[0x43; 32]).unwrap();
    let mut other_kid = sign_result(&url, &good.to_bytes());
    other_kid["kid"] = json!(format!(
        "{url}/keys/evm-signer/0123456789abcdef0123456789abcdef"
    ));
    let cases: Vec<(&str, Value)> = vec![
        ("63 bytes", sign_result(&url, &good.to_bytes()[..63])),
        (
            "65 bytes",
            sign_result(&url, &[&good.to_bytes()[..], &[0][..]].concat()),
        ),
        (
            "DER instead of r‖s",
            sign_result(&url, good.to_der().as_bytes()),
        ),
        (
            "another key's signature",
            sign_result(&url, &by_other.to_bytes()),
        ),
        (
            "over another digest",
            sign_result(&url, &over_other.to_bytes()),
        ),
        (
            "value missing",
            json!({ "kid": format!("{url}/keys/evm-signer/{VERSION}") }),
        ),
        ("value not base64url", json!({ "kid": "x", "value": "!!" })),
        ("kid of another version", other_kid),
    ];
    for (case, body) in cases {
        integrity(sign_from(&stand_in, ok(&body)).await, case);
    }
}

/// `(status, Key Vault code or None for a non-JSON body, Retry-After, kind)`.
const ERRORS: &[(u16, Option<&str>, Option<&str>, ErrorKind)] = &[
    (401, Some("Unauthorized"), None, ErrorKind::AccessDenied),
    (403, Some("Forbidden"), None, ErrorKind::AccessDenied),
    (404, Some("KeyNotFound"), None, ErrorKind::NotFound),
    (400, Some("BadParameter"), None, ErrorKind::InvalidInput),
    (429, Some("Throttled"), Some("10"), ErrorKind::Throttled),
    (429, Some("Throttled"), None, ErrorKind::Throttled),
    (
        500,
        Some("InternalServerError"),
        None,
        ErrorKind::Unavailable,
    ),
    (502, None, None, ErrorKind::Unavailable),
    (
        503,
        Some("ServiceUnavailable"),
        Some("5"),
        ErrorKind::Unavailable,
    ),
    (504, None, None, ErrorKind::Unavailable),
    (409, Some("Conflict"), None, ErrorKind::Backend),
];

#[tokio::test]
async fn documented_error_bodies_map_to_kinds_keeping_their_fields() {
    let stand_in = StandIn::start(SECRET).await;
    for &(status, code, retry_after, kind) in ERRORS {
        let case = format!("{status} {code:?}");
        let message = format!("documented {status} answer");
        let body = match code {
            // `innererror` as the reference's KeyVaultError carries it; the outer code counts.
            Some(code) => json!({ "error": {
                "code": code, "message": message, "innererror": { "code": "AccessDenied" },
            }})
            .to_string(),
            None => "<html><body>Bad Gateway</body></html>".to_owned(),
        };
        let reply = Fault::Reply {
            status,
            body,
            retry_after,
        };
        let e = sign_from(&stand_in, reply).await.unwrap_err();
        assert_eq!(e.kind(), kind, "{case}: {e:?}");
        let retryable = matches!(kind, ErrorKind::Throttled | ErrorKind::Unavailable);
        assert_eq!(e.is_retryable(), retryable, "{case}");
        assert_eq!(e.operation(), Some("sign"), "{case}");
        let kv = KeyVaultError::of(&e).unwrap_or_else(|| panic!("{case}: {e:?}"));
        assert_eq!(kv.status, Some(status), "{case}");
        assert!(kv.request_id.is_some() && kv.request_id.as_deref() == e.request_id());
        assert_eq!(
            kv.retry_after,
            retry_after.map(|s| Duration::from_secs(s.parse().unwrap())),
            "{case}"
        );
        if let Some(code) = code {
            assert_eq!(e.provider_code(), Some(code), "{case}");
            assert_eq!(kv.message, message, "{case}");
        }
        if let Error::NotFound { key, .. } | Error::AccessDenied { key, .. } = &e {
            assert!(key.starts_with("evm"), "{case}: {key}");
        }
    }
}

#[tokio::test]
async fn a_disabled_key_is_refused_as_access_denied() {
    // What the service answers to Sign with a version whose `attributes.enabled` is false.
    let stand_in = StandIn::start(SECRET).await;
    let reply = Fault::Reply {
        status: 403,
        body: json!({ "error": {
            "code": "Forbidden",
            "message": "Operation \"sign\" is not allowed on a disabled key.",
        }})
        .to_string(),
        retry_after: None,
    };
    let e = sign_from(&stand_in, reply).await.unwrap_err();
    assert!(
        matches!(&e, Error::AccessDenied { key, .. } if key.starts_with("evm")),
        "{e:?}"
    );
    assert!(!e.is_retryable());
    assert_eq!(e.provider_code(), Some("Forbidden"));
}
