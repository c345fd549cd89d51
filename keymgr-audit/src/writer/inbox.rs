//! The writer's inbox: a queue whose senders wake the writer only when it needs them.
//!
//! A `std::sync::mpsc` channel wakes a blocked receiver on every send. For a durable
//! log that is two futex wakes and two context switches per signature (its request and
//! its outcome), which on a 2-core machine cost as much CPU as sealing the entries. Here
//! the writer says what it waits for when it goes to sleep ([`WakeOn`]), each message
//! says how soon it needs the writer ([`Urgency`]), and a sender wakes the writer only
//! when the two meet.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use super::Msg;

/// How soon a message needs the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Urgency {
    /// Nobody waits for it: a request whose outcome follows and rides in its commit.
    Deferred,
    /// Somebody waits for it (or, in buffered mode, it should be written soon), but other
    /// operations are still in flight: a commit held for them goes on waiting.
    Waited,
    /// Somebody waits for it and nothing else is in flight, or a control message.
    Now,
}

/// What the writer waits for while it sleeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WakeOn {
    /// Any message: nothing is staged.
    Any,
    /// A message somebody waits for: staged requests wait for their outcomes.
    Waited,
    /// Only [`Urgency::Now`]: a commit is held for the operations in flight.
    Now,
}

impl WakeOn {
    fn woken_by(self, u: Urgency) -> bool {
        match self {
            WakeOn::Any => true,
            WakeOn::Waited => u >= Urgency::Waited,
            WakeOn::Now => u == Urgency::Now,
        }
    }
}

/// What [`Inbox::take`] returns: every queued message, and whether the deadline passed.
pub(crate) struct Taken {
    pub msgs: Vec<Msg>,
    pub timed_out: bool,
}

#[derive(Default)]
struct State {
    msgs: Vec<Msg>,
    /// The most urgent message queued.
    most: Option<Urgency>,
    /// What the sleeping writer waits for; `None` while it is awake.
    sleeping: Option<WakeOn>,
    closed: bool,
}

/// Many senders (the log's handles), one taker (the writer thread).
#[derive(Default)]
pub(crate) struct Inbox {
    state: Mutex<State>,
    wake: Condvar,
}

impl Inbox {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `msg`, waking the writer if it sleeps waiting for this urgency. `false`
    /// (and `msg` dropped) once the inbox is closed.
    pub(crate) fn send(&self, msg: Msg, urgency: Urgency) -> bool {
        let mut st = self.lock();
        if st.closed {
            return false;
        }
        st.msgs.push(msg);
        st.most = st.most.max(Some(urgency));
        let wake = st.sleeping.is_some_and(|w| w.woken_by(urgency));
        if wake {
            st.sleeping = None;
        }
        drop(st);
        if wake {
            self.wake.notify_one();
        }
        true
    }

    /// Refuses further messages; the writer takes what is queued, then gets `None`.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
    }

    /// The writer is gone (it returned, or panicked): refuses further messages and drops
    /// the queued ones, so that everybody waiting for an acknowledgement hears that the
    /// writer stopped instead of waiting forever.
    pub(crate) fn shut(&self) {
        let queued = {
            let mut st = self.lock();
            st.closed = true;
            std::mem::take(&mut st.msgs)
        };
        drop(queued);
    }

    /// Every queued message, as soon as one of them satisfies `wake_on`, or at
    /// `deadline` (with whatever is queued, possibly nothing). `None` once closed and
    /// empty.
    pub(crate) fn take(&self, wake_on: WakeOn, deadline: Option<Instant>) -> Option<Taken> {
        let mut st = self.lock();
        loop {
            let ready = st.most.is_some_and(|u| wake_on.woken_by(u));
            let timed_out = deadline.is_some_and(|d| Instant::now() >= d);
            if ready || timed_out || st.closed {
                st.sleeping = None;
                st.most = None;
                let msgs = std::mem::take(&mut st.msgs);
                if msgs.is_empty() && st.closed {
                    return None;
                }
                return Some(Taken { msgs, timed_out });
            }
            st.sleeping = Some(wake_on);
            st = match deadline {
                None => self.wake.wait(st).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    self.wake
                        .wait_timeout(st, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    fn msg() -> Msg {
        Msg::InjectFailures(0)
    }

    #[test]
    fn deferred_messages_wait_for_one_somebody_waits_for() {
        let inbox = Arc::new(Inbox::default());
        let taker = {
            let inbox = inbox.clone();
            std::thread::spawn(move || inbox.take(WakeOn::Waited, None).unwrap())
        };
        assert!(inbox.send(msg(), Urgency::Deferred));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!taker.is_finished(), "a deferred message woke the writer");
        assert!(inbox.send(msg(), Urgency::Waited));
        let taken = taker.join().unwrap();
        assert_eq!(taken.msgs.len(), 2);
        assert!(!taken.timed_out);
    }

    #[test]
    fn a_held_commit_wakes_only_for_now_or_its_deadline() {
        let inbox = Inbox::default();
        inbox.send(msg(), Urgency::Waited);
        let started = Instant::now();
        let deadline = started + Duration::from_millis(30);
        let taken = inbox.take(WakeOn::Now, Some(deadline)).unwrap();
        assert!(taken.timed_out && Instant::now() >= deadline);
        assert_eq!(taken.msgs.len(), 1, "queued messages come with the timeout");
        inbox.send(msg(), Urgency::Now);
        let taken = inbox.take(WakeOn::Now, Some(Instant::now() + Duration::from_secs(5)));
        assert!(!taken.unwrap().timed_out);
    }

    /// A writer asleep on `WakeOn::Now` (a held commit) is not woken by outcomes that
    /// leave others in flight, only by the last one.
    #[test]
    fn a_held_commit_is_woken_by_now_only() {
        let inbox = Arc::new(Inbox::default());
        let taker = {
            let inbox = inbox.clone();
            std::thread::spawn(move || inbox.take(WakeOn::Now, None).unwrap())
        };
        inbox.send(msg(), Urgency::Deferred);
        inbox.send(msg(), Urgency::Waited);
        std::thread::sleep(Duration::from_millis(100));
        assert!(!taker.is_finished(), "a Waited message ended the hold");
        inbox.send(msg(), Urgency::Now);
        let taken = taker.join().unwrap();
        assert_eq!(taken.msgs.len(), 3);
        assert!(!taken.timed_out);
    }

    #[test]
    fn close_wakes_a_writer_asleep_without_deadline() {
        let inbox = Arc::new(Inbox::default());
        let taker = {
            let inbox = inbox.clone();
            std::thread::spawn(move || inbox.take(WakeOn::Now, None).is_none())
        };
        std::thread::sleep(Duration::from_millis(50));
        inbox.close();
        assert!(taker.join().unwrap(), "closed and empty is None");
    }

    #[test]
    fn shut_drops_what_is_queued() {
        let inbox = Inbox::default();
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        inbox.send(Msg::Flush { ack: tx }, Urgency::Now);
        inbox.shut();
        assert!(rx.try_recv().is_err(), "the acknowledgement was dropped");
        assert!(!inbox.send(msg(), Urgency::Now));
        assert!(inbox.take(WakeOn::Any, None).is_none());
    }

    #[test]
    fn close_hands_over_what_is_queued_then_ends() {
        let inbox = Inbox::default();
        inbox.send(msg(), Urgency::Deferred);
        inbox.close();
        assert!(!inbox.send(msg(), Urgency::Now), "closed inboxes refuse");
        assert_eq!(inbox.take(WakeOn::Now, None).unwrap().msgs.len(), 1);
        assert!(inbox.take(WakeOn::Any, None).is_none());
    }
}
