//! Signing throughput of keymgr-aws against moto's DIGEST-honouring server at 1, 4 and
//! 16 concurrent callers, the raw SDK call for comparison, and keymgr's own added latency
//! per call against a local HTTP stub that answers `Sign` instantly (`aws_stub/*`: the
//! difference between `keymgr_sign` and `raw_sdk_sign` is everything keymgr adds to an
//! SDK call, with no server time in either; `key_manager_sign` is the same through
//! `KeyManager::new`'s full stack, and `k256_verify` one verification, the goal's unit:
//! `key_manager_sign - raw_sdk_sign <= k256_verify + 10 µs`). `raw_sdk_sign_then_verify`
//! is the bare call followed by one k256 DER parse and verification in the same loop: what
//! any verifying client pays.
//!
//! The moto part needs `AWS_ENDPOINT_URL` (run through `cargo xtask bench`); without it,
//! it says so and measures only the stub and the local part.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_sdk_kms::Client;
use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeySpec, KeyUsageType, MessageType, SigningAlgorithmSpec};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
use keymgr_aws::AwsKmsBackend;
use keymgr_core::{KeyBackend, KeyManager, KeyRef, RawSignature, SignPayload, finish_signature};

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

/// The bare SDK call keymgr-aws makes for a secp256k1 prehash.
async fn raw_sign(
    client: &Client,
    key_id: &str,
    prehash: [u8; 32],
) -> aws_sdk_kms::operation::sign::SignOutput {
    client
        .sign()
        .key_id(key_id)
        .message(Blob::new(prehash.to_vec()))
        .message_type(MessageType::Digest)
        .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
        .send()
        .await
        .expect("sign")
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

/// A KMS endpoint on loopback (keymgr_testkit::instant) that answers `GetPublicKey` and
/// `Sign` at once with precomputed responses (one fixed key, one fixed prehash).
mod stub {
    use k256::ecdsa::signature::hazmat::PrehashSigner as _;
    use k256::pkcs8::EncodePublicKey as _;
    use keymgr_testkit::instant::{self, Response};

    pub const ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/stub-key";

    /// Starts the stub; returns its `http://` endpoint.
    pub fn start(prehash: [u8; 32]) -> String {
        let sk = k256::ecdsa::SigningKey::from_bytes(&[9u8; 32].into()).unwrap();
        let sig: k256::ecdsa::Signature = sk.sign_prehash(&prehash).unwrap();
        let spki = sk.verifying_key().to_public_key_der().unwrap();
        let b64 = aws_smithy_types::base64::encode;
        let public_key = format!(
            r#"{{"KeyId":"{ARN}","PublicKey":"{}","KeySpec":"ECC_SECG_P256K1","KeyUsage":"SIGN_VERIFY","SigningAlgorithms":["ECDSA_SHA_256"]}}"#,
            b64(spki.as_bytes())
        );
        let signed = format!(
            r#"{{"KeyId":"{ARN}","Signature":"{}","SigningAlgorithm":"ECDSA_SHA_256"}}"#,
            b64(sig.to_der().as_bytes())
        );
        instant::start(move |request| {
            let body = match request.header("x-amz-target")? {
                "TrentService.GetPublicKey" => &public_key,
                "TrentService.Sign" => &signed,
                _ => return None,
            };
            Some(Response {
                content_type: "application/x-amz-json-1.1",
                body: body.clone(),
            })
        })
    }
}

/// keymgr-aws vs the bare SDK call against the instant stub: keymgr's added latency.
fn against_stub(c: &mut Criterion, rt: &tokio::runtime::Runtime, prehash: [u8; 32]) {
    let endpoint = stub::start(prehash);
    let client = client(&endpoint);
    let backend = AwsKmsBackend::from_client(
        client.clone(),
        BTreeMap::from([("evm".to_owned(), stub::ARN.to_owned())]),
    );
    let payload = SignPayload::Prehash(prehash);
    // Warm the public key cache, as a long-running service would be.
    rt.block_on(backend.sign(&KeyRef::new("evm"), &payload))
        .expect("keymgr signs against the stub");
    let mut group = c.benchmark_group("aws_stub");
    group.bench_function("raw_sdk_sign", |b| {
        b.to_async(rt)
            .iter(|| raw_sign(&client, stub::ARN, prehash));
    });
    // The same bare call through the backend's own client (SDK retries off), then the
    // same call followed by one k256 DER parse + verification: the goal's reference.
    group.bench_function("raw_sdk_sign_backend_client", |b| {
        b.to_async(rt)
            .iter(|| raw_sign(backend.client(), stub::ARN, prehash));
    });
    let vk = *rt
        .block_on(backend.public_key(&KeyRef::new("evm")))
        .unwrap()
        .as_secp256k1()
        .unwrap();
    group.bench_function("raw_sdk_sign_then_verify", |b| {
        b.to_async(rt).iter(|| async {
            let out = raw_sign(backend.client(), stub::ARN, prehash).await;
            let sig = k256::ecdsa::Signature::from_der(out.signature().unwrap().as_ref()).unwrap();
            vk.verify_prehash(&prehash, &sig).unwrap();
        });
    });
    group.bench_function("keymgr_sign", |b| {
        b.to_async(rt)
            .iter(|| async { backend.sign(&KeyRef::new("evm"), &payload).await.unwrap() });
    });
    // The full stack a service uses (KeyManager::new: recommended layers, audit to
    // tracing) over the same stub; its cost over raw_sdk_sign is keymgr's added latency.
    let manager = KeyManager::new(Arc::new(AwsKmsBackend::from_client(
        client.clone(),
        BTreeMap::from([("evm".to_owned(), stub::ARN.to_owned())]),
    )));
    let key = KeyRef::new("evm");
    let sig = rt.block_on(manager.sign(&key, &payload)).unwrap();
    group.bench_function("key_manager_sign", |b| {
        b.to_async(rt)
            .iter(|| async { manager.sign(&key, &payload).await.unwrap() });
    });
    // The goal's unit: one k256 verification of that signature (same process).
    let pk = rt.block_on(manager.public_key(&key)).unwrap();
    let vk = *pk.as_secp256k1().unwrap();
    let k256_sig = *sig.as_secp256k1().unwrap().as_k256();
    group.bench_function("k256_verify", |b| {
        b.iter(|| vk.verify_prehash(&prehash, &k256_sig).unwrap());
    });
    group.finish();
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let prehash = [0x42u8; 32];
    // The client side of the stub comparison runs on one thread (the stub has its own):
    // no cross-worker wake-ups in either the bare call or keymgr's.
    let local = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    against_stub(c, &local, prehash);
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
        b.to_async(&rt)
            .iter(|| raw_sign(&s.client, &s.key_id, prehash));
    });
    group.finish();

    // keymgr's own work per call on a real KMS response: what it adds to the server time.
    let der = rt.block_on(async {
        raw_sign(&s.client, &s.key_id, prehash)
            .await
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
