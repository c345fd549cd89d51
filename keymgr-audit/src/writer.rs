//! The writer thread: owns the active segment and the chain head, seals entries and
//! commits them in groups (one `write` + one `fdatasync` for everything that arrived
//! while the previous commit was on disk).
//!
//! It is an OS thread rather than a tokio task because fsync blocks: callers await a
//! oneshot acknowledgement, so the async runtime never waits on the disk.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keymgr_core::{Error, Result, SignContext};
use tokio::sync::oneshot;

use crate::config::{Durability, FailurePolicy};
use crate::entry::{LOG_BACKEND, events};
use crate::recovery::RecoveryPlan;
use crate::segment::io_error;
use crate::verify::CHECKPOINT_WINDOW;
use crate::{ChainKey, Entry, files, time};

mod disk;
mod inbox;
mod retention;

use inbox::WakeOn;
pub(crate) use inbox::{Inbox, Urgency};

/// Buffered mode: longest time written data stays without fsync.
const BUFFERED_SYNC: Duration = Duration::from_millis(100);
/// Durable mode: longest time an entry nobody waits for (a request whose outcome will
/// follow) stays uncommitted; normally it goes to disk with its outcome.
pub(crate) const DEFERRED_MAX: Duration = Duration::from_millis(100);
/// How often a failing writer probes the disk again when nobody is writing.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// A record on its way to the log (already redacted).
#[derive(Debug)]
pub(crate) struct Pending {
    pub ts_ms: u64,
    pub backend: String,
    pub event: String,
    pub key: String,
    pub key_version: Option<String>,
    pub payload_sha256: Option<String>,
    pub actor: Option<String>,
    pub outcome: String,
    pub error_kind: Option<String>,
    pub details: BTreeMap<String, String>,
    pub context: Option<SignContext>,
    /// For checkpoints: the seq they vouch for (must stay within the verifier's window).
    pub refers_to: Option<u64>,
    /// A request whose outcome follows: nobody waits for it, and if its commit fails the
    /// outcome's caller hears of it (so under fail-closed it is not counted as lost).
    pub deferred: bool,
}

impl Pending {
    pub(crate) fn internal(event: &str, outcome: &str, details: BTreeMap<String, String>) -> Self {
        Self {
            ts_ms: time::now_ms(),
            backend: LOG_BACKEND.to_owned(),
            event: event.to_owned(),
            key: String::new(),
            key_version: None,
            payload_sha256: None,
            actor: None,
            outcome: outcome.to_owned(),
            error_kind: None,
            details,
            context: None,
            refers_to: None,
            deferred: false,
        }
    }
}

/// Chain position: last sequence number, its hash and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Sequence number of the last entry (0 for an empty log).
    pub seq: u64,
    /// Its hash ([`crate::GENESIS_HASH`] for an empty log).
    pub hash: String,
    /// Its timestamp.
    pub ts_ms: u64,
}

pub(crate) type Ack = oneshot::Sender<Result<Head>>;

pub(crate) enum Msg {
    Append {
        entry: Box<Pending>,
        ack: Option<Ack>,
    },
    Flush {
        ack: Ack,
    },
    Retention {
        now_ms: u64,
        ack: oneshot::Sender<Result<usize>>,
    },
    InjectFailures(u32),
}

/// State shared between the writer and the handles.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub failing: Mutex<Option<String>>,
    pub written: AtomicU64,
    pub lost: AtomicU64,
    pub io_errors: AtomicU64,
    pub commits: AtomicU64,
    /// Every fsync the writer issued (data, truncation and directory syncs).
    pub fsyncs: AtomicU64,
    /// Durable mode: operations whose request is queued and whose outcome is not (an
    /// estimate: see [`Shared::open_operation`]).
    pub in_flight: AtomicU64,
}

impl Shared {
    pub(crate) fn failing(&self) -> Option<String> {
        self.failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_failing(&self, v: Option<String>) {
        *self.failing.lock().unwrap_or_else(|p| p.into_inner()) = v;
    }

    /// A request was queued: its operation is in flight until its outcome is.
    pub(crate) fn open_operation(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// An entry somebody waits for was queued: it closes one operation in flight.
    /// Entries are not paired by operation, so the count is an estimate: an entry with no
    /// request before it (a rotation event) makes it low, and a request whose outcome
    /// never comes (a dropped future) is forgotten by the writer's next idle hold.
    /// [`Urgency::Now`] when nothing is left in flight: a held commit need not wait.
    pub(crate) fn close_operation(&self) -> Urgency {
        let before = self
            .in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(1))
            })
            .unwrap_or(0);
        if before <= 1 {
            Urgency::Now
        } else {
            Urgency::Waited
        }
    }
}

/// Settings the writer needs.
pub(crate) struct WriterConfig {
    pub dir: PathBuf,
    pub node: String,
    pub key: ChainKey,
    pub durability: Durability,
    pub on_failure: FailurePolicy,
    pub retention: Option<Duration>,
    pub segment_max_bytes: u64,
    pub segment_daily: bool,
    /// Durable mode: longest time a commit waits for the outcomes of operations still in
    /// flight (zero: never waits). See [`crate::AuditConfig::commit_delay`].
    pub commit_delay: Duration,
}

pub(crate) struct Writer {
    cfg: WriterConfig,
    shared: Arc<Shared>,
    file: Option<File>,
    seg_path: PathBuf,
    seg_day: u64,
    /// Bytes of the active segment that are committed.
    durable_len: u64,
    /// A failed commit may have left bytes past `durable_len`.
    needs_truncate: bool,
    durable: Head,
    next: Head,
    buf: Vec<u8>,
    /// Staged entries: caller to answer, position, and whether a failure loses an
    /// entry nobody else hears about (buffered records, fail-open).
    acks: Vec<(Option<Ack>, Head, bool)>,
    /// Entries lost to I/O errors and not yet reported by an AUDIT_GAP entry.
    lost: u64,
    last_error: Option<String>,
    gap_staged: u64,
    dirty_since: Option<Instant>,
    /// Durable mode: staged entries nobody waits for, since when.
    deferred_since: Option<Instant>,
    /// Durable mode: since when a commit is held for the outcomes of the operations in
    /// flight ([`Shared::in_flight`]).
    hold: Option<Instant>,
    /// When the last commit reached the disk.
    last_commit: Option<Instant>,
    inject: u32,
}

impl Writer {
    pub(crate) fn new(cfg: WriterConfig, shared: Arc<Shared>, rec: RecoveryPlan) -> Result<Self> {
        let mut w = Self {
            cfg,
            shared,
            file: None,
            seg_path: PathBuf::new(),
            seg_day: 0,
            durable_len: 0,
            needs_truncate: false,
            durable: rec.head.clone(),
            next: rec.head,
            buf: Vec::with_capacity(64 * 1024),
            acks: Vec::new(),
            lost: 0,
            last_error: None,
            gap_staged: 0,
            dirty_since: None,
            deferred_since: None,
            hold: None,
            last_commit: None,
            inject: 0,
        };
        if let Some((path, len)) = rec.active {
            let file = files::open_append(&path).map_err(|e| io_error("open", &path, e))?;
            w.file = Some(file);
            w.seg_path = path;
            w.durable_len = len;
            w.seg_day = time::day_of(w.durable.ts_ms);
        }
        Ok(w)
    }

    pub(crate) fn run(mut self, inbox: Arc<Inbox>) {
        /// Shuts the inbox however `run` ends, a panic included.
        struct Shut(Arc<Inbox>);
        impl Drop for Shut {
            fn drop(&mut self) {
                self.0.shut();
            }
        }
        let inbox = Shut(inbox);
        let inbox = &inbox.0;
        if let Err(e) = self.retention(time::now_ms()) {
            tracing::warn!(target: "keymgr::audit", error = %e, "audit log retention failed");
        }
        loop {
            let (wake_on, deadline) = self.sleep_plan();
            let Some(taken) = inbox.take(wake_on, deadline) else {
                break;
            };
            let outcome_arrived = taken
                .msgs
                .iter()
                .any(|m| matches!(m, Msg::Append { ack: Some(_), .. }));
            let held = self.hold.is_some();
            if !taken.msgs.is_empty() {
                self.process(taken.msgs);
            }
            if taken.timed_out {
                if held && !outcome_arrived {
                    // A hold that saw no outcome arrive: whatever `in_flight` counts is
                    // not coming soon (a slow backend, or a future dropped between its
                    // request and its outcome). Forget it.
                    self.shared.in_flight.store(0, Ordering::Relaxed);
                }
                self.idle();
            }
        }
        self.commit();
        self.sync_now();
    }

    /// What to sleep for, and until when: a held commit wakes only for the last outcome
    /// in flight; staged requests for an entry somebody waits for; else anything.
    fn sleep_plan(&self) -> (WakeOn, Option<Instant>) {
        if let Some(since) = self.hold {
            // No deadline if it does not fit in an `Instant`: the last outcome ends it.
            return (WakeOn::Now, since.checked_add(self.cfg.commit_delay));
        }
        let deadline = [
            self.deferred_since.map(|t| t + DEFERRED_MAX),
            self.dirty_since.map(|t| t + BUFFERED_SYNC),
            (self.lost > 0).then(|| Instant::now() + PROBE_INTERVAL),
        ]
        .into_iter()
        .flatten()
        .min();
        let wake_on = if self.deferred_since.is_some() {
            WakeOn::Waited
        } else {
            WakeOn::Any
        };
        (wake_on, deadline)
    }

    fn idle(&mut self) {
        self.commit();
        if self.lost > 0 && self.buf.is_empty() {
            self.stage_gap();
            self.commit();
        }
        self.sync_now();
    }

    fn process(&mut self, batch: Vec<Msg>) {
        let mut flushes = Vec::new();
        for msg in batch {
            match msg {
                Msg::Append { entry, ack } => self.append(*entry, ack),
                Msg::Flush { ack } => flushes.push(ack),
                Msg::Retention { now_ms, ack } => {
                    self.commit();
                    let _ = ack.send(self.retention(now_ms));
                }
                Msg::InjectFailures(n) => {
                    self.commit();
                    self.inject += n;
                }
            }
        }
        // Durable mode: entries nobody waits for wait for the next one somebody does.
        let waiting = self.acks.iter().any(|(ack, _, _)| ack.is_some());
        if self.cfg.durability == Durability::Durable && !waiting && flushes.is_empty() {
            if !self.buf.is_empty() {
                self.deferred_since.get_or_insert_with(Instant::now);
            }
            return;
        }
        if self.holds_for_in_flight() && flushes.is_empty() {
            return;
        }
        self.commit();
        if !flushes.is_empty() {
            self.sync_now();
            for ack in flushes {
                let _ = ack.send(match self.shared.failing() {
                    Some(e) => Err(Error::unavailable("audit-log", e, None)),
                    None => Ok(self.durable.clone()),
                });
            }
        }
    }

    /// Group commit across concurrent callers (PostgreSQL's `commit_delay`): while other
    /// operations are in flight and commits are already frequent (the last one ended less
    /// than `commit_delay` ago), their outcomes are moments away, so the commit waits for
    /// them up to `commit_delay` and one fsync covers them all. Not held: a lone caller
    /// (its outcome closes the last operation in flight), and outcomes that come slower
    /// than `commit_delay` apart (slow backends: holding would add latency and save
    /// nothing). On a virtual disk every fsync costs host CPU (steal) and kernel
    /// writeback; with 64 concurrent signers this turns about 8 entries per fsync into
    /// about 55 (2 ms).
    fn holds_for_in_flight(&mut self) -> bool {
        if self.cfg.durability != Durability::Durable
            || self.shared.in_flight.load(Ordering::Relaxed) == 0
            || self.cfg.commit_delay.is_zero()
        {
            return false;
        }
        let since = match self.hold {
            Some(since) => since,
            None if self
                .last_commit
                .is_some_and(|t| t.elapsed() < self.cfg.commit_delay) =>
            {
                *self.hold.insert(Instant::now())
            }
            None => return false,
        };
        since.elapsed() < self.cfg.commit_delay
    }

    fn must_roll(&self, ts_ms: u64, line_len: usize) -> bool {
        if self.file.is_none() {
            return true;
        }
        let size = self.durable_len + self.buf.len() as u64;
        (self.cfg.segment_daily && time::day_of(ts_ms) != self.seg_day)
            || (size > 0 && size + line_len as u64 > self.cfg.segment_max_bytes)
    }

    /// `p` as the entry after the chain head, with its line.
    fn seal(&self, p: Pending, ts_ms: u64) -> (Entry, Vec<u8>) {
        let mut e = Entry {
            seq: 0,
            ts_ms,
            time: time::format_rfc3339(ts_ms),
            node: self.cfg.node.clone(),
            backend: p.backend,
            event: p.event,
            key: p.key,
            key_version: p.key_version,
            payload_sha256: p.payload_sha256,
            actor: p.actor,
            outcome: p.outcome,
            error_kind: p.error_kind,
            details: p.details,
            context: p.context,
            prev: String::new(),
            hash: String::new(),
        };
        let line = self.reseal(&mut e);
        (e, line)
    }

    /// Places `e` after the current chain head and seals it again.
    fn reseal(&self, e: &mut Entry) -> Vec<u8> {
        e.seq = self.next.seq + 1;
        e.prev.clone_from(&self.next.hash);
        e.seal(&self.cfg.key)
    }

    fn push(&mut self, e: Entry, line: Vec<u8>, ack: Option<Ack>, is_gap: bool, deferred: bool) {
        self.buf.extend_from_slice(&line);
        self.next = Head {
            seq: e.seq,
            hash: e.hash,
            ts_ms: e.ts_ms,
        };
        let lost_if_failed = !is_gap
            && ((ack.is_none() && !deferred) || self.cfg.on_failure == FailurePolicy::FailOpen);
        self.acks.push((ack, self.next.clone(), lost_if_failed));
    }

    fn stage_gap(&mut self) {
        let details = BTreeMap::from([
            ("lost_entries".to_owned(), self.lost.to_string()),
            (
                "error".to_owned(),
                self.last_error.clone().unwrap_or_default(),
            ),
        ]);
        let p = Pending::internal(events::GAP, "failure", details);
        let ts = p.ts_ms.max(self.next.ts_ms);
        if self.file.is_none() || self.must_roll(ts, 0) {
            // The gap entry goes first in whatever segment comes next.
            if self.roll(ts).is_err() {
                return;
            }
        }
        let (e, line) = self.seal(p, ts);
        self.gap_staged = self.lost;
        self.push(e, line, None, true, false);
    }

    fn append(&mut self, p: Pending, ack: Option<Ack>) {
        if let Some(r) = p.refers_to
            && self.next.seq.saturating_sub(r) >= CHECKPOINT_WINDOW
        {
            if let Some(a) = ack {
                let _ = a.send(Err(Error::unavailable(
                    "audit-log",
                    format!(
                        "checkpoint for seq {r} came too late (head is {})",
                        self.next.seq
                    ),
                    None,
                )));
            }
            return;
        }
        if self.lost > 0 && self.buf.is_empty() {
            self.stage_gap();
        }
        let ts = p.ts_ms.max(self.next.ts_ms);
        let deferred = p.deferred;
        let (mut e, mut line) = self.seal(p, ts);
        if self.must_roll(ts, line.len()) {
            self.commit();
            if let Err(err) = self.roll(ts) {
                self.fail_one(ack, err);
                return;
            }
            // A failed commit resets the head: seal again against the current one.
            if self.lost > 0 && self.buf.is_empty() {
                self.stage_gap();
            }
            line = self.reseal(&mut e);
        }
        self.push(e, line, ack, false, deferred);
    }
}
