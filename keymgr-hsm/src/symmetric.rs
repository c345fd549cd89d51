//! AES-GCM with AES keys held in the token (`CKM_AES_GCM`): the symmetric half of
//! [`KeyBackend`](keymgr_core::KeyBackend) for [`HsmBackend`].
//!
//! - Keys: one `CKO_SECRET_KEY` of `CKK_AES` (128, 192 or 256 bits) per `CKA_LABEL`,
//!   found like key pairs (logical names map to labels through [`crate::HsmConfig`];
//!   `name@N` is the label `<label>.vN`). keymgr refuses keys that could leave the token
//!   (`CKA_SENSITIVE` false or `CKA_EXTRACTABLE` true) and uses a key only for what its
//!   `CKA_ENCRYPT` / `CKA_DECRYPT` allow.
//! - Ciphertext: IV (12 bytes, from the token's `C_GenerateRandom`) ‖ AES-GCM
//!   ciphertext ‖ tag (16 bytes), PKCS#11 v3.0 §2.14.3 `CK_GCM_PARAMS` with
//!   `ulTagBits = 128`.
//! - AAD: the encryption context serialized as in the AWS Encryption SDK message format
//!   (<https://docs.aws.amazon.com/encryption-sdk/latest/developer-guide/message-format.html#header-aad>),
//!   the AAD of the raw AES keyring's data-key wrapping
//!   (`aws-encryption-sdk-specification`, `framework/raw-aes-keyring.md`): so a data key
//!   wrapped here unwraps with a raw AES keyring holding the same key value.

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use keymgr_core::{DataKey, EncryptionContext, Error, KeyRef, Result, SecretBytes};
use zeroize::Zeroizing;

use crate::backend::{HsmBackend, Inner};
use crate::error;
use crate::keys;
use crate::rotation;
use crate::session_pool::Failure;

/// IV length of the ciphertext format, bytes.
pub const AES_GCM_IV_LEN: usize = 12;
/// Tag length of the ciphertext format, bytes.
pub const AES_GCM_TAG_LEN: usize = 16;
/// Length of a data key from `generate_data_key`, bytes (AES-256).
const DATA_KEY_LEN: u32 = 32;

/// What a key is used for in one call (checked against `CKA_ENCRYPT` / `CKA_DECRYPT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    Encrypt,
    Decrypt,
}

/// Serializes `context` as the AWS Encryption SDK does (see the module docs): empty →
/// no bytes; else pair count (u16 BE), then per pair sorted by key bytes: key length
/// (u16 BE), key, value length (u16 BE), value. Errors when a count or length does not
/// fit 16 bits.
pub fn context_aad(context: &EncryptionContext) -> Result<Vec<u8>> {
    if context.is_empty() {
        return Ok(Vec::new());
    }
    let too_big = |what: String| {
        Error::invalid_input(
            "encryption context",
            format!("{what}; the serialized context is limited to 65535 bytes"),
        )
    };
    let count = u16::try_from(context.len())
        .map_err(|_| too_big(format!("{} pairs (at most 65535)", context.len())))?;
    let mut out = count.to_be_bytes().to_vec();
    // BTreeMap<String, _> iterates in key byte order, the order the format requires.
    for (key, value) in context {
        for part in [key, value] {
            let len = u16::try_from(part.len())
                .map_err(|_| too_big(format!("key {key:?} has a {}-byte part", part.len())))?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(part.as_bytes());
        }
    }
    if out.len() > usize::from(u16::MAX) {
        return Err(too_big(format!("it serializes to {} bytes", out.len())));
    }
    Ok(out)
}

fn gcm_failure(label: &str) -> impl Fn(CkError) -> Failure + '_ {
    move |e| Failure::Pkcs11(e, Some(label.to_owned()))
}

impl Inner {
    /// The AES key behind `key`, checked for `usage`.
    fn aes_key(
        &self,
        s: &Session,
        key: &KeyRef,
        usage: Use,
    ) -> std::result::Result<(String, ObjectHandle), Failure> {
        let base = self.config.base_label(key.name());
        let label = match key.version() {
            Some(v) => rotation::versioned_label(base, v)?,
            None => base.to_owned(),
        };
        let name = key.to_string();
        let wrap = gcm_failure(&label);
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
        ];
        let mut found = s.find_objects(&template).map_err(&wrap)?;
        if found.is_empty() {
            // Private objects are invisible when logged out behind our back.
            self.pool.token().ensure_login(true)?;
            found = s.find_objects(&template).map_err(&wrap)?;
        }
        let handle = match found.as_slice() {
            [one] => *one,
            [] => {
                return Err(Error::not_found(
                    name,
                    format!(
                        "no secret key labelled {label:?} on token {:?}",
                        self.pool.token().label()
                    ),
                )
                .into());
            }
            many => return Err(keys::collision(&name, &label, many.len(), "secret key").into()),
        };
        let attrs = s
            .get_attributes(
                handle,
                &[
                    AttributeType::KeyType,
                    AttributeType::ValueLen,
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::Encrypt,
                    AttributeType::Decrypt,
                ],
            )
            .map_err(&wrap)?;
        let (mut key_type, mut len) = (None, None);
        let (mut sensitive, mut extractable, mut encrypt, mut decrypt) =
            (false, true, false, false);
        for a in attrs {
            match a {
                Attribute::KeyType(t) => key_type = Some(t),
                Attribute::ValueLen(l) => len = Some(u64::from(l)),
                Attribute::Sensitive(b) => sensitive = b,
                Attribute::Extractable(b) => extractable = b,
                Attribute::Encrypt(b) => encrypt = b,
                Attribute::Decrypt(b) => decrypt = b,
                _ => {}
            }
        }
        let what = format!("secret key labelled {label:?}");
        if key_type != Some(KeyType::AES) || !matches!(len, Some(16 | 24 | 32)) {
            return Err(Error::config(
                format!("CKA_LABEL {label:?}"),
                "an AES key (CKK_AES) of 16, 24 or 32 bytes",
                format!("{what} has key type {key_type:?} and CKA_VALUE_LEN {len:?}"),
            )
            .into());
        }
        if !sensitive || extractable {
            return Err(Error::access_denied(
                name,
                format!(
                    "{what} can leave the token (CKA_SENSITIVE {sensitive}, CKA_EXTRACTABLE \
                     {extractable}); keymgr only uses keys with CKA_SENSITIVE true and \
                     CKA_EXTRACTABLE false"
                ),
            )
            .into());
        }
        let (allowed, attribute) = match usage {
            Use::Encrypt => (encrypt, "CKA_ENCRYPT"),
            Use::Decrypt => (decrypt, "CKA_DECRYPT"),
        };
        if !allowed {
            return Err(Error::access_denied(name, format!("{what} has {attribute} false")).into());
        }
        Ok((label.clone(), handle))
    }

    /// IV ‖ AES-GCM(plaintext) ‖ tag under `key`.
    fn aes_encrypt(
        &self,
        s: &Session,
        key: &KeyRef,
        plaintext: &[u8],
        aad: &[u8],
    ) -> std::result::Result<Vec<u8>, Failure> {
        let (label, handle) = self.aes_key(s, key, Use::Encrypt)?;
        let wrap = gcm_failure(&label);
        let mut iv = [0u8; AES_GCM_IV_LEN];
        s.generate_random_slice(&mut iv).map_err(&wrap)?;
        let mut iv_param = iv;
        let params = GcmParams::new(&mut iv_param, aad, (AES_GCM_TAG_LEN as u64 * 8).into())
            .map_err(&wrap)?;
        let sealed = s
            .encrypt(&Mechanism::AesGcm(params), handle, plaintext)
            .map_err(&wrap)?;
        if sealed.len() != plaintext.len() + AES_GCM_TAG_LEN {
            return Err(Error::integrity(
                key.to_string(),
                format!(
                    "C_Encrypt (CKM_AES_GCM) returned {} bytes for {} bytes of plaintext; \
                     expected ciphertext and a {AES_GCM_TAG_LEN}-byte tag",
                    sealed.len(),
                    plaintext.len()
                ),
            )
            .into());
        }
        let mut out = Vec::with_capacity(AES_GCM_IV_LEN + sealed.len());
        out.extend_from_slice(&iv);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens what [`aes_encrypt`](Self::aes_encrypt) made.
    fn aes_decrypt(
        &self,
        s: &Session,
        key: &KeyRef,
        ciphertext: &[u8],
        aad: &[u8],
    ) -> std::result::Result<SecretBytes, Failure> {
        let (label, handle) = self.aes_key(s, key, Use::Decrypt)?;
        let mut iv = [0u8; AES_GCM_IV_LEN];
        iv.copy_from_slice(&ciphertext[..AES_GCM_IV_LEN]);
        let params = GcmParams::new(&mut iv, aad, (AES_GCM_TAG_LEN as u64 * 8).into())
            .map_err(gcm_failure(&label))?;
        match s.decrypt(
            &Mechanism::AesGcm(params),
            handle,
            &ciphertext[AES_GCM_IV_LEN..],
        ) {
            Ok(plaintext) => Ok(SecretBytes::new(plaintext)),
            // A tag mismatch: PKCS#11 v3.0 says CKR_ENCRYPTED_DATA_INVALID; SoftHSM2 2.6
            // answers CKR_GENERAL_ERROR from C_Decrypt for it (its AEAD final step fails).
            Err(e) if is_tag_mismatch(&e) => Err(Error::integrity(
                key.to_string(),
                format!(
                    "the ciphertext does not authenticate under the AES key labelled {label:?} \
                     and this encryption context (AES-GCM authentication failed: {} from C_Decrypt)",
                    error::rv(&e).map(error::ckr_name).unwrap_or_default()
                ),
            )
            .into()),
            Err(e) => Err(Failure::Pkcs11(e, Some(label))),
        }
    }
}

fn is_tag_mismatch(e: &CkError) -> bool {
    matches!(
        error::rv(e),
        Some(RvError::EncryptedDataInvalid | RvError::GeneralError)
    )
}

impl HsmBackend {
    pub(crate) async fn encrypt_inner(
        &self,
        key: &KeyRef,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Vec<u8>> {
        let aad = context_aad(context)?;
        let (inner, k) = (self.inner.clone(), key.clone());
        let plaintext = Zeroizing::new(plaintext.to_vec());
        self.inner
            .pool
            .run(move |s, _| inner.aes_encrypt(s, &k, &plaintext, &aad))
            .await
            .map_err(|f| self.inner.map_failure(f, key))
    }

    pub(crate) async fn decrypt_inner(
        &self,
        key: &KeyRef,
        ciphertext: &[u8],
        context: &EncryptionContext,
    ) -> Result<SecretBytes> {
        let min = AES_GCM_IV_LEN + AES_GCM_TAG_LEN;
        if ciphertext.len() < min {
            return Err(Error::invalid_input(
                "ciphertext",
                format!(
                    "{} bytes; an HSM AES-GCM ciphertext is IV ({AES_GCM_IV_LEN}) ‖ data ‖ tag \
                     ({AES_GCM_TAG_LEN}), at least {min} bytes",
                    ciphertext.len()
                ),
            ));
        }
        let aad = context_aad(context)?;
        let (inner, k, c) = (self.inner.clone(), key.clone(), ciphertext.to_vec());
        self.inner
            .pool
            .run(move |s, _| inner.aes_decrypt(s, &k, &c, &aad))
            .await
            .map_err(|f| self.inner.map_failure(f, key))
    }

    pub(crate) async fn generate_data_key_inner(
        &self,
        key: &KeyRef,
        context: &EncryptionContext,
    ) -> Result<DataKey> {
        let aad = context_aad(context)?;
        let (inner, k) = (self.inner.clone(), key.clone());
        self.inner
            .pool
            .run(move |s, _| {
                let plaintext = SecretBytes::new(
                    s.generate_random_vec(DATA_KEY_LEN)
                        .map_err(|e| Failure::Pkcs11(e, None))?,
                );
                let ciphertext = inner.aes_encrypt(s, &k, plaintext.expose(), &aad)?;
                Ok(DataKey {
                    plaintext,
                    ciphertext,
                })
            })
            .await
            .map_err(|f| self.inner.map_failure(f, key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_aad_is_the_esdk_serialization() {
        assert!(context_aad(&EncryptionContext::new()).unwrap().is_empty());
        let ctx: EncryptionContext = [("b", "2"), ("a", "1")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(
            context_aad(&ctx).unwrap(),
            [0, 2, 0, 1, b'a', 0, 1, b'1', 0, 1, b'b', 0, 1, b'2']
        );
        let big: EncryptionContext = [("k".to_owned(), "v".repeat(70_000))].into();
        assert_eq!(
            context_aad(&big).unwrap_err().kind(),
            keymgr_core::ErrorKind::InvalidInput
        );
    }
}
