//! The manager's own operations behind its [`KeyBackend`](crate::KeyBackend)
//! implementation: dispatch, audited key changes (disable, delete) and audited symmetric
//! operations.

use sha2::{Digest as _, Sha256};

use super::with_route;
use crate::layer::{Operation, Reply};
use crate::{
    AuditEvent, EncryptionContext, Error, HealthReport, KeyManager, KeyRef, Outcome, Result,
};

impl KeyManager {
    pub(crate) fn backend_name(&self) -> &str {
        self.backend.name()
    }

    pub(crate) async fn dispatch(&self, operation: Operation<'_>) -> Result<Reply> {
        match operation {
            Operation::Sign(key, payload) => self.sign(key, payload).await.map(Reply::Signature),
            // Rotation has one implementation, keymgr-rotation's `Rotator`.
            Operation::CreateVersion(name) => Err(Error::unsupported(
                self.backend.name(),
                "create_version",
                format!(
                    "KeyManager does not rotate {name}: use keymgr_rotation::Rotator::from_manager \
                     (or `keymgr rotate`), the one audited, crash-safe rotation path"
                ),
            )),
            Operation::DisableVersion(key) => self.disable_audited(key).await.map(|()| Reply::Done),
            Operation::DeleteVersion(key) => self.delete_audited(key).await.map(|()| Reply::Done),
            Operation::Encrypt(key, plaintext, context) => {
                let op = self.backend.encrypt(key, plaintext, context);
                let input = Symmetric::Encrypt {
                    plaintext_len: plaintext.len(),
                };
                self.audited(input, key, context, op)
                    .await
                    .map(Reply::Ciphertext)
            }
            Operation::Decrypt(key, ciphertext, context) => {
                let op = self.backend.decrypt(key, ciphertext, context);
                self.audited(Symmetric::Decrypt { ciphertext }, key, context, op)
                    .await
                    .map(Reply::Plaintext)
            }
            Operation::GenerateDataKey(key, context) => {
                let op = self.backend.generate_data_key(key, context);
                self.audited(Symmetric::GenerateDataKey, key, context, op)
                    .await
                    .map(Reply::DataKey)
            }
            other => other.call(self.backend.as_ref()).await,
        }
    }

    pub(crate) async fn dispatch_health(&self) -> HealthReport {
        self.health().await
    }

    pub(crate) fn dispatch_invalidate(&self, name: &str) {
        self.backend.invalidate(name);
    }

    async fn disable_audited(&self, key: &KeyRef) -> Result<()> {
        let result = self.backend.disable_version(key).await;
        self.audit_change(AuditEvent::KeyDisabled, key, &result)
            .await?;
        result
    }

    /// A deletion asked of the manager directly (not by the rotator, which audits its
    /// own with the keep count): a `pending` `KEY_DELETED` entry before the backend is
    /// asked (nothing is deleted if it cannot be written), then the outcome, `denied`
    /// when refused.
    async fn delete_audited(&self, key: &KeyRef) -> Result<()> {
        // The intent first: a destruction the log cannot record does not happen.
        self.audit
            .record(self.record(AuditEvent::KeyDeleted, key, Outcome::Pending))
            .await?;
        let result = self.backend.delete_version(key).await;
        self.audit_change(AuditEvent::KeyDeleted, key, &result)
            .await?;
        result
    }

    /// One entry for a version change: success, `denied` when the backend refused it as
    /// invalid (e.g. the current version), else failure with the error.
    async fn audit_change(
        &self,
        event: AuditEvent,
        key: &KeyRef,
        result: &Result<()>,
    ) -> Result<()> {
        let outcome = match result {
            Ok(()) => Outcome::Success,
            Err(e) if e.kind() == crate::ErrorKind::InvalidInput => Outcome::Denied,
            Err(_) => Outcome::Failure,
        };
        let mut r = self.record(event, key, outcome);
        if let Err(e) = result {
            r.error_kind = Some(e.kind());
            r.details.insert("error".into(), e.to_string());
        }
        self.audit.record(r).await
    }
}

/// A symmetric key operation, as far as the audit log may know it: never the plaintext
/// (not even its hash: a low-entropy secret's hash can be guessed), the SHA-256 of a
/// ciphertext, the encryption context (not secret: KMS logs it too).
enum Symmetric<'a> {
    Encrypt { plaintext_len: usize },
    Decrypt { ciphertext: &'a [u8] },
    GenerateDataKey,
}

impl KeyManager {
    /// Audits a symmetric operation like a signature: the request (committed together
    /// with the outcome; if it cannot be appended nothing runs), then the outcome; the
    /// result is returned only once the outcome is recorded.
    async fn audited<T>(
        &self,
        input: Symmetric<'_>,
        key: &KeyRef,
        context: &EncryptionContext,
        op: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        use AuditEvent as E;
        let (events, payload_sha256) = match &input {
            Symmetric::Encrypt { .. } => (
                [E::EncryptRequest, E::EncryptSuccess, E::EncryptFailure],
                None,
            ),
            Symmetric::Decrypt { ciphertext } => (
                [E::DecryptRequest, E::DecryptSuccess, E::DecryptFailure],
                Some(hex::encode(Sha256::digest(ciphertext))),
            ),
            Symmetric::GenerateDataKey => (
                [
                    E::GenerateDataKeyRequest,
                    E::GenerateDataKeySuccess,
                    E::GenerateDataKeyFailure,
                ],
                None,
            ),
        };
        let mut request = self.record(events[0], key, Outcome::Pending);
        request.payload_sha256 = payload_sha256.clone();
        if let Symmetric::Encrypt { plaintext_len } = input {
            request = request.detail("plaintext_len", plaintext_len.to_string());
        }
        for (k, v) in context {
            request = request.detail(format!("context.{k}"), v.clone());
        }
        self.audit.record_request(request).await?;
        let (result, route) = crate::layer::route::traced(op).await;
        let mut outcome = match &result {
            Ok(_) => self.record(events[1], key, Outcome::Success),
            Err(e) => {
                let mut r = self
                    .record(events[2], key, Outcome::Failure)
                    .detail("error", e.to_string());
                r.error_kind = Some(e.kind());
                r
            }
        };
        outcome.payload_sha256 = payload_sha256;
        self.commit(with_route(outcome, &route)).await?;
        result
    }
}
