//! Settings for [`AzureKvBackend`](crate::AzureKvBackend), from environment variables or code.

use std::collections::BTreeMap;
use std::fmt;

use keymgr_core::config::{ProcessEnv, VarSource, Vars};
use keymgr_core::{Error, KeyRef, Result};
use zeroize::Zeroizing;

/// The vault, e.g. `https://my-vault.vault.azure.net`.
pub const AZURE_VAULT_URL: &str = "AZURE_VAULT_URL";
/// The EVM (secp256k1) key: `NAME` or `NAME/VERSION`.
pub const AZURE_EVM_KEY_NAME: &str = "AZURE_EVM_KEY_NAME";
/// The XRP key (secp256k1: Key Vault has no Ed25519): `NAME` or `NAME/VERSION`.
pub const AZURE_XRP_KEY_NAME: &str = "AZURE_XRP_KEY_NAME";
/// Directory (tenant) id of the service principal.
pub const AZURE_TENANT_ID: &str = "AZURE_TENANT_ID";
/// Application (client) id of the service principal or user-assigned managed identity.
pub const AZURE_CLIENT_ID: &str = "AZURE_CLIENT_ID";
/// Client secret of the service principal (selects the client-secret credential).
pub const AZURE_CLIENT_SECRET: &str = "AZURE_CLIENT_SECRET";
/// Token file of workload identity (set by AKS; selects the workload-identity credential).
pub const AZURE_FEDERATED_TOKEN_FILE: &str = "AZURE_FEDERATED_TOKEN_FILE";
/// Entra ID authority for sovereign clouds, e.g. `https://login.microsoftonline.us`.
pub const AZURE_AUTHORITY_HOST: &str = "AZURE_AUTHORITY_HOST";
/// Forces one credential: `client-secret`, `workload-identity`, `managed-identity` or
/// `azure-cli` (otherwise chosen from the variables that are set).
pub const AZURE_CREDENTIAL_KIND: &str = "AZURE_CREDENTIAL_KIND";
/// Extra CA certificates (PEM bundle) trusted for the vault and the authority, on top of
/// the platform's roots: private CAs, TLS-inspecting proxies, local stand-ins.
pub const SSL_CERT_FILE: &str = "SSL_CERT_FILE";
/// `false` turns off the SDK's check that the 401 challenge's resource matches the vault's
/// domain (default `true`); only for vaults reached under another name (custom DNS in
/// front of a private endpoint, a local stand-in).
pub const AZURE_KEYVAULT_VERIFY_CHALLENGE_RESOURCE: &str =
    "AZURE_KEYVAULT_VERIFY_CHALLENGE_RESOURCE";
/// Logical name under which `AZURE_EVM_KEY_NAME` is served.
pub const DEFAULT_EVM_KEY: &str = "evm";
/// Logical name under which `AZURE_XRP_KEY_NAME` is served.
pub const DEFAULT_XRP_KEY: &str = "xrp";

const EXPECTED_KEY: &str = "a Key Vault key name (1-127 characters: letters, digits, '-'), \
     optionally followed by /VERSION (32 hex characters)";
const EXPECTED_URL: &str = "an https:// URL such as https://my-vault.vault.azure.net";

/// A client secret: zeroized on drop, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSecret(Zeroizing<String>);

impl ClientSecret {
    /// Wraps `secret`.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(Zeroizing::new(secret.into()))
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret([REDACTED])")
    }
}

/// How the backend obtains Entra ID tokens (see `azure_identity`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credential {
    /// A service principal with a client secret.
    ClientSecret {
        /// Directory (tenant) id.
        tenant_id: String,
        /// Application (client) id.
        client_id: String,
        /// The secret (redacted in `Debug`).
        secret: ClientSecret,
    },
    /// AKS workload identity (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
    /// `AZURE_FEDERATED_TOKEN_FILE`, read by the SDK).
    WorkloadIdentity,
    /// Managed identity; `client_id` selects a user-assigned identity.
    ManagedIdentity {
        /// User-assigned identity's client id; `None` for the system-assigned one.
        client_id: Option<String>,
    },
    /// The signed-in Azure CLI / Azure Developer CLI (development machines).
    DeveloperTools,
}

/// A Key Vault key, optionally pinned to one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultKey {
    /// Key name in the vault.
    pub name: String,
    /// Version id; `None` follows the newest version.
    pub version: Option<String>,
}

impl VaultKey {
    /// Parses `NAME` or `NAME/VERSION`.
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        let (name, version) = match s.split_once('/') {
            Some((n, v)) => (n, Some(v)),
            None => (s, None),
        };
        validate_name(name)?;
        if let Some(v) = version {
            validate_version(v)?;
        }
        Ok(Self {
            name: name.to_owned(),
            version: version.map(str::to_owned),
        })
    }
}

pub(crate) fn validate_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() || name.len() > 127 {
        return Err(format!("{name:?} must be 1 to 127 characters long"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
    {
        return Err(format!(
            "{name:?} contains {c:?}; only letters, digits and '-' are allowed"
        ));
    }
    Ok(())
}

pub(crate) fn validate_version(v: &str) -> std::result::Result<(), String> {
    if v.len() != 32 || !v.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!("version {v:?} is not 32 hex characters"));
    }
    Ok(())
}

/// Where the backend connects, how it authenticates and which keys serve which names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureKvConfig {
    /// The vault URL (`https://NAME.vault.azure.net`).
    pub vault_url: String,
    /// Logical key name → Key Vault key. A name not listed here is used as the Key Vault
    /// key name itself.
    pub keys: BTreeMap<String, VaultKey>,
    /// The credential.
    pub credential: Credential,
    /// Entra ID authority host; `None` is the public cloud (`login.microsoftonline.com`).
    pub authority_host: Option<String>,
    /// Whether the 401 challenge's resource must match the vault's domain (the SDK's
    /// `verify_challenge_resource`, on by default). Only a local stand-in that is not
    /// under `*.vault.azure.net` needs it off.
    pub verify_challenge_resource: bool,
    /// PEM bundle of extra trusted CAs (`SSL_CERT_FILE`).
    pub ca_file: Option<std::path::PathBuf>,
}

impl AzureKvConfig {
    /// A configuration for `vault_url` with `credential` and no keys.
    pub fn new(vault_url: impl Into<String>, credential: Credential) -> Self {
        Self {
            vault_url: vault_url.into(),
            keys: BTreeMap::new(),
            credential,
            authority_host: None,
            verify_challenge_resource: true,
            ca_file: None,
        }
    }

    /// Reads the `AZURE_*` variables from the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_source(&ProcessEnv)
    }

    /// Like [`from_env`](Self::from_env) with a custom lookup (config files, tests).
    /// `AZURE_VAULT_URL` and at least one key variable are required; every malformed
    /// value is an error naming its variable.
    pub fn from_vars(var: impl Fn(&str) -> Option<String> + Sync) -> Result<Self> {
        Self::from_source(&var)
    }

    /// Like `from_vars`, from any [`VarSource`] (the process environment, a map,
    /// the environment layered over a configuration file, a collecting
    /// [`Vars`] of `keymgr config check`). A value that is not UTF-8 is an error
    /// naming its variable.
    pub fn from_source(source: &dyn VarSource) -> Result<Self> {
        let vars = Vars::new(source);
        let vault_url = vars.require(AZURE_VAULT_URL, EXPECTED_URL)?;
        let credential = credential_from(&vars)?;
        let mut config = AzureKvConfig::new(vault_url, credential);
        config.authority_host = vars.get(AZURE_AUTHORITY_HOST)?;
        config.ca_file = vars.path(SSL_CERT_FILE)?;
        if let Some(verify) = vars.flag(AZURE_KEYVAULT_VERIFY_CHALLENGE_RESOURCE)? {
            config.verify_challenge_resource = verify;
        }
        config.keys = vars.keys(
            &[
                (AZURE_EVM_KEY_NAME, DEFAULT_EVM_KEY),
                (AZURE_XRP_KEY_NAME, DEFAULT_XRP_KEY),
            ],
            EXPECTED_KEY,
            "azure-kv",
            VaultKey::parse,
        )?;
        config.validate()?;
        Ok(config)
    }

    /// Serves Key Vault key `key` (`NAME` or `NAME/VERSION`) as `name`.
    pub fn with_key(mut self, name: impl Into<String>, key: &str) -> Result<Self> {
        let key =
            VaultKey::parse(key).map_err(|reason| Error::config("key", EXPECTED_KEY, reason))?;
        self.keys.insert(name.into(), key);
        Ok(self)
    }

    /// Checks every setting (the constructors from the environment already do).
    pub fn validate(&self) -> Result<()> {
        check_https(&self.vault_url)
            .map_err(|r| Error::config(AZURE_VAULT_URL, EXPECTED_URL, r))?;
        if let Some(host) = &self.authority_host {
            check_https(host).map_err(|r| {
                Error::config(
                    AZURE_AUTHORITY_HOST,
                    "an https:// URL such as https://login.microsoftonline.us",
                    r,
                )
            })?;
        }
        Ok(())
    }

    /// The Key Vault key behind `key`: the configured mapping, or the name itself; an
    /// explicit version on `key` wins over a configured one.
    pub(crate) fn vault_key(&self, key: &KeyRef) -> Result<VaultKey> {
        let mut target = match self.keys.get(key.name()) {
            Some(k) => k.clone(),
            None => {
                VaultKey::parse(key.name()).map_err(|reason| Error::invalid_input("key", reason))?
            }
        };
        if let Some(v) = key.version() {
            validate_version(v).map_err(|reason| Error::invalid_input("key version", reason))?;
            target.version = Some(v.to_owned());
        }
        Ok(target)
    }
}

fn check_https(url: &str) -> std::result::Result<(), String> {
    let Some(rest) = url.strip_prefix("https://") else {
        return Err(format!(
            "{url:?} is not https:// (the Azure SDK never sends tokens over plain http)"
        ));
    };
    if rest.trim_end_matches('/').is_empty() || rest.contains(char::is_whitespace) {
        return Err(format!("{url:?} has no host"));
    }
    Ok(())
}

fn credential_from(vars: &Vars<'_>) -> Result<Credential> {
    const KINDS: &str = "client-secret, workload-identity, managed-identity or azure-cli";
    // The client secret is read once, without trimming, and never echoed in an error.
    let secret = vars.secret(AZURE_CLIENT_SECRET)?;
    let token_file = vars.path(AZURE_FEDERATED_TOKEN_FILE)?;
    let kind = match vars.get(AZURE_CREDENTIAL_KIND)? {
        Some(k) => k.to_ascii_lowercase(),
        None if secret.is_some() => "client-secret".into(),
        None if token_file.is_some() => "workload-identity".into(),
        None => "azure-cli".into(),
    };
    let missing = |name: &str, what: &str| {
        Error::config(
            name,
            what,
            format!("required by the {kind} credential but not set"),
        )
    };
    let required = |name: &str, what: &str| -> Result<String> {
        vars.get(name)?.ok_or_else(|| missing(name, what))
    };
    Ok(match kind.as_str() {
        "client-secret" => Credential::ClientSecret {
            tenant_id: required(AZURE_TENANT_ID, "the directory (tenant) id, a GUID")?,
            client_id: required(AZURE_CLIENT_ID, "the application (client) id, a GUID")?,
            secret: ClientSecret::new(
                secret.ok_or_else(|| missing(AZURE_CLIENT_SECRET, "the client secret"))?,
            ),
        },
        "workload-identity" => {
            required(AZURE_TENANT_ID, "the directory (tenant) id, a GUID")?;
            required(AZURE_CLIENT_ID, "the application (client) id, a GUID")?;
            if token_file.is_none() {
                return Err(missing(
                    AZURE_FEDERATED_TOKEN_FILE,
                    "the path of the federated token file",
                ));
            }
            Credential::WorkloadIdentity
        }
        "managed-identity" => Credential::ManagedIdentity {
            client_id: vars.get(AZURE_CLIENT_ID)?,
        },
        "azure-cli" => Credential::DeveloperTools,
        other => {
            return Err(Error::config(
                AZURE_CREDENTIAL_KIND,
                KINDS,
                format!("unknown credential kind {other:?}"),
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn variable_of(e: Error) -> String {
        match e {
            Error::Config { variable, .. } => variable,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    const BASE: [(&str, &str); 5] = [
        (AZURE_VAULT_URL, "https://v.vault.azure.net"),
        (AZURE_EVM_KEY_NAME, "evm-key"),
        (AZURE_TENANT_ID, "t"),
        (AZURE_CLIENT_ID, "c"),
        (AZURE_CLIENT_SECRET, "s3cr3t-value"),
    ];

    #[test]
    fn reads_keys_and_client_secret() {
        let mut v = BASE.to_vec();
        v.push((
            AZURE_XRP_KEY_NAME,
            "xrp-key/0123456789abcdef0123456789abcdef",
        ));
        let c = AzureKvConfig::from_vars(vars(&v)).unwrap();
        assert_eq!(c.keys["evm"].name, "evm-key");
        assert_eq!(
            c.keys["xrp"].version.as_deref(),
            Some("0123456789abcdef0123456789abcdef")
        );
        assert!(matches!(c.credential, Credential::ClientSecret { .. }));
        assert!(!format!("{c:?}").contains("s3cr3t-value"));
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            (AZURE_VAULT_URL, "http://v.vault.azure.net"),
            (AZURE_EVM_KEY_NAME, "bad_name"),
            (AZURE_EVM_KEY_NAME, "evm/notaversion"),
            (AZURE_AUTHORITY_HOST, "http://login"),
            (AZURE_CREDENTIAL_KIND, "password"),
            (AZURE_KEYVAULT_VERIFY_CHALLENGE_RESOURCE, "maybe"),
        ] {
            let mut v = BASE.to_vec();
            v.retain(|(k, _)| *k != var);
            v.push((var, value));
            let e = AzureKvConfig::from_vars(vars(&v)).unwrap_err();
            assert!(!e.to_string().contains("s3cr3t-value"));
            assert_eq!(variable_of(e), var, "{value}");
        }
        let v: Vec<_> = BASE
            .iter()
            .copied()
            .filter(|(k, _)| *k != AZURE_TENANT_ID)
            .collect();
        assert_eq!(
            variable_of(AzureKvConfig::from_vars(vars(&v)).unwrap_err()),
            AZURE_TENANT_ID
        );
    }

    #[test]
    fn credential_kind_is_inferred() {
        let v = [(AZURE_VAULT_URL, "https://v"), (AZURE_EVM_KEY_NAME, "k")];
        let c = AzureKvConfig::from_vars(vars(&v)).unwrap();
        assert_eq!(c.credential, Credential::DeveloperTools);
        let v = [
            (AZURE_VAULT_URL, "https://v"),
            (AZURE_EVM_KEY_NAME, "k"),
            (AZURE_CREDENTIAL_KIND, "managed-identity"),
            (AZURE_CLIENT_ID, "c"),
        ];
        let c = AzureKvConfig::from_vars(vars(&v)).unwrap();
        assert_eq!(
            c.credential,
            Credential::ManagedIdentity {
                client_id: Some("c".into())
            }
        );
    }
}
