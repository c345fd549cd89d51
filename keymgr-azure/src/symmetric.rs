//! Data keys wrapped by an RSA key in Key Vault with `RSA-OAEP-256`
//! ([Wrap Key](https://learn.microsoft.com/rest/api/keyvault/keys/wrap-key/wrap-key),
//! [Unwrap Key](https://learn.microsoft.com/rest/api/keyvault/keys/unwrap-key/unwrap-key)).
//!
//! Key Vault has no data key call and no symmetric keys outside Managed HSM, so
//! [`encrypt`](keymgr_core::KeyBackend::encrypt) is Wrap Key, `decrypt` is Unwrap Key
//! and `generate_data_key` draws 32 bytes from the OS and wraps them. The result records
//! the key version that wrapped it (Unwrap Key needs it; after a rotation the newest
//! version is another key): see [`WrappedKey`].
//!
//! RSA-OAEP has no additional authenticated data, so a non-empty encryption context is
//! refused rather than dropped: keymgr-envelope's Azure keyring authenticates the context
//! in the message header instead, as the AWS Encryption SDK's raw RSA keyring does.

use azure_security_keyvault_keys::models::{
    EncryptionAlgorithm, KeyClientWrapKeyOptions, KeyOperationParameters, KeyOperationResult,
};
use keymgr_core::{DataKey, EncryptionContext, Error, KeyRef, Result, SecretBytes};
use rand_core::RngCore as _;

use crate::backend::AzureKvBackend;
use crate::config::{VaultKey, validate_version};
use crate::error::map;
use crate::resolve::version_of_kid;

/// The first byte of every [`WrappedKey`] encoding.
pub const WRAPPED_KEY_FORMAT: u8 = 1;

/// A data key wrapped by one version of a Key Vault RSA key.
///
/// Encoded as `0x01 ‖ len(version) (1 byte) ‖ version (ASCII) ‖ ciphertext`, where
/// `ciphertext` is Wrap Key's `RSA-OAEP-256` output (as long as the RSA modulus), so any
/// holder of the private key can unwrap it with RFC 8017 RSAES-OAEP (SHA-256, MGF1-SHA-256,
/// empty label).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    /// The Key Vault key version (32 hex characters) that wrapped the data key.
    pub version: String,
    /// The `RSA-OAEP-256` ciphertext.
    pub ciphertext: Vec<u8>,
}

impl WrappedKey {
    /// The encoding described on [`WrappedKey`].
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + self.version.len() + self.ciphertext.len());
        out.push(WRAPPED_KEY_FORMAT);
        // Versions are validated as 32 characters, so the length fits in a byte.
        out.push(u8::try_from(self.version.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(self.version.as_bytes());
        out.extend_from_slice(&self.ciphertext);
        out
    }

    /// Parses the encoding; errors name what is wrong (`InvalidInput`, field `ciphertext`).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let bad = |reason: String| Error::invalid_input("ciphertext", reason);
        let [format, len, rest @ ..] = bytes else {
            return Err(bad(format!(
                "{} bytes is too short for a Key Vault wrapped key",
                bytes.len()
            )));
        };
        if *format != WRAPPED_KEY_FORMAT {
            return Err(bad(format!(
                "format byte {format:#04x} is not a Key Vault wrapped key \
                 ({WRAPPED_KEY_FORMAT:#04x})"
            )));
        }
        let len = usize::from(*len);
        if rest.len() <= len {
            return Err(bad(format!(
                "{} bytes after the header cannot hold a {len}-byte key version and a \
                 ciphertext",
                rest.len()
            )));
        }
        let (version, ciphertext) = rest.split_at(len);
        let version = std::str::from_utf8(version)
            .ok()
            .filter(|v| validate_version(v).is_ok())
            .ok_or_else(|| bad("the recorded key version is not 32 hex characters".into()))?;
        Ok(Self {
            version: version.to_owned(),
            ciphertext: ciphertext.to_vec(),
        })
    }
}

fn refuse_context(key: &str, context: &EncryptionContext) -> Result<()> {
    if context.is_empty() {
        return Ok(());
    }
    Err(Error::invalid_input(
        "encryption context",
        format!(
            "{key}: Key Vault wraps with RSA-OAEP-256, which authenticates no additional data, \
             so the {} context entries would not be bound to the data key; pass an empty \
             context (keymgr-envelope's AzureKvKeyring authenticates the context in the \
             message header)",
            context.len()
        ),
    ))
}

fn parameters(value: Vec<u8>) -> KeyOperationParameters {
    KeyOperationParameters {
        algorithm: Some(EncryptionAlgorithm::RsaOaep256),
        value: Some(value),
        ..Default::default()
    }
}

/// The version Key Vault says it used, checked against `expected` when there is one.
fn answered_version(
    label: &str,
    operation: &str,
    result: &KeyOperationResult,
    expected: Option<&str>,
) -> Result<String> {
    let version = result
        .kid
        .as_deref()
        .and_then(version_of_kid)
        .filter(|v| validate_version(v).is_ok())
        .ok_or_else(|| {
            Error::integrity(
                label,
                format!("{operation} answered without a versioned key id (kid)"),
            )
        })?;
    if let Some(expected) = expected
        && !expected.eq_ignore_ascii_case(version)
    {
        return Err(Error::integrity(
            label,
            format!("asked version {expected} to {operation}, Key Vault answered for {version}"),
        ));
    }
    Ok(version.to_ascii_lowercase())
}

impl AzureKvBackend {
    /// Wrap Key with the key's pinned version, or the newest.
    pub(crate) async fn encrypt_inner(
        &self,
        key: &KeyRef,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Vec<u8>> {
        let label = key.to_string();
        refuse_context(&label, context)?;
        if plaintext.is_empty() {
            return Err(Error::invalid_input(
                "plaintext",
                format!("{label}: nothing to wrap (0 bytes)"),
            ));
        }
        let VaultKey { name, version } = self.config.vault_key(key)?;
        let options = KeyClientWrapKeyOptions {
            key_version: version.clone(),
            ..Default::default()
        };
        let body = parameters(plaintext.to_vec())
            .try_into()
            .map_err(|e| map(&label, "wrapKey", e))?;
        let result = self
            .client
            .wrap_key(&name, body, Some(options))
            .await
            .map_err(|e| map(&label, "wrapKey", e))?
            .into_model()
            .map_err(|e| map(&label, "wrapKey", e))?;
        let version = answered_version(&label, "wrapKey", &result, version.as_deref())?;
        let ciphertext = result
            .result
            .filter(|c| !c.is_empty())
            .ok_or_else(|| Error::integrity(&label, "wrapKey returned no wrapped key"))?;
        Ok(WrappedKey {
            version,
            ciphertext,
        }
        .to_bytes())
    }

    /// Unwrap Key with the version recorded in `wrapped`.
    pub(crate) async fn decrypt_inner(
        &self,
        key: &KeyRef,
        wrapped: &[u8],
        context: &EncryptionContext,
    ) -> Result<SecretBytes> {
        let label = key.to_string();
        refuse_context(&label, context)?;
        let wrapped = WrappedKey::from_bytes(wrapped)?;
        let target = self.config.vault_key(key)?;
        if let Some(pinned) = &target.version
            && !pinned.eq_ignore_ascii_case(&wrapped.version)
        {
            return Err(Error::invalid_input(
                "ciphertext",
                format!(
                    "{label} names version {pinned}, but the data key was wrapped by version {}",
                    wrapped.version
                ),
            ));
        }
        let body = parameters(wrapped.ciphertext)
            .try_into()
            .map_err(|e| map(&label, "unwrapKey", e))?;
        let result = self
            .client
            .unwrap_key(&target.name, &wrapped.version, body, None)
            .await
            .map_err(|e| map(&label, "unwrapKey", e))?
            .into_model()
            .map_err(|e| map(&label, "unwrapKey", e))?;
        answered_version(&label, "unwrapKey", &result, Some(&wrapped.version))?;
        let plaintext = result
            .result
            .ok_or_else(|| Error::integrity(&label, "unwrapKey returned no key"))?;
        Ok(SecretBytes::new(plaintext))
    }

    /// 32 bytes from the OS, wrapped.
    pub(crate) async fn generate_data_key_inner(
        &self,
        key: &KeyRef,
        context: &EncryptionContext,
    ) -> Result<DataKey> {
        let mut bytes = vec![0u8; 32];
        rand_core::OsRng.fill_bytes(&mut bytes);
        let plaintext = SecretBytes::new(bytes);
        let ciphertext = self.encrypt_inner(key, plaintext.expose(), context).await?;
        Ok(DataKey {
            plaintext,
            ciphertext,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn wrapped_key_round_trips() {
        let w = WrappedKey {
            version: V.into(),
            ciphertext: vec![7; 256],
        };
        let bytes = w.to_bytes();
        assert_eq!(&bytes[..2], &[1, 32]);
        assert_eq!(WrappedKey::from_bytes(&bytes).expect("parses"), w);
    }

    #[test]
    fn malformed_wrapped_keys_are_named() {
        let good = WrappedKey {
            version: V.into(),
            ciphertext: vec![7; 8],
        }
        .to_bytes();
        let mut wrong_format = good.clone();
        wrong_format[0] = 2;
        let mut bad_version = good.clone();
        bad_version[2] = b'z';
        let cases: [&[u8]; 5] = [&[], &[1], &wrong_format, &bad_version, &good[..34]];
        for case in cases {
            let e = WrappedKey::from_bytes(case).expect_err("refused");
            assert!(
                matches!(&e, Error::InvalidInput { field, .. } if field == "ciphertext"),
                "{e:?}"
            );
        }
    }
}
