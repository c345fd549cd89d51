//! What every command gets: lazily built key manager, and uniform output.

use std::process::ExitCode;
use std::sync::Arc;

use keymgr::config::{Sources, Vars};
use keymgr::{ErrorKind, KeyManager};
use tokio::sync::OnceCell;

/// Shared state for commands.
#[derive(Debug)]
pub(crate) struct Context {
    manager: OnceCell<Arc<KeyManager>>,
    /// Flags, environment, `--env-file` and configuration file, stacked.
    sources: Sources,
}

impl Context {
    pub(crate) fn new(sources: Sources) -> Self {
        Self {
            manager: OnceCell::new(),
            sources,
        }
    }

    /// Every setting, read with precedence flag > environment > env file > config file.
    pub(crate) fn vars(&self) -> Vars<'_> {
        Vars::new(&self.sources.layered)
    }

    /// The key manager the configuration describes (built on first use, so commands
    /// that need no key work without configuration).
    pub(crate) async fn manager(&self) -> anyhow::Result<Arc<KeyManager>> {
        let m = self
            .manager
            .get_or_try_init(|| async {
                self.sources.ensure_valid()?;
                keymgr::manager_from_vars(&self.sources.layered)
                    .await
                    .map(Arc::new)
            })
            .await?;
        Ok(m.clone())
    }

    /// Only the provider `KEY_BACKEND` selects: no layers and, above all, no audit log
    /// (commands that read the log must not open it for writing, which would run its
    /// recovery and retention).
    pub(crate) async fn bare_backend(&self) -> anyhow::Result<Arc<dyn keymgr::KeyBackend>> {
        self.sources.ensure_valid()?;
        let settings = keymgr::Settings::from_vars(&self.sources.layered)?;
        Ok(keymgr::backend_from_vars(settings.backend, &self.sources.layered).await?)
    }
}

/// A command's result: a JSON object for scripts and text for people.
#[derive(Debug)]
pub(crate) struct Output {
    pub(crate) json: serde_json::Value,
    pub(crate) text: String,
}

impl Output {
    pub(crate) fn new(json: serde_json::Value, text: impl Into<String>) -> Self {
        Self {
            json,
            text: text.into(),
        }
    }
}

/// The version of every `--json` object's shape (the `schema` field); see the README's
/// "Scripting" section. It changes only when a field is removed or changes meaning.
pub(crate) const JSON_SCHEMA_VERSION: u64 = 1;

/// The exit status of every command (the README's "Exit codes" table): one table, so a
/// script can tell "try again later" from "fix the configuration" from "this is broken".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// The command did what was asked.
    Ok = 0,
    /// An unexpected failure (I/O, a provider error of no known category).
    Unexpected = 1,
    /// Bad arguments (clap).
    Usage = 2,
    /// Missing or malformed configuration.
    Config = 3,
    /// The key, version or file does not exist.
    NotFound = 4,
    /// The provider (IAM, HSM login) refused.
    AccessDenied = 5,
    /// Unreachable, timed out, throttled, rate limited or circuit breaker open: retry later.
    Unavailable = 6,
    /// A signature, audit chain or ciphertext failed verification.
    Integrity = 7,
    /// Refused by policy (e.g. approval by another operator required).
    Policy = 8,
    /// Invalid or unsupported input.
    InvalidInput = 9,
    /// `keymgr health`: the backend works but is degraded.
    #[allow(dead_code)] // the table is complete here; `keymgr health` reports these
    HealthDegraded = 10,
    /// `keymgr health`: the backend is down.
    #[allow(dead_code)]
    HealthDown = 11,
    /// Busy: another process holds the lease or lock; try again.
    Busy = 75,
}

impl Exit {
    /// The exit status for a keymgr error category.
    pub(crate) fn for_kind(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::Config => Exit::Config,
            ErrorKind::NotFound => Exit::NotFound,
            ErrorKind::AccessDenied => Exit::AccessDenied,
            ErrorKind::Unavailable
            | ErrorKind::Timeout
            | ErrorKind::Throttled
            | ErrorKind::RateLimited => Exit::Unavailable,
            ErrorKind::Integrity => Exit::Integrity,
            ErrorKind::InvalidInput | ErrorKind::Unsupported => Exit::InvalidInput,
            ErrorKind::Backend => Exit::Unexpected,
            // `ErrorKind` is non-exhaustive: a category added later is unexpected here
            // until this table names it.
            _ => Exit::Unexpected,
        }
    }

    /// The process exit code.
    pub(crate) fn code(self) -> ExitCode {
        ExitCode::from(self as u8)
    }
}

/// A refusal with its own exit status and JSON `kind`, for outcomes scripts must tell
/// apart from plain failure (e.g. another rotator holds the lease: try again later).
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) kind: &'static str,
    pub(crate) exit: Exit,
    pub(crate) message: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Refusal {}

/// Adds the `schema` version to a JSON object (other values are left alone).
pub(crate) fn versioned(mut value: serde_json::Value) -> serde_json::Value {
    if let Some(map) = value.as_object_mut() {
        map.insert("schema".into(), JSON_SCHEMA_VERSION.into());
    }
    value
}

/// Prints a result; errors go to stderr, or as `{"error": ...}` on stdout with `--json`.
/// Every JSON object carries `"schema": JSON_SCHEMA_VERSION`.
pub(crate) fn print(result: anyhow::Result<Output>, json: bool) -> ExitCode {
    match result {
        Ok(out) if json => {
            println!("{}", versioned(out.json));
            Exit::Ok.code()
        }
        Ok(out) => {
            let text = out.text.trim_end();
            if !text.is_empty() {
                println!("{text}");
            }
            Exit::Ok.code()
        }
        Err(e) => {
            let (kind, exit) = classify(&e);
            let message = format!("{e:#}");
            if json {
                let mut error = serde_json::json!({
                    "kind": kind,
                    "exit_code": exit as u8,
                    "message": message,
                });
                if let Some(fields) = request_fields(&e) {
                    error["fields"] = serde_json::json!(fields);
                }
                println!("{}", versioned(serde_json::json!({ "error": error })));
            } else {
                eprintln!("keymgr: {message}");
            }
            exit.code()
        }
    }
}

/// The JSON `kind` and exit status of a failure: a [`Refusal`]'s own, else the keymgr
/// error category behind it (also when alloy or the envelope reader carried it), else
/// the I/O error's, else unexpected.
pub(crate) fn classify(e: &anyhow::Error) -> (&'static str, Exit) {
    if let Some(r) = e.chain().find_map(|c| c.downcast_ref::<Refusal>()) {
        return (r.kind, r.exit);
    }
    if let Some(kind) = error_kind(e) {
        return (kind.as_str(), Exit::for_kind(kind));
    }
    for cause in e.chain() {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::NotFound => return ("not_found", Exit::NotFound),
                std::io::ErrorKind::PermissionDenied => {
                    return ("access_denied", Exit::AccessDenied);
                }
                _ => {}
            }
        }
    }
    ("error", Exit::Unexpected)
}

/// The keymgr error category behind `e`, also when alloy carried it.
fn error_kind(e: &anyhow::Error) -> Option<ErrorKind> {
    for cause in e.chain() {
        if let Some(k) = cause.downcast_ref::<keymgr::Error>() {
            return Some(k.kind());
        }
        if cause.is::<keymgr_evm::RequestError>() {
            return Some(ErrorKind::InvalidInput);
        }
        #[cfg(feature = "envelope")]
        if let Some(e) = cause.downcast_ref::<keymgr_envelope::EnvelopeError>() {
            return Some(e.kind());
        }
        if let Some(a) = cause.downcast_ref::<alloy_signer::Error>() {
            if keymgr_evm::request_error(a).is_some() {
                return Some(ErrorKind::InvalidInput);
            }
            if let Some(k) = keymgr_evm::keymgr_error(a) {
                return Some(k.kind());
            }
            return Some(ErrorKind::InvalidInput);
        }
    }
    None
}

/// The JSON fields a refused EVM request names (`--json` reports them as `fields`).
fn request_fields(e: &anyhow::Error) -> Option<Vec<String>> {
    e.chain().find_map(|cause| {
        let request = cause
            .downcast_ref::<keymgr_evm::RequestError>()
            .or_else(|| {
                cause
                    .downcast_ref::<alloy_signer::Error>()
                    .and_then(keymgr_evm::request_error)
            })?;
        Some(request.fields().into_iter().map(str::to_owned).collect())
    })
}
