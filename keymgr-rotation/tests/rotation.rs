//! Rotation schedules on a virtual clock, crash recovery at every step, racing rotators,
//! and the env backend's clear refusal.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use keymgr_core::{
    AuditEvent, AuditRecord, AuditSink, ErrorKind, KeyAlgorithm, KeyBackend, KeyRef, SignPayload,
};
use keymgr_rotation::{
    Clock, FileStateStore, ManualClock, MemoryStateStore, Phase, RotationEvent, RotationPolicy,
    Rotator, Scheduler, StateStore,
};
use keymgr_testkit::memory::{FailAt, MemoryBackend};

const DAY: Duration = Duration::from_secs(86_400);

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

struct Fixture {
    backend: Arc<MemoryBackend>,
    store: Arc<dyn StateStore>,
    audit: Arc<Events>,
    clock: Arc<ManualClock>,
}

impl Fixture {
    fn new(algorithm: KeyAlgorithm) -> Self {
        Self {
            backend: Arc::new(MemoryBackend::with_key("evm-settlement", algorithm)),
            store: Arc::new(MemoryStateStore::default()),
            audit: Arc::new(Events::default()),
            clock: Arc::new(ManualClock::new(0)),
        }
    }

    fn rotator(&self, policy: RotationPolicy, holder: &str) -> Rotator {
        self.rotator_auditing_to(self.audit.clone(), policy, holder)
    }

    fn rotator_auditing_to(
        &self,
        audit: Arc<dyn AuditSink>,
        policy: RotationPolicy,
        holder: &str,
    ) -> Rotator {
        Rotator::new(
            self.backend.clone(),
            self.store.clone(),
            audit,
            policy,
            self.clock.clone(),
            holder,
        )
        .unwrap()
    }

    /// At least one enabled version that signs, at every moment.
    async fn assert_valid_key(&self) {
        let enabled = self
            .backend
            .versions("evm-settlement")
            .iter()
            .filter(|(_, e)| *e)
            .count();
        assert!(enabled >= 1, "no enabled version");
        self.backend
            .sign(
                &KeyRef::new("evm-settlement"),
                &SignPayload::Prehash([1; 32]),
            )
            .await
            .unwrap();
    }
}

/// Several "processes" rotating one backend's key: each rotator gets its own
/// `FileStateStore` handle on one shared state directory (removed on drop).
struct Cluster {
    backend: Arc<MemoryBackend>,
    clock: Arc<ManualClock>,
    audit: Arc<Events>,
    dir: keymgr_testkit::TempDir,
}

impl Cluster {
    fn new(tag: &str) -> Self {
        Self {
            backend: Arc::new(MemoryBackend::with_key(
                "evm-settlement",
                KeyAlgorithm::Secp256k1,
            )),
            clock: Arc::new(ManualClock::new(0)),
            audit: Arc::new(Events::default()),
            dir: keymgr_testkit::TempDir::new(tag),
        }
    }

    fn rotator(&self, holder: &str) -> Arc<Rotator> {
        Arc::new(
            Rotator::new(
                self.backend.clone(),
                Arc::new(FileStateStore::new(self.dir.path()).unwrap()),
                self.audit.clone(),
                RotationPolicy::default(),
                self.clock.clone(),
                holder,
            )
            .unwrap(),
        )
    }
}

fn day_of(clock: &ManualClock) -> u64 {
    clock.now_ms() / 86_400_000
}

#[tokio::test]
async fn notice_at_76_rotation_at_90_disable_at_97() {
    let f = Fixture::new(KeyAlgorithm::Secp256k1);
    let r = f.rotator(RotationPolicy::default(), "a");
    let mut seen = Vec::new();
    for _ in 0..=120 {
        for e in r.tick("evm-settlement").await.unwrap() {
            seen.push((day_of(&f.clock), e));
        }
        f.assert_valid_key().await;
        f.clock.advance(DAY);
    }
    let days: Vec<(u64, &str)> = seen
        .iter()
        .map(|(d, e)| {
            (
                *d,
                match e {
                    RotationEvent::Notice { .. } => "notice",
                    RotationEvent::Rotated(_) => "rotated",
                    RotationEvent::Disabled { .. } => "disabled",
                    _ => "other",
                },
            )
        })
        .collect();
    assert_eq!(
        days,
        vec![(76, "notice"), (90, "rotated"), (97, "disabled")]
    );
    let RotationEvent::Rotated(result) = &seen[1].1 else {
        unreachable!()
    };
    assert_eq!(result.old.as_ref().map(|o| o.version()), Some("1"));
    assert_eq!(result.new.version(), "2");
    assert_ne!(
        result.old.as_ref().map(|o| &o.public_key),
        Some(&result.new.public_key)
    );
    assert!(result.note.contains("address"), "{}", result.note);
    // The new address is the new version's, for operators to fund / register.
    let new_pk = f
        .backend
        .public_key(&KeyRef::versioned("evm-settlement", "2"))
        .await
        .unwrap();
    assert_eq!(result.new.public_key, new_pk);
    // Derived independently: alloy's address of the k256 key.
    let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(&new_pk.to_bytes()).unwrap();
    assert_eq!(
        result.new.evm_address(),
        Some(alloy_primitives::Address::from_public_key(&vk).to_checksum(None))
    );
    let old_address = result.old.as_ref().and_then(|o| o.evm_address());
    assert!(old_address.is_some());
    assert_ne!(old_address, result.new.evm_address());
    assert_eq!(
        f.backend.versions("evm-settlement"),
        vec![("1".into(), false), ("2".into(), true)]
    );
    // Audit: each step once, with old and new ids.
    assert_eq!(f.audit.of(AuditEvent::KeyRotationNotice).len(), 1);
    let complete = f.audit.of(AuditEvent::KeyRotationComplete);
    assert_eq!(complete.len(), 1);
    assert_eq!(complete[0].details["old_version"], "1");
    assert_eq!(complete[0].details["new_version"], "2");
    assert_eq!(f.audit.of(AuditEvent::KeyDisabled).len(), 1);
    // The disabled version is refused for explicit use, and audited.
    let e = r
        .check_version(&KeyRef::versioned("evm-settlement", "1"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AccessDenied);
    assert_eq!(f.audit.of(AuditEvent::KeyAccessDenied).len(), 1);
    r.check_version(&KeyRef::versioned("evm-settlement", "2"))
        .await
        .unwrap();
    // The next cycle starts from the rotation day: next notice at 90 + 76.
    let status = r.status("evm-settlement").await.unwrap();
    assert_eq!(status.next_rotation_ms, Some(180 * 86_400_000));
    assert_eq!(status.notice_ms, Some(166 * 86_400_000));
}

#[tokio::test]
async fn approval_mode_waits_for_the_operator() {
    let f = Fixture::new(KeyAlgorithm::Ed25519);
    let policy = RotationPolicy {
        require_approval: true,
        ..RotationPolicy::default()
    };
    let r = f.rotator(policy, "a");
    assert!(
        r.approve("evm-settlement").await.is_err(),
        "nothing to approve on day 0"
    );
    f.clock.advance(DAY * 90);
    let events = r.tick("evm-settlement").await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, RotationEvent::AwaitingApproval { .. }))
    );
    f.clock.advance(DAY * 10);
    // The request expired unused (24 h): audited, and the due rotation is requested again.
    let events = r.tick("evm-settlement").await.unwrap();
    assert!(
        matches!(
            events.as_slice(),
            [
                RotationEvent::Expired { .. },
                RotationEvent::AwaitingApproval { .. }
            ]
        ),
        "{events:?}"
    );
    assert_eq!(f.audit.of(AuditEvent::KeyRotationExpired).len(), 1);
    assert!(
        r.tick("evm-settlement").await.unwrap().is_empty(),
        "still waiting"
    );
    assert_eq!(f.backend.creates(), 0);
    r.approve("evm-settlement").await.unwrap();
    let events = r.tick("evm-settlement").await.unwrap();
    let RotationEvent::Rotated(result) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(result.algorithm(), KeyAlgorithm::Ed25519);
    assert_eq!(result.new.evm_address(), None);
    assert!(result.new.xrpl_public_key().starts_with("ED"));
    assert!(result.new.xrpl_account().starts_with('r'));
    assert!(result.note.contains("channels"));
    assert_eq!(f.backend.creates(), 1);
}

#[tokio::test]
async fn a_crash_at_any_step_resumes_with_exactly_one_new_version() {
    // (hook, description): each simulates a crash at one step of the state machine.
    type Hook = fn(&MemoryBackend);
    let crashes: [(Hook, &str); 4] = [
        (|b| b.fail_next_create(FailAt::Before), "before create"),
        (
            |b| b.fail_next_create(FailAt::After),
            "after create, before the state was saved",
        ),
        (|b| b.fail_next_disable(FailAt::Before), "before disable"),
        (
            |b| b.fail_next_disable(FailAt::After),
            "after disable, before the state was saved",
        ),
    ];
    for (hook, what) in crashes {
        let f = Fixture::new(KeyAlgorithm::Secp256k1);
        let first = f.rotator(RotationPolicy::default(), "first");
        first.tick("evm-settlement").await.unwrap();
        hook(&f.backend);
        f.clock.advance(DAY * 90);
        let mut failed = first.tick("evm-settlement").await.is_err();
        f.assert_valid_key().await;
        if !failed {
            f.clock.advance(DAY * 7);
            failed = first.tick("evm-settlement").await.is_err();
        }
        assert!(failed, "{what}: the injected failure did not happen");
        f.assert_valid_key().await;
        drop(first); // the process "crashes"; a new one resumes from the store
        let second = f.rotator(RotationPolicy::default(), "second");
        for _ in 0..10 {
            second.tick("evm-settlement").await.unwrap();
            f.assert_valid_key().await;
            f.clock.advance(DAY);
        }
        assert_eq!(f.backend.creates(), 1, "{what}: exactly one new version");
        assert_eq!(
            f.backend.versions("evm-settlement"),
            vec![("1".into(), false), ("2".into(), true)],
            "{what}"
        );
        let state = f.store.load("evm-settlement").unwrap().unwrap();
        assert_eq!(state.phase, Phase::Idle, "{what}");
        assert_eq!(state.active.as_deref(), Some("2"));
    }
}

/// An audit sink that refuses the first record of one event (a full disk, a crash
/// while writing), then records everything.
#[derive(Debug)]
struct RefusesOnce {
    events: Events,
    refuse: Mutex<Option<AuditEvent>>,
}

#[async_trait]
impl AuditSink for RefusesOnce {
    async fn record(&self, record: AuditRecord) -> keymgr_core::Result<()> {
        let refused = {
            let mut refuse = self.refuse.lock().unwrap();
            let hit = *refuse == Some(record.event);
            if hit {
                *refuse = None;
            }
            hit
        };
        if refused {
            return Err(keymgr_core::Error::unavailable(
                "audit",
                "injected audit failure",
                None,
            ));
        }
        self.events.record(record).await
    }
}

/// Every rotation step's audit entry survives a failure to write it: the step does not
/// advance until its entry is recorded, so the resumed rotator writes it (at least once).
#[tokio::test]
async fn a_failed_audit_write_is_retried_not_lost() {
    let steps = [
        AuditEvent::KeyRotationNotice,
        AuditEvent::KeyRotationStart,
        AuditEvent::KeyRotationComplete,
        AuditEvent::KeyDisabled,
    ];
    for refused in steps {
        let f = Fixture::new(KeyAlgorithm::Secp256k1);
        let audit = Arc::new(RefusesOnce {
            events: Events::default(),
            refuse: Mutex::new(Some(refused)),
        });
        let r = f.rotator_auditing_to(audit.clone(), RotationPolicy::default(), "audited");
        let mut errors = 0;
        for _ in 0..=100 {
            if r.tick("evm-settlement").await.is_err() {
                errors += 1;
            }
            f.assert_valid_key().await;
            f.clock.advance(DAY);
        }
        assert_eq!(errors, 1, "{refused:?}: the refused write fails its tick");
        for step in steps {
            assert!(
                !audit.events.of(step).is_empty(),
                "{refused:?} refused once: {step:?} was never recorded"
            );
        }
        assert_eq!(
            f.backend.creates(),
            1,
            "{refused:?}: exactly one new version"
        );
        assert_eq!(
            f.backend.versions("evm-settlement"),
            vec![("1".into(), false), ("2".into(), true)],
            "{refused:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_rotators_on_one_file_store_rotate_once() {
    let c = Cluster::new("rotation-race");
    let rotators: Vec<_> = (0..4).map(|i| c.rotator(&format!("node-{i}"))).collect();
    rotators[0].tick("evm-settlement").await.unwrap();
    c.clock.advance(DAY * 90);
    for _round in 0..5 {
        let tasks: Vec<_> = rotators
            .iter()
            .map(|r| {
                let r = r.clone();
                tokio::spawn(async move { r.tick("evm-settlement").await })
            })
            .collect();
        for t in tasks {
            // A rotator that lost the race either saw the lease or a changed state.
            let _ = t.await.unwrap();
        }
    }
    assert_eq!(c.backend.creates(), 1, "one rotation across all rotators");
    assert_eq!(c.audit.of(AuditEvent::KeyRotationComplete).len(), 1);
}

#[tokio::test]
async fn file_store_survives_a_new_process() {
    let dir = std::env::temp_dir().join(format!("keymgr-rotation-file-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let f = Fixture::new(KeyAlgorithm::Secp256k1);
    let make = || {
        Rotator::new(
            f.backend.clone(),
            Arc::new(FileStateStore::new(&dir).unwrap()),
            f.audit.clone(),
            RotationPolicy::default(),
            f.clock.clone(),
            "node",
        )
        .unwrap()
    };
    make().tick("evm-settlement").await.unwrap();
    f.clock.advance(DAY * 90);
    make().tick("evm-settlement").await.unwrap();
    let state = FileStateStore::new(&dir)
        .unwrap()
        .load("evm-settlement")
        .unwrap()
        .unwrap();
    assert!(
        matches!(state.phase, Phase::Overlapping { .. }),
        "{state:?}"
    );
    f.clock.advance(DAY * 7);
    make().tick("evm-settlement").await.unwrap();
    assert_eq!(f.backend.versions("evm-settlement")[0], ("1".into(), false));
    assert!(
        FileStateStore::new(&dir)
            .unwrap()
            .load("../escape")
            .is_err()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn scheduler_runs_the_schedule_from_state() {
    let f = Fixture::new(KeyAlgorithm::Secp256k1);
    let r = Arc::new(f.rotator(RotationPolicy::default(), "sched"));
    let mut handle = Scheduler::new(r, f.clock.clone(), vec!["evm-settlement".into()])
        .max_sleep(Duration::from_millis(5))
        .spawn();
    f.clock.advance(DAY * 90);
    let mut kinds = Vec::new();
    while kinds.len() < 2 {
        let e = tokio::time::timeout(Duration::from_secs(10), handle.next_event())
            .await
            .expect("scheduler made progress")
            .unwrap();
        kinds.push(matches!(e, RotationEvent::Rotated(_)));
    }
    assert_eq!(kinds, vec![false, true], "notice, then rotation");
    f.clock.advance(DAY * 7);
    let e = tokio::time::timeout(Duration::from_secs(10), handle.next_event())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(e, RotationEvent::Disabled { .. }), "{e:?}");
    handle.stop().await;
}

/// A rotator over the env backend, which refuses rotation (manual only).
fn env_rotator(clock: &Arc<ManualClock>, audit: Arc<Events>) -> Rotator {
    Rotator::new(
        Arc::new(keymgr_env::EnvBackend::generate()),
        Arc::new(MemoryStateStore::default()),
        audit,
        RotationPolicy::default(),
        clock.clone(),
        "env",
    )
    .unwrap()
}

/// A backend that keeps answering "unavailable" (retryable) is retried with backoff, not
/// in a tight loop: a few attempts (and audited failures) in 450 ms, not hundreds.
#[tokio::test]
async fn scheduler_backs_off_when_a_step_keeps_failing() {
    let clock = Arc::new(ManualClock::new(0));
    let audit = Arc::new(Events::default());
    let backend = Arc::new(Unavailable(MemoryBackend::with_key(
        "evm",
        KeyAlgorithm::Secp256k1,
    )));
    let r = Arc::new(
        Rotator::new(
            backend,
            Arc::new(MemoryStateStore::default()),
            audit.clone(),
            RotationPolicy::default(),
            clock.clone(),
            "flaky",
        )
        .unwrap(),
    );
    r.tick("evm").await.unwrap();
    clock.advance(DAY * 90);
    let handle = Scheduler::new(r, clock.clone(), vec!["evm".into()])
        .max_sleep(Duration::from_millis(5))
        .retry_backoff(Duration::from_millis(100), Duration::from_secs(10))
        .spawn();
    tokio::time::sleep(Duration::from_millis(450)).await;
    handle.stop().await;
    // Attempts at about 0, 100, 300 ms (the next would be at 700 ms).
    let failures = audit.of(AuditEvent::KeyRotationFailure).len();
    assert!((2..=4).contains(&failures), "{failures} failed attempts");
}

/// A backend whose `create_version` is always unavailable (retryable).
#[derive(Debug)]
struct Unavailable(MemoryBackend);

#[async_trait]
impl KeyBackend for Unavailable {
    fn name(&self) -> &str {
        self.0.name()
    }
    async fn public_key(&self, key: &KeyRef) -> keymgr_core::Result<keymgr_core::PublicKey> {
        self.0.public_key(key).await
    }
    async fn sign(
        &self,
        key: &KeyRef,
        payload: &SignPayload,
    ) -> keymgr_core::Result<keymgr_core::VerifiedSignature> {
        self.0.sign(key, payload).await
    }
    async fn health(&self) -> keymgr_core::HealthReport {
        self.0.health().await
    }
    async fn list_versions(&self, name: &str) -> keymgr_core::Result<Vec<keymgr_core::KeyVersion>> {
        self.0.list_versions(name).await
    }
    async fn create_version(&self, _: &str) -> keymgr_core::Result<keymgr_core::KeyVersion> {
        Err(keymgr_core::Error::unavailable(
            "memory",
            "injected outage",
            None,
        ))
    }
}

/// The env backend cannot create keys: the rotation ends as failed, audited once, and
/// the scheduler leaves it alone (no retry loop, no audit flood) until an operator acts.
#[tokio::test]
async fn env_backend_rotation_is_a_clear_unsupported_error() {
    let clock = Arc::new(ManualClock::new(0));
    let audit = Arc::new(Events::default());
    let r = Arc::new(env_rotator(&clock, audit.clone()));
    assert!(r.tick("evm").await.unwrap().is_empty());
    // Due: the env backend refuses and says rotation is manual; its key keeps working.
    clock.advance(DAY * 90);
    let e = r.tick("evm").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert!(e.to_string().contains("manual"), "{e}");
    let status = r.status("evm").await.unwrap();
    assert!(
        matches!(
            status.state.phase,
            Phase::Failed {
                step: keymgr_rotation::Step::Create,
                kind: ErrorKind::Unsupported,
                ..
            }
        ),
        "{:?}",
        status.state.phase
    );
    assert!(status.action.unwrap().contains("rotate --key evm --now"));
    assert_eq!(r.next_due_ms("evm").unwrap(), None, "nothing scheduled");
    // A running scheduler does not retry it.
    let handle = Scheduler::new(r.clone(), clock.clone(), vec!["evm".into()])
        .max_sleep(Duration::from_millis(5))
        .retry_backoff(Duration::from_millis(1), Duration::from_millis(2))
        .spawn();
    tokio::time::sleep(Duration::from_millis(100)).await;
    handle.stop().await;
    assert!(r.tick("evm").await.unwrap().is_empty());
    assert_eq!(
        audit.of(AuditEvent::KeyRotationFailure).len(),
        1,
        "audited once"
    );
    // The operator's retry runs the step again (and fails the same way, audited).
    let e = r.rotate_now("evm", false).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert_eq!(audit.of(AuditEvent::KeyRotationFailure).len(), 2);
}

#[tokio::test]
async fn rotate_now_skips_the_schedule_but_not_approval_or_overlap() {
    let f = Fixture::new(KeyAlgorithm::Secp256k1);
    let r = f.rotator(RotationPolicy::default(), "op");
    let events = r.rotate_now("evm-settlement", false).await.unwrap();
    assert!(
        matches!(events.as_slice(), [RotationEvent::Rotated(_)]),
        "{events:?}"
    );
    let e = r.rotate_now("evm-settlement", false).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "inside the overlap: {e}");
    f.clock.advance(DAY * 7);
    r.tick("evm-settlement").await.unwrap();
    assert_eq!(f.backend.versions("evm-settlement")[0], ("1".into(), false));

    let g = Fixture::new(KeyAlgorithm::Secp256k1);
    let policy = RotationPolicy {
        require_approval: true,
        ..RotationPolicy::default()
    };
    let r = g.rotator(policy, "op");
    let events = r.rotate_now("evm-settlement", false).await.unwrap();
    assert!(
        matches!(events.as_slice(), [RotationEvent::Requested { .. }]),
        "with approval on, --now records a request: {events:?}"
    );
    assert_eq!(g.backend.creates(), 0);
}

/// Two schedulers (as two processes would run them) on one file store: one rotation, one
/// disable, and both see the result.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_schedulers_on_one_store_rotate_once() {
    let c = Cluster::new("rotation-sched");
    let (a, b) = (c.rotator("node-a"), c.rotator("node-b"));
    a.tick("evm-settlement").await.unwrap();
    let spawn = |r: Arc<Rotator>| {
        Scheduler::new(r, c.clock.clone(), vec!["evm-settlement".into()])
            .max_sleep(Duration::from_millis(2))
            .retry_backoff(Duration::from_millis(5), Duration::from_millis(20))
            .spawn()
    };
    let (sa, sb) = (spawn(a), spawn(b));
    let until = |event: AuditEvent| {
        let audit = c.audit.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(20), async {
                while audit.of(event).is_empty() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await
            .unwrap_or_else(|_| panic!("no {event:?} within 20 s"));
        }
    };
    c.clock.advance(DAY * 90);
    until(AuditEvent::KeyRotationComplete).await;
    c.clock.advance(DAY * 7);
    until(AuditEvent::KeyDisabled).await;
    // Both keep ticking for a while: nothing more may happen.
    tokio::time::sleep(Duration::from_millis(100)).await;
    sa.stop().await;
    sb.stop().await;
    assert_eq!(
        c.backend.creates(),
        1,
        "one rotation across both schedulers"
    );
    assert_eq!(
        c.backend.versions("evm-settlement"),
        vec![("1".into(), false), ("2".into(), true)]
    );
    assert_eq!(c.audit.of(AuditEvent::KeyRotationComplete).len(), 1);
    assert_eq!(c.audit.of(AuditEvent::KeyDisabled).len(), 1);
    assert_eq!(c.audit.of(AuditEvent::KeyRotationNotice).len(), 1);
}

/// Versions move through pending → active → overlapping → disabled, and `resolve`
/// names the active one.
#[tokio::test]
async fn lifecycle_and_resolve_follow_the_rotation() {
    use keymgr_rotation::Lifecycle;
    let f = Fixture::new(KeyAlgorithm::Secp256k1);
    let r = f.rotator(RotationPolicy::default(), "life");
    let stages = |s: keymgr_rotation::KeyStatus| {
        s.versions
            .into_iter()
            .map(|v| (v.version.key.version().unwrap().to_owned(), v.stage))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        stages(r.status("evm-settlement").await.unwrap()),
        vec![("1".into(), Lifecycle::Active)]
    );
    assert!(
        f.store.load("evm-settlement").unwrap().is_none(),
        "status only reads"
    );
    r.tick("evm-settlement").await.unwrap();
    f.clock.advance(DAY * 90);
    r.tick("evm-settlement").await.unwrap();
    let until = f.clock.now_ms() + 7 * 86_400_000;
    assert_eq!(
        stages(r.status("evm-settlement").await.unwrap()),
        vec![
            (
                "1".into(),
                Lifecycle::Overlapping {
                    until_ms: Some(until)
                }
            ),
            ("2".into(), Lifecycle::Active),
        ]
    );
    assert_eq!(
        r.resolve("evm-settlement").await.unwrap().key.version(),
        Some("2")
    );
    f.clock.advance(DAY * 7);
    r.tick("evm-settlement").await.unwrap();
    assert_eq!(
        stages(r.status("evm-settlement").await.unwrap()),
        vec![
            ("1".into(), Lifecycle::Disabled),
            ("2".into(), Lifecycle::Active)
        ]
    );
}
