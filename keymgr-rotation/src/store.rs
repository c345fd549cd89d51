//! Where rotation state lives: the state types, the [`StateStore`] trait and an
//! in-memory store (the file store is in `file_store.rs`).
//!
//! The store records keymgr's own bookkeeping (phase, intents, times, requests, leases).
//! Which key versions exist is always read from the backend; the store never invents keys.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use keymgr_core::{ErrorKind, KeyRef, Result};
use serde::{Deserialize, Serialize};

use crate::process::ProcessId;

/// Where a logical key is in its rotation cycle. Each side effect on the backend is
/// preceded by a saved intent (`Creating`, `Disabling`), so a crash at any step resumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    /// One active version; nothing in progress.
    Idle,
    /// Due, waiting for an operator's approval of [`KeyState::request`].
    AwaitingApproval,
    /// Intent: a new version is being created to replace `old`.
    Creating {
        /// The version current when the rotation started.
        old: Option<String>,
    },
    /// `old` stays valid until `until_ms`, `new` is current.
    Overlapping {
        /// The previous version.
        old: String,
        /// The new current version.
        new: String,
        /// End of the overlap (ms since the epoch).
        until_ms: u64,
    },
    /// Intent: `old` is being disabled in the backend.
    Disabling {
        /// The version being disabled.
        old: String,
    },
    /// A step failed with an error retrying cannot fix (unsupported, access denied, ...).
    /// Nothing runs on its own any more; an operator fixes the cause and retries with
    /// `rotate --now` (see [`Rotator::rotate_now`](crate::Rotator::rotate_now)).
    Failed {
        /// The step that failed.
        step: Step,
        /// The version the step was about (the old version of a rotation, the version
        /// being disabled).
        version: Option<String>,
        /// The error's category.
        kind: ErrorKind,
        /// The error message.
        error: String,
        /// When it failed (ms since the epoch).
        at_ms: u64,
    },
}

/// A side-effecting rotation step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Creating the new version.
    Create,
    /// Disabling an old version.
    Disable,
}

impl Step {
    /// `create` / `disable`.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Create => "create",
            Step::Disable => "disable",
        }
    }
}

/// Why a rotation was requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    /// The schedule said it is due.
    Scheduled,
    /// An operator asked for it (`rotate --now`).
    OnDemand,
    /// An operator asked for it during the overlap of the last rotation (`--force`):
    /// the overlapping version is disabled first.
    Emergency,
}

impl RequestKind {
    /// `scheduled` / `on_demand` / `emergency`.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Scheduled => "scheduled",
            RequestKind::OnDemand => "on_demand",
            RequestKind::Emergency => "emergency",
        }
    }
}

/// A recorded request to rotate, as change management knows it: who asked, who approved
/// (an actor other than the requester), and until when it is valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationRequest {
    /// Unique id (`<key>-<ms>`), quoted in every audit entry about the request.
    pub id: String,
    /// Why.
    pub kind: RequestKind,
    /// Who asked (the scheduler's actor for scheduled rotations).
    pub requested_by: String,
    /// When (ms since the epoch).
    pub requested_at_ms: u64,
    /// Who approved it, once approved.
    #[serde(default)]
    pub approved_by: Option<String>,
    /// When it was approved.
    #[serde(default)]
    pub approved_at_ms: Option<u64>,
    /// The request (or, once approved, the approval) is void after this (ms).
    pub expires_at_ms: u64,
}

impl RotationRequest {
    /// Whether it expired at `now_ms`.
    pub fn expired(&self, now_ms: u64) -> bool {
        now_ms >= self.expires_at_ms
    }
}

/// The persisted state of one logical key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyState {
    /// The logical key.
    pub name: String,
    /// Current phase.
    pub phase: Phase,
    /// The active version as last seen.
    pub active: Option<String>,
    /// When the active version became active (ms); the next rotation is due one
    /// interval later.
    pub active_since_ms: u64,
    /// Versions keymgr disabled (explicit use is refused).
    #[serde(default)]
    pub disabled: Vec<String>,
    /// `active_since_ms` of the cycle whose notice was sent (so it is sent once).
    #[serde(default)]
    pub notice_sent_for: Option<u64>,
    /// The open rotation request, if any.
    #[serde(default)]
    pub request: Option<RotationRequest>,
    /// Bumped on every save; saves are compare-and-swap on it.
    #[serde(default)]
    pub revision: u64,
}

impl KeyState {
    /// Checks what a hand-edited state file can get wrong that serde does not: `name`
    /// is `expected` (the key the file is for), and every version string (`active`,
    /// the phase's `old`/`new`/`version`, each `disabled` entry) is one that
    /// [`KeyRef`](keymgr_core::KeyRef) accepts as `NAME@VERSION` (non-empty, no `@`).
    ///
    /// # Errors
    ///
    /// `(field, reason)`: the JSON field (`name`, `active`, `phase.old`, `phase.new`,
    /// `phase.version`, `disabled[i]`) and what is wrong with it.
    pub fn check(&self, expected: &str) -> std::result::Result<(), (String, String)> {
        if self.name != expected {
            return Err((
                "name".to_owned(),
                format!(
                    "{:?} is not the key this file is for ({expected:?})",
                    self.name
                ),
            ));
        }
        KeyRef::check_name(&self.name).map_err(|e| ("name".to_owned(), reason_of(e)))?;
        let phase: Vec<(&str, &String)> = match &self.phase {
            Phase::Idle | Phase::AwaitingApproval => Vec::new(),
            Phase::Creating { old } => old.iter().map(|v| ("phase.old", v)).collect(),
            Phase::Overlapping { old, new, .. } => vec![("phase.old", old), ("phase.new", new)],
            Phase::Disabling { old } => vec![("phase.old", old)],
            Phase::Failed { version, .. } => version.iter().map(|v| ("phase.version", v)).collect(),
        };
        let fields = self
            .active
            .iter()
            .map(|v| ("active".to_owned(), v))
            .chain(phase.into_iter().map(|(f, v)| (f.to_owned(), v)))
            .chain(
                self.disabled
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (format!("disabled[{i}]"), v)),
            );
        for (field, version) in fields {
            KeyRef::parse(&format!("{}@{version}", self.name)).map_err(|_| {
                (
                    field,
                    format!("{version:?} is not a key version (non-empty, no '@')"),
                )
            })?;
        }
        Ok(())
    }
}

fn reason_of(e: keymgr_core::Error) -> String {
    match e {
        keymgr_core::Error::InvalidInput { reason, .. } => reason,
        other => other.to_string(),
    }
}

/// Who holds (or held) a key's rotation lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseInfo {
    /// The rotator's holder id (e.g. `host:pid`).
    pub holder: String,
    /// The lease expires then (ms since the epoch) unless renewed.
    pub until_ms: u64,
    /// The process that took it, when the store knows (file store on Linux).
    #[serde(default)]
    pub process: Option<ProcessId>,
}

/// What [`StateStore::acquire_lease`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseOutcome {
    /// The caller holds the lease now; `took_over` names a holder whose process no
    /// longer exists (a rotator killed mid-run), whose lease was taken over at once.
    Acquired {
        /// The dead holder, if the lease was taken over.
        took_over: Option<LeaseInfo>,
    },
    /// Another holder, alive as far as the store can tell, has the lease.
    Held(LeaseInfo),
}

/// Persistence for [`KeyState`] plus a per-key lease so only one rotator acts on a key.
pub trait StateStore: Send + Sync + std::fmt::Debug {
    /// The state of `name`, if any was saved.
    fn load(&self, name: &str) -> Result<Option<KeyState>>;
    /// Saves `state` if the stored revision is still `state.revision`, then bumps it;
    /// `Ok(false)` when someone else saved in between.
    fn save(&self, state: &mut KeyState) -> Result<bool>;
    /// Takes or renews the lease on `name` for `holder` until `now_ms + ttl`, unless
    /// another live holder's lease has not expired.
    fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now_ms: u64,
        ttl: Duration,
    ) -> Result<LeaseOutcome>;
    /// Gives the lease up if `holder` has it.
    fn release_lease(&self, name: &str, holder: &str) -> Result<()>;
}

pub(crate) fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)
}

/// The lease decision shared by the stores: `existing` is kept while it is another
/// holder's, unexpired, and its process is not known to be dead.
pub(crate) fn decide_lease(
    existing: Option<LeaseInfo>,
    holder: &str,
    now_ms: u64,
    ttl: Duration,
) -> (LeaseOutcome, Option<LeaseInfo>) {
    let mine = LeaseInfo {
        holder: holder.to_owned(),
        until_ms: now_ms.saturating_add(ttl_ms(ttl)),
        process: ProcessId::current(),
    };
    match existing {
        Some(l) if l.holder != holder && l.until_ms > now_ms => {
            if l.process.as_ref().is_some_and(ProcessId::is_dead) {
                tracing::warn!(
                    holder = %l.holder,
                    "taking over the rotation lease of a process that no longer exists"
                );
                (LeaseOutcome::Acquired { took_over: Some(l) }, Some(mine))
            } else {
                (LeaseOutcome::Held(l), None)
            }
        }
        _ => (LeaseOutcome::Acquired { took_over: None }, Some(mine)),
    }
}

/// In-memory store (tests, single process).
#[derive(Debug, Default)]
pub struct MemoryStateStore {
    states: Mutex<HashMap<String, KeyState>>,
    leases: Mutex<HashMap<String, LeaseInfo>>,
}

impl StateStore for MemoryStateStore {
    fn load(&self, name: &str) -> Result<Option<KeyState>> {
        Ok(self
            .states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned())
    }

    fn save(&self, state: &mut KeyState) -> Result<bool> {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let stored = states.get(&state.name).map(|s| s.revision).unwrap_or(0);
        if stored != state.revision {
            return Ok(false);
        }
        state.revision += 1;
        states.insert(state.name.clone(), state.clone());
        Ok(true)
    }

    fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now_ms: u64,
        ttl: Duration,
    ) -> Result<LeaseOutcome> {
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        let (outcome, new) = decide_lease(leases.get(name).cloned(), holder, now_ms, ttl);
        if let Some(l) = new {
            leases.insert(name.to_owned(), l);
        }
        Ok(outcome)
    }

    fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        if leases.get(name).is_some_and(|l| l.holder == holder) {
            leases.remove(name);
        }
        Ok(())
    }
}
