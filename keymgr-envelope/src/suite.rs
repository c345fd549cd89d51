//! The committing algorithm suite `0x0478`: AES-256-GCM (12-byte IV, 16-byte tag),
//! HKDF-SHA512 key derivation and key commitment, no signature.
//!
//! Source: AWS Encryption SDK algorithms reference
//! (<https://docs.aws.amazon.com/encryption-sdk/latest/developer-guide/algorithms-reference.html>)
//! and the specification's `framework/algorithm-suites.md` ("Key Derivation" and "Key
//! Commitment"): with salt = the 32-byte message id and IKM = the 32-byte data key,
//! - data encryption key = HKDF-SHA512(info = suite id (u16 BE) ‖ "DERIVEKEY", L = 32);
//! - commitment key = HKDF-SHA512(info = "COMMITKEY", L = 32), stored in the header.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, Tag, UnboundKey};
use aws_lc_rs::hkdf::{HKDF_SHA512, KeyType, Salt};
use zeroize::Zeroizing;

use crate::DataKey;
use crate::error::{EnvelopeError, Result};

/// `AES_256_GCM_HKDF_SHA512_COMMIT_KEY`, the suite keymgr writes and reads.
pub const ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY: u16 = 0x0478;
/// The same suite with an ECDSA P-384 footer signature (not read by keymgr).
pub const ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384: u16 = 0x0578;
/// Data key length in bytes.
pub const DATA_KEY_LEN: usize = 32;
/// AES-GCM IV length in bytes.
pub const IV_LEN: usize = 12;
/// AES-GCM tag length in bytes.
pub const TAG_LEN: usize = 16;
/// Commitment key (algorithm suite data) length in bytes.
pub const COMMITMENT_LEN: usize = 32;

const DERIVE_LABEL: &[u8] = b"DERIVEKEY";
const COMMIT_LABEL: &[u8] = b"COMMITKEY";

struct Len(usize);

impl KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// The per-message keys derived from a data key and a message id.
pub(crate) struct MessageKeys {
    pub(crate) cipher: LessSafeKey,
    pub(crate) commitment: [u8; COMMITMENT_LEN],
}

fn hkdf(data_key: &DataKey, message_id: &[u8; 32], info: &[u8], out: &mut [u8]) -> Result<()> {
    Salt::new(HKDF_SHA512, message_id)
        .extract(data_key.expose())
        .expand(&[info], Len(out.len()))
        .and_then(|okm| okm.fill(out))
        .map_err(|_| crypto_failure("HKDF-SHA512"))
}

/// Derives the data encryption key and commitment key (see the module docs).
pub(crate) fn derive(data_key: &DataKey, message_id: &[u8; 32]) -> Result<MessageKeys> {
    let mut info = Vec::with_capacity(2 + DERIVE_LABEL.len());
    info.extend_from_slice(&ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY.to_be_bytes());
    info.extend_from_slice(DERIVE_LABEL);
    let mut key = Zeroizing::new([0u8; DATA_KEY_LEN]);
    hkdf(data_key, message_id, &info, key.as_mut())?;
    let mut commitment = [0u8; COMMITMENT_LEN];
    hkdf(data_key, message_id, COMMIT_LABEL, &mut commitment)?;
    Ok(MessageKeys {
        cipher: aes_key(key.as_ref())?,
        commitment,
    })
}

/// An AES-256-GCM key.
pub(crate) fn aes_key(key: &[u8]) -> Result<LessSafeKey> {
    UnboundKey::new(&AES_256_GCM, key)
        .map(LessSafeKey::new)
        .map_err(|_| crypto_failure("AES-256-GCM key setup"))
}

/// Seals `in_out` in place; returns the tag.
pub(crate) fn seal(
    key: &LessSafeKey,
    iv: [u8; IV_LEN],
    aad: &[u8],
    in_out: &mut [u8],
) -> Result<[u8; TAG_LEN]> {
    let tag: Tag = key
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(iv), Aad::from(aad), in_out)
        .map_err(|_| crypto_failure("AES-256-GCM seal"))?;
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(tag.as_ref());
    Ok(out)
}

/// Opens `in_out` in place against `tag`; `false` if the tag does not verify (then
/// `in_out` is zeroed, so no unverified plaintext survives).
pub(crate) fn open(
    key: &LessSafeKey,
    iv: [u8; IV_LEN],
    aad: &[u8],
    in_out: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> bool {
    let ok = key
        .open_in_place_separate_tag(
            Nonce::assume_unique_for_key(iv),
            Aad::from(aad),
            tag,
            in_out,
        )
        .is_ok();
    if !ok {
        in_out.fill(0);
    }
    ok
}

fn crypto_failure(what: &str) -> EnvelopeError {
    EnvelopeError::Keyring {
        keyring: "aws-lc".into(),
        source: keymgr_core::Error::backend("aws-lc", format!("{what} failed"), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cross-checked against the Python AWS Encryption SDK by the interop tests
    /// (tests/python_esdk.rs); here: the derivation is deterministic and the two keys
    /// differ.
    #[test]
    fn derivation_is_deterministic() {
        let dk = DataKey::from_bytes([7; 32]);
        let a = derive(&dk, &[1; 32]).unwrap();
        let b = derive(&dk, &[1; 32]).unwrap();
        let c = derive(&dk, &[2; 32]).unwrap();
        assert_eq!(a.commitment, b.commitment);
        assert_ne!(a.commitment, c.commitment);
    }
}
