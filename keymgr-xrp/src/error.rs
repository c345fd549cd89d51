//! Typed errors: each invalid input names its field, and none echoes the input itself
//! (a seed pasted into the wrong argument must not end up in a log).

use keymgr_core::ErrorKind;

use crate::{ChannelId, Drops};

/// What went wrong while encoding, signing or verifying a claim.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum XrpError {
    /// The channel id is not 64 hex characters.
    #[error("invalid channel: {reason}")]
    InvalidChannel {
        /// What was wrong and what is expected.
        reason: String,
    },
    /// The amount is not a whole number of drops in `1..=10^17`.
    #[error("invalid amount: {reason}")]
    InvalidAmount {
        /// What was wrong and what is expected.
        reason: String,
    },
    /// The signature is not hex, or not a DER (secp256k1) / 64-byte (Ed25519) signature.
    #[error("invalid signature: {reason}")]
    InvalidSignature {
        /// What was wrong and what is expected.
        reason: String,
    },
    /// The public key is not an XRPL public key (`ED` + 32 bytes, or 33-byte compressed
    /// secp256k1, in hex or as an `a...` base58 account public key).
    #[error("invalid public key: {reason}")]
    InvalidPublicKey {
        /// What was wrong and what is expected.
        reason: String,
    },
    /// The monotonic guard refused a claim below one this signer already issued.
    #[error(
        "claim amount for channel {channel} would decrease from {previous} to {requested} drops; \
         claims are cumulative and this signer never signs a lower amount for a channel \
         (disable the guard with ClaimSignerBuilder::monotonic_guard(false) if that is intended)"
    )]
    AmountDecreased {
        /// The channel.
        channel: ChannelId,
        /// The highest amount already signed for it.
        previous: Drops,
        /// The amount that was asked for.
        requested: Drops,
    },
    /// The backend (or keymgr core) failed: key not found, access denied, unavailable,
    /// a signature that does not verify, ...
    #[error(transparent)]
    Backend(#[from] keymgr_core::Error),
}

impl XrpError {
    /// The input field the error is about (`channel`, `amount`, `signature`,
    /// `public key`), if it is about one.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            XrpError::InvalidChannel { .. } => Some("channel"),
            XrpError::InvalidAmount { .. } | XrpError::AmountDecreased { .. } => Some("amount"),
            XrpError::InvalidSignature { .. } => Some("signature"),
            XrpError::InvalidPublicKey { .. } => Some("public key"),
            XrpError::Backend(_) => None,
        }
    }

    /// The category, as keymgr's own errors report it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            XrpError::Backend(e) => e.kind(),
            _ => ErrorKind::InvalidInput,
        }
    }

    /// Whether the same call may succeed if retried later (only some backend failures).
    pub fn is_retryable(&self) -> bool {
        matches!(self, XrpError::Backend(e) if e.is_retryable())
    }

    pub(crate) fn channel(reason: impl Into<String>) -> Self {
        XrpError::InvalidChannel {
            reason: reason.into(),
        }
    }

    pub(crate) fn amount(reason: impl Into<String>) -> Self {
        XrpError::InvalidAmount {
            reason: reason.into(),
        }
    }

    pub(crate) fn signature(reason: impl Into<String>) -> Self {
        XrpError::InvalidSignature {
            reason: reason.into(),
        }
    }

    pub(crate) fn public_key(reason: impl Into<String>) -> Self {
        XrpError::InvalidPublicKey {
            reason: reason.into(),
        }
    }
}

impl From<XrpError> for keymgr_core::Error {
    /// Invalid inputs become [`keymgr_core::Error::InvalidInput`] naming the field;
    /// backend errors pass through unchanged.
    fn from(e: XrpError) -> Self {
        match e {
            XrpError::Backend(inner) => inner,
            other => {
                let field = other.field().unwrap_or("input");
                let reason = match &other {
                    XrpError::InvalidChannel { reason }
                    | XrpError::InvalidAmount { reason }
                    | XrpError::InvalidSignature { reason }
                    | XrpError::InvalidPublicKey { reason } => reason.clone(),
                    _ => other.to_string(),
                };
                keymgr_core::Error::invalid_input(field, reason)
            }
        }
    }
}

/// Describes why `s` is not hex without quoting it.
pub(crate) fn hex_problem(s: &str) -> String {
    match s.char_indices().find(|(_, c)| !c.is_ascii_hexdigit()) {
        Some((i, c)) if c.is_whitespace() => {
            format!("whitespace at position {i}; expected hex characters only")
        }
        Some((i, _)) => format!("non-hex character at position {i}"),
        None if s.len() % 2 == 1 => format!("odd number of hex characters ({})", s.len()),
        None => "not hex".to_owned(),
    }
}
