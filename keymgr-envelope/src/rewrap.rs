//! Re-wrapping: a message's data key under a new set of KEKs, body untouched.

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use crate::decrypt::{Decryptor, read_exact};
use crate::encrypt::write_header;
use crate::error::{EnvelopeError, Field, Result};
use crate::header::{HEADER_AUTH_LEN, Header};
use crate::keyring::MultiKeyring;

impl Decryptor {
    /// Re-wraps a message's data key under `new_keyring` (e.g. after moving to new
    /// KEKs): authenticates the header with this decryptor's keyrings, writes a header
    /// whose encrypted data keys are those of `new_keyring` (same message id, context,
    /// frame length and commitment, hence the same derived key), then copies the body
    /// byte for byte. The body is never decrypted or re-encrypted; it is authenticated
    /// when the re-wrapped message is decrypted.
    ///
    /// Returns the new header and the number of body bytes copied.
    pub async fn rewrap<R, W>(
        &self,
        reader: &mut R,
        writer: &mut W,
        new_keyring: &MultiKeyring,
    ) -> Result<(Header, u64)>
    where
        R: AsyncRead + Unpin + ?Sized,
        W: AsyncWrite + Unpin + ?Sized,
    {
        let (header, bytes, body_len) = self.read_header(reader).await?;
        let reader = &mut (&bytes[body_len..]).chain(reader);
        let mut tag = [0u8; HEADER_AUTH_LEN];
        read_exact(reader, &mut tag, Field::HeaderAuthTag, body_len as u64).await?;
        let (keys, data_key) = self
            .open_header_with_key(&header, &bytes[..body_len], &tag)
            .await?;
        let encrypted_data_keys = new_keyring.wrap_all(&data_key, &header.context).await?;
        let rewrapped = Header {
            encrypted_data_keys,
            ..header
        };
        let mut out = Vec::new();
        write_header(&rewrapped, &keys, &mut out)?;
        writer.write_all(&out).await?;
        let copied = tokio::io::copy(reader, writer)
            .await
            .map_err(EnvelopeError::Io)?;
        writer.flush().await?;
        Ok((rewrapped, copied))
    }
}
