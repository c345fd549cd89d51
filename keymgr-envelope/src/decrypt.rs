//! Reading messages strictly: in memory or streamed frame by frame.

use std::sync::Arc;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use keymgr_core::EncryptionContext;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use crate::DataKey;
use crate::encrypt::fill;
use crate::error::{EnvelopeError, Field, Limit, Result};
use crate::frame::{self, FINAL_MARKER};
use crate::header::{HEADER_AUTH_LEN, Header, HeaderLimits};
use crate::keyring::MaterialsProvider;
use crate::parse::Cursor;
use crate::suite::{self, IV_LEN, MessageKeys, TAG_LEN};

/// Limits and checks applied when reading a message.
#[derive(Debug, Clone)]
pub struct DecryptOptions {
    /// Largest frame length accepted in a header (default 8 MiB): streaming memory is
    /// about one frame, so this bounds what a hostile message can make us allocate.
    pub max_frame_length: u32,
    /// Most encrypted data keys accepted (default 64; the AWS Encryption SDKs offer the
    /// same limit, unset by default).
    pub max_encrypted_data_keys: u16,
    /// Largest header accepted in bytes (default 1 MiB).
    pub max_header_bytes: usize,
    /// Pairs the message's encryption context must contain with these exact values.
    pub required_context: EncryptionContext,
}

impl Default for DecryptOptions {
    fn default() -> Self {
        Self {
            max_frame_length: 8 << 20,
            max_encrypted_data_keys: 64,
            max_header_bytes: 1 << 20,
            required_context: EncryptionContext::new(),
        }
    }
}

/// A decrypted message.
#[derive(Debug)]
pub struct Decrypted {
    /// The plaintext.
    pub plaintext: Vec<u8>,
    /// The authenticated header (encryption context, data keys, frame length).
    pub header: Header,
}

/// What a streamed decryption read.
#[derive(Debug, Clone)]
pub struct DecryptSummary {
    /// The authenticated header.
    pub header: Header,
    /// Plaintext bytes written.
    pub plaintext_bytes: u64,
    /// Message bytes read.
    pub message_bytes: u64,
    /// Frames read (the final frame included).
    pub frames: u32,
}

/// Decrypts AWS Encryption SDK messages (version 2, framed, suite `0x0478`).
///
/// Every check is a typed [`EnvelopeError`]: malformed or truncated fields, the key
/// commitment, the header tag, each frame's sequence number, IV and tag, the final-frame
/// marker, trailing bytes, and [`DecryptOptions::required_context`].
#[derive(Debug, Clone)]
pub struct Decryptor {
    materials: Arc<dyn MaterialsProvider>,
    options: DecryptOptions,
}

impl Decryptor {
    /// Decrypts with data keys from `materials` and default options.
    pub fn new(materials: Arc<dyn MaterialsProvider>) -> Self {
        Self {
            materials,
            options: DecryptOptions::default(),
        }
    }

    /// Replaces the options.
    #[must_use]
    pub fn options(mut self, options: DecryptOptions) -> Self {
        self.options = options;
        self
    }

    fn limits(&self) -> HeaderLimits {
        HeaderLimits {
            max_frame_length: self.options.max_frame_length,
            max_encrypted_data_keys: self.options.max_encrypted_data_keys,
        }
    }

    /// Checks the required context, unwraps the data key, checks the commitment and the
    /// header tag: afterwards the header is authentic.
    pub(crate) async fn open_header(
        &self,
        header: &Header,
        body: &[u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<MessageKeys> {
        Ok(self.open_header_with_key(header, body, tag).await?.0)
    }

    /// [`Self::open_header`], also returning the data key (for re-wrapping).
    pub(crate) async fn open_header_with_key(
        &self,
        header: &Header,
        body: &[u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(MessageKeys, DataKey)> {
        for (key, expected) in &self.options.required_context {
            let found = header.context.get(key);
            if found != Some(expected) {
                return Err(EnvelopeError::ContextMismatch {
                    key: key.clone(),
                    expected: expected.clone(),
                    found: found.cloned(),
                });
            }
        }
        let data_key = self
            .materials
            .decryption_materials(&header.encrypted_data_keys, &header.context)
            .await?;
        let keys = suite::derive(&data_key, &header.message_id)?;
        verify_slices_are_equal(&keys.commitment, &header.commitment)
            .map_err(|_| EnvelopeError::Commitment)?;
        if !suite::open(&keys.cipher, [0u8; IV_LEN], body, &mut [], tag) {
            return Err(EnvelopeError::HeaderAuthentication);
        }
        Ok((keys, data_key))
    }

    /// Decrypts one whole message held in memory.
    pub async fn decrypt(&self, message: &[u8]) -> Result<Decrypted> {
        let (header, body_len) = Header::parse(message, self.limits())?;
        let mut cur = Cursor::new(&message[body_len..], body_len as u64);
        let tag = cur.array::<HEADER_AUTH_LEN>(Field::HeaderAuthTag)?;
        let keys = self
            .open_header(&header, &message[..body_len], &tag)
            .await?;
        let mut plaintext = Vec::with_capacity(message.len().saturating_sub(cur.offset() as usize));
        let mut expected = 1u32;
        loop {
            let head = frame::parse_head(&mut cur, expected, header.frame_length)?;
            let content = cur.take(head.len, Field::EncryptedContent)?;
            let tag = cur.array::<TAG_LEN>(Field::AuthTag)?;
            let start = plaintext.len();
            plaintext.extend_from_slice(content);
            if let Err(e) = frame::open(
                &keys.cipher,
                &header.message_id,
                head,
                &mut plaintext[start..],
                &tag,
            ) {
                plaintext.fill(0);
                return Err(e);
            }
            if head.is_final {
                break;
            }
            expected = next_sequence(expected)?;
        }
        if cur.remaining() != 0 {
            plaintext.fill(0);
            return Err(EnvelopeError::TrailingData {
                offset: cur.offset(),
            });
        }
        Ok(Decrypted { plaintext, header })
    }

    /// Reads the header body from `reader`; returns it and the bytes read, of which the
    /// first `body_len` are the header body (the rest, the tag and maybe body bytes,
    /// must be read before `reader`).
    pub(crate) async fn read_header<R: AsyncRead + Unpin + ?Sized>(
        &self,
        reader: &mut R,
    ) -> Result<(Header, Vec<u8>, usize)> {
        let mut buf = Vec::new();
        loop {
            let eof = match Header::parse(&buf, self.limits()) {
                Ok((header, body_len)) => return Ok((header, buf, body_len)),
                Err(e @ EnvelopeError::Truncated { .. }) => {
                    if buf.len() >= self.options.max_header_bytes {
                        return Err(EnvelopeError::LimitExceeded {
                            limit: Limit::HeaderBytes,
                            actual: buf.len() as u64,
                            max: self.options.max_header_bytes as u64,
                        });
                    }
                    let want = buf
                        .len()
                        .clamp(256, 64 << 10)
                        .min(self.options.max_header_bytes - buf.len());
                    let start = buf.len();
                    buf.resize(start + want, 0);
                    let n = reader.read(&mut buf[start..]).await?;
                    buf.truncate(start + n);
                    (n == 0).then_some(e)
                }
                Err(e) => return Err(e),
            };
            if let Some(truncated) = eof {
                return Err(truncated);
            }
        }
    }

    /// Streams a message from `reader` to `writer`, one frame in memory at a time. Each
    /// frame's plaintext is written only after its tag verifies; if this returns an
    /// error, what was written must be discarded (a message cut at a frame boundary is
    /// only detected at its end, by the missing final frame). Flushes `writer`.
    pub async fn decrypt_stream<R, W>(
        &self,
        reader: &mut R,
        writer: &mut W,
    ) -> Result<DecryptSummary>
    where
        R: AsyncRead + Unpin + ?Sized,
        W: AsyncWrite + Unpin + ?Sized,
    {
        let (header, bytes, body_len) = self.read_header(reader).await?;
        let reader = &mut (&bytes[body_len..]).chain(reader);
        let mut tag = [0u8; HEADER_AUTH_LEN];
        read_exact(reader, &mut tag, Field::HeaderAuthTag, body_len as u64).await?;
        let keys = self.open_header(&header, &bytes[..body_len], &tag).await?;
        let mut offset = (body_len + HEADER_AUTH_LEN) as u64;
        let frame_len = header.frame_length as usize;
        let mut content = vec![0u8; frame_len + TAG_LEN];
        let mut head_bytes = [0u8; frame::FINAL_HEAD];
        let mut expected = 1u32;
        let mut plaintext_bytes = 0u64;
        loop {
            read_exact(reader, &mut head_bytes[..4], Field::SequenceNumber, offset).await?;
            let is_final = head_bytes[..4] == FINAL_MARKER.to_be_bytes();
            let head_len = if is_final {
                frame::FINAL_HEAD
            } else {
                frame::REGULAR_HEAD
            };
            // A short head fails in `parse_head`, naming the field that is cut.
            let got = fill(reader, &mut head_bytes[4..head_len]).await?;
            let mut cur = Cursor::new(&head_bytes[..4 + got], offset);
            let head = frame::parse_head(&mut cur, expected, header.frame_length)?;
            offset += head_len as u64;
            let buf = &mut content[..head.len + TAG_LEN];
            read_exact(
                reader,
                &mut buf[..head.len],
                Field::EncryptedContent,
                offset,
            )
            .await?;
            read_exact(
                reader,
                &mut buf[head.len..],
                Field::AuthTag,
                offset + head.len as u64,
            )
            .await?;
            offset += (head.len + TAG_LEN) as u64;
            let (text, tag) = buf.split_at_mut(head.len);
            let mut tag_arr = [0u8; TAG_LEN];
            tag_arr.copy_from_slice(tag);
            frame::open(&keys.cipher, &header.message_id, head, text, &tag_arr)?;
            writer.write_all(text).await?;
            plaintext_bytes += head.len as u64;
            if head.is_final {
                let mut probe = [0u8; 1];
                if fill(reader, &mut probe).await? != 0 {
                    return Err(EnvelopeError::TrailingData { offset });
                }
                writer.flush().await?;
                return Ok(DecryptSummary {
                    header,
                    plaintext_bytes,
                    message_bytes: offset,
                    frames: expected,
                });
            }
            expected = next_sequence(expected)?;
        }
    }
}

fn next_sequence(current: u32) -> Result<u32> {
    // Regular frames end at 0xFFFFFFFE; past that only a final frame may follow.
    current.checked_add(1).ok_or(EnvelopeError::LimitExceeded {
        limit: Limit::FrameCount,
        actual: u64::from(current) + 1,
        max: u64::from(FINAL_MARKER),
    })
}

/// Fills `buf` or fails with [`EnvelopeError::Truncated`] naming `field`.
pub(crate) async fn read_exact<R: AsyncRead + Unpin + ?Sized>(
    reader: &mut R,
    buf: &mut [u8],
    field: Field,
    offset: u64,
) -> Result<()> {
    let n = fill(reader, buf).await?;
    if n < buf.len() {
        return Err(EnvelopeError::Truncated {
            field,
            offset: offset + n as u64,
        });
    }
    Ok(())
}
