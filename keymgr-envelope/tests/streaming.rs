//! Streaming and in-memory paths agree for every plaintext and frame length, over
//! readers that return arbitrarily small chunks; a large stream runs through without the
//! message or plaintext ever being held whole.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use keymgr_envelope::{Decryptor, Encryptor, MaterialsProvider};
use proptest::prelude::*;
use support::*;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Serves `data` at most `chunk` bytes per read.
struct Trickle<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl AsyncRead for Trickle<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = self.chunk.min(self.data.len()).min(buf.remaining());
        buf.put_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Poll::Ready(Ok(()))
    }
}

fn keyring() -> Arc<dyn MaterialsProvider> {
    multi(&[raw_keyring("ns", "kek", &[6; 32])])
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn stream_and_memory_agree(len in 0usize..3000, frame in 1u32..400, chunk in 1usize..97) {
        runtime().block_on(async {
            let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
            let ctx = context(&[("k", "v")]);
            let encryptor = Encryptor::new(keyring()).frame_length(frame).unwrap();
            let decryptor = Decryptor::new(keyring());
            let in_memory = encryptor.encrypt(&data, &ctx).await.unwrap();
            let mut streamed = Vec::new();
            let summary = encryptor
                .encrypt_stream(&mut Trickle { data: &data, chunk }, &mut streamed, &ctx, Some(len as u64))
                .await
                .unwrap();
            let frames = len.div_ceil(frame as usize).max(1) as u32;
            prop_assert_eq!(summary.frames, frames);
            prop_assert_eq!(summary.message_bytes, streamed.len() as u64);
            prop_assert_eq!(streamed.len(), in_memory.len());
            for message in [&in_memory, &streamed] {
                prop_assert_eq!(&decryptor.decrypt(message).await.unwrap().plaintext, &data);
                let mut out = Vec::new();
                let s = decryptor
                    .decrypt_stream(&mut Trickle { data: message, chunk }, &mut out)
                    .await
                    .unwrap();
                prop_assert_eq!(&out, &data);
                prop_assert_eq!(s.frames, frames);
            }
            Ok(())
        })?;
    }
}

/// Produces `left` pattern bytes without holding them.
struct Pattern {
    left: u64,
    at: u64,
}

impl AsyncRead for Pattern {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = (buf.remaining() as u64).min(self.left) as usize;
        let at = self.at;
        let bytes: Vec<u8> = (0..n as u64).map(|i| ((at + i) % 251) as u8).collect();
        buf.put_slice(&bytes);
        self.left -= n as u64;
        self.at += n as u64;
        Poll::Ready(Ok(()))
    }
}

/// Checks the pattern as it arrives; keeps nothing.
struct CheckPattern {
    at: u64,
}

impl AsyncWrite for CheckPattern {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        for (i, b) in buf.iter().enumerate() {
            assert_eq!(
                *b,
                ((self.at + i as u64) % 251) as u8,
                "byte {}",
                self.at + i as u64
            );
        }
        self.at += buf.len() as u64;
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn large_stream_through_a_pipe() {
    const LEN: u64 = 24 << 20;
    let ctx = context(&[("k", "v")]);
    let encryptor = Encryptor::new(keyring());
    let decryptor = Decryptor::new(keyring());
    // Encrypt into one end of a 1 MiB pipe while decrypting from the other.
    let (mut tx, mut rx) = tokio::io::duplex(1 << 20);
    let writer = tokio::spawn(async move {
        let mut source = Pattern { left: LEN, at: 0 };
        encryptor
            .encrypt_stream(&mut source, &mut tx, &ctx, Some(LEN))
            .await
            .unwrap()
    });
    let mut sink = CheckPattern { at: 0 };
    let summary = decryptor.decrypt_stream(&mut rx, &mut sink).await.unwrap();
    let written = writer.await.unwrap();
    assert_eq!(summary.plaintext_bytes, LEN);
    assert_eq!(sink.at, LEN);
    assert_eq!(summary.message_bytes, written.message_bytes);
    assert_eq!(summary.frames, 384);
}
