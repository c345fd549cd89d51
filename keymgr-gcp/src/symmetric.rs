//! Encrypt, decrypt and data keys with `GOOGLE_SYMMETRIC_ENCRYPTION` crypto keys.
//!
//! The encryption context becomes the additional authenticated data
//! ([`encrypt`](https://cloud.google.com/kms/docs/reference/rest/v1/projects.locations.keyRings.cryptoKeys/encrypt),
//! [`decrypt`](https://cloud.google.com/kms/docs/reference/rest/v1/projects.locations.keyRings.cryptoKeys/decrypt)),
//! encoded by [`aad_of`]. Cloud KMS has no data key call: data keys are 32 random bytes
//! from the OS, wrapped with `encrypt` (Google's envelope encryption recipe).

use bytes::Bytes;
use keymgr_core::{DataKey, EncryptionContext, Error, KeyRef, Result, SecretBytes};
use rand_core::RngCore as _;

use crate::GcpKmsBackend;
use crate::backend::{Failure, MAX_DATA_BYTES, crc32c_i64, with_crc_retry};
use crate::config::{ResourceName, validate_version_id};
use crate::error::map_gax_error;

/// The additional authenticated data for an encryption context: for each entry in key
/// order, `len(key) ‖ key ‖ len(value) ‖ value` with 4-byte big-endian lengths (so no
/// two contexts share an encoding); empty for an empty context.
pub fn aad_of(context: &EncryptionContext) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in context {
        for part in [k.as_bytes(), v.as_bytes()] {
            let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(part);
        }
    }
    out
}

impl GcpKmsBackend {
    /// The crypto key (or one explicit version, for `encrypt`) a symmetric call targets.
    fn symmetric_target(&self, key: &KeyRef, allow_version: bool) -> Result<String> {
        let resource = self.resource_of(key.name())?;
        match key.version().or(resource.version.as_deref()) {
            Some(v) if allow_version => {
                validate_version_id(v)
                    .map_err(|r| Error::invalid_input("key", format!("{key}: {r}")))?;
                Ok(ResourceName::version_name(&resource.crypto_key, v))
            }
            // decrypt names the crypto key: Cloud KMS finds the version in the ciphertext.
            _ => Ok(resource.crypto_key),
        }
    }

    fn check_sizes(label: &str, field: &str, len: usize, aad: usize) -> Result<()> {
        if len > MAX_DATA_BYTES || aad > MAX_DATA_BYTES {
            return Err(Error::invalid_input(
                field,
                format!(
                    "key {label}: Cloud KMS takes at most {MAX_DATA_BYTES} bytes of {field} and \
                     of encoded context, got {len} and {aad}; use generate_data_key (envelope \
                     encryption) for larger data"
                ),
            ));
        }
        Ok(())
    }

    pub(crate) async fn encrypt_inner(
        &self,
        key: &KeyRef,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Vec<u8>> {
        let label = key.to_string();
        let aad = aad_of(context);
        Self::check_sizes(&label, "plaintext", plaintext.len(), aad.len())?;
        let target = self.symmetric_target(key, true)?;
        with_crc_retry(|| async {
            let out = self
                .client
                .encrypt()
                .set_name(&target)
                .set_plaintext(Bytes::copy_from_slice(plaintext))
                .set_plaintext_crc32c(crc32c_i64(plaintext))
                .set_additional_authenticated_data(Bytes::copy_from_slice(&aad))
                .set_additional_authenticated_data_crc32c(crc32c_i64(&aad))
                .send()
                .await
                .map_err(|e| map_gax_error(e, "Encrypt", &label, &target))?;
            if !out.verified_plaintext_crc32c || !out.verified_additional_authenticated_data_crc32c
            {
                return Err(Failure::Crc(Error::integrity(
                    &label,
                    format!(
                        "Encrypt on {target}: the service did not confirm the plaintext and \
                         additional authenticated data checksums"
                    ),
                )));
            }
            if out.ciphertext_crc32c != Some(crc32c_i64(&out.ciphertext)) {
                return Err(Failure::Crc(Error::integrity(
                    &label,
                    format!(
                        "Encrypt on {target}: ciphertextCrc32c does not match the ciphertext \
                         received (corrupted in transit)"
                    ),
                )));
            }
            if out.ciphertext.is_empty() {
                return Err(Failure::Other(Error::integrity(
                    &label,
                    format!("Encrypt on {target} returned no ciphertext"),
                )));
            }
            Ok(out.ciphertext.to_vec())
        })
        .await
    }

    pub(crate) async fn decrypt_inner(
        &self,
        key: &KeyRef,
        ciphertext: &[u8],
        context: &EncryptionContext,
    ) -> Result<SecretBytes> {
        let label = key.to_string();
        let aad = aad_of(context);
        Self::check_sizes(&label, "ciphertext", ciphertext.len(), aad.len())?;
        let target = self.symmetric_target(key, false)?;
        with_crc_retry(|| async {
            let out = self
                .client
                .decrypt()
                .set_name(&target)
                .set_ciphertext(Bytes::copy_from_slice(ciphertext))
                .set_ciphertext_crc32c(crc32c_i64(ciphertext))
                .set_additional_authenticated_data(Bytes::copy_from_slice(&aad))
                .set_additional_authenticated_data_crc32c(crc32c_i64(&aad))
                .send()
                .await
                .map_err(|e| {
                    let e = map_gax_error(e, "Decrypt", &label, &target);
                    // A wrong context or a ciphertext of another key: Cloud KMS answers
                    // INVALID_ARGUMENT ("Decryption failed").
                    match e {
                        Error::InvalidInput { reason, .. } => Error::integrity(&label, reason),
                        other => other,
                    }
                })?;
            let plaintext = SecretBytes::new(out.plaintext.to_vec());
            if out.plaintext_crc32c != Some(crc32c_i64(plaintext.expose())) {
                return Err(Failure::Crc(Error::integrity(
                    &label,
                    format!(
                        "Decrypt on {target}: plaintextCrc32c does not match the plaintext \
                         received (corrupted in transit)"
                    ),
                )));
            }
            Ok(plaintext)
        })
        .await
    }

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

    #[test]
    fn aad_is_unambiguous_and_ordered() {
        let ctx = |pairs: &[(&str, &str)]| -> EncryptionContext {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert!(aad_of(&EncryptionContext::new()).is_empty());
        assert_ne!(aad_of(&ctx(&[("ab", "c")])), aad_of(&ctx(&[("a", "bc")])));
        assert_eq!(
            aad_of(&ctx(&[("b", "2"), ("a", "1")])),
            aad_of(&ctx(&[("a", "1"), ("b", "2")]))
        );
        assert_eq!(
            aad_of(&ctx(&[("k", "v")])),
            [0, 0, 0, 1, b'k', 0, 0, 0, 1, b'v']
        );
    }
}
