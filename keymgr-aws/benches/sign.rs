//! Signing throughput of keymgr-aws against moto's DIGEST-honouring server at 1, 4 and
//! 16 concurrent callers, the raw SDK call for comparison, and keymgr's own added work
//! per signature (DER parse, low-s, verification) without any server time.
//!
//! Needs `AWS_ENDPOINT_URL` (run through `cargo xtask bench`); without it, it says so and
//! measures only the local part.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_sdk_kms::Client;
use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeySpec, KeyUsageType, MessageType, SigningAlgorithmSpec};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use keymgr_aws::AwsKmsBackend;
use keymgr_core::{KeyBackend, KeyRef, RawSignature, SignPayload, finish_signature};

fn client(endpoint: &str) -> Client {
    Client::from_conf(
        aws_sdk_kms::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(
                std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into()),
            ))
            .endpoint_url(endpoint)
            .credentials_provider(Credentials::new(
                "keymgr-bench",
                "keymgr-bench",
                None,
                None,
                "bench",
            ))
            .build(),
    )
}

struct Setup {
    client: Client,
    backend: Arc<AwsKmsBackend>,
    key_id: String,
}

async fn setup(endpoint: &str) -> Setup {
    let client = client(endpoint);
    let key_id = client
        .create_key()
        .key_spec(KeySpec::EccSecgP256K1)
        .key_usage(KeyUsageType::SignVerify)
        .description("keymgr bench")
        .send()
        .await
        .expect("CreateKey")
        .key_metadata
        .unwrap()
        .key_id()
        .to_owned();
    let backend = Arc::new(AwsKmsBackend::from_client(
        client.clone(),
        BTreeMap::from([("evm".to_owned(), key_id.clone())]),
    ));
    // Warm the public key cache, as a long-running service would be.
    backend.public_key(&KeyRef::new("evm")).await.unwrap();
    Setup {
        client,
        backend,
        key_id,
    }
}

async fn sign_concurrently(backend: &Arc<AwsKmsBackend>, callers: usize) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..callers {
        let backend = backend.clone();
        tasks.spawn(async move {
            let mut h = [0x5au8; 32];
            h[0] = i as u8;
            backend
                .sign(&KeyRef::new("evm"), &SignPayload::Prehash(h))
                .await
                .expect("sign")
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("task");
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let prehash = [0x42u8; 32];
    let Some(endpoint) = std::env::var("AWS_ENDPOINT_URL")
        .ok()
        .filter(|e| !e.is_empty())
    else {
        eprintln!(
            "keymgr-aws bench: AWS_ENDPOINT_URL is not set (run `cargo xtask bench`); \
             only the local part is measured"
        );
        local_only(c, &prehash);
        return;
    };
    let s = rt.block_on(setup(&endpoint));

    let mut group = c.benchmark_group("aws_kms_sign");
    for callers in [1usize, 4, 16] {
        group.throughput(Throughput::Elements(callers as u64));
        group.bench_with_input(BenchmarkId::new("keymgr", callers), &callers, |b, &n| {
            b.to_async(&rt).iter(|| sign_concurrently(&s.backend, n));
        });
    }
    group.throughput(Throughput::Elements(1));
    group.bench_function("raw_sdk_sign/1", |b| {
        b.to_async(&rt).iter(|| async {
            s.client
                .sign()
                .key_id(&s.key_id)
                .message(Blob::new(prehash.to_vec()))
                .message_type(MessageType::Digest)
                .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
                .send()
                .await
                .expect("sign")
        });
    });
    group.finish();

    // keymgr's own work per call on a real KMS response: what it adds to the server time.
    let der = rt.block_on(async {
        s.client
            .sign()
            .key_id(&s.key_id)
            .message(Blob::new(prehash.to_vec()))
            .message_type(MessageType::Digest)
            .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
            .send()
            .await
            .expect("sign")
            .signature
            .unwrap()
            .into_inner()
    });
    let pk = rt
        .block_on(s.backend.public_key(&KeyRef::new("evm")))
        .unwrap();
    let payload = SignPayload::Prehash(prehash);
    c.bench_function("aws_kms_keymgr_added_work", |b| {
        b.iter(|| finish_signature("evm", &pk, &payload, RawSignature::EcdsaDer(&der)).unwrap());
    });
}

fn local_only(c: &mut Criterion, prehash: &[u8; 32]) {
    use k256::ecdsa::signature::hazmat::PrehashSigner as _;
    let sk = k256::ecdsa::SigningKey::from_bytes(&[7u8; 32].into()).unwrap();
    let sig: k256::ecdsa::Signature = sk.sign_prehash(prehash).unwrap();
    let der = sig.to_der().as_bytes().to_vec();
    let pk = keymgr_core::PublicKey::Secp256k1(*sk.verifying_key());
    let payload = SignPayload::Prehash(*prehash);
    c.bench_function("aws_kms_keymgr_added_work", |b| {
        b.iter(|| finish_signature("evm", &pk, &payload, RawSignature::EcdsaDer(&der)).unwrap());
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
