//! Key Vault errors → [`keymgr_core::Error`], keeping the service's code, message and
//! request id (`x-ms-request-id`).
//!
//! Codes: <https://learn.microsoft.com/azure/key-vault/general/rest-error-codes>;
//! throttling (429 + `Retry-After`): <https://learn.microsoft.com/azure/key-vault/general/overview-throttling>.

use std::fmt;
use std::time::Duration;

use azure_core::error::ErrorKind as AzureKind;
use azure_core::http::headers::{HeaderName, RETRY_AFTER};
use keymgr_core::Error;

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
                    out.code = out.code.or(code);
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

/// Maps a failed SDK call on `key` (the caller's name for it) to keymgr's error.
pub(crate) fn map(key: &str, e: azure_core::Error) -> Error {
    let kv = KeyVaultError::from_sdk(&e);
    let detail = kv.to_string();
    match e.kind() {
        AzureKind::HttpResponse { .. } => match (kv.status, kv.code.as_deref()) {
            (Some(429), _) | (_, Some("Throttled")) => Error::Throttled {
                backend: BACKEND.into(),
                detail,
                source: Some(Box::new(kv)),
            },
            (Some(404), _) | (_, Some("KeyNotFound")) => Error::not_found(key, detail),
            (Some(401 | 403), _) | (_, Some("Forbidden" | "Unauthorized")) => Error::AccessDenied {
                key: key.to_owned(),
                detail,
                source: Some(Box::new(kv)),
            },
            (Some(400), _) | (_, Some("BadParameter")) => Error::InvalidInput {
                field: format!("request for {key}"),
                reason: detail,
                source: Some(Box::new(kv)),
            },
            (Some(s), _) if s == 408 || s >= 500 => {
                Error::unavailable(BACKEND, detail, Some(Box::new(kv)))
            }
            _ => Error::backend(BACKEND, detail, Some(Box::new(kv))),
        },
        AzureKind::Connection | AzureKind::Io => {
            Error::unavailable(BACKEND, detail, Some(Box::new(e)))
        }
        AzureKind::Credential => Error::AccessDenied {
            key: key.to_owned(),
            detail: format!("could not get an Entra ID token: {detail}"),
            source: Some(Box::new(e)),
        },
        AzureKind::DataConversion => Error::integrity(
            key,
            format!("Key Vault returned a response keymgr cannot read: {detail}"),
        ),
        _ => Error::backend(BACKEND, detail, Some(Box::new(e))),
    }
}
