//! [`FileStateStore`]: one JSON file per key, shared by every process that rotates.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use keymgr_core::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::process::ProcessId;
use crate::store::{KeyState, LeaseInfo, LeaseOutcome, StateStore, decide_lease};

/// One JSON file per key in a directory (created 0700, files 0600), written atomically
/// (temp file, fsync, rename, fsync of the directory). Read-modify-write sections are
/// serialized across processes by a lock file created with `O_EXCL` that names its
/// process: a lock whose process is gone (killed mid-write) is broken at once, any other
/// lock after 30 s.
#[derive(Debug)]
pub struct FileStateStore {
    dir: PathBuf,
}

const STALE_LOCK: Duration = Duration::from_secs(30);
/// Mode of the state directory when this store creates it.
const DIR_MODE: u32 = 0o700;
/// Mode of every file this store writes.
const FILE_MODE: u32 = 0o600;

impl FileStateStore {
    /// Uses `dir`, creating it (and missing parents) mode 0700 whatever the umask.
    ///
    /// Files it writes (state, leases, locks) are 0600; a symbolic link in place of
    /// `dir` or of one of its files is refused, never followed.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(Error::invalid_input(
                    "KEYMGR_ROTATION_STATE_PATH",
                    format!(
                        "{} is a symbolic link; rotation state is never kept behind a link",
                        dir.display()
                    ),
                ));
            }
            Ok(m) if !m.is_dir() => {
                return Err(Error::invalid_input(
                    "KEYMGR_ROTATION_STATE_PATH",
                    format!("{} exists and is not a directory", dir.display()),
                ));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(DIR_MODE)
                    .create(&dir)
                    .map_err(|e| io("create state directory", &dir, e))?;
                // The umask may have removed bits; the mode we want is exact.
                fs::set_permissions(&dir, fs::Permissions::from_mode(DIR_MODE))
                    .map_err(|e| io("set the mode of", &dir, e))?;
            }
            Err(e) => return Err(io("inspect state directory", &dir, e)),
        }
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

    /// Whether the lock at `lock` was left by a dead process or is older than 30 s.
    fn lock_is_stale(lock: &Path) -> bool {
        let dead_owner = fs::read(lock)
            .ok()
            .and_then(|b| serde_json::from_slice::<ProcessId>(&b).ok())
            .is_some_and(|p| p.is_dead());
        dead_owner
            || fs::metadata(lock)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age > STALE_LOCK)
    }

    fn locked<T>(&self, name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let lock = self.path(name, "lock")?;
        let started = std::time::Instant::now();
        loop {
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(FILE_MODE)
                .custom_flags(libc_nofollow())
                .open(&lock)
            {
                Ok(mut file) => {
                    let _ = file.set_permissions(fs::Permissions::from_mode(FILE_MODE));
                    if let Some(me) = ProcessId::current()
                        && let Ok(bytes) = serde_json::to_vec(&me)
                    {
                        // Best effort: without it the lock is only broken by age.
                        let _ = file.write_all(&bytes);
                    }
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if Self::lock_is_stale(&lock) {
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
        match read_regular(path) {
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
        // A temp file left by a process killed mid-write is ours to replace; never
        // follow a symlink someone put in its place.
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("remove stale", &tmp, e)),
        }
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .custom_flags(libc_nofollow())
            .open(&tmp)
            .map_err(|e| io("create", &tmp, e))?;
        f.set_permissions(fs::Permissions::from_mode(FILE_MODE))
            .and_then(|()| f.write_all(&bytes))
            .and_then(|()| f.sync_all())
            .map_err(|e| io("write", &tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| io("rename", path, e))?;
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("fsync", &self.dir, e))
    }
}

const fn libc_nofollow() -> i32 {
    libc::O_NOFOLLOW
}

/// Reads a regular file without following a symbolic link in its last component.
fn read_regular(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "a symbolic link: rotation state never follows links it did not create",
                )
            } else {
                e
            }
        })?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn io(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::unavailable(
        "rotation-state",
        format!("cannot {what} {}: {e}", path.display()),
        Some(Box::new(e)),
    )
}

impl StateStore for FileStateStore {
    /// The saved state, checked ([`KeyState::check`]): a hand-edited file with a
    /// malformed key name or version is an `Integrity` error naming the file (`key`)
    /// and the field, not a panic later on.
    fn load(&self, name: &str) -> Result<Option<KeyState>> {
        let path = self.path(name, "json")?;
        let state: Option<KeyState> = self.read(&path)?;
        if let Some(s) = &state {
            s.check(name).map_err(|(field, reason)| {
                Error::integrity(
                    path.display().to_string(),
                    format!(
                        "rotation state file {}: field `{field}`: {reason}",
                        path.display()
                    ),
                )
            })?;
        }
        Ok(state)
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

    fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now_ms: u64,
        ttl: Duration,
    ) -> Result<LeaseOutcome> {
        let path = self.path(name, "lease")?;
        self.locked(name, || {
            let existing = self.read::<LeaseInfo>(&path)?;
            let (outcome, new) = decide_lease(existing, holder, now_ms, ttl);
            if let Some(l) = new {
                self.write_atomic(&path, &l)?;
            }
            Ok(outcome)
        })
    }

    fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        let path = self.path(name, "lease")?;
        self.locked(name, || {
            if self
                .read::<LeaseInfo>(&path)?
                .is_some_and(|l| l.holder == holder)
            {
                fs::remove_file(&path).map_err(|e| io("remove", &path, e))?;
            }
            Ok(())
        })
    }
}
