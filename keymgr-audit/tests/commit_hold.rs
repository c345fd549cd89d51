//! Group commit across concurrent operations (`AuditConfig::commit_delay`): a durable
//! commit waits for the outcomes of other operations in flight so that one fsync covers
//! them, never holds a lone operation, and forgets an operation whose outcome never comes.
//!
//! The delays here are seconds long on purpose: each test would take at least that long
//! if the hold ended by its deadline instead of by the event it tests, so the bounds
//! below have wide margins even on a loaded machine.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{TestDir, entries};
use keymgr_audit::{AuditLog, ChainKey};
use keymgr_core::{AuditEvent, AuditRecord, AuditSink as _, Outcome};
use tokio::sync::Barrier;

const LONG: Duration = Duration::from_secs(6);

fn open(dir: &TestDir, delay: Duration) -> AuditLog {
    let mut config = dir.config();
    config.commit_delay = delay;
    AuditLog::open_with(&config, ChainKey::sha256()).unwrap()
}

fn request(op: usize) -> AuditRecord {
    AuditRecord::new(AuditEvent::SignRequest, "env", "evm", Outcome::Pending)
        .detail("op", op.to_string())
}

fn outcome(op: usize) -> AuditRecord {
    AuditRecord::new(AuditEvent::SignSuccess, "env", "evm", Outcome::Success)
        .detail("op", op.to_string())
}

/// One operation as `KeyManager::sign` records it: the request, then the outcome.
async fn operation(log: &AuditLog, op: usize) {
    log.record_request(request(op)).await.unwrap();
    log.record(outcome(op)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_outcomes_share_one_commit() {
    const OPS: usize = 16;
    let dir = TestDir::new("hold-share");
    let log = open(&dir, LONG);
    operation(&log, 0).await; // creates the segment (file and directory syncs)
    let before = log.status();
    // Every request is in flight before the first outcome; the test holds back the last.
    let requested = Arc::new(Barrier::new(OPS)); // OPS - 1 tasks and this one
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (1..OPS)
        .map(|op| {
            let (log, requested) = (log.clone(), requested.clone());
            let acknowledged = acknowledged.clone();
            tokio::spawn(async move {
                log.record_request(request(op)).await.unwrap();
                requested.wait().await;
                log.record(outcome(op)).await.unwrap();
                acknowledged.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    log.record_request(request(OPS)).await.unwrap();
    requested.wait().await;
    // The other outcomes wait for the last one in flight (or the 6 s deadline).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        acknowledged.load(Ordering::SeqCst),
        0,
        "a held outcome was acknowledged"
    );
    assert_eq!(log.status().in_flight, 1);
    let started = Instant::now();
    log.record(outcome(OPS)).await.unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    // The last outcome ended the hold, not the deadline.
    assert!(started.elapsed() < LONG / 2, "held {:?}", started.elapsed());
    let s = log.status();
    assert_eq!(s.written - before.written, 2 * OPS as u64);
    assert_eq!(s.in_flight, 0);
    // One commit for the outcomes (plus one if the requests' 100 ms deferral ran out
    // while the barrier filled).
    assert!(s.fsyncs - before.fsyncs <= 2, "{before:?} -> {s:?}");
    assert_eq!(entries(dir.path()).len(), 2 + 2 * OPS);
}

#[tokio::test]
async fn a_lone_operation_is_never_held() {
    let dir = TestDir::new("hold-lone");
    let log = open(&dir, LONG);
    operation(&log, 0).await;
    let before = log.status();
    let started = Instant::now();
    for op in 1..=5 {
        operation(&log, op).await;
    }
    assert!(started.elapsed() < LONG / 2, "held {:?}", started.elapsed());
    let s = log.status();
    assert_eq!(s.written - before.written, 10);
    assert_eq!(s.in_flight, 0);
}

/// An operation whose outcome never comes (its future was dropped after the request)
/// holds at most the next commit, once; after that hold saw nothing arrive, it is
/// forgotten and later operations are not held.
#[tokio::test]
async fn an_abandoned_operation_holds_one_commit_at_most() {
    let dir = TestDir::new("hold-abandoned");
    let delay = Duration::from_secs(3);
    let log = open(&dir, delay);
    operation(&log, 0).await;
    log.record_request(request(99)).await.unwrap(); // never completed
    let started = Instant::now();
    operation(&log, 1).await;
    let first = started.elapsed();
    let started = Instant::now();
    for op in 2..=4 {
        operation(&log, op).await;
    }
    let later = started.elapsed();
    assert!(first < delay * 2, "held {first:?}");
    assert!(
        later < delay / 2,
        "held again after the hold expired: {later:?}"
    );
    assert_eq!(entries(dir.path()).len(), 2 + 1 + 2 * 4);
}
