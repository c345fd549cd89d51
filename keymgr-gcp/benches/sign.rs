//! Signing throughput of keymgr-gcp against keymgr-testkit's Cloud KMS stand-in at 1, 4
//! and 16 concurrent callers, with the bare `google-cloud-kms-v1` call for comparison
//! (`gcp_kms_sign/*`), and keymgr's own added latency per call against a local HTTP stub
//! that answers `asymmetricSign` instantly with a precomputed genuine response
//! (`gcp_stub/*`: the difference between `keymgr_sign` and `raw_client_sign` is
//! everything keymgr adds to a client call, with no server time in either;
//! `key_manager_sign` is the same through `KeyManager::new`'s full stack, and
//! `k256_verify` one verification, the unit of the goal set for AWS in issue 14:
//! `key_manager_sign - raw_client_sign <= k256_verify + 10 µs`).
//!
//! The stand-in runs in-process, so this needs no provisioned service. Run with
//! `cargo bench -p keymgr-gcp --bench sign`; results are in the crate's README.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use google_cloud_gax::retry_policy::NeverRetry;
use google_cloud_kms_v1::client::KeyManagementService;
use google_cloud_kms_v1::model::{AsymmetricSignResponse, Digest};
use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
use keymgr_core::{KeyBackend, KeyManager, KeyRef, SignPayload};
use keymgr_gcp::GcpKmsBackend;
use keymgr_testkit::gcp::{Algorithm, StandIn};

/// A client for `endpoint` with anonymous credentials and the client's retries off (as
/// keymgr-gcp configures it: keymgr's retry layer is the only one).
async fn client(endpoint: &str) -> KeyManagementService {
    KeyManagementService::builder()
        .with_endpoint(endpoint)
        .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build())
        .with_retry_policy(NeverRetry)
        .build()
        .await
        .expect("client")
}

fn crc32c(bytes: &[u8]) -> i64 {
    i64::from(crc32c::crc32c(bytes))
}

/// The bare client call keymgr-gcp makes for a secp256k1 prehash (digest and its CRC32C).
async fn raw_sign(
    client: &KeyManagementService,
    version: &str,
    prehash: [u8; 32],
) -> AsymmetricSignResponse {
    client
        .asymmetric_sign()
        .set_name(version)
        .set_digest(Digest::new().set_sha256(Bytes::copy_from_slice(&prehash)))
        .set_digest_crc32c(crc32c(&prehash))
        .send()
        .await
        .expect("asymmetricSign")
}

async fn sign_concurrently(backend: &Arc<GcpKmsBackend>, callers: usize) {
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

async fn raw_concurrently(client: &KeyManagementService, version: &str, callers: usize) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..callers {
        let (client, version) = (client.clone(), version.to_owned());
        tasks.spawn(async move {
            let mut h = [0x5au8; 32];
            h[0] = i as u8;
            raw_sign(&client, &version, h).await
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("task");
    }
}

/// A Cloud KMS endpoint on loopback that answers `GET {version}`, `GET
/// {version}/publicKey` and `POST {version}:asymmetricSign` at once with precomputed
/// responses (one fixed key, one fixed prehash): no server time. Field shapes as in
/// <https://cloud.google.com/kms/docs/reference/rest/v1/projects.locations.keyRings.cryptoKeys.cryptoKeyVersions>
/// (int64 as strings, integer enums as the client asks with `enum-encoding=int`).
mod stub {
    use base64::Engine as _;
    use k256::ecdsa::signature::hazmat::PrehashSigner as _;
    use k256::pkcs8::{EncodePublicKey as _, LineEnding};
    use keymgr_testkit::instant::{self, Response};

    pub const VERSION: &str =
        "projects/keymgr-stub/locations/global/keyRings/stub/cryptoKeys/evm/cryptoKeyVersions/1";

    /// Starts the stub (keymgr_testkit::instant); returns its `http://` endpoint.
    pub fn start(prehash: [u8; 32]) -> String {
        let sk = k256::ecdsa::SigningKey::from_bytes(&[9u8; 32].into()).unwrap();
        let sig: k256::ecdsa::Signature = sk.sign_prehash(&prehash).unwrap();
        let der = sig.to_der().as_bytes().to_vec();
        let pem = sk
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let version = serde_json::json!({
            "name": VERSION, "state": 1, "protectionLevel": 1, "algorithm": 31,
            "createTime": "2026-01-01T00:00:00Z",
        })
        .to_string();
        let public_key = serde_json::json!({
            "pem": pem, "pemCrc32c": crc32c::crc32c(pem.as_bytes()).to_string(),
            "algorithm": 31, "name": VERSION, "protectionLevel": 1,
        })
        .to_string();
        let signed = serde_json::json!({
            "signature": b64(&der), "signatureCrc32c": crc32c::crc32c(&der).to_string(),
            "verifiedDigestCrc32c": true, "verifiedDataCrc32c": false,
            "name": VERSION, "protectionLevel": 1,
        })
        .to_string();
        let version_path = format!("/v1/{VERSION}");
        instant::start(move |request| {
            let path = request.path;
            let body = if path.ends_with(":asymmetricSign") {
                &signed
            } else if path.ends_with("/publicKey") {
                &public_key
            } else if path == version_path {
                &version
            } else {
                return None;
            };
            Some(Response {
                content_type: "application/json; charset=UTF-8",
                body: body.clone(),
            })
        })
    }
}

/// keymgr-gcp vs the bare client call against the instant stub: keymgr's added latency.
fn against_stub(c: &mut Criterion, rt: &tokio::runtime::Runtime, prehash: [u8; 32]) {
    let endpoint = stub::start(prehash);
    let client = rt.block_on(client(&endpoint));
    let keys = BTreeMap::from([("evm".to_owned(), stub::VERSION.to_owned())]);
    let backend = GcpKmsBackend::from_client(client.clone(), keys.clone());
    let payload = SignPayload::Prehash(prehash);
    let key = KeyRef::new("evm");
    // Warm the version and public key caches, as a long-running service would be.
    rt.block_on(backend.sign(&key, &payload))
        .expect("keymgr signs against the stub");
    let manager = KeyManager::new(Arc::new(GcpKmsBackend::from_client(client.clone(), keys)));
    let sig = rt.block_on(manager.sign(&key, &payload)).unwrap();
    let mut group = c.benchmark_group("gcp_stub");
    group.bench_function("raw_client_sign", |b| {
        b.to_async(rt)
            .iter(|| raw_sign(&client, stub::VERSION, prehash));
    });
    group.bench_function("keymgr_sign", |b| {
        b.to_async(rt)
            .iter(|| async { backend.sign(&key, &payload).await.unwrap() });
    });
    group.bench_function("key_manager_sign", |b| {
        b.to_async(rt)
            .iter(|| async { manager.sign(&key, &payload).await.unwrap() });
    });
    // The goal's unit: one k256 verification of that signature (same process).
    let pk = rt.block_on(manager.public_key(&key)).unwrap();
    let vk = *pk.as_secp256k1().unwrap();
    let k256_sig = *sig.as_secp256k1().unwrap().as_k256();
    vk.verify_prehash(&prehash, &k256_sig)
        .expect("the stub's signature verifies with k256");
    group.bench_function("k256_verify", |b| {
        b.iter(|| vk.verify_prehash(&prehash, &k256_sig).unwrap());
    });
    group.finish();
}

/// keymgr-gcp vs the bare client call against the stand-in (which signs every request
/// with a real k256 key) at 1, 4 and 16 concurrent callers.
fn against_stand_in(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let stand_in = rt.block_on(StandIn::start());
    let evm = stand_in.create_key("evm-key", Algorithm::Secp256k1);
    let version = format!("{evm}/cryptoKeyVersions/1");
    let client = rt.block_on(client(&stand_in.endpoint()));
    let backend = Arc::new(GcpKmsBackend::from_client(
        client.clone(),
        BTreeMap::from([("evm".to_owned(), evm)]),
    ));
    // Warm the current-version and public key caches, as a long-running service would be.
    rt.block_on(sign_concurrently(&backend, 1));
    let mut group = c.benchmark_group("gcp_kms_sign");
    for callers in [1usize, 4, 16] {
        group.throughput(Throughput::Elements(callers as u64));
        group.bench_with_input(BenchmarkId::new("keymgr", callers), &callers, |b, &n| {
            b.to_async(rt).iter(|| sign_concurrently(&backend, n));
        });
        group.bench_with_input(
            BenchmarkId::new("raw_client", callers),
            &callers,
            |b, &n| {
                b.to_async(rt)
                    .iter(|| raw_concurrently(&client, &version, n));
            },
        );
    }
    group.finish();
    drop(stand_in);
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // The client side of the stub comparison runs on one thread (the stub has its own).
    let local = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    against_stub(c, &local, [0x42u8; 32]);
    against_stand_in(c, &rt);
}

criterion_group!(benches, bench);
criterion_main!(benches);
