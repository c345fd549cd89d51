//! Settings for [`AwsKmsBackend`](crate::AwsKmsBackend), from environment variables or code.

use std::collections::BTreeMap;

use keymgr_core::config::{ProcessEnv, VarSource, Vars};
use keymgr_core::{Error, Result};

/// AWS region (the SDK's own region chain is used when unset).
pub const AWS_REGION: &str = "AWS_REGION";
/// Endpoint override: an emulator, a VPC endpoint or a FIPS endpoint.
pub const AWS_ENDPOINT_URL: &str = "AWS_ENDPOINT_URL";
/// The EVM (secp256k1) key: key id, key ARN, alias name or alias ARN.
pub const AWS_KMS_EVM_KEY_ID: &str = "AWS_KMS_EVM_KEY_ID";
/// The XRP key (secp256k1 or Ed25519): key id, key ARN, alias name or alias ARN.
pub const AWS_KMS_XRP_KEY_ID: &str = "AWS_KMS_XRP_KEY_ID";
/// Logical name under which `AWS_KMS_EVM_KEY_ID` is served.
pub const DEFAULT_EVM_KEY: &str = "evm";
/// Logical name under which `AWS_KMS_XRP_KEY_ID` is served.
pub const DEFAULT_XRP_KEY: &str = "xrp";

const EXPECTED_KEY_ID: &str = "a KMS key id (1234abcd-12ab-34cd-56ef-1234567890ab or mrk-...), \
     key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID), alias name (alias/NAME) or alias ARN \
     (arn:aws:kms:REGION:ACCOUNT:alias/NAME)";

/// Where the backend connects and which KMS keys serve which logical names.
///
/// Credentials always come from the AWS SDK's standard chain (environment, profile, SSO,
/// `credential_process`, web identity, container and instance metadata), so no secret
/// ever lives in this type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsKmsConfig {
    /// Region; `None` lets the SDK's region chain decide.
    pub region: Option<String>,
    /// Endpoint override; `None` uses the regional AWS endpoint.
    pub endpoint_url: Option<String>,
    /// Logical key name → KMS key identifier (id, ARN, alias name or alias ARN).
    ///
    /// A name that is not listed here is passed to KMS as the identifier itself, so
    /// `KeyRef::new("alias/payments")` works without configuration.
    pub keys: BTreeMap<String, String>,
}

impl AwsKmsConfig {
    /// Reads `AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_KMS_EVM_KEY_ID` (served as `evm`) and
    /// `AWS_KMS_XRP_KEY_ID` (served as `xrp`) from the process environment.
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
        let mut config = AwsKmsConfig {
            region: vars.checked(AWS_REGION, "a region such as us-east-1", |r| {
                validate_region(r).map(|()| r.to_owned())
            })?,
            endpoint_url: vars.checked(
                AWS_ENDPOINT_URL,
                "an http:// or https:// URL such as https://kms.us-east-1.amazonaws.com",
                |url| validate_endpoint(url).map(|()| url.to_owned()),
            )?,
            keys: BTreeMap::new(),
        };
        config.keys = vars.keys(
            &[
                (AWS_KMS_EVM_KEY_ID, DEFAULT_EVM_KEY),
                (AWS_KMS_XRP_KEY_ID, DEFAULT_XRP_KEY),
            ],
            EXPECTED_KEY_ID,
            "aws-kms",
            |id| validate_key_id(id).map(|()| id.to_owned()),
        )?;
        Ok(config)
    }

    /// Serves the KMS key `key_id` (id, ARN, alias name or alias ARN) as `name`.
    pub fn with_key(mut self, name: impl Into<String>, key_id: impl Into<String>) -> Self {
        self.keys.insert(name.into(), key_id.into());
        self
    }

    /// Sets the region.
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Sets the endpoint override.
    pub fn with_endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }

    /// Checks every setting (the constructors from the environment already do).
    pub fn validate(&self) -> Result<()> {
        if let Some(region) = &self.region {
            validate_region(region)
                .map_err(|reason| Error::config("region", "a region such as us-east-1", reason))?;
        }
        if let Some(url) = &self.endpoint_url {
            validate_endpoint(url)
                .map_err(|reason| Error::config("endpoint_url", "an http(s):// URL", reason))?;
        }
        for (name, id) in &self.keys {
            validate_key_id(id)
                .map_err(|reason| Error::config(format!("key {name}"), EXPECTED_KEY_ID, reason))?;
        }
        Ok(())
    }
}

fn validate_region(region: &str) -> std::result::Result<(), String> {
    let ok = region
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && region.contains('-');
    if ok {
        Ok(())
    } else {
        Err(format!("{region:?} is not a region name"))
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

/// Accepts the four identifier forms KMS accepts for `KeyId`.
pub(crate) fn validate_key_id(id: &str) -> std::result::Result<(), String> {
    if let Some(alias) = id.strip_prefix("alias/") {
        return validate_alias_name(alias, id);
    }
    if let Some(arn) = id.strip_prefix("arn:") {
        // arn:PARTITION:kms:REGION:ACCOUNT:key/ID | alias/NAME
        let parts: Vec<&str> = arn.splitn(5, ':').collect();
        let [partition, service, region, account, resource] = parts[..] else {
            return Err(format!("{id:?} is not a complete ARN"));
        };
        if !partition.starts_with("aws") || service != "kms" {
            return Err(format!("{id:?} is not a KMS ARN (arn:aws:kms:...)"));
        }
        if region.is_empty() || account.is_empty() {
            return Err(format!("{id:?} has no region or account"));
        }
        return match resource.split_once('/') {
            Some(("key", key)) => validate_bare_key_id(key, id),
            Some(("alias", alias)) => validate_alias_name(alias, id),
            _ => Err(format!(
                "{id:?} names neither a key (…:key/ID) nor an alias (…:alias/NAME)"
            )),
        };
    }
    validate_bare_key_id(id, id)
}

fn validate_alias_name(alias: &str, whole: &str) -> std::result::Result<(), String> {
    let ok = !alias.is_empty()
        && alias.len() <= 250
        && alias
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{whole:?}: an alias name is 1-250 characters of A-Z a-z 0-9 / _ -"
        ))
    }
}

fn validate_bare_key_id(key: &str, whole: &str) -> std::result::Result<(), String> {
    let body = key.strip_prefix("mrk-").unwrap_or(key);
    let is_uuid = body.len() == 36
        && body.chars().enumerate().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        });
    let is_mrk =
        key.starts_with("mrk-") && body.len() == 32 && body.chars().all(|c| c.is_ascii_hexdigit());
    if is_uuid || is_mrk {
        Ok(())
    } else {
        Err(format!(
            "{whole:?} is neither a key id (a UUID), an mrk- id, an ARN nor alias/NAME"
        ))
    }
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

    #[test]
    fn reads_all_identifier_forms() {
        for id in [
            "1234abcd-12ab-34cd-56ef-1234567890ab",
            "mrk-1234abcd12ab34cd56ef1234567890ab",
            "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab",
            "alias/evm-settlement",
            "arn:aws:kms:us-east-1:111122223333:alias/evm/settlement",
        ] {
            let c = AwsKmsConfig::from_vars(vars(&[
                (AWS_KMS_EVM_KEY_ID, id),
                (AWS_REGION, "eu-west-1"),
            ]))
            .unwrap_or_else(|e| panic!("{id}: {e}"));
            assert_eq!(c.keys.get(DEFAULT_EVM_KEY).map(String::as_str), Some(id));
            assert_eq!(c.region.as_deref(), Some("eu-west-1"));
        }
    }

    #[test]
    fn errors_name_the_variable() {
        let e = AwsKmsConfig::from_vars(vars(&[(AWS_KMS_XRP_KEY_ID, "my key")])).unwrap_err();
        assert!(e.to_string().contains(AWS_KMS_XRP_KEY_ID), "{e}");
        let e = AwsKmsConfig::from_vars(vars(&[
            (AWS_KMS_EVM_KEY_ID, "alias/x"),
            (AWS_ENDPOINT_URL, "localhost:4566"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains(AWS_ENDPOINT_URL), "{e}");
        let e = AwsKmsConfig::from_vars(vars(&[
            (AWS_KMS_EVM_KEY_ID, "alias/x"),
            (AWS_REGION, "US East"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains(AWS_REGION), "{e}");
        let e = AwsKmsConfig::from_vars(vars(&[])).unwrap_err();
        assert!(
            e.to_string().contains(AWS_KMS_EVM_KEY_ID)
                && e.to_string().contains(AWS_KMS_XRP_KEY_ID),
            "{e}"
        );
        for bad in [
            "arn:aws:s3:us-east-1:1:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:kms:us-east-1:1:user/x",
            "alias/",
            "1234",
        ] {
            assert!(
                AwsKmsConfig::from_vars(vars(&[(AWS_KMS_EVM_KEY_ID, bad)])).is_err(),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn both_keys_and_endpoint() {
        let c = AwsKmsConfig::from_vars(vars(&[
            (AWS_KMS_EVM_KEY_ID, "alias/evm"),
            (AWS_KMS_XRP_KEY_ID, " alias/xrp "),
            (AWS_ENDPOINT_URL, "http://127.0.0.1:4566"),
        ]))
        .unwrap();
        assert_eq!(c.keys.len(), 2);
        assert_eq!(c.keys["xrp"], "alias/xrp");
        assert_eq!(c.endpoint_url.as_deref(), Some("http://127.0.0.1:4566"));
        assert!(c.validate().is_ok());
    }
}
