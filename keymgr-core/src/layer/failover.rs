//! Ordered failover across members that hold the same key material.

mod canary;
mod failures;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use super::{Operation, Reply, route};
use crate::{
    Error, HealthReport, HealthStatus, IntegrityReason, KeyBackend, KeyRef, PublicKey, Result,
};

pub use canary::CanaryPolicy;
pub use failures::{MemberFailure, MemberFailures};

/// Ordered failover across backends that hold the same logical key (HSM replicas, a key
/// imported into two HSMs or into an HSM and a KMS, a multi-Region KMS key).
///
/// Each call goes to the first member that answers. Only availability failures
/// ([`Error::is_retryable`]: unavailable, timeout, throttled, an open breaker) move on to
/// the next member; not-found, access denied, invalid input and integrity errors are
/// returned as they are. When every member fails, the error is an
/// [`Error::Unavailable`] whose `source()` is a [`MemberFailures`] listing each member's
/// error ([`Failover::member_failures`] finds it).
///
/// Every member must hold the *same* key: [`verify_members`](Self::verify_members)
/// compares their public keys when the stack is built (a mismatch is an
/// [`Error::Config`]); at run time the first public key seen for a name is remembered
/// (until [`invalidate`](KeyBackend::invalidate), i.e. after a rotation) and a member that
/// reports or signs with a different one is an [`Error::Integrity`]
/// ([`IntegrityReason::MembersDisagree`]), never a signature by another key.
///
/// Wrap each member in its own [`CircuitBreaker`](super::CircuitBreaker) (and
/// [`Timeout`](super::Timeout), [`Cached`](super::Cached)) so a dead one is skipped
/// quickly. [`health`](KeyBackend::health) probes every member concurrently with a
/// canary (see [`CanaryPolicy`]). Which member served a call, and why earlier ones were
/// skipped, is reported to [`route::traced`](super::route::traced) (the
/// [`KeyManager`](crate::KeyManager) writes it into the audit entry).
#[derive(Debug)]
pub struct Failover {
    members: Vec<Member>,
    known: Mutex<HashMap<KeyRef, PublicKey>>,
    canary: CanaryPolicy,
}

#[derive(Debug)]
struct Member {
    name: String,
    backend: Arc<dyn KeyBackend>,
    /// The last health report and when it was made (see [`CanaryPolicy::cache_for`]).
    report: Mutex<Option<(Instant, HealthReport)>>,
}

impl Failover {
    /// Backends in order of preference, named after [`KeyBackend::name`] (`hsm`, then
    /// `hsm#2` for a second member of the same provider); errors if `backends` is empty.
    pub fn new(backends: Vec<Arc<dyn KeyBackend>>) -> Result<Self> {
        let mut named = Vec::with_capacity(backends.len());
        for backend in backends {
            let base = backend.name().to_owned();
            let same = named
                .iter()
                .filter(|(_, b): &&(String, Arc<dyn KeyBackend>)| b.name() == base)
                .count();
            let name = if same == 0 {
                base
            } else {
                format!("{base}#{}", same + 1)
            };
            named.push((name, backend));
        }
        Self::named(named)
    }

    /// Members in order of preference with the names health, audit and errors show;
    /// errors if `members` is empty or two share a name.
    pub fn named(members: Vec<(String, Arc<dyn KeyBackend>)>) -> Result<Self> {
        if members.is_empty() {
            return Err(Error::invalid_input(
                "failover members",
                "at least one member is needed",
            ));
        }
        for (i, (name, _)) in members.iter().enumerate() {
            if members[..i].iter().any(|(n, _)| n == name) {
                return Err(Error::invalid_input(
                    "failover members",
                    format!("two members are named {name:?}"),
                ));
            }
        }
        Ok(Self {
            members: members
                .into_iter()
                .map(|(name, backend)| Member {
                    name,
                    backend,
                    report: Mutex::new(None),
                })
                .collect(),
            known: Mutex::new(HashMap::new()),
            canary: CanaryPolicy::default(),
        })
    }

    /// Sets how health probes members (canary keys, cache interval, deadline).
    pub fn with_canary(mut self, canary: CanaryPolicy) -> Self {
        self.canary = canary;
        self
    }

    /// The member names, in order of preference.
    pub fn member_names(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(|m| m.name.as_str())
    }

    /// The per-member failures behind an error this failover returned when every member
    /// failed.
    pub fn member_failures(error: &Error) -> Option<&MemberFailures> {
        std::error::Error::source(error)?.downcast_ref::<MemberFailures>()
    }

    /// Compares the public key of each of `keys` across the members that answer: a
    /// member holding a different key, or lacking a key another member holds, is an
    /// [`Error::Config`] naming `setting`. Members that cannot be reached now are checked
    /// on first use instead (an [`Error::Integrity`] then). Remembers the keys it saw.
    ///
    /// Returns the keys some member holds (the others are held by no reachable member,
    /// e.g. an `xrp` key nobody configured).
    pub async fn verify_members(&self, keys: &[KeyRef], setting: &str) -> Result<Vec<KeyRef>> {
        let mut held = Vec::new();
        for key in keys {
            let answers = futures_util::future::join_all(
                self.members
                    .iter()
                    .map(|m| async move { (m, m.backend.public_key(key).await) }),
            )
            .await;
            let mut first: Option<(&str, PublicKey)> = None;
            let mut missing = Vec::new();
            for (member, answer) in answers {
                match answer {
                    Ok(pk) => match &first {
                        None => first = Some((member.name.as_str(), pk)),
                        Some((by, seen)) if *seen != pk => {
                            return Err(Error::config(
                                setting,
                                "members that hold the same key material",
                                format!(
                                    "member {} holds a different public key for {key} than member {by} ({} vs {}); failover would sign with another key",
                                    member.name,
                                    describe(&pk),
                                    describe(seen),
                                ),
                            ));
                        }
                        Some(_) => {}
                    },
                    Err(e) if e.is_retryable() => tracing::warn!(
                        member = %member.name, key = %key, error = %e,
                        "failover member unreachable at start-up; its key is checked on first use"
                    ),
                    Err(e) => missing.push(format!("{}: {e}", member.name)),
                }
            }
            match (first, missing.is_empty()) {
                (Some((by, pk)), true) => {
                    self.lock_known().insert(key.clone(), pk);
                    held.push(key.clone());
                    tracing::debug!(key = %key, first = by, "failover members agree");
                }
                (Some((by, _)), false) => {
                    return Err(Error::config(
                        setting,
                        "members that all hold the key",
                        format!(
                            "member {by} holds {key} but not every member does: {}",
                            missing.join("; ")
                        ),
                    ));
                }
                (None, _) => {}
            }
        }
        Ok(held)
    }

    fn lock_known(&self) -> std::sync::MutexGuard<'_, HashMap<KeyRef, PublicKey>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check_same_key(&self, key: &KeyRef, from: &str, pk: &PublicKey) -> Result<()> {
        let mut known = self.lock_known();
        match known.get(key) {
            Some(seen) if seen != pk => Err(Error::integrity_failure(
                key.to_string(),
                IntegrityReason::MembersDisagree,
                format!(
                    "failover member {from} holds a different public key ({}) than the other members ({}); refusing to use it",
                    describe(pk),
                    describe(seen)
                ),
            )),
            Some(_) => Ok(()),
            None => {
                known.insert(key.clone(), pk.clone());
                Ok(())
            }
        }
    }

    fn backend_name(&self) -> &str {
        "failover"
    }

    /// One member's attempt at `operation`, with the same-key checks around signing.
    async fn attempt(&self, member: &Member, operation: Operation<'_>) -> Result<Reply> {
        if let Operation::Sign(key, _) = operation {
            // Know which key this member holds before letting it sign (members wrapped in
            // `Cached` make this free).
            let pk = member.backend.public_key(key).await?;
            self.check_same_key(key, &member.name, &pk)?;
        }
        let reply = operation.call(member.backend.as_ref()).await?;
        // The signature says which key verified it, which also catches a member whose key
        // changed between the two calls.
        match (&operation, &reply) {
            (Operation::PublicKey(key), Reply::PublicKey(pk)) => {
                self.check_same_key(key, &member.name, pk)?
            }
            (Operation::Sign(key, _), Reply::Signature(sig)) => {
                self.check_same_key(key, &member.name, sig.public_key())?
            }
            _ => {}
        }
        Ok(reply)
    }

    async fn dispatch(&self, operation: Operation<'_>) -> Result<Reply> {
        match operation {
            Operation::CreateVersion(_) => {
                return Err(Error::unsupported(
                    "failover",
                    "create_version",
                    "members must hold the same key; rotate the key in each provider (or import the new version into each) instead",
                ));
            }
            Operation::DisableVersion(_) => {
                return Err(Error::unsupported(
                    "failover",
                    "disable_version",
                    "disable the version in each member provider",
                ));
            }
            Operation::DeleteVersion(_) => {
                return Err(Error::unsupported(
                    "failover",
                    "delete_version",
                    "delete the version in each member provider",
                ));
            }
            _ => {}
        }
        let mut failures = Vec::new();
        for member in &self.members {
            match self.attempt(member, operation).await {
                Err(e) if e.is_retryable() => {
                    tracing::warn!(member = %member.name, operation = operation.name(), error = %e, "failing over");
                    crate::metrics::failover(&member.name, operation.name());
                    route::skipped(&member.name, &e);
                    self.forget_report(member);
                    failures.push(MemberFailure::new(member.name.clone(), e));
                }
                Err(e) => {
                    route::failed(&member.name, &e);
                    return Err(e);
                }
                Ok(reply) => {
                    route::served(&member.name);
                    if !failures.is_empty() {
                        tracing::info!(member = %member.name, operation = operation.name(), skipped = failures.len(), "served by a failover member");
                    }
                    return Ok(reply);
                }
            }
        }
        Err(MemberFailures::new(operation.name(), operation.key_name(), failures).into_error())
    }

    /// Drops a member's cached health report: traffic just saw it fail.
    fn forget_report(&self, member: &Member) {
        *member.report.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    async fn dispatch_health(&self) -> HealthReport {
        let started = Instant::now();
        let components =
            futures_util::future::join_all(self.members.iter().map(|m| self.member_health(m)))
                .await;
        let up = components
            .iter()
            .filter(|c| c.status != HealthStatus::Unhealthy)
            .count();
        let all_healthy = components.iter().all(|c| c.status == HealthStatus::Healthy);
        let status = if up == 0 {
            HealthStatus::Unhealthy
        } else if all_healthy {
            HealthStatus::Healthy
        } else {
            HealthStatus::Degraded
        };
        HealthReport {
            status,
            detail: Some(format!("{up} of {} members usable", components.len())),
            components,
            ..HealthReport::healthy("failover", started.elapsed())
        }
    }

    fn dispatch_invalidate(&self, name: &str) {
        self.lock_known().retain(|k, _| k.name() != name);
        for m in &self.members {
            m.backend.invalidate(name);
            self.forget_report(m);
        }
    }
}

/// A public key for error messages: the EVM address for secp256k1, else hex.
fn describe(pk: &PublicKey) -> String {
    pk.evm_address()
        .unwrap_or_else(|| hex::encode(pk.to_bytes()))
}

super::dispatch_backend!([] Failover);
