//! Runs [`Rotator::tick`] for a set of keys when they are due.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{Clock, RotationEvent, Rotator};

/// Ticks each key when its next step is due (computed from persisted state, not a fixed
/// timer), waking at least every `max_sleep` so clock changes and approvals are seen.
#[derive(Debug)]
pub struct Scheduler {
    rotator: Arc<Rotator>,
    clock: Arc<dyn Clock>,
    keys: Vec<String>,
    max_sleep: Duration,
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
        }
    }

    /// Caps the time between checks.
    pub fn max_sleep(mut self, d: Duration) -> Self {
        self.max_sleep = d;
        self
    }

    /// Starts the loop on the current tokio runtime.
    pub fn spawn(self) -> SchedulerHandle {
        let (stop, mut stopped) = watch::channel(false);
        let (tx, events) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let mut next = u64::MAX;
                for key in &self.keys {
                    match self.rotator.next_due_ms(key) {
                        Ok(Some(due)) if due <= self.clock.now_ms() => {
                            match self.rotator.tick(key).await {
                                Ok(evs) => evs.into_iter().for_each(|e| {
                                    let _ = tx.send(e);
                                }),
                                Err(e) => {
                                    tracing::error!(key, error = %e, "rotation step failed; will retry")
                                }
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
                let wait = Duration::from_millis(next.saturating_sub(self.clock.now_ms()))
                    .min(self.max_sleep)
                    .max(Duration::from_millis(1));
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
