//! Encryption context serialization, the message's AAD.
//!
//! Format (AWS Encryption SDK message format, "AAD" in the header:
//! <https://docs.aws.amazon.com/encryption-sdk/latest/developer-guide/message-format.html#header-aad>):
//! an empty context serializes to zero bytes; otherwise key-value pair count (u16 BE),
//! then for each pair sorted by key (UTF-8 bytes, ascending): key length (u16 BE), key,
//! value length (u16 BE), value. The same bytes are the AAD of the raw AES keyring's
//! data-key wrapping.

use keymgr_core::EncryptionContext;

use crate::error::{EnvelopeError, Field, Result};
use crate::parse::Cursor;

/// Keys starting with this prefix are reserved by the AWS Encryption SDK (e.g.
/// `aws-crypto-public-key`, written by signing suites); callers may not set them.
pub const RESERVED_PREFIX: &str = "aws-crypto-";

/// Refuses contexts the format cannot carry or that use reserved keys.
pub(crate) fn validate_for_encrypt(context: &EncryptionContext) -> Result<()> {
    if let Some(key) = context.keys().find(|k| k.starts_with(RESERVED_PREFIX)) {
        return Err(EnvelopeError::InvalidContext {
            key: Some(key.clone()),
            reason: format!(
                "keys starting with {RESERVED_PREFIX:?} are reserved for the AWS Encryption SDK"
            ),
        });
    }
    serialize(context).map(|_| ())
}

/// Serializes `context` (see the module docs). Errors if it has more than 65535
/// pairs, a key or value longer than 65535 bytes, or serializes to more than 65535
/// bytes in total.
pub fn serialize(context: &EncryptionContext) -> Result<Vec<u8>> {
    if context.is_empty() {
        return Ok(Vec::new());
    }
    let too_big = |key: Option<&String>, reason: String| EnvelopeError::InvalidContext {
        key: key.cloned(),
        reason,
    };
    let count = u16::try_from(context.len())
        .map_err(|_| too_big(None, format!("{} pairs; at most 65535", context.len())))?;
    let mut out = Vec::with_capacity(
        2 + context
            .iter()
            .map(|(k, v)| 4 + k.len() + v.len())
            .sum::<usize>(),
    );
    out.extend_from_slice(&count.to_be_bytes());
    // BTreeMap<String, _> iterates in byte order of the keys: the order the format requires.
    for (key, value) in context {
        for part in [key, value] {
            let len = u16::try_from(part.len()).map_err(|_| {
                too_big(
                    Some(key),
                    format!("a {}-byte key or value; at most 65535", part.len()),
                )
            })?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(part.as_bytes());
        }
    }
    if out.len() > usize::from(u16::MAX) {
        return Err(too_big(
            None,
            format!("serializes to {} bytes; at most 65535", out.len()),
        ));
    }
    Ok(out)
}

/// Parses a serialized context (the header's AAD field). `base` is the field's offset in
/// the message, for error positions. Pairs in any order are accepted (the header
/// authentication tag covers the bytes as written); duplicates, an empty pair list,
/// non-UTF-8 and leftover bytes are malformed.
pub(crate) fn parse(bytes: &[u8], base: u64) -> Result<EncryptionContext> {
    let mut context = EncryptionContext::new();
    if bytes.is_empty() {
        return Ok(context);
    }
    let field = Field::EncryptionContext;
    let mut cur = Cursor::new(bytes, base);
    let count = cur.u16(field).map_err(|e| as_malformed(e, "pair count"))?;
    if count == 0 {
        return Err(EnvelopeError::malformed(
            field,
            base,
            "pair count 0 with a non-empty AAD (an empty context has AAD length 0)",
        ));
    }
    for _ in 0..count {
        let at = cur.offset();
        let key = cur.string(field).map_err(|e| as_malformed(e, "key"))?;
        let value = cur.string(field).map_err(|e| as_malformed(e, "value"))?;
        if context.insert(key, value).is_some() {
            return Err(EnvelopeError::malformed(field, at, "duplicate key"));
        }
    }
    if cur.remaining() != 0 {
        return Err(EnvelopeError::malformed(
            field,
            cur.offset(),
            format!("{} bytes left after the last pair", cur.remaining()),
        ));
    }
    Ok(context)
}

/// Inside a length-delimited field, running out of bytes means the lengths disagree.
fn as_malformed(e: EnvelopeError, what: &str) -> EnvelopeError {
    match e {
        EnvelopeError::Truncated { field, offset } => EnvelopeError::malformed(
            field,
            offset,
            format!("{what} runs past the end of the AAD"),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_zero_bytes() {
        assert!(serialize(&EncryptionContext::new()).unwrap().is_empty());
        assert!(parse(&[], 0).unwrap().is_empty());
    }

    #[test]
    fn sorted_by_key_bytes() {
        let ctx: EncryptionContext = [("b", "2"), ("a", "1")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let bytes = serialize(&ctx).unwrap();
        assert_eq!(
            bytes,
            [0, 2, 0, 1, b'a', 0, 1, b'1', 0, 1, b'b', 0, 1, b'2']
        );
        assert_eq!(parse(&bytes, 0).unwrap(), ctx);
    }

    #[test]
    fn rejects_duplicates_zero_count_and_leftovers() {
        let dup = [0, 2, 0, 1, b'a', 0, 0, 0, 1, b'a', 0, 0];
        assert!(matches!(
            parse(&dup, 0),
            Err(EnvelopeError::Malformed { offset: 7, .. })
        ));
        assert!(matches!(
            parse(&[0, 0], 0),
            Err(EnvelopeError::Malformed { .. })
        ));
        let extra = [0, 1, 0, 1, b'a', 0, 0, 9];
        assert!(matches!(
            parse(&extra, 0),
            Err(EnvelopeError::Malformed { .. })
        ));
        let short = [0, 1, 0, 5, b'a'];
        assert!(matches!(
            parse(&short, 0),
            Err(EnvelopeError::Malformed { .. })
        ));
        let not_utf8 = [0, 1, 0, 1, 0xFF, 0, 0];
        assert!(matches!(
            parse(&not_utf8, 0),
            Err(EnvelopeError::Malformed { .. })
        ));
    }

    #[test]
    fn reserved_prefix_refused() {
        let ctx: EncryptionContext = [("aws-crypto-public-key".to_owned(), "x".to_owned())]
            .into_iter()
            .collect();
        assert!(matches!(
            validate_for_encrypt(&ctx),
            Err(EnvelopeError::InvalidContext { key: Some(k), .. }) if k == "aws-crypto-public-key"
        ));
    }
}
