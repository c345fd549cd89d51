//! `keymgr config check`: load everything, list every problem, try every key.

use std::sync::Arc;

use keymgr_core::config::{Origin, Problems, VarSource, Vars};
use keymgr_core::{Error, KeyAlgorithm, KeyBackend, KeyRef, PublicKey, SignPayload, Signature};

use super::file::Sources;
use super::guard::key_variables;
use super::names::{VARIABLES, Variable, member_variables};
use super::unset_keys;
use super::{Settings, backend_from_vars};
use crate::members::{KEY_BACKENDS, KEYMGR_MEMBER_RETRY_MAX, MemberSpec, parse_members};

/// The fixed message every canary signs (Ed25519), or whose SHA-256 it signs
/// (secp256k1).
pub const CANARY_MESSAGE: &[u8] = b"keymgr config check canary";

/// One setting of the effective configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The variable's name (a numbered failover member's own, e.g. `HSM_2_PIN`).
    pub name: String,
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
    /// The failover member (`hsm`, `hsm:2`, ...) when `KEY_BACKENDS` is set, else `None`.
    pub member: Option<String>,
    /// The variable that configures it (as the member spells it: `HSM_2_EVM_KEY_LABEL`).
    pub variable: String,
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
    let members = match vars.get(KEY_BACKENDS).map(|v| parse_members(v.as_deref())) {
        Ok(Ok(members)) => members,
        Ok(Err(e)) | Err(e) => {
            problems.record_new(e);
            None
        }
    };
    let mut settings = effective(vars);
    for spec in members.iter().flatten().filter(|m| m.index > 1) {
        settings.extend(effective_member(vars, spec.index));
    }
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
    if let Some(specs) = &members {
        if vars.get(super::KEY_BACKEND).ok().flatten().is_some() {
            problems.record_new(Error::config(
                super::KEY_BACKEND,
                format!("either KEY_BACKEND (one provider) or {KEY_BACKENDS} (failover members), not both"),
                "both are set",
            ));
        }
        let text = |name: &str| vars.get(name).ok().flatten();
        record(crate::members::canary_from_vars(&text).map(drop));
        record(
            vars.bounded(KEYMGR_MEMBER_RETRY_MAX, 0..=u32::MAX, "retries per member")
                .map(drop),
        );
        for spec in specs {
            keys.extend(check_member(spec, &sources.layered, &problems).await);
        }
        compare_members(&keys, &problems);
    } else if let Some(kind) = kind.filter(|_| vars.os(KEY_BACKENDS).is_none()) {
        // (A KEY_BACKENDS that does not parse is listed above; the single provider it
        // replaces is not what would run, so it is not started.)
        match backend_from_vars(kind, &vars).await {
            Ok(backend) => {
                for (variable, name) in key_variables(kind) {
                    if vars.os(variable).is_some() {
                        keys.push(canary(&backend, KeyRef::new(name), variable.into()).await);
                    }
                }
                if let Some(a) = &audit {
                    if let Some(k) = &a.checkpoint_key {
                        let variable = keymgr_audit::config::KEYMGR_AUDIT_CHECKPOINT_KEY;
                        keys.push(canary(&backend, k.clone(), variable.into()).await);
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
            let value = read(vars, name, *v);
            Setting {
                name: name.to_owned(),
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

/// Numbered member `n`'s own variables (`HSM_2_PIN`, ...), as [`effective`] lists the
/// registry's.
fn effective_member(vars: Vars<'_>, n: u32) -> Vec<Setting> {
    member_variables(n)
        .map(|(name, v)| {
            let value = read(vars, &name, v);
            Setting {
                origin: if value.is_some() {
                    vars.origin(&name)
                } else {
                    Origin::Default
                },
                value,
                secret: matches!(v, Variable::Secret(_)),
                name,
            }
        })
        .collect()
}

/// One failover member: its variables (every problem, named as the member spells it),
/// its provider started, and the canary on each key it configures. The audit log and
/// the checkpoint key are the manager's, checked once above.
async fn check_member(
    spec: &MemberSpec,
    source: &dyn VarSource,
    problems: &Problems,
) -> Vec<KeyCheck> {
    let member_source = spec.source(source);
    let own = Problems::new();
    let vars = Vars::collecting(&member_source, &own);
    let started = super::provider_from_vars(spec.kind, &vars).await;
    for e in own.take() {
        problems.record_new(spec.rename_variable(e));
    }
    let backend = match started {
        Ok(backend) => backend,
        Err(e) => {
            problems.record_new(spec.rename_variable(e));
            return Vec::new();
        }
    };
    let rename = |v: &str| spec.variable(v);
    let backend = super::guard(unset_keys(spec.kind, &member_source, &rename), backend);
    let mut keys = Vec::new();
    for (variable, name) in key_variables(spec.kind) {
        if vars.os(variable).is_some() {
            let mut check = canary(&backend, KeyRef::new(name), spec.variable(variable)).await;
            check.member = Some(spec.name());
            keys.push(check);
        }
    }
    keys
}

/// Members that hold a key must hold the same one: failover would otherwise sign with
/// another key. A mismatch is a problem naming `KEY_BACKENDS`.
fn compare_members(keys: &[KeyCheck], problems: &Problems) {
    for (i, a) in keys.iter().enumerate() {
        let Some(pa) = &a.public_key else { continue };
        let other = keys[..i]
            .iter()
            .find(|b| b.key == a.key && b.public_key.as_ref().is_some_and(|pb| pb != pa));
        if let Some(b) = other {
            problems.record_new(Error::config(
                KEY_BACKENDS,
                "members that hold the same key material",
                format!(
                    "member {} holds a different public key for {} than member {} (set by {} and {}); failover would sign with another key",
                    a.member.as_deref().unwrap_or("?"),
                    a.key,
                    b.member.as_deref().unwrap_or("?"),
                    a.variable,
                    b.variable,
                ),
            ));
        }
    }
}

/// `name`'s value as printed: secrets redacted, non-UTF-8 paths lossy.
fn read(vars: Vars<'_>, name: &str, v: Variable) -> Option<String> {
    match v {
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
    }
}

async fn canary(backend: &Arc<dyn KeyBackend>, key: KeyRef, variable: String) -> KeyCheck {
    let mut check = KeyCheck {
        key: key.to_string(),
        member: None,
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
