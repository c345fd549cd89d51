//! `keymgr rotate` and `keymgr keys status`: operator access to keymgr-rotation.

use std::sync::Arc;

use keymgr::{ErrorKind, KeyAlgorithm};
use keymgr_rotation::{
    FileStateStore, KEYMGR_ROTATION_STATE_PATH, MemoryStateStore, Phase, RotationEvent,
    RotationPolicy, Rotator, StateStore, SystemClock,
};
use serde_json::json;

use crate::{Context, Output};

/// `keymgr rotate`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct RotateArgs {
    #[command(subcommand)]
    command: Option<RotateCommand>,
    /// Key to rotate.
    #[arg(long)]
    key: Option<String>,
    /// Rotate now instead of when the schedule says.
    #[arg(long)]
    now: bool,
    /// Show what would happen; change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, clap::Subcommand)]
enum RotateCommand {
    /// Run the rotation scheduler until SIGINT/SIGTERM (needs KEYMGR_ROTATION_ENABLED=true
    /// and KEYMGR_ROTATION_STATE_PATH); prints each event as it happens (a JSON object
    /// per line with --json), then a summary.
    Run {
        /// Keys to schedule (default: evm and xrp).
        #[arg(long = "key")]
        keys: Vec<String>,
    },
    /// Approve a rotation that waits for an operator (KEYMGR_ROTATION_APPROVAL=true).
    Approve {
        /// Key whose rotation to approve.
        #[arg(long)]
        key: String,
    },
}

/// `keymgr keys ...`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum KeysCommand {
    /// Versions, states, next rotation and notice of each key.
    Status {
        /// Keys to show (default: evm and xrp).
        #[arg(long = "key")]
        keys: Vec<String>,
    },
}

fn holder() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "keymgr-cli".into());
    format!("{host}:{}", std::process::id())
}

async fn rotator(ctx: &Context, need_store: bool) -> anyhow::Result<Rotator> {
    let var = |n: &str| std::env::var(n).ok();
    let mut policy = RotationPolicy::from_vars(var)?;
    // An operator running the command asks for rotation explicitly.
    policy.enabled = true;
    rotator_with(ctx, need_store, policy).await
}

async fn rotator_with(
    ctx: &Context,
    need_store: bool,
    policy: RotationPolicy,
) -> anyhow::Result<Rotator> {
    let manager = ctx.manager().await?;
    let store: Arc<dyn StateStore> = match std::env::var(KEYMGR_ROTATION_STATE_PATH) {
        Ok(dir) if !dir.trim().is_empty() => Arc::new(FileStateStore::new(dir)?),
        _ if need_store => {
            return Err(keymgr::Error::config(
                KEYMGR_ROTATION_STATE_PATH,
                "a directory for rotation state shared by every process that rotates these keys",
                "not set",
            )
            .into());
        }
        _ => Arc::new(MemoryStateStore::default()),
    };
    Ok(Rotator::new(
        manager.backend().clone(),
        store,
        manager.audit_sink().clone(),
        policy,
        Arc::new(SystemClock),
        holder(),
    )?)
}

fn describe(e: &RotationEvent) -> String {
    match e {
        RotationEvent::Notice { key, due_ms } => {
            format!("notice: {key} rotates at {}", ts(*due_ms))
        }
        RotationEvent::AwaitingApproval { key } => {
            format!("{key}: rotation due, waiting for approval (keymgr rotate approve --key {key})")
        }
        RotationEvent::Rotated(r) => {
            let addresses = match (&r.old_address, &r.new_address) {
                (old, Some(new)) => format!(
                    "\n  old address {}\n  new address {new}",
                    old.as_deref().unwrap_or("-")
                ),
                _ => String::new(),
            };
            format!(
                "{}: rotated {} -> {} ({})\n  old public key {}\n  new public key {}{addresses}\n  old version valid until {}\n  {}",
                r.key,
                r.old_version.as_deref().unwrap_or("-"),
                r.new_version,
                r.algorithm,
                r.old_public_key.as_deref().unwrap_or("-"),
                r.new_public_key,
                ts(r.overlap_until_ms),
                r.note
            )
        }
        RotationEvent::Disabled { key, version } => format!("{key}: version {version} disabled"),
        RotationEvent::LeaseHeldElsewhere { key } => {
            format!("{key}: another process is rotating this key; nothing done")
        }
    }
}

/// `ms` since the Unix epoch as RFC 3339 UTC (e.g. `2026-11-23T10:00:00.000Z`).
fn ts(ms: u64) -> String {
    keymgr_audit::time::format_rfc3339(ms)
}

fn stage(stage: &keymgr_rotation::Lifecycle) -> String {
    use keymgr_rotation::Lifecycle;
    match stage {
        Lifecycle::Pending => "pending".to_owned(),
        Lifecycle::Active => "active (current)".to_owned(),
        Lifecycle::Overlapping { until_ms: Some(t) } => format!("overlapping until {}", ts(*t)),
        Lifecycle::Overlapping { until_ms: None } => "overlapping".to_owned(),
        Lifecycle::Disabled => "disabled".to_owned(),
    }
}

/// `keymgr rotate run`: the scheduler in the foreground.
async fn run_scheduler(
    keys: Vec<String>,
    ctx: &Context,
    json_lines: bool,
) -> anyhow::Result<Output> {
    let var = |n: &str| std::env::var(n).ok();
    let policy = RotationPolicy::from_vars(var)?;
    if !policy.enabled {
        anyhow::bail!(keymgr::Error::config(
            keymgr_rotation::KEYMGR_ROTATION_ENABLED,
            "true to run the rotation scheduler",
            "scheduled rotation is off (`keymgr rotate --key NAME --now` rotates on request)",
        ));
    }
    let keys = if keys.is_empty() {
        vec!["evm".to_owned(), "xrp".to_owned()]
    } else {
        keys
    };
    let rotator = Arc::new(rotator_with(ctx, true, policy).await?);
    let mut handle =
        keymgr_rotation::Scheduler::new(rotator, Arc::new(SystemClock), keys.clone()).spawn();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    eprintln!("keymgr: rotation scheduler running for {}", keys.join(", "));
    let mut count = 0u64;
    loop {
        tokio::select! {
            event = handle.next_event() => {
                let Some(event) = event else { break };
                count += 1;
                if json_lines {
                    println!("{}", json!({ "event": event }));
                } else {
                    println!("{}", describe(&event));
                }
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
        }
    }
    handle.stop().await;
    Ok(Output::new(
        json!({ "stopped": true, "keys": keys, "events": count }),
        format!("rotation scheduler stopped after {count} event(s)"),
    ))
}

pub(crate) async fn rotate(
    args: RotateArgs,
    ctx: &Context,
    json_lines: bool,
) -> anyhow::Result<Output> {
    if let Some(RotateCommand::Run { keys }) = args.command {
        return run_scheduler(keys, ctx, json_lines).await;
    }
    if let Some(RotateCommand::Approve { key }) = args.command {
        let r = rotator(ctx, true).await?;
        r.approve(&key).await?;
        return Ok(Output::new(
            json!({ "key": key, "approved": true }),
            format!(
                "{key}: rotation approved; it runs at the next scheduler tick or `keymgr rotate --key {key}`"
            ),
        ));
    }
    let Some(key) = args.key else {
        anyhow::bail!(keymgr::Error::invalid_input("key", "pass --key NAME"));
    };
    if args.dry_run {
        let r = rotator(ctx, false).await?;
        let status = r.status(&key).await?;
        let due = status.next_rotation_ms <= keymgr_rotation::Clock::now_ms(&SystemClock);
        // The same checks a real run makes: approval and the overlap of the last rotation.
        let blocked = match r.can_rotate_now(&key).await {
            Ok(()) => None,
            Err(e) if matches!(e.kind(), ErrorKind::AccessDenied | ErrorKind::InvalidInput) => {
                Some(e.to_string())
            }
            Err(e) => return Err(e.into()),
        };
        let would_rotate = (args.now || due) && blocked.is_none();
        let would = match (&blocked, args.now || due) {
            (_, false) => "nothing due".to_owned(),
            (Some(why), true) => format!("would not rotate: {why}"),
            (None, true) => "would rotate now".to_owned(),
        };
        return Ok(Output::new(
            json!({
                "key": key,
                "dry_run": true,
                "would_rotate": would_rotate,
                "blocked_by": blocked,
                "status": status,
            }),
            format!(
                "{key}: {would}; next rotation {}",
                ts(status.next_rotation_ms)
            ),
        ));
    }
    let r = rotator(ctx, true).await?;
    let events = if args.now {
        r.rotate_now(&key).await
    } else {
        r.tick(&key).await
    };
    let events = events.map_err(|e| {
        if e.kind() == ErrorKind::Unsupported {
            anyhow::Error::new(e)
        } else {
            anyhow::Error::new(e).context(format!("rotating {key}"))
        }
    })?;
    let text = if events.is_empty() {
        format!("{key}: nothing due (use --now to rotate anyway)")
    } else {
        events.iter().map(describe).collect::<Vec<_>>().join("\n")
    };
    Ok(Output::new(json!({ "key": key, "events": events }), text))
}

pub(crate) async fn keys(cmd: KeysCommand, ctx: &Context) -> anyhow::Result<Output> {
    let KeysCommand::Status { keys } = cmd;
    let explicit = !keys.is_empty();
    let keys = if explicit {
        keys
    } else {
        vec!["evm".into(), "xrp".into()]
    };
    let r = rotator(ctx, false).await?;
    let mut out = Vec::new();
    let mut text = String::new();
    for key in keys {
        match r.status(&key).await {
            Ok(s) => {
                let algorithm = s
                    .versions
                    .first()
                    .map(|v| v.algorithm)
                    .unwrap_or(KeyAlgorithm::Secp256k1);
                let phase = match &s.state.phase {
                    Phase::Idle => "idle".to_owned(),
                    other => format!("{other:?}"),
                };
                text.push_str(&format!(
                    "{key} ({algorithm}): {phase}; next rotation {}, notice {}\n",
                    ts(s.next_rotation_ms),
                    ts(s.notice_ms)
                ));
                for v in &s.versions {
                    let stage = s
                        .lifecycle
                        .iter()
                        .find(|l| Some(l.version.as_str()) == v.key.version())
                        .map_or_else(|| format!("{:?}", v.state), |l| stage(&l.stage));
                    text.push_str(&format!("  {} {stage} ({})\n", v.key, v.backend_id));
                }
                out.push(json!({ "key": key, "status": s }));
            }
            Err(e) if !explicit && e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Output::new(json!({ "keys": out }), text))
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(super::ts(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::ts(1_795_430_285_123), "2026-11-23T10:38:05.123Z");
        assert_eq!(super::ts(951_868_799_000), "2000-02-29T23:59:59.000Z");
    }
}
