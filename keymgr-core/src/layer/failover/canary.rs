//! Failover health: each member proves it can use its keys with a canary.

use std::time::Duration;

use tokio::time::Instant;

use super::{Failover, Member};
use crate::{EncryptionContext, HealthReport, HealthStatus, KeyRef, SignPayload};

/// What a canary signs: a fixed 32-byte digest (secp256k1) ...
const CANARY_DIGEST: [u8; 32] = *b"keymgr health canary digest v1.\x00";
/// ... or message (Ed25519).
const CANARY_MESSAGE: &[u8] = b"keymgr health canary v1";
/// What a symmetric canary encrypts and expects back.
const CANARY_PLAINTEXT: &[u8] = b"keymgr health canary v1";

/// How [`Failover`]'s health probes its members.
///
/// Each member's report is its own [`health`](crate::KeyBackend::health) (with its
/// breaker state and next trial) plus, for each of `sign_keys`, a canary: sign a fixed
/// digest (secp256k1) or message (Ed25519) and check the signature verifies under the
/// key the other members hold; for each of `symmetric_keys`, encrypt a fixed value and
/// decrypt it back. A failed canary makes the member unhealthy. Members are probed
/// concurrently; one that has not answered within `deadline` is unhealthy. Reports are
/// reused for `cache_for` (and dropped as soon as traffic sees the member fail), so
/// health can be polled every few seconds without loading the providers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanaryPolicy {
    /// Keys to sign with (default: none, i.e. the provider's own health check only).
    pub sign_keys: Vec<KeyRef>,
    /// Symmetric keys to encrypt and decrypt with (default: none).
    pub symmetric_keys: Vec<KeyRef>,
    /// How long a member's report is reused (default 5 s; zero: never).
    pub cache_for: Duration,
    /// How long one member's probe may take (default 5 s).
    pub deadline: Duration,
}

impl Default for CanaryPolicy {
    fn default() -> Self {
        Self {
            sign_keys: Vec::new(),
            symmetric_keys: Vec::new(),
            cache_for: Duration::from_secs(5),
            deadline: Duration::from_secs(5),
        }
    }
}

impl Failover {
    /// One member's report: cached, or probed now under the deadline.
    pub(super) async fn member_health(&self, member: &Member) -> HealthReport {
        if let Some((at, report)) = member
            .report
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            && at.elapsed() < self.canary.cache_for
        {
            return report.clone();
        }
        let started = Instant::now();
        let report = match tokio::time::timeout(self.canary.deadline, self.probe(member)).await {
            Ok(report) => report,
            Err(_) => HealthReport::unhealthy(
                member.name.clone(),
                started.elapsed(),
                format!(
                    "no answer within the {:?} health deadline",
                    self.canary.deadline
                ),
            ),
        };
        if !self.canary.cache_for.is_zero() {
            *member.report.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((Instant::now(), report.clone()));
        }
        report
    }

    async fn probe(&self, member: &Member) -> HealthReport {
        let started = Instant::now();
        let mut report = member.backend.health().await;
        let provider = std::mem::replace(&mut report.backend, member.name.clone());
        let mut notes = vec![match report.detail.take() {
            Some(d) => format!("{provider}: {d}"),
            None => provider,
        }];
        let mut failed = false;
        for key in &self.canary.sign_keys {
            match self.sign_canary(member, key).await {
                Ok(()) => notes.push(format!("canary {key}: signed and verified")),
                Err(why) => {
                    failed = true;
                    notes.push(format!("canary {key} failed: {why}"));
                }
            }
        }
        for key in &self.canary.symmetric_keys {
            match symmetric_canary(member, key).await {
                Ok(()) => notes.push(format!("canary {key}: encrypted and decrypted")),
                Err(why) => {
                    failed = true;
                    notes.push(format!("canary {key} failed: {why}"));
                }
            }
        }
        if failed {
            report.status = HealthStatus::Unhealthy;
        }
        report.detail = Some(notes.join("; "));
        report.latency = started.elapsed();
        report
    }

    async fn sign_canary(&self, member: &Member, key: &KeyRef) -> Result<(), String> {
        let backend = member.backend.as_ref();
        let pk = backend.public_key(key).await.map_err(|e| e.to_string())?;
        let payload = match pk.algorithm() {
            crate::KeyAlgorithm::Secp256k1 => SignPayload::Prehash(CANARY_DIGEST),
            crate::KeyAlgorithm::Ed25519 => SignPayload::message(CANARY_MESSAGE),
        };
        let sig = backend
            .sign(key, &payload)
            .await
            .map_err(|e| e.to_string())?;
        // Checked here again, independently of the provider's own verify-after-sign.
        pk.verify(&payload, sig.signature())
            .map_err(|e| format!("the canary signature does not verify: {e}"))?;
        if *sig.public_key() != pk {
            return Err("signed with another key than the one it reports".into());
        }
        self.check_same_key(key, &member.name, &pk)
            .map_err(|e| e.to_string())
    }
}

async fn symmetric_canary(member: &Member, key: &KeyRef) -> Result<(), String> {
    let context = EncryptionContext::from([("purpose".to_owned(), "keymgr-health".to_owned())]);
    let backend = member.backend.as_ref();
    let ciphertext = backend
        .encrypt(key, CANARY_PLAINTEXT, &context)
        .await
        .map_err(|e| e.to_string())?;
    let plaintext = backend
        .decrypt(key, &ciphertext, &context)
        .await
        .map_err(|e| e.to_string())?;
    if plaintext.expose() != CANARY_PLAINTEXT {
        return Err("decrypting the canary gave back other bytes".into());
    }
    Ok(())
}
