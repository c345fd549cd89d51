//! Signatures per second of keymgr-aws (through `keymgr-evm`'s `EvmSigner`, so the work
//! matches alloy-signer-aws's `sign_hash`: prehash sign, DER → low-s, verify, recovery
//! id) at 1, 4 and 16 concurrent callers against the KMS endpoint in `AWS_ENDPOINT_URL`.
//! Prints one JSON line per level; `cargo xtask bench-aws` runs it next to the same
//! program for alloy-signer-aws (benches-external/alloy-signer-aws) and prints ratios.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use alloy_primitives::{B256, keccak256};
use alloy_signer::Signer as _;
use keymgr_aws::AwsKmsBackend;
use keymgr_core::KeyBackend;
use keymgr_evm::EvmSigner;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .map_err(|_| "AWS_ENDPOINT_URL is not set (run `cargo xtask bench-aws`)")?;
    let total: usize = std::env::var("KEYMGR_BENCH_SIGNATURES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .load()
        .await;
    let client = aws_sdk_kms::Client::new(&config);
    let key_id = client
        .create_key()
        .key_spec(aws_sdk_kms::types::KeySpec::EccSecgP256K1)
        .key_usage(aws_sdk_kms::types::KeyUsageType::SignVerify)
        .send()
        .await?
        .key_metadata
        .ok_or("CreateKey returned no metadata")?
        .key_id;
    let backend: Arc<dyn KeyBackend> = Arc::new(AwsKmsBackend::from_client(
        client,
        BTreeMap::from([("evm".to_owned(), key_id)]),
    ));
    let signer = Arc::new(EvmSigner::new(backend, "evm").await?);
    for i in 0..8u8 {
        signer.sign_hash(&B256::repeat_byte(i)).await?;
    }
    for concurrency in [1usize, 4, 16] {
        let started = Instant::now();
        let mut tasks = Vec::new();
        for t in 0..concurrency {
            let signer = signer.clone();
            let n = total / concurrency;
            tasks.push(tokio::spawn(async move {
                for i in 0..n {
                    let hash =
                        keccak256([(t as u64).to_be_bytes(), (i as u64).to_be_bytes()].concat());
                    let sig = signer.sign_hash(&hash).await.unwrap();
                    assert_eq!(
                        sig.recover_address_from_prehash(&hash).unwrap(),
                        signer.address()
                    );
                }
            }));
        }
        for t in tasks {
            t.await?;
        }
        let done = (total / concurrency) * concurrency;
        let per_sec = done as f64 / started.elapsed().as_secs_f64();
        println!(
            "{{\"impl\":\"keymgr-aws\",\"concurrency\":{concurrency},\"signatures\":{done},\"per_sec\":{per_sec:.1}}}"
        );
    }
    Ok(())
}
