//! The AWS KMS keyring over a keymgr backend.
//!
//! Interoperable with the AWS Encryption SDK's AWS KMS keyring
//! (<https://docs.aws.amazon.com/encryption-sdk/latest/developer-guide/use-kms-keyring.html>,
//! specification `framework/aws-kms/aws-kms-keyring.md`): provider id `aws-kms`,
//! provider info = the KMS key ARN (UTF-8), ciphertext = the KMS `CiphertextBlob`;
//! the message's encryption context is passed to KMS as its `EncryptionContext`.

use std::sync::Arc;

use async_trait::async_trait;
use keymgr_core::{EncryptionContext, Error, KeyBackend, KeyRef};

use super::Keyring;
use crate::DataKey;
use crate::header::EncryptedDataKey;

/// Provider id of AWS KMS entries.
pub const PROVIDER_ID_AWS_KMS: &str = "aws-kms";

/// Wraps data keys with one AWS KMS key through a [`KeyBackend`] (normally a
/// `KeyManager` over `keymgr-aws`, so every KMS call goes through its retry, timeout
/// and circuit breaker layers).
///
/// The key is named by its full key ARN (`arn:aws:kms:REGION:ACCOUNT:key/ID`): that is
/// what the format records and what other AWS Encryption SDKs match on. The backend
/// must resolve the ARN to that key (`keymgr-aws` passes unmapped names to KMS as they
/// are). Decryption checks that KMS used this key (the backend's `decrypt` contract).
/// KEK rotation is KMS automatic key rotation (same ARN, old backing keys kept); to
/// move to another key ARN, make the new keyring the generator and keep the old one as
/// a [`super::MultiKeyring::decrypt_with`] member.
#[derive(Debug, Clone)]
pub struct AwsKmsKeyring {
    backend: Arc<dyn KeyBackend>,
    key_arn: String,
}

impl AwsKmsKeyring {
    /// A keyring for the KMS key `key_arn`; errors unless it is a key ARN.
    pub fn new(
        backend: Arc<dyn KeyBackend>,
        key_arn: impl Into<String>,
    ) -> keymgr_core::Result<Self> {
        let key_arn = key_arn.into();
        let parts: Vec<&str> = key_arn.splitn(6, ':').collect();
        let valid = parts.len() == 6
            && parts[0] == "arn"
            && parts[2] == "kms"
            && parts[5]
                .strip_prefix("key/")
                .is_some_and(|id| !id.is_empty())
            // The ARN is the key name the backend is asked for (no `@VERSION` part).
            && KeyRef::check_name(&key_arn).is_ok();
        if !valid {
            return Err(Error::invalid_input(
                "AWS KMS keyring key",
                format!(
                    "{key_arn:?} is not a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/KEY_ID); \
                     the message format records the key ARN, so aliases and bare key ids \
                     cannot be used"
                ),
            ));
        }
        Ok(Self { backend, key_arn })
    }

    /// The key ARN.
    pub fn key_arn(&self) -> &str {
        &self.key_arn
    }

    fn key(&self) -> KeyRef {
        KeyRef::new(self.key_arn.clone())
    }

    fn edk(&self, ciphertext: Vec<u8>) -> EncryptedDataKey {
        EncryptedDataKey {
            provider_id: PROVIDER_ID_AWS_KMS.into(),
            provider_info: self.key_arn.as_bytes().to_vec(),
            ciphertext,
        }
    }
}

#[async_trait]
impl Keyring for AwsKmsKeyring {
    fn name(&self) -> String {
        format!("{PROVIDER_ID_AWS_KMS}:{}", self.key_arn)
    }

    async fn generate(
        &self,
        context: &EncryptionContext,
    ) -> keymgr_core::Result<(DataKey, EncryptedDataKey)> {
        let out = self.backend.generate_data_key(&self.key(), context).await?;
        let key = DataKey::from_slice(out.plaintext.expose()).ok_or_else(|| {
            Error::integrity(
                &self.key_arn,
                "GenerateDataKey returned a key that is not 32 bytes",
            )
        })?;
        Ok((key, self.edk(out.ciphertext)))
    }

    async fn wrap(
        &self,
        key: &DataKey,
        context: &EncryptionContext,
    ) -> keymgr_core::Result<EncryptedDataKey> {
        let ciphertext = self
            .backend
            .encrypt(&self.key(), key.expose(), context)
            .await?;
        Ok(self.edk(ciphertext))
    }

    fn matches(&self, edk: &EncryptedDataKey) -> bool {
        edk.provider_id == PROVIDER_ID_AWS_KMS && edk.provider_info == self.key_arn.as_bytes()
    }

    async fn unwrap(
        &self,
        edk: &EncryptedDataKey,
        context: &EncryptionContext,
    ) -> keymgr_core::Result<DataKey> {
        let plaintext = self
            .backend
            .decrypt(&self.key(), &edk.ciphertext, context)
            .await?;
        DataKey::from_slice(plaintext.expose()).ok_or_else(|| {
            Error::integrity(
                &self.key_arn,
                "KMS Decrypt returned a data key that is not 32 bytes",
            )
        })
    }
}
