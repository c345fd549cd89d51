//! When keys rotate: interval, overlap, notice, approval.

use std::time::Duration;

use keymgr_core::config::{TimeUnit, VarSource, Vars};
use keymgr_core::{Error, Result};

/// Rotation on or off (`true`/`false`, default `false`).
pub const KEYMGR_ROTATION_ENABLED: &str = "KEYMGR_ROTATION_ENABLED";
/// Days between rotations (default 90).
pub const KEYMGR_ROTATION_INTERVAL_DAYS: &str = "KEYMGR_ROTATION_INTERVAL_DAYS";
/// Days the old version stays valid after a rotation (default 7).
pub const KEYMGR_ROTATION_OVERLAP_DAYS: &str = "KEYMGR_ROTATION_OVERLAP_DAYS";
/// Days before a rotation that the notice is given (default 14).
pub const KEYMGR_ROTATION_NOTICE_DAYS: &str = "KEYMGR_ROTATION_NOTICE_DAYS";
/// Whether rotations wait for an operator's approval (`true`/`false`; default `false`,
/// `true` under `KEYMGR_PROFILE=production`).
pub const KEYMGR_ROTATION_APPROVAL: &str = "KEYMGR_ROTATION_APPROVAL";
/// Deployment profile: `development` (default) or `production` (rotations need approval
/// unless `KEYMGR_ROTATION_APPROVAL` says otherwise).
pub const KEYMGR_PROFILE: &str = "KEYMGR_PROFILE";
/// Hours a rotation request, and then its approval, stays valid (default 24).
pub const KEYMGR_ROTATION_APPROVAL_TTL_HOURS: &str = "KEYMGR_ROTATION_APPROVAL_TTL_HOURS";
/// Directory of the rotation state files.
pub const KEYMGR_ROTATION_STATE_PATH: &str = "KEYMGR_ROTATION_STATE_PATH";

const DAY: Duration = Duration::from_secs(86_400);
const HOUR: Duration = Duration::from_secs(3_600);

/// A rotation policy. Build with [`Default`] or [`RotationPolicy::from_vars`], then
/// [`validate`](RotationPolicy::validate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationPolicy {
    /// Whether the scheduler rotates at all.
    pub enabled: bool,
    /// Time between rotations (default 90 days).
    pub interval: Duration,
    /// How long the previous version stays valid after a rotation (default 7 days).
    pub overlap: Duration,
    /// How long before a rotation the notice is given (default 14 days).
    pub notice: Duration,
    /// Rotation waits for [`Rotator::approve`](crate::Rotator::approve) (default off; on
    /// in production profiles).
    pub require_approval: bool,
    /// How long a rotation request waits for approval, and then how long the approval
    /// stays valid before it is used (default 24 hours).
    pub approval_ttl: Duration,
    /// Opt-in deletion (at least 2): after each rotation, versions older than the newest
    /// `keep_versions` that are already disabled are deleted
    /// ([`KeyBackend::delete_version`](keymgr_core::KeyBackend::delete_version)), one
    /// `KEY_DELETED` audit entry each. `None` (the default): nothing is ever deleted.
    /// Version `0` (keymgr-hsm's original, unversioned label, made outside keymgr) is
    /// neither counted nor deleted. keymgr-cli sets it from [`HSM_KEEP_VERSIONS`] when
    /// the backend is an HSM (the only backend that deletes).
    pub keep_versions: Option<usize>,
}

/// The HSM deletion opt-in (keymgr-hsm's variable of the same name):
/// [`RotationPolicy::keep_versions`].
pub const HSM_KEEP_VERSIONS: &str = "HSM_KEEP_VERSIONS";

impl Default for RotationPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: DAY * 90,
            overlap: DAY * 7,
            notice: DAY * 14,
            require_approval: false,
            approval_ttl: HOUR * 24,
            keep_versions: None,
        }
    }
}

impl RotationPolicy {
    /// The defaults for production: as [`Default`], but every rotation waits for an
    /// operator's [`approve`](crate::Rotator::approve).
    pub fn production() -> Self {
        Self {
            require_approval: true,
            ..Self::default()
        }
    }

    /// Checks `interval > 0`, `overlap < interval`, `notice < interval`; errors name the
    /// setting.
    pub fn validate(&self) -> Result<()> {
        if self.interval.is_zero() {
            return Err(Error::config(
                KEYMGR_ROTATION_INTERVAL_DAYS,
                "a positive number of days",
                "the rotation interval is zero",
            ));
        }
        if self.overlap >= self.interval {
            return Err(Error::config(
                KEYMGR_ROTATION_OVERLAP_DAYS,
                "fewer days than the rotation interval",
                format!(
                    "overlap {} d is not shorter than the interval {} d",
                    self.overlap.as_secs() / 86_400,
                    self.interval.as_secs() / 86_400
                ),
            ));
        }
        if self.approval_ttl.is_zero() {
            return Err(Error::config(
                KEYMGR_ROTATION_APPROVAL_TTL_HOURS,
                "a positive number of hours",
                "an approval that expires at once can never be used",
            ));
        }
        if let Some(keep) = self.keep_versions
            && keep < 2
        {
            return Err(Error::config(
                HSM_KEEP_VERSIONS,
                "at least 2 versions",
                format!("keeping {keep} version(s) would delete the version in its overlap"),
            ));
        }
        if self.notice >= self.interval {
            return Err(Error::config(
                KEYMGR_ROTATION_NOTICE_DAYS,
                "fewer days than the rotation interval",
                format!(
                    "notice {} d is not shorter than the interval {} d",
                    self.notice.as_secs() / 86_400,
                    self.interval.as_secs() / 86_400
                ),
            ));
        }
        Ok(())
    }

    /// Reads `KEYMGR_ROTATION_*` through `var` (unset means the default; rotation itself
    /// is off unless `KEYMGR_ROTATION_ENABLED=true`) and validates.
    pub fn from_vars(var: impl Fn(&str) -> Option<String> + Sync) -> Result<Self> {
        Self::from_source(&var)
    }

    /// Like `from_vars`, from any [`VarSource`] (the process environment, a map,
    /// the environment layered over a configuration file, a collecting
    /// [`Vars`] of `keymgr config check`). A value that is not UTF-8 is an error
    /// naming its variable.
    pub fn from_source(source: &dyn VarSource) -> Result<Self> {
        let vars = Vars::new(source);
        let production = vars
            .choice(
                KEYMGR_PROFILE,
                &[("development", false), ("production", true)],
            )?
            .unwrap_or(false);
        let defaults = if production {
            Self::production()
        } else {
            Self::default()
        };
        let days = |name| vars.duration(name, TimeUnit::Days, 0..=MAX_DAYS);
        let policy = Self {
            enabled: vars.flag(KEYMGR_ROTATION_ENABLED)?.unwrap_or(false),
            interval: days(KEYMGR_ROTATION_INTERVAL_DAYS)?.unwrap_or(defaults.interval),
            overlap: days(KEYMGR_ROTATION_OVERLAP_DAYS)?.unwrap_or(defaults.overlap),
            notice: days(KEYMGR_ROTATION_NOTICE_DAYS)?.unwrap_or(defaults.notice),
            require_approval: vars
                .flag(KEYMGR_ROTATION_APPROVAL)?
                .unwrap_or(defaults.require_approval),
            approval_ttl: vars
                .duration(
                    KEYMGR_ROTATION_APPROVAL_TTL_HOURS,
                    TimeUnit::Hours,
                    0..=MAX_APPROVAL_TTL_HOURS,
                )?
                .unwrap_or(defaults.approval_ttl),
            keep_versions: None,
        };
        policy.validate()?;
        Ok(policy)
    }
}

/// Upper bound of the `KEYMGR_ROTATION_*_DAYS` settings (10 years).
pub const MAX_DAYS: u64 = 3650;
/// Upper bound of `KEYMGR_ROTATION_APPROVAL_TTL_HOURS` (30 days).
pub const MAX_APPROVAL_TTL_HOURS: u64 = 720;

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        let pairs = pairs.to_vec();
        move |n| {
            pairs
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn defaults_and_validation_name_the_setting() {
        let p = RotationPolicy::from_vars(vars(&[])).unwrap();
        assert!(!p.enabled);
        assert_eq!(p.interval, DAY * 90);
        for (pairs, name) in [
            (
                &[(KEYMGR_ROTATION_INTERVAL_DAYS, "0")][..],
                KEYMGR_ROTATION_INTERVAL_DAYS,
            ),
            (
                &[(KEYMGR_ROTATION_OVERLAP_DAYS, "90")][..],
                KEYMGR_ROTATION_OVERLAP_DAYS,
            ),
            (
                &[(KEYMGR_ROTATION_NOTICE_DAYS, "120")][..],
                KEYMGR_ROTATION_NOTICE_DAYS,
            ),
            (
                &[(KEYMGR_ROTATION_ENABLED, "maybe")][..],
                KEYMGR_ROTATION_ENABLED,
            ),
            (
                &[(KEYMGR_ROTATION_APPROVAL, "2")][..],
                KEYMGR_ROTATION_APPROVAL,
            ),
            (
                &[(KEYMGR_ROTATION_OVERLAP_DAYS, "seven")][..],
                KEYMGR_ROTATION_OVERLAP_DAYS,
            ),
            (&[(KEYMGR_PROFILE, "prod")][..], KEYMGR_PROFILE),
            (
                &[(KEYMGR_ROTATION_INTERVAL_DAYS, "18446744073709551615")][..],
                KEYMGR_ROTATION_INTERVAL_DAYS,
            ),
            (
                &[(KEYMGR_ROTATION_APPROVAL_TTL_HOURS, "100000")][..],
                KEYMGR_ROTATION_APPROVAL_TTL_HOURS,
            ),
            (
                &[(KEYMGR_ROTATION_APPROVAL_TTL_HOURS, "0")][..],
                KEYMGR_ROTATION_APPROVAL_TTL_HOURS,
            ),
        ] {
            let e = RotationPolicy::from_vars(vars(pairs)).unwrap_err();
            assert!(e.to_string().contains(name), "{e}");
        }
        let p = RotationPolicy::from_vars(vars(&[
            (KEYMGR_ROTATION_ENABLED, "true"),
            (KEYMGR_ROTATION_APPROVAL, "true"),
            (KEYMGR_ROTATION_INTERVAL_DAYS, "30"),
            (KEYMGR_ROTATION_OVERLAP_DAYS, "0"),
            (KEYMGR_ROTATION_NOTICE_DAYS, "3"),
        ]))
        .unwrap();
        assert!(p.enabled && p.require_approval);
        assert_eq!(p.overlap, Duration::ZERO);

        // The production profile turns approval on unless it is set explicitly.
        let p = RotationPolicy::from_vars(vars(&[(KEYMGR_PROFILE, "production")])).unwrap();
        assert!(p.require_approval);
        assert_eq!(
            p,
            RotationPolicy {
                enabled: false,
                ..RotationPolicy::production()
            }
        );
        let p = RotationPolicy::from_vars(vars(&[
            (KEYMGR_PROFILE, "production"),
            (KEYMGR_ROTATION_APPROVAL, "false"),
        ]))
        .unwrap();
        assert!(!p.require_approval);
    }

    #[test]
    fn keeping_fewer_than_two_versions_is_refused() {
        for keep in [0, 1] {
            let p = RotationPolicy {
                keep_versions: Some(keep),
                ..RotationPolicy::default()
            };
            match p.validate().unwrap_err() {
                Error::Config { variable, .. } => assert_eq!(variable, HSM_KEEP_VERSIONS),
                other => panic!("{other:?}"),
            }
        }
        let p = RotationPolicy {
            keep_versions: Some(2),
            ..RotationPolicy::default()
        };
        p.validate().unwrap();
    }
}
