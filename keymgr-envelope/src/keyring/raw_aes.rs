//! The raw AES keyring wrapping, with a local 256-bit wrapping key.
//!
//! Interoperable with the AWS Encryption SDK's raw AES keyring / `RawMasterKey`
//! (<https://docs.aws.amazon.com/encryption-sdk/latest/developer-guide/use-raw-aes-keyring.html>,
//! specification `framework/raw-aes-keyring.md`): provider id = the key namespace;
//! provider info = key name ‖ tag length in bits (u32 BE, 128) ‖ IV length (u32 BE,
//! 12) ‖ IV; ciphertext = AES-256-GCM(data key) ‖ tag, with the serialized encryption
//! context as AAD and a random IV.

use std::fmt;

use async_trait::async_trait;
use aws_lc_rs::aead::LessSafeKey;
use keymgr_core::{EncryptionContext, Error};
use zeroize::Zeroizing;

use super::Keyring;
use crate::DataKey;
use crate::context;
use crate::data_key::random;
use crate::header::EncryptedDataKey;
use crate::suite::{self, DATA_KEY_LEN, IV_LEN, TAG_LEN};

const DEV_KEY_EXPECTED: &str = "64 hex digits (a 256-bit AES key; development only)";

/// Decodes a development KEK; errors name `var`, never the value.
fn dev_key(var: &str, value: &str) -> keymgr_core::Result<Zeroizing<Vec<u8>>> {
    let bytes = Zeroizing::new(
        hex::decode(value.trim()).map_err(|_| Error::config(var, DEV_KEY_EXPECTED, "not hex"))?,
    );
    if bytes.len() != DATA_KEY_LEN {
        return Err(Error::config(
            var,
            DEV_KEY_EXPECTED,
            format!("{} bytes", bytes.len()),
        ));
    }
    Ok(bytes)
}

/// Wraps data keys with a 256-bit AES key held in this process.
///
/// Holding the KEK in memory is what KMS and HSM keyrings avoid: use this for
/// development ([`RawAesKeyring::dev_from_env`]), tests, and interoperability with raw
/// AES keyrings elsewhere. `Debug` never shows the key.
pub struct RawAesKeyring {
    namespace: String,
    name: String,
    key: LessSafeKey,
}

impl fmt::Debug for RawAesKeyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawAesKeyring")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("key", &"[REDACTED]")
            .finish()
    }
}

impl RawAesKeyring {
    /// A keyring for `key` (32 bytes), recorded as provider id `namespace` and key name
    /// `name`. The namespace may not be `aws-kms` (reserved for KMS entries).
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        key: &[u8],
    ) -> keymgr_core::Result<Self> {
        let namespace = namespace.into();
        let name = name.into();
        validate_names(&namespace, &name)?;
        if key.len() != DATA_KEY_LEN {
            return Err(Error::invalid_input(
                format!("raw AES keyring {namespace}/{name}"),
                format!(
                    "the wrapping key must be 32 bytes (AES-256), got {}",
                    key.len()
                ),
            ));
        }
        let key = suite::aes_key(key).map_err(|e| Error::backend("aws-lc", e.to_string(), None))?;
        Ok(Self {
            namespace,
            name,
            key,
        })
    }

    /// **Development only.** Reads the wrapping key from environment variable `var`
    /// (64 hex digits) and logs a warning: a KEK in the environment is readable by
    /// anyone who can read the process's environment. Errors name the variable, never
    /// its value.
    pub fn dev_from_env(
        var: &str,
        namespace: impl Into<String>,
        name: impl Into<String>,
    ) -> keymgr_core::Result<Self> {
        let value = keymgr_core::config::process_env()
            .secret(var)?
            .ok_or_else(|| Error::config(var, DEV_KEY_EXPECTED, "not set"))?;
        let bytes = dev_key(var, &Zeroizing::new(value))?;
        tracing::warn!(
            variable = var,
            "envelope KEK read from the environment: development only, use a KMS or HSM keyring in production"
        );
        Self::new(namespace, name, &bytes)
    }
}

/// Checks a raw AES keyring's namespace (provider id) and key name.
pub(super) fn validate_names(namespace: &str, name: &str) -> keymgr_core::Result<()> {
    if namespace.is_empty() || namespace.starts_with("aws-kms") || namespace.len() > 0xFFFF {
        return Err(Error::invalid_input(
            "raw AES keyring namespace",
            format!("{namespace:?}: must be 1 to 65535 bytes and must not start with \"aws-kms\""),
        ));
    }
    if name.is_empty() || name.len() > 0xFFFF - 8 - IV_LEN {
        return Err(Error::invalid_input(
            "raw AES keyring name",
            "the key name must be 1 to 65515 bytes",
        ));
    }
    Ok(())
}

/// Provider info of a raw AES entry: key name ‖ tag length in bits (u32 BE) ‖ IV length
/// (u32 BE) ‖ IV.
pub(super) fn provider_info(name: &str, iv: &[u8; IV_LEN]) -> Vec<u8> {
    let mut info = Vec::with_capacity(name.len() + 8 + IV_LEN);
    info.extend_from_slice(name.as_bytes());
    info.extend_from_slice(&(TAG_LEN as u32 * 8).to_be_bytes());
    info.extend_from_slice(&(IV_LEN as u32).to_be_bytes());
    info.extend_from_slice(iv);
    info
}

/// Whether `edk` is a raw AES entry of key `namespace`/`name` with a 128-bit tag and a
/// 12-byte IV; its IV if so.
pub(super) fn entry_iv(
    namespace: &str,
    name: &str,
    edk: &EncryptedDataKey,
) -> Option<[u8; IV_LEN]> {
    let info = &edk.provider_info;
    let n = name.len();
    let matches = edk.provider_id == namespace
        && info.len() == n + 8 + IV_LEN
        && &info[..n] == name.as_bytes()
        && info[n..n + 4] == (TAG_LEN as u32 * 8).to_be_bytes()
        && info[n + 4..n + 8] == (IV_LEN as u32).to_be_bytes();
    matches.then(|| {
        let mut iv = [0u8; IV_LEN];
        iv.copy_from_slice(&info[n + 8..]);
        iv
    })
}

#[async_trait]
impl Keyring for RawAesKeyring {
    fn name(&self) -> String {
        format!("{}:{}", self.namespace, self.name)
    }

    async fn wrap(
        &self,
        key: &DataKey,
        context: &EncryptionContext,
    ) -> keymgr_core::Result<EncryptedDataKey> {
        let aad = context::serialize(context)
            .map_err(|e| Error::invalid_input("encryption context", e.to_string()))?;
        let iv: [u8; IV_LEN] = random();
        let mut ciphertext = Vec::with_capacity(DATA_KEY_LEN + TAG_LEN);
        ciphertext.extend_from_slice(key.expose());
        let tag = suite::seal(&self.key, iv, &aad, &mut ciphertext)
            .map_err(|e| Error::backend("aws-lc", e.to_string(), None))?;
        ciphertext.extend_from_slice(&tag);
        Ok(EncryptedDataKey {
            provider_id: self.namespace.clone(),
            provider_info: provider_info(&self.name, &iv),
            ciphertext,
        })
    }

    fn matches(&self, edk: &EncryptedDataKey) -> bool {
        entry_iv(&self.namespace, &self.name, edk).is_some()
    }

    async fn unwrap(
        &self,
        edk: &EncryptedDataKey,
        context: &EncryptionContext,
    ) -> keymgr_core::Result<DataKey> {
        let label = self.name();
        let iv = match entry_iv(&self.namespace, &self.name, edk) {
            Some(iv) if edk.ciphertext.len() == DATA_KEY_LEN + TAG_LEN => iv,
            _ => return Err(not_an_entry(&label)),
        };
        let aad = context::serialize(context)
            .map_err(|e| Error::invalid_input("encryption context", e.to_string()))?;
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&edk.ciphertext[DATA_KEY_LEN..]);
        let mut key = Zeroizing::new([0u8; DATA_KEY_LEN]);
        key.copy_from_slice(&edk.ciphertext[..DATA_KEY_LEN]);
        if !suite::open(&self.key, iv, &aad, key.as_mut(), &tag) {
            return Err(Error::integrity(
                label,
                "the wrapped data key does not authenticate under this key and encryption context",
            ));
        }
        Ok(DataKey::from_bytes(*key))
    }
}

/// The error for an entry `keyring` cannot unwrap by its shape.
pub(super) fn not_an_entry(keyring: &str) -> keymgr_core::Error {
    Error::invalid_input(
        "encrypted data key",
        format!(
            "not a {keyring} raw AES entry of {} bytes",
            DATA_KEY_LEN + TAG_LEN
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_key_errors_name_the_variable_not_the_value() {
        for bad in ["zz11", "abcd", &"ab".repeat(33)] {
            let e = dev_key("DEV_KEK", bad).unwrap_err();
            assert_eq!(e.kind(), keymgr_core::ErrorKind::Config);
            let text = format!("{e} {e:?}");
            assert!(text.contains("DEV_KEK"), "{text}");
            assert!(!text.contains(bad), "{text}");
        }
        assert_eq!(
            dev_key("DEV_KEK", &"07".repeat(32)).unwrap().as_slice(),
            &[7; 32]
        );
    }
}
