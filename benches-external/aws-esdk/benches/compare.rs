//! keymgr-envelope vs the Rust AWS Encryption SDK (`aws-esdk`): encrypt and decrypt
//! throughput of 1 MiB messages in 64 KiB frames, raw AES keyring on both sides (a
//! fresh data key per message), suite `0x0478`, one process. The ESDK takes owned
//! buffers: their copies are made outside the timed section (`iter_batched`).

use aws_esdk_bench::{Esdk, Keymgr, context, cross_check};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

const MESSAGE: usize = 1 << 20;
const FRAME: u32 = 64 * 1024;

fn compare(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let plaintext: Vec<u8> = (0..MESSAGE).map(|i| (i * 31 % 251) as u8).collect();
    let ctx = context();
    let keymgr = Keymgr::new(FRAME).expect("keymgr set-up");
    let esdk = rt.block_on(Esdk::new(FRAME)).expect("aws-esdk set-up");
    let (ours, theirs) = rt
        .block_on(cross_check(&keymgr, &esdk, &plaintext))
        .expect("each side decrypts the other's message");

    let mut g = c.benchmark_group("esdk-1MiB-64KiB-frames");
    g.throughput(Throughput::Bytes(MESSAGE as u64));
    g.bench_function("encrypt/keymgr-envelope", |b| {
        b.to_async(&rt)
            .iter(|| keymgr.encryptor.encrypt(&plaintext, &ctx))
    });
    g.bench_function("encrypt/aws-esdk", |b| {
        b.to_async(&rt).iter_batched(
            || plaintext.clone(),
            |p| esdk.encrypt(p),
            BatchSize::LargeInput,
        )
    });
    g.bench_function("decrypt/keymgr-envelope", |b| {
        b.to_async(&rt).iter(|| keymgr.decryptor.decrypt(&ours))
    });
    g.bench_function("decrypt/aws-esdk", |b| {
        b.to_async(&rt).iter_batched(
            || theirs.clone(),
            |m| esdk.decrypt(m),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, compare);
criterion_main!(benches);
