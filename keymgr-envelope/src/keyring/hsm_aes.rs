//! The raw AES keyring wrapping with the AES key inside an HSM.
//!
//! The entries are byte for byte those of the AWS Encryption SDK's raw AES keyring
//! (<https://docs.aws.amazon.com/encryption-sdk/latest/developer-guide/use-raw-aes-keyring.html>,
//! specification `framework/raw-aes-keyring.md`, see [`super::RawAesKeyring`]), but the
//! AES-GCM runs in the HSM (PKCS#11 `CKM_AES_GCM`, `keymgr-hsm`): a raw AES keyring in
//! any ESDK language holding the same key value unwraps them, and keymgr unwraps theirs.

use std::sync::Arc;

use async_trait::async_trait;
use keymgr_core::{EncryptionContext, Error, KeyBackend, KeyRef};

use super::Keyring;
use super::raw_aes::{entry_iv, not_an_entry, provider_info, validate_names};
use crate::DataKey;
use crate::header::EncryptedDataKey;
use crate::suite::{DATA_KEY_LEN, IV_LEN, TAG_LEN};

/// Wraps data keys with an AES key held in an HSM, through a [`KeyBackend`] (normally a
/// `KeyManager` over `keymgr_hsm::HsmBackend`, so every wrap and unwrap is audited and
/// goes through the manager's timeout and circuit breaker layers).
///
/// The backend's symmetric operations must follow `keymgr_hsm::symmetric`'s contract:
/// ciphertext = IV (12 bytes) ‖ AES-GCM ciphertext ‖ tag (16 bytes), AAD = the
/// encryption context in the AWS Encryption SDK serialization. Entries record provider
/// id = `namespace` and key name = `key_name`, which is also the key the backend is asked
/// for (an HSM key label, or a logical name `HsmConfig::with_key` maps to one); a raw AES
/// keyring elsewhere must use the same namespace and name.
///
/// KEK rotation: make a keyring for the new key the generator and keep the old one as a
/// [`super::MultiKeyring::decrypt_with`] member.
#[derive(Debug, Clone)]
pub struct HsmAesKeyring {
    backend: Arc<dyn KeyBackend>,
    namespace: String,
    key_name: String,
}

impl HsmAesKeyring {
    /// A keyring for the HSM AES key `key_name`, recorded under provider id `namespace`.
    /// Errors on an empty or over-long namespace or name, or a namespace starting with
    /// `aws-kms` (reserved for KMS entries).
    pub fn new(
        backend: Arc<dyn KeyBackend>,
        namespace: impl Into<String>,
        key_name: impl Into<String>,
    ) -> keymgr_core::Result<Self> {
        let namespace = namespace.into();
        let key_name = key_name.into();
        validate_names(&namespace, &key_name)?;
        // The key name is what the backend is asked for: a key name, never `NAME@VERSION`.
        KeyRef::check_name(&key_name)?;
        Ok(Self {
            backend,
            namespace,
            key_name,
        })
    }

    fn key(&self) -> KeyRef {
        KeyRef::new(self.key_name.clone())
    }

    /// Turns the backend's IV ‖ ciphertext ‖ tag into a raw AES entry.
    fn edk(&self, sealed: &[u8]) -> keymgr_core::Result<EncryptedDataKey> {
        if sealed.len() != IV_LEN + DATA_KEY_LEN + TAG_LEN {
            return Err(Error::integrity(
                self.name(),
                format!(
                    "the backend returned {} bytes for a wrapped data key; expected IV \
                     ({IV_LEN}) ‖ ciphertext ({DATA_KEY_LEN}) ‖ tag ({TAG_LEN})",
                    sealed.len()
                ),
            ));
        }
        let (iv, ciphertext) = sealed.split_at(IV_LEN);
        let iv: [u8; IV_LEN] = iv.try_into().map_err(|_| not_an_entry(&self.name()))?;
        Ok(EncryptedDataKey {
            provider_id: self.namespace.clone(),
            provider_info: provider_info(&self.key_name, &iv),
            ciphertext: ciphertext.to_vec(),
        })
    }
}

#[async_trait]
impl Keyring for HsmAesKeyring {
    fn name(&self) -> String {
        format!("{}:{}", self.namespace, self.key_name)
    }

    async fn generate(
        &self,
        context: &EncryptionContext,
    ) -> keymgr_core::Result<(DataKey, EncryptedDataKey)> {
        let out = self.backend.generate_data_key(&self.key(), context).await?;
        let key = DataKey::from_slice(out.plaintext.expose()).ok_or_else(|| {
            Error::integrity(
                self.name(),
                "generate_data_key returned a key that is not 32 bytes",
            )
        })?;
        Ok((key, self.edk(&out.ciphertext)?))
    }

    async fn wrap(
        &self,
        key: &DataKey,
        context: &EncryptionContext,
    ) -> keymgr_core::Result<EncryptedDataKey> {
        let sealed = self
            .backend
            .encrypt(&self.key(), key.expose(), context)
            .await?;
        self.edk(&sealed)
    }

    fn matches(&self, edk: &EncryptedDataKey) -> bool {
        entry_iv(&self.namespace, &self.key_name, edk).is_some()
    }

    async fn unwrap(
        &self,
        edk: &EncryptedDataKey,
        context: &EncryptionContext,
    ) -> keymgr_core::Result<DataKey> {
        let iv = match entry_iv(&self.namespace, &self.key_name, edk) {
            Some(iv) if edk.ciphertext.len() == DATA_KEY_LEN + TAG_LEN => iv,
            _ => return Err(not_an_entry(&self.name())),
        };
        let sealed = [&iv[..], &edk.ciphertext].concat();
        let plaintext = self.backend.decrypt(&self.key(), &sealed, context).await?;
        DataKey::from_slice(plaintext.expose()).ok_or_else(|| {
            Error::integrity(
                self.name(),
                "the HSM unwrapped a data key that is not 32 bytes",
            )
        })
    }
}
