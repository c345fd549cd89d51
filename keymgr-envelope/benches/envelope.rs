//! Throughput of keymgr-envelope against raw AES-256-GCM over the same buffers, in one
//! run so the ratios compare like with like (see README "Measurements"):
//! - `encrypt/1MiB` and `decrypt/1MiB`: a 1 MiB message in 64 KiB frames with a cached
//!   data key (raw AES keyring behind `CachingMaterials`, warm), vs one AES-256-GCM
//!   seal/open of the same 1 MiB with aws-lc-rs and with RustCrypto `aes-gcm` (copying
//!   the input first, as any API that returns a new buffer must).
//! - `kms/messages`: 1 KiB messages through moto's KMS (needs `AWS_ENDPOINT_URL`,
//!   skipped without): cold (a `GenerateDataKey` per message) vs warm cache.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use aes_gcm::aead::AeadInPlace as _;
use aes_gcm::{Aes256Gcm, KeyInit as _};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use keymgr_core::{EncryptionContext, KeyBackend, KeyManager};
use keymgr_envelope::{
    AwsKmsKeyring, CachePolicy, CachingMaterials, Decryptor, Encryptor, MaterialsProvider,
    MultiKeyring, RawAesKeyring,
};

const LEN: usize = 1 << 20;
const FRAME: u32 = 64 << 10;

fn context() -> EncryptionContext {
    [("tenant".to_owned(), "bench".to_owned())]
        .into_iter()
        .collect()
}

fn cached(inner: Arc<dyn MaterialsProvider>) -> Arc<CachingMaterials> {
    Arc::new(CachingMaterials::new(
        inner,
        CachePolicy::new(Duration::from_secs(3600)),
    ))
}

fn throughput(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let data: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
    let raw = Arc::new(RawAesKeyring::new("bench", "kek", &[3; 32]).unwrap());
    let cache = cached(Arc::new(MultiKeyring::new(raw)));
    let encryptor = Encryptor::new(cache.clone()).frame_length(FRAME).unwrap();
    let decryptor = Decryptor::new(cache.clone());
    let ctx = context();
    let message = rt.block_on(encryptor.encrypt(&data, &ctx)).unwrap();

    let lc = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[5; 32]).unwrap());
    let rc = Aes256Gcm::new_from_slice(&[5; 32]).unwrap();
    let nonce = [0u8; 12];
    let mut sealed_lc = data.clone();
    let tag_lc = lc
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(b"aad"),
            &mut sealed_lc,
        )
        .unwrap();

    let mut group = c.benchmark_group("encrypt");
    group.throughput(Throughput::Bytes(LEN as u64));
    group.bench_function("1MiB/keymgr-envelope", |b| {
        b.iter(|| rt.block_on(encryptor.encrypt(&data, &ctx)).unwrap())
    });
    group.bench_function("1MiB/aws-lc-rs", |b| {
        b.iter(|| {
            let mut buf = Vec::with_capacity(LEN + 16);
            buf.extend_from_slice(&data);
            let tag = lc
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(b"aad"),
                    &mut buf,
                )
                .unwrap();
            buf.extend_from_slice(tag.as_ref());
            buf
        })
    });
    group.bench_function("1MiB/aes-gcm", |b| {
        b.iter(|| {
            let mut buf = Vec::with_capacity(LEN + 16);
            buf.extend_from_slice(&data);
            rc.encrypt_in_place(&nonce.into(), b"aad", &mut buf)
                .unwrap();
            buf
        })
    });
    group.finish();

    let mut group = c.benchmark_group("decrypt");
    group.throughput(Throughput::Bytes(LEN as u64));
    group.bench_function("1MiB/keymgr-envelope", |b| {
        b.iter(|| rt.block_on(decryptor.decrypt(&message)).unwrap())
    });
    group.bench_function("1MiB/aws-lc-rs", |b| {
        b.iter(|| {
            let mut buf = sealed_lc.clone();
            lc.open_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(b"aad"),
                tag_lc.as_ref(),
                &mut buf,
            )
            .unwrap();
            buf
        })
    });
    let mut sealed_rc = data.clone();
    rc.encrypt_in_place(&nonce.into(), b"aad", &mut sealed_rc)
        .unwrap();
    group.bench_function("1MiB/aes-gcm", |b| {
        b.iter(|| {
            let mut buf = sealed_rc.clone();
            rc.decrypt_in_place(&nonce.into(), b"aad", &mut buf)
                .unwrap();
            buf
        })
    });
    group.finish();
    let stats = cache.stats();
    assert!(
        stats.encrypt_hits > 0 && stats.decrypt_hits > 0,
        "{stats:?}"
    );
}

fn kms(c: &mut Criterion) {
    let Some(endpoint) = std::env::var("AWS_ENDPOINT_URL")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        eprintln!(
            "kms/messages skipped: AWS_ENDPOINT_URL (moto) is not set; run `cargo xtask bench-criterion`"
        );
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let conf = aws_sdk_kms::Config::builder()
        .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
        .region(aws_sdk_kms::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_kms::config::Credentials::new(
            "keymgr-test",
            "keymgr-test",
            None,
            None,
            "bench",
        ))
        .build();
    let client = aws_sdk_kms::Client::from_conf(conf);
    let arn = rt
        .block_on(
            client
                .create_key()
                .description("keymgr-envelope bench")
                .send(),
        )
        .unwrap()
        .key_metadata
        .unwrap()
        .arn
        .unwrap();
    let backend: Arc<dyn KeyBackend> = Arc::new(keymgr_aws::AwsKmsBackend::from_client(
        client,
        Default::default(),
    ));
    let manager: Arc<dyn KeyBackend> = Arc::new(KeyManager::builder(backend).build());
    let keyring = Arc::new(MultiKeyring::new(Arc::new(
        AwsKmsKeyring::new(manager, arn).unwrap(),
    )));
    let cold = Encryptor::new(keyring.clone());
    let warm = Encryptor::new(cached(keyring));
    let data = vec![1u8; 1024];
    let ctx = context();
    let mut group = c.benchmark_group("kms");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.bench_function("messages/cold", |b| {
        b.iter(|| rt.block_on(cold.encrypt(&data, &ctx)).unwrap())
    });
    group.bench_function("messages/warm", |b| {
        b.iter(|| rt.block_on(warm.encrypt(&data, &ctx)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, throughput, kms);
criterion_main!(benches);
