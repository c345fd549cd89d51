//! Credentials (a service-account key and the bearer tokens made from it) never reach
//! `Debug`, errors or logs. Its own test binary, so the global subscriber sees every
//! event, including the Google client's own tracing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, Mutex};

use google_cloud_gax::retry_policy::NeverRetry;
use google_cloud_kms_v1::client::KeyManagementService;
use keymgr_core::{KeyBackend, KeyRef, SignPayload};
use keymgr_gcp::GcpKmsBackend;
use support::{Algorithm, Fault, StandIn};

/// A throw-away RSA key generated for this test only (never a real service account).
const PRIVATE_KEY: &str = include_str!("support/test-service-account-key.pem");
const PRIVATE_KEY_ID: &str = "0123456789abcdef0123456789abcdef01234567";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn service_account_key_and_tokens_never_leak() {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let stand_in = StandIn::start().await;
    let evm = stand_in.create_key("evm", Algorithm::Secp256k1);
    let key = serde_json::json!({
        "type": "service_account",
        "project_id": "keymgr-test",
        "private_key_id": PRIVATE_KEY_ID,
        "private_key": PRIVATE_KEY,
        "client_email": "keymgr@keymgr-test.iam.gserviceaccount.com",
        "client_id": "1234567890",
        "token_uri": "http://127.0.0.1:1/token",
    });
    let credentials = google_cloud_auth::credentials::service_account::Builder::new(key)
        .build()
        .unwrap();
    let client = KeyManagementService::builder()
        .with_endpoint(stand_in.endpoint())
        .with_credentials(credentials)
        .with_retry_policy(NeverRetry)
        .with_tracing()
        .build()
        .await
        .unwrap();
    let b = GcpKmsBackend::from_client(
        client,
        [("evm".to_owned(), evm.clone())].into_iter().collect(),
    );
    let evm_key = KeyRef::new("evm");
    support::sign_and_check(&b, &evm_key).await.unwrap();
    let tokens = stand_in.authorizations();
    assert!(
        tokens.iter().any(|t| t.starts_with("Bearer ")),
        "the client did not authenticate with the service account: {tokens:?}"
    );

    let mut texts = vec![("backend Debug", format!("{b:?}"))];
    for fault in [
        Fault::Status(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials.".into(),
        ),
        Fault::Status(
            403,
            "PERMISSION_DENIED",
            "Permission 'cloudkms.cryptoKeyVersions.useToSign' denied".into(),
        ),
        Fault::Malformed,
        Fault::Unavailable,
    ] {
        stand_in.inject("asymmetricSign", fault);
        let e = b
            .sign(&evm_key, &SignPayload::Prehash([1; 32]))
            .await
            .unwrap_err();
        texts.push(("error", e.to_string()));
        texts.push(("error Debug", format!("{e:?}")));
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            texts.push(("error source", format!("{s} {s:?}")));
            source = s.source();
        }
    }
    // A checksum retry logs a warning with the error.
    stand_in.inject("asymmetricSign", Fault::WrongChecksum);
    support::sign_and_check(&b, &evm_key).await.unwrap();
    let health = b.health().await;
    texts.push(("health", format!("{health:?}")));
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("checksum mismatch"), "{logs}");
    eprintln!("captured {} bytes of logs", logs.len());
    texts.push(("logs", logs));
    // The key's body (any line of it), its id, and every token the server received.
    let mut secrets: Vec<String> = PRIVATE_KEY
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::to_owned)
        .collect();
    secrets.push(PRIVATE_KEY_ID.to_owned());
    for t in &tokens {
        let token = t.trim_start_matches("Bearer ");
        secrets.push(token.to_owned());
        // The JWT's signature part alone, too.
        if let Some(sig) = token.rsplit('.').next() {
            secrets.push(sig.to_owned());
        }
    }
    for (what, text) in &texts {
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "a credential reached the {what}: {text}"
            );
        }
    }
}
