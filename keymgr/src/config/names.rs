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
    Plain("KEYMGR_AUDIT_COMMIT_DELAY_US"),
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

/// The prefixes of the provider variables a numbered failover member reads under its
/// own name: member `hsm:2` reads `HSM_2_PIN` for `HSM_PIN` (see [`crate::members`]).
pub const MEMBER_PREFIXES: &[&str] = &["HSM_", "AWS_", "GCP_", "AZURE_", "EVM_", "XRP_"];

/// The variable named `name`, if keymgr reads it: a listed variable, or a numbered
/// failover member's copy of one (`HSM_2_PIN` is [`Variable::Secret`]`("HSM_PIN")`:
/// the registry entry it stands for).
pub fn variable(name: &str) -> Option<Variable> {
    listed(name).or_else(|| member_variable(name).map(|(v, _)| v))
}

fn listed(name: &str) -> Option<Variable> {
    VARIABLES.iter().copied().find(|v| v.name() == name)
}

/// For a numbered member's variable (`HSM_2_PIN`), the registry entry it stands for
/// (`HSM_PIN`) and the member number (2, at least 2); `None` for any other name.
pub fn member_variable(name: &str) -> Option<(Variable, u32)> {
    let (base, n) = member_parts(name)?;
    Some((listed(&base)?, n))
}

/// `HSM_2_PIN` → (`HSM_PIN`, 2): the name with the member number taken out, whether or
/// not that name is listed.
pub(crate) fn member_parts(name: &str) -> Option<(String, u32)> {
    let prefix = MEMBER_PREFIXES.iter().find(|p| name.starts_with(**p))?;
    let rest = &name[prefix.len()..];
    let (number, tail) = rest.split_once('_')?;
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) || number.starts_with('0') {
        return None;
    }
    let n: u32 = number.parse().ok().filter(|n| *n >= 2)?;
    Some((format!("{prefix}{tail}"), n))
}

/// The variables numbered member `n` (n ≥ 2) reads: every listed variable with a
/// [`MEMBER_PREFIXES`] prefix, numbered (`HSM_2_PIN`, ...), with its registry entry.
pub fn member_variables(n: u32) -> impl Iterator<Item = (String, Variable)> {
    VARIABLES.iter().copied().filter_map(move |v| {
        let prefix = MEMBER_PREFIXES.iter().find(|p| v.name().starts_with(**p))?;
        Some((format!("{prefix}{n}_{}", &v.name()[prefix.len()..]), v))
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_member_variables_stand_for_their_registry_entry() {
        assert_eq!(variable("HSM_2_PIN"), Some(Variable::Secret("HSM_PIN")));
        assert_eq!(
            variable("HSM_12_PKCS11_LIBRARY_PATH"),
            Some(Variable::Path("HSM_PKCS11_LIBRARY_PATH"))
        );
        assert_eq!(
            member_variable("AWS_3_KMS_EVM_KEY_ID"),
            Some((Variable::Plain("AWS_KMS_EVM_KEY_ID"), 3))
        );
        assert!(is_secret("EVM_2_PRIVATE_KEY"));
        // Not a member's copy: member 1 has no number, 0 and leading zeros are not
        // member numbers, unknown or unprefixed names stay unknown.
        for name in [
            "HSM_1_PIN",
            "HSM_0_PIN",
            "HSM_02_PIN",
            "HSM_2_PINN",
            "HSM__PIN",
            "KEYMGR_2_ACTOR",
            "HSM_2",
        ] {
            assert_eq!(variable(name), None, "{name}");
        }
        let second: Vec<String> = member_variables(2).map(|(n, _)| n).collect();
        assert!(second.contains(&"HSM_2_TOKEN_LABEL".to_owned()));
        assert!(second.contains(&"EVM_2_PRIVATE_KEY".to_owned()));
        assert!(!second.iter().any(|n| n.starts_with("KEYMGR_")));
        assert!(second.iter().all(|n| variable(n).is_some()), "{second:?}");
    }
}
