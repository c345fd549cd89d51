//! Key Vault errors → [`keymgr_core::Error`], keeping the service's code, message and
//! request id (`x-ms-request-id`).
//!
//! Codes: <https://learn.microsoft.com/azure/key-vault/general/rest-error-codes>;
//! throttling (429 + `Retry-After`): <https://learn.microsoft.com/azure/key-vault/general/overview-throttling>.

use std::fmt;
use std::time::Duration;

use azure_core::error::ErrorKind as AzureKind;
use azure_core::http::headers::{HeaderName, RETRY_AFTER};
use keymgr_core::{Error, ProviderError};

use crate::backend::BACKEND;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-ms-request-id");

/// What Key Vault said about a failed call; the `source()` of the keymgr error where the
/// variant has one, and in every message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVaultError {
    /// HTTP status, when a response arrived.
    pub status: Option<u16>,
    /// Key Vault's `error.code` (`KeyNotFound`, `Forbidden`, `BadParameter`, `Throttled`, ...).
    pub code: Option<String>,
    /// Key Vault's `error.message`, or the SDK's description.
    pub message: String,
    /// `x-ms-request-id`, to quote to Azure support.
    pub request_id: Option<String>,
    /// `Retry-After`, when the service sent one.
    pub retry_after: Option<Duration>,
}

impl fmt::Display for KeyVaultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(s) = self.status {
            write!(f, "HTTP {s} ")?;
        }
        write!(
            f,
            "{}: {}",
            self.code.as_deref().unwrap_or("(no code)"),
            self.message
        )?;
        if let Some(id) = &self.request_id {
            write!(f, " (x-ms-request-id {id})")?;
        }
        if let Some(after) = self.retry_after {
            write!(f, " (retry after {}s)", after.as_secs())?;
        }
        Ok(())
    }
}

impl std::error::Error for KeyVaultError {}

impl KeyVaultError {
    /// Key Vault's own account of `error`, when Key Vault answered the failed call
    /// (found in `error`'s `source()` chain).
    pub fn of(error: &Error) -> Option<&KeyVaultError> {
        let mut cause = std::error::Error::source(error);
        while let Some(e) = cause {
            if let Some(kv) = e.downcast_ref::<KeyVaultError>() {
                return Some(kv);
            }
            cause = e.source();
        }
        None
    }

    /// Reads status, `error.code`/`error.message`, request id and `Retry-After`.
    pub(crate) fn from_sdk(e: &azure_core::Error) -> Self {
        let mut out = KeyVaultError {
            status: None,
            code: None,
            message: e.to_string(),
            request_id: None,
            retry_after: None,
        };
        if let AzureKind::HttpResponse {
            status,
            error_code,
            raw_response,
        } = e.kind()
        {
            out.status = Some(u16::from(*status));
            out.code = error_code.clone();
            if let Some(raw) = raw_response {
                let headers = raw.headers();
                out.request_id = headers.get_optional_string(&REQUEST_ID);
                out.retry_after = headers
                    .get_optional_str(&RETRY_AFTER)
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                if let Some((code, message)) = body_error(raw.body().as_ref()) {
                    // The body's `error.code` is Key Vault's own; the SDK may report the status.
                    out.code = code.or(out.code);
                    out.message = message;
                }
            }
        }
        out
    }
}

/// `{"error":{"code","message"}}`, parsed without trusting its shape.
fn body_error(body: &[u8]) -> Option<(Option<String>, String)> {
    #[derive(serde::Deserialize)]
    struct Outer {
        error: Inner,
    }
    #[derive(serde::Deserialize)]
    struct Inner {
        code: Option<String>,
        message: Option<String>,
    }
    let outer: Outer = serde_json::from_slice(body).ok()?;
    Some((outer.error.code, outer.error.message.unwrap_or_default()))
}

/// Maps a failed SDK call of `operation` (the REST operation id: `getKey`, `sign`,
/// `wrapKey`, ...) on `key` (the caller's name for it) to keymgr's error.
///
/// Every variant keeps a [`ProviderError`] as its `source()` (operation, Key Vault code,
/// `x-ms-request-id`, read through [`Error::operation`], [`Error::provider_code`] and
/// [`Error::request_id`]), whose own source is the [`KeyVaultError`] for service answers
/// (see [`KeyVaultError::of`]) or the SDK's error otherwise.
pub(crate) fn map(key: &str, operation: &'static str, e: azure_core::Error) -> Error {
    let kv = KeyVaultError::from_sdk(&e);
    let detail = format!("{operation}: {kv}");
    let mut cause = ProviderError::new(BACKEND, operation).with_request_id(kv.request_id.clone());
    if let Some(code) = &kv.code {
        cause = cause.with_code(code.clone());
    }
    let error = match e.kind() {
        AzureKind::HttpResponse { .. } => match (kv.status, kv.code.as_deref()) {
            (Some(429), _) | (_, Some("Throttled")) => Error::throttled(BACKEND, detail, None),
            (Some(404), _) | (_, Some("KeyNotFound")) => Error::not_found(key, detail),
            (Some(401 | 403), _) | (_, Some("Forbidden" | "Unauthorized")) => {
                Error::access_denied(key, detail)
            }
            (Some(400), _) | (_, Some("BadParameter")) => {
                Error::invalid_input(format!("request for {key}"), detail)
            }
            (Some(s), _) if s == 408 || s >= 500 => Error::unavailable(BACKEND, detail, None),
            _ => Error::backend(BACKEND, detail, None),
        },
        AzureKind::Connection | AzureKind::Io => Error::unavailable(BACKEND, detail, None),
        AzureKind::Credential => {
            Error::access_denied(key, format!("could not get an Entra ID token: {detail}"))
        }
        AzureKind::DataConversion => Error::integrity(
            key,
            format!("Key Vault returned a response keymgr cannot read: {detail}"),
        ),
        _ => Error::backend(BACKEND, detail, None),
    };
    let cause = if matches!(e.kind(), AzureKind::HttpResponse { .. }) {
        cause.with_source(kv)
    } else {
        cause.with_source(e)
    };
    error.with_source(cause)
}
