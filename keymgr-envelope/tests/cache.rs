//! The data-key cache evicts exactly at its age, message and byte limits and at its LRU
//! capacity, counts hits and misses, and bypasses messages of unknown length.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use keymgr_core::EncryptionContext;
use keymgr_envelope::{
    CachePolicy, CachingMaterials, DataKey, Decryptor, EncryptedDataKey, EncryptionMaterials,
    Encryptor, MaterialsProvider, Result,
};
use support::*;

/// Counts how often the cache had to ask the keyrings.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn MaterialsProvider>,
    encrypt: AtomicUsize,
    decrypt: AtomicUsize,
}

#[async_trait]
impl MaterialsProvider for Counting {
    async fn encryption_materials(
        &self,
        context: &EncryptionContext,
        len: Option<u64>,
    ) -> Result<EncryptionMaterials> {
        self.encrypt.fetch_add(1, Ordering::SeqCst);
        self.inner.encryption_materials(context, len).await
    }

    async fn decryption_materials(
        &self,
        edks: &[EncryptedDataKey],
        context: &EncryptionContext,
    ) -> Result<DataKey> {
        self.decrypt.fetch_add(1, Ordering::SeqCst);
        self.inner.decryption_materials(edks, context).await
    }
}

fn counting() -> Arc<Counting> {
    Arc::new(Counting {
        inner: multi(&[raw_keyring("ns", "kek", &[4; 32])]),
        encrypt: AtomicUsize::new(0),
        decrypt: AtomicUsize::new(0),
    })
}

fn policy(max_messages: u64, max_bytes: u64, capacity: usize) -> CachePolicy {
    CachePolicy {
        max_age: Duration::from_secs(60),
        max_messages,
        max_bytes,
        capacity,
    }
}

/// The encrypted data key of each message (same entry = same cached data key).
async fn edk_of(cache: &Arc<CachingMaterials>, len: usize, ctx: &EncryptionContext) -> Vec<u8> {
    let message = Encryptor::new(cache.clone())
        .encrypt(&vec![0; len], ctx)
        .await
        .unwrap();
    let d = Decryptor::new(cache.clone())
        .decrypt(&message)
        .await
        .unwrap();
    d.header.encrypted_data_keys[0].ciphertext.clone()
}

#[tokio::test]
async fn evicts_exactly_at_max_messages() {
    let inner = counting();
    let cache = Arc::new(CachingMaterials::new(
        inner.clone(),
        policy(3, u64::MAX, 10),
    ));
    let ctx = context(&[("k", "v")]);
    let mut keys = Vec::new();
    for _ in 0..7 {
        keys.push(edk_of(&cache, 10, &ctx).await);
    }
    // Messages 1-3 share a data key, 4-6 the next, 7 a third.
    assert_eq!(keys[0], keys[2]);
    assert_ne!(keys[2], keys[3]);
    assert_eq!(keys[3], keys[5]);
    assert_ne!(keys[5], keys[6]);
    assert_eq!(inner.encrypt.load(Ordering::SeqCst), 3);
    let stats = cache.stats();
    assert_eq!((stats.encrypt_hits, stats.encrypt_misses), (4, 3));
    // Decryption: one unwrap per distinct data key, the rest from the cache.
    assert_eq!(inner.decrypt.load(Ordering::SeqCst), 3);
    assert_eq!((stats.decrypt_hits, stats.decrypt_misses), (4, 3));
}

#[tokio::test]
async fn evicts_exactly_at_max_bytes() {
    let inner = counting();
    let cache = Arc::new(CachingMaterials::new(inner.clone(), policy(100, 100, 10)));
    let ctx = context(&[("k", "v")]);
    let a = edk_of(&cache, 40, &ctx).await; // 40
    let b = edk_of(&cache, 60, &ctx).await; // 100: exactly the limit, still the same key
    let c = edk_of(&cache, 1, &ctx).await; // 101: a new key
    assert_eq!(a, b);
    assert_ne!(b, c);
    // Larger than the limit on its own: bypasses the cache (and does not evict).
    let d = edk_of(&cache, 101, &ctx).await;
    let e = edk_of(&cache, 1, &ctx).await;
    assert_ne!(d, c);
    assert_eq!(e, c);
    assert_eq!(inner.encrypt.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn evicts_exactly_at_max_age() {
    let inner = counting();
    let cache = Arc::new(CachingMaterials::new(
        inner.clone(),
        policy(100, u64::MAX, 10),
    ));
    let ctx = context(&[("k", "v")]);
    let a = edk_of(&cache, 1, &ctx).await;
    tokio::time::advance(Duration::from_secs(60) - Duration::from_millis(1)).await;
    let b = edk_of(&cache, 1, &ctx).await;
    tokio::time::advance(Duration::from_millis(1)).await;
    let c = edk_of(&cache, 1, &ctx).await;
    assert_eq!(a, b);
    assert_ne!(b, c, "an entry is not used at max_age");
    assert_eq!(inner.encrypt.load(Ordering::SeqCst), 2);
    assert!(cache.stats().evictions >= 1);
}

#[tokio::test]
async fn lru_capacity_and_context_partitioning() {
    let inner = counting();
    let cache = Arc::new(CachingMaterials::new(
        inner.clone(),
        policy(100, u64::MAX, 2),
    ));
    let (x, y, z) = (
        context(&[("t", "x")]),
        context(&[("t", "y")]),
        context(&[("t", "z")]),
    );
    let x1 = edk_of(&cache, 1, &x).await;
    let y1 = edk_of(&cache, 1, &y).await;
    assert_ne!(x1, y1, "contexts never share a data key");
    assert_eq!(edk_of(&cache, 1, &x).await, x1); // x is now most recently used
    let _z1 = edk_of(&cache, 1, &z).await; // evicts y, the least recently used
    assert_eq!(edk_of(&cache, 1, &x).await, x1);
    assert_ne!(edk_of(&cache, 1, &y).await, y1);
    assert_eq!(cache.len().0, 2);
    cache.clear();
    assert_eq!(cache.len(), (0, 0));
}

#[tokio::test]
async fn unknown_length_bypasses() {
    let inner = counting();
    let cache = Arc::new(CachingMaterials::new(
        inner.clone(),
        policy(100, u64::MAX, 10),
    ));
    let ctx = context(&[("k", "v")]);
    let encryptor = Encryptor::new(cache.clone());
    for _ in 0..2 {
        let mut out = Vec::new();
        encryptor
            .encrypt_stream(&mut &b"abc"[..], &mut out, &ctx, None)
            .await
            .unwrap();
    }
    assert_eq!(inner.encrypt.load(Ordering::SeqCst), 2);
    assert_eq!(cache.stats().encrypt_hits, 0);
    let mut out = Vec::new();
    encryptor
        .encrypt_stream(&mut &b"abc"[..], &mut out, &ctx, Some(3))
        .await
        .unwrap();
    encryptor
        .encrypt_stream(&mut &b"abc"[..], &mut out.clone(), &ctx, Some(3))
        .await
        .unwrap();
    assert_eq!(cache.stats().encrypt_hits, 1);
}
