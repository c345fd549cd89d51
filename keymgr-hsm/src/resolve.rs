//! Key names → key pairs on the token, and the per-label cache.
//!
//! - An explicit version (`name@N`) is the label `<label>.vN` (`<label>` itself for
//!   version `0`); the unversioned name is the highest version whose key pair is
//!   complete (see [`rotation::current_key`]).
//! - Resolved key pairs (object handles, public key, disabled state) and the current
//!   version of each name are cached for [`HsmConfig::key_cache_ttl`](crate::HsmConfig)
//!   and only within the library epoch they were read in (handles go stale when the
//!   module is re-initialized).

use std::time::Instant;

use cryptoki::session::Session;
use keymgr_core::{Error, KeyRef};

use crate::backend::Inner;
use crate::keys::{self, FoundKey};
use crate::library::lock;
use crate::rotation;
use crate::session_pool::Failure;

/// A cached value and when (epoch, instant) it was read.
#[derive(Clone)]
pub(crate) struct Cached<T> {
    pub(crate) value: T,
    pub(crate) epoch: u64,
    pub(crate) at: Instant,
}

impl Inner {
    pub(crate) fn not_found(&self, key: &KeyRef, label: &str) -> Error {
        let configured = self
            .config
            .variable_for(key.name())
            .map(|v| format!(" (configured by {v})"))
            .unwrap_or_default();
        let versions = if key.version().is_none() {
            format!(" or {label:?}.v<N>")
        } else {
            String::new()
        };
        Error::not_found(
            key.to_string(),
            format!(
                "no private key labelled {label:?}{versions}{configured} on token {:?}",
                self.pool.token().label()
            ),
        )
    }

    /// `key` is not on the token, or the token itself is gone: a token that no longer
    /// answers `C_GetTokenInfo` with its label (SoftHSM2 answers `CKR_GENERAL_ERROR`
    /// once its token directory is removed) is [`Error::Unavailable`], which failover
    /// moves past; only a token that answers and lacks the key is [`Error::NotFound`].
    fn missing(&self, key: &KeyRef, label: &str) -> Error {
        let token = self.pool.token();
        let gone = |why: String| {
            Error::unavailable(
                crate::error::BACKEND,
                format!(
                    "token {:?} {why}; its keys cannot be looked up",
                    token.label()
                ),
                None,
            )
        };
        match token.label_now() {
            Ok(now) if now.trim() == token.label().trim() => self.not_found(key, label),
            Ok(now) => gone(format!("is no longer in its slot (the slot holds {now:?})")),
            Err(e) => gone(format!("no longer answers C_GetTokenInfo ({e})")),
        }
    }

    fn fresh<T>(&self, c: &Cached<T>, epoch: u64) -> bool {
        c.epoch == epoch && c.at.elapsed() < self.config.key_cache_ttl
    }

    /// The key pair behind `key`, from the cache or the token: an explicit version's
    /// label, or the current version — the highest version whose key pair is complete
    /// (see [`rotation::current_key`]).
    pub(crate) fn resolve(
        &self,
        s: &Session,
        epoch: u64,
        key: &KeyRef,
    ) -> std::result::Result<FoundKey, Failure> {
        let base = self.config.base_label(key.name());
        let label = match key.version() {
            Some(v) => Some(rotation::versioned_label(base, v)?),
            None => lock(&self.current)
                .get(key.name())
                .filter(|c| self.fresh(c, epoch))
                .map(|c| c.value.clone()),
        };
        if let Some(label) = &label
            && let Some(c) = lock(&self.keys).get(label)
            && self.fresh(c, epoch)
        {
            return Ok(c.value.clone());
        }
        let name = key.to_string();
        let found = match &label {
            Some(label) if key.version().is_some() => match keys::find(s, &name, label)? {
                Some(k) => k,
                None => {
                    self.pool.token().ensure_login(true)?;
                    keys::find(s, &name, label)?.ok_or_else(|| self.missing(key, label))?
                }
            },
            _ => match rotation::current_key(s, key.name(), base)? {
                Some(k) => k,
                None => {
                    // Private objects are invisible when logged out behind our back.
                    self.pool.token().ensure_login(true)?;
                    rotation::current_key(s, key.name(), base)?
                        .ok_or_else(|| self.missing(key, base))?
                }
            },
        };
        if key.version().is_none() {
            lock(&self.current).insert(
                key.name().to_owned(),
                Cached {
                    value: found.label.clone(),
                    epoch,
                    at: Instant::now(),
                },
            );
        }
        lock(&self.keys).insert(
            found.label.clone(),
            Cached {
                value: found.clone(),
                epoch,
                at: Instant::now(),
            },
        );
        Ok(found)
    }

    pub(crate) fn forget_label(&self, label: &str) {
        lock(&self.keys).remove(label);
    }

    pub(crate) fn forget_name(&self, name: &str) {
        let base = self.config.base_label(name).to_owned();
        lock(&self.current).remove(name);
        lock(&self.keys).retain(|label, _| rotation::parse_version(&base, label).is_none());
    }
}
