//! Encrypt, decrypt and AES-256 data keys with `SYMMETRIC_DEFAULT` KMS keys.
//!
//! The encryption context is sent as KMS's `EncryptionContext` (bound as additional
//! authenticated data by KMS:
//! [`Encrypt`](https://docs.aws.amazon.com/kms/latest/APIReference/API_Encrypt.html),
//! [`Decrypt`](https://docs.aws.amazon.com/kms/latest/APIReference/API_Decrypt.html),
//! [`GenerateDataKey`](https://docs.aws.amazon.com/kms/latest/APIReference/API_GenerateDataKey.html)).
//! An unversioned `decrypt` lets KMS pick the key that made the ciphertext (so data from
//! before a rotation still decrypts) and then accepts only a version of the named key.

use std::collections::HashMap;

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use keymgr_core::{
    DataKey, EncryptionContext, Error, IntegrityReason, KeyRef, Result, SecretBytes,
};

use crate::error::map_sdk_error;
use crate::resolve::key_id_of_arn;
use crate::{AwsKmsBackend, MAX_MESSAGE_BYTES};

impl AwsKmsBackend {
    /// The target for symmetric operations: the alias/identifier, or a checked version.
    pub(crate) async fn symmetric_target(&self, key: &KeyRef) -> Result<String> {
        match key.version() {
            None => Ok(self.identifier(key.name()).to_owned()),
            Some(version) => {
                let meta = self.check_version(key, version).await?.meta;
                Ok(meta.arn().unwrap_or(meta.key_id()).to_owned())
            }
        }
    }

    pub(crate) async fn encrypt_inner(
        &self,
        key: &KeyRef,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Vec<u8>> {
        let label = key.to_string();
        if plaintext.len() > MAX_MESSAGE_BYTES {
            return Err(Error::invalid_input(
                "plaintext",
                format!(
                    "key {label}: AWS KMS encrypts at most {MAX_MESSAGE_BYTES} bytes directly, got \
                     {}; use generate_data_key (envelope encryption) for larger data",
                    plaintext.len()
                ),
            ));
        }
        let target = self.symmetric_target(key).await?;
        let out = self
            .client
            .encrypt()
            .key_id(&target)
            .plaintext(Blob::new(plaintext))
            .set_encryption_context(context_of(context))
            .send()
            .await
            .map_err(|e| map_sdk_error(e, "Encrypt", &label, &target))?;
        out.ciphertext_blob.map(Blob::into_inner).ok_or_else(|| {
            Error::integrity_failure(
                &label,
                IntegrityReason::MalformedResponse,
                "Encrypt returned no ciphertext",
            )
        })
    }

    pub(crate) async fn decrypt_inner(
        &self,
        key: &KeyRef,
        ciphertext: &[u8],
        context: &EncryptionContext,
    ) -> Result<SecretBytes> {
        let label = key.to_string();
        let target = self.symmetric_target(key).await?;
        let versioned = key.version().is_some();
        let out = self
            .client
            .decrypt()
            .set_key_id(versioned.then(|| target.clone()))
            .ciphertext_blob(Blob::new(ciphertext))
            .set_encryption_context(context_of(context))
            .send()
            .await
            .map_err(|e| map_sdk_error(e, "Decrypt", &label, &target))?;
        let plaintext = SecretBytes::new(out.plaintext.map(Blob::into_inner).ok_or_else(|| {
            Error::integrity_failure(
                &label,
                IntegrityReason::MalformedResponse,
                "Decrypt returned no plaintext",
            )
        })?);
        if !versioned {
            // Without a KeyId, KMS decrypts under whichever key made the ciphertext (so
            // data from before a rotation still decrypts): accept only a version of `key`.
            let used = out.key_id.unwrap_or_default();
            // A failed lookup (throttled, unreachable, denied) keeps its own kind and
            // request id; only a definite "not a version" is an integrity error.
            let used = key_id_of_arn(&used);
            if self.version_status(key, used).await?.is_none() {
                return Err(Error::integrity(
                    &label,
                    format!(
                        "the ciphertext was made by {}",
                        self.not_a_version(key, used)
                    ),
                ));
            }
        }
        Ok(plaintext)
    }

    pub(crate) async fn generate_data_key_inner(
        &self,
        key: &KeyRef,
        context: &EncryptionContext,
    ) -> Result<DataKey> {
        let label = key.to_string();
        let target = self.symmetric_target(key).await?;
        let out = self
            .client
            .generate_data_key()
            .key_id(&target)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(context_of(context))
            .send()
            .await
            .map_err(|e| map_sdk_error(e, "GenerateDataKey", &label, &target))?;
        let plaintext = SecretBytes::new(out.plaintext.map(Blob::into_inner).ok_or_else(|| {
            Error::integrity_failure(
                &label,
                IntegrityReason::MalformedResponse,
                "GenerateDataKey returned no plaintext",
            )
        })?);
        if plaintext.len() != 32 {
            return Err(Error::integrity_failure(
                &label,
                IntegrityReason::MalformedResponse,
                format!(
                    "GenerateDataKey returned a {}-byte AES-256 key",
                    plaintext.len()
                ),
            ));
        }
        let ciphertext = out.ciphertext_blob.map(Blob::into_inner).ok_or_else(|| {
            Error::integrity_failure(
                &label,
                IntegrityReason::MalformedResponse,
                "GenerateDataKey returned no ciphertext",
            )
        })?;
        Ok(DataKey {
            plaintext,
            ciphertext,
        })
    }
}

pub(crate) fn context_of(context: &EncryptionContext) -> Option<HashMap<String, String>> {
    (!context.is_empty()).then(|| {
        context
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    })
}
