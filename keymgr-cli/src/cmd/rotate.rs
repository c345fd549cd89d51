//! `keymgr rotate`: operator access to keymgr-rotation (request, approve, reject, run,
//! retry).

use std::sync::Arc;

use keymgr::ErrorKind;
use keymgr_rotation::{
    FileStateStore, HSM_KEEP_VERSIONS, KEYMGR_ROTATION_STATE_PATH, MemoryStateStore, Phase,
    RotationEvent, RotationPolicy, Rotator, StateStore, SystemClock,
};
use serde_json::json;

use super::status::{describe, ts};
use crate::context::{Exit, Refusal, versioned};
use crate::{Context, Output};

/// Who acts (the key manager's audit actor; also requester / approver of rotations).
const KEYMGR_ACTOR: &str = "KEYMGR_ACTOR";

/// `keymgr rotate`.
///
/// With approval on (KEYMGR_ROTATION_APPROVAL=true or KEYMGR_PROFILE=production),
/// `rotate --key K --now` records a request; another actor runs `rotate approve --key K`
/// (or `rotate reject --key K --reason TEXT`); then `rotate --key K --now` (or the
/// scheduler) runs it. Exit codes: 0 done or
/// recorded, 1 error, 2 usage, 75 another rotator holds the key's lease (retry later).
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct RotateArgs {
    #[command(subcommand)]
    command: Option<RotateCommand>,
    /// Key to rotate.
    #[arg(long)]
    key: Option<String>,
    /// Rotate now instead of when the schedule says (with approval on: request it, or
    /// run the approved request; also retries a failed step).
    #[arg(long)]
    now: bool,
    /// Emergency rotation during the overlap of the last rotation: the overlapping
    /// version is disabled first (needs approval too when approval is on).
    #[arg(long, requires = "now")]
    force: bool,
    /// Show what would happen; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Who is acting (default KEYMGR_ACTOR, else $USER); recorded as requester.
    #[arg(long)]
    actor: Option<String>,
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
    /// Approve the rotation request of a key; the approver must not be its requester.
    Approve {
        /// Key whose rotation to approve.
        #[arg(long)]
        key: String,
        /// Who approves (default KEYMGR_ACTOR, else $USER).
        #[arg(long)]
        actor: Option<String>,
    },
    /// Reject the open rotation request of a key (pending or approved, not yet running);
    /// the rejecter must not be its requester.
    Reject {
        /// Key whose rotation request to reject.
        #[arg(long)]
        key: String,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: String,
        /// Who rejects (default KEYMGR_ACTOR, else $USER).
        #[arg(long)]
        actor: Option<String>,
    },
}

/// Who acts: `--actor`, else `KEYMGR_ACTOR`, else `$USER`.
fn actor(flag: Option<String>, ctx: &Context) -> anyhow::Result<Option<String>> {
    let flag = flag.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    Ok(match flag {
        Some(a) => Some(a),
        None => match ctx.vars().get(KEYMGR_ACTOR)? {
            Some(a) => Some(a),
            None => keymgr::config::process_env().get("USER")?,
        },
    })
}

fn policy(ctx: &Context) -> anyhow::Result<RotationPolicy> {
    let mut policy = RotationPolicy::from_source(&ctx.vars())?;
    // An operator running the command asks for rotation explicitly.
    policy.enabled = true;
    Ok(policy)
}

/// The opt-in deletion of old versions: `HSM_KEEP_VERSIONS` when the backend is an HSM
/// (the only backend that deletes), else `None`.
pub(crate) fn keep_versions(ctx: &Context) -> anyhow::Result<Option<usize>> {
    let vars = ctx.vars();
    let is_hsm = matches!(
        keymgr::Settings::from_vars(&vars)?.backend,
        keymgr::BackendKind::Hsm
    );
    if !is_hsm {
        return Ok(None);
    }
    // The upper bound is the HSM configuration's, checked when the backend is built.
    Ok(vars.bounded::<usize>(HSM_KEEP_VERSIONS, 2..=usize::MAX, "versions")?)
}

/// A rotator over the context's key manager; `policy` gets the deletion opt-in
/// ([`keep_versions`]) so that every command (rotate, run, status) sees the same one.
pub(crate) async fn rotator(
    ctx: &Context,
    need_store: bool,
    mut policy: RotationPolicy,
    actor: Option<String>,
) -> anyhow::Result<Rotator> {
    policy.keep_versions = keep_versions(ctx)?;
    let manager = ctx.manager().await?;
    let store: Arc<dyn StateStore> = match ctx.vars().path(KEYMGR_ROTATION_STATE_PATH)? {
        Some(dir) => Arc::new(FileStateStore::new(dir)?),
        None if need_store => {
            return Err(keymgr::Error::config(
                KEYMGR_ROTATION_STATE_PATH,
                "a directory for rotation state shared by every process that rotates these keys",
                "not set",
            )
            .into());
        }
        None => Arc::new(MemoryStateStore::default()),
    };
    let rotator = Rotator::from_manager(&manager, store, policy, Arc::new(SystemClock))?;
    Ok(match actor {
        Some(a) => rotator.with_actor(a),
        None => rotator,
    })
}

/// Approval needs to know who acts: refuses to guess.
fn require_actor(actor: &Option<String>, what: &str) -> anyhow::Result<()> {
    if actor.is_none() {
        anyhow::bail!(keymgr::Error::config(
            KEYMGR_ACTOR,
            "the operator's name (or pass --actor)",
            format!(
                "{what} records who acts, and no actor is known (KEYMGR_ACTOR and USER are unset)"
            ),
        ));
    }
    Ok(())
}

/// `keymgr rotate run`: the scheduler in the foreground.
async fn run_scheduler(
    keys: Vec<String>,
    ctx: &Context,
    json_lines: bool,
) -> anyhow::Result<Output> {
    let policy = RotationPolicy::from_source(&ctx.vars())?;
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
    let rotator = Arc::new(rotator(ctx, true, policy, actor(None, ctx)?).await?);
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
                    println!("{}", versioned(json!({ "event": event })));
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

/// A rotation asked for inside the overlap of the last one (which would disable the
/// overlapping version early) is refused by policy (exit 8) unless `--force`. An overlap
/// that has ended is no refusal: the rotator finishes that rotation first.
async fn refuse_inside_overlap(r: &Rotator, key: &str) -> anyhow::Result<()> {
    let now = keymgr_rotation::Clock::now_ms(&SystemClock);
    if let Phase::Overlapping { old, until_ms, .. } = r.status(key).await?.state.phase
        && now < until_ms
    {
        return Err(Refusal {
            kind: "policy",
            exit: Exit::Policy,
            message: format!(
                "{key} is still in the overlap of its last rotation (version {old} stays valid \
                 until {}); rotating again now disables it early: pass --force for an \
                 emergency rotation",
                ts(until_ms)
            ),
        }
        .into());
    }
    Ok(())
}

async fn approve(key: String, actor: Option<String>, ctx: &Context) -> anyhow::Result<Output> {
    require_actor(&actor, "approval")?;
    let r = rotator(ctx, true, policy(ctx)?, actor).await?;
    // The rotator refuses an approval with AccessDenied only by policy: the requester
    // approving their own request (an IAM refusal comes with the provider's cause).
    let request = r.approve(&key).await.map_err(|e| {
        if e.kind() == ErrorKind::AccessDenied && std::error::Error::source(&e).is_none() {
            anyhow::Error::new(Refusal {
                kind: "policy",
                exit: Exit::Policy,
                message: e.to_string(),
            })
        } else {
            anyhow::Error::new(e)
        }
    })?;
    let text = format!(
        "{key}: rotation request {} ({}) by {} approved by {}, valid until {}; it runs at the \
         next scheduler tick or with `keymgr rotate --key {key} --now`",
        request.id,
        request.kind.as_str(),
        request.requested_by,
        r.actor(),
        ts(request.expires_at_ms)
    );
    Ok(Output::new(
        json!({ "key": key, "approved": true, "request": request }),
        text,
    ))
}

async fn reject(
    key: String,
    reason: String,
    actor: Option<String>,
    ctx: &Context,
) -> anyhow::Result<Output> {
    require_actor(&actor, "rejection")?;
    let reason = reason.trim().to_owned();
    if reason.is_empty() {
        anyhow::bail!(keymgr::Error::invalid_input(
            "reason",
            "say why the rotation is rejected (--reason TEXT); it is recorded in the audit log"
        ));
    }
    let r = rotator(ctx, true, policy(ctx)?, actor).await?;
    let request = r.reject(&key, &reason).await?;
    let text = format!(
        "{key}: rotation request {} ({}) by {} rejected by {}: {reason}",
        request.id,
        request.kind.as_str(),
        request.requested_by,
        r.actor(),
    );
    Ok(Output::new(
        json!({ "key": key, "rejected": true, "reason": reason, "request": request }),
        text,
    ))
}

async fn dry_run(key: String, force: bool, now: bool, ctx: &Context) -> anyhow::Result<Output> {
    let r = rotator(ctx, false, policy(ctx)?, actor(None, ctx)?).await?;
    let status = r.status(&key).await?;
    let due = status
        .next_rotation_ms
        .is_some_and(|t| t <= keymgr_rotation::Clock::now_ms(&SystemClock));
    // The same checks a real run makes: approval and the overlap of the last rotation.
    let blocked = match r.can_rotate_now(&key, force).await {
        Ok(()) => None,
        Err(e) if matches!(e.kind(), ErrorKind::AccessDenied | ErrorKind::InvalidInput) => {
            Some(e.to_string())
        }
        Err(e) => return Err(e.into()),
    };
    let would_rotate = (now || due) && blocked.is_none();
    let would = match (&blocked, now || due) {
        (_, false) => "nothing due".to_owned(),
        (Some(why), true) => format!("would not rotate: {why}"),
        (None, true) => "would rotate now".to_owned(),
    };
    let next = status
        .next_rotation_ms
        .map_or_else(|| "not scheduled yet".to_owned(), ts);
    Ok(Output::new(
        json!({
            "key": key,
            "dry_run": true,
            "would_rotate": would_rotate,
            "blocked_by": blocked,
            "status": status,
        }),
        format!("{key}: {would}; next rotation {next}"),
    ))
}

pub(crate) async fn rotate(
    args: RotateArgs,
    ctx: &Context,
    json_lines: bool,
) -> anyhow::Result<Output> {
    match args.command {
        Some(RotateCommand::Run { keys }) => return run_scheduler(keys, ctx, json_lines).await,
        Some(RotateCommand::Approve { key, actor: who }) => {
            return approve(key, actor(who, ctx)?, ctx).await;
        }
        Some(RotateCommand::Reject {
            key,
            reason,
            actor: who,
        }) => {
            return reject(key, reason, actor(who, ctx)?, ctx).await;
        }
        None => {}
    }
    let Some(key) = args.key else {
        anyhow::bail!(keymgr::Error::invalid_input("key", "pass --key NAME"));
    };
    if args.dry_run {
        return dry_run(key, args.force, args.now, ctx).await;
    }
    let policy = policy(ctx)?;
    let actor = actor(args.actor, ctx)?;
    if policy.require_approval && args.now {
        require_actor(&actor, "a rotation request")?;
    }
    let r = rotator(ctx, true, policy, actor).await?;
    if args.now && !args.force {
        refuse_inside_overlap(&r, &key).await?;
    }
    let events = if args.now {
        r.rotate_now(&key, args.force).await
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
    if let Some(RotationEvent::LeaseHeldElsewhere { lease, .. }) = events
        .iter()
        .find(|e| matches!(e, RotationEvent::LeaseHeldElsewhere { .. }))
    {
        let process = lease
            .process
            .as_ref()
            .map(|p| format!(" ({p})"))
            .unwrap_or_default();
        return Err(Refusal {
            kind: "lease_held",
            exit: Exit::Busy,
            message: format!(
                "{key}: nothing done: rotator {}{process} holds the rotation lease until {}; \
                 try again after it finishes",
                lease.holder,
                ts(lease.until_ms)
            ),
        }
        .into());
    }
    let text = if events.is_empty() {
        format!("{key}: nothing due (use --now to rotate anyway)")
    } else {
        events.iter().map(describe).collect::<Vec<_>>().join("\n")
    };
    Ok(Output::new(json!({ "key": key, "events": events }), text))
}
