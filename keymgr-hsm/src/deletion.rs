//! Deleting a key version for good ([`KeyBackend::delete_version`]): only a version that
//! is already disabled, never the current one. This backend never deletes on its own:
//! keymgr-rotation's `Rotator` asks for each deletion (opt-in `HSM_KEEP_VERSIONS`) and
//! writes a `KEY_DELETED` audit entry for it.
//!
//! [`KeyBackend::delete_version`]: keymgr_core::KeyBackend::delete_version

use cryptoki::error::Error as CkError;
use cryptoki::session::Session;
use keymgr_core::{Error, KeyRef};

use crate::backend::Inner;
use crate::created;
use crate::error;
use crate::keys;
use crate::rotation::{current_key, explicit_label};
use crate::session_pool::Failure;

/// Destroys every object of the version labelled `label`: private key first (so that an
/// interrupted deletion leaves at most a public key, which resolution ignores), then the
/// public key, keymgr's marker and creation record.
fn destroy_label(s: &Session, label: &str) -> Result<usize, Failure> {
    let wrap = |e: CkError| Failure::Pkcs11(e, Some(label.to_owned()));
    let mut objects = keys::private_keys(s, label).map_err(wrap)?;
    objects.extend(keys::public_keys(s, label).map_err(wrap)?);
    objects.extend(keys::markers(s, label).map_err(wrap)?);
    objects.extend(created::records(s, label).map_err(wrap)?);
    for h in &objects {
        match s.destroy_object(*h) {
            Ok(()) => {}
            Err(e) if error::is_stale_handle(&e) => {} // gone already
            Err(e) => return Err(wrap(e)),
        }
    }
    Ok(objects.len())
}

/// Deletes the disabled, non-current version `key` names; `InvalidInput` (field `key`)
/// for an unversioned key, version `0` (the original label, made outside keymgr), the
/// current version or a version still enabled, `NotFound`
/// when no private key carries its label.
pub(crate) fn delete_version(inner: &Inner, s: &Session, key: &KeyRef) -> Result<(), Failure> {
    let label = explicit_label(inner, key, "delete_version")?;
    let base = inner.config.base_label(key.name());
    if label == base {
        return Err(Error::invalid_input(
            "key",
            format!(
                "{key} is the original key {label:?}, made outside keymgr: keymgr never \
                 deletes it; use the token's own tools"
            ),
        )
        .into());
    }
    if current_key(s, key.name(), base)?.is_some_and(|current| current.label == label) {
        return Err(Error::invalid_input(
            "key",
            format!(
                "{key} (label {label:?}) is the current version of {}: the current version \
                 is never deleted; rotate, let the overlap end and disable it first",
                key.name()
            ),
        )
        .into());
    }
    let Some(found) = keys::find(s, &key.to_string(), &label)? else {
        return Err(Error::not_found(
            key.to_string(),
            format!(
                "no private key labelled {label:?} on token {:?}",
                inner.pool.token().label()
            ),
        )
        .into());
    };
    if found.disabled.is_none() {
        return Err(Error::invalid_input(
            "key",
            format!(
                "{key} (label {label:?}) is still enabled and may sign: only a disabled \
                 version is deleted; disable it first"
            ),
        )
        .into());
    }
    let n = destroy_label(s, &label)?;
    inner.forget_label(&label);
    tracing::info!(key = %key, %label, objects = n, "deleted HSM key version");
    Ok(())
}
