//! What operators see: [`KeyStatus`] (`keymgr keys status`), version checks, schedule.

use keymgr_core::{
    AuditEvent, AuditRecord, Error, KeyRef, KeyVersion, Outcome, Result, VersionState,
};
use serde::Serialize;

use crate::Rotator;
use crate::result::RotatedKey;
use crate::rotator::ms;
use crate::store::{KeyState, Phase};

/// One logical key's status, for `keymgr keys status`.
#[derive(Debug, Clone, Serialize)]
pub struct KeyStatus {
    /// The logical key.
    pub key: String,
    /// Rotation state: persisted, or (see `persisted`) as a rotator would start from the
    /// backend's versions.
    pub state: KeyState,
    /// Whether `state` was read from the store (false: nothing was ever recorded).
    pub persisted: bool,
    /// Each version as the backend reports it, oldest first, with its lifecycle stage.
    pub versions: Vec<VersionStatus>,
    /// When the next rotation is due (ms since the epoch); `None` when it cannot be
    /// known yet (no state and the backend does not record creation times: the first
    /// scheduler tick starts the clock).
    pub next_rotation_ms: Option<u64>,
    /// When the notice for it is (or was) given (ms).
    pub notice_ms: Option<u64>,
    /// What an operator should do now, if anything (a failed step, a request waiting
    /// for approval).
    pub action: Option<String>,
}

/// One version: what the backend says, where it is in its life, and its identities.
#[derive(Debug, Clone, Serialize)]
pub struct VersionStatus {
    /// The backend's view.
    pub version: KeyVersion,
    /// Its stage.
    pub stage: Lifecycle,
    /// Its public key, EVM address and XRPL public key / account, when the backend still
    /// returns the public key (a disabled AWS key does not).
    pub identity: Option<RotatedKey>,
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
    /// rotation disables it (`None`: not scheduled yet, e.g. it was enabled outside
    /// keymgr; the next rotator tick schedules it).
    Overlapping {
        /// End of the overlap (ms since the epoch).
        until_ms: Option<u64>,
    },
    /// Disabled: explicit use is refused. Deleted only under the opt-in
    /// [`RotationPolicy::keep_versions`](crate::RotationPolicy::keep_versions).
    Disabled,
}

impl Lifecycle {
    fn of(version: &KeyVersion, state: &KeyState) -> Lifecycle {
        let id = version.key.version().unwrap_or_default();
        if version.state == VersionState::Pending {
            Lifecycle::Pending
        } else if version.state == VersionState::Disabled || state.disabled.iter().any(|d| d == id)
        {
            Lifecycle::Disabled
        } else if version.current {
            Lifecycle::Active
        } else {
            Lifecycle::Overlapping {
                until_ms: match &state.phase {
                    Phase::Overlapping { old, until_ms, .. } if old == id => Some(*until_ms),
                    _ => None,
                },
            }
        }
    }
}

impl Rotator {
    /// Versions, stages, identities and schedule of `name`. Reads only: a key never
    /// ticked is shown as a rotator would start it, without saving anything.
    pub async fn status(&self, name: &str) -> Result<KeyStatus> {
        let now = self.clock.now_ms();
        let stored = self.store.load(name)?;
        let persisted = stored.is_some();
        let state = match stored {
            Some(s) => s,
            None => self.initial_state(name, now).await?,
        };
        let mut versions = Vec::new();
        for v in self.backend.list_versions(name).await? {
            let identity = match self.backend.public_key(&v.key).await {
                Ok(public_key) => Some(RotatedKey {
                    key: v.key.clone(),
                    public_key,
                }),
                Err(_) => None,
            };
            versions.push(VersionStatus {
                stage: Lifecycle::of(&v, &state),
                version: v,
                identity,
            });
        }
        // Without saved state the start of the cycle is only known when the backend
        // records when the current version was made; "now" would drift on every call.
        let current_created = versions
            .iter()
            .find(|v| v.version.current)
            .and_then(|v| v.version.created_at_ms);
        let next = if persisted {
            Some(self.due_ms(&state))
        } else {
            current_created.map(|_| self.due_ms(&state))
        };
        Ok(KeyStatus {
            key: name.to_owned(),
            action: self.action(name, &state, now),
            notice_ms: next.map(|n| n.saturating_sub(ms(self.policy.notice))),
            next_rotation_ms: next,
            versions,
            persisted,
            state,
        })
    }

    fn action(&self, name: &str, state: &KeyState, now: u64) -> Option<String> {
        match (&state.phase, &state.request) {
            (Phase::Failed { step, error, .. }, _) => Some(format!(
                "the {} step failed and will not be retried on its own ({error}); fix the \
                 cause, then run `keymgr rotate --key {name} --now` to retry it",
                step.as_str()
            )),
            (Phase::Creating { .. } | Phase::Disabling { .. }, _) => Some(format!(
                "a rotation step was interrupted; the scheduler resumes it, or run \
                 `keymgr rotate --key {name} --now`"
            )),
            (_, Some(r)) if r.expired(now) => Some(format!(
                "rotation request {} expired; request again with `keymgr rotate --key {name} \
                 --now`",
                r.id
            )),
            (_, Some(r)) if r.approved_by.is_none() && self.policy.require_approval => {
                Some(format!(
                    "rotation request {} ({}) by {} waits for approval by another actor: \
                     `keymgr rotate approve --key {name}`",
                    r.id,
                    r.kind.as_str(),
                    r.requested_by
                ))
            }
            (_, Some(r)) => Some(format!(
                "rotation request {} is approved by {}; it runs at the next scheduler tick or \
                 with `keymgr rotate --key {name} --now`",
                r.id,
                r.approved_by.as_deref().unwrap_or("-")
            )),
            _ => None,
        }
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
            r.actor = Some(self.actor.clone());
            r.key_version = Some(version.to_owned());
            r.details
                .insert("reason".into(), "version disabled by rotation".into());
            self.audit.record(r).await?;
            return Err(Error::AccessDenied {
                key: key.to_string(),
                detail:
                    "this version was disabled after its rotation overlap; use the current version"
                        .into(),
                source: None,
            });
        }
        Ok(())
    }

    /// The version an unversioned `name` signs with now (the backend's current one).
    pub async fn resolve(&self, name: &str) -> Result<KeyVersion> {
        self.current_version(name).await
    }

    /// When `name` next needs a [`tick`](Self::tick) (ms), or `None` while nothing can
    /// happen without an operator (a request waiting for approval after it expires is
    /// ticked to expire it; a failed step waits for `rotate --now`) or rotation is off.
    pub fn next_due_ms(&self, name: &str) -> Result<Option<u64>> {
        if !self.policy.enabled {
            return Ok(None);
        }
        let Some(state) = self.store.load(name)? else {
            return Ok(Some(0));
        };
        let runnable = state.request.as_ref().filter(|r| self.runnable(r));
        let due = self.due_ms(&state);
        Ok(match &state.phase {
            Phase::Idle if runnable.is_some() => Some(0),
            Phase::Idle => {
                let notice_at = due.saturating_sub(ms(self.policy.notice));
                Some(if state.notice_sent_for == Some(state.active_since_ms) {
                    due
                } else {
                    notice_at
                })
            }
            Phase::AwaitingApproval => match (&state.request, runnable) {
                (_, Some(_)) => Some(0),
                (Some(r), None) => Some(r.expires_at_ms),
                (None, None) => Some(0),
            },
            Phase::Overlapping { until_ms, .. } => Some(match runnable {
                Some(r) if r.kind == crate::RequestKind::Emergency => 0,
                _ => *until_ms,
            }),
            Phase::Creating { .. } | Phase::Disabling { .. } => Some(0),
            Phase::Failed { .. } => None,
        })
    }
}
