//! The requests the stand-in received, kept for contract tests (never a token or secret).

use serde_json::Value;

use super::Shared;
use super::form::pairs;

/// One request as the stand-in received it, so contract tests can check what the SDK
/// sends against the REST reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// HTTP method (`GET`, `POST`, `PATCH`).
    pub method: String,
    /// URL path, percent-encoded as sent.
    pub path: String,
    /// Query parameters in order, percent-decoded.
    pub query: Vec<(String, String)>,
    /// Whether an `Authorization` header came with it (its value is never recorded).
    pub authorized: bool,
    /// `Content-Type`, if any.
    pub content_type: Option<String>,
    /// The body parsed as JSON (key operations) or as a form (the token endpoint, whose
    /// `client_secret` value is replaced by `<redacted>`); `Null` when empty.
    pub body: Value,
}

/// Keeps what arrived for [`super::StandIn::requests`]; never an `Authorization` value
/// or a client secret.
pub(crate) fn record(shared: &Shared, parts: &hyper::http::request::Parts, body: &[u8]) {
    let content_type = parts
        .headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = String::from_utf8_lossy(body);
    let body = if body.is_empty() {
        Value::Null
    } else if content_type
        .as_deref()
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"))
    {
        let form = pairs(&text).into_iter().map(|(k, v)| {
            let v = if k == "client_secret" {
                "<redacted>".to_owned()
            } else {
                v
            };
            (k, Value::String(v))
        });
        Value::Object(form.collect())
    } else {
        serde_json::from_slice(body).unwrap_or_else(|_| Value::String(text.into_owned()))
    };
    shared.record(Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: pairs(parts.uri.query().unwrap_or("")),
        authorized: parts.headers.contains_key(hyper::header::AUTHORIZATION),
        content_type,
        body,
    });
}
