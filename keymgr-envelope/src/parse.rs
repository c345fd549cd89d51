//! A bounds-checked big-endian reader over a byte slice: running out of bytes is
//! [`EnvelopeError::Truncated`] naming the field, never a panic.

use crate::error::{EnvelopeError, Field, Result};

pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Offset of `bytes[0]` in the whole message.
    base: u64,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8], base: u64) -> Self {
        Self {
            bytes,
            pos: 0,
            base,
        }
    }

    /// Offset in the whole message of the next byte.
    pub(crate) fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// Bytes consumed so far.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    pub(crate) fn take(&mut self, n: usize, field: Field) -> Result<&'a [u8]> {
        if self.remaining() < n {
            return Err(EnvelopeError::Truncated {
                field,
                offset: self.base + self.bytes.len() as u64,
            });
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub(crate) fn array<const N: usize>(&mut self, field: Field) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: Field) -> Result<u8> {
        Ok(self.array::<1>(field)?[0])
    }

    pub(crate) fn u16(&mut self, field: Field) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u32(&mut self, field: Field) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    /// A u16-length-prefixed byte string.
    pub(crate) fn short_bytes(&mut self, field: Field) -> Result<&'a [u8]> {
        let len = self.u16(field)?;
        self.take(usize::from(len), field)
    }

    /// A u16-length-prefixed UTF-8 string.
    pub(crate) fn string(&mut self, field: Field) -> Result<String> {
        let at = self.offset();
        let bytes = self.short_bytes(field)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| EnvelopeError::malformed(field, at, "not valid UTF-8"))
    }
}
