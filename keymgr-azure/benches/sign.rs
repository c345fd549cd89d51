//! Signing throughput of keymgr-azure against keymgr-testkit's Key Vault stand-in (HTTPS,
//! client-secret credential, genuine k256 signatures) at 1, 4 and 16 concurrent callers,
//! with the bare `azure_security_keyvault_keys` `sign` call for comparison
//! (`azure_kv_sign/*`), and keymgr's own added latency per call against the stand-in
//! answering from precomputed genuine signatures (`azure_stub/*`, see
//! `StandIn::precompute_signatures`: no signing time on the server; the difference
//! between `keymgr_sign` and `raw_sdk_sign` is everything keymgr adds to an SDK call;
//! `key_manager_sign` is the same through `KeyManager::new`'s full stack, and
//! `k256_verify` one verification, the unit of the goal set for AWS in issue 14:
//! `key_manager_sign - raw_sdk_sign <= k256_verify + 10 µs`).
//!
//! The stand-in runs in-process, so this needs no provisioned service. Run with
//! `cargo bench -p keymgr-azure --bench sign`; results are in the crate's README.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::Secret;
use azure_core::http::{ClientOptions, RetryOptions, Transport};
use azure_identity::{ClientSecretCredential, ClientSecretCredentialOptions};
use azure_security_keyvault_keys::models::{
    KeyClientSignOptions, KeyOperationResult, SignParameters, SignatureAlgorithm,
};
use azure_security_keyvault_keys::{KeyClient, KeyClientOptions};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
use keymgr_azure::{AzureKvBackend, AzureKvConfig};
use keymgr_core::{KeyBackend, KeyManager, KeyRef, SignPayload};
use keymgr_testkit::azure::{CLIENT_ID, StandIn, TENANT_ID};

const SECRET: &str = "kv-bench-secret";

/// The backend as a user configures it for `stand_in` (`AZURE_*`, `SSL_CERT_FILE`).
fn backend(stand_in: &StandIn, key: &str) -> AzureKvBackend {
    let vars = [
        ("AZURE_VAULT_URL", stand_in.url()),
        ("AZURE_AUTHORITY_HOST", stand_in.url()),
        ("AZURE_TENANT_ID", TENANT_ID.to_owned()),
        ("AZURE_CLIENT_ID", CLIENT_ID.to_owned()),
        ("AZURE_CLIENT_SECRET", SECRET.to_owned()),
        ("SSL_CERT_FILE", stand_in.ca_file().display().to_string()),
        ("AZURE_KEYVAULT_VERIFY_CHALLENGE_RESOURCE", "false".into()),
        ("AZURE_EVM_KEY_NAME", key.to_owned()),
    ];
    let config =
        AzureKvConfig::from_vars(|n| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone()))
            .expect("config");
    AzureKvBackend::new(config).expect("backend")
}

/// The bare SDK client with the same options keymgr-azure uses (client-secret credential,
/// the stand-in's CA, SDK retries off).
fn raw_client(stand_in: &StandIn) -> KeyClient {
    let pem = std::fs::read(stand_in.ca_file()).unwrap();
    let http = reqwest::ClientBuilder::new()
        .tls_certs_merge(reqwest::Certificate::from_pem_bundle(&pem).unwrap())
        .build()
        .unwrap();
    let mut cloud = CustomConfiguration::default();
    cloud.authority_host = stand_in.url();
    let options = ClientOptions {
        retry: RetryOptions::none(),
        transport: Some(Transport::new(Arc::new(http))),
        cloud: Some(Arc::new(CloudConfiguration::Custom(cloud))),
        ..Default::default()
    };
    let credential = ClientSecretCredential::new(
        TENANT_ID,
        CLIENT_ID.to_owned(),
        Secret::new(SECRET.to_owned()),
        Some(ClientSecretCredentialOptions {
            client_options: options.clone(),
        }),
    )
    .unwrap();
    KeyClient::new(
        &stand_in.url(),
        credential,
        Some(KeyClientOptions {
            client_options: options,
            verify_challenge_resource: Some(false),
            ..Default::default()
        }),
    )
    .unwrap()
}

/// The bare SDK call keymgr-azure makes for a secp256k1 prehash.
async fn raw_sign(
    client: &KeyClient,
    name: &str,
    version: &str,
    prehash: [u8; 32],
) -> KeyOperationResult {
    let parameters = SignParameters {
        algorithm: Some(SignatureAlgorithm::Es256K),
        value: Some(prehash.to_vec()),
    };
    let options = KeyClientSignOptions {
        key_version: Some(version.to_owned()),
        ..Default::default()
    };
    client
        .sign(name, parameters.try_into().unwrap(), Some(options))
        .await
        .expect("sign")
        .into_model()
        .expect("sign result")
}

async fn sign_concurrently(backend: &Arc<AzureKvBackend>, callers: usize) {
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

async fn raw_concurrently(client: &KeyClient, version: &str, callers: usize) {
    let mut tasks = Vec::with_capacity(callers);
    for i in 0..callers {
        let mut h = [0x5au8; 32];
        h[0] = i as u8;
        tasks.push(raw_sign(client, "evm-signer", version, h));
    }
    futures::future::join_all(tasks).await;
}

/// keymgr-azure vs the bare SDK call against the stand-in answering from precomputed
/// signatures: keymgr's added latency.
fn against_stub(c: &mut Criterion, rt: &tokio::runtime::Runtime, prehash: [u8; 32]) {
    let stand_in = rt.block_on(StandIn::start(SECRET));
    let version = stand_in.create_secp256k1("evm-signer");
    stand_in.precompute_signatures();
    let pinned = format!("evm-signer/{version}");
    let client = raw_client(&stand_in);
    let backend = backend(&stand_in, &pinned);
    let manager = KeyManager::new(Arc::new(self::backend(&stand_in, &pinned)));
    let payload = SignPayload::Prehash(prehash);
    let key = KeyRef::new("evm");
    // Warm tokens, connections and the public key caches; sign the digest once.
    rt.block_on(raw_sign(&client, "evm-signer", &version, prehash));
    rt.block_on(backend.sign(&key, &payload)).unwrap();
    let sig = rt.block_on(manager.sign(&key, &payload)).unwrap();
    let mut group = c.benchmark_group("azure_stub");
    group.bench_function("raw_sdk_sign", |b| {
        b.to_async(rt)
            .iter(|| raw_sign(&client, "evm-signer", &version, prehash));
    });
    group.bench_function("keymgr_sign", |b| {
        b.to_async(rt)
            .iter(|| async { backend.sign(&key, &payload).await.unwrap() });
    });
    group.bench_function("key_manager_sign", |b| {
        b.to_async(rt)
            .iter(|| async { manager.sign(&key, &payload).await.unwrap() });
    });
    let pk = rt.block_on(manager.public_key(&key)).unwrap();
    let vk = *pk.as_secp256k1().unwrap();
    assert_eq!(vk, stand_in.verifying_key("evm-signer", &version));
    let k256_sig = *sig.as_secp256k1().unwrap().as_k256();
    vk.verify_prehash(&prehash, &k256_sig)
        .expect("the signature verifies with k256");
    group.bench_function("k256_verify", |b| {
        b.iter(|| vk.verify_prehash(&prehash, &k256_sig).unwrap());
    });
    group.finish();
}

/// keymgr-azure vs the bare SDK call against the stand-in (which signs every request with
/// a real k256 key) at 1, 4 and 16 concurrent callers.
fn against_stand_in(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let stand_in = rt.block_on(StandIn::start(SECRET));
    let version = stand_in.create_secp256k1("evm-signer");
    let client = raw_client(&stand_in);
    let backend = Arc::new(backend(&stand_in, "evm-signer"));
    // Warm tokens, connections and caches, as a long-running service would be.
    rt.block_on(sign_concurrently(&backend, 1));
    rt.block_on(raw_concurrently(&client, &version, 1));
    let mut group = c.benchmark_group("azure_kv_sign");
    for callers in [1usize, 4, 16] {
        group.throughput(Throughput::Elements(callers as u64));
        group.bench_with_input(BenchmarkId::new("keymgr", callers), &callers, |b, &n| {
            b.to_async(rt).iter(|| sign_concurrently(&backend, n));
        });
        group.bench_with_input(BenchmarkId::new("raw_sdk", callers), &callers, |b, &n| {
            b.to_async(rt)
                .iter(|| raw_concurrently(&client, &version, n));
        });
    }
    group.finish();
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // The stub comparison runs client and stand-in on one thread: no cross-thread
    // wake-ups; the stand-in's work is in both numbers, so their difference is keymgr's.
    let local = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    against_stub(c, &local, [0x42u8; 32]);
    against_stand_in(c, &rt);
}

criterion_group!(benches, bench);
criterion_main!(benches);
