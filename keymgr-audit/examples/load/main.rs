//! Audit log under load, for the numbers criterion cannot give directly:
//!
//! 0. The speed goals as same-process ratios (see `goals.rs`): fsyncs per sequential
//!    durable signature, and the throughput of 64 concurrent signers with the durable log
//!    vs audit off, interleaved and repeated (`KEYMGR_GOALS_ROUNDS`, `KEYMGR_GOALS_MS`).
//! 1. Added signing latency at a fixed rate: `KeyManager::sign` on the env backend is
//!    called open-loop at `KEYMGR_LOAD_RATE` signatures/s (default 1000) for
//!    `KEYMGR_LOAD_SECONDS` (default 10), once with `tracing`-only audit and once with the
//!    durable file log. Each latency runs from the call's scheduled start (so a stalled
//!    fsync is charged to every call queued behind it, no coordinated omission) to the
//!    return of `sign`, which for the durable log is after its SIGN_SUCCESS entry is
//!    fsynced. Prints p50/p99/p99.9/max for both and the added p99.
//! 2. Verify throughput: writes `KEYMGR_LOAD_VERIFY_ENTRIES` entries (default 1 000 000)
//!    and times `Verifier::verify_paths` over them.
//!
//! Run with `cargo xtask bench-audit` (release build). Prints one JSON line per result.
//! `KEYMGR_LOAD_ONLY=goals|latency|verify` runs one part.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keymgr_audit::{AuditConfig, AuditLog, ChainKey, Durability, Verifier};
use keymgr_core::{
    AuditEvent, AuditRecord, AuditSink as _, KeyManager, KeyRef, Outcome, SignPayload,
};
use keymgr_env::EnvBackend;
use keymgr_testkit::TempDir;
use tokio::time::MissedTickBehavior;

mod goals;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, got {v:?}")),
        Err(_) => default,
    }
}

fn open_log(dir: &Path, durability: Durability) -> AuditLog {
    let mut config = AuditConfig::new(dir);
    config.node_id = "load".into();
    config.durability = durability;
    // The library default unless the variable is set (to compare delays in one build).
    config.commit_delay = Duration::from_micros(env_or(
        "KEYMGR_AUDIT_COMMIT_DELAY_US",
        config.commit_delay.as_micros() as u64,
    ));
    AuditLog::open_with(&config, ChainKey::sha256()).unwrap()
}

struct Latencies(Vec<Duration>);

impl Latencies {
    fn quantile(&self, q: f64) -> Duration {
        let i = ((self.0.len() as f64 * q).ceil() as usize).clamp(1, self.0.len()) - 1;
        self.0[i]
    }
}

/// Calls `manager.sign` at `rate`/s for `seconds`, open-loop; returns sorted latencies.
async fn paced(manager: Arc<KeyManager>, rate: u64, seconds: u64) -> Latencies {
    let key = KeyRef::new("evm");
    let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity((rate * seconds) as usize);
    for i in 0..rate * seconds {
        let scheduled = tick.tick().await.into_std();
        let (manager, key) = (manager.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let mut digest = [0u8; 32];
            digest[..8].copy_from_slice(&i.to_be_bytes());
            manager
                .sign(&key, &SignPayload::Prehash(digest))
                .await
                .unwrap();
            scheduled.elapsed()
        }));
    }
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out.sort_unstable();
    Latencies(out)
}

/// One env key behind two managers: audit off, and a durable log in a fresh directory
/// (kept alive by the returned `TempDir`).
fn audit_off_and_durable(name: &str) -> (TempDir, AuditLog, Arc<KeyManager>, Arc<KeyManager>) {
    let backend = Arc::new(EnvBackend::generate());
    let dir = TempDir::new(name);
    let log = open_log(dir.path(), Durability::Durable);
    let off = Arc::new(KeyManager::new(backend.clone()));
    let on = Arc::new(
        KeyManager::recommended(backend)
            .audit(Arc::new(log.clone()))
            .build(),
    );
    (dir, log, off, on)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn latency_at_rate() {
    let rate: u64 = env_or("KEYMGR_LOAD_RATE", 1000);
    let seconds: u64 = env_or("KEYMGR_LOAD_SECONDS", 10);
    let (_dir, log, off, on) = audit_off_and_durable("audit-load-rate");
    // Warm up both paths (segment creation, page cache, allocator).
    paced(off.clone(), rate, 1).await;
    paced(on.clone(), rate, 1).await;
    let before = log.status();
    let mut p99 = Vec::new();
    for (name, manager) in [("audit_off", off), ("audit_on_durable", on)] {
        let l = paced(manager, rate, seconds).await;
        p99.push(l.quantile(0.99));
        println!(
            "{{\"measure\":\"sign_latency_at_rate\",\"audit\":\"{name}\",\"rate_per_sec\":{rate},\"signatures\":{},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"p999_ms\":{:.3},\"max_ms\":{:.3}}}",
            l.0.len(),
            ms(l.quantile(0.50)),
            ms(l.quantile(0.99)),
            ms(l.quantile(0.999)),
            ms(*l.0.last().unwrap()),
        );
    }
    let after = log.status();
    let entries = after.written - before.written;
    let commits = (after.commits - before.commits).max(1);
    println!(
        "{{\"measure\":\"added_p99_at_rate\",\"rate_per_sec\":{rate},\"added_p99_ms\":{:.3},\"entries_per_fsync\":{:.1}}}",
        ms(p99[1].saturating_sub(p99[0])),
        entries as f64 / commits as f64,
    );
    drop(log);
}

async fn verify_throughput() {
    let entries: u64 = env_or("KEYMGR_LOAD_VERIFY_ENTRIES", 1_000_000);
    let dir = TempDir::new("audit-load-verify");
    let log = open_log(dir.path(), Durability::Buffered);
    let started = Instant::now();
    for i in 0..entries {
        let mut r = AuditRecord::new(AuditEvent::SignSuccess, "env", "evm", Outcome::Success)
            .detail("algorithm", "secp256k1");
        r.payload_sha256 = Some(format!("{i:064x}"));
        log.record(r).await.unwrap();
    }
    log.flush().await.unwrap();
    let write = started.elapsed();
    drop(log);
    let bytes: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    let started = Instant::now();
    let report = Verifier::new(ChainKey::sha256())
        .verify_paths(&[dir.path()])
        .unwrap();
    let verify = started.elapsed();
    assert!(report.is_ok(), "fresh log failed verification: {report:?}");
    assert_eq!(report.entries, entries);
    println!(
        "{{\"measure\":\"verify\",\"entries\":{entries},\"bytes\":{bytes},\"write_buffered_s\":{:.2},\"verify_s\":{:.2},\"verify_entries_per_sec\":{:.0}}}",
        write.as_secs_f64(),
        verify.as_secs_f64(),
        entries as f64 / verify.as_secs_f64(),
    );
}

async fn speed_goals() {
    let rounds: u32 = env_or("KEYMGR_GOALS_ROUNDS", 5);
    let ms: u64 = env_or("KEYMGR_GOALS_MS", 3000);
    let (_dir, log, off, on) = audit_off_and_durable("audit-load-goals");
    goals::run(off, on, &log, rounds, ms).await;
    drop(log);
}

#[tokio::main]
async fn main() {
    let only = std::env::var("KEYMGR_LOAD_ONLY").ok();
    let runs = |part: &str| only.as_deref().is_none_or(|o| o == part);
    if runs("goals") {
        speed_goals().await;
    }
    if runs("latency") {
        latency_at_rate().await;
    }
    if runs("verify") {
        verify_throughput().await;
    }
}
