//! The file log end to end: KeyManager events, group commit, recovery, segments,
//! retention, export, checkpoints, I/O failure policies and redaction.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use common::{TestDir, entries};
use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
use keymgr_audit::{
    AuditLog, BreakReason, ChainKey, Checkpoint, Durability, FailurePolicy, TimeRange, Verifier,
    events, export,
};
use keymgr_core::layer::RateLimitPolicy;
use keymgr_core::{
    AuditEvent, AuditRecord, AuditSink as _, Error, KeyBackend as _, KeyManager, KeyRef, Outcome,
    SignPayload,
};
use keymgr_env::EnvBackend;
use keymgr_testkit::fault::{Fault, Faulty};
use sha2::{Digest as _, Sha256};

fn rec(i: usize) -> AuditRecord {
    AuditRecord::new(AuditEvent::SignRequest, "env", "evm", Outcome::Pending)
        .detail("i", i.to_string())
}

fn verify_ok(dir: &std::path::Path) -> keymgr_audit::VerifyReport {
    let r = Verifier::default().verify_paths(&[dir]).unwrap();
    assert!(r.is_ok(), "{:?}", r.broken);
    r
}

#[tokio::test]
async fn key_manager_writes_the_right_events() {
    let dir = TestDir::new("manager");
    let log = AuditLog::open_with(&dir.config(), ChainKey::sha256()).unwrap();
    let env = Arc::new(Faulty::new(EnvBackend::generate()));
    let manager = KeyManager::builder(env.clone())
        .audit(Arc::new(log.clone()))
        .actor("settlement-service")
        .recommended_layers(keymgr_core::RecommendedLayers {
            retry: None,
            rate_limit: Some(RateLimitPolicy {
                limit: 2,
                per: Duration::from_secs(3600),
            }),
            ..Default::default()
        })
        .build();
    let evm = KeyRef::new("evm");
    let digest = [0x5A; 32];

    // 1. success, verified independently with k256.
    let sig = manager
        .sign(&evm, &SignPayload::Prehash(digest))
        .await
        .unwrap();
    let pk = manager.public_key(&evm).await.unwrap();
    let k = pk.as_secp256k1().unwrap();
    k.verify_prehash(&digest, sig.as_secp256k1().unwrap().as_k256())
        .unwrap();
    // 2. backend refuses access.
    env.inject(Fault::Fail(Error::access_denied("evm", "policy")));
    assert!(
        manager
            .sign(&evm, &SignPayload::Prehash(digest))
            .await
            .is_err()
    );
    // 3. rate limited (the limit is 2 per hour).
    let limited = manager.sign(&evm, &SignPayload::Prehash(digest)).await;
    assert!(
        matches!(limited, Err(Error::RateLimited { .. })),
        "{limited:?}"
    );
    // 4. KeyManager does not rotate (keymgr-rotation does); disabling on env is unsupported.
    assert!(manager.create_version("evm").await.is_err());
    assert!(
        manager
            .disable_version(&KeyRef::versioned("evm", "1"))
            .await
            .is_err()
    );
    drop(manager);

    let es = entries(dir.path());
    let events: Vec<&str> = es.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        events,
        [
            "SIGN_REQUEST",
            "SIGN_SUCCESS",
            "SIGN_REQUEST",
            "KEY_ACCESS_DENIED",
            "SIGN_REQUEST",
            "RATE_LIMITED",
            "KEY_DISABLED",
        ]
    );
    let digest_hex = hex::encode(Sha256::digest(digest));
    for e in &es[..6] {
        assert_eq!(e.key, "evm");
        assert_eq!(e.backend, "env");
        assert_eq!(e.node, "test-node");
        assert_eq!(e.actor.as_deref(), Some("settlement-service"));
        assert_eq!(e.payload_sha256.as_deref(), Some(digest_hex.as_str()));
    }
    assert_eq!(es[0].outcome, "pending");
    assert_eq!(es[1].outcome, "success");
    assert_eq!(es[1].details["algorithm"], "secp256k1");
    assert_eq!(es[3].outcome, "denied");
    assert_eq!(es[3].error_kind.as_deref(), Some("access_denied"));
    assert_eq!(es[5].error_kind.as_deref(), Some("rate_limited"));
    assert_eq!(es[6].error_kind.as_deref(), Some("unsupported"));
    assert_eq!(es[6].key_version.as_deref(), Some("1"));
    assert_eq!(es[6].outcome, "failure");
    // Durable: everything KeyManager acknowledged is already on disk, in one chain.
    let r = verify_ok(dir.path());
    assert_eq!(r.entries, 7);
    assert!(es.windows(2).all(|w| w[0].ts_ms <= w[1].ts_ms));
}

/// Fail-closed: a signature whose entries cannot be committed is not returned, and
/// while the disk fails, nothing is signed at all.
#[tokio::test]
async fn fail_closed_refuses_signing() {
    let dir = TestDir::new("fail-closed");
    let log = AuditLog::open_with(&dir.config(), ChainKey::sha256()).unwrap();
    let env = Arc::new(Faulty::new(EnvBackend::generate()));
    let manager = KeyManager::recommended(env.clone())
        .audit(Arc::new(log.clone()))
        .build();
    let evm = KeyRef::new("evm");
    manager
        .sign(&evm, &SignPayload::Prehash([1; 32]))
        .await
        .unwrap();
    log.inject_io_errors(2);
    // The commit carrying request and outcome fails: the signature is withheld.
    let err = manager
        .sign(&evm, &SignPayload::Prehash([2; 32]))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("audit-log") && msg.contains("space"), "{msg}");
    assert!(log.status().failing.is_some());
    assert_eq!(log.status().lost, 0, "the caller was told: nothing is lost");
    let calls = env.sign_calls();
    // While failing, the request must reach the disk first: refused before signing.
    assert!(
        manager
            .sign(&evm, &SignPayload::Prehash([2; 32]))
            .await
            .is_err()
    );
    assert_eq!(
        env.sign_calls(),
        calls,
        "signed although the audit entry failed"
    );
    // The disk recovers: signing works again, and the half-written batch left no trace.
    manager
        .sign(&evm, &SignPayload::Prehash([3; 32]))
        .await
        .unwrap();
    assert!(log.status().failing.is_none());
    let r = verify_ok(dir.path());
    assert_eq!(r.entries, 4);
    let es = entries(dir.path());
    assert!(
        !es.iter()
            .any(|e| e.payload_sha256 == Some(hex::encode(Sha256::digest([2u8; 32]))))
    );
}

/// Fail-open: recording "succeeds", an alarm is raised and an AUDIT_GAP entry records
/// how many entries were lost once the disk works again.
#[tokio::test]
async fn fail_open_continues_and_records_the_gap() {
    let dir = TestDir::new("fail-open");
    let mut cfg = dir.config();
    cfg.on_failure = FailurePolicy::FailOpen;
    let log = AuditLog::open_with(&cfg, ChainKey::sha256()).unwrap();
    log.record(rec(0)).await.unwrap();
    log.inject_io_errors(1);
    log.record(rec(1)).await.unwrap();
    assert_eq!(log.status().lost, 1);
    assert!(log.status().failing.is_some());
    log.record(rec(2)).await.unwrap();
    let es = entries(dir.path());
    let kinds: Vec<&str> = es.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(kinds, ["SIGN_REQUEST", events::GAP, "SIGN_REQUEST"]);
    assert_eq!(es[1].details["lost_entries"], "1");
    assert!(es[1].details["error"].contains("space"));
    assert_eq!(es[2].details["i"], "2");
    verify_ok(dir.path());
    assert!(log.status().failing.is_none());
}

/// Buffered + fail-closed: the failure is seen by `flush` and refuses later records.
#[tokio::test]
async fn buffered_fail_closed_refuses_after_an_error() {
    let dir = TestDir::new("buffered");
    let mut cfg = dir.config();
    cfg.durability = Durability::Buffered;
    let log = AuditLog::open_with(&cfg, ChainKey::sha256()).unwrap();
    for i in 0..10 {
        log.record(rec(i)).await.unwrap();
    }
    assert_eq!(log.flush().await.unwrap().seq, 10);
    log.inject_io_errors(1);
    log.record(rec(10)).await.unwrap(); // queued: the caller cannot know yet
    assert!(log.flush().await.is_err());
    assert!(log.record(rec(11)).await.is_err());
    verify_ok(dir.path());
}

#[tokio::test]
async fn group_commit_shares_fsyncs() {
    let dir = TestDir::new("group");
    let log = AuditLog::open_with(&dir.config(), ChainKey::sha256()).unwrap();
    let mut tasks = Vec::new();
    for t in 0..8 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..50 {
                log.record(rec(t * 1000 + i)).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let s = log.status();
    assert_eq!(s.written, 400);
    assert!(
        s.commits < s.written,
        "every entry had its own fsync: {s:?}"
    );
    assert_eq!(verify_ok(dir.path()).entries, 400);
}

/// A request whose outcome never comes (its caller went away) stalls nothing: every
/// later signature returns after its entries (and the abandoned request, which rides in
/// the next commit) are on disk, with one fsync each.
#[tokio::test]
async fn an_abandoned_request_does_not_stall_later_signatures() {
    let dir = TestDir::new("abandoned");
    let log = AuditLog::open_with(&dir.config(), ChainKey::sha256()).unwrap();
    let manager = KeyManager::builder(Arc::new(EnvBackend::generate()))
        .audit(Arc::new(log.clone()))
        .build();
    let key = KeyRef::new("evm");
    manager
        .sign(&key, &SignPayload::Prehash([0; 32]))
        .await
        .unwrap();
    log.record_request(rec(1)).await.unwrap();
    let before = log.status();
    for i in 1..=5u8 {
        manager
            .sign(&key, &SignPayload::Prehash([i; 32]))
            .await
            .unwrap();
        // The abandoned request, then both entries of every signature so far.
        assert_eq!(log.status().written, 3 + 2 * u64::from(i));
    }
    let s = log.status();
    assert!(s.fsyncs - before.fsyncs <= 5, "{before:?} -> {s:?}");
    assert_eq!(verify_ok(dir.path()).entries, 13);
}

/// One durable write per signature: the request rides in the outcome's commit.
#[tokio::test]
async fn sequential_durable_signing_takes_one_fsync_per_signature() {
    let dir = TestDir::new("one-fsync");
    let log = AuditLog::open_with(&dir.config(), ChainKey::sha256()).unwrap();
    let manager = KeyManager::builder(Arc::new(EnvBackend::generate()))
        .audit(Arc::new(log.clone()))
        .build();
    // The first signature creates the segment (file and directory syncs); count after.
    manager
        .sign(&KeyRef::new("evm"), &SignPayload::Prehash([0; 32]))
        .await
        .unwrap();
    let before = log.status();
    for i in 1..20u8 {
        manager
            .sign(&KeyRef::new("evm"), &SignPayload::Prehash([i; 32]))
            .await
            .unwrap();
        // Returned only after both entries are on disk.
        assert_eq!(log.status().written, 2 * (u64::from(i) + 1));
    }
    let s = log.status();
    // Every fsync the writer issued, counted where it is issued (not inferred).
    assert!(s.fsyncs - before.fsyncs <= 19, "{before:?} -> {s:?}");
    assert!(s.fsyncs >= s.commits, "{s:?}");
    let es = entries(dir.path());
    assert_eq!(es.len(), 40);
    assert!(
        es.chunks(2)
            .all(|p| p[0].event == "SIGN_REQUEST" && p[1].event == "SIGN_SUCCESS")
    );

    // A request alone (its outcome never comes) still reaches the disk.
    log.record_request(rec(0)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(log.status().written, 41);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_a_torn_tail_and_continues_the_chain() {
    let dir = TestDir::new("torn");
    {
        let log = AuditLog::open_with(&dir.config(), ChainKey::sha256()).unwrap();
        for i in 0..5 {
            log.record(rec(i)).await.unwrap();
        }
    }
    let file = common::segment_files(dir.path())[0].clone();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap();
    f.write_all(b"{\"seq\":6,\"ts_ms\":17").unwrap();
    drop(f);
    let torn = Verifier::default().verify_paths(&[dir.path()]).unwrap();
    assert_eq!(torn.broken.unwrap().reason, BreakReason::TruncatedLine);

    let log = AuditLog::open_with(&dir.config(), ChainKey::sha256()).unwrap();
    assert_eq!(log.status().torn_bytes_recovered, 19);
    log.record(rec(5)).await.unwrap();
    assert_eq!(log.flush().await.unwrap().seq, 6);
    drop(log);
    let r = verify_ok(dir.path());
    assert_eq!(r.entries, 6);
    let saved: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".torn-"))
        .collect();
    assert_eq!(saved.len(), 1, "the torn bytes are kept for forensics");
}

/// Damage before the end is not a crash artifact: opening refuses rather than cutting
/// acknowledged entries.
#[tokio::test]
async fn refuses_to_append_to_a_damaged_log() {
    let dir = TestDir::new("damaged");
    {
        let log = AuditLog::open_with(&dir.config(), ChainKey::sha256()).unwrap();
        for i in 0..5 {
            log.record(rec(i)).await.unwrap();
        }
    }
    let file = common::segment_files(dir.path())[0].clone();
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replacen("\"i\":\"2\"", "\"i\":\"9\"", 1)).unwrap();
    let err = AuditLog::open_with(&dir.config(), ChainKey::sha256()).unwrap_err();
    assert_eq!(err.kind(), keymgr_core::ErrorKind::Integrity, "{err}");
    assert!(err.to_string().contains("seq 3"), "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap().lines().count(), 5);
}

#[tokio::test]
async fn segments_export_and_retention() {
    let dir = TestDir::new("segments");
    let mut cfg = dir.config();
    cfg.segment_max_bytes = 4096;
    cfg.segment_daily = false;
    let log = AuditLog::open_with(&cfg, ChainKey::sha256()).unwrap();
    let mut marks = Vec::new();
    for i in 0..120usize {
        if i.is_multiple_of(30) {
            tokio::time::sleep(Duration::from_millis(5)).await;
            marks.push(keymgr_audit::time::now_ms());
        }
        log.record(rec(i)).await.unwrap();
    }
    let files = common::segment_files(dir.path());
    assert!(files.len() >= 4, "{files:?}");
    assert_eq!(verify_ok(dir.path()).entries, 120);

    // Export the entries written between the 2nd and 3rd marks.
    let range = TimeRange::parse(
        Some(&keymgr_audit::time::format_rfc3339(marks[1])),
        Some(&keymgr_audit::time::format_rfc3339(marks[2])),
    )
    .unwrap();
    let mut out = Vec::new();
    let report = export(&[dir.path()], range, &Verifier::default(), &mut out).unwrap();
    assert!(report.broken.is_none());
    assert_eq!(report.scanned, 120);
    let exported: Vec<keymgr_audit::Entry> = out
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| keymgr_audit::Entry::parse(l).unwrap())
        .collect();
    assert_eq!(exported.len() as u64, report.exported);
    assert!(exported.iter().all(|e| range.contains(e.ts_ms)));
    let is: Vec<usize> = exported
        .iter()
        .map(|e| e.details["i"].parse().unwrap())
        .collect();
    assert_eq!(is, (30..60).collect::<Vec<_>>());

    // Retention as of "365 days after the 3rd mark" removes the segments entirely older.
    let year = 365 * 86_400_000;
    let removed = log.apply_retention(marks[2] + year).await.unwrap();
    assert!(removed >= 1);
    let after = verify_ok(dir.path());
    assert!(after.first_seq.unwrap() > 1);
    let es = entries(dir.path());
    let ret = es.iter().find(|e| e.event == events::RETENTION).unwrap();
    assert_eq!(
        ret.details["pruned_through_seq"],
        (after.first_seq.unwrap() - 1).to_string()
    );
    // Deleting one more old segment by hand is detected.
    let first = common::segment_files(dir.path())[0].clone();
    std::fs::remove_file(first).unwrap();
    let r = Verifier::default().verify_paths(&[dir.path()]).unwrap();
    assert!(
        matches!(
            r.broken.as_ref().unwrap().reason,
            BreakReason::UnanchoredStart { .. }
        ),
        "{r:?}"
    );
}

#[tokio::test]
async fn signed_checkpoints_verify_independently() {
    let dir = TestDir::new("checkpoint");
    let backend = Arc::new(EnvBackend::generate());
    for key_name in ["evm", "xrp"] {
        let sub = dir.path().join(key_name);
        let mut cfg = dir.config();
        cfg.dir = sub.clone();
        let log = AuditLog::with_checkpoint_signer(
            &cfg,
            ChainKey::sha256(),
            backend.clone(),
            KeyRef::new(key_name),
        )
        .unwrap();
        for i in 0..3 {
            log.record(rec(i)).await.unwrap();
        }
        let cp: Checkpoint = log.checkpoint().await.unwrap();
        assert_eq!(cp.seq, 3);
        log.record(rec(3)).await.unwrap();
        drop(log);

        // Independent verification of the signature over the documented message.
        let pk = backend.public_key(&KeyRef::new(key_name)).await.unwrap();
        let msg = cp.signed_message();
        assert!(msg.starts_with(b"keymgr-audit checkpoint v2\nnode=test-node\nseq=3\n"));
        let sig = hex::decode(&cp.signature).unwrap();
        match key_name {
            "evm" => {
                let s = k256::ecdsa::Signature::from_slice(&sig).unwrap();
                let prehash: [u8; 32] = Sha256::digest(&msg).into();
                pk.as_secp256k1()
                    .unwrap()
                    .verify_prehash(&prehash, &s)
                    .unwrap();
            }
            _ => {
                let s = ed25519_dalek::Signature::from_slice(&sig).unwrap();
                pk.as_ed25519().unwrap().verify_strict(&msg, &s).unwrap();
            }
        }
        let r = Verifier::default().trust(pk).verify_paths(&[&sub]).unwrap();
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(r.checkpoints, 1);
        assert_eq!(r.last_trusted_checkpoint, Some((3, cp.hash.clone())));
        let es = entries(&sub);
        assert_eq!(es[3].event, events::CHECKPOINT);
        assert_eq!(es[2].hash, cp.hash);
    }
}

/// A checkpoint whose signature was replaced (and the chain recomputed) is rejected.
#[tokio::test]
async fn forged_checkpoint_is_rejected() {
    let dir = TestDir::new("checkpoint-forged");
    let backend = Arc::new(EnvBackend::generate());
    let log = AuditLog::with_checkpoint_signer(
        &dir.config(),
        ChainKey::sha256(),
        backend,
        KeyRef::new("xrp"),
    )
    .unwrap();
    log.record(rec(0)).await.unwrap();
    log.checkpoint().await.unwrap();
    drop(log);
    let mut es = entries(dir.path());
    let sig = es[1].details.get_mut("signature").unwrap();
    // Flip a bit of R (the top byte of S is often already 0, so zeroing it may change nothing).
    let first = u8::from_str_radix(&sig[..2], 16).unwrap() ^ 1;
    *sig = format!("{first:02x}{}", &sig[2..]);
    let mut h = Sha256::new();
    h.update(b"keymgr-audit/v1\n");
    h.update(es[1].canonical_body());
    es[1].hash = hex::encode(h.finalize());
    let mut out = Vec::new();
    for e in &es {
        out.extend_from_slice(&e.canonical_line());
        out.push(b'\n');
    }
    std::fs::write(&common::segment_files(dir.path())[0], out).unwrap();
    let r = Verifier::default().verify_paths(&[dir.path()]).unwrap();
    let b = r.broken.unwrap();
    assert_eq!(b.seq, 2);
    assert!(matches!(b.reason, BreakReason::BadCheckpoint { .. }), "{b}");
}

#[tokio::test]
async fn sink_from_vars_falls_back_to_tracing() {
    let sink = keymgr_audit::sink_from_vars(|_| None, None).await.unwrap();
    assert!(format!("{sink:?}").contains("TracingAuditSink"));
    let dir = TestDir::new("from-vars");
    let path = dir.path().to_string_lossy().into_owned();
    let sink = keymgr_audit::sink_from_vars(
        move |k| (k == "KEYMGR_AUDIT_PATH").then(|| path.clone()),
        None,
    )
    .await
    .unwrap();
    sink.record(rec(0)).await.unwrap();
    drop(sink);
    assert_eq!(verify_ok(dir.path()).entries, 1);
    // A checkpoint key without a backend to sign with is a configuration error.
    let path = dir.path().to_string_lossy().into_owned();
    let err = keymgr_audit::sink_from_vars(
        move |k| match k {
            "KEYMGR_AUDIT_PATH" => Some(path.clone()),
            "KEYMGR_AUDIT_CHECKPOINT_KEY" => Some("audit".into()),
            _ => None,
        },
        None,
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("KEYMGR_AUDIT_CHECKPOINT_KEY"),
        "{err}"
    );
}
