//! Claim signing and verification cost, and the signer's overhead over a bare backend
//! `sign` (encoding, SHA-512Half, DER, the check against the bound public key, the
//! monotonic guard).

// A benchmark has no caller to hand errors to: failing loudly is the right behaviour.
#![allow(clippy::expect_used)]
// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use keymgr_core::{KeyBackend, KeyRef, SignPayload, xrpl};
use keymgr_env::EnvBackend;
use keymgr_xrp::{ChannelId, ClaimSigner, Drops, encode_claim, verify_claim};

const CHANNEL: &str = "5DB01B7FFED6B67E6B0414DED11E051D2EE2B7619CE0EAA6286D67A3A4D5BDB3";

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let backend = Arc::new(
        EnvBackend::new()
            .with_xrpl_seed("ed", "sEdSKaCy2JT7JaM7v95H9SxkhP9wS2r")
            .expect("seed")
            .with_xrpl_seed("secp", "sp5fghtJtpUorTwvof1NpDXAzNwf5")
            .expect("seed"),
    );
    let channel = ChannelId::from_hex(CHANNEL).expect("channel");

    c.bench_function("encode_claim", |b| {
        b.iter(|| encode_claim(black_box(&channel), black_box(Drops::MAX)))
    });

    for name in ["ed", "secp"] {
        let signer = rt
            .block_on(ClaimSigner::new(backend.clone(), name))
            .expect("signer");
        let unguarded = rt
            .block_on(
                ClaimSigner::builder(backend.clone(), name)
                    .monotonic_guard(false)
                    .build(),
            )
            .expect("signer");
        let key = KeyRef::new(name);
        let message = encode_claim(&channel, Drops::new(1_000_000).expect("drops"));
        let payload = if name == "secp" {
            SignPayload::Prehash(xrpl::sha512_half(&message))
        } else {
            SignPayload::message(message.to_vec())
        };
        c.bench_function(&format!("{name}/backend_sign_only"), |b| {
            b.iter(|| {
                rt.block_on(backend.sign(&key, black_box(&payload)))
                    .expect("sign")
            })
        });
        c.bench_function(&format!("{name}/sign_claim"), |b| {
            b.iter(|| {
                rt.block_on(signer.sign_claim(black_box(CHANNEL), 1_000_000u64))
                    .expect("sign")
            })
        });
        c.bench_function(&format!("{name}/sign_claim_no_guard"), |b| {
            b.iter(|| {
                rt.block_on(unguarded.sign_claim(black_box(CHANNEL), 1_000_000u64))
                    .expect("sign")
            })
        });
        let sig = rt
            .block_on(signer.sign_claim(CHANNEL, 1_000_000u64))
            .expect("sign");
        let pk = signer.public_key().to_string();
        c.bench_function(&format!("{name}/verify_claim"), |b| {
            b.iter(|| assert!(verify_claim(black_box(CHANNEL), "1000000", &sig, &pk)))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
