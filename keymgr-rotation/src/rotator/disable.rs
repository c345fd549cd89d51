//! The last step of a rotation: disabling old versions once their overlap has ended.

use keymgr_core::{AuditEvent, KeyRef, Outcome, Result};

use super::{Rotator, stale_versions};
use crate::store::{KeyState, Phase, Step};

impl Rotator {
    /// Disables `old`; a version the backend no longer has counts as disabled. Then
    /// moves on to any other old version still enabled, else to `Idle`.
    pub(super) async fn disable(&self, state: &mut KeyState, old: &str, now: u64) -> Result<()> {
        let name = state.name.clone();
        let key = KeyRef::versioned(&name, old);
        let absent = match self.backend.disable_version(&key).await {
            Ok(()) => false,
            Err(e) if e.kind() == keymgr_core::ErrorKind::NotFound => {
                tracing::warn!(key = %key, "the version to disable is gone from the backend; counting it as disabled");
                true
            }
            Err(e) => {
                return Err(self
                    .fail(state, Step::Disable, Some(old.to_owned()), e, now)
                    .await);
            }
        };
        self.backend.invalidate(&name);
        let mut details = vec![("version", old.to_owned())];
        if absent {
            details.push((
                "already_absent",
                "the backend no longer has this version (deleted outside keymgr or lost in a crash)".to_owned(),
            ));
        }
        self.emit(AuditEvent::KeyDisabled, &name, Outcome::Success, &details)
            .await?;
        if !state.disabled.iter().any(|d| d == old) {
            state.disabled.push(old.to_owned());
        }
        let versions = self.backend.list_versions(&name).await?;
        state.phase = match stale_versions(&versions, &state.disabled).first() {
            Some(next) => Phase::Disabling { old: next.clone() },
            None => Phase::Idle,
        };
        self.save(state)
    }
}
