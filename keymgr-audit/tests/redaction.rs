//! Redaction: secrets handed to the audit log never reach the file, the `tracing`
//! output or `Debug`. (Its own test binary, so the global subscriber sees everything.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};

use common::TestDir;
use keymgr_audit::{AuditLog, ChainKey, Verifier};
use keymgr_core::{AuditEvent, AuditRecord, AuditSink as _, Outcome};

/// A writer for tracing output captured in memory.
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
async fn no_secret_reaches_the_file_or_tracing() {
    // rippled's documented example seed (public test vector, never funded).
    const SEED: &str = "sEdSKaCy2JT7JaM7v95H9SxkhP9wS2r";
    const PIN: &str = "918273";
    const TOKEN: &str = "tok_9f8e7d6c5b4a";
    const CLIENT_SECRET: &str = "cs~Zq8xW2vN4";
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    // The only test in this binary: a global subscriber sees every thread's events.
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let dir = TestDir::new("redaction");
    // The node id is redacted like the actor (an operator pasted the wrong variable).
    let mut cfg = dir.config();
    cfg.node_id = format!("api-1 token={TOKEN}");
    let log = AuditLog::open_with(&cfg, ChainKey::hmac(&[7; 32]).unwrap()).unwrap();
    let mut r = AuditRecord::new(AuditEvent::SignFailure, "hsm", "evm", Outcome::Failure)
        .detail("pin", PIN)
        .detail("HSM_PIN", PIN)
        .detail("client_secret", CLIENT_SECRET)
        .detail("token", TOKEN)
        .detail("seed", SEED)
        .detail(
            "error",
            format!("login failed with PIN {PIN}; seed {SEED}; token={TOKEN}"),
        )
        .detail("algorithm", "secp256k1");
    r.actor = Some(format!("ops password={CLIENT_SECRET}"));
    log.record(r).await.unwrap();
    let dbg = format!("{log:?}");
    drop(log);

    let file = std::fs::read_to_string(&common::segment_files(dir.path())[0]).unwrap();
    let traced = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        traced.contains("keymgr::audit") && traced.contains("SIGN_FAILURE"),
        "{traced}"
    );
    for (what, text) in [("file", &file), ("tracing", &traced), ("debug", &dbg)] {
        for secret in [PIN, TOKEN, CLIENT_SECRET, SEED] {
            assert!(
                !text.contains(secret),
                "{secret} reached the {what}: {text}"
            );
        }
    }
    assert!(file.contains("[REDACTED]") && file.contains("secp256k1"));
    assert!(
        file.contains("\"node\":\"api-1 token=[REDACTED]\""),
        "{file}"
    );
    assert_eq!(
        Verifier::new(ChainKey::hmac(&[7; 32]).unwrap())
            .verify_paths(&[dir.path()])
            .unwrap()
            .entries,
        1
    );
}
