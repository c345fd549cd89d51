//! Settings for [`GcpKmsBackend`](crate::GcpKmsBackend), from environment variables or code.

use std::collections::BTreeMap;

use keymgr_core::config::{ProcessEnv, VarSource, Vars};
use keymgr_core::{Error, Result};

/// The Google Cloud project of the key ring.
pub const GCP_PROJECT_ID: &str = "GCP_PROJECT_ID";
/// The key ring's location (`global`, `us-east1`, `europe-west1`, ...).
pub const GCP_LOCATION_ID: &str = "GCP_LOCATION_ID";
/// The key ring holding the keys named by a short id.
pub const GCP_KEY_RING_ID: &str = "GCP_KEY_RING_ID";
/// The EVM (secp256k1) key: a crypto key id or a full resource name.
pub const GCP_KMS_EVM_KEY_ID: &str = "GCP_KMS_EVM_KEY_ID";
/// The XRP key (secp256k1 or Ed25519): a crypto key id or a full resource name.
pub const GCP_KMS_XRP_KEY_ID: &str = "GCP_KMS_XRP_KEY_ID";
/// Endpoint override: a private endpoint (Private Service Connect) or a local stand-in.
pub const GCP_KMS_ENDPOINT: &str = "GCP_KMS_ENDPOINT";
/// Logical name under which `GCP_KMS_EVM_KEY_ID` is served.
pub const DEFAULT_EVM_KEY: &str = "evm";
/// Logical name under which `GCP_KMS_XRP_KEY_ID` is served.
pub const DEFAULT_XRP_KEY: &str = "xrp";

const EXPECTED_KEY_ID: &str = "a crypto key id (1-63 characters of A-Z a-z 0-9 _ -, with \
     GCP_PROJECT_ID, GCP_LOCATION_ID and GCP_KEY_RING_ID set) or a resource name \
     projects/P/locations/L/keyRings/R/cryptoKeys/K[/cryptoKeyVersions/N]";

/// Where the backend connects and which crypto keys serve which logical names.
///
/// Credentials always come from Google's standard chain (`GOOGLE_APPLICATION_CREDENTIALS`,
/// the gcloud user credentials, workload identity, the metadata server), so no secret
/// ever lives in this type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcpKmsConfig {
    /// Endpoint override; `None` uses `https://cloudkms.googleapis.com`. HTTPS endpoints
    /// with a private CA are trusted through `SSL_CERT_FILE` (rustls-native-certs).
    pub endpoint: Option<String>,
    /// Logical key name → full crypto key resource name
    /// (`projects/P/locations/L/keyRings/R/cryptoKeys/K`), or a crypto key version
    /// resource name (`…/cryptoKeyVersions/N`) to pin one version.
    pub keys: BTreeMap<String, String>,
}

impl GcpKmsConfig {
    /// Reads the `GCP_*` variables (see the constants) from the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_source(&ProcessEnv)
    }

    /// Like [`from_env`](Self::from_env) with a custom variable lookup (config files,
    /// tests). At least one key variable must be set; every malformed value is an error
    /// naming its variable.
    pub fn from_vars(var: impl Fn(&str) -> Option<String> + Sync) -> Result<Self> {
        Self::from_source(&var)
    }

    /// Like `from_vars`, from any [`VarSource`] (the process environment, a map,
    /// the environment layered over a configuration file, a collecting
    /// [`Vars`] of `keymgr config check`). A value that is not UTF-8 is an error
    /// naming its variable.
    pub fn from_source(source: &dyn VarSource) -> Result<Self> {
        let vars = Vars::new(source);
        let get = |name: &str| vars.get(name);
        let mut config = GcpKmsConfig {
            endpoint: vars.checked(
                GCP_KMS_ENDPOINT,
                "an http:// or https:// URL such as https://cloudkms.googleapis.com",
                |url| validate_endpoint(url).map(|()| url.to_owned()),
            )?,
            keys: BTreeMap::new(),
        };
        let project = get(GCP_PROJECT_ID)?;
        let location = get(GCP_LOCATION_ID)?;
        let ring = get(GCP_KEY_RING_ID)?;
        if let Some(p) = &project {
            validate_project(p)
                .map_err(|r| Error::config(GCP_PROJECT_ID, "a project id such as my-project", r))?;
        }
        if let Some(l) = &location {
            validate_id(l, "location")
                .map_err(|r| Error::config(GCP_LOCATION_ID, "a location such as us-east1", r))?;
        }
        if let Some(r) = &ring {
            validate_id(r, "key ring id").map_err(|reason| {
                Error::config(
                    GCP_KEY_RING_ID,
                    "1-63 characters of A-Z a-z 0-9 _ -",
                    reason,
                )
            })?;
        }
        for (variable, name) in [
            (GCP_KMS_EVM_KEY_ID, DEFAULT_EVM_KEY),
            (GCP_KMS_XRP_KEY_ID, DEFAULT_XRP_KEY),
        ] {
            let Some(id) = get(variable)? else { continue };
            let full = if id.starts_with("projects/") {
                validate_resource_name(&id)
                    .map_err(|reason| Error::config(variable, EXPECTED_KEY_ID, reason))?;
                id
            } else {
                validate_id(&id, "crypto key id")
                    .map_err(|reason| Error::config(variable, EXPECTED_KEY_ID, reason))?;
                let missing: Vec<&str> = [
                    (GCP_PROJECT_ID, &project),
                    (GCP_LOCATION_ID, &location),
                    (GCP_KEY_RING_ID, &ring),
                ]
                .iter()
                .filter(|(_, v)| v.is_none())
                .map(|(n, _)| *n)
                .collect();
                if let (Some(p), Some(l), Some(r)) = (&project, &location, &ring) {
                    format!("projects/{p}/locations/{l}/keyRings/{r}/cryptoKeys/{id}")
                } else {
                    return Err(Error::config(
                        variable,
                        EXPECTED_KEY_ID,
                        format!(
                            "{id:?} is a short crypto key id, but {} not set",
                            missing.join(", ") + if missing.len() == 1 { " is" } else { " are" }
                        ),
                    ));
                }
            };
            config.keys.insert(name.to_owned(), full);
        }
        if config.keys.is_empty() {
            return Err(keymgr_core::config::no_keys(
                &[
                    (GCP_KMS_EVM_KEY_ID, DEFAULT_EVM_KEY),
                    (GCP_KMS_XRP_KEY_ID, DEFAULT_XRP_KEY),
                ],
                EXPECTED_KEY_ID,
                "gcp-kms",
            ));
        }
        Ok(config)
    }

    /// Serves the crypto key (or pinned version) `resource_name` as `name`.
    pub fn with_key(mut self, name: impl Into<String>, resource_name: impl Into<String>) -> Self {
        self.keys.insert(name.into(), resource_name.into());
        self
    }

    /// Sets the endpoint override.
    pub fn with_endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// Checks every setting (the constructors from the environment already do).
    pub fn validate(&self) -> Result<()> {
        if let Some(url) = &self.endpoint {
            validate_endpoint(url)
                .map_err(|reason| Error::config("endpoint", "an http(s):// URL", reason))?;
        }
        for (name, id) in &self.keys {
            validate_resource_name(id)
                .map_err(|reason| Error::config(format!("key {name}"), EXPECTED_KEY_ID, reason))?;
        }
        Ok(())
    }
}

/// A crypto key (`version == None`) or crypto key version resource name, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResourceName {
    /// `projects/P/locations/L/keyRings/R/cryptoKeys/K`.
    pub(crate) crypto_key: String,
    /// The version id `N` of `…/cryptoKeyVersions/N`.
    pub(crate) version: Option<String>,
}

impl ResourceName {
    pub(crate) fn parse(name: &str) -> std::result::Result<Self, String> {
        let parts: Vec<&str> = name.split('/').collect();
        let shape_ok = matches!(parts.len(), 8 | 10)
            && parts[0] == "projects"
            && parts[2] == "locations"
            && parts[4] == "keyRings"
            && parts[6] == "cryptoKeys"
            && (parts.len() == 8 || parts[8] == "cryptoKeyVersions");
        if !shape_ok {
            return Err(format!(
                "{name:?} is not projects/P/locations/L/keyRings/R/cryptoKeys/K[/cryptoKeyVersions/N]"
            ));
        }
        validate_project(parts[1])?;
        validate_id(parts[3], "location")?;
        validate_id(parts[5], "key ring id")?;
        validate_id(parts[7], "crypto key id")?;
        let version = match parts.get(9) {
            Some(v) => {
                validate_version_id(v)?;
                Some((*v).to_owned())
            }
            None => None,
        };
        Ok(Self {
            crypto_key: parts[..8].join("/"),
            version,
        })
    }

    pub(crate) fn version_name(crypto_key: &str, version: &str) -> String {
        format!("{crypto_key}/cryptoKeyVersions/{version}")
    }
}

fn validate_resource_name(name: &str) -> std::result::Result<(), String> {
    ResourceName::parse(name).map(|_| ())
}

/// A crypto key version id: a positive decimal number.
pub(crate) fn validate_version_id(v: &str) -> std::result::Result<(), String> {
    let ok = !v.is_empty()
        && v.len() <= 20
        && v.chars().all(|c| c.is_ascii_digit())
        && !v.starts_with('0');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{v:?} is not a crypto key version id (a positive number such as 1)"
        ))
    }
}

/// Key ring and crypto key ids: `[a-zA-Z0-9_-]{1,63}` (Cloud KMS resource naming).
fn validate_id(id: &str, what: &str) -> std::result::Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 63
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{id:?} is not a {what} (1-63 characters of A-Z a-z 0-9 _ -)"
        ))
    }
}

/// Project ids: 6-30 characters of lowercase letters, digits and hyphens (domain-scoped
/// ids `example.com:p` included).
fn validate_project(p: &str) -> std::result::Result<(), String> {
    let id = p.rsplit_once(':').map_or(p, |(_, id)| id);
    let ok = (6..=30).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && id.starts_with(|c: char| c.is_ascii_lowercase());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{p:?} is not a project id (6-30 characters: lowercase letters, digits, hyphens)"
        ))
    }
}

fn validate_endpoint(url: &str) -> std::result::Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("{url:?} does not start with http:// or https://"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("{url:?} has no host"));
    }
    if rest.chars().any(char::is_whitespace) {
        return Err(format!("{url:?} contains whitespace"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    const RING: [(&str, &str); 3] = [
        (GCP_PROJECT_ID, "my-project"),
        (GCP_LOCATION_ID, "us-east1"),
        (GCP_KEY_RING_ID, "signing"),
    ];

    #[test]
    fn short_ids_and_resource_names() {
        let mut v = RING.to_vec();
        v.push((GCP_KMS_EVM_KEY_ID, "evm-key"));
        v.push((
            GCP_KMS_XRP_KEY_ID,
            " projects/other-proj/locations/global/keyRings/r/cryptoKeys/xrp/cryptoKeyVersions/3 ",
        ));
        v.push((GCP_KMS_ENDPOINT, "http://127.0.0.1:8080"));
        let c = GcpKmsConfig::from_vars(vars(&v)).unwrap();
        assert_eq!(
            c.keys["evm"],
            "projects/my-project/locations/us-east1/keyRings/signing/cryptoKeys/evm-key"
        );
        assert_eq!(
            c.keys["xrp"],
            "projects/other-proj/locations/global/keyRings/r/cryptoKeys/xrp/cryptoKeyVersions/3"
        );
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:8080"));
        assert!(c.validate().is_ok());
        let r = ResourceName::parse(&c.keys["xrp"]).unwrap();
        assert_eq!(r.version.as_deref(), Some("3"));
        assert!(r.crypto_key.ends_with("/cryptoKeys/xrp"));
    }

    #[test]
    fn errors_name_the_variable() {
        let e = GcpKmsConfig::from_vars(vars(&[(GCP_KMS_EVM_KEY_ID, "evm")])).unwrap_err();
        let keymgr_core::Error::Config {
            variable, reason, ..
        } = &e
        else {
            panic!("{e}")
        };
        assert_eq!(variable, GCP_KMS_EVM_KEY_ID);
        assert!(reason.contains(GCP_PROJECT_ID) && reason.contains(GCP_KEY_RING_ID));
        let bad = [
            (GCP_KMS_EVM_KEY_ID, "has space"),
            (GCP_KMS_EVM_KEY_ID, "projects/p/locations/l/keyRings/r"),
            (
                GCP_KMS_EVM_KEY_ID,
                "projects/my-project/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/0",
            ),
            (GCP_KMS_ENDPOINT, "localhost:8080"),
            (GCP_PROJECT_ID, "UPPER"),
        ];
        for (variable, value) in bad {
            let mut v = RING.to_vec();
            if variable != GCP_KMS_EVM_KEY_ID {
                v.push((GCP_KMS_EVM_KEY_ID, "k"));
            }
            v.retain(|(k, _)| *k != variable);
            v.push((variable, value));
            let e = GcpKmsConfig::from_vars(vars(&v)).unwrap_err();
            match e {
                keymgr_core::Error::Config { variable: got, .. } => {
                    assert_eq!(got, variable, "{value}")
                }
                other => panic!("{value}: {other}"),
            }
        }
        let e = GcpKmsConfig::from_vars(vars(&RING)).unwrap_err();
        assert!(e.to_string().contains(GCP_KMS_XRP_KEY_ID), "{e}");
    }
}
