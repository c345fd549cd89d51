//! The rotation state machine.

use std::sync::Arc;
use std::time::Duration;

use keymgr_core::{
    AuditEvent, AuditRecord, AuditSink, Error, KeyBackend, KeyManager, KeyRef, KeyVersion, Outcome,
    Result, VersionState,
};

use crate::process::ProcessId;
use crate::result::{RotatedKey, RotationEvent, RotationResult};
use crate::store::{KeyState, LeaseOutcome, Phase, Step};
use crate::{Clock, RotationPolicy, StateStore};

mod delete;
mod disable;

pub use delete::deletable_versions;

/// Rotates logical keys per a [`RotationPolicy`], one step at a time, persisting an intent
/// before each side effect so that a crash at any point resumes cleanly:
///
/// `Idle → (notice) → [AwaitingApproval →] Creating → Overlapping → Disabling → Idle`,
/// and `Failed` when a step hits an error retrying cannot fix.
///
/// - The backend is the source of truth for which versions exist: a rotation interrupted
///   after the backend created a version adopts that version instead of creating another,
///   and a rotator with no state (a fresh or different state directory) recovers the
///   schedule from the versions the backend lists (an old version still enabled is in
///   its overlap, counted from the new version's creation time when the backend records
///   it, else from now).
/// - Old versions are disabled only after the overlap; there is never a moment without a
///   valid version. A version that vanished from the backend counts as disabled. Nothing
///   is deleted unless [`RotationPolicy::keep_versions`] opts in: then, after each
///   rotation, disabled versions beyond the newest N are deleted, each audited
///   (`KEY_DELETED`).
/// - A lease in the [`StateStore`] makes sure only one rotator acts on a key at a time;
///   the lease of a rotator whose process died is taken over at once.
/// - Every state has a way forward: retryable errors are retried by the
///   [`Scheduler`](crate::Scheduler) with backoff; any other error ends in
///   [`Phase::Failed`] (audited once), which [`rotate_now`](Self::rotate_now) retries.
///
/// Build it with [`from_manager`](Self::from_manager) so it uses the manager's backend
/// stack and audit sink; [`new`](Self::new) takes them separately (tests, services that
/// use a provider without a `KeyManager`).
#[derive(Debug)]
pub struct Rotator {
    pub(crate) backend: Arc<dyn KeyBackend>,
    pub(crate) store: Arc<dyn StateStore>,
    pub(crate) audit: Arc<dyn AuditSink>,
    pub(crate) policy: RotationPolicy,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) holder: String,
    pub(crate) actor: String,
    pub(crate) lease_ttl: Duration,
}

/// What a leased run does.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Run {
    Tick,
    Now { force: bool },
}

impl Rotator {
    /// A rotator over `backend` (a provider or a layered stack — not a `KeyManager`, use
    /// [`from_manager`](Self::from_manager)) identified as `holder` for leases (unique
    /// per process, e.g. host + pid); it acts as `holder` until
    /// [`with_actor`](Self::with_actor) says who.
    pub fn new(
        backend: Arc<dyn KeyBackend>,
        store: Arc<dyn StateStore>,
        audit: Arc<dyn AuditSink>,
        policy: RotationPolicy,
        clock: Arc<dyn Clock>,
        holder: impl Into<String>,
    ) -> Result<Self> {
        policy.validate()?;
        let holder = holder.into();
        Ok(Self {
            backend,
            store,
            audit,
            policy,
            clock,
            actor: holder.clone(),
            holder,
            lease_ttl: Duration::from_secs(300),
        })
    }

    /// A rotator that rotates through `manager`'s backend stack and audits to its sink,
    /// acting as the manager's actor (`KEYMGR_ACTOR`) when it has one; the lease holder
    /// is this process (`host:pid`).
    pub fn from_manager(
        manager: &KeyManager,
        store: Arc<dyn StateStore>,
        policy: RotationPolicy,
        clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        let rotator = Self::new(
            manager.backend().clone(),
            store,
            manager.audit_sink().clone(),
            policy,
            clock,
            process_holder(),
        )?;
        Ok(match manager.actor() {
            Some(actor) => rotator.with_actor(actor),
            None => rotator,
        })
    }

    /// Who acts (recorded as requester / approver and in every audit entry).
    pub fn with_actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = actor.into();
        self
    }

    /// The policy in force.
    pub fn policy(&self) -> &RotationPolicy {
        &self.policy
    }

    /// Who this rotator acts as.
    pub fn actor(&self) -> &str {
        &self.actor
    }

    pub(crate) async fn emit(
        &self,
        event: AuditEvent,
        key: &str,
        outcome: Outcome,
        details: &[(&str, String)],
    ) -> Result<()> {
        let r = AuditRecord::new(event, self.backend.name(), key, outcome);
        self.emit_record(r, details).await
    }

    /// [`emit`](Self::emit) for an event about one version (`key_version` set).
    pub(crate) async fn emit_versioned(
        &self,
        event: AuditEvent,
        key: &str,
        version: &str,
        outcome: Outcome,
        details: &[(&str, String)],
    ) -> Result<()> {
        let mut r = AuditRecord::new(event, self.backend.name(), key, outcome);
        r.key_version = Some(version.to_owned());
        self.emit_record(r, details).await
    }

    async fn emit_record(&self, mut r: AuditRecord, details: &[(&str, String)]) -> Result<()> {
        r.actor = Some(self.actor.clone());
        r.details.insert("holder".into(), self.holder.clone());
        for (k, v) in details {
            r.details.insert((*k).to_owned(), v.clone());
        }
        self.audit.record(r).await
    }

    pub(crate) async fn current_version(&self, name: &str) -> Result<KeyVersion> {
        current_of(
            name,
            self.backend.name(),
            self.backend.list_versions(name).await?,
        )
    }

    /// The state of `name` as the backend shows it: the current version active since its
    /// creation, and any older version still enabled in its overlap (recovering what a
    /// rotator with other or lost state started).
    pub(crate) async fn initial_state(&self, name: &str, now: u64) -> Result<KeyState> {
        let versions = self.backend.list_versions(name).await?;
        let current = current_of(name, self.backend.name(), versions.clone())?;
        let since = current.created_at_ms.unwrap_or(now);
        let phase = match stale_versions(&versions, &[]).first() {
            Some(old) => Phase::Overlapping {
                old: old.clone(),
                new: current.key.version().unwrap_or_default().to_owned(),
                until_ms: since.saturating_add(ms(self.policy.overlap)),
            },
            None => Phase::Idle,
        };
        Ok(KeyState {
            name: name.to_owned(),
            phase,
            active: current.key.version().map(str::to_owned),
            active_since_ms: since,
            disabled: Vec::new(),
            notice_sent_for: None,
            request: None,
            revision: 0,
        })
    }

    pub(crate) async fn load_or_init(&self, name: &str, now: u64) -> Result<KeyState> {
        if let Some(s) = self.store.load(name)? {
            return Ok(s);
        }
        let mut state = self.initial_state(name, now).await?;
        if let Phase::Overlapping { old, until_ms, .. } = &state.phase {
            tracing::warn!(key = name, version = %old, until_ms, "no rotation state: an older version is still enabled; it is disabled when its overlap ends");
        }
        if !self.store.save(&mut state)? {
            return self.store.load(name)?.ok_or_else(|| {
                Error::backend("rotation-state", format!("state of {name} vanished"), None)
            });
        }
        Ok(state)
    }

    pub(crate) fn due_ms(&self, state: &KeyState) -> u64 {
        state
            .active_since_ms
            .saturating_add(ms(self.policy.interval))
    }

    pub(crate) fn save(&self, state: &mut KeyState) -> Result<()> {
        if self.store.save(state)? {
            Ok(())
        } else {
            Err(Error::unavailable(
                "rotation-state",
                format!(
                    "the rotation state of {} changed underneath this rotator",
                    state.name
                ),
                None,
            ))
        }
    }

    /// Does whatever is due for `name` now and returns what happened. Safe to call often
    /// and from several processes (a lease serializes them).
    pub async fn tick(&self, name: &str) -> Result<Vec<RotationEvent>> {
        if !self.policy.enabled {
            return Ok(Vec::new());
        }
        self.leased(name, Run::Tick).await
    }

    pub(crate) async fn leased(&self, name: &str, run: Run) -> Result<Vec<RotationEvent>> {
        let now = self.clock.now_ms();
        let mut events = Vec::new();
        match self
            .store
            .acquire_lease(name, &self.holder, now, self.lease_ttl)?
        {
            LeaseOutcome::Held(lease) => {
                return Ok(vec![RotationEvent::LeaseHeldElsewhere {
                    key: name.to_owned(),
                    lease,
                }]);
            }
            LeaseOutcome::Acquired { took_over } => {
                if let Some(lease) = took_over {
                    events.push(RotationEvent::LeaseTakenOver {
                        key: name.to_owned(),
                        lease,
                    });
                }
            }
        }
        let result = match run {
            Run::Tick => self.advance(name, now, &mut events).await,
            Run::Now { force } => self.now_locked(name, now, force, &mut events).await,
        };
        self.store.release_lease(name, &self.holder)?;
        result.map(|()| events)
    }

    pub(crate) async fn advance(
        &self,
        name: &str,
        now: u64,
        events: &mut Vec<RotationEvent>,
    ) -> Result<()> {
        let mut state = self.load_or_init(name, now).await?;
        // Each iteration moves one phase; a full cycle with an emergency is < 12 steps.
        for _ in 0..12 {
            match state.phase.clone() {
                Phase::Idle => {
                    if let Some(request) = &state.request {
                        if request.expired(now) {
                            self.expire(&mut state, now, events).await?;
                            continue;
                        }
                        if self.runnable(request) {
                            self.start(&mut state).await?;
                            continue;
                        }
                    }
                    let due = self.due_ms(&state);
                    self.notice(&mut state, now, due, events).await?;
                    if now < due {
                        break;
                    }
                    if self.policy.require_approval {
                        self.request_scheduled(&mut state, now, events).await?;
                        break;
                    }
                    self.start(&mut state).await?;
                }
                Phase::AwaitingApproval => match &state.request {
                    Some(r) if r.expired(now) => self.expire(&mut state, now, events).await?,
                    Some(r) if self.runnable(r) => self.start(&mut state).await?,
                    Some(_) => break,
                    None => {
                        state.phase = Phase::Idle;
                        self.save(&mut state)?;
                    }
                },
                Phase::Creating { old } => {
                    let result = self.create(&mut state, old, now).await?;
                    events.push(RotationEvent::Rotated(Box::new(result)));
                    self.delete_beyond_keep(name, events).await?;
                }
                Phase::Overlapping { old, until_ms, .. } => {
                    let emergency = state.request.as_ref().is_some_and(|r| {
                        r.kind == crate::RequestKind::Emergency
                            && !r.expired(now)
                            && self.runnable(r)
                    });
                    if now < until_ms && !emergency {
                        break;
                    }
                    state.phase = Phase::Disabling { old };
                    self.save(&mut state)?;
                }
                Phase::Disabling { old } => {
                    self.disable(&mut state, &old, now).await?;
                    events.push(RotationEvent::Disabled {
                        key: name.to_owned(),
                        version: old,
                    });
                }
                Phase::Failed { .. } => break,
            }
        }
        Ok(())
    }

    async fn notice(
        &self,
        state: &mut KeyState,
        now: u64,
        due: u64,
        events: &mut Vec<RotationEvent>,
    ) -> Result<()> {
        let notice_at = due.saturating_sub(ms(self.policy.notice));
        if now < notice_at || state.notice_sent_for == Some(state.active_since_ms) {
            return Ok(());
        }
        // Audit first, then save: a crash in between repeats the event on resume (at
        // least once) rather than losing it.
        self.emit(
            AuditEvent::KeyRotationNotice,
            &state.name,
            Outcome::Pending,
            &[
                ("due_ms", due.to_string()),
                ("version", state.active.clone().unwrap_or_default()),
            ],
        )
        .await?;
        state.notice_sent_for = Some(state.active_since_ms);
        self.save(state)?;
        events.push(RotationEvent::Notice {
            key: state.name.clone(),
            due_ms: due,
        });
        Ok(())
    }

    pub(crate) async fn start(&self, state: &mut KeyState) -> Result<()> {
        let old = state.active.clone();
        let mut details = vec![("old_version", old.clone().unwrap_or_default())];
        if let Some(r) = &state.request {
            details.push(("request_id", r.id.clone()));
            details.push(("requested_by", r.requested_by.clone()));
            details.push(("approved_by", r.approved_by.clone().unwrap_or_default()));
        }
        self.emit(
            AuditEvent::KeyRotationStart,
            &state.name,
            Outcome::Pending,
            &details,
        )
        .await?;
        state.phase = Phase::Creating { old };
        self.save(state)
    }

    /// A step failed: retryable errors are audited and returned (the phase stays, so the
    /// step runs again); any other error ends the rotation in [`Phase::Failed`], audited
    /// once, until an operator retries.
    pub(crate) async fn fail(
        &self,
        state: &mut KeyState,
        step: Step,
        version: Option<String>,
        e: Error,
        now: u64,
    ) -> Error {
        let permanent = !e.is_retryable();
        let mut details = vec![
            ("step", step.as_str().to_owned()),
            ("version", version.clone().unwrap_or_default()),
            ("error", e.to_string()),
            ("error_kind", e.kind().as_str().to_owned()),
            ("final", permanent.to_string()),
        ];
        if permanent {
            details.push((
                "next",
                "fix the cause, then retry with `keymgr rotate --key NAME --now`".to_owned(),
            ));
        }
        if let Err(audit) = self
            .emit(
                AuditEvent::KeyRotationFailure,
                &state.name,
                Outcome::Failure,
                &details,
            )
            .await
        {
            return audit;
        }
        if permanent {
            state.phase = Phase::Failed {
                step,
                version,
                kind: e.kind(),
                error: e.to_string(),
                at_ms: now,
            };
            if let Err(save) = self.save(state) {
                return save;
            }
        }
        e
    }

    async fn create(
        &self,
        state: &mut KeyState,
        old: Option<String>,
        now: u64,
    ) -> Result<RotationResult> {
        let name = state.name.clone();
        // Reconcile first: a crash after the backend created the version must not lead
        // to a second one.
        let current = match self.current_version(&name).await {
            Ok(c) => c,
            Err(e) => return Err(self.fail(state, Step::Create, old, e, now).await),
        };
        let new = if current.key.version() != old.as_deref() {
            tracing::info!(key = %name, version = ?current.key.version(), "adopting a version created before a restart");
            current
        } else {
            match self.backend.create_version(&name).await {
                Ok(v) => v,
                Err(e) => return Err(self.fail(state, Step::Create, old, e, now).await),
            }
        };
        self.backend.invalidate(&name);
        let new_version = new.key.version().map(str::to_owned).ok_or_else(|| {
            Error::integrity(&name, "the backend created a version without a version id")
        })?;
        let new_key = KeyRef::versioned(&name, &new_version);
        let new_pk = self.backend.public_key(&new_key).await?;
        // The old version's key is informative only: it may be gone (deleted outside
        // keymgr), which must not hold the rotation up.
        let old_key = match &old {
            Some(v) => {
                let key = KeyRef::versioned(&name, v);
                self.backend
                    .public_key(&key)
                    .await
                    .ok()
                    .map(|public_key| RotatedKey { key, public_key })
            }
            None => None,
        };
        let until_ms = now.saturating_add(ms(self.policy.overlap));
        state.phase = match &old {
            Some(o) if o != &new_version => Phase::Overlapping {
                old: o.clone(),
                new: new_version.clone(),
                until_ms,
            },
            _ => Phase::Idle,
        };
        state.active = Some(new_version.clone());
        state.active_since_ms = now;
        let request = state.request.take();
        let result = RotationResult {
            key: name.clone(),
            old: old_key,
            new: RotatedKey {
                key: new_key,
                public_key: new_pk,
            },
            overlap_until_ms: until_ms,
            note: RotationResult::note_for(new.algorithm),
        };
        let identity = |k: Option<&RotatedKey>, f: fn(&RotatedKey) -> Option<String>| {
            k.and_then(f).unwrap_or_default()
        };
        let mut details = vec![
            ("old_version", old.unwrap_or_default()),
            ("new_version", new_version),
            ("new_id", new.backend_id),
            (
                "old_public_key",
                identity(result.old.as_ref(), |k| {
                    Some(hex::encode(k.public_key.to_bytes()))
                }),
            ),
            (
                "new_public_key",
                hex::encode(result.new.public_key.to_bytes()),
            ),
            (
                "old_address",
                identity(result.old.as_ref(), RotatedKey::evm_address),
            ),
            ("new_address", result.new.evm_address().unwrap_or_default()),
            (
                "old_xrpl_account",
                identity(result.old.as_ref(), |k| Some(k.xrpl_account())),
            ),
            ("new_xrpl_account", result.new.xrpl_account()),
            ("overlap_until_ms", until_ms.to_string()),
        ];
        if let Some(r) = request {
            details.push(("request_id", r.id));
            details.push(("requested_by", r.requested_by));
            details.push(("approved_by", r.approved_by.unwrap_or_default()));
        }
        self.emit(
            AuditEvent::KeyRotationComplete,
            &name,
            Outcome::Success,
            &details,
        )
        .await?;
        // Saved after the audit entry: a crash in between resumes in `Creating`, adopts
        // the version made here and audits the completion again (at least once).
        self.save(state)?;
        Ok(result)
    }
}

/// The version `versions` mark current.
fn current_of(name: &str, backend: &str, versions: Vec<KeyVersion>) -> Result<KeyVersion> {
    versions.into_iter().find(|v| v.current).ok_or_else(|| {
        Error::not_found(
            name,
            format!("the {backend} backend lists no current version"),
        )
    })
}

/// Enabled versions that are not current and not already disabled by keymgr, oldest
/// first: what a finished rotation still has to disable.
pub(crate) fn stale_versions(versions: &[KeyVersion], disabled: &[String]) -> Vec<String> {
    versions
        .iter()
        .filter(|v| !v.current && v.state == VersionState::Enabled)
        .filter_map(|v| v.key.version())
        .filter(|v| !disabled.iter().any(|d| d == v))
        .map(str::to_owned)
        .collect()
}

/// `host:pid` of this process.
pub(crate) fn process_holder() -> String {
    match ProcessId::current() {
        Some(p) => format!("{}:{}", p.host, p.pid),
        None => format!("keymgr:{}", std::process::id()),
    }
}

pub(crate) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
