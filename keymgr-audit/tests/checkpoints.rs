//! Checkpoints published outside the log detect what a chain alone cannot: a cut-off
//! tail, whole segments deleted, and a replaced (re-chained) log.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::TestDir;
use keymgr_audit::publish::{check_published, read_published};
use keymgr_audit::{AuditConfig, AuditLog, BreakReason, ChainKey, Checkpoint, Verifier};
use keymgr_core::{AuditEvent, AuditRecord, AuditSink as _, Error, KeyBackend, KeyRef, Outcome};
use keymgr_env::EnvBackend;

struct Published {
    _root: TestDir,
    log: PathBuf,
    file: PathBuf,
    backend: Arc<dyn KeyBackend>,
}

fn config(log: &Path, file: &Path) -> AuditConfig {
    let mut c = AuditConfig::new(log);
    c.node_id = "node-a".into();
    c.segment_max_bytes = 4096;
    c.segment_daily = false;
    c.checkpoint_key = Some(KeyRef::new("xrp"));
    c.checkpoint_file = Some(file.to_path_buf());
    c
}

async fn append(log: &AuditLog, n: usize) {
    for i in 0..n {
        let r = AuditRecord::new(AuditEvent::SignSuccess, "env", "evm", Outcome::Success)
            .detail("i", i.to_string());
        log.record(r).await.unwrap();
    }
}

/// 3 rounds of 20 entries + a checkpoint, across two writer lifetimes, then 5 more.
async fn published(tag: &str) -> Published {
    let root = TestDir::new(tag);
    let log = root.path().join("log");
    let file = root.path().join("elsewhere/checkpoints.jsonl");
    let backend: Arc<dyn KeyBackend> = Arc::new(EnvBackend::generate());
    for round in 0..3 {
        let w = AuditLog::open(config(&log, &file), Some(backend.clone()))
            .await
            .unwrap();
        append(&w, 20).await;
        w.checkpoint().await.unwrap();
        if round == 2 {
            append(&w, 5).await;
        }
    }
    Published {
        _root: root,
        log,
        file,
        backend,
    }
}

fn verify(p: &Published, key: ChainKey) -> keymgr_audit::VerifyReport {
    let cps = read_published(&p.file).unwrap();
    check_published(&cps, &[], "test").unwrap();
    Verifier::new(key)
        .checkpoints(&cps)
        .verify_paths(&[&p.log])
        .unwrap()
}

#[tokio::test]
async fn published_checkpoints_chain_and_verify() {
    let p = published("cp-ok").await;
    let cps = read_published(&p.file).unwrap();
    assert_eq!(cps.len(), 3);
    // Each names its predecessor, across writer restarts.
    assert_eq!(
        (cps[0].prev_seq, cps[0].prev_hash.as_str()),
        (0, keymgr_audit::GENESIS_HASH)
    );
    for w in cps.windows(2) {
        assert_eq!((w[1].prev_seq, &w[1].prev_hash), (w[0].seq, &w[0].hash));
    }
    // Checked independently with ed25519-dalek against the backend's public key.
    let pk = p.backend.public_key(&KeyRef::new("xrp")).await.unwrap();
    for cp in &cps {
        let sig =
            ed25519_dalek::Signature::from_slice(&hex::decode(&cp.signature).unwrap()).unwrap();
        pk.as_ed25519()
            .unwrap()
            .verify_strict(&cp.signed_message(), &sig)
            .unwrap();
    }
    let r = verify(&p, ChainKey::sha256());
    assert!(r.is_ok(), "{:?}", r.broken);
    assert_eq!(r.external_points, 3);
    assert!(r.checkpoints >= 3);
    use std::os::unix::fs::MetadataExt as _;
    assert_eq!(std::fs::metadata(&p.file).unwrap().mode() & 0o777, 0o600);
}

#[tokio::test]
async fn tail_truncation_is_detected() {
    let p = published("cp-trunc").await;
    let cps = read_published(&p.file).unwrap();
    // Cut the log right before the last checkpointed entry, at a line boundary.
    let last_cp = cps.last().unwrap().seq;
    for seg in common::segment_files(&p.log) {
        let text = std::fs::read_to_string(&seg).unwrap();
        let kept: String = text
            .lines()
            .filter(|l| keymgr_audit::Entry::parse(l.as_bytes()).unwrap().seq < last_cp)
            .map(|l| format!("{l}\n"))
            .collect();
        if kept.is_empty() {
            std::fs::remove_file(&seg).unwrap();
        } else {
            std::fs::write(&seg, kept).unwrap();
        }
    }
    // The chain alone is fine with it ...
    assert!(Verifier::default().verify_paths(&[&p.log]).unwrap().is_ok());
    // ... the published checkpoints are not.
    let b = verify(&p, ChainKey::sha256()).broken.unwrap();
    assert!(
        matches!(b.reason, BreakReason::MissingTail { expected_seq, .. } if expected_seq == last_cp),
        "{b}"
    );
}

#[tokio::test]
async fn deleted_segments_are_detected() {
    let p = published("cp-segments").await;
    let segs = common::segment_files(&p.log);
    assert!(segs.len() >= 3);
    // The newest segments, whole.
    for seg in &segs[segs.len() - 2..] {
        std::fs::remove_file(seg).unwrap();
    }
    assert!(Verifier::default().verify_paths(&[&p.log]).unwrap().is_ok());
    let b = verify(&p, ChainKey::sha256()).broken.unwrap();
    assert!(matches!(b.reason, BreakReason::MissingTail { .. }), "{b}");
}

/// Someone with write access replaces the whole unkeyed log with a fresh, internally
/// consistent one (same node id, longer). (Without the HMAC key a keyed log cannot be
/// re-chained at all: its hashes fail, checkpoints or not.)
#[tokio::test]
async fn a_replaced_log_is_detected() {
    {
        let p = published("cp-replaced").await;
        let n = common::entries(&p.log).len();
        std::fs::remove_dir_all(&p.log).unwrap();
        let mut forged = AuditConfig::new(&p.log);
        forged.node_id = "node-a".into();
        let w = AuditLog::open_with(&forged, ChainKey::sha256()).unwrap();
        append(&w, n + 10).await;
        drop(w);
        let b = Verifier::new(ChainKey::sha256())
            .checkpoints(&read_published(&p.file).unwrap())
            .verify_paths(&[&p.log])
            .unwrap()
            .broken
            .unwrap();
        assert!(
            matches!(b.reason, BreakReason::AnchorMismatch { .. }),
            "{b}"
        );
        // Renaming the node does not escape: its checkpoints then match no log.
        std::fs::remove_dir_all(&p.log).unwrap();
        let mut renamed = AuditConfig::new(&p.log);
        renamed.node_id = "node-b".into();
        append(
            &AuditLog::open_with(&renamed, ChainKey::sha256()).unwrap(),
            3,
        )
        .await;
        let v = Verifier::default().checkpoints(&read_published(&p.file).unwrap());
        let r = v.verify_paths(&[&p.log]).unwrap();
        assert_eq!(v.unmatched_nodes([&r]), vec!["node-a".to_owned()]);
    }
}

#[tokio::test]
async fn a_removed_or_forged_published_checkpoint_is_detected() {
    let p = published("cp-file").await;
    let cps = read_published(&p.file).unwrap();
    let removed: Vec<Checkpoint> = vec![cps[0].clone(), cps[2].clone()];
    assert!(matches!(
        check_published(&removed, &[], "file"),
        Err(Error::Integrity { .. })
    ));
    let mut forged = cps.clone();
    forged[2].seq += 1;
    assert!(check_published(&forged, &[], "file").is_err());
    let other = EnvBackend::generate()
        .public_key(&KeyRef::new("xrp"))
        .await
        .unwrap();
    assert!(check_published(&cps, &[other], "file").is_err());
    let pk = p.backend.public_key(&KeyRef::new("xrp")).await.unwrap();
    check_published(&cps, &[pk], "file").unwrap();
}

#[tokio::test]
async fn checkpoint_settings_fail_at_start_up() {
    let root = TestDir::new("cp-config");
    let log = root.path().join("log");
    let backend: Arc<dyn KeyBackend> = Arc::new(EnvBackend::generate());
    // A key the backend does not have.
    let mut c = config(&log, &root.path().join("cp.jsonl"));
    c.checkpoint_key = Some(KeyRef::new("no-such-key"));
    match AuditLog::open(c, Some(backend.clone())).await.unwrap_err() {
        Error::Config { variable, .. } => assert_eq!(variable, "KEYMGR_AUDIT_CHECKPOINT_KEY"),
        other => panic!("{other:?}"),
    }
    // A checkpoint file inside the log directory.
    let c = config(&log, &log.join("cp.jsonl"));
    match AuditLog::open(c, Some(backend)).await.unwrap_err() {
        Error::Config { variable, .. } => assert_eq!(variable, "KEYMGR_AUDIT_CHECKPOINT_FILE"),
        other => panic!("{other:?}"),
    }
}
