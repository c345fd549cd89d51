//! Every setting keymgr reads, by name: what `config check` prints and what a
//! configuration file may contain.

/// What kind of value a setting holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variable {
    /// Plain text, numbers, flags, key names: printed as is.
    Plain(&'static str),
    /// A secret (private key, seed, PIN, client secret, HMAC key): printed redacted;
    /// a configuration file that sets it inline gets a warning.
    Secret(&'static str),
    /// A file or directory path (may be non-UTF-8).
    Path(&'static str),
}

impl Variable {
    /// The variable's name.
    pub fn name(self) -> &'static str {
        match self {
            Variable::Plain(n) | Variable::Secret(n) | Variable::Path(n) => n,
        }
    }
}

use Variable::{Path, Plain, Secret};

/// Every variable keymgr reads (the same names in the environment, an `--env-file` and
/// a configuration file), grouped as in `.env.example`.
pub const VARIABLES: &[Variable] = &[
    Plain("KEY_BACKEND"),
    // several providers: failover members and health
    Plain("KEY_BACKENDS"),
    Plain("KEYMGR_MEMBER_RETRY_MAX"),
    Plain("KEYMGR_HEALTH_KEYS"),
    Plain("KEYMGR_HEALTH_SYMMETRIC_KEYS"),
    Plain("KEYMGR_HEALTH_CACHE_SECS"),
    Plain("KEYMGR_HEALTH_DEADLINE_MS"),
    // env backend
    Secret("EVM_PRIVATE_KEY"),
    Secret("XRP_SEED"),
    Plain("XRP_KEY_TYPE"),
    // AWS KMS
    Plain("AWS_REGION"),
    Plain("AWS_KMS_EVM_KEY_ID"),
    Plain("AWS_KMS_XRP_KEY_ID"),
    Plain("AWS_ENDPOINT_URL"),
    // Google Cloud KMS
    Plain("GCP_PROJECT_ID"),
    Plain("GCP_LOCATION_ID"),
    Plain("GCP_KEY_RING_ID"),
    Plain("GCP_KMS_EVM_KEY_ID"),
    Plain("GCP_KMS_XRP_KEY_ID"),
    Plain("GCP_KMS_ENDPOINT"),
    // Azure Key Vault
    Plain("AZURE_VAULT_URL"),
    Plain("AZURE_EVM_KEY_NAME"),
    Plain("AZURE_XRP_KEY_NAME"),
    Plain("AZURE_TENANT_ID"),
    Plain("AZURE_CLIENT_ID"),
    Secret("AZURE_CLIENT_SECRET"),
    Path("AZURE_FEDERATED_TOKEN_FILE"),
    Plain("AZURE_CREDENTIAL_KIND"),
    Plain("AZURE_AUTHORITY_HOST"),
    Plain("AZURE_KEYVAULT_VERIFY_CHALLENGE_RESOURCE"),
    Path("SSL_CERT_FILE"),
    // PKCS#11
    Path("HSM_PKCS11_LIBRARY_PATH"),
    Plain("HSM_TOKEN_LABEL"),
    Plain("HSM_SLOT_ID"),
    Secret("HSM_PIN"),
    Plain("HSM_EVM_KEY_LABEL"),
    Plain("HSM_XRP_KEY_LABEL"),
    Plain("HSM_POOL_SIZE"),
    Plain("HSM_KEEP_VERSIONS"),
    // layers
    Plain("KEYMGR_RETRY_MAX"),
    Plain("KEYMGR_RETRY_BASE_MS"),
    Plain("KEYMGR_TIMEOUT_MS"),
    Plain("KEYMGR_PUBLIC_KEY_CACHE_SECS"),
    Plain("KEYMGR_RATE_LIMIT_PER_MINUTE"),
    Plain("KEYMGR_BREAKER_FAILURES"),
    Plain("KEYMGR_BREAKER_OPEN_SECS"),
    Plain("KEYMGR_ACTOR"),
    // audit log
    Path("KEYMGR_AUDIT_PATH"),
    Plain("KEYMGR_AUDIT_DURABILITY"),
    Plain("KEYMGR_AUDIT_ON_FAILURE"),
    Plain("KEYMGR_AUDIT_RETENTION_DAYS"),
    Plain("KEYMGR_AUDIT_SEGMENT_MAX_BYTES"),
    Plain("KEYMGR_AUDIT_SEGMENT_DAILY"),
    Secret("KEYMGR_AUDIT_HMAC_KEY"),
    Plain("KEYMGR_AUDIT_HMAC_KEY_WRAPPED"),
    Plain("KEYMGR_AUDIT_HMAC_KEK"),
    Plain("KEYMGR_AUDIT_CHECKPOINT_KEY"),
    Path("KEYMGR_AUDIT_CHECKPOINT_FILE"),
    Plain("KEYMGR_AUDIT_CHECKPOINT_SECS"),
    Plain("KEYMGR_AUDIT_LOCK_WAIT_SECS"),
    Plain("KEYMGR_NODE_ID"),
    // rotation
    Plain("KEYMGR_ROTATION_ENABLED"),
    Plain("KEYMGR_ROTATION_INTERVAL_DAYS"),
    Plain("KEYMGR_ROTATION_OVERLAP_DAYS"),
    Plain("KEYMGR_ROTATION_NOTICE_DAYS"),
    Plain("KEYMGR_PROFILE"),
    Plain("KEYMGR_ROTATION_APPROVAL"),
    Plain("KEYMGR_ROTATION_APPROVAL_TTL_HOURS"),
    Path("KEYMGR_ROTATION_STATE_PATH"),
];

/// The variable named `name`, if keymgr reads it.
pub fn variable(name: &str) -> Option<Variable> {
    VARIABLES.iter().copied().find(|v| v.name() == name)
}

/// Whether `name` holds a secret: a listed secret, or a name that says it is one
/// (`*_SECRET*`, `*_PIN`, `*PRIVATE_KEY*`, `*_SEED`, `*_TOKEN`, `*HMAC_KEY`,
/// `*PASSWORD*`), so credentials of other tools in a file are caught too.
pub fn is_secret(name: &str) -> bool {
    if let Some(v) = variable(name) {
        return matches!(v, Variable::Secret(_));
    }
    let n = name.to_ascii_uppercase();
    ["SECRET", "PRIVATE_KEY", "PASSWORD", "PASSPHRASE"]
        .iter()
        .any(|s| n.contains(s))
        || ["_PIN", "_SEED", "_TOKEN", "HMAC_KEY", "ACCESS_KEY_ID"]
            .iter()
            .any(|s| n.ends_with(s))
}

/// Refuses a value that is not valid UTF-8 in any variable keymgr reads (paths excepted:
/// they are read as `OsString`), naming the first such variable, so no setting of an
/// unselected backend or an unused layer silently reads as unset.
pub fn check_text(source: &dyn keymgr_core::config::VarSource) -> keymgr_core::Result<()> {
    let vars = keymgr_core::config::Vars::new(source);
    for v in VARIABLES {
        if let Variable::Plain(name) | Variable::Secret(name) = v {
            vars.secret(name)?;
        }
    }
    Ok(())
}
