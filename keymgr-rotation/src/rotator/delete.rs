//! Opt-in deletion after a rotation ([`RotationPolicy::keep_versions`]): the only place
//! keymgr deletes key versions, each one a `KEY_DELETED` audit entry.
//!
//! [`RotationPolicy::keep_versions`]: crate::RotationPolicy::keep_versions

use keymgr_core::{AuditEvent, ErrorKind, KeyVersion, Outcome, Result, VersionState};

use super::Rotator;
use crate::result::RotationEvent;

/// The versions of `versions` (oldest first, as
/// [`list_versions`](keymgr_core::KeyBackend::list_versions) returns them) that deletion
/// with `keep` removes: disabled, not current, and older than the newest `keep`. Version
/// `0` (keymgr-hsm's original label, made outside keymgr) is neither counted nor deleted.
pub fn deletable_versions(versions: &[KeyVersion], keep: usize) -> Vec<&KeyVersion> {
    let made: Vec<&KeyVersion> = versions
        .iter()
        .filter(|v| v.key.version() != Some("0"))
        .collect();
    let excess = made.len().saturating_sub(keep);
    made.into_iter()
        .take(excess)
        .filter(|v| !v.current && v.state == VersionState::Disabled)
        .collect()
}

impl Rotator {
    /// Deletes what [`deletable_versions`] names for `name` when deletion is opted in.
    /// Each attempt is two `KEY_DELETED` entries (actor, version, keep count, reason):
    /// `pending` before the backend is asked (if it cannot be written, nothing is
    /// deleted), then the outcome;
    /// a refused or failed deletion is audited (`denied` / `failure`) and logged but does
    /// not fail the rotation, whose new version is already current: the next rotation
    /// tries again.
    pub(super) async fn delete_beyond_keep(
        &self,
        name: &str,
        events: &mut Vec<RotationEvent>,
    ) -> Result<()> {
        let Some(keep) = self.policy.keep_versions else {
            return Ok(());
        };
        let versions = match self.backend.list_versions(name).await {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(key = name, error = %e, "cannot list versions to delete the ones beyond the keep count; the next rotation tries again");
                return Ok(());
            }
        };
        let reason = format!(
            "{} keeps the newest {keep} versions; this one is older and disabled",
            crate::HSM_KEEP_VERSIONS
        );
        for v in deletable_versions(&versions, keep) {
            let Some(version) = v.key.version().map(str::to_owned) else {
                continue;
            };
            let mut details = vec![
                ("version", version.clone()),
                ("backend_id", v.backend_id.clone()),
                ("keep_versions", keep.to_string()),
                ("reason", reason.clone()),
            ];
            // The intent first: a destruction the log cannot record does not happen.
            self.emit_versioned(
                AuditEvent::KeyDeleted,
                name,
                &version,
                Outcome::Pending,
                &details,
            )
            .await?;
            let result = self.backend.delete_version(&v.key).await;
            let outcome = match &result {
                Ok(()) => Outcome::Success,
                Err(e) if e.kind() == ErrorKind::InvalidInput => Outcome::Denied,
                Err(_) => Outcome::Failure,
            };
            if let Err(e) = &result {
                details.push(("error", e.to_string()));
                details.push(("error_kind", e.kind().as_str().to_owned()));
            }
            self.emit_versioned(AuditEvent::KeyDeleted, name, &version, outcome, &details)
                .await?;
            match result {
                Ok(()) => events.push(RotationEvent::Deleted {
                    key: name.to_owned(),
                    version,
                }),
                Err(e) => {
                    tracing::error!(key = name, %version, error = %e, "deleting an old key version failed; the next rotation tries again");
                }
            }
        }
        self.backend.invalidate(name);
        Ok(())
    }
}
