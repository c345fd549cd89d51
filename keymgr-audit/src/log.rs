//! [`AuditLog`]: the file log as a [`keymgr_core::AuditSink`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use keymgr_core::config::VarSource;
use keymgr_core::{
    AuditRecord, AuditSink, Error, KeyBackend, KeyRef, Result, TracingAuditSink, trace_record,
};
use serde::Serialize;
use tokio::sync::oneshot;

use crate::config::{
    self, AuditConfig, Durability, FailurePolicy, KEYMGR_AUDIT_CHECKPOINT_KEY,
    KEYMGR_AUDIT_HMAC_KEY, KEYMGR_AUDIT_PATH,
};
use crate::entry::{GENESIS_HASH, events};
use crate::lock::{self, WriterLock};
use crate::publish::Publisher;
use crate::recovery;
use crate::redact::redact_record;
pub use crate::writer::Head;
use crate::writer::{Inbox, Msg, Pending, Shared, Urgency, Writer, WriterConfig};
use crate::{ChainKey, Checkpoint, Verifier, files, time};

/// Counters and state of a running log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditStatus {
    /// Directory of the log.
    pub dir: PathBuf,
    /// Entries written since open.
    pub written: u64,
    /// Entries lost to I/O errors since open (fail-open or buffered mode).
    pub lost: u64,
    /// I/O errors since open.
    pub io_errors: u64,
    /// Write+fsync groups since open (`written / commits` is the group-commit factor).
    pub commits: u64,
    /// Every fsync the writer issued since open, counted where it is issued: commits,
    /// idle syncs of buffered data, truncations of a failed write, and directory syncs
    /// when a segment is created or removed.
    pub fsyncs: u64,
    /// The current error, while the log cannot be written.
    pub failing: Option<String>,
    /// Durable mode: operations whose request is queued and whose outcome is not yet (an
    /// estimate the writer uses to hold a commit for them; see
    /// [`AuditConfig::commit_delay`](crate::AuditConfig::commit_delay)).
    pub in_flight: u64,
    /// Bytes of a torn final line removed at open (a crash during a write).
    pub torn_bytes_recovered: u64,
}

struct Signer {
    backend: Arc<dyn KeyBackend>,
    key: KeyRef,
}

struct Inner {
    inbox: Arc<Inbox>,
    thread: Mutex<Option<JoinHandle<()>>>,
    shared: Arc<Shared>,
    dir: PathBuf,
    node: String,
    durability: Durability,
    on_failure: FailurePolicy,
    key: ChainKey,
    signer: Option<Signer>,
    torn_bytes: u64,
    publisher: Publisher,
    /// (seq, hash) of the last checkpoint; held while a checkpoint is made.
    last_checkpoint: tokio::sync::Mutex<(u64, String)>,
    /// Released after the writer thread has stopped (fields drop after `Drop::drop`).
    _lock: WriterLock,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the inbox lets the writer commit what is queued, fsync and exit.
        self.inbox.close();
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}

/// The hash-chained, crash-safe audit log (see the crate docs). Cheap to clone; the
/// writer thread stops (after committing everything queued) when the last clone drops.
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

impl fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLog")
            .field("dir", &self.inner.dir)
            .field("node", &self.inner.node)
            .field("durability", &self.inner.durability)
            .field("on_failure", &self.inner.on_failure)
            .field("mode", &self.inner.key.mode())
            .field(
                "checkpoint_key",
                &self.inner.signer.as_ref().map(|s| s.key.to_string()),
            )
            .finish()
    }
}

/// Builds the sink `KeyManager` should use from `KEYMGR_AUDIT_*` variables: the file log
/// when `KEYMGR_AUDIT_PATH` is set, otherwise `tracing` only, with a WARN.
///
/// Under `KEYMGR_PROFILE=production`, no file log or an unkeyed chain is a
/// configuration error instead of a warning.
///
/// `backend` is the provider (not a `KeyManager`): it unwraps a wrapped HMAC key and
/// signs checkpoints when those are configured.
pub async fn sink_from_vars(
    var: impl Fn(&str) -> Option<String> + Sync,
    backend: Option<Arc<dyn KeyBackend>>,
) -> Result<Arc<dyn AuditSink>> {
    sink_from_source(&var, backend).await
}

/// Like [`sink_from_vars`], from any [`VarSource`].
pub async fn sink_from_source(
    source: &dyn VarSource,
    backend: Option<Arc<dyn KeyBackend>>,
) -> Result<Arc<dyn AuditSink>> {
    let production = config::is_production(source)?;
    match AuditConfig::from_source(source)? {
        Some(config) if production && config.hmac_key.is_none() => Err(Error::config(
            KEYMGR_AUDIT_HMAC_KEY,
            "an HMAC key (or KEYMGR_AUDIT_HMAC_KEY_WRAPPED + KEYMGR_AUDIT_HMAC_KEK) under KEYMGR_PROFILE=production",
            "not set: an unkeyed chain can be recomputed by anyone with write access to the log",
        )),
        Some(config) => Ok(Arc::new(AuditLog::open(config, backend).await?)),
        None if production => Err(Error::config(
            KEYMGR_AUDIT_PATH,
            "the audit log directory under KEYMGR_PROFILE=production",
            "not set: no audit file log would be kept",
        )),
        None => {
            tracing::warn!(
                target: "keymgr::audit",
                "KEYMGR_AUDIT_PATH is not set: NO audit file log is kept; audit entries go to tracing (target keymgr::audit) only"
            );
            Ok(Arc::new(TracingAuditSink))
        }
    }
}

impl AuditLog {
    /// Opens (or creates) the log described by `config`: resolves the HMAC key (a wrapped
    /// one through `backend`), recovers from a crash, starts the writer, applies retention
    /// and, when a checkpoint key is configured, signs checkpoints with `backend` every
    /// `checkpoint_interval` (needs a tokio runtime).
    pub async fn open(config: AuditConfig, backend: Option<Arc<dyn KeyBackend>>) -> Result<Self> {
        let key = match &config.hmac_key {
            Some(src) => src.resolve(backend.as_deref()).await?,
            None => ChainKey::sha256(),
        };
        let signer = match (&config.checkpoint_key, backend) {
            (Some(k), Some(b)) => {
                // A checkpoint key that does not exist fails now, not at the first tick.
                b.public_key(k).await.map_err(|e| {
                    Error::config(
                        KEYMGR_AUDIT_CHECKPOINT_KEY,
                        "a signing key of the configured backend",
                        format!("{k}: {e}"),
                    )
                })?;
                Some(Signer {
                    backend: b,
                    key: k.clone(),
                })
            }
            (Some(_), None) => {
                return Err(Error::config(
                    KEYMGR_AUDIT_CHECKPOINT_KEY,
                    "a key of the configured backend",
                    "no backend was given to sign checkpoints with",
                ));
            }
            (None, _) => None,
        };
        let interval = config.checkpoint_interval;
        let log = Self::start(&config, key, signer)?;
        if log.inner.signer.is_some() {
            log.spawn_checkpoints(interval)?;
        }
        Ok(log)
    }

    /// Opens the log in `config.dir` with an explicit chain key and no checkpoint signer
    /// (no async work, no runtime needed). Checkpoint settings in `config` are ignored;
    /// see [`with_checkpoint_signer`](Self::with_checkpoint_signer).
    pub fn open_with(config: &AuditConfig, key: ChainKey) -> Result<Self> {
        Self::start(config, key, None)
    }

    /// Like `open_with`, plus checkpoints signed by `key` in `backend` (call
    /// [`checkpoint`](Self::checkpoint) yourself, or use [`open`](Self::open) for the
    /// periodic task).
    pub fn with_checkpoint_signer(
        config: &AuditConfig,
        key: ChainKey,
        backend: Arc<dyn KeyBackend>,
        signing_key: KeyRef,
    ) -> Result<Self> {
        Self::start(
            config,
            key,
            Some(Signer {
                backend,
                key: signing_key,
            }),
        )
    }

    fn start(config: &AuditConfig, key: ChainKey, signer: Option<Signer>) -> Result<Self> {
        // Redacted like the actor: a node id is configuration, and may carry a secret
        // pasted by mistake.
        let node = crate::redact::redact_value(&config.node_id);
        files::ensure_dir(&config.dir)?;
        // One directory, one writer: taken before recovery looks at (and may cut) the tail.
        let lock = lock::acquire(&config.dir, config.lock_wait)?;
        let rec = recovery::inspect(&config.dir, &key)?;
        if config.checkpoint_file.is_some() && signer.is_none() {
            return Err(Error::config(
                KEYMGR_AUDIT_CHECKPOINT_KEY,
                "the key that signs the checkpoints published to KEYMGR_AUDIT_CHECKPOINT_FILE",
                "no checkpoint signer was given",
            ));
        }
        let publisher = Publisher::open(config.checkpoint_file.as_deref(), &config.dir)?;
        let torn_bytes = recovery::apply(&config.dir, &rec)?;
        let last_checkpoint = rec
            .last_checkpoint
            .clone()
            .unwrap_or_else(|| (0, GENESIS_HASH.to_owned()));
        if !key.is_keyed() {
            tracing::warn!(
                target: "keymgr::audit",
                dir = %config.dir.display(),
                "the audit log is an unkeyed (sha256) chain: anyone with write access can edit it and recompute the chain; set KEYMGR_AUDIT_HMAC_KEY"
            );
        }
        if signer.is_none() {
            tracing::info!(
                target: "keymgr::audit",
                "no KEYMGR_AUDIT_CHECKPOINT_KEY: no signed checkpoints are published, so a cut-off tail of the log is not detectable"
            );
        }
        let shared = Arc::new(Shared::default());
        let writer = Writer::new(
            WriterConfig {
                dir: config.dir.clone(),
                node: node.clone(),
                key: key.clone(),
                durability: config.durability,
                on_failure: config.on_failure,
                retention: config.retention,
                segment_max_bytes: config.segment_max_bytes,
                segment_daily: config.segment_daily,
                commit_delay: config.commit_delay,
            },
            shared.clone(),
            rec,
        )?;
        let inbox = Arc::new(Inbox::default());
        let writer_inbox = inbox.clone();
        let thread = std::thread::Builder::new()
            .name("keymgr-audit-writer".into())
            .spawn(move || writer.run(writer_inbox))
            .map_err(|e| {
                Error::backend(
                    "audit-log",
                    format!("cannot start the writer thread: {e}"),
                    Some(Box::new(e)),
                )
            })?;
        tracing::info!(
            target: "keymgr::audit",
            dir = %config.dir.display(),
            node = %node,
            durability = ?config.durability,
            on_failure = ?config.on_failure,
            mode = key.mode(),
            "audit file log open"
        );
        Ok(Self {
            inner: Arc::new(Inner {
                inbox,
                thread: Mutex::new(Some(thread)),
                shared,
                dir: config.dir.clone(),
                node: node.clone(),
                durability: config.durability,
                on_failure: config.on_failure,
                key,
                signer,
                torn_bytes,
                publisher,
                last_checkpoint: tokio::sync::Mutex::new(last_checkpoint),
                _lock: lock,
            }),
        })
    }

    fn spawn_checkpoints(&self, every: Duration) -> Result<()> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::config(
                KEYMGR_AUDIT_CHECKPOINT_KEY,
                "a tokio runtime to sign checkpoints in",
                "AuditLog::open was called outside a tokio runtime",
            )
        })?;
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        handle.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                let log = AuditLog { inner };
                match log.checkpoint().await {
                    Ok(cp) => tracing::debug!(target: "keymgr::audit", seq = cp.seq, "signed audit checkpoint"),
                    Err(e) if e.kind() == keymgr_core::ErrorKind::InvalidInput => {}
                    Err(e) => tracing::error!(
                        target: "keymgr::audit",
                        alarm = true,
                        error = %e,
                        "cannot sign an audit checkpoint"
                    ),
                }
            }
        });
        Ok(())
    }

    fn send(&self, msg: Msg, urgency: Urgency) -> Result<()> {
        if self.inner.inbox.send(msg, urgency) {
            Ok(())
        } else {
            Err(writer_gone())
        }
    }

    /// Queues `entry`; with `wait`, returns once it is committed. A deferred request
    /// opens an operation in flight and the next entry somebody waits for closes one
    /// (see [`Shared::close_operation`]), so that the writer can hold a commit for the
    /// outcomes still to come.
    async fn append(&self, entry: Pending, wait: bool) -> Result<Option<Head>> {
        let shared = &self.inner.shared;
        if !wait {
            let deferred = entry.deferred;
            let urgency = if deferred {
                Urgency::Deferred
            } else {
                Urgency::Waited
            };
            let entry = Box::new(entry);
            self.send(Msg::Append { entry, ack: None }, urgency)?;
            if deferred && self.inner.durability == Durability::Durable {
                shared.open_operation();
            }
            return Ok(None);
        }
        let (tx, rx) = oneshot::channel();
        let urgency = if entry.refers_to.is_some() {
            Urgency::Now
        } else {
            shared.close_operation()
        };
        let entry = Box::new(entry);
        self.send(
            Msg::Append {
                entry,
                ack: Some(tx),
            },
            urgency,
        )?;
        rx.await.map_err(|_| writer_gone())?.map(Some)
    }

    /// Waits until everything queued is on disk; returns the chain head.
    pub async fn flush(&self) -> Result<Head> {
        let (tx, rx) = oneshot::channel();
        self.send(Msg::Flush { ack: tx }, Urgency::Now)?;
        rx.await.map_err(|_| writer_gone())?
    }

    /// Signs the current head (naming the previous checkpoint) with the checkpoint key,
    /// appends it as an `AUDIT_CHECKPOINT` entry, then publishes it outside the log
    /// (`tracing` target [`crate::publish::TRACING_TARGET`], and the checkpoint file when
    /// configured). Returns it; an external party verifies it with
    /// [`Checkpoint::verify`] and the key's public key.
    pub async fn checkpoint(&self) -> Result<Checkpoint> {
        let signer = self.inner.signer.as_ref().ok_or_else(|| {
            Error::config(
                KEYMGR_AUDIT_CHECKPOINT_KEY,
                "a key to sign checkpoints with",
                "no checkpoint key is configured",
            )
        })?;
        // One checkpoint at a time: each names the one before it.
        let mut last = self.inner.last_checkpoint.lock().await;
        let head = self.flush().await?;
        if head.seq == 0 {
            return Err(Error::invalid_input("checkpoint", "the log is empty"));
        }
        let cp = Checkpoint::sign(
            &*signer.backend,
            &signer.key,
            &self.inner.node,
            (head.seq, &head.hash),
            (last.0, &last.1),
            time::now_ms(),
        )
        .await?;
        let mut p = Pending::internal(events::CHECKPOINT, "success", cp.to_details());
        p.backend = signer.backend.name().to_owned();
        p.key = signer.key.name().to_owned();
        p.key_version = signer.key.version().map(str::to_owned);
        p.refers_to = Some(head.seq);
        self.append(p, true).await?;
        *last = (cp.seq, cp.hash.clone());
        // Published once it is in the log, so a published checkpoint is always there.
        self.inner.publisher.publish(&cp)?;
        Ok(cp)
    }

    /// Removes whole segments older than the retention period as of `now_ms` (normally
    /// automatic: at open and whenever a new segment starts). Returns how many.
    pub async fn apply_retention(&self, now_ms: u64) -> Result<usize> {
        let (tx, rx) = oneshot::channel();
        self.send(Msg::Retention { now_ms, ack: tx }, Urgency::Now)?;
        rx.await.map_err(|_| writer_gone())?
    }

    /// Counters and the current error, if any.
    pub fn status(&self) -> AuditStatus {
        let s = &self.inner.shared;
        AuditStatus {
            dir: self.inner.dir.clone(),
            written: s.written.load(Ordering::Relaxed),
            lost: s.lost.load(Ordering::Relaxed),
            io_errors: s.io_errors.load(Ordering::Relaxed),
            commits: s.commits.load(Ordering::Relaxed),
            fsyncs: s.fsyncs.load(Ordering::Relaxed),
            failing: s.failing(),
            in_flight: s.in_flight.load(Ordering::Relaxed),
            torn_bytes_recovered: self.inner.torn_bytes,
        }
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// A verifier with this log's chain key.
    pub fn verifier(&self) -> Verifier {
        Verifier::new(self.inner.key.clone())
    }

    /// Test support: the next `n` disk operations of the writer fail like a full disk
    /// (half the batch is written, then `StorageFull`).
    #[doc(hidden)]
    pub fn inject_io_errors(&self, n: u32) {
        let _ = self.send(Msg::InjectFailures(n), Urgency::Now);
    }

    fn on_error(&self, e: Error) -> Result<()> {
        match self.inner.on_failure {
            FailurePolicy::FailClosed => Err(e),
            FailurePolicy::FailOpen => {
                // The writer already raised the alarm for I/O errors; say it for this one too
                // in case the writer itself is gone.
                tracing::error!(
                    target: "keymgr::audit",
                    alarm = true,
                    error = %e,
                    "audit entry NOT recorded; continuing because KEYMGR_AUDIT_ON_FAILURE=fail-open"
                );
                Ok(())
            }
        }
    }
}

fn writer_gone() -> Error {
    Error::unavailable("audit-log", "the audit log writer has stopped", None)
}

impl Pending {
    fn from_record(r: AuditRecord) -> Self {
        let details: BTreeMap<String, String> = r.details;
        Self {
            ts_ms: time::now_ms(),
            backend: r.backend,
            event: r.event.as_str().to_owned(),
            key: r.key,
            key_version: r.key_version,
            payload_sha256: r.payload_sha256,
            actor: r.actor,
            outcome: outcome_str(r.outcome).to_owned(),
            error_kind: r.error_kind.map(|k| k.as_str().to_owned()),
            details,
            context: r.context,
            refers_to: None,
            deferred: false,
        }
    }
}

fn outcome_str(o: keymgr_core::Outcome) -> &'static str {
    match o {
        keymgr_core::Outcome::Pending => "pending",
        keymgr_core::Outcome::Success => "success",
        keymgr_core::Outcome::Failure => "failure",
        keymgr_core::Outcome::Denied => "denied",
    }
}

#[async_trait]
impl AuditSink for AuditLog {
    /// Redacts, emits to `tracing`, and appends. Durable mode returns once the entry is
    /// fsynced; buffered mode once it is queued. On I/O errors: an error under
    /// fail-closed, `Ok` plus an alarm under fail-open.
    async fn record(&self, record: AuditRecord) -> Result<()> {
        self.record_with(record, false).await
    }

    /// Durable mode: queued without waiting; the writer keeps it for the commit that
    /// carries its outcome (or commits it within 100 ms anyway, plus the commit delay if
    /// a commit is being held then). Refused, so the
    /// operation does not start, while the log is failing under fail-closed.
    async fn record_request(&self, record: AuditRecord) -> Result<()> {
        self.record_with(record, true).await
    }
}

impl AuditLog {
    async fn record_with(&self, record: AuditRecord, request: bool) -> Result<()> {
        let record = redact_record(record);
        trace_record(&record);
        let mut pending = Pending::from_record(record);
        // While the disk fails, a request waits for its own commit: that probes the
        // disk, and refuses the operation before it starts if the disk still fails.
        let failing = self.inner.shared.failing().is_some();
        pending.deferred = request && !failing;
        match self.inner.durability {
            Durability::Durable if !pending.deferred => match self.append(pending, true).await {
                Ok(_) => Ok(()),
                Err(e) => self.on_error(e),
            },
            Durability::Durable | Durability::Buffered => {
                // Nobody waits for this entry, so refuse up front while the disk fails.
                if self.inner.on_failure == FailurePolicy::FailClosed
                    && let Some(msg) = self.inner.shared.failing()
                {
                    return Err(Error::unavailable("audit-log", msg, None));
                }
                match self.append(pending, false).await {
                    Ok(_) => Ok(()),
                    Err(e) => self.on_error(e),
                }
            }
        }
    }
}
