//! What every command gets: lazily built key manager, and uniform output.

use std::process::ExitCode;
use std::sync::Arc;

use keymgr::KeyManager;
use keymgr::config::{Sources, Vars};
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

/// A refusal with its own exit code and JSON `kind`, for outcomes scripts must tell
/// apart from plain failure (e.g. another rotator holds the lease: try again later).
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) kind: &'static str,
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Refusal {}

/// Prints a result; errors go to stderr, or as `{"error": ...}` on stdout with `--json`.
pub(crate) fn print(result: anyhow::Result<Output>, json: bool) -> ExitCode {
    match result {
        Ok(out) if json => {
            println!("{}", out.json);
            ExitCode::SUCCESS
        }
        Ok(out) => {
            let text = out.text.trim_end();
            if !text.is_empty() {
                println!("{text}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let refusal = e.chain().find_map(|c| c.downcast_ref::<Refusal>());
            let kind = refusal.map_or_else(|| error_kind(&e), |r| r.kind);
            let code = refusal.map_or(ExitCode::FAILURE, |r| ExitCode::from(r.code));
            let message = format!("{e:#}");
            if json {
                let mut error = serde_json::json!({ "kind": kind, "message": message });
                if let Some(fields) = request_fields(&e) {
                    error["fields"] = serde_json::json!(fields);
                }
                println!("{}", serde_json::json!({ "error": error }));
            } else {
                eprintln!("keymgr: {message}");
            }
            code
        }
    }
}

/// The keymgr error kind behind `e`, also when alloy carried it.
fn error_kind(e: &anyhow::Error) -> &'static str {
    for cause in e.chain() {
        if let Some(k) = cause.downcast_ref::<keymgr::Error>() {
            return k.kind().as_str();
        }
        if cause.is::<keymgr_evm::RequestError>() {
            return "invalid_input";
        }
        if let Some(e) = cause.downcast_ref::<keymgr_envelope::EnvelopeError>() {
            return e.kind().as_str();
        }
        if let Some(a) = cause.downcast_ref::<alloy_signer::Error>() {
            if keymgr_evm::request_error(a).is_some() {
                return "invalid_input";
            }
            if let Some(k) = keymgr_evm::keymgr_error(a) {
                return k.kind().as_str();
            }
            return "invalid_input";
        }
    }
    "error"
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
