//! The rotation state machine.

use std::sync::Arc;
use std::time::Duration;

use keymgr_core::{
    AuditEvent, AuditRecord, AuditSink, Error, KeyAlgorithm, KeyBackend, KeyRef, KeyVersion,
    Outcome, PublicKey, Result, VersionState,
};
use serde::Serialize;

use crate::{Clock, KeyState, Phase, RotationPolicy, StateStore};

/// What one [`Rotator::tick`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RotationEvent {
    /// The rotation of `key` is due at `due_ms` (sent once per cycle).
    Notice {
        /// Logical key.
        key: String,
        /// When the rotation is due (ms since the epoch).
        due_ms: u64,
    },
    /// The rotation is due but waits for [`Rotator::approve`].
    AwaitingApproval {
        /// Logical key.
        key: String,
    },
    /// A new version is current; the old one stays valid until its overlap ends.
    Rotated(RotationResult),
    /// A version whose overlap ended was disabled in the backend (not deleted).
    Disabled {
        /// Logical key.
        key: String,
        /// The disabled version.
        version: String,
    },
    /// Another rotator holds the lease on this key; nothing was done.
    LeaseHeldElsewhere {
        /// Logical key.
        key: String,
    },
}

/// A completed rotation, with both public keys so operators can act on the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RotationResult {
    /// Logical key.
    pub key: String,
    /// The previous version (still valid until `overlap_until_ms`).
    pub old_version: Option<String>,
    /// The new current version.
    pub new_version: String,
    /// Hex public key of the previous version (compressed SEC1 / raw Ed25519).
    pub old_public_key: Option<String>,
    /// Hex public key of the new version.
    pub new_public_key: String,
    /// Ethereum address (EIP-55) of the previous version; secp256k1 only.
    pub old_address: Option<String>,
    /// Ethereum address (EIP-55) of the new version: fund / register it. secp256k1 only.
    pub new_address: Option<String>,
    /// End of the overlap (ms since the epoch).
    pub overlap_until_ms: u64,
    /// The algorithm.
    pub algorithm: KeyAlgorithm,
    /// What changes for users of this key.
    pub note: String,
}

const ROTATION_NOTE_SECP: &str = "secp256k1 key rotated: its Ethereum address (and XRPL account) \
     changed. Fund / register the new address before relying on it; the old version signs \
     until the overlap ends. XRPL payment channels keep the public key they were opened with: \
     sign their claims with the old version (NAME@VERSION) while it is valid, and open new \
     channels for the new key.";
const ROTATION_NOTE_ED: &str = "Ed25519 key rotated: its XRPL account key changed. Payment \
     channels keep the public key they were opened with: sign their claims with the old \
     version (NAME@VERSION) while it is valid, and open new channels for the new key.";

/// One logical key's status, for `keymgr keys status`.
#[derive(Debug, Clone, Serialize)]
pub struct KeyStatus {
    /// Persisted rotation state.
    pub state: KeyState,
    /// Versions as the backend reports them.
    pub versions: Vec<KeyVersion>,
    /// When the next rotation is due (ms).
    pub next_rotation_ms: u64,
    /// When the notice for it is (or was) given (ms).
    pub notice_ms: u64,
    /// Where each version is in its life: pending → active → overlapping → disabled.
    pub lifecycle: Vec<VersionLifecycle>,
}

/// One version's stage in the rotation lifecycle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionLifecycle {
    /// The version id.
    pub version: String,
    /// Its stage.
    pub stage: Lifecycle,
}

/// Stages of a key version: `Pending → Active → Overlapping → Disabled`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum Lifecycle {
    /// Being created by the backend; not usable yet.
    Pending,
    /// The current version: unversioned names sign with it.
    Active,
    /// Replaced but still valid for explicit use (`NAME@VERSION`), until `until_ms` when
    /// rotation disables it (`None`: not scheduled by this rotator, e.g. its disable is
    /// overdue or it was enabled outside keymgr).
    Overlapping {
        /// End of the overlap (ms since the epoch).
        until_ms: Option<u64>,
    },
    /// Disabled: explicit use is refused.
    Disabled,
}

/// Rotates logical keys per a [`RotationPolicy`], one step at a time, persisting an intent
/// before each side effect so that a crash at any point resumes cleanly:
///
/// `Idle → (notice) → [AwaitingApproval →] Creating → Overlapping → Disabling → Idle`
///
/// - The backend is the source of truth for which versions exist: a rotation interrupted
///   after the backend created a version adopts that version instead of creating another.
/// - The old version is disabled (never deleted) only after the overlap; there is never a
///   moment without a valid version.
/// - A lease in the [`StateStore`] makes sure only one rotator acts on a key at a time.
///
/// Pass the provider (or a layered stack), not a `KeyManager`: the rotator writes the
/// rotation audit records itself.
#[derive(Debug)]
pub struct Rotator {
    backend: Arc<dyn KeyBackend>,
    store: Arc<dyn StateStore>,
    audit: Arc<dyn AuditSink>,
    policy: RotationPolicy,
    clock: Arc<dyn Clock>,
    holder: String,
    lease_ttl: Duration,
}

impl Rotator {
    /// A rotator identified as `holder` (unique per process, e.g. host + pid).
    pub fn new(
        backend: Arc<dyn KeyBackend>,
        store: Arc<dyn StateStore>,
        audit: Arc<dyn AuditSink>,
        policy: RotationPolicy,
        clock: Arc<dyn Clock>,
        holder: impl Into<String>,
    ) -> Result<Self> {
        policy.validate()?;
        Ok(Self {
            backend,
            store,
            audit,
            policy,
            clock,
            holder: holder.into(),
            lease_ttl: Duration::from_secs(300),
        })
    }

    /// The policy in force.
    pub fn policy(&self) -> &RotationPolicy {
        &self.policy
    }

    async fn emit(
        &self,
        event: AuditEvent,
        key: &str,
        outcome: Outcome,
        details: &[(&str, String)],
    ) -> Result<()> {
        let mut r = AuditRecord::new(event, self.backend.name(), key, outcome);
        r.actor = Some(self.holder.clone());
        for (k, v) in details {
            r.details.insert((*k).to_owned(), v.clone());
        }
        self.audit.record(r).await
    }

    async fn current_version(&self, name: &str) -> Result<KeyVersion> {
        self.backend
            .list_versions(name)
            .await?
            .into_iter()
            .find(|v| v.current)
            .ok_or_else(|| {
                Error::not_found(
                    name,
                    format!(
                        "the {} backend lists no current version",
                        self.backend.name()
                    ),
                )
            })
    }

    /// The state of `name` as it would start from the backend's current version.
    async fn initial_state(&self, name: &str, now: u64) -> Result<KeyState> {
        let current = self.current_version(name).await?;
        Ok(KeyState {
            name: name.to_owned(),
            phase: Phase::Idle,
            active: current.key.version().map(str::to_owned),
            active_since_ms: current.created_at_ms.unwrap_or(now),
            disabled: Vec::new(),
            notice_sent_for: None,
            approved: false,
            revision: 0,
        })
    }

    async fn load_or_init(&self, name: &str, now: u64) -> Result<KeyState> {
        if let Some(s) = self.store.load(name)? {
            return Ok(s);
        }
        let mut state = self.initial_state(name, now).await?;
        if !self.store.save(&mut state)? {
            return self.store.load(name)?.ok_or_else(|| {
                Error::backend("rotation-state", format!("state of {name} vanished"), None)
            });
        }
        Ok(state)
    }

    fn due_ms(&self, state: &KeyState) -> u64 {
        state
            .active_since_ms
            .saturating_add(ms(self.policy.interval))
    }

    fn save(&self, state: &mut KeyState) -> Result<()> {
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
        let now = self.clock.now_ms();
        if !self
            .store
            .acquire_lease(name, &self.holder, now, self.lease_ttl)?
        {
            return Ok(vec![RotationEvent::LeaseHeldElsewhere {
                key: name.to_owned(),
            }]);
        }
        let result = self.advance(name, now).await;
        self.store.release_lease(name, &self.holder)?;
        result
    }

    async fn advance(&self, name: &str, now: u64) -> Result<Vec<RotationEvent>> {
        let mut events = Vec::new();
        let mut state = self.load_or_init(name, now).await?;
        // Each iteration moves one phase; a full cycle is at most five steps.
        for _ in 0..8 {
            match state.phase.clone() {
                Phase::Idle => {
                    let due = self.due_ms(&state);
                    let notice_at = due.saturating_sub(ms(self.policy.notice));
                    if now >= notice_at && state.notice_sent_for != Some(state.active_since_ms) {
                        // Audit first, then save: a crash in between repeats the event
                        // on resume (at least once) rather than losing it.
                        self.emit(
                            AuditEvent::KeyRotationNotice,
                            name,
                            Outcome::Pending,
                            &[
                                ("due_ms", due.to_string()),
                                ("version", state.active.clone().unwrap_or_default()),
                            ],
                        )
                        .await?;
                        state.notice_sent_for = Some(state.active_since_ms);
                        self.save(&mut state)?;
                        events.push(RotationEvent::Notice {
                            key: name.to_owned(),
                            due_ms: due,
                        });
                    }
                    if now < due {
                        break;
                    }
                    if self.policy.require_approval && !state.approved {
                        self.emit(
                            AuditEvent::KeyRotationAwaitingApproval,
                            name,
                            Outcome::Pending,
                            &[],
                        )
                        .await?;
                        state.phase = Phase::AwaitingApproval;
                        self.save(&mut state)?;
                        events.push(RotationEvent::AwaitingApproval {
                            key: name.to_owned(),
                        });
                        break;
                    }
                    self.start(&mut state).await?;
                }
                Phase::AwaitingApproval => {
                    if !state.approved {
                        break;
                    }
                    self.start(&mut state).await?;
                }
                Phase::Creating { old } => {
                    events.push(RotationEvent::Rotated(
                        self.create(&mut state, old, now).await?,
                    ));
                }
                Phase::Overlapping { old, until_ms, .. } => {
                    if now < until_ms {
                        break;
                    }
                    state.phase = Phase::Disabling { old };
                    self.save(&mut state)?;
                }
                Phase::Disabling { old } => {
                    let key = KeyRef::versioned(name, old.clone());
                    if let Err(e) = self.backend.disable_version(&key).await {
                        self.emit(
                            AuditEvent::KeyRotationFailure,
                            name,
                            Outcome::Failure,
                            &[
                                ("step", "disable".into()),
                                ("version", old.clone()),
                                ("error", e.to_string()),
                            ],
                        )
                        .await?;
                        return Err(e);
                    }
                    self.backend.invalidate(name);
                    self.emit(
                        AuditEvent::KeyDisabled,
                        name,
                        Outcome::Success,
                        &[("version", old.clone())],
                    )
                    .await?;
                    if !state.disabled.contains(&old) {
                        state.disabled.push(old.clone());
                    }
                    state.phase = Phase::Idle;
                    self.save(&mut state)?;
                    events.push(RotationEvent::Disabled {
                        key: name.to_owned(),
                        version: old,
                    });
                }
            }
        }
        Ok(events)
    }

    async fn start(&self, state: &mut KeyState) -> Result<()> {
        let old = state.active.clone();
        self.emit(
            AuditEvent::KeyRotationStart,
            &state.name,
            Outcome::Pending,
            &[("old_version", old.clone().unwrap_or_default())],
        )
        .await?;
        state.phase = Phase::Creating { old };
        self.save(state)
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
        let current = self.current_version(&name).await?;
        let new = if current.key.version() != old.as_deref() {
            tracing::info!(key = %name, version = ?current.key.version(), "adopting a version created before a restart");
            current
        } else {
            match self.backend.create_version(&name).await {
                Ok(v) => v,
                Err(e) => {
                    self.emit(
                        AuditEvent::KeyRotationFailure,
                        &name,
                        Outcome::Failure,
                        &[("step", "create".into()), ("error", e.to_string())],
                    )
                    .await?;
                    return Err(e);
                }
            }
        };
        self.backend.invalidate(&name);
        let new_version = new.key.version().map(str::to_owned).ok_or_else(|| {
            Error::integrity(&name, "the backend created a version without a version id")
        })?;
        let new_pk = self
            .backend
            .public_key(&KeyRef::versioned(&name, &new_version))
            .await?;
        let old_pk = match &old {
            Some(v) => Some(
                self.backend
                    .public_key(&KeyRef::versioned(&name, v))
                    .await?,
            ),
            None => None,
        };
        let old_address = old_pk.as_ref().and_then(PublicKey::evm_address);
        let old_pk = old_pk.map(|pk| hex::encode(pk.to_bytes()));
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
        state.approved = false;
        let result = RotationResult {
            key: name.clone(),
            old_version: old.clone(),
            new_version: new_version.clone(),
            old_public_key: old_pk.clone(),
            new_public_key: hex::encode(new_pk.to_bytes()),
            old_address: old_address.clone(),
            new_address: new_pk.evm_address(),
            overlap_until_ms: until_ms,
            algorithm: new_pk.algorithm(),
            note: match new_pk.algorithm() {
                KeyAlgorithm::Ed25519 => ROTATION_NOTE_ED,
                _ => ROTATION_NOTE_SECP,
            }
            .to_owned(),
        };
        self.emit(
            AuditEvent::KeyRotationComplete,
            &name,
            Outcome::Success,
            &[
                ("old_version", old.unwrap_or_default()),
                ("new_version", new_version),
                ("new_id", new.backend_id),
                ("old_public_key", old_pk.unwrap_or_default()),
                ("new_public_key", result.new_public_key.clone()),
                ("old_address", old_address.unwrap_or_default()),
                (
                    "new_address",
                    result.new_address.clone().unwrap_or_default(),
                ),
                ("overlap_until_ms", until_ms.to_string()),
            ],
        )
        .await?;
        // Saved after the audit entry: a crash in between resumes in `Creating`, adopts
        // the version made here and audits the completion again (at least once).
        self.save(state)?;
        Ok(result)
    }

    /// Rotates `name` now, whatever its schedule (an operator's `keymgr rotate --now`),
    /// through the same crash-safe steps; with approval required, it must have been
    /// approved first. Finishes a rotation already in progress instead of starting another.
    pub async fn rotate_now(&self, name: &str) -> Result<Vec<RotationEvent>> {
        let now = self.clock.now_ms();
        if !self
            .store
            .acquire_lease(name, &self.holder, now, self.lease_ttl)?
        {
            return Ok(vec![RotationEvent::LeaseHeldElsewhere {
                key: name.to_owned(),
            }]);
        }
        let result = async {
            let mut state = self.load_or_init(name, now).await?;
            self.check_can_start(name, &state)?;
            if matches!(state.phase, Phase::Idle | Phase::AwaitingApproval) {
                self.start(&mut state).await?;
            }
            self.advance(name, now).await
        }
        .await;
        self.store.release_lease(name, &self.holder)?;
        result
    }

    /// Approves the rotation of `name` that is waiting for approval (or the next one, if it
    /// is due within the notice window); the next [`tick`](Self::tick) performs it.
    pub async fn approve(&self, name: &str) -> Result<()> {
        let now = self.clock.now_ms();
        let mut state = self.load_or_init(name, now).await?;
        let notice_at = self.due_ms(&state).saturating_sub(ms(self.policy.notice));
        let waiting = state.phase == Phase::AwaitingApproval
            || (state.phase == Phase::Idle && now >= notice_at);
        if !waiting {
            return Err(Error::invalid_input(
                "approve",
                format!(
                    "no rotation of {name} is waiting for approval or within its notice window"
                ),
            ));
        }
        state.approved = true;
        self.save(&mut state)?;
        self.emit(
            AuditEvent::KeyRotationAwaitingApproval,
            name,
            Outcome::Success,
            &[("approved", "true".into())],
        )
        .await
    }

    /// Refuses explicit use of a version that rotation disabled (or the backend reports
    /// disabled), with a `KEY_ACCESS_DENIED` audit record. Unversioned refs pass.
    pub async fn check_version(&self, key: &KeyRef) -> Result<()> {
        let Some(version) = key.version() else {
            return Ok(());
        };
        let by_state = self
            .store
            .load(key.name())?
            .is_some_and(|s| s.disabled.iter().any(|d| d == version));
        let by_backend = !by_state
            && self
                .backend
                .list_versions(key.name())
                .await
                .ok()
                .and_then(|vs| vs.into_iter().find(|v| v.key.version() == Some(version)))
                .is_some_and(|v| v.state == VersionState::Disabled);
        if by_state || by_backend {
            let mut r = AuditRecord::new(
                AuditEvent::KeyAccessDenied,
                self.backend.name(),
                key.name(),
                Outcome::Denied,
            );
            r.key_version = Some(version.to_owned());
            r.details
                .insert("reason".into(), "version disabled by rotation".into());
            self.audit.record(r).await?;
            return Err(Error::access_denied(
                key.to_string(),
                "this version was disabled after its rotation overlap; use the current version",
            ));
        }
        Ok(())
    }

    /// Versions, state and schedule of `name`. Reads only: a key never ticked is shown
    /// as it would start, without saving anything.
    pub async fn status(&self, name: &str) -> Result<KeyStatus> {
        let now = self.clock.now_ms();
        let state = match self.store.load(name)? {
            Some(s) => s,
            None => self.initial_state(name, now).await?,
        };
        let versions = self.backend.list_versions(name).await?;
        let lifecycle = versions
            .iter()
            .filter_map(|v| {
                let version = v.key.version()?.to_owned();
                let stage = if v.state == VersionState::Pending {
                    Lifecycle::Pending
                } else if v.state == VersionState::Disabled || state.disabled.contains(&version) {
                    Lifecycle::Disabled
                } else if v.current {
                    Lifecycle::Active
                } else {
                    Lifecycle::Overlapping {
                        until_ms: match &state.phase {
                            Phase::Overlapping { old, until_ms, .. } if *old == version => {
                                Some(*until_ms)
                            }
                            _ => None,
                        },
                    }
                };
                Some(VersionLifecycle { version, stage })
            })
            .collect();
        let next = self.due_ms(&state);
        Ok(KeyStatus {
            notice_ms: next.saturating_sub(ms(self.policy.notice)),
            next_rotation_ms: next,
            versions,
            lifecycle,
            state,
        })
    }

    /// The version an unversioned `name` signs with now (the backend's current one).
    pub async fn resolve(&self, name: &str) -> Result<KeyVersion> {
        self.current_version(name).await
    }

    /// What [`rotate_now`](Self::rotate_now) would do for `name`, without doing it:
    /// `Ok(())` if it would rotate, otherwise the error it would return.
    pub async fn can_rotate_now(&self, name: &str) -> Result<()> {
        let state = match self.store.load(name)? {
            Some(s) => s,
            None => self.initial_state(name, self.clock.now_ms()).await?,
        };
        self.check_can_start(name, &state)
    }

    fn check_can_start(&self, name: &str, state: &KeyState) -> Result<()> {
        match state.phase {
            Phase::Idle | Phase::AwaitingApproval => {
                if self.policy.require_approval && !state.approved {
                    return Err(Error::access_denied(
                        name,
                        "rotation requires an operator's approval first (keymgr rotate approve)",
                    ));
                }
                Ok(())
            }
            Phase::Overlapping { .. } => Err(Error::invalid_input(
                "rotate",
                format!(
                    "{name} is still in the overlap of its last rotation; rotating again now would disable a version early"
                ),
            )),
            Phase::Creating { .. } | Phase::Disabling { .. } => Ok(()),
        }
    }

    /// When `name` next needs a [`tick`](Self::tick) (ms), or `None` while it waits for
    /// approval or rotation is off.
    pub fn next_due_ms(&self, name: &str) -> Result<Option<u64>> {
        if !self.policy.enabled {
            return Ok(None);
        }
        let Some(state) = self.store.load(name)? else {
            return Ok(Some(0));
        };
        let due = self.due_ms(&state);
        Ok(match state.phase {
            Phase::Idle => {
                let notice_at = due.saturating_sub(ms(self.policy.notice));
                Some(if state.notice_sent_for == Some(state.active_since_ms) {
                    due
                } else {
                    notice_at
                })
            }
            Phase::AwaitingApproval => state.approved.then_some(0),
            Phase::Overlapping { until_ms, .. } => Some(until_ms),
            Phase::Creating { .. } | Phase::Disabling { .. } => Some(0),
        })
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
