//! A token this process is logged in to.
//!
//! - Login state belongs to the application, per token: one [`Token`] per slot and
//!   process logs in once (`C_Login`), on an "anchor" session that stays open so the
//!   login survives pool sessions coming and going.
//! - A second login with another PIN would be answered `CKR_USER_ALREADY_LOGGED_IN`
//!   whatever the PIN, so a PIN that differs from the one this process logged in with is
//!   refused.
//! - Object changes (create, destroy, set attributes) exclude every other call on the
//!   token in this process ([`Token::exclusive`]); reads and signatures share it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use keymgr_core::Error;

use crate::config::Pin;
use crate::error;
use crate::library::{Library, lock};
use crate::session_pool::Failure;

struct LoginState {
    anchor: Option<Session>,
    epoch: u64,
}

/// A token this process is logged in to (once, whatever the number of backends).
pub(crate) struct Token {
    lib: Arc<Library>,
    slot: AtomicU64,
    /// The token's label, for messages and for finding the slot again.
    label: String,
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
        let mut tokens = lib.tokens();
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
            None => match lib.token_label(slot)? {
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

    /// The token's label with trailing blanks removed. A token without a label is named
    /// by its slot for messages: `(unlabelled token in slot N)`.
    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    /// The library's current epoch (see [`Library::epoch`]).
    pub(crate) fn epoch(&self) -> u64 {
        self.lib.epoch()
    }

    /// Shared access for reads and signatures.
    pub(crate) fn shared(&self) -> RwLockReadGuard<'_, ()> {
        self.changes.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Exclusive access for object changes: modules differ in how well they cope with
    /// concurrent changes (SoftHSM2 2.6 answers `CKR_GENERAL_ERROR` to concurrent
    /// `C_GenerateKeyPair` calls, and object searches that overlap a change can miss
    /// objects). Changes are rare.
    pub(crate) fn exclusive(&self) -> RwLockWriteGuard<'_, ()> {
        self.changes.write().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn slot_id(&self) -> u64 {
        self.slot.load(Ordering::SeqCst)
    }

    fn slot(&self) -> Result<Slot, CkError> {
        Slot::try_from(self.slot_id())
    }

    /// `C_GetTokenInfo` on our slot: the label of the token there now.
    pub(crate) fn label_now(&self) -> Result<String, CkError> {
        self.lib.token_label(self.slot()?)
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
        let session = self.open_session()?;
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
    pub(crate) fn open_session(&self) -> Result<Session, CkError> {
        match self.lib.open_rw_session(self.slot()?) {
            Err(CkError::Pkcs11(RvError::SlotIdInvalid, f)) => {
                // Some modules renumber slots after re-initialization: find ours by label.
                let slot = self
                    .lib
                    .find_slot_by_label(&self.label)?
                    .ok_or(CkError::Pkcs11(RvError::TokenNotPresent, f))?;
                self.slot.store(slot.id(), Ordering::SeqCst);
                self.lib.open_rw_session(slot)
            }
            other => other,
        }
    }

    /// Recovers from a stale session or login so the caller can retry once.
    pub(crate) fn recover(&self, e: &CkError, observed_epoch: u64) -> Result<(), CkError> {
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
