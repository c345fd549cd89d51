//! Ways forward from every state: a dead rotator's lease and lock, a vanished version,
//! a lost state store, and the approval flow's refusals and expiries.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use keymgr_core::{AuditEvent, AuditRecord, AuditSink, Error, ErrorKind, KeyAlgorithm, KeyBackend};
use keymgr_rotation::{
    FileStateStore, Lifecycle, ManualClock, MemoryStateStore, Phase, ProcessId, RequestKind,
    RotationEvent, RotationPolicy, Rotator, StateStore,
};
use keymgr_testkit::fault::{Fault, Faulty};
use keymgr_testkit::memory::MemoryBackend;

const DAY: Duration = Duration::from_secs(86_400);
const KEY: &str = "evm-settlement";

#[derive(Debug, Default)]
struct Events(Mutex<Vec<AuditRecord>>);

#[async_trait]
impl AuditSink for Events {
    async fn record(&self, record: AuditRecord) -> keymgr_core::Result<()> {
        self.0.lock().unwrap().push(record);
        Ok(())
    }
}

impl Events {
    fn of(&self, event: AuditEvent) -> Vec<AuditRecord> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.event == event)
            .cloned()
            .collect()
    }
}

fn rotator(
    backend: Arc<dyn KeyBackend>,
    store: Arc<dyn StateStore>,
    audit: Arc<Events>,
    clock: Arc<ManualClock>,
    policy: RotationPolicy,
    actor: &str,
) -> Rotator {
    Rotator::new(
        backend,
        store,
        audit,
        policy,
        clock,
        format!("{actor}-holder"),
    )
    .unwrap()
    .with_actor(actor)
}

/// A process that existed and is gone now.
fn dead_process() -> ProcessId {
    let me = ProcessId::current().unwrap();
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    ProcessId { pid, ..me }
}

/// A rotator killed mid-run leaves its lease (and possibly its state lock): a rotator on
/// the same host takes both over at once instead of waiting out the TTL. A live holder
/// keeps its lease, and the refusal says who holds it and until when.
#[tokio::test]
async fn a_dead_rotators_lease_and_lock_are_taken_over_at_once() {
    let dir = keymgr_testkit::TempDir::new("rotation-dead-lease");
    let backend = Arc::new(MemoryBackend::with_key(KEY, KeyAlgorithm::Secp256k1));
    let clock = Arc::new(ManualClock::new(1_000));
    let audit = Arc::new(Events::default());
    let lease = serde_json::json!({
        "holder": "killed:1",
        "until_ms": 1_000 + 300_000,
        "process": dead_process(),
    });
    std::fs::write(dir.path().join(format!("{KEY}.lease")), lease.to_string()).unwrap();
    // The killed process was inside a state write: its lock file names it.
    std::fs::write(
        dir.path().join(format!("{KEY}.lock")),
        serde_json::to_vec(&dead_process()).unwrap(),
    )
    .unwrap();
    let store: Arc<dyn StateStore> = Arc::new(FileStateStore::new(dir.path()).unwrap());
    let r = rotator(
        backend.clone(),
        store.clone(),
        audit.clone(),
        clock.clone(),
        RotationPolicy::default(),
        "ops",
    );
    let events = r.rotate_now(KEY, false).await.unwrap();
    assert!(
        matches!(
            events.as_slice(),
            [RotationEvent::LeaseTakenOver { lease, .. }, RotationEvent::Rotated(_)]
                if lease.holder == "killed:1"
        ),
        "{events:?}"
    );
    assert_eq!(backend.creates(), 1);

    // A live holder (this test process, under another id) is respected.
    let held = store
        .acquire_lease(KEY, "other:2", clock.now(), Duration::from_secs(300))
        .unwrap();
    assert!(matches!(
        held,
        keymgr_rotation::LeaseOutcome::Acquired { took_over: None }
    ));
    let events = r.tick(KEY).await.unwrap();
    let [RotationEvent::LeaseHeldElsewhere { lease, .. }] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!(lease.holder, "other:2");
    assert_eq!(lease.until_ms, 1_000 + 300_000);
    assert!(lease.process.as_ref().is_some_and(|p| !p.is_dead()));
}

trait Now {
    fn now(&self) -> u64;
}

impl Now for ManualClock {
    fn now(&self) -> u64 {
        keymgr_rotation::Clock::now_ms(self)
    }
}

/// A version that vanished from the backend while the state says "disabling" counts as
/// disabled (audited as already absent): the rotation finishes instead of failing with
/// "not found" forever.
#[tokio::test]
async fn a_vanished_version_counts_as_disabled() {
    let backend = Arc::new(Faulty::new(MemoryBackend::with_key(
        KEY,
        KeyAlgorithm::Secp256k1,
    )));
    let clock = Arc::new(ManualClock::new(0));
    let audit = Arc::new(Events::default());
    let store: Arc<dyn StateStore> = Arc::new(MemoryStateStore::default());
    let r = rotator(
        backend.clone(),
        store.clone(),
        audit.clone(),
        clock.clone(),
        RotationPolicy::default(),
        "ops",
    );
    r.rotate_now(KEY, false).await.unwrap();
    clock.advance(DAY * 7);
    // The next backend call (the disable) finds the version gone.
    backend.inject(Fault::Fail(Error::not_found(
        format!("{KEY}@1"),
        "deleted outside keymgr",
    )));
    let events = r.tick(KEY).await.unwrap();
    assert!(
        matches!(events.as_slice(), [RotationEvent::Disabled { version, .. }] if version == "1"),
        "{events:?}"
    );
    let disabled = audit.of(AuditEvent::KeyDisabled);
    assert_eq!(disabled.len(), 1);
    assert!(disabled[0].details.contains_key("already_absent"));
    assert_eq!(store.load(KEY).unwrap().unwrap().phase, Phase::Idle);
}

/// The state store is lost during an overlap: a rotator with a fresh store finds the old
/// version still enabled in the backend and schedules its disable (from the backend's
/// creation time of the new version), instead of leaving it enabled forever.
#[tokio::test]
async fn a_lost_state_store_is_recovered_from_the_backend() {
    let backend = Arc::new(MemoryBackend::with_key(KEY, KeyAlgorithm::Secp256k1));
    let clock = Arc::new(ManualClock::new(0));
    let audit = Arc::new(Events::default());
    let first = rotator(
        backend.clone(),
        Arc::new(MemoryStateStore::default()),
        audit.clone(),
        clock.clone(),
        RotationPolicy::default(),
        "first",
    );
    first.rotate_now(KEY, false).await.unwrap();
    drop(first);
    let second = rotator(
        backend.clone(),
        Arc::new(MemoryStateStore::default()),
        audit.clone(),
        clock.clone(),
        RotationPolicy::default(),
        "second",
    );
    let status = second.status(KEY).await.unwrap();
    assert!(
        matches!(
            status.versions[0].stage,
            Lifecycle::Overlapping { until_ms: Some(_) }
        ),
        "{:?}",
        status.versions[0].stage
    );
    clock.advance(DAY * 8);
    let events = second.tick(KEY).await.unwrap();
    assert!(
        matches!(events.as_slice(), [RotationEvent::Disabled { version, .. }] if version == "1"),
        "{events:?}"
    );
    assert_eq!(
        backend.versions(KEY),
        vec![("1".into(), false), ("2".into(), true)]
    );
}

fn approval() -> RotationPolicy {
    RotationPolicy {
        require_approval: true,
        ..RotationPolicy::default()
    }
}

/// Requests, refusals, approvals and expiries: each audited with both actors; an
/// approval expires unused; a request is never approved by its requester.
#[tokio::test]
async fn approvals_expire_and_need_a_second_actor() {
    let backend = Arc::new(MemoryBackend::with_key(KEY, KeyAlgorithm::Ed25519));
    let clock = Arc::new(ManualClock::new(0));
    let audit = Arc::new(Events::default());
    let store: Arc<dyn StateStore> = Arc::new(MemoryStateStore::default());
    let as_actor = |actor: &str| {
        rotator(
            backend.clone(),
            store.clone(),
            audit.clone(),
            clock.clone(),
            approval(),
            actor,
        )
    };
    let (alice, bob) = (as_actor("alice"), as_actor("bob"));
    let events = alice.rotate_now(KEY, false).await.unwrap();
    let [RotationEvent::Requested { request, .. }] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!(
        (request.kind, request.requested_by.as_str()),
        (RequestKind::OnDemand, "alice")
    );
    let e = alice.approve(KEY).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AccessDenied);
    let refused = audit.of(AuditEvent::KeyRotationRefused);
    assert_eq!(refused[0].details["requested_by"], "alice");
    assert_eq!(refused[0].details["refused_approver"], "alice");
    let approved = bob.approve(KEY).await.unwrap();
    assert_eq!(approved.approved_by.as_deref(), Some("bob"));
    assert_eq!(
        bob.approve(KEY).await.unwrap_err().kind(),
        ErrorKind::InvalidInput,
        "approved already"
    );
    // The approval expires unused after 24 h: audited, and a new request is needed.
    clock.advance(Duration::from_secs(25 * 3600));
    let events = alice.rotate_now(KEY, false).await.unwrap();
    assert!(
        matches!(
            events.as_slice(),
            [
                RotationEvent::Expired { .. },
                RotationEvent::Requested { .. }
            ]
        ),
        "{events:?}"
    );
    let expired = audit.of(AuditEvent::KeyRotationExpired);
    assert_eq!(expired[0].details["approved_by"], "bob");
    assert_eq!(expired[0].details["requested_by"], "alice");
    assert_eq!(backend.creates(), 0);
    bob.approve(KEY).await.unwrap();
    let events = alice.rotate_now(KEY, false).await.unwrap();
    let [RotationEvent::Rotated(result)] = events.as_slice() else {
        panic!("{events:?}")
    };
    // XRPL identity of the new Ed25519 key, and the channel warning.
    assert!(result.new.xrpl_public_key().starts_with("ED"));
    assert_eq!(result.new.xrpl_public_key().len(), 66);
    assert!(
        result.note.contains("stop accepting new claims"),
        "{}",
        result.note
    );
    let complete = audit.of(AuditEvent::KeyRotationComplete);
    assert_eq!(complete[0].details["requested_by"], "alice");
    assert_eq!(complete[0].details["approved_by"], "bob");
    assert_eq!(complete[0].actor.as_deref(), Some("alice"));

    // A scheduled rotation is requested by the schedule; any operator may approve it.
    clock.advance(DAY * 90);
    let events = alice.tick(KEY).await.unwrap();
    assert!(
        events.iter().any(|e| matches!(
            e,
            RotationEvent::AwaitingApproval { request, .. } if request.kind == RequestKind::Scheduled
        )),
        "{events:?}"
    );
    alice.approve(KEY).await.unwrap();
    let events = alice.tick(KEY).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, RotationEvent::Rotated(_))),
        "{events:?}"
    );
}

/// A request (pending or approved) is rejected by another actor, with a reason; the
/// requester cannot reject their own; both are audited with both actors; a rejected
/// request never runs, and nothing is left to reject.
#[tokio::test]
async fn a_second_actor_rejects_a_request() {
    let backend = Arc::new(MemoryBackend::with_key(KEY, KeyAlgorithm::Secp256k1));
    let clock = Arc::new(ManualClock::new(0));
    let audit = Arc::new(Events::default());
    let store: Arc<dyn StateStore> = Arc::new(MemoryStateStore::default());
    let as_actor = |actor: &str| {
        rotator(
            backend.clone(),
            store.clone(),
            audit.clone(),
            clock.clone(),
            approval(),
            actor,
        )
    };
    let (alice, bob, carol) = (as_actor("alice"), as_actor("bob"), as_actor("carol"));
    assert_eq!(
        bob.reject(KEY, "no").await.unwrap_err().kind(),
        ErrorKind::InvalidInput,
        "nothing to reject yet"
    );
    alice.rotate_now(KEY, false).await.unwrap();
    let e = alice.reject(KEY, "changed my mind").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AccessDenied);
    let refused = audit.of(AuditEvent::KeyRotationRefused);
    assert_eq!(refused[0].details["refused_rejecter"], "alice");
    assert_eq!(refused[0].actor.as_deref(), Some("alice"));

    let rejected = bob.reject(KEY, "freeze window").await.unwrap();
    assert_eq!(rejected.requested_by, "alice");
    let entries = audit.of(AuditEvent::KeyRotationRejected);
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    assert_eq!(entry.actor.as_deref(), Some("bob"));
    assert_eq!(entry.details["requested_by"], "alice");
    assert_eq!(entry.details["rejected_by"], "bob");
    assert_eq!(entry.details["reason"], "freeze window");
    assert_eq!(entry.details["request_id"], rejected.id);
    assert_eq!(entry.details["approved_by"], "");
    assert_eq!(
        carol.reject(KEY, "again").await.unwrap_err().kind(),
        ErrorKind::InvalidInput,
        "closed"
    );
    assert_eq!(
        carol.approve(KEY).await.unwrap_err().kind(),
        ErrorKind::InvalidInput,
        "a rejected request cannot be approved"
    );

    // An approved request can still be rejected before it runs, and then never runs.
    alice.rotate_now(KEY, false).await.unwrap();
    bob.approve(KEY).await.unwrap();
    carol.reject(KEY, "incident open").await.unwrap();
    let entries = audit.of(AuditEvent::KeyRotationRejected);
    assert_eq!(entries[1].details["approved_by"], "bob");
    assert_eq!(entries[1].details["rejected_by"], "carol");
    let events = alice.rotate_now(KEY, false).await.unwrap();
    assert!(
        matches!(events.as_slice(), [RotationEvent::Requested { .. }]),
        "a new request, not the rejected one: {events:?}"
    );
    assert_eq!(backend.creates(), 0);
}
