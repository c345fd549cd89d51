//! Settings of the file log, from `KEYMGR_AUDIT_*` environment variables.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use keymgr_core::config::{TimeUnit, VarSource, Vars};
use keymgr_core::{Error, KeyBackend, KeyRef, Result};
use zeroize::Zeroizing;

use crate::ChainKey;

/// Directory of the file log; unset means no file log (entries go to `tracing` only).
pub const KEYMGR_AUDIT_PATH: &str = "KEYMGR_AUDIT_PATH";
/// `durable` (default) or `buffered`.
pub const KEYMGR_AUDIT_DURABILITY: &str = "KEYMGR_AUDIT_DURABILITY";
/// `fail-closed` (default) or `fail-open`.
pub const KEYMGR_AUDIT_ON_FAILURE: &str = "KEYMGR_AUDIT_ON_FAILURE";
/// Days segments are kept (default 365; 0 keeps them forever).
pub const KEYMGR_AUDIT_RETENTION_DAYS: &str = "KEYMGR_AUDIT_RETENTION_DAYS";
/// Segment size limit in bytes (default 67108864 = 64 MiB).
pub const KEYMGR_AUDIT_SEGMENT_MAX_BYTES: &str = "KEYMGR_AUDIT_SEGMENT_MAX_BYTES";
/// Start a new segment every UTC day: `true` (default) or `false`.
pub const KEYMGR_AUDIT_SEGMENT_DAILY: &str = "KEYMGR_AUDIT_SEGMENT_DAILY";
/// Keyed chain: HMAC key as hex (at least 16 bytes). Secret.
pub const KEYMGR_AUDIT_HMAC_KEY: &str = "KEYMGR_AUDIT_HMAC_KEY";
/// Keyed chain: the HMAC key encrypted under `KEYMGR_AUDIT_HMAC_KEK`, as hex.
pub const KEYMGR_AUDIT_HMAC_KEY_WRAPPED: &str = "KEYMGR_AUDIT_HMAC_KEY_WRAPPED";
/// Keyed chain: the backend's symmetric key that decrypts `KEYMGR_AUDIT_HMAC_KEY_WRAPPED`.
pub const KEYMGR_AUDIT_HMAC_KEK: &str = "KEYMGR_AUDIT_HMAC_KEK";
/// Key (`NAME` or `NAME@VERSION`) that signs checkpoints; unset means no signed checkpoints.
pub const KEYMGR_AUDIT_CHECKPOINT_KEY: &str = "KEYMGR_AUDIT_CHECKPOINT_KEY";
/// File (outside the log directory, ideally on another volume) each signed checkpoint is
/// appended to as a JSON line, for `keymgr audit verify --checkpoints`.
pub const KEYMGR_AUDIT_CHECKPOINT_FILE: &str = "KEYMGR_AUDIT_CHECKPOINT_FILE";
/// `development` (default) or `production`: production refuses to start without a file
/// log or with an unkeyed chain (the same variable selects rotation defaults).
pub const KEYMGR_PROFILE: &str = "KEYMGR_PROFILE";
/// Seconds between signed checkpoints (default 3600).
pub const KEYMGR_AUDIT_CHECKPOINT_SECS: &str = "KEYMGR_AUDIT_CHECKPOINT_SECS";
/// Seconds a second writer waits for the log's writer lock before failing (default 0).
pub const KEYMGR_AUDIT_LOCK_WAIT_SECS: &str = "KEYMGR_AUDIT_LOCK_WAIT_SECS";
/// Microseconds a durable commit waits for the outcomes of other operations in flight
/// (default 2000; 0 never waits). See [`AuditConfig::commit_delay`].
pub const KEYMGR_AUDIT_COMMIT_DELAY_US: &str = "KEYMGR_AUDIT_COMMIT_DELAY_US";
/// Node id written into every entry (default: the host name).
pub const KEYMGR_NODE_ID: &str = "KEYMGR_NODE_ID";

/// Every variable with a one-line description (for `.env.example` and `--help`).
pub const VARIABLES: &[(&str, &str)] = &[
    (
        KEYMGR_AUDIT_PATH,
        "directory of the hash-chained audit log; unset: no file log, entries go to tracing only",
    ),
    (
        KEYMGR_AUDIT_DURABILITY,
        "durable (default: an operation returns only after its entry is fsynced) | buffered",
    ),
    (
        KEYMGR_AUDIT_ON_FAILURE,
        "fail-closed (default: refuse signing when the log cannot be written) | fail-open (continue, alarm loudly)",
    ),
    (
        KEYMGR_AUDIT_RETENTION_DAYS,
        "days to keep old segments (default 365; 0 keeps everything)",
    ),
    (
        KEYMGR_AUDIT_SEGMENT_MAX_BYTES,
        "start a new segment file beyond this size (default 67108864)",
    ),
    (
        KEYMGR_AUDIT_SEGMENT_DAILY,
        "start a new segment file every UTC day: true (default) | false",
    ),
    (
        KEYMGR_AUDIT_HMAC_KEY,
        "keyed chain: HMAC-SHA-256 key as hex, >= 16 bytes (secret; verifiers need it too)",
    ),
    (
        KEYMGR_AUDIT_HMAC_KEY_WRAPPED,
        "keyed chain: the HMAC key encrypted by the backend key KEYMGR_AUDIT_HMAC_KEK, as hex",
    ),
    (
        KEYMGR_AUDIT_HMAC_KEK,
        "keyed chain: backend key that decrypts KEYMGR_AUDIT_HMAC_KEY_WRAPPED",
    ),
    (
        KEYMGR_AUDIT_CHECKPOINT_KEY,
        "backend key (NAME or NAME@VERSION) that signs periodic checkpoints; unset: unsigned log",
    ),
    (
        KEYMGR_AUDIT_CHECKPOINT_FILE,
        "file outside the log directory (another volume) that every signed checkpoint is appended to; needs KEYMGR_AUDIT_CHECKPOINT_KEY",
    ),
    (
        KEYMGR_PROFILE,
        "development (default) | production: refuse to start without KEYMGR_AUDIT_PATH or with an unkeyed chain",
    ),
    (
        KEYMGR_AUDIT_CHECKPOINT_SECS,
        "seconds between signed checkpoints (default 3600)",
    ),
    (
        KEYMGR_AUDIT_LOCK_WAIT_SECS,
        "seconds to wait for another writer of the same log directory to exit (default 0: fail at once; one directory, one writer)",
    ),
    (
        KEYMGR_AUDIT_COMMIT_DELAY_US,
        "microseconds a durable commit waits for the outcomes of other operations in flight, so one fsync covers them (default 2000; 0: never wait; a lone operation never waits)",
    ),
    (
        KEYMGR_NODE_ID,
        "node id recorded in every audit entry (default: the host name)",
    ),
];

/// When [`AuditSink::record`](keymgr_core::AuditSink::record) returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// After the entry is written and fsynced (group commit shares one fsync among all
    /// entries that arrive meanwhile). `KeyManager::sign` returns only after its outcome
    /// entry is on disk.
    #[default]
    Durable,
    /// As soon as the entry is queued; the writer fsyncs at least every 100 ms. A crash
    /// may lose the last moments; an I/O error makes later records fail (fail-closed).
    Buffered,
}

/// What happens when the log cannot be written (disk full, I/O error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// Recording fails, so `KeyManager` refuses to sign.
    #[default]
    FailClosed,
    /// Recording succeeds anyway; every failure is logged at ERROR level (target
    /// `keymgr::audit`) and an `AUDIT_GAP` entry records the loss once writing works again.
    FailOpen,
}

/// Where the HMAC key of a keyed chain comes from.
#[derive(Clone)]
pub enum HmacKeySource {
    /// The key itself (from `KEYMGR_AUDIT_HMAC_KEY`).
    Raw(Zeroizing<Vec<u8>>),
    /// The key encrypted by a backend key; [`resolve`](Self::resolve) decrypts it.
    Wrapped {
        /// The backend's symmetric key.
        kek: KeyRef,
        /// The encrypted HMAC key.
        ciphertext: Vec<u8>,
    },
}

impl fmt::Debug for HmacKeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HmacKeySource::Raw(_) => f.write_str("HmacKeySource::Raw([REDACTED])"),
            HmacKeySource::Wrapped { kek, ciphertext } => f
                .debug_struct("HmacKeySource::Wrapped")
                .field("kek", kek)
                .field("ciphertext_len", &ciphertext.len())
                .finish(),
        }
    }
}

impl HmacKeySource {
    /// Reads `KEYMGR_AUDIT_HMAC_KEY` or `KEYMGR_AUDIT_HMAC_KEY_WRAPPED` +
    /// `KEYMGR_AUDIT_HMAC_KEK`; `None` when neither is set (plain SHA-256 chain).
    pub fn from_vars(var: impl Fn(&str) -> Option<String> + Sync) -> Result<Option<Self>> {
        Self::from_source(&var)
    }

    /// Like `from_vars`, from any [`VarSource`] (the process environment, a map,
    /// the environment layered over a configuration file, a collecting
    /// [`Vars`] of `keymgr config check`). A value that is not UTF-8 is an error
    /// naming its variable.
    pub fn from_source(source: &dyn VarSource) -> Result<Option<Self>> {
        let vars = Vars::new(source);
        // The raw key is a secret: read without echoing it in any error.
        let raw = vars.secret(KEYMGR_AUDIT_HMAC_KEY)?.map(Zeroizing::new);
        let wrapped = vars.get(KEYMGR_AUDIT_HMAC_KEY_WRAPPED)?;
        let kek = vars.key_ref(KEYMGR_AUDIT_HMAC_KEK)?;
        match (raw, wrapped, kek) {
            (None, None, None) => Ok(None),
            (Some(hex_key), None, None) => {
                let bytes = Zeroizing::new(hex::decode(hex_key.trim()).map_err(|_| {
                    Error::config(
                        KEYMGR_AUDIT_HMAC_KEY,
                        "hex, at least 32 hex characters",
                        "not valid hex",
                    )
                })?);
                if bytes.len() < 16 {
                    return Err(Error::config(
                        KEYMGR_AUDIT_HMAC_KEY,
                        "hex, at least 32 hex characters",
                        format!("only {} bytes", bytes.len()),
                    ));
                }
                Ok(Some(HmacKeySource::Raw(bytes)))
            }
            (None, Some(ct), Some(kek)) => {
                let ciphertext = hex::decode(&ct).map_err(|_| {
                    Error::config(
                        KEYMGR_AUDIT_HMAC_KEY_WRAPPED,
                        "hex ciphertext",
                        "not valid hex",
                    )
                })?;
                Ok(Some(HmacKeySource::Wrapped { kek, ciphertext }))
            }
            (Some(_), _, _) => Err(Error::config(
                KEYMGR_AUDIT_HMAC_KEY,
                "either KEYMGR_AUDIT_HMAC_KEY or KEYMGR_AUDIT_HMAC_KEY_WRAPPED + KEYMGR_AUDIT_HMAC_KEK",
                "both a raw and a wrapped key are set",
            )),
            (None, Some(_), None) => Err(Error::config(
                KEYMGR_AUDIT_HMAC_KEK,
                "the backend key that decrypts KEYMGR_AUDIT_HMAC_KEY_WRAPPED",
                "not set",
            )),
            (None, None, Some(_)) => Err(Error::config(
                KEYMGR_AUDIT_HMAC_KEY_WRAPPED,
                "the HMAC key encrypted by KEYMGR_AUDIT_HMAC_KEK, as hex",
                "not set",
            )),
        }
    }

    /// The chain key: the raw key, or the wrapped one decrypted by `backend`.
    pub async fn resolve(&self, backend: Option<&dyn KeyBackend>) -> Result<ChainKey> {
        match self {
            HmacKeySource::Raw(k) => ChainKey::hmac(k),
            HmacKeySource::Wrapped { kek, ciphertext } => {
                let backend = backend.ok_or_else(|| {
                    Error::config(
                        KEYMGR_AUDIT_HMAC_KEK,
                        "a configured backend that can decrypt",
                        "no backend was given to unwrap the audit HMAC key",
                    )
                })?;
                let plain = backend
                    .decrypt(kek, ciphertext, &Default::default())
                    .await?;
                ChainKey::hmac(plain.expose())
            }
        }
    }
}

/// Settings of the file log. Build with [`AuditConfig::new`] or
/// [`AuditConfig::from_vars`]; open with [`crate::AuditLog::open`].
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// Directory of the segment files (created if missing).
    pub dir: PathBuf,
    /// Node id in every entry.
    pub node_id: String,
    /// When `record` returns.
    pub durability: Durability,
    /// What happens on I/O errors.
    pub on_failure: FailurePolicy,
    /// How long segments are kept; `None` keeps them forever.
    pub retention: Option<Duration>,
    /// Segment size limit in bytes.
    pub segment_max_bytes: u64,
    /// Whether a new segment starts every UTC day.
    pub segment_daily: bool,
    /// Keyed chain, if any.
    pub hmac_key: Option<HmacKeySource>,
    /// Key that signs checkpoints, if any.
    pub checkpoint_key: Option<KeyRef>,
    /// Time between signed checkpoints.
    pub checkpoint_interval: Duration,
    /// File every signed checkpoint is also appended to (outside `dir`).
    pub checkpoint_file: Option<PathBuf>,
    /// How long open waits for another writer of `dir` to exit (zero: fail at once).
    pub lock_wait: Duration,
    /// Durable mode: longest time a commit waits for the outcomes of other operations in
    /// flight, so that one fsync covers them (PostgreSQL's `commit_delay`). A lone
    /// operation is never held; zero never holds.
    pub commit_delay: Duration,
}

/// Default retention: 365 days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(365 * 86_400);
/// Default segment size limit: 64 MiB.
pub const DEFAULT_SEGMENT_MAX_BYTES: u64 = 64 << 20;
/// Default commit delay: 2 ms (see [`AuditConfig::commit_delay`]).
pub const DEFAULT_COMMIT_DELAY: Duration = Duration::from_millis(2);
/// Default time between signed checkpoints: one hour.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(3600);

impl AuditConfig {
    /// Defaults for a log in `dir`: durable, fail-closed, 365 days, 64 MiB/daily segments,
    /// unkeyed, no signed checkpoints, node id = host name.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            node_id: default_node_id(),
            durability: Durability::Durable,
            on_failure: FailurePolicy::FailClosed,
            retention: Some(DEFAULT_RETENTION),
            segment_max_bytes: DEFAULT_SEGMENT_MAX_BYTES,
            segment_daily: true,
            hmac_key: None,
            checkpoint_key: None,
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            checkpoint_file: None,
            lock_wait: Duration::ZERO,
            commit_delay: DEFAULT_COMMIT_DELAY,
        }
    }

    /// Reads the `KEYMGR_AUDIT_*` variables (see [`VARIABLES`]) through `var`.
    /// `Ok(None)` when `KEYMGR_AUDIT_PATH` is unset: no file log is kept. Every malformed
    /// value is an error naming its variable.
    pub fn from_vars(var: impl Fn(&str) -> Option<String> + Sync) -> Result<Option<Self>> {
        Self::from_source(&var)
    }

    /// Like `from_vars`, from any [`VarSource`] (the process environment, a map,
    /// the environment layered over a configuration file, a collecting
    /// [`Vars`] of `keymgr config check`). A value that is not UTF-8 is an error
    /// naming its variable.
    pub fn from_source(source: &dyn VarSource) -> Result<Option<Self>> {
        let vars = Vars::new(source);
        let dir = vars.path(KEYMGR_AUDIT_PATH)?;
        // Every setting is checked even without a log, so a bad value never waits for
        // the day the log is turned on.
        let mut c = AuditConfig::new(dir.clone().unwrap_or_default());
        if let Some(node) = vars.get(KEYMGR_NODE_ID)? {
            c.node_id = node;
        }
        if let Some(d) = vars.choice(
            KEYMGR_AUDIT_DURABILITY,
            &[
                ("durable", Durability::Durable),
                ("buffered", Durability::Buffered),
            ],
        )? {
            c.durability = d;
        }
        if let Some(p) = vars.choice(
            KEYMGR_AUDIT_ON_FAILURE,
            &[
                ("fail-closed", FailurePolicy::FailClosed),
                ("closed", FailurePolicy::FailClosed),
                ("fail-open", FailurePolicy::FailOpen),
                ("open", FailurePolicy::FailOpen),
            ],
        )? {
            c.on_failure = p;
        }
        if let Some(days) =
            vars.bounded(KEYMGR_AUDIT_RETENTION_DAYS, 0..=MAX_RETENTION_DAYS, "days")?
        {
            c.retention = (days > 0).then(|| Duration::from_secs(days * 86_400));
        }
        if let Some(bytes) = vars.bounded(
            KEYMGR_AUDIT_SEGMENT_MAX_BYTES,
            4096..=MAX_SEGMENT_BYTES,
            "bytes",
        )? {
            c.segment_max_bytes = bytes;
        }
        if let Some(daily) = vars.flag(KEYMGR_AUDIT_SEGMENT_DAILY)? {
            c.segment_daily = daily;
        }
        c.hmac_key = HmacKeySource::from_source(&vars)?;
        c.checkpoint_key = vars.key_ref(KEYMGR_AUDIT_CHECKPOINT_KEY)?;
        if let Some(every) = vars.duration(
            KEYMGR_AUDIT_CHECKPOINT_SECS,
            TimeUnit::Secs,
            1..=MAX_CHECKPOINT_SECS,
        )? {
            c.checkpoint_interval = every;
        }
        if let Some(f) = vars.path(KEYMGR_AUDIT_CHECKPOINT_FILE)? {
            if c.checkpoint_key.is_none() {
                return Err(Error::config(
                    KEYMGR_AUDIT_CHECKPOINT_KEY,
                    "the key that signs the checkpoints published to KEYMGR_AUDIT_CHECKPOINT_FILE",
                    "not set",
                ));
            }
            c.checkpoint_file = Some(f);
        }
        if let Some(wait) = vars.duration(
            KEYMGR_AUDIT_LOCK_WAIT_SECS,
            TimeUnit::Secs,
            0..=MAX_LOCK_WAIT_SECS,
        )? {
            c.lock_wait = wait;
        }
        if let Some(us) = vars.bounded(
            KEYMGR_AUDIT_COMMIT_DELAY_US,
            0..=MAX_COMMIT_DELAY_US,
            "microseconds",
        )? {
            c.commit_delay = Duration::from_micros(us);
        }
        if dir.is_none() {
            // Keys and key material configured for a log that is not kept: refuse
            // rather than silently sign nothing.
            for name in [
                KEYMGR_AUDIT_CHECKPOINT_KEY,
                KEYMGR_AUDIT_CHECKPOINT_FILE,
                KEYMGR_AUDIT_HMAC_KEY,
                KEYMGR_AUDIT_HMAC_KEY_WRAPPED,
                KEYMGR_AUDIT_HMAC_KEK,
            ] {
                if vars.os(name).is_some() {
                    vars.refuse::<()>(Error::config(
                        name,
                        format!("set only together with {KEYMGR_AUDIT_PATH}"),
                        format!("{KEYMGR_AUDIT_PATH} is not set, so no audit file log is kept"),
                    ))?;
                }
            }
            return Ok(None);
        }
        Ok(Some(c))
    }
}

/// Upper bound of `KEYMGR_AUDIT_RETENTION_DAYS` (100 years).
pub const MAX_RETENTION_DAYS: u64 = 36_500;
/// Upper bound of `KEYMGR_AUDIT_SEGMENT_MAX_BYTES` (16 GiB).
pub const MAX_SEGMENT_BYTES: u64 = 16 << 30;
/// Upper bound of `KEYMGR_AUDIT_CHECKPOINT_SECS` (7 days).
pub const MAX_CHECKPOINT_SECS: u64 = 7 * 86_400;
/// Upper bound of `KEYMGR_AUDIT_COMMIT_DELAY_US` (100 ms).
pub const MAX_COMMIT_DELAY_US: u64 = 100_000;
/// Upper bound of `KEYMGR_AUDIT_LOCK_WAIT_SECS` (1 hour).
pub const MAX_LOCK_WAIT_SECS: u64 = 3600;

/// Whether `KEYMGR_PROFILE` is `production` (`development` or unset: false; anything
/// else is an error naming the variable).
pub fn is_production(source: &dyn VarSource) -> Result<bool> {
    Ok(Vars::new(source)
        .choice(
            KEYMGR_PROFILE,
            &[("development", false), ("production", true)],
        )?
        .unwrap_or(false))
}

/// The host name (Linux: `/proc/sys/kernel/hostname`; else `$HOSTNAME`), or `unknown`.
pub fn default_node_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn unset_path_means_no_file_log() {
        assert!(AuditConfig::from_vars(vars(&[])).unwrap().is_none());
        assert!(
            AuditConfig::from_vars(vars(&[(KEYMGR_AUDIT_PATH, "  ")]))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn defaults_and_overrides() {
        let c = AuditConfig::from_vars(vars(&[(KEYMGR_AUDIT_PATH, "/var/log/keymgr")]))
            .unwrap()
            .unwrap();
        assert_eq!(c.dir, PathBuf::from("/var/log/keymgr"));
        assert_eq!(c.durability, Durability::Durable);
        assert_eq!(c.on_failure, FailurePolicy::FailClosed);
        assert_eq!(c.retention, Some(DEFAULT_RETENTION));
        assert!(c.hmac_key.is_none() && c.checkpoint_key.is_none());
        assert!(!c.node_id.is_empty());
        assert_eq!(c.commit_delay, DEFAULT_COMMIT_DELAY);

        let c = AuditConfig::from_vars(vars(&[
            (KEYMGR_AUDIT_PATH, "/tmp/a"),
            (KEYMGR_AUDIT_DURABILITY, "buffered"),
            (KEYMGR_AUDIT_ON_FAILURE, "fail-open"),
            (KEYMGR_AUDIT_RETENTION_DAYS, "0"),
            (KEYMGR_NODE_ID, "node-7"),
            (KEYMGR_AUDIT_SEGMENT_MAX_BYTES, "8192"),
            (KEYMGR_AUDIT_SEGMENT_DAILY, "false"),
            (KEYMGR_AUDIT_HMAC_KEY, &"ab".repeat(32)),
            (KEYMGR_AUDIT_CHECKPOINT_KEY, "audit@2"),
            (KEYMGR_AUDIT_CHECKPOINT_SECS, "60"),
            (KEYMGR_AUDIT_COMMIT_DELAY_US, "250"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(c.durability, Durability::Buffered);
        assert_eq!(c.on_failure, FailurePolicy::FailOpen);
        assert_eq!(c.retention, None);
        assert_eq!(c.node_id, "node-7");
        assert_eq!(c.segment_max_bytes, 8192);
        assert!(!c.segment_daily);
        assert_eq!(c.checkpoint_key, Some(KeyRef::versioned("audit", "2")));
        assert_eq!(c.checkpoint_interval, Duration::from_secs(60));
        assert_eq!(c.commit_delay, Duration::from_micros(250));
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("abab") && dbg.contains("REDACTED"), "{dbg}");
    }

    #[test]
    fn errors_name_the_variable() {
        let secret = "zz".repeat(20);
        for (name, value) in [
            (KEYMGR_AUDIT_DURABILITY, "sometimes"),
            (KEYMGR_AUDIT_ON_FAILURE, "maybe"),
            (KEYMGR_AUDIT_RETENTION_DAYS, "a year"),
            (KEYMGR_AUDIT_SEGMENT_MAX_BYTES, "10"),
            (KEYMGR_AUDIT_SEGMENT_DAILY, "often"),
            (KEYMGR_AUDIT_CHECKPOINT_KEY, "@1"),
            (KEYMGR_AUDIT_CHECKPOINT_SECS, "0"),
            (KEYMGR_AUDIT_COMMIT_DELAY_US, "100001"),
            (KEYMGR_AUDIT_COMMIT_DELAY_US, "1ms"),
            (KEYMGR_AUDIT_HMAC_KEY, secret.as_str()),
            (KEYMGR_AUDIT_HMAC_KEY, "abcd"),
            (KEYMGR_AUDIT_HMAC_KEY_WRAPPED, "abcd"),
        ] {
            let e = AuditConfig::from_vars(vars(&[(KEYMGR_AUDIT_PATH, "/tmp/a"), (name, value)]))
                .unwrap_err();
            let msg = e.to_string();
            let expected_var = if name == KEYMGR_AUDIT_HMAC_KEY_WRAPPED {
                KEYMGR_AUDIT_HMAC_KEK
            } else {
                name
            };
            assert!(msg.contains(expected_var), "{name}: {msg}");
            if name == KEYMGR_AUDIT_HMAC_KEY {
                assert!(!msg.contains(value), "secret in error: {msg}");
            }
        }
    }

    #[test]
    fn every_variable_is_documented() {
        for name in [
            KEYMGR_AUDIT_PATH,
            KEYMGR_AUDIT_DURABILITY,
            KEYMGR_AUDIT_ON_FAILURE,
            KEYMGR_AUDIT_RETENTION_DAYS,
            KEYMGR_AUDIT_SEGMENT_MAX_BYTES,
            KEYMGR_AUDIT_SEGMENT_DAILY,
            KEYMGR_AUDIT_HMAC_KEY,
            KEYMGR_AUDIT_HMAC_KEY_WRAPPED,
            KEYMGR_AUDIT_HMAC_KEK,
            KEYMGR_AUDIT_CHECKPOINT_KEY,
            KEYMGR_AUDIT_CHECKPOINT_SECS,
            KEYMGR_AUDIT_LOCK_WAIT_SECS,
            KEYMGR_AUDIT_COMMIT_DELAY_US,
            KEYMGR_AUDIT_CHECKPOINT_FILE,
            KEYMGR_PROFILE,
            KEYMGR_NODE_ID,
        ] {
            assert!(VARIABLES.iter().any(|(n, _)| *n == name), "{name}");
        }
    }
}
