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
    let manager = ctx.manager().await?;
    let var = |n: &str| std::env::var(n).ok();
    let mut policy = RotationPolicy::from_vars(var)?;
    // An operator running the command asks for rotation explicitly.
    policy.enabled = true;
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

fn ts(ms: u64) -> String {
    let days = ms / 86_400_000;
    format!("{ms} ms since epoch (day {days})")
}

pub(crate) async fn rotate(args: RotateArgs, ctx: &Context) -> anyhow::Result<Output> {
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
        let would = if args.now || due {
            "would rotate now"
        } else {
            "nothing due"
        };
        return Ok(Output::new(
            json!({ "key": key, "dry_run": true, "would_rotate": args.now || due, "status": status }),
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
                    text.push_str(&format!(
                        "  {} {:?}{} ({})\n",
                        v.key,
                        v.state,
                        if v.current { " current" } else { "" },
                        v.backend_id
                    ));
                }
                out.push(json!({ "key": key, "status": s }));
            }
            Err(e) if !explicit && e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Output::new(json!({ "keys": out }), text))
}
