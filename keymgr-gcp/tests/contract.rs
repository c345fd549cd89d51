//! Contract tests: the Cloud KMS REST reference's response shapes, served verbatim by a
//! tiny HTTP server to Google's real client and keymgr-gcp, then malformed variants of
//! them. Documented responses must give exactly the values they carry; malformed ones a
//! typed error (kind, Google status code where the service sent one), never a panic or
//! a wrong value. Signatures are checked with k256 (independent of keymgr).
//!
//! Reference pages (REST v1, `$alt=json;enum-encoding=int`, as the client asks):
//! - `CryptoKeyVersion`: <https://cloud.google.com/kms/docs/reference/rest/v1/projects.locations.keyRings.cryptoKeys.cryptoKeyVersions#CryptoKeyVersion>
//! - `getPublicKey` → `PublicKey`: <https://cloud.google.com/kms/docs/reference/rest/v1/PublicKey>
//! - `asymmetricSign` → `AsymmetricSignResponse`: <https://cloud.google.com/kms/docs/reference/rest/v1/projects.locations.keyRings.cryptoKeys.cryptoKeyVersions/asymmetricSign#response-body>
//! - int64 in JSON (decimal strings; parsers also accept numbers): <https://protobuf.dev/programming-guides/json/>
//! - error bodies (`google.rpc.Status`, HTTP mapping): <https://cloud.google.com/apis/design/errors#http_mapping>

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use google_cloud_gax::error::rpc::Code;
use k256::ecdsa::signature::hazmat::PrehashSigner as _;
use k256::pkcs8::{EncodePublicKey as _, LineEnding};
use keymgr_core::{ErrorKind, IntegrityReason, KeyBackend, KeyRef, PublicKey, SignPayload};
use keymgr_gcp::GcpKmsBackend;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const VERSION: &str = "projects/my-project/locations/us-east1/keyRings/my-ring/cryptoKeys/evm-key/cryptoKeyVersions/1";
const PREHASH: [u8; 32] = [0x42; 32];

/// One canned HTTP answer.
#[derive(Clone)]
struct Reply {
    status: u16,
    content_type: &'static str,
    body: String,
}

fn json_reply(v: Value) -> Reply {
    Reply {
        status: 200,
        content_type: "application/json; charset=UTF-8",
        body: v.to_string(),
    }
}

fn crc(bytes: &[u8]) -> String {
    crc32c::crc32c(bytes).to_string()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The three answers keymgr-gcp needs to sign with a pinned version, and their key.
#[derive(Clone)]
struct Responses {
    version: Reply,
    public_key: Reply,
    sign: Reply,
}

struct Documented {
    key: k256::ecdsa::SigningKey,
    pem: String,
    der: Vec<u8>,
}

impl Documented {
    fn new() -> Self {
        let key = k256::ecdsa::SigningKey::from_bytes(&[7u8; 32].into()).unwrap();
        let pem = key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        let sig: k256::ecdsa::Signature = key.sign_prehash(&PREHASH).unwrap();
        let der = sig.to_der().as_bytes().to_vec();
        Self { key, pem, der }
    }

    /// `CryptoKeyVersion` as documented (ENABLED = 1, EC_SIGN_SECP256K1_SHA256 = 31,
    /// HSM = 2).
    fn version(&self) -> Value {
        json!({
            "name": VERSION,
            "state": 1,
            "protectionLevel": 2,
            "algorithm": 31,
            "attestation": null,
            "createTime": "2026-01-01T00:00:00.000000Z",
            "generateTime": "2026-01-01T00:00:01.123456789Z",
            "importOnly": false,
        })
    }

    /// `PublicKey` as documented: `pem`, `pemCrc32c` (int64 as a string), `algorithm`,
    /// `name`, `protectionLevel`.
    fn public_key(&self) -> Value {
        json!({
            "pem": self.pem,
            "algorithm": 31,
            "pemCrc32c": crc(self.pem.as_bytes()),
            "name": VERSION,
            "protectionLevel": 2,
        })
    }

    /// `AsymmetricSignResponse` as documented.
    fn sign(&self) -> Value {
        json!({
            "signature": b64(&self.der),
            "signatureCrc32c": crc(&self.der),
            "verifiedDigestCrc32c": true,
            "name": VERSION,
            "verifiedDataCrc32c": false,
            "protectionLevel": 2,
        })
    }

    fn responses(&self) -> Responses {
        Responses {
            version: json_reply(self.version()),
            public_key: json_reply(self.public_key()),
            sign: json_reply(self.sign()),
        }
    }
}

/// A loopback HTTP/1.1 server answering by path; counts the `asymmetricSign` calls.
struct Server {
    endpoint: String,
    signs: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(responses: Responses) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let signs = Arc::new(AtomicUsize::new(0));
    let counter = signs.clone();
    let task = tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(answer(conn, responses.clone(), counter.clone()));
        }
    });
    Server {
        endpoint,
        signs,
        task,
    }
}

async fn answer(mut conn: tokio::net::TcpStream, r: Responses, signs: Arc<AtomicUsize>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        while buf.len() < end + 4 + length {
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let path = head.split(' ').nth(1).unwrap_or("");
        let path = path.split('?').next().unwrap_or("");
        let reply = if path == format!("/v1/{VERSION}:asymmetricSign") {
            signs.fetch_add(1, Ordering::SeqCst);
            &r.sign
        } else if path == format!("/v1/{VERSION}/publicKey") {
            &r.public_key
        } else if path == format!("/v1/{VERSION}") {
            &r.version
        } else {
            panic!("unexpected request {head}");
        };
        let response = format!(
            "HTTP/1.1 {} X\r\ncontent-type: {}\r\ncontent-length: {}\r\n\r\n{}",
            reply.status,
            reply.content_type,
            reply.body.len(),
            reply.body
        );
        if conn.write_all(response.as_bytes()).await.is_err() {
            return;
        }
        buf.drain(..end + 4 + length);
    }
}

async fn backend(server: &Server) -> GcpKmsBackend {
    let client = google_cloud_kms_v1::client::KeyManagementService::builder()
        .with_endpoint(&server.endpoint)
        .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build())
        .with_retry_policy(google_cloud_gax::retry_policy::NeverRetry)
        .build()
        .await
        .expect("client");
    GcpKmsBackend::from_client(
        client,
        BTreeMap::from([("evm".to_owned(), VERSION.to_owned())]),
    )
}

/// Signs `PREHASH` with `evm` through a server giving `responses`.
async fn sign_with(
    responses: Responses,
) -> (keymgr_core::Result<keymgr_core::VerifiedSignature>, usize) {
    let server = serve(responses).await;
    let b = backend(&server).await;
    let out = b
        .sign(&KeyRef::new("evm"), &SignPayload::Prehash(PREHASH))
        .await;
    (out, server.signs.load(Ordering::SeqCst))
}

async fn public_key_with(responses: Responses) -> keymgr_core::Result<PublicKey> {
    let server = serve(responses).await;
    backend(&server).await.public_key(&KeyRef::new("evm")).await
}

/// The Google status code the service sent, kept in the error's cause chain.
fn google_code(e: &keymgr_core::Error) -> Option<Code> {
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        if let Some(g) = c.downcast_ref::<google_cloud_gax::error::Error>() {
            return g.status().map(|s| s.code);
        }
        cause = c.source();
    }
    None
}

fn expect_err<T: std::fmt::Debug>(
    r: keymgr_core::Result<T>,
    kind: ErrorKind,
    case: &str,
) -> keymgr_core::Error {
    let e = r.expect_err(case);
    assert_eq!(e.kind(), kind, "{case}: {e}");
    e
}

#[tokio::test]
async fn documented_responses_give_their_values() {
    let doc = Documented::new();
    let pk = public_key_with(doc.responses()).await.unwrap();
    assert_eq!(pk, PublicKey::Secp256k1(*doc.key.verifying_key()));

    let (sig, calls) = sign_with(doc.responses()).await;
    let sig = sig.unwrap();
    assert_eq!(calls, 1);
    assert!(support::k256_verifies(
        sig.public_key(),
        &PREHASH,
        sig.signature()
    ));
    // keymgr returns the service's signature (low-s normalized), not another one.
    let served = k256::ecdsa::Signature::from_der(&doc.der).unwrap();
    let served = served.normalize_s().unwrap_or(served);
    assert_eq!(
        sig.signature().to_bytes().to_vec(),
        served.to_bytes().to_vec()
    );
}

#[tokio::test]
async fn enum_names_and_int64_numbers_are_read_as_the_json_mapping_allows() {
    // Enums as names (the default JSON encoding) and int64 as JSON numbers are both
    // valid proto3 JSON; the values they carry must be used as-is.
    let doc = Documented::new();
    let mut r = doc.responses();
    let mut v = doc.version();
    v["state"] = json!("ENABLED");
    v["algorithm"] = json!("EC_SIGN_SECP256K1_SHA256");
    r.version = json_reply(v);
    let mut p = doc.public_key();
    p["pemCrc32c"] = json!(crc32c::crc32c(doc.pem.as_bytes()));
    r.public_key = json_reply(p);
    let mut s = doc.sign();
    s["signatureCrc32c"] = json!(crc32c::crc32c(&doc.der));
    r.sign = json_reply(s);
    let (sig, _) = sign_with(r).await;
    let sig = sig.unwrap();
    assert!(support::k256_verifies(
        sig.public_key(),
        &PREHASH,
        sig.signature()
    ));
}

#[tokio::test]
async fn wrong_or_missing_checksums_are_integrity_errors_after_one_retry() {
    let doc = Documented::new();
    let wrong = (crc32c::crc32c(&doc.der) ^ 1).to_string();
    for (case, field, value) in [
        ("wrong signatureCrc32c", "signatureCrc32c", json!(wrong)),
        (
            "wrong signatureCrc32c as a number",
            "signatureCrc32c",
            json!(crc32c::crc32c(&doc.der) ^ 1),
        ),
        ("missing signatureCrc32c", "signatureCrc32c", Value::Null),
        (
            "digest checksum not verified",
            "verifiedDigestCrc32c",
            json!(false),
        ),
        (
            "verifiedDigestCrc32c missing",
            "verifiedDigestCrc32c",
            Value::Null,
        ),
    ] {
        let mut r = doc.responses();
        let mut s = doc.sign();
        match value {
            Value::Null => {
                s.as_object_mut().unwrap().remove(field);
            }
            v => s[field] = v,
        }
        r.sign = json_reply(s);
        let (out, calls) = sign_with(r).await;
        expect_err(out, ErrorKind::Integrity, case);
        assert_eq!(
            calls, 2,
            "{case}: a checksum failure is retried exactly once"
        );
    }
    for (case, value) in [
        (
            "wrong pemCrc32c",
            Some(json!((crc32c::crc32c(doc.pem.as_bytes()) ^ 1).to_string())),
        ),
        ("missing pemCrc32c", None),
    ] {
        let mut r = doc.responses();
        let mut p = doc.public_key();
        match value {
            Some(v) => p["pemCrc32c"] = v,
            None => {
                p.as_object_mut().unwrap().remove("pemCrc32c");
            }
        }
        r.public_key = json_reply(p);
        expect_err(public_key_with(r).await, ErrorKind::Integrity, case);
    }
}

#[tokio::test]
async fn malformed_sign_responses_are_typed_errors() {
    let doc = Documented::new();
    let not_der = b"not a DER signature".to_vec();
    let mut missing = doc.sign();
    missing.as_object_mut().unwrap().remove("signature");
    let mut bad_b64 = doc.sign();
    bad_b64["signature"] = json!("%%%not-base64%%%");
    let mut not_a_signature = doc.sign();
    not_a_signature["signature"] = json!(b64(&not_der));
    not_a_signature["signatureCrc32c"] = json!(crc(&not_der));
    let mut crc_not_int = doc.sign();
    crc_not_int["signatureCrc32c"] = json!("twelve");
    let mut other_key = doc.sign();
    let other = k256::ecdsa::SigningKey::from_bytes(&[8u8; 32].into()).unwrap();
    let other: k256::ecdsa::Signature = other.sign_prehash(&PREHASH).unwrap();
    let other = other.to_der().as_bytes().to_vec();
    other_key["signature"] = json!(b64(&other));
    other_key["signatureCrc32c"] = json!(crc(&other));
    let full = doc.sign().to_string();
    for (case, reply, reason) in [
        ("signature missing", json_reply(missing), None),
        ("signature not base64", json_reply(bad_b64), None),
        (
            "signature not DER",
            json_reply(not_a_signature),
            Some(IntegrityReason::MalformedResponse),
        ),
        ("checksum not an int64", json_reply(crc_not_int), None),
        (
            "signature by another key",
            json_reply(other_key),
            Some(IntegrityReason::DoesNotVerify),
        ),
        (
            "truncated JSON",
            Reply {
                body: full[..full.len() / 2].to_owned(),
                ..json_reply(json!({}))
            },
            None,
        ),
        (
            "HTML with 200",
            Reply {
                status: 200,
                content_type: "text/html",
                body: "<html><body>OK</body></html>".into(),
            },
            None,
        ),
    ] {
        let mut r = doc.responses();
        r.sign = reply;
        let (out, _) = sign_with(r).await;
        let e = expect_err(out, ErrorKind::Integrity, case);
        if let Some(reason) = reason {
            assert_eq!(e.integrity_reason(), Some(reason), "{case}: {e}");
        }
    }
}

#[tokio::test]
async fn malformed_public_keys_and_versions_are_typed_errors() {
    let doc = Documented::new();
    let mut bad_pem = doc.public_key();
    let garbage = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
    bad_pem["pem"] = json!(garbage);
    bad_pem["pemCrc32c"] = json!(crc(garbage.as_bytes()));
    let mut truncated = doc.public_key().to_string();
    truncated.truncate(40);
    for (case, reply) in [
        ("PEM that is no key", json_reply(bad_pem)),
        (
            "truncated PublicKey",
            Reply {
                body: truncated,
                ..json_reply(json!({}))
            },
        ),
    ] {
        let mut r = doc.responses();
        r.public_key = reply;
        expect_err(public_key_with(r).await, ErrorKind::Integrity, case);
    }

    // An algorithm this version of the client does not know, and a known one keymgr does
    // not sign with: Unsupported, naming it; never a guess from the key's name.
    for (case, algorithm, named) in [
        ("unknown algorithm number", json!(9999), "9999"),
        (
            "RSA algorithm",
            json!("RSA_SIGN_PSS_2048_SHA256"),
            "RSA_SIGN_PSS_2048_SHA256",
        ),
    ] {
        let mut r = doc.responses();
        let mut v = doc.version();
        v["algorithm"] = algorithm;
        r.version = json_reply(v);
        let e = expect_err(public_key_with(r).await, ErrorKind::Unsupported, case);
        assert!(e.to_string().contains(named), "{case}: {e}");
    }

    // Every documented state, by number or name, and one this client does not know,
    // parses: the key read is the served key. Refusing a version that is not ENABLED is
    // the service's answer (FAILED_PRECONDITION, see the status test below), which keymgr
    // does not second-guess from cached metadata.
    for (case, state) in [
        ("DISABLED", json!(2)),
        ("DESTROYED", json!("DESTROYED")),
        ("PENDING_GENERATION", json!(5)),
        ("unknown state", json!(777)),
    ] {
        let mut r = doc.responses();
        let mut v = doc.version();
        v["state"] = state;
        r.version = json_reply(v);
        let pk = public_key_with(r).await.expect(case);
        assert_eq!(pk, PublicKey::Secp256k1(*doc.key.verifying_key()), "{case}");
    }
}

fn status_body(http: u16, status: &str, message: &str) -> Reply {
    Reply {
        status: http,
        content_type: "application/json; charset=UTF-8",
        body: json!({"error": {
            "code": http, "message": message, "status": status,
            "details": [{
                "@type": "type.googleapis.com/google.rpc.RequestInfo",
                "requestId": "contract-req-1",
            }],
        }})
        .to_string(),
    }
}

#[tokio::test]
async fn google_rpc_status_bodies_map_to_kinds_and_keep_the_code() {
    let doc = Documented::new();
    for (http, status, code, kind) in [
        (404, "NOT_FOUND", Code::NotFound, ErrorKind::NotFound),
        (
            403,
            "PERMISSION_DENIED",
            Code::PermissionDenied,
            ErrorKind::AccessDenied,
        ),
        (
            401,
            "UNAUTHENTICATED",
            Code::Unauthenticated,
            ErrorKind::AccessDenied,
        ),
        (
            400,
            "FAILED_PRECONDITION",
            Code::FailedPrecondition,
            ErrorKind::AccessDenied,
        ),
        (
            400,
            "INVALID_ARGUMENT",
            Code::InvalidArgument,
            ErrorKind::InvalidInput,
        ),
        (
            429,
            "RESOURCE_EXHAUSTED",
            Code::ResourceExhausted,
            ErrorKind::Throttled,
        ),
        (
            503,
            "UNAVAILABLE",
            Code::Unavailable,
            ErrorKind::Unavailable,
        ),
        (
            504,
            "DEADLINE_EXCEEDED",
            Code::DeadlineExceeded,
            ErrorKind::Unavailable,
        ),
        (500, "INTERNAL", Code::Internal, ErrorKind::Unavailable),
        (500, "DATA_LOSS", Code::DataLoss, ErrorKind::Integrity),
        (
            501,
            "UNIMPLEMENTED",
            Code::Unimplemented,
            ErrorKind::Backend,
        ),
    ] {
        let case = format!("{http} {status}");
        let mut r = doc.responses();
        r.sign = status_body(http, status, "documented example message");
        let (out, calls) = sign_with(r).await;
        let e = expect_err(out, kind, &case);
        assert_eq!(calls, 1, "{case}: keymgr-gcp itself does not retry");
        assert_eq!(
            e.is_retryable(),
            matches!(kind, ErrorKind::Throttled | ErrorKind::Unavailable),
            "{case}"
        );
        // The message and request id are kept for support cases.
        let text = e.to_string();
        assert!(
            text.contains("documented example message") && text.contains("contract-req-1"),
            "{case}: {e}"
        );
        // Where the error keeps a cause, it is Google's status with its code.
        if let Some(kept) = google_code(&e) {
            assert_eq!(kept, code, "{case}");
        } else {
            assert!(
                matches!(
                    kind,
                    ErrorKind::NotFound | ErrorKind::InvalidInput | ErrorKind::Integrity
                ),
                "{case}: cause lost: {e}"
            );
        }
    }
}

#[tokio::test]
async fn non_google_error_bodies_map_by_http_status() {
    // A proxy or load balancer in front of the service answers with HTML.
    let doc = Documented::new();
    for (http, kind) in [
        (502, ErrorKind::Unavailable),
        (503, ErrorKind::Unavailable),
        (429, ErrorKind::Throttled),
        (403, ErrorKind::AccessDenied),
        (404, ErrorKind::NotFound),
    ] {
        let mut r = doc.responses();
        r.sign = Reply {
            status: http,
            content_type: "text/html; charset=UTF-8",
            body: "<!DOCTYPE html><html><body><h1>Error</h1></body></html>".into(),
        };
        let (out, _) = sign_with(r).await;
        expect_err(out, kind, &format!("HTML {http}"));
    }
    // The same for a google.rpc.Status on the getPublicKey path.
    let mut r = doc.responses();
    r.public_key = status_body(
        403,
        "PERMISSION_DENIED",
        "Permission 'cloudkms.cryptoKeyVersions.viewPublicKey' denied",
    );
    let e = expect_err(
        public_key_with(r).await,
        ErrorKind::AccessDenied,
        "getPublicKey 403",
    );
    assert_eq!(google_code(&e), Some(Code::PermissionDenied));
}
