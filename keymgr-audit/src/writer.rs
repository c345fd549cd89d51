//! The writer thread: owns the active segment and the chain head, seals entries and
//! commits them in groups (one `write` + one `fdatasync` for everything that arrived
//! while the previous commit was on disk).
//!
//! It is an OS thread rather than a tokio task because fsync blocks: callers await a
//! oneshot acknowledgement, so the async runtime never waits on the disk.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write as _};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keymgr_core::{Error, Result, SignContext};
use tokio::sync::oneshot;

use crate::config::{Durability, FailurePolicy};
use crate::entry::{LOG_BACKEND, events};
use crate::recovery::RecoveryPlan;
use crate::segment::{self, io_error};
use crate::verify::CHECKPOINT_WINDOW;
use crate::{ChainKey, Entry, files, time};

mod retention;

/// Most messages taken into one commit group.
const MAX_BATCH: usize = 4096;
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
    inject: u32,
}

/// `sync_data` on `file`, counted in [`Shared::fsyncs`].
fn sync_data(shared: &Shared, file: &File) -> io::Result<()> {
    shared.fsyncs.fetch_add(1, Ordering::Relaxed);
    file.sync_data()
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

    pub(crate) fn run(mut self, rx: Receiver<Msg>) {
        if let Err(e) = self.retention(time::now_ms()) {
            tracing::warn!(target: "keymgr::audit", error = %e, "audit log retention failed");
        }
        loop {
            let wait = if let Some(since) = self.deferred_since {
                Some(DEFERRED_MAX.saturating_sub(since.elapsed()))
            } else if let Some(since) = self.dirty_since {
                Some(BUFFERED_SYNC.saturating_sub(since.elapsed()))
            } else if self.lost > 0 {
                Some(PROBE_INTERVAL)
            } else {
                None
            };
            let first = match wait {
                Some(t) => match rx.recv_timeout(t) {
                    Ok(m) => m,
                    Err(RecvTimeoutError::Timeout) => {
                        self.idle();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match rx.recv() {
                    Ok(m) => m,
                    Err(_) => break,
                },
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            self.process(batch);
        }
        self.commit();
        self.sync_now();
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

    fn must_roll(&self, ts_ms: u64, line_len: usize) -> bool {
        if self.file.is_none() {
            return true;
        }
        let size = self.durable_len + self.buf.len() as u64;
        (self.cfg.segment_daily && time::day_of(ts_ms) != self.seg_day)
            || (size > 0 && size + line_len as u64 > self.cfg.segment_max_bytes)
    }

    fn seal(&self, p: &Pending, ts_ms: u64) -> (Entry, Vec<u8>) {
        let mut e = Entry {
            seq: self.next.seq + 1,
            ts_ms,
            time: time::format_rfc3339(ts_ms),
            node: self.cfg.node.clone(),
            backend: p.backend.clone(),
            event: p.event.clone(),
            key: p.key.clone(),
            key_version: p.key_version.clone(),
            payload_sha256: p.payload_sha256.clone(),
            actor: p.actor.clone(),
            outcome: p.outcome.clone(),
            error_kind: p.error_kind.clone(),
            details: p.details.clone(),
            context: p.context.clone(),
            prev: self.next.hash.clone(),
            hash: String::new(),
        };
        let line = e.seal(&self.cfg.key);
        (e, line)
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
        let (e, line) = self.seal(&p, ts);
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
        let (mut e, mut line) = self.seal(&p, ts);
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
            (e, line) = self.seal(&p, ts);
        }
        self.push(e, line, ack, false, p.deferred);
    }

    fn fail_one(&mut self, ack: Option<Ack>, err: Error) {
        let lost = ack.is_none() || self.cfg.on_failure == FailurePolicy::FailOpen;
        self.note_failure(&err.to_string(), u64::from(lost));
        if let Some(a) = ack {
            let _ = a.send(Err(err));
        }
    }

    /// Records an I/O failure: counts lost entries, marks the log failing, raises the alarm.
    fn note_failure(&mut self, msg: &str, lost: u64) {
        self.shared.io_errors.fetch_add(1, Ordering::Relaxed);
        self.lost += lost;
        self.shared.lost.fetch_add(lost, Ordering::Relaxed);
        self.last_error = Some(msg.to_owned());
        self.shared.set_failing(Some(msg.to_owned()));
        tracing::error!(
            target: "keymgr::audit",
            alarm = true,
            policy = ?self.cfg.on_failure,
            lost_entries = lost,
            error = %msg,
            "AUDIT LOG WRITE FAILED: entries are not being recorded"
        );
    }

    fn roll(&mut self, ts_ms: u64) -> Result<()> {
        self.sync_now();
        // Never leave a half-written batch behind in the segment being closed.
        if self.needs_truncate
            && let Some(f) = self.file.as_mut()
        {
            f.set_len(self.durable_len)
                .and_then(|()| sync_data(&self.shared, f))
                .map_err(|e| io_error("truncate", &self.seg_path, e))?;
            self.needs_truncate = false;
        }
        let path = self
            .cfg
            .dir
            .join(segment::file_name(self.next.seq + 1, ts_ms));
        let file = if self.inject > 0 {
            self.inject -= 1;
            Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "no space left on device (injected)",
            ))
        } else {
            files::create_new(&path)
        }
        .map_err(|e| io_error("create segment", &path, e))?;
        self.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
        segment::sync_dir(&self.cfg.dir)?;
        self.file = Some(file);
        self.seg_path = path;
        self.seg_day = time::day_of(ts_ms);
        self.durable_len = 0;
        self.needs_truncate = false;
        if let Err(e) = self.retention(ts_ms.max(time::now_ms())) {
            tracing::warn!(target: "keymgr::audit", error = %e, "audit log retention failed");
        }
        Ok(())
    }

    fn write_buf(&mut self) -> io::Result<()> {
        let durable = self.cfg.durability == Durability::Durable;
        let Some(file) = self.file.as_mut() else {
            return Err(io::Error::other("no active segment"));
        };
        if self.needs_truncate {
            file.set_len(self.durable_len)?;
            sync_data(&self.shared, file)?;
            self.needs_truncate = false;
        }
        if self.inject > 0 {
            self.inject -= 1;
            // Like a disk that fills up mid-write: half the bytes land, then ENOSPC.
            self.needs_truncate = true;
            file.write_all(&self.buf[..self.buf.len() / 2])?;
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "no space left on device (injected)",
            ));
        }
        self.needs_truncate = true;
        file.write_all(&self.buf)?;
        if durable {
            sync_data(&self.shared, file)?;
            self.shared.commits.fetch_add(1, Ordering::Relaxed);
        } else if self.dirty_since.is_none() {
            self.dirty_since = Some(Instant::now());
        }
        self.needs_truncate = false;
        Ok(())
    }

    /// Writes (and in durable mode fsyncs) the staged entries and answers their callers.
    fn commit(&mut self) {
        self.deferred_since = None;
        if self.buf.is_empty() {
            return;
        }
        let result = self.write_buf();
        let acks = std::mem::take(&mut self.acks);
        match result {
            Ok(()) => {
                self.durable_len += self.buf.len() as u64;
                self.durable = self.next.clone();
                self.shared
                    .written
                    .fetch_add(acks.len() as u64, Ordering::Relaxed);
                if self.gap_staged > 0 {
                    self.lost -= self.gap_staged.min(self.lost);
                    self.gap_staged = 0;
                }
                if self.lost == 0 && self.shared.failing().is_some() {
                    self.shared.set_failing(None);
                    tracing::warn!(target: "keymgr::audit", "audit log is writable again");
                }
                for (ack, head, _) in acks {
                    if let Some(a) = ack {
                        let _ = a.send(Ok(head));
                    }
                }
            }
            Err(e) => {
                let err = io_error("append to", &self.seg_path, e);
                let msg = err.to_string();
                // Best effort now; write_buf retries the cut before the next append.
                if let Some(f) = self.file.as_mut()
                    && f.set_len(self.durable_len)
                        .and_then(|()| sync_data(&self.shared, f))
                        .is_ok()
                {
                    self.needs_truncate = false;
                }
                self.next = self.durable.clone();
                self.gap_staged = 0;
                let lost = acks.iter().filter(|(_, _, l)| *l).count() as u64;
                self.note_failure(&msg, lost);
                let mut first = Some(err);
                for (ack, _, _) in acks {
                    if let Some(a) = ack {
                        let e = first
                            .take()
                            .unwrap_or_else(|| Error::unavailable("audit-log", msg.clone(), None));
                        let _ = a.send(Err(e));
                    }
                }
            }
        }
        self.buf.clear();
    }

    fn sync_now(&mut self) {
        if self.dirty_since.take().is_some()
            && let Some(f) = self.file.as_mut()
        {
            match sync_data(&self.shared, f) {
                Ok(()) => {
                    self.shared.commits.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    let msg = io_error("fsync", &self.seg_path, e).to_string();
                    self.note_failure(&msg, 0);
                }
            }
        }
    }
}
