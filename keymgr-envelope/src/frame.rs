//! Framed body: regular frames, the final frame, their IVs and AAD.
//!
//! Layout (AWS Encryption SDK message format reference, "Body structure", framed data:
//! <https://docs.aws.amazon.com/encryption-sdk/latest/developer-guide/body-structure.html>),
//! big-endian:
//! - regular frame: sequence number (4) ‖ IV (12) ‖ encrypted content (frame length) ‖
//!   tag (16);
//! - final frame: `0xFFFFFFFF` (4) ‖ sequence number (4) ‖ IV (12) ‖ content length (4,
//!   at most the frame length) ‖ encrypted content ‖ tag (16).
//!
//! Sequence numbers start at 1 and increase by one. The IV is deterministic: 8 zero
//! bytes ‖ sequence number (u32 BE). The AAD ("Body AAD content") is message id ‖
//! `"AWSKMSEncryptionClient Frame"` (or `"AWSKMSEncryptionClient Final Frame"`) ‖
//! sequence number (u32 BE) ‖ content length (u64 BE).

use aws_lc_rs::aead::LessSafeKey;

use crate::error::{EnvelopeError, Field, Limit, Result};
use crate::parse::Cursor;
use crate::suite::{self, IV_LEN, TAG_LEN};

/// The final-frame marker in place of a sequence number.
pub(crate) const FINAL_MARKER: u32 = 0xFFFF_FFFF;
const FRAME_AAD: &[u8] = b"AWSKMSEncryptionClient Frame";
const FINAL_FRAME_AAD: &[u8] = b"AWSKMSEncryptionClient Final Frame";
/// Bytes before a regular frame's content.
pub(crate) const REGULAR_HEAD: usize = 4 + IV_LEN;
/// Bytes before a final frame's content.
pub(crate) const FINAL_HEAD: usize = 4 + 4 + IV_LEN + 4;

/// The deterministic IV of frame `sequence`.
pub(crate) fn iv(sequence: u32) -> [u8; IV_LEN] {
    let mut iv = [0u8; IV_LEN];
    iv[IV_LEN - 4..].copy_from_slice(&sequence.to_be_bytes());
    iv
}

fn aad(message_id: &[u8; 32], is_final: bool, sequence: u32, len: usize) -> Vec<u8> {
    let label = if is_final { FINAL_FRAME_AAD } else { FRAME_AAD };
    let mut aad = Vec::with_capacity(32 + label.len() + 12);
    aad.extend_from_slice(message_id);
    aad.extend_from_slice(label);
    aad.extend_from_slice(&sequence.to_be_bytes());
    aad.extend_from_slice(&(len as u64).to_be_bytes());
    aad
}

/// Appends frame `sequence` holding `plaintext` to `out`.
pub(crate) fn seal(
    key: &LessSafeKey,
    message_id: &[u8; 32],
    sequence: u32,
    is_final: bool,
    plaintext: &[u8],
    out: &mut Vec<u8>,
) -> Result<()> {
    if sequence == FINAL_MARKER {
        return Err(EnvelopeError::LimitExceeded {
            limit: Limit::FrameCount,
            actual: u64::from(sequence),
            max: u64::from(FINAL_MARKER - 1),
        });
    }
    let iv = iv(sequence);
    if is_final {
        out.extend_from_slice(&FINAL_MARKER.to_be_bytes());
    }
    out.extend_from_slice(&sequence.to_be_bytes());
    out.extend_from_slice(&iv);
    if is_final {
        // The frame length fits u32, and a final frame holds at most one frame.
        out.extend_from_slice(&(plaintext.len() as u32).to_be_bytes());
    }
    let start = out.len();
    out.extend_from_slice(plaintext);
    let aad = aad(message_id, is_final, sequence, plaintext.len());
    let tag = suite::seal(key, iv, &aad, &mut out[start..])?;
    out.extend_from_slice(&tag);
    Ok(())
}

/// A frame's fields before its content.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrameHead {
    pub(crate) is_final: bool,
    pub(crate) sequence: u32,
    /// Content length in bytes.
    pub(crate) len: usize,
}

/// Parses the fields before a frame's content from `cur` and checks them: the
/// sequence number is `expected`, the IV is the deterministic one, a final frame's
/// length is at most `frame_length`.
pub(crate) fn parse_head(
    cur: &mut Cursor<'_>,
    expected: u32,
    frame_length: u32,
) -> Result<FrameHead> {
    let first = cur.u32(Field::SequenceNumber)?;
    let is_final = first == FINAL_MARKER;
    let sequence = if is_final {
        cur.u32(Field::SequenceNumber)?
    } else {
        first
    };
    if sequence != expected {
        return Err(EnvelopeError::FrameSequence {
            expected,
            found: sequence,
        });
    }
    let iv_at = cur.offset();
    if cur.array::<IV_LEN>(Field::Iv)? != iv(sequence) {
        return Err(EnvelopeError::malformed(
            Field::Iv,
            iv_at,
            format!(
                "frame {sequence} does not carry the deterministic IV (8 zero bytes, then the sequence number)"
            ),
        ));
    }
    let len = if is_final {
        let at = cur.offset();
        let len = cur.u32(Field::EncryptedContentLength)?;
        if len > frame_length {
            return Err(EnvelopeError::malformed(
                Field::EncryptedContentLength,
                at,
                format!("final frame of {len} bytes exceeds the frame length {frame_length}"),
            ));
        }
        len
    } else {
        frame_length
    };
    Ok(FrameHead {
        is_final,
        sequence,
        len: len as usize,
    })
}

/// Decrypts a frame's content in place; on failure `content` is zeroed and nothing may
/// be released.
pub(crate) fn open(
    key: &LessSafeKey,
    message_id: &[u8; 32],
    head: FrameHead,
    content: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> Result<()> {
    let aad = aad(message_id, head.is_final, head.sequence, content.len());
    if suite::open(key, iv(head.sequence), &aad, content, tag) {
        Ok(())
    } else {
        Err(EnvelopeError::FrameAuthentication {
            sequence: head.sequence,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iv_is_zero_padded_sequence() {
        assert_eq!(iv(1), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(iv(0x0102_0304)[8..], [1, 2, 3, 4]);
    }

    #[test]
    fn aad_layout() {
        let a = aad(&[7; 32], true, 3, 5);
        assert_eq!(&a[..32], &[7; 32]);
        assert_eq!(&a[32..32 + FINAL_FRAME_AAD.len()], FINAL_FRAME_AAD);
        assert_eq!(&a[a.len() - 12..], &[0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 5]);
    }
}
