//! `keymgr config check`: load everything, list every problem, try every key.

use std::sync::Arc;

use keymgr_core::config::{Origin, Problems, Vars};
use keymgr_core::{Error, KeyAlgorithm, KeyBackend, KeyRef, PublicKey, SignPayload, Signature};

use super::file::Sources;
use super::guard::key_variables;
use super::names::{VARIABLES, Variable};
use super::{Settings, backend_from_vars};

/// The fixed message every canary signs (Ed25519), or whose SHA-256 it signs
/// (secp256k1).
pub const CANARY_MESSAGE: &[u8] = b"keymgr config check canary";

/// One setting of the effective configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The variable's name.
    pub name: &'static str,
    /// The value as used (`[REDACTED]` for secrets, lossy for non-UTF-8 paths); `None`
    /// when unset (the default applies).
    pub value: Option<String>,
    /// Where it came from.
    pub origin: Origin,
    /// Whether the value is a secret (and so redacted).
    pub secret: bool,
}

/// The outcome of one key's canary: public key read, fixed digest signed, signature
/// verified against that public key.
#[derive(Debug)]
pub struct KeyCheck {
    /// The key (`NAME` or `NAME@VERSION`).
    pub key: String,
    /// The variable that configures it.
    pub variable: &'static str,
    /// The key's algorithm, when its public key could be read.
    pub algorithm: Option<KeyAlgorithm>,
    /// The public key `public_key` returned.
    pub public_key: Option<PublicKey>,
    /// The canary signature (over SHA-256 of [`CANARY_MESSAGE`] for secp256k1, over
    /// the message itself for Ed25519), for anyone who wants to verify it again.
    pub signature: Option<Signature>,
    /// `None` when the canary passed.
    pub error: Option<Error>,
}

/// Everything `config check` found.
#[derive(Debug)]
pub struct CheckReport {
    /// Every known setting, set or not.
    pub settings: Vec<Setting>,
    /// Every problem, each naming its variable.
    pub problems: Vec<Error>,
    /// The configured keys and their canaries (empty when the backend did not start).
    pub keys: Vec<KeyCheck>,
    /// Warnings that do not fail the check (secrets inline in the configuration file).
    pub warnings: Vec<String>,
}

impl CheckReport {
    /// Whether nothing is wrong: no problem and every canary passed.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty() && self.keys.iter().all(|k| k.error.is_none())
    }
}

/// Loads the whole configuration from `sources` collecting every problem (a malformed
/// value is listed and read as unset, so later settings are still checked), starts the
/// backend and runs a canary on every configured key: `public_key`, `sign` of
/// [`CANARY_MESSAGE`], and verification of that signature against the public key.
/// Nothing is written: the audit log is not opened, no key is created or changed.
pub async fn check(sources: &Sources) -> CheckReport {
    let problems = Problems::new();
    for p in &sources.problems {
        problems.record(copy(p));
    }
    let vars = Vars::collecting(&sources.layered, &problems);
    let settings = effective(vars);
    let record = |r: keymgr_core::Result<()>| {
        if let Err(e) = r {
            problems.record_new(e);
        }
    };
    let kind = match Settings::from_vars(&vars) {
        Ok(s) => Some(s.backend),
        Err(e) => {
            problems.record_new(e);
            None
        }
    };
    let audit = keymgr_audit::AuditConfig::from_source(&vars);
    let production = keymgr_audit::config::is_production(&vars).unwrap_or(false);
    let audit = match audit {
        Ok(a) => a,
        Err(e) => {
            problems.record_new(e);
            None
        }
    };
    match &audit {
        None if production => problems.record_new(Error::config(
            keymgr_audit::config::KEYMGR_AUDIT_PATH,
            "the audit log directory under KEYMGR_PROFILE=production",
            "not set: no audit file log would be kept",
        )),
        Some(a) if production && a.hmac_key.is_none() => problems.record_new(Error::config(
            keymgr_audit::config::KEYMGR_AUDIT_HMAC_KEY,
            "an HMAC key (or KEYMGR_AUDIT_HMAC_KEY_WRAPPED + KEYMGR_AUDIT_HMAC_KEK) under KEYMGR_PROFILE=production",
            "not set: an unkeyed chain can be recomputed by anyone with write access to the log",
        )),
        _ => {}
    }
    #[cfg(feature = "rotation")]
    record(keymgr_rotation::RotationPolicy::from_source(&vars).map(drop));
    let mut keys = Vec::new();
    if let Some(kind) = kind {
        match backend_from_vars(kind, &vars).await {
            Ok(backend) => {
                for (variable, name) in key_variables(kind) {
                    if vars.os(variable).is_some() {
                        keys.push(canary(&backend, KeyRef::new(name), variable).await);
                    }
                }
                if let Some(a) = &audit {
                    if let Some(k) = &a.checkpoint_key {
                        let variable = keymgr_audit::config::KEYMGR_AUDIT_CHECKPOINT_KEY;
                        keys.push(canary(&backend, k.clone(), variable).await);
                    }
                    if let Some(hmac) = &a.hmac_key {
                        record(hmac.resolve(Some(backend.as_ref())).await.map(drop));
                    }
                }
            }
            Err(e) => problems.record_new(e),
        }
    }
    let mut warnings = Vec::new();
    for name in &sources.inline_secrets {
        warnings.push(format!(
            "{name} is set inline in the configuration file {}: keep secrets in the environment or a secret store, never in a committed file",
            sources
                .config_file
                .as_deref()
                .map_or_else(String::new, |p| p.display().to_string())
        ));
    }
    CheckReport {
        settings,
        problems: problems.take(),
        keys,
        warnings,
    }
}

/// Every known setting with its value (secrets redacted) and origin. Reading a value
/// through the collecting `vars` also lists values that are not UTF-8.
fn effective(vars: Vars<'_>) -> Vec<Setting> {
    VARIABLES
        .iter()
        .map(|v| {
            let name = v.name();
            let value = match v {
                Variable::Path(_) => vars
                    .path(name)
                    .ok()
                    .flatten()
                    .map(|p| p.to_string_lossy().into_owned()),
                Variable::Secret(_) => vars
                    .secret(name)
                    .ok()
                    .flatten()
                    .map(|_| "[REDACTED]".to_owned()),
                Variable::Plain(_) => vars.get(name).ok().flatten(),
            };
            Setting {
                name,
                origin: if value.is_some() {
                    vars.origin(name)
                } else {
                    Origin::Default
                },
                value,
                secret: matches!(v, Variable::Secret(_)),
            }
        })
        .collect()
}

async fn canary(backend: &Arc<dyn KeyBackend>, key: KeyRef, variable: &'static str) -> KeyCheck {
    let mut check = KeyCheck {
        key: key.to_string(),
        variable,
        algorithm: None,
        public_key: None,
        signature: None,
        error: None,
    };
    let public_key = match backend.public_key(&key).await {
        Ok(pk) => pk,
        Err(e) => {
            check.error = Some(e);
            return check;
        }
    };
    check.algorithm = Some(public_key.algorithm());
    check.public_key = Some(public_key.clone());
    let payload = match public_key.algorithm() {
        KeyAlgorithm::Ed25519 => SignPayload::Message(CANARY_MESSAGE.to_vec()),
        _ => SignPayload::Prehash(sha256(CANARY_MESSAGE)),
    };
    let result = match backend.sign(&key, &payload).await {
        Ok(sig) if sig.public_key() != &public_key => Err(Error::integrity(
            check.key.as_str(),
            "the signing key is not the key public_key returned",
        )),
        Ok(sig) => {
            check.signature = Some(*sig.signature());
            public_key.verify(&payload, sig.signature())
        }
        Err(e) => Err(e),
    };
    check.error = result.err();
    check
}

fn sha256(data: &[u8]) -> [u8; 32] {
    use keymgr_core::deps::k256::sha2::{Digest, Sha256};
    Sha256::digest(data).into()
}

fn copy(e: &Error) -> Error {
    match e {
        Error::Config {
            variable,
            expected,
            reason,
            ..
        } => Error::config(variable.as_str(), expected.as_str(), reason.as_str()),
        other => Error::config("configuration", "", other.to_string()),
    }
}
