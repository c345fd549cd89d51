//! The envelope error type: every malformed, truncated or tampered message is a typed
//! variant naming the field (and byte offset) that failed.

use std::fmt;

use keymgr_core::ErrorKind;

/// Result alias for this crate.
pub type Result<T, E = EnvelopeError> = std::result::Result<T, E>;

/// A field of the message format, as named by the AWS Encryption SDK message format
/// reference (<https://docs.aws.amazon.com/encryption-sdk/latest/developer-guide/message-format.html>).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Field {
    /// Header: version (1 byte).
    Version,
    /// Header: algorithm suite id (2 bytes).
    AlgorithmId,
    /// Header: message id (32 bytes in v2).
    MessageId,
    /// Header: AAD (serialized encryption context) length (2 bytes).
    AadLength,
    /// Header: the serialized encryption context.
    EncryptionContext,
    /// Header: encrypted data key count (2 bytes).
    EncryptedDataKeyCount,
    /// Header: one encrypted data key's provider id.
    KeyProviderId,
    /// Header: one encrypted data key's provider info.
    KeyProviderInfo,
    /// Header: one encrypted data key's ciphertext.
    EncryptedDataKey,
    /// Header: content type (1 byte).
    ContentType,
    /// Header: frame length (4 bytes).
    FrameLength,
    /// Header: algorithm suite data (the 32-byte commitment key for 0x0478).
    AlgorithmSuiteData,
    /// Header authentication tag (16 bytes).
    HeaderAuthTag,
    /// Body: a frame's sequence number, or the final-frame marker `0xFFFFFFFF`.
    SequenceNumber,
    /// Body: a frame's IV (12 bytes).
    Iv,
    /// Body: the final frame's encrypted content length (4 bytes).
    EncryptedContentLength,
    /// Body: a frame's encrypted content.
    EncryptedContent,
    /// Body: a frame's authentication tag (16 bytes).
    AuthTag,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Field::Version => "version",
            Field::AlgorithmId => "algorithm id",
            Field::MessageId => "message id",
            Field::AadLength => "AAD length",
            Field::EncryptionContext => "encryption context",
            Field::EncryptedDataKeyCount => "encrypted data key count",
            Field::KeyProviderId => "key provider id",
            Field::KeyProviderInfo => "key provider info",
            Field::EncryptedDataKey => "encrypted data key",
            Field::ContentType => "content type",
            Field::FrameLength => "frame length",
            Field::AlgorithmSuiteData => "algorithm suite data (commitment key)",
            Field::HeaderAuthTag => "header authentication tag",
            Field::SequenceNumber => "frame sequence number (or final-frame marker)",
            Field::Iv => "frame IV",
            Field::EncryptedContentLength => "final frame content length",
            Field::EncryptedContent => "frame content",
            Field::AuthTag => "frame authentication tag",
        };
        f.write_str(name)
    }
}

/// A limit the reader or writer enforces (see [`crate::DecryptOptions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Limit {
    /// Frame length in the header above [`crate::DecryptOptions::max_frame_length`].
    FrameLength,
    /// More encrypted data keys than [`crate::DecryptOptions::max_encrypted_data_keys`].
    EncryptedDataKeys,
    /// A header larger than [`crate::DecryptOptions::max_header_bytes`].
    HeaderBytes,
    /// More frames than the format allows (2^32 - 1).
    FrameCount,
}

/// One keyring's failed attempt at unwrapping a data key.
#[derive(Debug)]
pub struct UnwrapAttempt {
    /// The keyring ([`crate::Keyring::name`]).
    pub keyring: String,
    /// The provider id of the encrypted data key it tried.
    pub provider_id: String,
    /// Why it failed.
    pub error: keymgr_core::Error,
}

/// Everything that can go wrong encrypting or decrypting a message.
///
/// No variant carries key material, plaintext or encrypted data keys.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// A field holds a value the format forbids.
    #[error("malformed message: {field} at byte {offset}: {reason}")]
    Malformed {
        /// The field.
        field: Field,
        /// Its offset from the start of the message.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The message ends inside `field` (for the body: before the final frame).
    #[error("message truncated: it ends in the {field} at byte {offset}")]
    Truncated {
        /// The field that is cut short or missing.
        field: Field,
        /// Where the message ended.
        offset: u64,
    },
    /// Not message format version 2.
    #[error("unsupported message format version {0:#04x}: keymgr reads version 2 (0x02)")]
    UnsupportedVersion(u8),
    /// Not a supported algorithm suite.
    #[error(
        "unsupported algorithm suite {0:#06x}: keymgr reads 0x0478 (AES-256-GCM, HKDF-SHA512, key commitment, no signature)"
    )]
    UnsupportedAlgorithm(u16),
    /// Non-framed content (0x01): it cannot be decrypted with constant memory.
    #[error("unsupported content type {0:#04x}: keymgr reads framed content (0x02) only")]
    UnsupportedContentType(u8),
    /// The commitment key in the header does not match the data key (wrong key, or an
    /// altered header).
    #[error("key commitment mismatch: the data key does not commit to this message")]
    Commitment,
    /// The header authentication tag does not verify (header altered).
    #[error("header authentication failed: the header was altered")]
    HeaderAuthentication,
    /// A frame's tag does not verify (content, sequence, length or context altered).
    #[error("frame {sequence} failed authentication")]
    FrameAuthentication {
        /// The frame's sequence number.
        sequence: u32,
    },
    /// Frames out of order, repeated or dropped.
    #[error("frame out of order: expected sequence number {expected}, found {found}")]
    FrameSequence {
        /// The sequence number due.
        expected: u32,
        /// The one in the message.
        found: u32,
    },
    /// Bytes follow the final frame.
    #[error("trailing data after the final frame at byte {offset}")]
    TrailingData {
        /// Where the extra bytes start.
        offset: u64,
    },
    /// The encryption context breaks a rule (reserved prefix, too large, not UTF-8).
    #[error("invalid encryption context: {reason}")]
    InvalidContext {
        /// The offending key, when one key is to blame.
        key: Option<String>,
        /// What is wrong.
        reason: String,
    },
    /// The message's encryption context lacks a pair the caller required.
    #[error(
        "encryption context mismatch for key {key:?}: expected {expected:?}, found {}",
        found.as_deref().map_or_else(|| "no such key".to_owned(), |v| format!("{v:?}"))
    )]
    ContextMismatch {
        /// The context key.
        key: String,
        /// The value the caller required.
        expected: String,
        /// What the message holds (`None`: absent).
        found: Option<String>,
    },
    /// A reader or writer limit was exceeded.
    #[error("limit exceeded: {limit:?} is {actual}, at most {max} allowed")]
    LimitExceeded {
        /// Which limit.
        limit: Limit,
        /// The value found.
        actual: u64,
        /// The limit.
        max: u64,
    },
    /// No configured keyring could unwrap any encrypted data key of the message.
    #[error(
        "no keyring could decrypt the data key; the message has it under {}; {} attempts{}",
        entries.join(", "),
        attempts.len(),
        summary(attempts)
    )]
    NoDecryptableKey {
        /// The message's entries as `provider id:key` (see
        /// [`crate::EncryptedDataKey::key_name`]), so the caller knows which KEK to bring.
        entries: Vec<String>,
        /// Each failed attempt, in the order tried (empty: no keyring matched any entry).
        attempts: Vec<UnwrapAttempt>,
    },
    /// A keyring failed while encrypting (generating or wrapping the data key).
    #[error("keyring {keyring}: {source}")]
    Keyring {
        /// The keyring.
        keyring: String,
        /// The backend error.
        #[source]
        source: keymgr_core::Error,
    },
    /// Reading the input or writing the output failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

fn summary(attempts: &[UnwrapAttempt]) -> String {
    attempts
        .iter()
        .map(|a| format!("; {} ({}): {}", a.keyring, a.provider_id, a.error))
        .collect()
}

impl EnvelopeError {
    /// The matching `keymgr_core` category: tampering and malformed input are
    /// [`ErrorKind::Integrity`] / [`ErrorKind::InvalidInput`]; keyring failures keep
    /// their backend's kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            EnvelopeError::Malformed { .. }
            | EnvelopeError::Truncated { .. }
            | EnvelopeError::Commitment
            | EnvelopeError::HeaderAuthentication
            | EnvelopeError::FrameAuthentication { .. }
            | EnvelopeError::FrameSequence { .. }
            | EnvelopeError::TrailingData { .. }
            | EnvelopeError::ContextMismatch { .. } => ErrorKind::Integrity,
            EnvelopeError::UnsupportedVersion(_)
            | EnvelopeError::UnsupportedAlgorithm(_)
            | EnvelopeError::UnsupportedContentType(_) => ErrorKind::Unsupported,
            EnvelopeError::InvalidContext { .. } | EnvelopeError::LimitExceeded { .. } => {
                ErrorKind::InvalidInput
            }
            EnvelopeError::NoDecryptableKey { attempts, .. } => attempts
                .iter()
                .map(|a| a.error.kind())
                .find(|k| *k != ErrorKind::NotFound)
                .unwrap_or(ErrorKind::NotFound),
            EnvelopeError::Keyring { source, .. } => source.kind(),
            EnvelopeError::Io(_) => ErrorKind::Backend,
        }
    }

    pub(crate) fn malformed(field: Field, offset: u64, reason: impl Into<String>) -> Self {
        EnvelopeError::Malformed {
            field,
            offset,
            reason: reason.into(),
        }
    }
}
