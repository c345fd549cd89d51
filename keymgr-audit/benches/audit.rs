//! Audit log benchmarks:
//! - `append/durable_group_commit`: entries/s when 256 concurrent callers each wait for
//!   their entry to be fsynced (group commit shares fsyncs among them);
//! - `sign/*`: `KeyManager::sign` on the env backend with the file log (durable) vs
//!   `tracing` only, sequential and with 64 concurrent signers;
//! - `verify/100k`: verification throughput over a 100 000-entry log. The 1 M-entry
//!   run (~420 MB) and the added latency at a fixed 1000 signatures/s live in
//!   `examples/load.rs` (`cargo xtask bench-audit`).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use keymgr_audit::{AuditConfig, AuditLog, ChainKey, Durability, Verifier};
use keymgr_core::{
    AuditEvent, AuditRecord, AuditSink as _, KeyManager, KeyRef, Outcome, SignPayload,
};
use keymgr_env::EnvBackend;
use keymgr_testkit::TempDir;

fn config(dir: &Path) -> AuditConfig {
    let mut c = AuditConfig::new(dir);
    c.node_id = "bench".into();
    c
}

fn record(i: u64) -> AuditRecord {
    let mut r = AuditRecord::new(AuditEvent::SignSuccess, "env", "evm", Outcome::Success)
        .detail("algorithm", "secp256k1");
    r.payload_sha256 = Some(format!("{i:064x}"));
    r
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn append(c: &mut Criterion) {
    let rt = runtime();
    let dir = TempDir::new("audit-bench-append");
    let log = AuditLog::open_with(&config(dir.path()), ChainKey::sha256()).unwrap();
    let mut g = c.benchmark_group("append");
    const CALLERS: u64 = 256;
    g.throughput(Throughput::Elements(CALLERS));
    g.bench_function("durable_group_commit", |b| {
        b.to_async(&rt).iter(|| {
            let log = log.clone();
            async move {
                let tasks: Vec<_> = (0..CALLERS)
                    .map(|i| {
                        let log = log.clone();
                        tokio::spawn(async move { log.record(record(i)).await.unwrap() })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
            }
        });
    });
    g.finish();
    let s = log.status();
    eprintln!(
        "append: {} entries in {} fsynced commits ({:.1} entries per fsync)",
        s.written,
        s.commits,
        s.written as f64 / s.commits.max(1) as f64
    );
    drop(log);
}

fn sign(c: &mut Criterion) {
    let rt = runtime();
    let backend = Arc::new(EnvBackend::generate());
    let dir = TempDir::new("audit-bench-sign");
    let log = AuditLog::open_with(&config(dir.path()), ChainKey::sha256()).unwrap();
    let on = Arc::new(
        KeyManager::recommended(backend.clone())
            .audit(Arc::new(log.clone()))
            .build(),
    );
    let off = Arc::new(KeyManager::builder(backend).build());
    let on_ref = on.clone();
    let key = KeyRef::new("evm");
    let payload = SignPayload::Prehash([7; 32]);
    let mut g = c.benchmark_group("sign");
    for (name, manager) in [("audit_off", off), ("audit_on_durable", on)] {
        g.throughput(Throughput::Elements(1));
        g.bench_function(BenchmarkId::new("sequential", name), |b| {
            b.to_async(&rt)
                .iter(|| async { manager.sign(&key, &payload).await.unwrap() });
        });
        const SIGNERS: u64 = 64;
        g.throughput(Throughput::Elements(SIGNERS));
        g.bench_function(BenchmarkId::new("concurrent_64", name), |b| {
            b.to_async(&rt).iter(|| {
                let manager = manager.clone();
                let key = key.clone();
                let payload = payload.clone();
                async move {
                    let tasks: Vec<_> = (0..SIGNERS)
                        .map(|_| {
                            let (m, k, p) = (manager.clone(), key.clone(), payload.clone());
                            tokio::spawn(async move { m.sign(&k, &p).await.unwrap() })
                        })
                        .collect();
                    for t in tasks {
                        t.await.unwrap();
                    }
                }
            });
        });
    }
    g.finish();

    // Fsyncs per signature, sequential (the goal is at most 1).
    let before = log.status();
    rt.block_on(async {
        for _ in 0..200 {
            on_ref.sign(&key, &payload).await.unwrap();
        }
    });
    let after = log.status();
    eprintln!(
        "sign/sequential durable: {:.2} fsyncs per signature (goal <= 1)",
        (after.commits - before.commits) as f64 / 200.0
    );
    for bench in ["sequential", "concurrent_64"] {
        if let (Some(off), Some(on)) = (
            mean_ns(&format!("sign/{bench}/audit_off")),
            mean_ns(&format!("sign/{bench}/audit_on_durable")),
        ) {
            eprintln!(
                "sign/{bench}: durable-log throughput = {:.2} x audit off (goal for concurrent_64: >= 0.8)",
                off / on
            );
        }
    }
    drop(log);
}

/// Criterion's mean time for `id` from this run (`<target>/criterion/<id>/new`).
fn mean_ns(id: &str) -> Option<f64> {
    let root = std::env::var_os("CRITERION_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("CARGO_TARGET_DIR").map(|t| Path::new(&t).join("criterion")))
        .unwrap_or_else(|| Path::new("../target/criterion").to_path_buf());
    let text = std::fs::read_to_string(root.join(id).join("new/estimates.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["mean"]["point_estimate"].as_f64()
}

fn verify(c: &mut Criterion) {
    const ENTRIES: u64 = 100_000;
    let rt = runtime();
    let dir = TempDir::new("audit-bench-verify");
    let mut cfg = config(dir.path());
    cfg.durability = Durability::Buffered;
    rt.block_on(async {
        let log = AuditLog::open_with(&cfg, ChainKey::sha256()).unwrap();
        for i in 0..ENTRIES {
            log.record(record(i)).await.unwrap();
        }
        log.flush().await.unwrap();
    });
    let verifier = Verifier::new(ChainKey::sha256());
    let mut g = c.benchmark_group("verify");
    g.sample_size(10);
    g.throughput(Throughput::Elements(ENTRIES));
    g.bench_function("100k", |b| {
        b.iter(|| {
            let r = verifier.verify_paths(&[dir.path()]).unwrap();
            assert_eq!(r.entries, ENTRIES);
        });
    });
    g.finish();
}

criterion_group!(benches, append, sign, verify);
criterion_main!(benches);
