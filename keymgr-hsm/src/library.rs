//! The PKCS#11 module: loaded and `C_Initialize`d once per process.
//!
//! - `C_Initialize` once per process and module: modules are kept in a process-wide
//!   registry and shared by every backend that names the same file; the last one to go
//!   calls `C_Finalize` (only if keymgr initialized the module).
//! - An epoch counts re-initializations and vanished tokens: sessions and object handles
//!   opened in an older epoch are stale and must not be closed (the module may hand out
//!   the same handle numbers again).
//! - Slot-level queries (`C_GetSlotList`, `C_GetTokenInfo`) and `C_OpenSession` go
//!   through this type; logging in is the [`Token`]'s business.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Weak};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::Session;
use cryptoki::slot::Slot;
use keymgr_core::Error;

use crate::config::{HSM_PKCS11_LIBRARY_PATH, TokenSelector};
use crate::session_pool::Failure;
use crate::token::Token;

/// Locks `m`, recovering the data from a poisoned lock (every value guarded here stays
/// consistent across a panic: caches and registries).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

static LIBRARIES: LazyLock<Mutex<HashMap<PathBuf, Weak<Library>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// One loaded and initialized PKCS#11 module, shared process-wide.
pub(crate) struct Library {
    path: PathBuf,
    ctx: Pkcs11,
    initialized_by_us: bool,
    /// Bumped when the module is re-initialized or a token vanished; sessions and
    /// object handles from an older epoch are discarded.
    epoch: AtomicU64,
    reinit: Mutex<()>,
    /// The tokens this process is logged in to, by slot id (one login per token).
    tokens: Mutex<HashMap<u64, Weak<Token>>>,
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Library")
            .field("path", &self.path)
            .field("epoch", &self.epoch())
            .finish_non_exhaustive()
    }
}

fn initialize(ctx: &Pkcs11) -> Result<bool, CkError> {
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) => Ok(true),
        // Another component of this process initialized the module: share it.
        Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => Ok(false),
        Err(e) => Err(e),
    }
}

impl Library {
    /// The shared, initialized module at `path`.
    pub(crate) fn get(path: &Path) -> Result<Arc<Library>, Failure> {
        let canonical = std::fs::canonicalize(path).map_err(|e| {
            Error::config(
                HSM_PKCS11_LIBRARY_PATH,
                "the path of a PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so",
                format!("{}: {e}", path.display()),
            )
        })?;
        let mut registry = lock(&LIBRARIES);
        loop {
            match registry.get(&canonical) {
                None => break,
                Some(weak) => match weak.upgrade() {
                    Some(lib) => return Ok(lib),
                    // The last user is dropping it and will C_Finalize: initializing
                    // again before that would leave us with a finalized module.
                    None => {
                        drop(registry);
                        std::thread::sleep(std::time::Duration::from_millis(1));
                        registry = lock(&LIBRARIES);
                    }
                },
            }
        }
        let ctx = Pkcs11::new(&canonical).map_err(|e| {
            Error::config(
                HSM_PKCS11_LIBRARY_PATH,
                "the path of a loadable PKCS#11 module",
                format!("{}: {e}", canonical.display()),
            )
        })?;
        let initialized_by_us = initialize(&ctx)?;
        let lib = Arc::new(Library {
            path: canonical.clone(),
            ctx,
            initialized_by_us,
            epoch: AtomicU64::new(0),
            reinit: Mutex::new(()),
            tokens: Mutex::new(HashMap::new()),
        });
        registry.insert(canonical, Arc::downgrade(&lib));
        Ok(lib)
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Everything opened before now is stale (token removed, module reset).
    pub(crate) fn invalidate(&self, observed: u64) {
        let _ =
            self.epoch
                .compare_exchange(observed, observed + 1, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// `C_Initialize` again after someone finalized the module behind our back.
    pub(crate) fn reinitialize(&self, observed: u64) -> Result<(), CkError> {
        let _guard = lock(&self.reinit);
        if self.epoch() != observed {
            return Ok(()); // another thread already recovered
        }
        initialize(&self.ctx)?;
        self.invalidate(observed);
        tracing::warn!(
            module = %self.path.display(),
            "PKCS#11 module was finalized underneath keymgr; re-initialized it"
        );
        Ok(())
    }

    /// The tokens this process is logged in to, by slot id; [`Token::get`] keeps it.
    pub(crate) fn tokens(&self) -> MutexGuard<'_, HashMap<u64, Weak<Token>>> {
        lock(&self.tokens)
    }

    /// `C_OpenSession` (read/write) on `slot`; the caller closes it explicitly, and
    /// only while the epoch it was opened in is current.
    pub(crate) fn open_rw_session(&self, slot: Slot) -> Result<Session, CkError> {
        self.ctx.open_rw_session_no_drop(slot)
    }

    /// `C_GetTokenInfo`: the label of the token in `slot`, trailing blanks removed.
    pub(crate) fn token_label(&self, slot: Slot) -> Result<String, CkError> {
        Ok(self.ctx.get_token_info(slot)?.label().trim_end().to_owned())
    }

    /// The slot holding the token labelled `label`, if any.
    pub(crate) fn find_slot_by_label(&self, label: &str) -> Result<Option<Slot>, CkError> {
        for slot in self.ctx.get_slots_with_token()? {
            match self.token_label(slot) {
                Ok(l) if l == label => return Ok(Some(slot)),
                Ok(_) => {}
                // A token that cannot be read right now is not ours to fail on.
                Err(CkError::Pkcs11(
                    RvError::TokenNotPresent | RvError::TokenNotRecognized | RvError::DeviceError,
                    _,
                )) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// The slot for `selector` (used at start-up).
    pub(crate) fn find_slot(&self, selector: &TokenSelector) -> Result<Option<Slot>, CkError> {
        match selector {
            TokenSelector::Label(label) => self.find_slot_by_label(label),
            TokenSelector::SlotId(id) | TokenSelector::SlotAndLabel(id, _) => {
                let slots = self.ctx.get_slots_with_token()?;
                Ok(slots.into_iter().find(|s| s.id() == *id))
            }
        }
    }

    /// Labels of all tokens present, for "not found" messages.
    pub(crate) fn token_labels(&self) -> Vec<String> {
        self.ctx
            .get_slots_with_token()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|s| {
                self.token_label(s)
                    .ok()
                    .map(|l| format!("{l:?} (slot {})", s.id()))
            })
            .collect()
    }
}

impl Drop for Library {
    fn drop(&mut self) {
        // Under the registry lock, so a new `get` for the same module cannot initialize
        // it between our last use and this finalize.
        let mut registry = lock(&LIBRARIES);
        if self.initialized_by_us
            && let Err(e) = self.ctx.clone().finalize()
        {
            tracing::debug!(module = %self.path.display(), "C_Finalize: {e}");
        }
        if registry
            .get(&self.path)
            .is_some_and(|w| w.strong_count() == 0)
        {
            registry.remove(&self.path);
        }
    }
}
