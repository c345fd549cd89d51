//! The speed goals of the durable log, measured as ratios in one process so that the
//! machine's load (shared cores, a shared disk) weighs on both sides alike:
//!
//! 1. Sequential durable signing: fsyncs per signature, counted by the writer
//!    (`AuditStatus::fsyncs`, every `fdatasync`/directory sync it issues). Goal ≤ 1.
//! 2. 64 concurrent signers: throughput with the durable log ÷ throughput with audit off
//!    (`tracing` only). Goal ≥ 0.8. Two shapes, each run `KEYMGR_GOALS_ROUNDS` times
//!    (default 3), audit off and durable alternating within each round (the order
//!    swapped every round) for `KEYMGR_GOALS_MS` each (default 3000):
//!    - `sustained`: 64 tasks, each signing in a loop (sign, wait for the commit, sign
//!      again): signatures/s of a service with 64 callers in flight;
//!    - `burst`: 64 signatures spawned at once, all awaited, repeated: the batch
//!      latency of the criterion bench `sign/concurrent_64`, where the last commit of
//!      every batch is waited for with nothing else to do.
//!
//!    Each round also reports the process's CPU time (user + system, all threads, the
//!    writer's included; from `/proc/self/stat`, Linux) per signature on both sides and
//!    their ratio `cpu_ratio` = off ÷ durable: the throughput ratio a CPU-bound service
//!    would see, which other processes' load on shared cores moves far less than
//!    signatures per second (kernel threads such as the journal's are not counted).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use keymgr_audit::AuditLog;
use keymgr_core::{KeyManager, KeyRef, SignPayload};

const SIGNERS: u64 = 64;

#[derive(Clone, Copy)]
enum Shape {
    Sustained,
    Burst,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Sustained => "sustained",
            Shape::Burst => "burst",
        }
    }
}

fn digest(i: u64) -> SignPayload {
    let mut d = [0u8; 32];
    d[..8].copy_from_slice(&i.to_be_bytes());
    SignPayload::Prehash(d)
}

/// This process's CPU time so far (user + system, every thread) in clock ticks, from
/// fields 14 and 15 of `/proc/self/stat` (proc(5)); `None` where that cannot be read.
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may contain spaces: count fields after its ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Signatures per second of 64 concurrent signers on `manager` for `window`, and CPU
/// ticks per signature (`None` without `/proc`).
async fn throughput(
    manager: &Arc<KeyManager>,
    shape: Shape,
    window: Duration,
) -> (f64, Option<f64>) {
    let cpu_before = cpu_ticks();
    let key = KeyRef::new("evm");
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    match shape {
        Shape::Sustained => {
            let stop = Arc::new(AtomicBool::new(false));
            let tasks: Vec<_> = (0..SIGNERS)
                .map(|t| {
                    let (m, k) = (manager.clone(), key.clone());
                    let (stop, done) = (stop.clone(), done.clone());
                    tokio::spawn(async move {
                        let mut i = t << 32;
                        while !stop.load(Ordering::Relaxed) {
                            m.sign(&k, &digest(i)).await.unwrap();
                            done.fetch_add(1, Ordering::Relaxed);
                            i += 1;
                            // Without audit, `sign` never waits: yield as a service
                            // between requests would, so the timer (and the other
                            // side's fairness) is not starved. Both sides alike.
                            tokio::task::yield_now().await;
                        }
                    })
                })
                .collect();
            tokio::time::sleep(window).await;
            stop.store(true, Ordering::Relaxed);
            for t in tasks {
                t.await.unwrap();
            }
        }
        Shape::Burst => {
            let mut i = 0u64;
            while started.elapsed() < window {
                let tasks: Vec<_> = (0..SIGNERS)
                    .map(|_| {
                        i += 1;
                        let (m, k, p) = (manager.clone(), key.clone(), digest(i));
                        tokio::spawn(async move { m.sign(&k, &p).await.unwrap() })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
                done.fetch_add(SIGNERS, Ordering::Relaxed);
            }
        }
    }
    let signatures = done.load(Ordering::Relaxed) as f64;
    let cpu = cpu_before
        .zip(cpu_ticks())
        .map(|(b, a)| (a - b) as f64 / signatures.max(1.0));
    (signatures / started.elapsed().as_secs_f64(), cpu)
}

/// `v` with 3 decimals, or `null`.
fn json_num(v: Option<f64>) -> String {
    v.map_or_else(|| "null".to_owned(), |v| format!("{v:.3}"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs both goals; `on` writes to `log` (durable), `off` audits to `tracing` only.
pub async fn run(off: Arc<KeyManager>, on: Arc<KeyManager>, log: &AuditLog, rounds: u32, ms: u64) {
    let window = Duration::from_millis(ms);
    // Warm up both paths (segment creation, page cache, allocator, public key cache).
    for m in [&off, &on] {
        let _ = throughput(m, Shape::Burst, Duration::from_millis(300)).await;
    }

    const SEQUENTIAL: u64 = 500;
    let key = KeyRef::new("evm");
    let before = log.status();
    for i in 0..SEQUENTIAL {
        on.sign(&key, &digest(i)).await.unwrap();
    }
    let after = log.status();
    println!(
        "{{\"measure\":\"sequential_fsyncs_per_signature\",\"signatures\":{SEQUENTIAL},\"fsyncs\":{},\"per_signature\":{:.3},\"goal_max\":1}}",
        after.fsyncs - before.fsyncs,
        (after.fsyncs - before.fsyncs) as f64 / SEQUENTIAL as f64,
    );

    for shape in [Shape::Sustained, Shape::Burst] {
        let mut ratios = Vec::new();
        let mut cpu_ratios = Vec::new();
        for round in 1..=rounds {
            let order = if round % 2 == 1 {
                [false, true]
            } else {
                [true, false]
            };
            let (mut off_rate, mut on_rate, mut per_fsync) = (0.0, 0.0, 0.0);
            let (mut off_cpu, mut on_cpu) = (None, None);
            for durable in order {
                if durable {
                    let before = log.status();
                    (on_rate, on_cpu) = throughput(&on, shape, window).await;
                    let after = log.status();
                    per_fsync = (after.written - before.written) as f64
                        / (after.fsyncs - before.fsyncs).max(1) as f64;
                } else {
                    (off_rate, off_cpu) = throughput(&off, shape, window).await;
                }
            }
            let ratio = on_rate / off_rate;
            ratios.push(ratio);
            let cpu_ratio = off_cpu.zip(on_cpu).map(|(off, on)| off / on);
            cpu_ratios.extend(cpu_ratio);
            println!(
                "{{\"measure\":\"concurrent_64\",\"shape\":\"{}\",\"round\":{round},\"audit_off_per_sec\":{off_rate:.0},\"durable_per_sec\":{on_rate:.0},\"ratio\":{ratio:.3},\"entries_per_fsync\":{per_fsync:.1},\"cpu_ticks_per_1000_off\":{},\"cpu_ticks_per_1000_durable\":{},\"cpu_ratio\":{}}}",
                shape.name(),
                json_num(off_cpu.map(|c| c * 1000.0)),
                json_num(on_cpu.map(|c| c * 1000.0)),
                json_num(cpu_ratio),
            );
        }
        println!(
            "{{\"measure\":\"concurrent_64_ratio\",\"shape\":\"{}\",\"rounds\":{rounds},\"median\":{:.3},\"min\":{:.3},\"goal_min\":0.8}}",
            shape.name(),
            median(ratios.clone()),
            ratios.iter().copied().fold(f64::INFINITY, f64::min),
        );
        if !cpu_ratios.is_empty() {
            println!(
                "{{\"measure\":\"concurrent_64_cpu_ratio\",\"shape\":\"{}\",\"rounds\":{},\"median\":{:.3},\"min\":{:.3},\"goal_min\":0.8}}",
                shape.name(),
                cpu_ratios.len(),
                median(cpu_ratios.clone()),
                cpu_ratios.iter().copied().fold(f64::INFINITY, f64::min),
            );
        }
    }
}
