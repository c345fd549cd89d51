//! The one error type every keymgr crate returns.

use std::time::Duration;

mod context;
pub use context::{IntegrityReason, ProviderError};

/// A boxed underlying cause (SDK error, I/O error, ...), kept for `source()` chains.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result alias used across keymgr.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors a caller can act on.
///
/// Messages name the thing that failed (key, variable, backend, request id) and never
/// contain secret material: constructors take descriptions, never keys, seeds or PINs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The key, version or alias does not exist in the backend.
    #[error("key not found: {key}: {detail}")]
    NotFound {
        /// The key as the caller named it.
        key: String,
        /// What the backend said.
        detail: String,
        /// Underlying cause (a [`ProviderError`] for provider answers).
        #[source]
        source: Option<BoxError>,
    },
    /// The backend (or keymgr's own policy) refused access.
    #[error("access denied for {key}: {detail}")]
    AccessDenied {
        /// The key as the caller named it (or the backend, for login failures).
        key: String,
        /// What the backend or policy said.
        detail: String,
        /// Underlying cause (a [`ProviderError`] for provider answers).
        #[source]
        source: Option<BoxError>,
    },
    /// The backend cannot do this at all.
    #[error("{operation} is not supported by the {backend} backend: {reason}")]
    Unsupported {
        /// Backend name (`env`, `aws-kms`, ...).
        backend: String,
        /// The operation that was asked for.
        operation: &'static str,
        /// Why, and what to do instead.
        reason: String,
        /// Underlying cause (a provider's "not supported" answer).
        #[source]
        source: Option<BoxError>,
    },
    /// The caller passed something malformed; `field` names it.
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// Which input was wrong.
        field: String,
        /// What was wrong and what is expected.
        reason: String,
        /// Underlying cause (a parser's error, a provider's validation error).
        #[source]
        source: Option<BoxError>,
    },
    /// The backend asked us to slow down (retryable).
    #[error("throttled by {backend}: {detail}")]
    Throttled {
        /// Backend name.
        backend: String,
        /// What the backend said (with its request id when it gave one).
        detail: String,
        /// Underlying cause.
        #[source]
        source: Option<BoxError>,
    },
    /// keymgr's own per-key rate limit was exceeded.
    #[error(
        "rate limit exceeded for {key}: at most {limit} signatures per {per:?}; retry in {retry_after:?}"
    )]
    RateLimited {
        /// The key.
        key: String,
        /// Allowed operations per window.
        limit: u32,
        /// The window.
        per: Duration,
        /// When a new permit will be available.
        retry_after: Duration,
    },
    /// The backend could not be reached or answered with a transient failure (retryable).
    #[error("{backend} unavailable: {detail}")]
    Unavailable {
        /// Backend name.
        backend: String,
        /// What happened.
        detail: String,
        /// Underlying cause.
        #[source]
        source: Option<BoxError>,
    },
    /// The call did not finish in time (retryable).
    #[error("{backend}: {operation} timed out after {after:?}")]
    Timeout {
        /// Backend name.
        backend: String,
        /// The operation.
        operation: &'static str,
        /// The limit that was hit.
        after: Duration,
    },
    /// A setting is missing or malformed; `variable` names it.
    #[error("configuration error: {variable}: {reason} (expected {expected})")]
    Config {
        /// The environment variable or setting.
        variable: String,
        /// The expected form.
        expected: String,
        /// What was wrong.
        reason: String,
        /// Underlying cause (a parse or I/O error).
        #[source]
        source: Option<BoxError>,
    },
    /// A response failed a check: a signature that does not verify, a malformed or
    /// corrupted response, a key that changed, a checksum mismatch.
    #[error("integrity check failed for {key} ({reason}): {detail}")]
    Integrity {
        /// The key involved.
        key: String,
        /// Which check failed.
        reason: IntegrityReason,
        /// What did not check out.
        detail: String,
        /// Underlying cause (e.g. the parse error of a malformed response).
        #[source]
        source: Option<BoxError>,
    },
    /// Any other backend failure that retrying will not fix.
    #[error("{backend} error: {detail}")]
    Backend {
        /// Backend name.
        backend: String,
        /// What happened.
        detail: String,
        /// Underlying cause.
        #[source]
        source: Option<BoxError>,
    },
}

/// The category of an [`Error`], for matching and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// See [`Error::NotFound`].
    NotFound,
    /// See [`Error::AccessDenied`].
    AccessDenied,
    /// See [`Error::Unsupported`].
    Unsupported,
    /// See [`Error::InvalidInput`].
    InvalidInput,
    /// See [`Error::Throttled`].
    Throttled,
    /// See [`Error::RateLimited`].
    RateLimited,
    /// See [`Error::Unavailable`].
    Unavailable,
    /// See [`Error::Timeout`].
    Timeout,
    /// See [`Error::Config`].
    Config,
    /// See [`Error::Integrity`].
    Integrity,
    /// See [`Error::Backend`].
    Backend,
}

impl ErrorKind {
    /// Stable snake_case name (as used in audit entries and JSON output).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::AccessDenied => "access_denied",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::Throttled => "throttled",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Config => "config",
            ErrorKind::Integrity => "integrity",
            ErrorKind::Backend => "backend",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Error {
    /// The error's category.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::AccessDenied { .. } => ErrorKind::AccessDenied,
            Error::Unsupported { .. } => ErrorKind::Unsupported,
            Error::InvalidInput { .. } => ErrorKind::InvalidInput,
            Error::Throttled { .. } => ErrorKind::Throttled,
            Error::RateLimited { .. } => ErrorKind::RateLimited,
            Error::Unavailable { .. } => ErrorKind::Unavailable,
            Error::Timeout { .. } => ErrorKind::Timeout,
            Error::Config { .. } => ErrorKind::Config,
            Error::Integrity { .. } => ErrorKind::Integrity,
            Error::Backend { .. } => ErrorKind::Backend,
        }
    }

    /// Whether the same call may succeed if retried later (throttling, outages, timeouts).
    ///
    /// keymgr's own rate limit is not retryable by the retry layer: waiting inside the
    /// call would defeat the limit; the caller sees `retry_after` instead.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind(),
            ErrorKind::Throttled | ErrorKind::Unavailable | ErrorKind::Timeout
        )
    }

    /// For [`Error::Integrity`], which check failed.
    pub fn integrity_reason(&self) -> Option<IntegrityReason> {
        match self {
            Error::Integrity { reason, .. } => Some(*reason),
            _ => None,
        }
    }

    /// The provider's own account of the failure (operation, error code, request id),
    /// when a provider produced this error; see [`ProviderError`].
    pub fn provider_error(&self) -> Option<&ProviderError> {
        let mut cause = std::error::Error::source(self);
        while let Some(e) = cause {
            if let Some(p) = e.downcast_ref::<ProviderError>() {
                return Some(p);
            }
            cause = e.source();
        }
        None
    }

    /// The provider operation that failed (`Sign`, `C_SignInit`, ...), if known.
    pub fn operation(&self) -> Option<&str> {
        match self {
            Error::Unsupported { operation, .. } | Error::Timeout { operation, .. } => {
                Some(operation)
            }
            _ => self.provider_error().map(ProviderError::operation),
        }
    }

    /// The provider's error code (`ThrottlingException`, `CKR_PIN_INCORRECT`, ...), if any.
    pub fn provider_code(&self) -> Option<&str> {
        self.provider_error().and_then(ProviderError::code)
    }

    /// The provider's request id (AWS `x-amzn-RequestId`, ...), if it gave one.
    pub fn request_id(&self) -> Option<&str> {
        self.provider_error().and_then(ProviderError::request_id)
    }

    /// Sets the underlying cause on variants that keep one (all but `RateLimited` and
    /// `Timeout`, which keymgr raises itself without a cause); others are unchanged.
    pub fn with_source(mut self, cause: impl Into<BoxError>) -> Self {
        match &mut self {
            Error::NotFound { source, .. }
            | Error::AccessDenied { source, .. }
            | Error::InvalidInput { source, .. }
            | Error::Throttled { source, .. }
            | Error::Unavailable { source, .. }
            | Error::Config { source, .. }
            | Error::Integrity { source, .. }
            | Error::Unsupported { source, .. }
            | Error::Backend { source, .. } => *source = Some(cause.into()),
            Error::RateLimited { .. } | Error::Timeout { .. } => {}
        }
        self
    }

    /// Shorthand for [`Error::InvalidInput`].
    pub fn invalid_input(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidInput {
            field: field.into(),
            reason: reason.into(),
            source: None,
        }
    }

    /// Shorthand for [`Error::Unsupported`].
    pub fn unsupported(
        backend: impl Into<String>,
        operation: &'static str,
        reason: impl Into<String>,
    ) -> Self {
        Error::Unsupported {
            backend: backend.into(),
            operation,
            reason: reason.into(),
            source: None,
        }
    }

    /// Shorthand for [`Error::NotFound`].
    pub fn not_found(key: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::NotFound {
            key: key.into(),
            detail: detail.into(),
            source: None,
        }
    }

    /// Shorthand for [`Error::AccessDenied`].
    pub fn access_denied(key: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::AccessDenied {
            key: key.into(),
            detail: detail.into(),
            source: None,
        }
    }

    /// Shorthand for [`Error::Integrity`] with [`IntegrityReason::Other`]; prefer
    /// [`integrity_failure`](Self::integrity_failure) where the reason is one of the
    /// typed ones.
    pub fn integrity(key: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::integrity_failure(key, IntegrityReason::Other, detail)
    }

    /// Shorthand for [`Error::Integrity`] with a typed reason.
    pub fn integrity_failure(
        key: impl Into<String>,
        reason: IntegrityReason,
        detail: impl Into<String>,
    ) -> Self {
        Error::Integrity {
            key: key.into(),
            reason,
            detail: detail.into(),
            source: None,
        }
    }

    /// Shorthand for [`Error::Config`].
    pub fn config(
        variable: impl Into<String>,
        expected: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Error::Config {
            variable: variable.into(),
            expected: expected.into(),
            reason: reason.into(),
            source: None,
        }
    }

    /// Shorthand for [`Error::Throttled`].
    pub fn throttled(
        backend: impl Into<String>,
        detail: impl Into<String>,
        source: Option<BoxError>,
    ) -> Self {
        Error::Throttled {
            backend: backend.into(),
            detail: detail.into(),
            source,
        }
    }

    /// Shorthand for [`Error::Unavailable`].
    pub fn unavailable(
        backend: impl Into<String>,
        detail: impl Into<String>,
        source: Option<BoxError>,
    ) -> Self {
        Error::Unavailable {
            backend: backend.into(),
            detail: detail.into(),
            source,
        }
    }

    /// Shorthand for [`Error::Backend`].
    pub fn backend(
        backend: impl Into<String>,
        detail: impl Into<String>,
        source: Option<BoxError>,
    ) -> Self {
        Error::Backend {
            backend: backend.into(),
            detail: detail.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_kinds() {
        assert!(Error::unavailable("aws-kms", "connection reset", None).is_retryable());
        assert!(
            Error::Timeout {
                backend: "hsm".into(),
                operation: "sign",
                after: Duration::from_secs(1)
            }
            .is_retryable()
        );
        assert!(!Error::not_found("evm", "no such key").is_retryable());
        assert!(!Error::access_denied("evm", "denied").is_retryable());
        assert!(!Error::integrity("evm", "bad signature").is_retryable());
    }

    #[test]
    fn messages_name_the_thing() {
        let e = Error::config(
            "EVM_PRIVATE_KEY",
            "0x-prefixed 64 hex characters",
            "too short",
        );
        let s = e.to_string();
        assert!(s.contains("EVM_PRIVATE_KEY") && s.contains("64 hex"), "{s}");
        assert_eq!(e.kind().as_str(), "config");
    }

    #[test]
    fn provider_context_is_read_through_accessors() {
        let io = std::io::Error::other("connection reset by peer");
        let p = ProviderError::new("aws-kms", "Sign")
            .with_code("ThrottlingException")
            .with_request_id(Some("req-123"))
            .with_source(io);
        let e = Error::throttled("aws-kms", "slow down", Some(Box::new(p)));
        assert_eq!(e.operation(), Some("Sign"));
        assert_eq!(e.provider_code(), Some("ThrottlingException"));
        assert_eq!(e.request_id(), Some("req-123"));
        // The chain goes on to the SDK's error.
        let provider = std::error::Error::source(&e).unwrap();
        assert!(provider.source().unwrap().is::<std::io::Error>());
        assert_eq!(
            Error::not_found("evm", "gone")
                .provider_error()
                .map(|p| p.code()),
            None
        );
    }

    #[test]
    fn integrity_reason_and_source_are_kept() {
        let cause = Error::invalid_input("signature", "malformed DER");
        let e = Error::integrity_failure("evm", IntegrityReason::MalformedResponse, "unusable")
            .with_source(cause);
        assert_eq!(
            e.integrity_reason(),
            Some(IntegrityReason::MalformedResponse)
        );
        let src = std::error::Error::source(&e)
            .unwrap()
            .downcast_ref::<Error>()
            .unwrap();
        assert_eq!(src.kind(), ErrorKind::InvalidInput);
        assert_eq!(Error::not_found("k", "d").integrity_reason(), None);
    }
}
