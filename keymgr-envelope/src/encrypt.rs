//! Writing messages: in memory or streamed frame by frame.

use std::sync::Arc;

use keymgr_core::EncryptionContext;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use crate::context;
use crate::data_key::random;
use crate::error::{EnvelopeError, Result};
use crate::frame;
use crate::header::{EncryptedDataKey, Header};
use crate::keyring::MaterialsProvider;
use crate::suite::{self, IV_LEN, MessageKeys, TAG_LEN};

/// Default frame length: 64 KiB of plaintext per frame.
pub const DEFAULT_FRAME_LENGTH: u32 = 64 * 1024;

/// What was written.
#[derive(Debug, Clone)]
pub struct EncryptSummary {
    /// The message id (hex in JSON output).
    pub message_id: [u8; 32],
    /// Plaintext bytes read.
    pub plaintext_bytes: u64,
    /// Message bytes written.
    pub message_bytes: u64,
    /// Frames written (the final frame included).
    pub frames: u32,
    /// Where the data key went: (provider id, provider info) per encrypted data key.
    pub encrypted_data_keys: Vec<EncryptedDataKey>,
}

/// Encrypts into AWS Encryption SDK messages (version 2, framed, suite `0x0478`).
///
/// ```
/// # async fn demo() -> keymgr_envelope::Result<()> {
/// use std::sync::Arc;
/// use keymgr_envelope::{Decryptor, Encryptor, MultiKeyring, RawAesKeyring};
/// let kek = RawAesKeyring::new("example", "kek-1", &[7; 32]).unwrap();
/// let keyring = Arc::new(MultiKeyring::new(Arc::new(kek)));
/// let context = [("tenant".to_owned(), "acme".to_owned())].into_iter().collect();
/// let message = Encryptor::new(keyring.clone()).encrypt(b"hello", &context).await?;
/// let decrypted = Decryptor::new(keyring).decrypt(&message).await?;
/// assert_eq!(decrypted.plaintext, b"hello");
/// assert_eq!(decrypted.header.context, context);
/// # Ok(()) }
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Encryptor {
    materials: Arc<dyn MaterialsProvider>,
    frame_length: u32,
}

impl Encryptor {
    /// Encrypts with data keys from `materials`, 64 KiB frames.
    pub fn new(materials: Arc<dyn MaterialsProvider>) -> Self {
        Self {
            materials,
            frame_length: DEFAULT_FRAME_LENGTH,
        }
    }

    /// Plaintext bytes per frame (1 ..= 2^31 - 1; default [`DEFAULT_FRAME_LENGTH`]).
    /// Streaming holds about two frames in memory.
    pub fn frame_length(mut self, bytes: u32) -> Result<Self> {
        if bytes == 0 || bytes > i32::MAX as u32 {
            return Err(EnvelopeError::LimitExceeded {
                limit: crate::error::Limit::FrameLength,
                actual: bytes.into(),
                max: i32::MAX as u64,
            });
        }
        self.frame_length = bytes;
        Ok(self)
    }

    /// Writes the header and its authentication tag; returns the message keys.
    async fn start(
        &self,
        context: &EncryptionContext,
        plaintext_len: Option<u64>,
        out: &mut Vec<u8>,
    ) -> Result<(Header, MessageKeys)> {
        context::validate_for_encrypt(context)?;
        let materials = self
            .materials
            .encryption_materials(context, plaintext_len)
            .await?;
        let message_id = random::<32>();
        let keys = suite::derive(&materials.data_key, &message_id)?;
        let header = Header {
            message_id,
            context: context.clone(),
            encrypted_data_keys: materials.encrypted_data_keys,
            frame_length: self.frame_length,
            commitment: keys.commitment,
        };
        write_header(&header, &keys, out)?;
        Ok((header, keys))
    }

    /// Encrypts `plaintext` under `context` into one message.
    pub async fn encrypt(&self, plaintext: &[u8], context: &EncryptionContext) -> Result<Vec<u8>> {
        let frame_len = self.frame_length as usize;
        let frames = plaintext.len() / frame_len + 1;
        let mut out =
            Vec::with_capacity(1024 + plaintext.len() + frames * (frame::FINAL_HEAD + TAG_LEN));
        let (header, keys) = self
            .start(context, Some(plaintext.len() as u64), &mut out)
            .await?;
        let mut chunks = plaintext.chunks(frame_len).peekable();
        let mut sequence = 1u32;
        // The last chunk is the final frame (an empty one for an empty plaintext).
        loop {
            let chunk = chunks.next().unwrap_or_default();
            let is_final = chunks.peek().is_none();
            frame::seal(
                &keys.cipher,
                &header.message_id,
                sequence,
                is_final,
                chunk,
                &mut out,
            )?;
            if is_final {
                return Ok(out);
            }
            sequence += 1;
        }
    }

    /// Streams `reader` into a message on `writer`, frame by frame: memory stays at
    /// about two frames whatever the size. `plaintext_len` (if known) lets a
    /// [`crate::CachingMaterials`] apply its byte limit; with `None` the cache is
    /// bypassed. Flushes `writer` at the end.
    pub async fn encrypt_stream<R, W>(
        &self,
        reader: &mut R,
        writer: &mut W,
        context: &EncryptionContext,
        plaintext_len: Option<u64>,
    ) -> Result<EncryptSummary>
    where
        R: AsyncRead + Unpin + ?Sized,
        W: AsyncWrite + Unpin + ?Sized,
    {
        let frame_len = self.frame_length as usize;
        let mut out = Vec::with_capacity(frame_len + frame::FINAL_HEAD + TAG_LEN);
        let (header, keys) = self.start(context, plaintext_len, &mut out).await?;
        writer.write_all(&out).await?;
        let mut summary = EncryptSummary {
            message_id: header.message_id,
            plaintext_bytes: 0,
            message_bytes: out.len() as u64,
            frames: 0,
            encrypted_data_keys: header.encrypted_data_keys.clone(),
        };
        let mut current = vec![0u8; frame_len];
        let mut next = vec![0u8; frame_len];
        let mut filled = fill(reader, &mut current).await?;
        let mut sequence = 1u32;
        loop {
            // A full frame is final only if nothing follows it.
            let (is_final, next_filled) = if filled < frame_len {
                (true, 0)
            } else {
                let n = fill(reader, &mut next).await?;
                (n == 0, n)
            };
            out.clear();
            frame::seal(
                &keys.cipher,
                &header.message_id,
                sequence,
                is_final,
                &current[..filled],
                &mut out,
            )?;
            writer.write_all(&out).await?;
            summary.plaintext_bytes += filled as u64;
            summary.message_bytes += out.len() as u64;
            summary.frames = sequence;
            if is_final {
                break;
            }
            std::mem::swap(&mut current, &mut next);
            filled = next_filled;
            sequence += 1;
        }
        writer.flush().await?;
        Ok(summary)
    }
}

/// Appends the header body and its authentication tag (v2: no IV; the IV is all zero).
pub(crate) fn write_header(header: &Header, keys: &MessageKeys, out: &mut Vec<u8>) -> Result<()> {
    let body = header.to_bytes()?;
    let tag = suite::seal(&keys.cipher, [0u8; IV_LEN], &body, &mut [])?;
    out.extend_from_slice(&body);
    out.extend_from_slice(&tag);
    Ok(())
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
pub(crate) async fn fill<R: AsyncRead + Unpin + ?Sized>(
    reader: &mut R,
    buf: &mut [u8],
) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let read = reader.read(&mut buf[n..]).await?;
        if read == 0 {
            break;
        }
        n += read;
    }
    Ok(n)
}
