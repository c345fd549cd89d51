//! What an error carries besides its kind: the typed reason an integrity check failed
//! and the provider's own context (operation, code, request id).

use super::BoxError;

/// Which integrity check failed (see [`Error::Integrity`](super::Error::Integrity)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum IntegrityReason {
    /// The signature does not verify against the key's public key.
    DoesNotVerify,
    /// The backend answered with another algorithm than the key's.
    AlgorithmMismatch,
    /// The backend's response could not be parsed (bad DER, wrong length, zero r or s).
    MalformedResponse,
    /// The key behind the name changed (still different after re-reading it once).
    KeyChanged,
    /// The signature is over another payload than the one asked for.
    PayloadMismatch,
    /// Failover members hold different keys under one name.
    MembersDisagree,
    /// A tamper-evident record (audit chain, checkpoint, state file) does not check out.
    Tampered,
    /// Any other check.
    Other,
}

impl IntegrityReason {
    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            IntegrityReason::DoesNotVerify => "does_not_verify",
            IntegrityReason::AlgorithmMismatch => "algorithm_mismatch",
            IntegrityReason::MalformedResponse => "malformed_response",
            IntegrityReason::KeyChanged => "key_changed",
            IntegrityReason::PayloadMismatch => "payload_mismatch",
            IntegrityReason::MembersDisagree => "members_disagree",
            IntegrityReason::Tampered => "tampered",
            IntegrityReason::Other => "other",
        }
    }
}

impl std::fmt::Display for IntegrityReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A provider's own account of a failure, kept as the `source()` of the [`Error`] it
/// became: the operation (`Sign`, `C_Sign`), the provider's error code
/// (`ThrottlingException`, `CKR_DEVICE_ERROR`) and request id, and the SDK's error.
///
/// Read it through [`Error::provider_error`](super::Error::provider_error), [`Error::provider_code`](super::Error::provider_code),
/// [`Error::request_id`](super::Error::request_id) and [`Error::operation`](super::Error::operation).
#[derive(Debug)]
pub struct ProviderError {
    provider: &'static str,
    operation: String,
    code: Option<String>,
    request_id: Option<String>,
    source: Option<BoxError>,
}

impl std::fmt::Display for ProviderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.provider, self.operation)?;
        if let Some(code) = &self.code {
            write!(f, ": {code}")?;
        }
        if let Some(id) = &self.request_id {
            write!(f, " (request id {id})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ProviderError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl ProviderError {
    /// A failure of `operation` in `provider` (`aws-kms`, `hsm`, ...).
    pub fn new(provider: &'static str, operation: impl Into<String>) -> Self {
        Self {
            provider,
            operation: operation.into(),
            code: None,
            request_id: None,
            source: None,
        }
    }

    /// Sets the provider's error code.
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Sets the provider's request id.
    pub fn with_request_id(mut self, request_id: Option<impl Into<String>>) -> Self {
        self.request_id = request_id.map(Into::into);
        self
    }

    /// Sets the SDK's own error.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The provider's name.
    pub fn provider(&self) -> &'static str {
        self.provider
    }

    /// The operation that failed.
    pub fn operation(&self) -> &str {
        &self.operation
    }

    /// The provider's error code.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// The provider's request id.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }
}
