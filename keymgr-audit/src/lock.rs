//! One writer per log directory: an exclusive advisory lock (`flock`) on
//! `<dir>/.keymgr-audit.lock`, held for the writer's lifetime and released by the kernel
//! when the process exits, however it exits. Readers (`verify`, `export`) take no lock.

use std::fmt;
use std::fs::{File, TryLockError};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use keymgr_core::{Error, Result};

use crate::files;
use crate::segment::io_error;

/// Name of the lock file inside a log directory.
pub const LOCK_FILE: &str = ".keymgr-audit.lock";

/// How often a waiting writer tries the lock again.
const RETRY: Duration = Duration::from_millis(50);

/// Another process holds the writer lock of a log directory (the `source()` of the
/// `Unavailable` error [`crate::AuditLog::open`] returns then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLocked {
    /// The lock file.
    pub path: PathBuf,
    /// Process id the holder wrote into the lock file, if readable.
    pub holder_pid: Option<u32>,
    /// How long this writer waited before giving up.
    pub waited: Duration,
}

impl fmt::Display for LogLocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "audit log {} is locked by another writer",
            self.path.parent().unwrap_or(&self.path).display()
        )?;
        if let Some(pid) = self.holder_pid {
            write!(f, " (pid {pid})")?;
        }
        write!(
            f,
            " after waiting {:?}: one directory, one writer; give each process its own KEYMGR_AUDIT_PATH (e.g. per node id)",
            self.waited
        )
    }
}

impl std::error::Error for LogLocked {}

/// The held lock; dropping it releases the lock.
#[derive(Debug)]
pub(crate) struct WriterLock {
    _file: File,
}

/// Takes the writer lock of `dir`, retrying for up to `wait` (zero: fail at once).
pub(crate) fn acquire(dir: &Path, wait: Duration) -> Result<WriterLock> {
    let path = dir.join(LOCK_FILE);
    let mut file = files::open_or_create(&path).map_err(|e| io_error("open lock", &path, e))?;
    let start = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) if start.elapsed() < wait => std::thread::sleep(RETRY),
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let holder_pid = file
                    .seek(SeekFrom::Start(0))
                    .and_then(|_| file.read_to_string(&mut text))
                    .ok()
                    .and_then(|_| text.trim().parse().ok());
                let locked = LogLocked {
                    path: path.clone(),
                    holder_pid,
                    waited: start.elapsed(),
                };
                return Err(Error::unavailable(
                    "audit-log",
                    locked.to_string(),
                    Some(Box::new(locked)),
                ));
            }
            Err(TryLockError::Error(e)) => return Err(io_error("lock", &path, e)),
        }
    }
    // Diagnostics only: who holds it.
    let pid = std::process::id().to_string();
    file.set_len(0)
        .and_then(|()| file.write_all(pid.as_bytes()))
        .map_err(|e| io_error("write", &path, e))?;
    Ok(WriterLock { _file: file })
}
