//! What [`KeyManager`](crate::KeyManager) tells an audit log, and the sink trait that
//! receives it. The hash-chained file log lives in `keymgr-audit`; without it, records
//! go to `tracing` (target `keymgr::audit`).

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{ErrorKind, Result, SignContext};

/// Audit event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum AuditEvent {
    /// A signature was requested.
    SignRequest,
    /// A signature was produced and verified.
    SignSuccess,
    /// Signing failed.
    SignFailure,
    /// A rotation is coming (notice window).
    KeyRotationNotice,
    /// A rotation started.
    KeyRotationStart,
    /// A rotation finished.
    KeyRotationComplete,
    /// A rotation is waiting for an operator's approval.
    KeyRotationAwaitingApproval,
    /// A rotation was requested (by an operator or the schedule); details name the
    /// request and the requester.
    KeyRotationRequested,
    /// A rotation request was approved; details name the requester and the approver.
    KeyRotationApproved,
    /// An approval was refused (e.g. the requester tried to approve their own request).
    KeyRotationRefused,
    /// A rotation request, or its approval, expired unused.
    KeyRotationExpired,
    /// An open rotation request was rejected by an actor other than its requester;
    /// details name the request, the requester, the rejecter and the reason.
    KeyRotationRejected,
    /// A key version was deleted, or a deletion was refused (`denied`) or failed: by
    /// keymgr-rotation's `Rotator` under the opt-in `HSM_KEEP_VERSIONS` (details:
    /// `version`, `backend_id`, `keep_versions`, `reason`), or asked of the
    /// `KeyManager` directly; `key_version` names the version.
    KeyDeleted,
    /// A rotation failed.
    KeyRotationFailure,
    /// A key version was disabled.
    KeyDisabled,
    /// Access to a key was refused.
    KeyAccessDenied,
    /// A per-key rate limit refused a call.
    RateLimited,
    /// An encryption was requested.
    EncryptRequest,
    /// An encryption succeeded.
    EncryptSuccess,
    /// An encryption failed.
    EncryptFailure,
    /// A decryption was requested.
    DecryptRequest,
    /// A decryption succeeded.
    DecryptSuccess,
    /// A decryption failed.
    DecryptFailure,
    /// A data key was requested.
    GenerateDataKeyRequest,
    /// A data key was generated.
    GenerateDataKeySuccess,
    /// Generating a data key failed.
    GenerateDataKeyFailure,
}

impl AuditEvent {
    /// The SCREAMING_SNAKE_CASE name used in log entries.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditEvent::SignRequest => "SIGN_REQUEST",
            AuditEvent::SignSuccess => "SIGN_SUCCESS",
            AuditEvent::SignFailure => "SIGN_FAILURE",
            AuditEvent::KeyRotationNotice => "KEY_ROTATION_NOTICE",
            AuditEvent::KeyRotationStart => "KEY_ROTATION_START",
            AuditEvent::KeyRotationComplete => "KEY_ROTATION_COMPLETE",
            AuditEvent::KeyRotationAwaitingApproval => "KEY_ROTATION_AWAITING_APPROVAL",
            AuditEvent::KeyRotationRequested => "KEY_ROTATION_REQUESTED",
            AuditEvent::KeyRotationApproved => "KEY_ROTATION_APPROVED",
            AuditEvent::KeyRotationRefused => "KEY_ROTATION_REFUSED",
            AuditEvent::KeyRotationExpired => "KEY_ROTATION_EXPIRED",
            AuditEvent::KeyRotationRejected => "KEY_ROTATION_REJECTED",
            AuditEvent::KeyDeleted => "KEY_DELETED",
            AuditEvent::KeyRotationFailure => "KEY_ROTATION_FAILURE",
            AuditEvent::KeyDisabled => "KEY_DISABLED",
            AuditEvent::KeyAccessDenied => "KEY_ACCESS_DENIED",
            AuditEvent::RateLimited => "RATE_LIMITED",
            AuditEvent::EncryptRequest => "ENCRYPT_REQUEST",
            AuditEvent::EncryptSuccess => "ENCRYPT_SUCCESS",
            AuditEvent::EncryptFailure => "ENCRYPT_FAILURE",
            AuditEvent::DecryptRequest => "DECRYPT_REQUEST",
            AuditEvent::DecryptSuccess => "DECRYPT_SUCCESS",
            AuditEvent::DecryptFailure => "DECRYPT_FAILURE",
            AuditEvent::GenerateDataKeyRequest => "GENERATE_DATA_KEY_REQUEST",
            AuditEvent::GenerateDataKeySuccess => "GENERATE_DATA_KEY_SUCCESS",
            AuditEvent::GenerateDataKeyFailure => "GENERATE_DATA_KEY_FAILURE",
        }
    }
}

impl fmt::Display for AuditEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Result of the audited operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Requested, result not known yet.
    Pending,
    /// Succeeded.
    Success,
    /// Failed.
    Failure,
    /// Refused by policy.
    Denied,
}

/// One audit record as produced by keymgr; sinks add sequence, time, node and chain hash.
///
/// Carries the SHA-256 of what was signed, never the payload itself, and no secrets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Event type.
    pub event: AuditEvent,
    /// Backend name.
    pub backend: String,
    /// Logical key name.
    pub key: String,
    /// Key version, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_version: Option<String>,
    /// Hex SHA-256 of the signed payload bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_sha256: Option<String>,
    /// Who asked, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Outcome.
    pub outcome: Outcome,
    /// Error category on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<ErrorKind>,
    /// Extra context (old/new key ids, error message, ...). Never secrets.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
    /// What was signed, as typed fields, when the adapter said
    /// ([`KeyBackend::sign_with_context`](crate::KeyBackend::sign_with_context)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<SignContext>,
}

impl AuditRecord {
    /// A record for `event` on `key` with outcome `outcome` and nothing else set.
    pub fn new(
        event: AuditEvent,
        backend: impl Into<String>,
        key: impl Into<String>,
        outcome: Outcome,
    ) -> Self {
        Self {
            event,
            backend: backend.into(),
            key: key.into(),
            key_version: None,
            payload_sha256: None,
            actor: None,
            outcome,
            error_kind: None,
            details: BTreeMap::new(),
            context: None,
        }
    }

    /// Adds a detail.
    pub fn detail(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.details.insert(name.into(), value.into());
        self
    }
}

/// Receives audit records. `record` returns once the record is as durable as the sink
/// promises (the file log: fsynced), so a caller may refuse to proceed when it fails.
#[async_trait]
pub trait AuditSink: Send + Sync + fmt::Debug {
    /// Records one entry.
    async fn record(&self, record: AuditRecord) -> Result<()>;

    /// Records an entry whose outcome will follow in a [`record`](Self::record) call
    /// (`SIGN_REQUEST` before `SIGN_SUCCESS`): an error means it could not be appended,
    /// and the caller must not go on. A durable sink may commit it together with the
    /// outcome (one fsync per operation); the default records it at once.
    async fn record_request(&self, record: AuditRecord) -> Result<()> {
        self.record(record).await
    }
}

const _: fn(std::sync::Arc<dyn AuditSink>) = |_| {};

/// Emits every record as a `tracing` event with target `keymgr::audit`; keeps no file.
#[derive(Debug, Default, Clone, Copy)]
pub struct TracingAuditSink;

/// Emits `record` as a structured `tracing` event (target `keymgr::audit`).
pub fn trace_record(record: &AuditRecord) {
    tracing::info!(
        target: "keymgr::audit",
        event = record.event.as_str(),
        backend = %record.backend,
        key = %record.key,
        key_version = record.key_version.as_deref(),
        payload_sha256 = record.payload_sha256.as_deref(),
        actor = record.actor.as_deref(),
        outcome = ?record.outcome,
        error_kind = record.error_kind.map(ErrorKind::as_str),
        details = ?record.details,
        context = ?record.context,
        "audit"
    );
}

#[async_trait]
impl AuditSink for TracingAuditSink {
    async fn record(&self, record: AuditRecord) -> Result<()> {
        trace_record(&record);
        Ok(())
    }
}
