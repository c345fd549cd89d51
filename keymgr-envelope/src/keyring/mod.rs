//! Keyrings wrap and unwrap data keys under KEKs; [`MultiKeyring`] combines them.
//!
//! - [`AwsKmsKeyring`]: provider id `aws-kms`, through any [`keymgr_core::KeyBackend`]
//!   with symmetric operations (a `KeyManager` over `keymgr-aws`), interoperable with
//!   the AWS Encryption SDK's KMS keyring.
//! - [`HsmAesKeyring`]: the raw AES keyring wrapping (provider id = namespace) with the
//!   AES key inside an HSM (`CKM_AES_GCM` through `keymgr-hsm`), interoperable with the
//!   AWS Encryption SDK's raw AES keyring holding the same key value.
//! - [`RawAesKeyring`]: the AWS Encryption SDK's raw AES keyring wrapping with a local
//!   256-bit key; [`RawAesKeyring::dev_from_env`] reads it from an environment
//!   variable, for development only.
//!
//! - [`AzureKvKeyring`]: provider id `azure-kv`, Key Vault Wrap Key / Unwrap Key
//!   (`RSA-OAEP-256`) through any [`keymgr_core::KeyBackend`] that implements them (a
//!   `KeyManager` over `keymgr-azure`).
//!
//! `gcp-kms` is reserved for the GCP keyring.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use keymgr_core::EncryptionContext;

use crate::DataKey;
use crate::error::{EnvelopeError, Result, UnwrapAttempt};
use crate::header::EncryptedDataKey;

mod aws_kms;
mod azure_kv;
mod hsm_aes;
mod raw_aes;

pub use aws_kms::{AwsKmsKeyring, PROVIDER_ID_AWS_KMS};
pub use azure_kv::{AzureKvKeyring, PROVIDER_ID_AZURE_KV};
pub use hsm_aes::HsmAesKeyring;
pub use raw_aes::RawAesKeyring;

/// Wraps data keys under one KEK and unwraps the entries it made.
///
/// Object-safe: hold keyrings as `Arc<dyn Keyring>`.
#[async_trait]
pub trait Keyring: Send + Sync + fmt::Debug {
    /// A name for errors and summaries (provider id and key), never secret.
    fn name(&self) -> String;

    /// Generates a data key and wraps it. The default draws 32 random bytes and calls
    /// [`wrap`](Keyring::wrap); providers with a native operation (KMS
    /// `GenerateDataKey`) override it.
    async fn generate(
        &self,
        context: &EncryptionContext,
    ) -> keymgr_core::Result<(DataKey, EncryptedDataKey)> {
        let key = DataKey::generate();
        let edk = self.wrap(&key, context).await?;
        Ok((key, edk))
    }

    /// Wraps an existing data key (a multi-keyring's second and later members, re-wrap).
    async fn wrap(
        &self,
        key: &DataKey,
        context: &EncryptionContext,
    ) -> keymgr_core::Result<EncryptedDataKey>;

    /// Whether `edk` is one this keyring made (provider id and info match), so it is
    /// worth trying to unwrap.
    fn matches(&self, edk: &EncryptedDataKey) -> bool;

    /// Unwraps `edk` (which [`matches`](Keyring::matches)).
    async fn unwrap(
        &self,
        edk: &EncryptedDataKey,
        context: &EncryptionContext,
    ) -> keymgr_core::Result<DataKey>;
}

/// What encrypting a message needs: the data key and its wrapped copies.
#[derive(Debug, Clone)]
pub struct EncryptionMaterials {
    /// The plaintext data key.
    pub data_key: DataKey,
    /// The data key wrapped by every KEK.
    pub encrypted_data_keys: Vec<EncryptedDataKey>,
}

/// Supplies data keys to [`crate::Encryptor`] and [`crate::Decryptor`]: a
/// [`MultiKeyring`], or a [`crate::CachingMaterials`] in front of one.
#[async_trait]
pub trait MaterialsProvider: Send + Sync + fmt::Debug {
    /// A data key for a new message of `plaintext_len` bytes (`None`: unknown).
    async fn encryption_materials(
        &self,
        context: &EncryptionContext,
        plaintext_len: Option<u64>,
    ) -> Result<EncryptionMaterials>;

    /// The data key of a message, unwrapped from one of `edks`.
    async fn decryption_materials(
        &self,
        edks: &[EncryptedDataKey],
        context: &EncryptionContext,
    ) -> Result<DataKey>;
}

/// One data key wrapped under several KEKs; decryption tries them in order.
///
/// The first wrapping keyring generates the data key (KMS `GenerateDataKey`), every
/// other one wraps it; encryption fails if any of them fails (a message must be
/// readable under every configured KEK). Decryption tries the wrapping keyrings, then
/// the decrypt-only ones (older KEK versions after a rotation), in the configured
/// order, each against every matching entry, and moves on after any failure: a provider
/// that is down (or whose circuit breaker is open, failing fast) costs one error, not
/// the message.
#[derive(Debug, Clone)]
pub struct MultiKeyring {
    wrapping: Vec<Arc<dyn Keyring>>,
    decrypt_only: Vec<Arc<dyn Keyring>>,
}

impl MultiKeyring {
    /// A multi-keyring whose `generator` makes the data keys.
    pub fn new(generator: Arc<dyn Keyring>) -> Self {
        Self {
            wrapping: vec![generator],
            decrypt_only: Vec::new(),
        }
    }

    /// Also wraps every data key under `keyring`.
    #[must_use]
    pub fn wrap_with(mut self, keyring: Arc<dyn Keyring>) -> Self {
        self.wrapping.push(keyring);
        self
    }

    /// Tries `keyring` when decrypting only (e.g. the previous KEK version after a
    /// rotation: new messages use the new KEK, old messages still decrypt).
    #[must_use]
    pub fn decrypt_with(mut self, keyring: Arc<dyn Keyring>) -> Self {
        self.decrypt_only.push(keyring);
        self
    }

    /// The wrapping keyrings, generator first.
    pub fn wrapping(&self) -> &[Arc<dyn Keyring>] {
        &self.wrapping
    }

    /// Wraps an existing data key under every wrapping keyring (used by
    /// [`crate::rewrap`]).
    pub async fn wrap_all(
        &self,
        key: &DataKey,
        context: &EncryptionContext,
    ) -> Result<Vec<EncryptedDataKey>> {
        let mut out = Vec::with_capacity(self.wrapping.len());
        for keyring in &self.wrapping {
            let edk =
                keyring
                    .wrap(key, context)
                    .await
                    .map_err(|source| EnvelopeError::Keyring {
                        keyring: keyring.name(),
                        source,
                    })?;
            out.push(edk);
        }
        Ok(out)
    }
}

#[async_trait]
impl MaterialsProvider for MultiKeyring {
    async fn encryption_materials(
        &self,
        context: &EncryptionContext,
        _plaintext_len: Option<u64>,
    ) -> Result<EncryptionMaterials> {
        // `new` puts the generator first, so the list is never empty.
        let (generator, others) = self.wrapping.split_at(1);
        let generator = &generator[0];
        let (data_key, first) =
            generator
                .generate(context)
                .await
                .map_err(|source| EnvelopeError::Keyring {
                    keyring: generator.name(),
                    source,
                })?;
        let mut encrypted_data_keys = vec![first];
        for keyring in others {
            let edk = keyring.wrap(&data_key, context).await.map_err(|source| {
                EnvelopeError::Keyring {
                    keyring: keyring.name(),
                    source,
                }
            })?;
            encrypted_data_keys.push(edk);
        }
        Ok(EncryptionMaterials {
            data_key,
            encrypted_data_keys,
        })
    }

    async fn decryption_materials(
        &self,
        edks: &[EncryptedDataKey],
        context: &EncryptionContext,
    ) -> Result<DataKey> {
        let mut attempts = Vec::new();
        for keyring in self.wrapping.iter().chain(&self.decrypt_only) {
            for edk in edks.iter().filter(|e| keyring.matches(e)) {
                match keyring.unwrap(edk, context).await {
                    Ok(key) => return Ok(key),
                    Err(error) => {
                        tracing::debug!(keyring = %keyring.name(), %error, "data key unwrap failed; trying the next");
                        attempts.push(UnwrapAttempt {
                            keyring: keyring.name(),
                            provider_id: edk.provider_id.clone(),
                            error,
                        });
                    }
                }
            }
        }
        Err(EnvelopeError::NoDecryptableKey {
            entries: edks
                .iter()
                .map(|e| format!("{}:{}", e.provider_id, e.key_name()))
                .collect(),
            attempts,
        })
    }
}
