//! A data-key cache in front of a [`MaterialsProvider`], like the AWS Encryption SDK's
//! caching cryptographic materials manager
//! (<https://docs.aws.amazon.com/encryption-sdk/latest/developer-guide/data-key-caching.html>):
//! one data key serves several messages, up to a maximum age, number of messages and
//! number of plaintext bytes, so not every message costs a KMS call.
//!
//! Encryption entries are keyed by the encryption context (the wrapped keys are bound
//! to it), decryption entries by the message's encrypted data keys and context. Both are
//! LRU-bounded by [`CachePolicy::capacity`]. Data keys are zeroized when an entry is
//! evicted or the cache is dropped ([`crate::DataKey`] zeroizes on drop).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use keymgr_core::EncryptionContext;
use tokio::time::Instant;

use crate::DataKey;
use crate::context;
use crate::error::Result;
use crate::header::EncryptedDataKey;
use crate::keyring::{EncryptionMaterials, MaterialsProvider};

/// When cached data keys must stop being used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    /// An entry older than this is not used (and is evicted).
    pub max_age: Duration,
    /// Messages one data key may encrypt (default 2^32, the format's limit).
    pub max_messages: u64,
    /// Plaintext bytes one data key may encrypt across messages (default 2^63 - 1).
    pub max_bytes: u64,
    /// Entries kept per cache (encryption and decryption each); least recently used
    /// entries are evicted first. Default 100.
    pub capacity: usize,
}

impl CachePolicy {
    /// A policy with `max_age` and the ESDK's defaults for the rest.
    pub fn new(max_age: Duration) -> Self {
        Self {
            max_age,
            max_messages: 1 << 32,
            max_bytes: i64::MAX as u64,
            capacity: 100,
        }
    }
}

/// Hit and miss counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Encryptions served by a cached data key.
    pub encrypt_hits: u64,
    /// Encryptions that needed a new data key (including bypasses).
    pub encrypt_misses: u64,
    /// Decryptions served by a cached data key.
    pub decrypt_hits: u64,
    /// Decryptions that unwrapped through the keyrings.
    pub decrypt_misses: u64,
    /// Entries evicted (age, usage limits or capacity).
    pub evictions: u64,
}

#[derive(Debug)]
struct Entry<T> {
    value: T,
    created: Instant,
    messages: u64,
    bytes: u64,
    last_used: u64,
}

#[derive(Debug)]
struct Lru<T> {
    entries: HashMap<Vec<u8>, Entry<T>>,
    tick: u64,
}

impl<T> Lru<T> {
    fn new() -> Self {
        Self {
            entries: HashMap::new(),
            tick: 0,
        }
    }

    /// Inserts, evicting the least recently used entry when full; returns evictions.
    fn insert(&mut self, key: Vec<u8>, value: T, bytes: u64, capacity: usize) -> u64 {
        let mut evicted = 0;
        while self.entries.len() >= capacity.max(1) && !self.entries.contains_key(&key) {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            self.entries.remove(&oldest);
            evicted += 1;
        }
        self.tick += 1;
        self.entries.insert(
            key,
            Entry {
                value,
                created: Instant::now(),
                messages: 1,
                bytes,
                last_used: self.tick,
            },
        );
        evicted
    }
}

/// Caches data keys from an inner [`MaterialsProvider`] (see the module docs).
///
/// Encryptions of unknown length (`plaintext_len: None`) or longer than
/// [`CachePolicy::max_bytes`] bypass the cache.
#[derive(Debug)]
pub struct CachingMaterials {
    inner: Arc<dyn MaterialsProvider>,
    policy: CachePolicy,
    encrypt: Mutex<Lru<EncryptionMaterials>>,
    decrypt: Mutex<Lru<DataKey>>,
    encrypt_hits: AtomicU64,
    encrypt_misses: AtomicU64,
    decrypt_hits: AtomicU64,
    decrypt_misses: AtomicU64,
    evictions: AtomicU64,
}

impl CachingMaterials {
    /// A cache in front of `inner`.
    pub fn new(inner: Arc<dyn MaterialsProvider>, policy: CachePolicy) -> Self {
        Self {
            inner,
            policy,
            encrypt: Mutex::new(Lru::new()),
            decrypt: Mutex::new(Lru::new()),
            encrypt_hits: AtomicU64::new(0),
            encrypt_misses: AtomicU64::new(0),
            decrypt_hits: AtomicU64::new(0),
            decrypt_misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            encrypt_hits: self.encrypt_hits.load(Ordering::Relaxed),
            encrypt_misses: self.encrypt_misses.load(Ordering::Relaxed),
            decrypt_hits: self.decrypt_hits.load(Ordering::Relaxed),
            decrypt_misses: self.decrypt_misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }

    /// Cached entries (encryption, decryption).
    pub fn len(&self) -> (usize, usize) {
        (
            self.encrypt
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entries
                .len(),
            self.decrypt
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entries
                .len(),
        )
    }

    /// Drops (and zeroizes) every cached data key.
    pub fn clear(&self) {
        self.encrypt
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entries
            .clear();
        self.decrypt
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entries
            .clear();
    }

    fn expired<T>(&self, entry: &Entry<T>) -> bool {
        entry.created.elapsed() >= self.policy.max_age
    }

    fn evicted(&self, n: u64) {
        self.evictions.fetch_add(n, Ordering::Relaxed);
    }

    /// A cached encryption entry still within its limits after one more message of
    /// `len` bytes (counted), or `None` (an exhausted or expired entry is evicted).
    fn take_encrypt(&self, key: &[u8], len: u64) -> Option<EncryptionMaterials> {
        let mut lru = self.encrypt.lock().unwrap_or_else(|p| p.into_inner());
        let tick = lru.tick + 1;
        let entry = lru.entries.get_mut(key)?;
        let within = !self.expired(entry)
            && entry.messages < self.policy.max_messages
            && entry.bytes.saturating_add(len) <= self.policy.max_bytes;
        if !within {
            lru.entries.remove(key);
            drop(lru);
            self.evicted(1);
            return None;
        }
        entry.messages += 1;
        entry.bytes += len;
        entry.last_used = tick;
        let value = entry.value.clone();
        lru.tick = tick;
        Some(value)
    }
}

fn decrypt_key(edks: &[EncryptedDataKey], context: &[u8]) -> Vec<u8> {
    let mut sorted: Vec<&EncryptedDataKey> = edks.iter().collect();
    sorted.sort_by(|a, b| {
        (&a.provider_id, &a.provider_info, &a.ciphertext).cmp(&(
            &b.provider_id,
            &b.provider_info,
            &b.ciphertext,
        ))
    });
    let mut key = Vec::with_capacity(context.len() + 64 * sorted.len());
    key.extend_from_slice(&(context.len() as u64).to_be_bytes());
    key.extend_from_slice(context);
    for edk in sorted {
        for part in [
            edk.provider_id.as_bytes(),
            &edk.provider_info,
            &edk.ciphertext,
        ] {
            key.extend_from_slice(&(part.len() as u64).to_be_bytes());
            key.extend_from_slice(part);
        }
    }
    key
}

#[async_trait]
impl MaterialsProvider for CachingMaterials {
    async fn encryption_materials(
        &self,
        context: &EncryptionContext,
        plaintext_len: Option<u64>,
    ) -> Result<EncryptionMaterials> {
        let Some(len) = plaintext_len.filter(|n| *n <= self.policy.max_bytes) else {
            self.encrypt_misses.fetch_add(1, Ordering::Relaxed);
            return self
                .inner
                .encryption_materials(context, plaintext_len)
                .await;
        };
        let key = context::serialize(context)?;
        if let Some(materials) = self.take_encrypt(&key, len) {
            self.encrypt_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(materials);
        }
        self.encrypt_misses.fetch_add(1, Ordering::Relaxed);
        let materials = self
            .inner
            .encryption_materials(context, plaintext_len)
            .await?;
        if self.policy.max_messages > 1 {
            let evicted = self
                .encrypt
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key, materials.clone(), len, self.policy.capacity);
            self.evicted(evicted);
        }
        Ok(materials)
    }

    async fn decryption_materials(
        &self,
        edks: &[EncryptedDataKey],
        context: &EncryptionContext,
    ) -> Result<DataKey> {
        let key = decrypt_key(edks, &context::serialize(context)?);
        {
            let mut lru = self.decrypt.lock().unwrap_or_else(|p| p.into_inner());
            let tick = lru.tick + 1;
            let expired = lru.entries.get(&key).map(|e| self.expired(e));
            match expired {
                Some(false) => {
                    lru.tick = tick;
                    if let Some(entry) = lru.entries.get_mut(&key) {
                        entry.last_used = tick;
                        self.decrypt_hits.fetch_add(1, Ordering::Relaxed);
                        return Ok(entry.value.clone());
                    }
                }
                Some(true) => {
                    lru.entries.remove(&key);
                    self.evicted(1);
                }
                None => {}
            }
        }
        self.decrypt_misses.fetch_add(1, Ordering::Relaxed);
        let data_key = self.inner.decryption_materials(edks, context).await?;
        let evicted = self
            .decrypt
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, data_key.clone(), 0, self.policy.capacity);
        self.evicted(evicted);
        Ok(data_key)
    }
}
