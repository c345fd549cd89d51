//! Signatures per second of `alloy-signer-aws` at 1, 4 and 16 concurrent callers against
//! the KMS endpoint in `AWS_ENDPOINT_URL`, with the key in `KEYMGR_BENCH_KEY_ID` or a new
//! secp256k1 key it creates.
//! Prints one JSON line per concurrency level, the same format as keymgr-aws's
//! `throughput` example, so `cargo xtask bench-aws` can put them side by side.

use std::sync::Arc;
use std::time::Instant;

use alloy_primitives::B256;
use alloy_signer::Signer as _;
use alloy_signer_aws::AwsSigner;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL")?;
    let total: usize = std::env::var("KEYMGR_BENCH_SIGNATURES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .load()
        .await;
    let client = aws_sdk_kms::Client::new(&config);
    let key_id = match std::env::var("KEYMGR_BENCH_KEY_ID") {
        Ok(id) => id,
        Err(_) => client
            .create_key()
            .key_spec(aws_sdk_kms::types::KeySpec::EccSecgP256K1)
            .key_usage(aws_sdk_kms::types::KeyUsageType::SignVerify)
            .send()
            .await?
            .key_metadata
            .ok_or("CreateKey returned no metadata")?
            .key_id,
    };
    let signer = Arc::new(AwsSigner::new(client, key_id, Some(1)).await?);
    // Warm-up: connections, the cached public key.
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
                    let hash = B256::from(alloy_primitives::keccak256(
                        [(t as u64).to_be_bytes(), (i as u64).to_be_bytes()].concat(),
                    ));
                    let sig = signer.sign_hash(&hash).await?;
                    // Checked by alloy's own recovery, like every benchmarked signature.
                    if sig.recover_address_from_prehash(&hash)? != signer.address() {
                        return Err::<(), Box<dyn std::error::Error + Send + Sync>>(
                            "signature does not recover to the signer".into(),
                        );
                    }
                }
                Ok(())
            }));
        }
        for t in tasks {
            t.await?.map_err(|e| e.to_string())?;
        }
        let done = (total / concurrency) * concurrency;
        let per_sec = done as f64 / started.elapsed().as_secs_f64();
        println!(
            "{{\"impl\":\"alloy-signer-aws\",\"concurrency\":{concurrency},\"signatures\":{done},\"per_sec\":{per_sec:.1}}}"
        );
    }
    Ok(())
}
