//! `keymgr keys status` and the human text of rotation events.

use keymgr::KeyVersion;
use keymgr::{ErrorKind, KeyAlgorithm};
use keymgr_rotation::{
    HSM_KEEP_VERSIONS, KeyStatus, Lifecycle, Phase, RotatedKey, RotationEvent, RotationPolicy,
    deletable_versions,
};
use serde_json::json;

use super::rotate::rotator;
use crate::{Context, Output};

/// `keymgr keys ...`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum KeysCommand {
    /// Versions (state, public key, EVM address or XRPL public key and account), rotation
    /// state, next rotation and what an operator should do.
    Status {
        /// Keys to show (default: evm and xrp).
        #[arg(long = "key")]
        keys: Vec<String>,
    },
}

/// `ms` since the Unix epoch as RFC 3339 UTC (e.g. `2026-11-23T10:00:00.000Z`).
pub(crate) fn ts(ms: u64) -> String {
    keymgr_audit::time::format_rfc3339(ms)
}

fn stage(stage: &Lifecycle) -> String {
    match stage {
        Lifecycle::Pending => "pending".to_owned(),
        Lifecycle::Active => "active (current)".to_owned(),
        Lifecycle::Overlapping { until_ms: Some(t) } => {
            format!("overlapping, disabled at {}", ts(*t))
        }
        Lifecycle::Overlapping { until_ms: None } => {
            "enabled, not current (disabled after an overlap by the next rotator tick)".to_owned()
        }
        Lifecycle::Disabled => "disabled".to_owned(),
    }
}

/// Whether `key` is shown with its XRPL identity (the XRP key, and any Ed25519 key).
fn is_xrpl(key: &str, algorithm: KeyAlgorithm) -> bool {
    key == "xrp" || algorithm == KeyAlgorithm::Ed25519
}

fn identity_lines(key: &str, id: &RotatedKey, indent: &str) -> String {
    let mut out = String::new();
    if is_xrpl(key, id.public_key.algorithm()) {
        out.push_str(&format!(
            "{indent}XRPL public key {}\n{indent}XRPL account {}\n",
            id.xrpl_public_key(),
            id.xrpl_account()
        ));
    } else if let Some(address) = id.evm_address() {
        out.push_str(&format!("{indent}EVM address {address}\n"));
    }
    out
}

fn phase(p: &Phase) -> String {
    match p {
        Phase::Idle => "idle".to_owned(),
        Phase::AwaitingApproval => "awaiting approval".to_owned(),
        Phase::Creating { old } => format!(
            "creating a new version (replacing {})",
            old.as_deref().unwrap_or("-")
        ),
        Phase::Overlapping { old, new, until_ms } => format!(
            "overlap: version {old} signs (explicitly) until {}, version {new} is current",
            ts(*until_ms)
        ),
        Phase::Disabling { old } => format!("disabling version {old}"),
        Phase::Failed {
            step, error, at_ms, ..
        } => format!("FAILED at {} ({}): {error}", step.as_str(), ts(*at_ms)),
    }
}

/// What the opt-in deletion (`HSM_KEEP_VERSIONS`, the rotator's `keep_versions`) will
/// delete: right after the next rotation makes a new version, the rotator deletes the
/// disabled versions beyond the newest N. `None` when deletion is off.
fn doomed(status: &KeyStatus, policy: &RotationPolicy) -> Option<(usize, Vec<String>)> {
    let keep = policy.keep_versions?;
    let listed: Vec<KeyVersion> = status.versions.iter().map(|v| v.version.clone()).collect();
    Some((keep, forecast(&listed, keep)))
}

/// The versions the next rotation deletes with `keep` versions kept: by then the
/// version now in its overlap has been disabled (a rotation inside the overlap is
/// refused unless forced), and the new version counts towards `keep`
/// ([`deletable_versions`] over today's versions with `keep - 1`).
fn forecast(listed: &[KeyVersion], keep: usize) -> Vec<String> {
    let by_then: Vec<KeyVersion> = listed
        .iter()
        .cloned()
        .map(|mut v| {
            if !v.current && v.state == keymgr::VersionState::Enabled {
                v.state = keymgr::VersionState::Disabled;
            }
            v
        })
        .collect();
    deletable_versions(&by_then, keep.saturating_sub(1))
        .into_iter()
        .filter_map(|v| v.key.version().map(str::to_owned))
        .collect()
}

fn deletion_text(status: &KeyStatus, policy: &RotationPolicy) -> String {
    let Some((keep, versions)) = doomed(status, policy) else {
        return "off: old versions are disabled, never deleted".to_owned();
    };
    let when = status.next_rotation_ms.map_or_else(
        || "right after the next rotation".to_owned(),
        |t| format!("right after the next rotation ({})", ts(t)),
    );
    if versions.is_empty() {
        format!("{HSM_KEEP_VERSIONS}={keep}: nothing will be deleted {when}")
    } else {
        let named: Vec<String> = versions
            .iter()
            .map(|v| format!("{}@{v}", status.state.name))
            .collect();
        format!(
            "{HSM_KEEP_VERSIONS}={keep}: {} will be deleted {when}, each audited as KEY_DELETED",
            named.join(", ")
        )
    }
}

fn deletion_json(status: &KeyStatus, policy: &RotationPolicy) -> serde_json::Value {
    match doomed(status, policy) {
        None => json!({ "enabled": false }),
        Some((keep, versions)) => json!({
            "enabled": true,
            "keep_versions": keep,
            "next": { "versions": versions, "after_rotation_at_ms": status.next_rotation_ms },
        }),
    }
}

fn status_text(key: &str, s: &KeyStatus, policy: &RotationPolicy) -> String {
    let algorithm = s
        .versions
        .first()
        .map_or("unknown".to_owned(), |v| v.version.algorithm.to_string());
    let mut text = format!(
        "{key} ({algorithm})\n  rotation: {}\n",
        phase(&s.state.phase)
    );
    match (s.next_rotation_ms, s.notice_ms) {
        (Some(next), Some(notice)) => text.push_str(&format!(
            "  next rotation: {} (notice {}, every {} days)\n",
            ts(next),
            ts(notice),
            policy.interval.as_secs() / 86_400
        )),
        _ => text.push_str(
            "  next rotation: not scheduled yet (no rotation state, and the backend does not \
             record when the current version was made; the first `keymgr rotate run` tick \
             starts the schedule)\n",
        ),
    }
    if let Some(r) = &s.state.request {
        text.push_str(&format!(
            "  request: {} ({}) by {}{}, valid until {}\n",
            r.id,
            r.kind.as_str(),
            r.requested_by,
            r.approved_by
                .as_deref()
                .map(|a| format!(", approved by {a}"))
                .unwrap_or_default(),
            ts(r.expires_at_ms)
        ));
    }
    text.push_str(&format!(
        "  deletion: {}\n  versions:\n",
        deletion_text(s, policy)
    ));
    let doomed = doomed(s, policy);
    for v in &s.versions {
        let created = v
            .version
            .created_at_ms
            .map(|t| format!("  created {}", ts(t)))
            .unwrap_or_default();
        let fate = match (&v.stage, &doomed) {
            (Lifecycle::Disabled, None) => " (kept, not deleted)",
            (Lifecycle::Disabled, Some((_, versions)))
                if versions.iter().any(|d| v.version.key.version() == Some(d)) =>
            {
                " (deleted right after the next rotation)"
            }
            (Lifecycle::Disabled, Some(_)) => " (kept)",
            _ => "",
        };
        text.push_str(&format!(
            "    {}  {}{fate}  [{}]{created}\n",
            v.version.key,
            stage(&v.stage),
            v.version.backend_id
        ));
        if let Some(id) = &v.identity {
            text.push_str(&identity_lines(key, id, "      "));
        }
    }
    if let Some(action) = &s.action {
        text.push_str(&format!("  action: {action}\n"));
    }
    text
}

pub(crate) async fn keys(cmd: KeysCommand, ctx: &Context) -> anyhow::Result<Output> {
    let KeysCommand::Status { keys } = cmd;
    let explicit = !keys.is_empty();
    let keys = if explicit {
        keys
    } else {
        vec!["evm".into(), "xrp".into()]
    };
    let r = rotator(ctx, false, RotationPolicy::from_source(&ctx.vars())?, None).await?;
    let policy = r.policy().clone();
    let mut out = Vec::new();
    let mut text = String::new();
    for key in keys {
        match r.status(&key).await {
            Ok(s) => {
                text.push_str(&status_text(&key, &s, &policy));
                out.push(json!({
                    "key": key,
                    "status": s,
                    "deletion": deletion_json(&s, &policy),
                }));
            }
            // Listing the default keys: skip one that does not exist or whose variable
            // is unset (an unconfigured `evm`/`xrp` is a configuration error by design).
            Err(e) if !explicit && matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Config) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Output::new(json!({ "keys": out }), text))
}

/// One event as text for operators.
pub(crate) fn describe(e: &RotationEvent) -> String {
    match e {
        RotationEvent::Notice { key, due_ms } => {
            format!("notice: {key} rotates at {}", ts(*due_ms))
        }
        RotationEvent::Requested { key, request } => format!(
            "{key}: rotation requested by {} (request {}, {}); it needs approval by another \
             actor before {}: `keymgr rotate approve --key {key}`",
            request.requested_by,
            request.id,
            request.kind.as_str(),
            ts(request.expires_at_ms)
        ),
        RotationEvent::AwaitingApproval { key, request } => format!(
            "{key}: rotation request {} by {} waits for approval by another actor (until {}): \
             `keymgr rotate approve --key {key}`",
            request.id,
            request.requested_by,
            ts(request.expires_at_ms)
        ),
        RotationEvent::Expired { key, request } => format!(
            "{key}: rotation request {} expired at {} unused",
            request.id,
            ts(request.expires_at_ms)
        ),
        RotationEvent::Rotated(r) => {
            let mut text = format!(
                "{}: rotated {} -> {} ({})\n",
                r.key,
                r.old.as_ref().map_or("-", |o| o.version()),
                r.new.version(),
                r.algorithm()
            );
            if let Some(old) = &r.old {
                text.push_str(&format!(
                    "  old public key {}\n",
                    hex::encode(old.public_key.to_bytes())
                ));
                text.push_str(&identity_lines(&r.key, old, "    "));
            }
            text.push_str(&format!(
                "  new public key {}\n",
                hex::encode(r.new.public_key.to_bytes())
            ));
            text.push_str(&identity_lines(&r.key, &r.new, "    "));
            text.push_str(&format!(
                "  old version valid until {}\n  WARNING: {}",
                ts(r.overlap_until_ms),
                r.note
            ));
            text
        }
        RotationEvent::Disabled { key, version } => {
            format!("{key}: version {version} disabled (kept, not deleted)")
        }
        RotationEvent::Deleted { key, version } => format!(
            "{key}: version {version} deleted for good ({HSM_KEEP_VERSIONS} keeps only the newest versions)"
        ),
        RotationEvent::LeaseHeldElsewhere { key, lease } => format!(
            "{key}: rotator {} holds the rotation lease until {}; nothing done",
            lease.holder,
            ts(lease.until_ms)
        ),
        RotationEvent::LeaseTakenOver { key, lease } => format!(
            "{key}: took over the rotation lease of {}, whose process no longer exists",
            lease.holder
        ),
    }
}

#[cfg(test)]
mod tests {
    use keymgr::{KeyAlgorithm, KeyRef, KeyVersion, VersionState};

    fn version(n: u32, state: VersionState, current: bool) -> KeyVersion {
        KeyVersion {
            key: KeyRef::versioned("evm", n.to_string()),
            backend_id: format!("evm.v{n}"),
            algorithm: KeyAlgorithm::Secp256k1,
            state,
            created_at_ms: None,
            current,
        }
    }

    #[test]
    fn forecast_counts_the_version_in_its_overlap_as_disabled_by_then() {
        use VersionState::{Disabled, Enabled};
        // Right after rotating to v3 with a 7-day overlap: v2 is still enabled, but the
        // next (unforced) rotation comes after its overlap, so v2 is disabled by then.
        let now = [
            version(0, Disabled, false),
            version(1, Disabled, false),
            version(2, Enabled, false),
            version(3, Enabled, true),
        ];
        // keep 2: after the next rotation v3 and v4 stay; v1 and v2 go, never v0.
        assert_eq!(super::forecast(&now, 2), ["1", "2"]);
        assert_eq!(super::forecast(&now, 3), ["1"]);
        assert!(super::forecast(&now, 4).is_empty());
        // The current version is never forecast, whatever its state.
        let only = [version(1, Disabled, false), version(2, Enabled, true)];
        assert_eq!(super::forecast(&only, 2), ["1"]);
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(super::ts(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::ts(1_795_430_285_123), "2026-11-23T10:38:05.123Z");
        assert_eq!(super::ts(951_868_799_000), "2000-02-29T23:59:59.000Z");
    }
}
