//! Runs [`Rotator::tick`] for a set of keys when they are due.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::{Clock, RotationEvent, Rotator};

/// Ticks each key when its next step is due (computed from persisted state, not a fixed
/// timer), waking at least every `max_sleep` so clock changes and approvals are seen.
///
/// A step that fails, or finds another rotator holding the key's lease, is retried with
/// exponential backoff (default 1 s doubling to 5 min, in real time), so a backend that
/// keeps refusing is not hammered and the audit log gets one failure per attempt, not a
/// flood.
#[derive(Debug)]
pub struct Scheduler {
    rotator: Arc<Rotator>,
    clock: Arc<dyn Clock>,
    keys: Vec<String>,
    max_sleep: Duration,
    retry_base: Duration,
    retry_max: Duration,
}

/// Per key: consecutive unsuccessful attempts and when the next may start.
#[derive(Debug, Default)]
struct Backoffs(HashMap<String, (u32, Instant)>);

impl Backoffs {
    /// When `key` may be tried again, while it is backing off.
    fn waiting(&self, key: &str) -> Option<Instant> {
        self.0
            .get(key)
            .map(|(_, at)| *at)
            .filter(|at| *at > Instant::now())
    }

    fn succeeded(&mut self, key: &str) {
        self.0.remove(key);
    }

    /// Records a failure; returns when to try again (`delay` of the failure count).
    fn failed(&mut self, key: &str, delay: impl Fn(u32) -> Duration) -> Instant {
        let failures = self.0.get(key).map_or(0, |(n, _)| *n).saturating_add(1);
        let at = Instant::now() + delay(failures);
        self.0.insert(key.to_owned(), (failures, at));
        at
    }
}

fn earliest(a: Option<Instant>, b: Instant) -> Option<Instant> {
    Some(a.map_or(b, |a| a.min(b)))
}

/// A running scheduler; [`stop`](SchedulerHandle::stop) ends it.
#[derive(Debug)]
pub struct SchedulerHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    events: tokio::sync::mpsc::UnboundedReceiver<RotationEvent>,
}

impl Scheduler {
    /// Schedules `keys` (default wake-up at least every 60 s).
    pub fn new(rotator: Arc<Rotator>, clock: Arc<dyn Clock>, keys: Vec<String>) -> Self {
        Self {
            rotator,
            clock,
            keys,
            max_sleep: Duration::from_secs(60),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
        }
    }

    /// Backoff after an unsuccessful step: `base`, doubling per consecutive failure,
    /// capped at `max`.
    pub fn retry_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.retry_base = base;
        self.retry_max = max.max(base);
        self
    }

    fn backoff_after(&self, failures: u32) -> Duration {
        let factor = 1u32
            .checked_shl(failures.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.retry_base
            .checked_mul(factor)
            .unwrap_or(self.retry_max)
            .min(self.retry_max)
    }

    /// Caps the time between checks.
    pub fn max_sleep(mut self, d: Duration) -> Self {
        self.max_sleep = d;
        self
    }

    /// One tick of `key`; events go to `tx`. False when it failed or another rotator
    /// holds the lease (both back off).
    async fn step(&self, key: &str, tx: &UnboundedSender<RotationEvent>) -> bool {
        match self.rotator.tick(key).await {
            Ok(events) => {
                let contended = events
                    .iter()
                    .any(|e| matches!(e, RotationEvent::LeaseHeldElsewhere { .. }));
                for e in events {
                    let _ = tx.send(e);
                }
                !contended
            }
            Err(e) => {
                tracing::error!(key, error = %e, "rotation step failed; will retry");
                false
            }
        }
    }

    /// Starts the loop on the current tokio runtime.
    pub fn spawn(self) -> SchedulerHandle {
        let (stop, mut stopped) = watch::channel(false);
        let (tx, events) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut backoff = Backoffs::default();
            loop {
                let mut next = u64::MAX;
                let mut wake_at: Option<Instant> = None;
                for key in &self.keys {
                    if let Some(at) = backoff.waiting(key) {
                        wake_at = earliest(wake_at, at);
                        continue;
                    }
                    match self.rotator.next_due_ms(key) {
                        Ok(Some(due)) if due <= self.clock.now_ms() => {
                            if self.step(key, &tx).await {
                                backoff.succeeded(key);
                            } else {
                                let at = backoff.failed(key, |n| self.backoff_after(n));
                                wake_at = earliest(wake_at, at);
                                continue;
                            }
                        }
                        Ok(Some(due)) => next = next.min(due),
                        Ok(None) => {}
                        Err(e) => tracing::error!(key, error = %e, "cannot read rotation state"),
                    }
                    if let Ok(Some(due)) = self.rotator.next_due_ms(key) {
                        next = next.min(due);
                    }
                }
                let mut wait = Duration::from_millis(next.saturating_sub(self.clock.now_ms()))
                    .min(self.max_sleep);
                if let Some(at) = wake_at {
                    wait = wait.min(at.saturating_duration_since(Instant::now()));
                }
                let wait = wait.max(Duration::from_millis(1));
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stopped.changed() => break,
                }
            }
        });
        SchedulerHandle { stop, task, events }
    }
}

impl SchedulerHandle {
    /// The next event the scheduler produced.
    pub async fn next_event(&mut self) -> Option<RotationEvent> {
        self.events.recv().await
    }

    /// Stops the loop and waits for it.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}
