//! The PKCS#11 module, the logged-in token and the session pool.
//!
//! PKCS#11 rules this module follows:
//! - `C_Initialize` once per process and module: modules are kept in a process-wide
//!   registry and shared by every backend that names the same file; the last one to go
//!   calls `C_Finalize` (only if keymgr initialized the module).
//! - Login state belongs to the application, per token: one [`Token`] per slot and
//!   process logs in once, on an "anchor" session that stays open so the login survives
//!   pool sessions coming and going.
//! - A session must not be used by two threads at once: [`SessionPool`] hands each call
//!   its own session on a blocking thread (`tokio::task::spawn_blocking`), never on the
//!   async runtime's workers; a semaphore bounds concurrent calls to the pool size.
//! - Sessions and object handles go stale when the token is removed, the module is
//!   finalized behind our back or the user is logged out: the pool re-initializes,
//!   re-logs in and reopens, and the caller retries once.
//! - Sessions are closed explicitly, and only while the epoch they were opened in is
//!   current: after a re-initialization the module may hand out the same handle numbers
//!   again, and closing a stale session must never close a new one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, RwLock, Weak};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use keymgr_core::Error;
use tokio::sync::Semaphore;

use crate::config::{HSM_PKCS11_LIBRARY_PATH, Pin};
use crate::error::{self, BACKEND};

/// A failure inside a pooled call: a PKCS#11 code (mapped by the caller, who knows the
/// key) or an already mapped error.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The module returned a `CKR_*` code; `label` names the object involved, if any.
    Pkcs11(CkError, Option<String>),
    /// Anything else.
    Other(Error),
}

impl From<CkError> for Failure {
    fn from(e: CkError) -> Self {
        Failure::Pkcs11(e, None)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Other(e)
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

static LIBRARIES: LazyLock<Mutex<HashMap<PathBuf, Weak<Library>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// One loaded and initialized PKCS#11 module, shared process-wide.
pub(crate) struct Library {
    path: PathBuf,
    pub(crate) ctx: Pkcs11,
    initialized_by_us: bool,
    /// Bumped when the module is re-initialized or a token vanished; sessions and
    /// object handles from an older epoch are discarded.
    epoch: AtomicU64,
    reinit: Mutex<()>,
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
    fn invalidate(&self, observed: u64) {
        let _ =
            self.epoch
                .compare_exchange(observed, observed + 1, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// `C_Initialize` again after someone finalized the module behind our back.
    fn reinitialize(&self, observed: u64) -> Result<(), CkError> {
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

/// The label of the token in `slot`, trailing blanks removed.
pub(crate) fn token_label(lib: &Library, slot: Slot) -> Result<String, CkError> {
    Ok(lib.ctx.get_token_info(slot)?.label().trim_end().to_owned())
}

struct LoginState {
    anchor: Option<Session>,
    epoch: u64,
}

/// A token this process is logged in to (once, whatever the number of backends).
pub(crate) struct Token {
    pub(crate) lib: Arc<Library>,
    slot: AtomicU64,
    /// The token's label, for messages and for finding the slot again.
    pub(crate) label: String,
    pin: Pin,
    login: Mutex<LoginState>,
    /// Held shared by reads and signatures, exclusively by object changes.
    changes: RwLock<()>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("label", &self.label)
            .field("slot", &self.slot_id())
            .field("pin", &self.pin)
            .finish_non_exhaustive()
    }
}

impl Token {
    /// The logged-in token in `slot`, sharing this process's login if there is one.
    ///
    /// PKCS#11 login state is per process and token: a second login with another PIN
    /// would be answered `CKR_USER_ALREADY_LOGGED_IN` whatever the PIN, so a PIN that
    /// differs from the one this process logged in with is refused here.
    /// `label` is the token's label when the caller already knows it (selected by label).
    pub(crate) fn get(
        lib: &Arc<Library>,
        slot: Slot,
        pin: &Pin,
        label: Option<&str>,
    ) -> Result<Arc<Token>, Failure> {
        let mut tokens = lock(&lib.tokens);
        if let Some(token) = tokens.get(&slot.id()).and_then(Weak::upgrade) {
            if !token.pin.matches(pin) {
                return Err(Failure::Other(Error::access_denied(
                    format!("token {:?}", token.label),
                    "HSM PIN rejected: this process is already logged in to the token \
                     with a different PIN",
                )));
            }
            return Ok(token);
        }
        let label = match label {
            Some(l) => l.to_owned(),
            None => match token_label(lib, slot)? {
                // Only used in messages when the token was selected by slot id.
                l if l.is_empty() => format!("(unlabelled token in slot {})", slot.id()),
                l => l,
            },
        };
        let token = Arc::new(Token {
            lib: lib.clone(),
            slot: AtomicU64::new(slot.id()),
            label,
            pin: pin.clone(),
            login: Mutex::new(LoginState {
                anchor: None,
                epoch: lib.epoch(),
            }),
            changes: RwLock::new(()),
        });
        token.ensure_login(false)?;
        tokens.insert(slot.id(), Arc::downgrade(&token));
        Ok(token)
    }

    pub(crate) fn slot_id(&self) -> u64 {
        self.slot.load(Ordering::SeqCst)
    }

    fn slot(&self) -> Result<Slot, CkError> {
        Slot::try_from(self.slot_id())
    }

    /// Makes sure this process is logged in. With `verify`, asks the token (one
    /// `C_GetSessionInfo`) instead of trusting our own bookkeeping.
    pub(crate) fn ensure_login(&self, verify: bool) -> Result<(), CkError> {
        let mut state = lock(&self.login);
        let epoch = self.lib.epoch();
        if let Some(anchor) = &state.anchor
            && state.epoch == epoch
        {
            if !verify {
                return Ok(());
            }
            if let Ok(info) = anchor.get_session_info()
                && matches!(
                    info.session_state(),
                    SessionState::RwUser | SessionState::RoUser
                )
            {
                return Ok(());
            }
        }
        if let Some(old) = state.anchor.take()
            && state.epoch == epoch
        {
            // Same epoch, only logged out: the handle is still ours to close.
            let _ = old.close();
        }
        let session = self.open_session_raw()?;
        let pin = AuthPin::from(self.pin.expose());
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(e) => return Err(e),
        }
        state.anchor = Some(session);
        state.epoch = epoch;
        Ok(())
    }

    /// A new read/write session; the caller closes it (see the module docs).
    fn open_session_raw(&self) -> Result<Session, CkError> {
        match self.lib.ctx.open_rw_session_no_drop(self.slot()?) {
            Err(CkError::Pkcs11(RvError::SlotIdInvalid, f)) => {
                // Some modules renumber slots after re-initialization: find ours by label.
                let slot = find_slot_by_label(&self.lib, &self.label)?
                    .ok_or(CkError::Pkcs11(RvError::TokenNotPresent, f))?;
                self.slot.store(slot.id(), Ordering::SeqCst);
                self.lib.ctx.open_rw_session_no_drop(slot)
            }
            other => other,
        }
    }

    /// Recovers from a stale session or login so the caller can retry once.
    fn recover(&self, e: &CkError, observed_epoch: u64) -> Result<(), CkError> {
        match error::rv(e) {
            Some(RvError::CryptokiNotInitialized) => self.lib.reinitialize(observed_epoch)?,
            Some(RvError::DeviceRemoved | RvError::TokenNotPresent) => {
                self.lib.invalidate(observed_epoch)
            }
            _ => {}
        }
        self.ensure_login(true)
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        let mut state = lock(&self.login);
        if let Some(anchor) = state.anchor.take()
            && state.epoch == self.lib.epoch()
            && let Err(e) = anchor.close()
        {
            tracing::debug!(token = %self.label, "closing the login session: {e}");
        }
    }
}

/// The slot holding the token labelled `label`, if any.
pub(crate) fn find_slot_by_label(lib: &Library, label: &str) -> Result<Option<Slot>, CkError> {
    for slot in lib.ctx.get_slots_with_token()? {
        match token_label(lib, slot) {
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

/// Labels of all tokens present, for "not found" messages.
pub(crate) fn token_labels(lib: &Library) -> Vec<String> {
    lib.ctx
        .get_slots_with_token()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|s| {
            token_label(lib, s)
                .ok()
                .map(|l| format!("{l:?} (slot {})", s.id()))
        })
        .collect()
}

/// What a pooled call does to the token's objects.
#[derive(Debug, Clone, Copy)]
enum Call {
    /// Reads attributes, searches, signs: may be repeated after recovery.
    Read,
    /// Changes objects idempotently (e.g. `CKA_SIGN=false`).
    Change,
    /// Creates or destroys objects: never repeated.
    ChangeOnce,
}

enum Guard<'a> {
    Read(#[allow(dead_code)] std::sync::RwLockReadGuard<'a, ()>),
    Write(#[allow(dead_code)] std::sync::RwLockWriteGuard<'a, ()>),
}

struct Idle {
    session: Session,
    epoch: u64,
}

/// A bounded pool of logged-in sessions on one token.
pub(crate) struct SessionPool {
    pub(crate) token: Arc<Token>,
    idle: Mutex<Vec<Idle>>,
    permits: Arc<Semaphore>,
    size: usize,
}

impl std::fmt::Debug for SessionPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionPool")
            .field("token", &self.token)
            .field("size", &self.size)
            .field("idle", &lock(&self.idle).len())
            .finish()
    }
}

impl SessionPool {
    pub(crate) fn new(token: Arc<Token>, size: usize) -> Self {
        let size = size.max(1);
        Self {
            token,
            idle: Mutex::new(Vec::with_capacity(size)),
            permits: Arc::new(Semaphore::new(size)),
            size,
        }
    }

    pub(crate) fn size(&self) -> usize {
        self.size
    }

    pub(crate) fn idle_sessions(&self) -> usize {
        lock(&self.idle).len()
    }

    /// Runs `op` (which only reads or signs) with a pooled session on the blocking
    /// thread pool. If the session or login went stale, recovers (re-initialize,
    /// re-login, new session) and runs `op` once more.
    pub(crate) async fn run<T, F>(self: &Arc<Self>, op: F) -> Result<T, Failure>
    where
        T: Send + 'static,
        F: FnMut(&Session, u64) -> Result<T, Failure> + Send + 'static,
    {
        self.run_with(op, Call::Read).await
    }

    /// Like [`run`](Self::run) for an idempotent change to token objects.
    pub(crate) async fn change<T, F>(self: &Arc<Self>, op: F) -> Result<T, Failure>
    where
        T: Send + 'static,
        F: FnMut(&Session, u64) -> Result<T, Failure> + Send + 'static,
    {
        self.run_with(op, Call::Change).await
    }

    /// Like [`change`](Self::change) for changes that must not run twice (creating or
    /// deleting objects): after a stale session it recovers for the next call and
    /// returns the (retryable) error instead of repeating `op`.
    pub(crate) async fn change_once<T, F>(self: &Arc<Self>, op: F) -> Result<T, Failure>
    where
        T: Send + 'static,
        F: FnMut(&Session, u64) -> Result<T, Failure> + Send + 'static,
    {
        self.run_with(op, Call::ChangeOnce).await
    }

    async fn run_with<T, F>(self: &Arc<Self>, op: F, call: Call) -> Result<T, Failure>
    where
        T: Send + 'static,
        F: FnMut(&Session, u64) -> Result<T, Failure> + Send + 'static,
    {
        // Waiting for a permit happens here, on the async side, so queued calls hold
        // no blocking thread.
        let permit = self.permits.clone().acquire_owned().await.map_err(|_| {
            Failure::Other(Error::unavailable(BACKEND, "session pool closed", None))
        })?;
        let pool = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            // Object changes exclude every other call on the token in this process:
            // modules differ in how well they cope otherwise (SoftHSM2 2.6 answers
            // CKR_GENERAL_ERROR to concurrent C_GenerateKeyPair calls, and object
            // searches that overlap a change can miss objects). Changes are rare.
            let _guard = match call {
                Call::Read => {
                    Guard::Read(pool.token.changes.read().unwrap_or_else(|p| p.into_inner()))
                }
                Call::Change | Call::ChangeOnce => Guard::Write(
                    pool.token
                        .changes
                        .write()
                        .unwrap_or_else(|p| p.into_inner()),
                ),
            };
            pool.run_blocking(op, !matches!(call, Call::ChangeOnce))
        })
        .await
        .map_err(|e| {
            Failure::Other(Error::backend(
                BACKEND,
                format!("PKCS#11 call panicked or was cancelled: {e}"),
                None,
            ))
        })?
    }

    fn run_blocking<T, F>(&self, mut op: F, repeat: bool) -> Result<T, Failure>
    where
        F: FnMut(&Session, u64) -> Result<T, Failure>,
    {
        let (session, epoch) = self.checkout()?;
        match op(&session, epoch) {
            Err(Failure::Pkcs11(e, label)) if error::is_stale_session(&e) => {
                tracing::info!(
                    token = %self.token.label,
                    code = %error::rv(&e).map(error::ckr_name).unwrap_or_default(),
                    "stale PKCS#11 session; re-opening{}",
                    if repeat { " and retrying once" } else { "" }
                );
                self.discard(session, epoch);
                if !repeat {
                    if let Err(e2) = self.token.recover(&e, epoch) {
                        tracing::debug!(token = %self.token.label, "recovery failed: {e2}");
                    }
                    return Err(Failure::Pkcs11(e, label));
                }
                self.token
                    .recover(&e, epoch)
                    .map_err(|e2| Failure::Pkcs11(e2, label))?;
                let (session, epoch) = self.checkout()?;
                let result = op(&session, epoch);
                self.checkin_unless_stale(session, epoch, &result);
                result
            }
            result => {
                self.checkin_unless_stale(session, epoch, &result);
                result
            }
        }
    }

    fn checkout(&self) -> Result<(Session, u64), Failure> {
        let current = self.token.lib.epoch();
        {
            let mut idle = lock(&self.idle);
            while let Some(s) = idle.pop() {
                if s.epoch == current {
                    return Ok((s.session, s.epoch));
                }
                // Stale: forgotten without C_CloseSession (see the module docs).
            }
        }
        self.token.ensure_login(false)?;
        let session = self.token.open_session_raw()?;
        Ok((session, current))
    }

    fn checkin_unless_stale<T>(&self, session: Session, epoch: u64, result: &Result<T, Failure>) {
        if let Err(Failure::Pkcs11(e, _)) = result
            && error::is_stale_session(e)
        {
            return self.discard(session, epoch);
        }
        if epoch == self.token.lib.epoch() {
            lock(&self.idle).push(Idle { session, epoch });
        }
    }

    fn discard(&self, session: Session, epoch: u64) {
        if epoch == self.token.lib.epoch() {
            let _ = session.close();
        }
    }
}

impl Drop for SessionPool {
    fn drop(&mut self) {
        let current = self.token.lib.epoch();
        for s in lock(&self.idle).drain(..) {
            if s.epoch == current {
                let _ = s.session.close();
            }
        }
    }
}

/// Finds the slot for `selector` (used at start-up).
pub(crate) fn find_slot(
    lib: &Library,
    selector: &crate::config::TokenSelector,
) -> Result<Option<Slot>, CkError> {
    use crate::config::TokenSelector;
    match selector {
        TokenSelector::Label(label) => find_slot_by_label(lib, label),
        TokenSelector::SlotId(id) | TokenSelector::SlotAndLabel(id, _) => {
            let slots = lib.ctx.get_slots_with_token()?;
            Ok(slots.into_iter().find(|s| s.id() == *id))
        }
    }
}
