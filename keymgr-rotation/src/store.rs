//! Where rotation state lives: a trait, a file-based default and an in-memory store.
//!
//! The store records keymgr's own bookkeeping (phase, intents, times, leases). Which
//! key versions exist is always read from the backend; the store never invents keys.

use std::collections::HashMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use keymgr_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// Where a logical key is in its rotation cycle. Each side effect on the backend is
/// preceded by a saved intent (`Creating`, `Disabling`), so a crash at any step resumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    /// One active version; nothing in progress.
    Idle,
    /// Due, waiting for an operator's approval.
    AwaitingApproval,
    /// Intent: a new version is being created to replace `old`.
    Creating {
        /// The version current when the rotation started.
        old: Option<String>,
    },
    /// `old` stays valid until `until_ms`, `new` is current.
    Overlapping {
        /// The previous version.
        old: String,
        /// The new current version.
        new: String,
        /// End of the overlap (ms since the epoch).
        until_ms: u64,
    },
    /// Intent: `old` is being disabled in the backend.
    Disabling {
        /// The version being disabled.
        old: String,
    },
}

/// The persisted state of one logical key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyState {
    /// The logical key.
    pub name: String,
    /// Current phase.
    pub phase: Phase,
    /// The active version as last seen.
    pub active: Option<String>,
    /// When the active version became active (ms); the next rotation is due one
    /// interval later.
    pub active_since_ms: u64,
    /// Versions keymgr disabled (explicit use is refused).
    #[serde(default)]
    pub disabled: Vec<String>,
    /// `active_since_ms` of the cycle whose notice was sent (so it is sent once).
    #[serde(default)]
    pub notice_sent_for: Option<u64>,
    /// An operator approved the pending rotation.
    #[serde(default)]
    pub approved: bool,
    /// Bumped on every save; saves are compare-and-swap on it.
    #[serde(default)]
    pub revision: u64,
}

/// Persistence for [`KeyState`] plus a per-key lease so only one rotator acts on a key.
pub trait StateStore: Send + Sync + std::fmt::Debug {
    /// The state of `name`, if any was saved.
    fn load(&self, name: &str) -> Result<Option<KeyState>>;
    /// Saves `state` if the stored revision is still `state.revision`, then bumps it;
    /// `Ok(false)` when someone else saved in between.
    fn save(&self, state: &mut KeyState) -> Result<bool>;
    /// Takes or renews the lease on `name` for `holder` until `now_ms + ttl`; `false`
    /// when another holder's lease has not expired.
    fn acquire_lease(&self, name: &str, holder: &str, now_ms: u64, ttl: Duration) -> Result<bool>;
    /// Gives the lease up if `holder` has it.
    fn release_lease(&self, name: &str, holder: &str) -> Result<()>;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Lease {
    holder: String,
    until_ms: u64,
}

fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)
}

/// In-memory store (tests, single process).
#[derive(Debug, Default)]
pub struct MemoryStateStore {
    states: Mutex<HashMap<String, KeyState>>,
    leases: Mutex<HashMap<String, Lease>>,
}

impl StateStore for MemoryStateStore {
    fn load(&self, name: &str) -> Result<Option<KeyState>> {
        Ok(self
            .states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned())
    }

    fn save(&self, state: &mut KeyState) -> Result<bool> {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let stored = states.get(&state.name).map(|s| s.revision).unwrap_or(0);
        if stored != state.revision {
            return Ok(false);
        }
        state.revision += 1;
        states.insert(state.name.clone(), state.clone());
        Ok(true)
    }

    fn acquire_lease(&self, name: &str, holder: &str, now_ms: u64, ttl: Duration) -> Result<bool> {
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        match leases.get(name) {
            Some(l) if l.holder != holder && l.until_ms > now_ms => Ok(false),
            _ => {
                leases.insert(
                    name.to_owned(),
                    Lease {
                        holder: holder.to_owned(),
                        until_ms: now_ms.saturating_add(ttl_ms(ttl)),
                    },
                );
                Ok(true)
            }
        }
    }

    fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        if leases.get(name).is_some_and(|l| l.holder == holder) {
            leases.remove(name);
        }
        Ok(())
    }
}

/// One JSON file per key in a directory, written atomically (temp file, fsync, rename,
/// fsync of the directory). Read-modify-write sections are serialized across processes
/// by a lock file created with `O_EXCL`; a lock older than 30 s is a crashed holder's
/// and is broken.
#[derive(Debug)]
pub struct FileStateStore {
    dir: PathBuf,
}

const STALE_LOCK: Duration = Duration::from_secs(30);

impl FileStateStore {
    /// Uses (and creates) `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| io("create state directory", &dir, e))?;
        Ok(Self { dir })
    }

    fn path(&self, name: &str, ext: &str) -> Result<PathBuf> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            || name.starts_with('.')
        {
            return Err(Error::invalid_input(
                "key",
                format!(
                    "{name:?}: rotation state needs a name of letters, digits, '-', '_' and '.'"
                ),
            ));
        }
        Ok(self.dir.join(format!("{name}.{ext}")))
    }

    fn locked<T>(&self, name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let lock = self.path(name, "lock")?;
        let started = std::time::Instant::now();
        loop {
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&lock)
            {
                Ok(_) => break,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let stale = fs::metadata(&lock)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| SystemTime::now().duration_since(t).ok())
                        .is_some_and(|age| age > STALE_LOCK);
                    if stale {
                        let _ = fs::remove_file(&lock);
                    } else if started.elapsed() > STALE_LOCK * 2 {
                        return Err(Error::unavailable(
                            "rotation-state",
                            format!("{} is held by another process", lock.display()),
                            None,
                        ));
                    } else {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
                Err(e) => return Err(io("create lock file", &lock, e)),
            }
        }
        let result = f();
        let _ = fs::remove_file(&lock);
        result
    }

    fn read<T: for<'de> Deserialize<'de>>(&self, path: &Path) -> Result<Option<T>> {
        match fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                Error::integrity(
                    path.display().to_string(),
                    format!("rotation state file is not valid JSON: {e}"),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("read", path, e)),
        }
    }

    fn write_atomic<T: Serialize>(&self, path: &Path, value: &T) -> Result<()> {
        let tmp = path.with_extension("tmp");
        let bytes = serde_json::to_vec_pretty(value)
            .map_err(|e| Error::backend("rotation-state", e.to_string(), None))?;
        let mut f = fs::File::create(&tmp).map_err(|e| io("create", &tmp, e))?;
        f.write_all(&bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| io("write", &tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| io("rename", path, e))?;
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("fsync", &self.dir, e))
    }
}

fn io(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::unavailable(
        "rotation-state",
        format!("cannot {what} {}: {e}", path.display()),
        Some(Box::new(e)),
    )
}

impl StateStore for FileStateStore {
    fn load(&self, name: &str) -> Result<Option<KeyState>> {
        self.read(&self.path(name, "json")?)
    }

    fn save(&self, state: &mut KeyState) -> Result<bool> {
        let path = self.path(&state.name, "json")?;
        let name = state.name.clone();
        self.locked(&name, || {
            let stored = self
                .read::<KeyState>(&path)?
                .map(|s| s.revision)
                .unwrap_or(0);
            if stored != state.revision {
                return Ok(false);
            }
            let mut next = state.clone();
            next.revision += 1;
            self.write_atomic(&path, &next)?;
            state.revision = next.revision;
            Ok(true)
        })
    }

    fn acquire_lease(&self, name: &str, holder: &str, now_ms: u64, ttl: Duration) -> Result<bool> {
        let path = self.path(name, "lease")?;
        self.locked(name, || match self.read::<Lease>(&path)? {
            Some(l) if l.holder != holder && l.until_ms > now_ms => Ok(false),
            _ => {
                self.write_atomic(
                    &path,
                    &Lease {
                        holder: holder.to_owned(),
                        until_ms: now_ms.saturating_add(ttl_ms(ttl)),
                    },
                )?;
                Ok(true)
            }
        })
    }

    fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        let path = self.path(name, "lease")?;
        self.locked(name, || {
            if self
                .read::<Lease>(&path)?
                .is_some_and(|l| l.holder == holder)
            {
                fs::remove_file(&path).map_err(|e| io("remove", &path, e))?;
            }
            Ok(())
        })
    }
}
