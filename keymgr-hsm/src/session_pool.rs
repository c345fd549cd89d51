//! A bounded pool of logged-in sessions on one [`Token`].
//!
//! - A session must not be used by two threads at once: [`SessionPool`] hands each call
//!   its own session on a blocking thread (`tokio::task::spawn_blocking`), never on the
//!   async runtime's workers; a semaphore bounds concurrent calls to the pool size.
//! - Sessions and object handles go stale when the token is removed, the module is
//!   finalized behind our back or the user is logged out: the pool has the token
//!   recover (re-initialize, re-log in), reopens, and the caller retries once.
//! - Sessions are closed explicitly (`C_CloseSession`), and only while the epoch they
//!   were opened in is current: after a re-initialization the module may hand out the
//!   same handle numbers again, and closing a stale session must never close a new one.

use std::sync::{Arc, Mutex, RwLockReadGuard, RwLockWriteGuard};

use cryptoki::error::Error as CkError;
use cryptoki::session::Session;
use keymgr_core::Error;
use tokio::sync::Semaphore;

use crate::error::{self, BACKEND};
use crate::library::lock;
use crate::token::Token;

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
    Read(#[allow(dead_code)] RwLockReadGuard<'a, ()>),
    Write(#[allow(dead_code)] RwLockWriteGuard<'a, ()>),
}

struct Idle {
    session: Session,
    epoch: u64,
}

/// A bounded pool of logged-in sessions on one token.
pub(crate) struct SessionPool {
    token: Arc<Token>,
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

    /// The token the sessions are on.
    pub(crate) fn token(&self) -> &Token {
        &self.token
    }

    /// The most sessions open (and calls running) at once.
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// Sessions open and waiting for a call.
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
        let permit = self.permits.clone().acquire_owned().await.map_err(|e| {
            Failure::Other(Error::unavailable(
                BACKEND,
                "session pool closed",
                Some(Box::new(e)),
            ))
        })?;
        let pool = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            // Object changes exclude every other call on the token in this process
            // (see `Token::exclusive`).
            let _guard = match call {
                Call::Read => Guard::Read(pool.token.shared()),
                Call::Change | Call::ChangeOnce => Guard::Write(pool.token.exclusive()),
            };
            pool.run_blocking(op, !matches!(call, Call::ChangeOnce))
        })
        .await
        .map_err(|e| {
            Failure::Other(Error::backend(
                BACKEND,
                format!("PKCS#11 call panicked or was cancelled: {e}"),
                Some(Box::new(e)),
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
                    token = %self.token.label(),
                    code = %error::rv(&e).map(error::ckr_name).unwrap_or_default(),
                    "stale PKCS#11 session; re-opening{}",
                    if repeat { " and retrying once" } else { "" }
                );
                self.discard(session, epoch);
                if !repeat {
                    if let Err(e2) = self.token.recover(&e, epoch) {
                        tracing::debug!(token = %self.token.label(), "recovery failed: {e2}");
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
        let current = self.token.epoch();
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
        let session = self.token.open_session()?;
        Ok((session, current))
    }

    fn checkin_unless_stale<T>(&self, session: Session, epoch: u64, result: &Result<T, Failure>) {
        if let Err(Failure::Pkcs11(e, _)) = result
            && error::is_stale_session(e)
        {
            return self.discard(session, epoch);
        }
        if epoch == self.token.epoch() {
            lock(&self.idle).push(Idle { session, epoch });
        }
    }

    fn discard(&self, session: Session, epoch: u64) {
        if epoch == self.token.epoch() {
            let _ = session.close();
        }
    }
}

impl Drop for SessionPool {
    fn drop(&mut self) {
        let current = self.token.epoch();
        for s in lock(&self.idle).drain(..) {
            if s.epoch == current {
                let _ = s.session.close();
            }
        }
    }
}
