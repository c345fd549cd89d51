//! The client secret and the bearer tokens never appear in `Debug` output, errors or
//! logs (captured at TRACE level, the SDK's included); a wrong secret is access denied.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use keymgr_azure::AzureKvBackend;
use keymgr_core::{ErrorKind, KeyBackend, KeyRef, SignPayload};
use support::{Fault, SECRET, StandIn, config, fixture, vars};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn assert_clean(text: &str, secrets: &[String]) {
    for s in secrets {
        assert!(!text.contains(s.as_str()), "secret leaked: {text}");
    }
}

#[tokio::test]
async fn secrets_never_in_debug_errors_or_logs() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let (stand_in, b) = fixture().await;
    let mut texts = vec![format!("{b:?}"), format!("{:?}", b.config())];
    b.sign(
        &KeyRef::new("evm"),
        &SignPayload::prehash(&[1; 32]).unwrap(),
    )
    .await
    .unwrap();
    for fault in [Fault::Throttled, Fault::Malformed] {
        stand_in.inject("sign", fault);
        let e = b
            .sign(
                &KeyRef::new("evm"),
                &SignPayload::prehash(&[1; 32]).unwrap(),
            )
            .await
            .unwrap_err();
        texts.push(format!("{e} {e:?}"));
    }
    texts.push(String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned());
    let tokens: Vec<String> = stand_in
        .authorizations()
        .iter()
        .map(|a| a.trim_start_matches("Bearer ").to_owned())
        .collect();
    assert!(!tokens.is_empty(), "the stand-in saw the bearer token");
    let mut secrets = tokens;
    secrets.push(SECRET.to_owned());
    for t in &texts {
        assert_clean(t, &secrets);
    }
}

#[tokio::test]
async fn wrong_client_secret_is_access_denied_without_the_secret() {
    let stand_in = StandIn::start(SECRET).await;
    stand_in.create_secp256k1("evm-signer");
    let wrong = "not-the-SECRET-0000";
    let v = vars(
        &stand_in,
        &[
            ("AZURE_EVM_KEY_NAME", "evm-signer"),
            ("AZURE_CLIENT_SECRET", wrong),
        ],
    );
    let b = AzureKvBackend::new(config(&v)).unwrap();
    let e = b.public_key(&KeyRef::new("evm")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");
    assert_clean(
        &format!("{e} {e:?} {b:?}"),
        &[wrong.to_owned(), SECRET.to_owned()],
    );
    assert_eq!(stand_in.calls("token"), 1);
    assert_eq!(
        b.health().await.status,
        keymgr_core::HealthStatus::Unhealthy
    );
}
