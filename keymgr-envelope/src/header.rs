//! The message header, version 2.
//!
//! Layout (AWS Encryption SDK message format reference, "Header structure", version 2:
//! <https://docs.aws.amazon.com/encryption-sdk/latest/developer-guide/message-format.html#header-structure>),
//! all integers big-endian:
//!
//! | field | bytes |
//! |---|---|
//! | version `0x02` | 1 |
//! | algorithm id (`0x0478`) | 2 |
//! | message id | 32 |
//! | AAD length | 2 |
//! | AAD (serialized encryption context, [`crate::context`]) | AAD length |
//! | encrypted data key count (≥ 1) | 2 |
//! | per key: provider id length, provider id (UTF-8), provider info length, provider info, ciphertext length, ciphertext | 2 + n each |
//! | content type (`0x02` framed) | 1 |
//! | frame length (≥ 1) | 4 |
//! | algorithm suite data (commitment key) | 32 |
//!
//! followed by the header authentication tag (16 bytes): AES-GCM with the derived key,
//! an all-zero IV, empty plaintext and the header bytes above as AAD.

use keymgr_core::EncryptionContext;

use crate::context;
use crate::error::{EnvelopeError, Field, Limit, Result};
use crate::parse::Cursor;
use crate::suite::{ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY, COMMITMENT_LEN, TAG_LEN};

/// Message format version 2.
pub const VERSION_2: u8 = 0x02;
/// Content type: framed.
pub const CONTENT_FRAMED: u8 = 0x02;
/// Content type: non-framed (not read by keymgr).
pub const CONTENT_NON_FRAMED: u8 = 0x01;

/// One data key wrapped by one KEK, as stored in the header.
///
/// Provider ids: `aws-kms` (AWS KMS; provider info = the KMS key ARN, ciphertext = the
/// KMS ciphertext blob), or a raw AES keyring's namespace (provider info = key name ‖
/// tag length in bits (u32) ‖ IV length (u32) ‖ IV; ciphertext = wrapped key ‖ tag).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EncryptedDataKey {
    /// Key provider id (UTF-8), at most 65535 bytes.
    pub provider_id: String,
    /// Key provider info, at most 65535 bytes.
    pub provider_info: Vec<u8>,
    /// The wrapped data key, at most 65535 bytes.
    pub ciphertext: Vec<u8>,
}

impl EncryptedDataKey {
    /// The wrapping key this entry names, for people: the KMS key ARN for `aws-kms`; the
    /// key name for raw AES entries (provider info without tag length, IV length, IV);
    /// otherwise the provider info, lossily as UTF-8.
    pub fn key_name(&self) -> String {
        let info = &self.provider_info;
        let raw_suffix = 4 + 4 + crate::suite::IV_LEN;
        let name = if self.provider_id != crate::PROVIDER_ID_AWS_KMS
            && info.len() > raw_suffix
            && info[info.len() - raw_suffix..info.len() - raw_suffix + 8]
                == [0, 0, 0, 128, 0, 0, 0, 12]
        {
            &info[..info.len() - raw_suffix]
        } else {
            &info[..]
        };
        String::from_utf8_lossy(name).into_owned()
    }
}

/// A parsed (or to-be-written) message header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Random 32-byte message id (the HKDF salt).
    pub message_id: [u8; 32],
    /// The encryption context (AAD).
    pub context: EncryptionContext,
    /// The data key, wrapped once per KEK.
    pub encrypted_data_keys: Vec<EncryptedDataKey>,
    /// Plaintext bytes per frame.
    pub frame_length: u32,
    /// The commitment key (algorithm suite data).
    pub commitment: [u8; COMMITMENT_LEN],
}

/// Limits applied while parsing a header (see [`crate::DecryptOptions`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeaderLimits {
    pub(crate) max_frame_length: u32,
    pub(crate) max_encrypted_data_keys: u16,
}

fn short(field: Field, len: usize) -> Result<[u8; 2]> {
    u16::try_from(len)
        .map(u16::to_be_bytes)
        .map_err(|_| EnvelopeError::malformed(field, 0, format!("{len} bytes; at most 65535")))
}

impl Header {
    /// The header body (everything the authentication tag covers).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let aad = context::serialize(&self.context)?;
        let mut out = Vec::with_capacity(128 + aad.len());
        out.push(VERSION_2);
        out.extend_from_slice(&ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY.to_be_bytes());
        out.extend_from_slice(&self.message_id);
        out.extend_from_slice(&short(Field::AadLength, aad.len())?);
        out.extend_from_slice(&aad);
        if self.encrypted_data_keys.is_empty() {
            return Err(EnvelopeError::malformed(
                Field::EncryptedDataKeyCount,
                0,
                "a message needs at least one encrypted data key",
            ));
        }
        out.extend_from_slice(&short(
            Field::EncryptedDataKeyCount,
            self.encrypted_data_keys.len(),
        )?);
        for edk in &self.encrypted_data_keys {
            for (field, part) in [
                (Field::KeyProviderId, edk.provider_id.as_bytes()),
                (Field::KeyProviderInfo, &edk.provider_info),
                (Field::EncryptedDataKey, &edk.ciphertext),
            ] {
                out.extend_from_slice(&short(field, part.len())?);
                out.extend_from_slice(part);
            }
        }
        out.push(CONTENT_FRAMED);
        out.extend_from_slice(&self.frame_length.to_be_bytes());
        out.extend_from_slice(&self.commitment);
        Ok(out)
    }

    /// Parses a header body from the start of `bytes`; returns it and its length (the
    /// authentication tag follows). [`EnvelopeError::Truncated`] if `bytes` ends first.
    pub(crate) fn parse(bytes: &[u8], limits: HeaderLimits) -> Result<(Header, usize)> {
        let mut cur = Cursor::new(bytes, 0);
        let version = cur.u8(Field::Version)?;
        if version != VERSION_2 {
            return Err(EnvelopeError::UnsupportedVersion(version));
        }
        let algorithm = cur.u16(Field::AlgorithmId)?;
        if algorithm != ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY {
            return Err(EnvelopeError::UnsupportedAlgorithm(algorithm));
        }
        let message_id = cur.array::<32>(Field::MessageId)?;
        let aad_len = cur.u16(Field::AadLength)?;
        let aad_at = cur.offset();
        let aad = cur.take(usize::from(aad_len), Field::EncryptionContext)?;
        let context = context::parse(aad, aad_at)?;
        let count_at = cur.offset();
        let count = cur.u16(Field::EncryptedDataKeyCount)?;
        if count == 0 {
            return Err(EnvelopeError::malformed(
                Field::EncryptedDataKeyCount,
                count_at,
                "zero encrypted data keys",
            ));
        }
        if count > limits.max_encrypted_data_keys {
            return Err(EnvelopeError::LimitExceeded {
                limit: Limit::EncryptedDataKeys,
                actual: count.into(),
                max: limits.max_encrypted_data_keys.into(),
            });
        }
        let mut encrypted_data_keys = Vec::with_capacity(usize::from(count.min(16)));
        for _ in 0..count {
            let provider_id = cur.string(Field::KeyProviderId)?;
            let provider_info = cur.short_bytes(Field::KeyProviderInfo)?.to_vec();
            let at = cur.offset();
            let ciphertext = cur.short_bytes(Field::EncryptedDataKey)?.to_vec();
            if ciphertext.is_empty() {
                return Err(EnvelopeError::malformed(
                    Field::EncryptedDataKey,
                    at,
                    "empty encrypted data key",
                ));
            }
            encrypted_data_keys.push(EncryptedDataKey {
                provider_id,
                provider_info,
                ciphertext,
            });
        }
        let content_at = cur.offset();
        match cur.u8(Field::ContentType)? {
            CONTENT_FRAMED => {}
            CONTENT_NON_FRAMED => {
                return Err(EnvelopeError::UnsupportedContentType(CONTENT_NON_FRAMED));
            }
            other => {
                return Err(EnvelopeError::malformed(
                    Field::ContentType,
                    content_at,
                    format!("unknown content type {other:#04x}"),
                ));
            }
        }
        let frame_at = cur.offset();
        let frame_length = cur.u32(Field::FrameLength)?;
        if frame_length == 0 {
            return Err(EnvelopeError::malformed(
                Field::FrameLength,
                frame_at,
                "frame length 0 in a framed message",
            ));
        }
        if frame_length > limits.max_frame_length {
            return Err(EnvelopeError::LimitExceeded {
                limit: Limit::FrameLength,
                actual: frame_length.into(),
                max: limits.max_frame_length.into(),
            });
        }
        let commitment = cur.array::<COMMITMENT_LEN>(Field::AlgorithmSuiteData)?;
        Ok((
            Header {
                message_id,
                context,
                encrypted_data_keys,
                frame_length,
                commitment,
            },
            cur.position(),
        ))
    }
}

/// Length of the header authentication section in v2 (the tag only; the IV is all zero
/// and not serialized).
pub(crate) const HEADER_AUTH_LEN: usize = TAG_LEN;

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const LIMITS: HeaderLimits = HeaderLimits {
        max_frame_length: 1 << 20,
        max_encrypted_data_keys: 10,
    };

    fn sample() -> Header {
        Header {
            message_id: [9; 32],
            context: [("purpose".to_owned(), "test".to_owned())]
                .into_iter()
                .collect(),
            encrypted_data_keys: vec![EncryptedDataKey {
                provider_id: "aws-kms".into(),
                provider_info: b"arn:aws:kms:us-east-1:123456789012:key/k".to_vec(),
                ciphertext: vec![1, 2, 3],
            }],
            frame_length: 4096,
            commitment: [5; 32],
        }
    }

    #[test]
    fn round_trip() {
        let h = sample();
        let bytes = h.to_bytes().unwrap();
        let (parsed, len) = Header::parse(&bytes, LIMITS).unwrap();
        assert_eq!(parsed, h);
        assert_eq!(len, bytes.len());
    }

    #[test]
    fn every_prefix_is_truncated() {
        let bytes = sample().to_bytes().unwrap();
        for n in 0..bytes.len() {
            match Header::parse(&bytes[..n], LIMITS) {
                Err(EnvelopeError::Truncated { offset, .. }) => assert_eq!(offset, n as u64),
                other => panic!("prefix {n}: {other:?}"),
            }
        }
    }

    #[test]
    fn field_values_checked() {
        let bytes = sample().to_bytes().unwrap();
        let mut v1 = bytes.clone();
        v1[0] = 1;
        assert!(matches!(
            Header::parse(&v1, LIMITS),
            Err(EnvelopeError::UnsupportedVersion(1))
        ));
        let mut signing = bytes.clone();
        signing[1..3].copy_from_slice(&0x0578u16.to_be_bytes());
        assert!(matches!(
            Header::parse(&signing, LIMITS),
            Err(EnvelopeError::UnsupportedAlgorithm(0x0578))
        ));
        let content_at = bytes.len() - 32 - 4 - 1;
        let mut non_framed = bytes.clone();
        non_framed[content_at] = 1;
        assert!(matches!(
            Header::parse(&non_framed, LIMITS),
            Err(EnvelopeError::UnsupportedContentType(1))
        ));
        let mut zero_frame = bytes.clone();
        zero_frame[content_at + 1..content_at + 5].copy_from_slice(&[0; 4]);
        assert!(matches!(
            Header::parse(&zero_frame, LIMITS),
            Err(EnvelopeError::Malformed {
                field: Field::FrameLength,
                ..
            })
        ));
        let mut huge_frame = bytes.clone();
        huge_frame[content_at + 1..content_at + 5].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            Header::parse(&huge_frame, LIMITS),
            Err(EnvelopeError::LimitExceeded {
                limit: Limit::FrameLength,
                ..
            })
        ));
    }
}
