//! Rotation on request and approval, as change management knows it: a request is
//! recorded (by the schedule or an operator), approved by an actor other than the
//! requester before it expires, then run (by the scheduler, or `rotate --now`); or
//! rejected by another actor.

use keymgr_core::{AuditEvent, Error, Outcome, Result};

use crate::Rotator;
use crate::result::RotationEvent;
use crate::rotator::{Run, ms};
use crate::store::{KeyState, Phase, RequestKind, RotationRequest, Step};

/// The actor recorded as requester of scheduled rotations.
pub const SCHEDULE_ACTOR: &str = "schedule";

impl Rotator {
    /// Rotates `name` now, whatever its schedule (an operator's `keymgr rotate --now`),
    /// through the same crash-safe steps.
    ///
    /// - A rotation in progress is finished instead of starting another; a
    ///   [`Phase::Failed`] step is retried.
    /// - Inside the overlap of the last rotation it is refused unless `force` (an
    ///   emergency rotation: the overlapping version is disabled first).
    /// - With approval required, the first call records a request by this rotator's actor
    ///   ([`RotationEvent::Requested`]); once another actor has
    ///   [`approve`](Self::approve)d it, a call (by anyone) runs it.
    /// - When another live rotator holds the key's lease, nothing is done and the result
    ///   is [`RotationEvent::LeaseHeldElsewhere`].
    pub async fn rotate_now(&self, name: &str, force: bool) -> Result<Vec<RotationEvent>> {
        self.leased(name, Run::Now { force }).await
    }

    pub(crate) async fn now_locked(
        &self,
        name: &str,
        now: u64,
        force: bool,
        events: &mut Vec<RotationEvent>,
    ) -> Result<()> {
        let mut state = self.load_or_init(name, now).await?;
        if matches!(state.phase, Phase::Overlapping { until_ms, .. } if now >= until_ms) {
            // The overlap is over: finish that rotation (disable the old version) first.
            self.advance(name, now, events).await?;
            state = self.load_or_init(name, now).await?;
        }
        match state.phase.clone() {
            Phase::Failed { step, version, .. } => {
                self.emit(
                    AuditEvent::KeyRotationStart,
                    name,
                    Outcome::Pending,
                    &[
                        ("retry_of", step.as_str().to_owned()),
                        ("version", version.clone().unwrap_or_default()),
                    ],
                )
                .await?;
                state.phase = match (step, version) {
                    (Step::Disable, Some(v)) => Phase::Disabling { old: v },
                    (_, old) => Phase::Creating { old },
                };
                self.save(&mut state)?;
                return self.advance(name, now, events).await;
            }
            Phase::Creating { .. } | Phase::Disabling { .. } => {
                return self.advance(name, now, events).await;
            }
            Phase::Overlapping { .. } if !force => {
                return Err(Error::invalid_input(
                    "rotate",
                    format!(
                        "{name} is still in the overlap of its last rotation; rotating again \
                         now disables the overlapping version early: pass --force for an \
                         emergency rotation"
                    ),
                ));
            }
            _ => {}
        }
        self.check_can_start(name, &state, now, force)
            .or_else(|e| match e {
                // Not approved yet: that is what the request below is for.
                Error::AccessDenied { .. } => Ok(()),
                other => Err(other),
            })?;
        if let Some(r) = state.request.clone() {
            if r.expired(now) {
                self.expire(&mut state, now, events).await?;
            } else if !self.runnable(&r) {
                events.push(RotationEvent::AwaitingApproval {
                    key: name.to_owned(),
                    request: r,
                });
                return Ok(());
            }
        }
        if state.request.is_none() {
            let kind = if matches!(state.phase, Phase::Overlapping { .. }) {
                RequestKind::Emergency
            } else {
                RequestKind::OnDemand
            };
            let request = self
                .record_request(&mut state, kind, &self.actor, now)
                .await?;
            if !self.runnable(&request) {
                events.push(RotationEvent::Requested {
                    key: name.to_owned(),
                    request,
                });
                return Ok(());
            }
        }
        // Runnable: an emergency first ends the overlap, then rotates.
        if matches!(state.phase, Phase::AwaitingApproval) {
            state.phase = Phase::Idle;
            self.save(&mut state)?;
        }
        if !matches!(state.phase, Phase::Overlapping { .. }) {
            self.start(&mut state).await?;
        }
        self.advance(name, now, events).await
    }

    /// Whether `request` may run under the policy (approved, or no approval needed).
    pub(crate) fn runnable(&self, request: &RotationRequest) -> bool {
        !self.policy.require_approval || request.approved_by.is_some()
    }

    async fn record_request(
        &self,
        state: &mut KeyState,
        kind: RequestKind,
        requested_by: &str,
        now: u64,
    ) -> Result<RotationRequest> {
        let request = RotationRequest {
            id: format!("{}-{now}", state.name),
            kind,
            requested_by: requested_by.to_owned(),
            requested_at_ms: now,
            approved_by: None,
            approved_at_ms: None,
            expires_at_ms: now.saturating_add(ms(self.policy.approval_ttl)),
        };
        self.emit(
            AuditEvent::KeyRotationRequested,
            &state.name,
            Outcome::Pending,
            &[
                ("request_id", request.id.clone()),
                ("kind", kind.as_str().to_owned()),
                ("requested_by", request.requested_by.clone()),
                (
                    "approval_required",
                    self.policy.require_approval.to_string(),
                ),
                ("expires_at_ms", request.expires_at_ms.to_string()),
            ],
        )
        .await?;
        state.request = Some(request.clone());
        if self.policy.require_approval && matches!(state.phase, Phase::Idle) {
            state.phase = Phase::AwaitingApproval;
        }
        self.save(state)?;
        Ok(request)
    }

    /// The schedule says it is due and approval is required: record the request.
    pub(crate) async fn request_scheduled(
        &self,
        state: &mut KeyState,
        now: u64,
        events: &mut Vec<RotationEvent>,
    ) -> Result<()> {
        let request = self
            .record_request(state, RequestKind::Scheduled, SCHEDULE_ACTOR, now)
            .await?;
        events.push(RotationEvent::AwaitingApproval {
            key: state.name.clone(),
            request,
        });
        Ok(())
    }

    /// Ends an expired request (audited); a scheduled rotation is requested again by
    /// the next tick.
    pub(crate) async fn expire(
        &self,
        state: &mut KeyState,
        now: u64,
        events: &mut Vec<RotationEvent>,
    ) -> Result<()> {
        let Some(request) = state.request.clone() else {
            return Ok(());
        };
        self.emit(
            AuditEvent::KeyRotationExpired,
            &state.name,
            Outcome::Failure,
            &[
                ("request_id", request.id.clone()),
                ("requested_by", request.requested_by.clone()),
                (
                    "approved_by",
                    request.approved_by.clone().unwrap_or_default(),
                ),
                ("expired_at_ms", request.expires_at_ms.to_string()),
                ("seen_at_ms", now.to_string()),
            ],
        )
        .await?;
        state.request = None;
        if state.phase == Phase::AwaitingApproval {
            state.phase = Phase::Idle;
        }
        self.save(state)?;
        events.push(RotationEvent::Expired {
            key: state.name.clone(),
            request,
        });
        Ok(())
    }

    /// Approves the open rotation request of `name` as this rotator's actor, who must not
    /// be its requester; the approval is valid for the policy's `approval_ttl`. With no
    /// open request but a scheduled rotation within its notice window, that rotation is
    /// requested (by the schedule) and approved.
    ///
    /// Errors: [`Error::InvalidInput`] when nothing waits (or it expired, or it is approved
    /// already), [`Error::AccessDenied`] when the requester approves their own request
    /// (audited as `KEY_ROTATION_REFUSED`).
    pub async fn approve(&self, name: &str) -> Result<RotationRequest> {
        let now = self.clock.now_ms();
        let mut state = self.load_or_init(name, now).await?;
        if !matches!(
            state.phase,
            Phase::Idle | Phase::AwaitingApproval | Phase::Overlapping { .. }
        ) {
            return Err(Error::invalid_input(
                "approve",
                format!(
                    "no rotation of {name} is waiting for approval: one is already in progress \
                     or failed (see `keymgr keys status --key {name}`)"
                ),
            ));
        }
        let request = match state.request.clone() {
            Some(r) => r,
            None => {
                let notice_at = self.due_ms(&state).saturating_sub(ms(self.policy.notice));
                if state.phase != Phase::Idle || now < notice_at {
                    return Err(Error::invalid_input(
                        "approve",
                        format!(
                            "no rotation of {name} is waiting for approval; request one with \
                             `keymgr rotate --key {name} --now`"
                        ),
                    ));
                }
                self.record_request(&mut state, RequestKind::Scheduled, SCHEDULE_ACTOR, now)
                    .await?
            }
        };
        if request.expired(now) {
            self.expire(&mut state, now, &mut Vec::new()).await?;
            return Err(Error::invalid_input(
                "approve",
                format!(
                    "rotation request {} of {name} expired at {} ms; request it again",
                    request.id, request.expires_at_ms
                ),
            ));
        }
        if let Some(by) = &request.approved_by {
            return Err(Error::invalid_input(
                "approve",
                format!(
                    "rotation request {} of {name} is already approved by {by}",
                    request.id
                ),
            ));
        }
        if request.requested_by == self.actor {
            self.emit(
                AuditEvent::KeyRotationRefused,
                name,
                Outcome::Denied,
                &[
                    ("request_id", request.id.clone()),
                    ("requested_by", request.requested_by.clone()),
                    ("refused_approver", self.actor.clone()),
                    (
                        "reason",
                        "a rotation must be approved by an actor other than its requester"
                            .to_owned(),
                    ),
                ],
            )
            .await?;
            return Err(Error::AccessDenied {
                key: name.to_owned(),
                detail: format!(
                    "{} requested rotation {}; it must be approved by another actor",
                    request.requested_by, request.id
                ),
                source: None,
            });
        }
        let approved = RotationRequest {
            approved_by: Some(self.actor.clone()),
            approved_at_ms: Some(now),
            expires_at_ms: now.saturating_add(ms(self.policy.approval_ttl)),
            ..request
        };
        state.request = Some(approved.clone());
        self.save(&mut state)?;
        self.emit(
            AuditEvent::KeyRotationApproved,
            name,
            Outcome::Success,
            &[
                ("request_id", approved.id.clone()),
                ("kind", approved.kind.as_str().to_owned()),
                ("requested_by", approved.requested_by.clone()),
                ("approved_by", self.actor.clone()),
                ("expires_at_ms", approved.expires_at_ms.to_string()),
            ],
        )
        .await?;
        Ok(approved)
    }

    /// Rejects the open rotation request of `name` (pending or approved, not yet running)
    /// as this rotator's actor, who must not be its requester; `reason` is recorded.
    /// The request is closed (`KEY_ROTATION_REJECTED`, with both actors); a scheduled
    /// rotation is requested again by the next scheduler tick.
    ///
    /// Errors: [`Error::InvalidInput`] when no request is open (or it expired),
    /// [`Error::AccessDenied`] when the requester rejects their own request (audited as
    /// `KEY_ROTATION_REFUSED`; an unwanted request of one's own expires unused).
    pub async fn reject(&self, name: &str, reason: &str) -> Result<RotationRequest> {
        let now = self.clock.now_ms();
        let mut state = self.load_or_init(name, now).await?;
        let open = match (&state.phase, state.request.clone()) {
            (Phase::Idle | Phase::AwaitingApproval | Phase::Overlapping { .. }, Some(r)) => r,
            _ => {
                return Err(Error::invalid_input(
                    "reject",
                    format!(
                        "no rotation request of {name} is open (a rotation that already \
                         started cannot be rejected; see `keymgr keys status --key {name}`)"
                    ),
                ));
            }
        };
        if open.expired(now) {
            self.expire(&mut state, now, &mut Vec::new()).await?;
            return Err(Error::invalid_input(
                "reject",
                format!(
                    "rotation request {} of {name} already expired at {} ms",
                    open.id, open.expires_at_ms
                ),
            ));
        }
        if open.requested_by == self.actor {
            self.emit(
                AuditEvent::KeyRotationRefused,
                name,
                Outcome::Denied,
                &[
                    ("request_id", open.id.clone()),
                    ("requested_by", open.requested_by.clone()),
                    ("refused_rejecter", self.actor.clone()),
                    (
                        "reason",
                        "a rotation request must be rejected by an actor other than its requester"
                            .to_owned(),
                    ),
                ],
            )
            .await?;
            return Err(Error::AccessDenied {
                key: name.to_owned(),
                detail: format!(
                    "{} requested rotation {}; only another actor can reject it (or let it \
                     expire at {} ms)",
                    open.requested_by, open.id, open.expires_at_ms
                ),
                source: None,
            });
        }
        self.emit(
            AuditEvent::KeyRotationRejected,
            name,
            Outcome::Denied,
            &[
                ("request_id", open.id.clone()),
                ("kind", open.kind.as_str().to_owned()),
                ("requested_by", open.requested_by.clone()),
                ("approved_by", open.approved_by.clone().unwrap_or_default()),
                ("rejected_by", self.actor.clone()),
                ("reason", reason.to_owned()),
            ],
        )
        .await?;
        state.request = None;
        if state.phase == Phase::AwaitingApproval {
            state.phase = Phase::Idle;
        }
        self.save(&mut state)?;
        Ok(open)
    }

    /// What [`rotate_now`](Self::rotate_now) would do for `name`, without doing it:
    /// `Ok(())` if it would rotate (or finish a rotation) now, otherwise the error
    /// that says why not (approval missing, inside the overlap without `force`).
    pub async fn can_rotate_now(&self, name: &str, force: bool) -> Result<()> {
        let now = self.clock.now_ms();
        let state = match self.store.load(name)? {
            Some(s) => s,
            None => self.initial_state(name, now).await?,
        };
        self.check_can_start(name, &state, now, force)
    }

    fn check_can_start(&self, name: &str, state: &KeyState, now: u64, force: bool) -> Result<()> {
        if matches!(state.phase, Phase::Overlapping { .. }) && !force {
            return Err(Error::invalid_input(
                "rotate",
                format!(
                    "{name} is still in the overlap of its last rotation; pass --force for an \
                     emergency rotation"
                ),
            ));
        }
        let approved = state
            .request
            .as_ref()
            .is_some_and(|r| !r.expired(now) && self.runnable(r));
        if matches!(
            state.phase,
            Phase::Creating { .. } | Phase::Disabling { .. }
        ) || !self.policy.require_approval
            || approved
        {
            return Ok(());
        }
        Err(Error::AccessDenied {
            key: name.to_owned(),
            detail: format!(
                "rotation requires approval by another operator first: `keymgr rotate --key \
                 {name} --now` records a request, `keymgr rotate approve --key {name}` (as \
                 another actor) approves it"
            ),
            source: None,
        })
    }
}
