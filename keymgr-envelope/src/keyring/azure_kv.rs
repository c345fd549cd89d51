//! The Azure Key Vault keyring over a keymgr backend.
//!
//! Key Vault wraps data keys with an RSA key and `RSA-OAEP-256`
//! (<https://learn.microsoft.com/rest/api/keyvault/keys/wrap-key/wrap-key>). The AWS
//! Encryption SDK has no Key Vault keyring, so these entries are keymgr's own: provider
//! id `azure-kv`, provider info = the Key Vault key name (UTF-8), ciphertext = what the
//! backend's `encrypt` returned (for `keymgr-azure`: the wrapping key version and the
//! RSA-OAEP-256 ciphertext, see `keymgr_azure::WrappedKey`).
//!
//! RSA-OAEP binds no additional data, so the keyring passes an empty context to the
//! backend; the message's encryption context is still authenticated by the header
//! authentication tag and the committed data key, as with the AWS Encryption SDK's raw
//! RSA keyring (specification `framework/raw-rsa-keyring.md`).

use std::sync::Arc;

use async_trait::async_trait;
use keymgr_core::{EncryptionContext, Error, KeyBackend, KeyRef};

use super::Keyring;
use crate::DataKey;
use crate::header::EncryptedDataKey;

/// Provider id of Azure Key Vault entries.
pub const PROVIDER_ID_AZURE_KV: &str = "azure-kv";

/// Wraps data keys with one Key Vault RSA key through a [`KeyBackend`] (normally a
/// `KeyManager` over `keymgr-azure`, so every call goes through its retry, timeout and
/// circuit breaker layers).
///
/// Each wrapped key records the key version that wrapped it, so rotating the Key Vault
/// key (a new version under the same name) needs no keyring change: new messages use the
/// newest version, older ones unwrap with theirs while it stays enabled.
#[derive(Debug, Clone)]
pub struct AzureKvKeyring {
    backend: Arc<dyn KeyBackend>,
    key_name: String,
}

impl AzureKvKeyring {
    /// A keyring for the Key Vault RSA key `key_name` (a name without a version: the
    /// version is recorded per data key).
    pub fn new(
        backend: Arc<dyn KeyBackend>,
        key_name: impl Into<String>,
    ) -> keymgr_core::Result<Self> {
        let key_name = key_name.into();
        let valid = !key_name.is_empty()
            && key_name.len() <= 127
            && key_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !valid {
            return Err(Error::invalid_input(
                "Azure Key Vault keyring key",
                format!(
                    "{key_name:?} is not a Key Vault key name (1-127 letters, digits and \
                     dashes, no version: each data key records the version that wrapped it)"
                ),
            ));
        }
        Ok(Self { backend, key_name })
    }

    /// The Key Vault key name.
    pub fn key_name(&self) -> &str {
        &self.key_name
    }

    fn key(&self) -> KeyRef {
        KeyRef::new(self.key_name.clone())
    }
}

#[async_trait]
impl Keyring for AzureKvKeyring {
    fn name(&self) -> String {
        format!("{PROVIDER_ID_AZURE_KV}:{}", self.key_name)
    }

    async fn wrap(
        &self,
        key: &DataKey,
        _context: &EncryptionContext,
    ) -> keymgr_core::Result<EncryptedDataKey> {
        let ciphertext = self
            .backend
            .encrypt(&self.key(), key.expose(), &EncryptionContext::new())
            .await?;
        Ok(EncryptedDataKey {
            provider_id: PROVIDER_ID_AZURE_KV.into(),
            provider_info: self.key_name.as_bytes().to_vec(),
            ciphertext,
        })
    }

    fn matches(&self, edk: &EncryptedDataKey) -> bool {
        edk.provider_id == PROVIDER_ID_AZURE_KV && edk.provider_info == self.key_name.as_bytes()
    }

    async fn unwrap(
        &self,
        edk: &EncryptedDataKey,
        _context: &EncryptionContext,
    ) -> keymgr_core::Result<DataKey> {
        let plaintext = self
            .backend
            .decrypt(&self.key(), &edk.ciphertext, &EncryptionContext::new())
            .await?;
        DataKey::from_slice(plaintext.expose()).ok_or_else(|| {
            Error::integrity(
                &self.key_name,
                format!(
                    "Key Vault unwrapKey returned {} bytes, not a 32-byte data key",
                    plaintext.len()
                ),
            )
        })
    }
}
