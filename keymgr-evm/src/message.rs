//! How an EIP-191 message given as a string is read: text or hex bytes, never guessed
//! silently.

use crate::RequestError;

/// How to read a message string before EIP-191 signing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageReading {
    /// The UTF-8 bytes of the string, whatever it looks like (`0x7f3a…` is 18 bytes of
    /// text), as ethers' `signMessage(string)`, viem's `signMessage({ message })` and
    /// eth-account's `encode_defunct(text=…)` read it. keymgr's default.
    Text,
    /// `0x` followed by an even number of hex digits: the decoded bytes (viem's
    /// `{ raw }`, eth-account's `encode_defunct(hexstr=…)`).
    Hex,
}

impl MessageReading {
    /// `"text"` or `"hex"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Hex => "hex",
        }
    }
}

/// The bytes to sign for `message` read as `reading`. Hex must be `0x` followed by
/// an even number of hex digits (either case); errors name the field `message`.
pub fn message_bytes(message: &str, reading: MessageReading) -> Result<Vec<u8>, RequestError> {
    match reading {
        MessageReading::Text => Ok(message.as_bytes().to_vec()),
        MessageReading::Hex => {
            let digits = message
                .strip_prefix("0x")
                .or_else(|| message.strip_prefix("0X"))
                .ok_or_else(|| invalid("hex reading: expected 0x followed by hex digits"))?;
            if digits.len() % 2 != 0 {
                return Err(invalid(&format!(
                    "hex reading: {} hex digits is not a whole number of bytes",
                    digits.len()
                )));
            }
            hex::decode(digits)
                .map_err(|_| invalid("hex reading: contains a character that is not a hex digit"))
        }
    }
}

/// Whether the text reading of `message` could be mistaken for hex bytes (it is `0x`
/// followed by an even, nonzero number of hex digits): callers then say which reading
/// was signed.
pub fn looks_like_hex(message: &str) -> bool {
    message.strip_prefix("0x").is_some_and(|d| {
        !d.is_empty() && d.len() % 2 == 0 && d.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

fn invalid(reason: &str) -> RequestError {
    RequestError::InvalidValue {
        field: "message".into(),
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings() {
        assert_eq!(
            message_bytes("0x7f3a9c11e2d4b5a6", MessageReading::Text).unwrap(),
            b"0x7f3a9c11e2d4b5a6"
        );
        assert_eq!(
            message_bytes("0x7f3a9c11e2d4b5a6", MessageReading::Hex).unwrap(),
            [0x7f, 0x3a, 0x9c, 0x11, 0xe2, 0xd4, 0xb5, 0xa6]
        );
        assert_eq!(
            message_bytes("0xhello", MessageReading::Text).unwrap(),
            b"0xhello"
        );
        assert!(looks_like_hex("0x7f3a9c11e2d4b5a6"));
        assert!(!looks_like_hex("0xhello"));
        assert!(!looks_like_hex("0x"));
        assert!(!looks_like_hex("0xabc"));
        for bad in ["0xhello", "7f3a", "0xabc", "0x7g"] {
            let e = message_bytes(bad, MessageReading::Hex).unwrap_err();
            assert_eq!(e.fields(), ["message"], "{bad}: {e}");
        }
        assert_eq!(message_bytes("0x", MessageReading::Hex).unwrap(), b"");
    }
}
