//! Deleting key versions for good: opt-in pruning after a rotation
//! (`HSM_KEEP_VERSIONS`) and [`HsmBackend::delete_version`](crate::HsmBackend::delete_version).
//! Rotation itself never deletes anything.

use cryptoki::error::Error as CkError;
use cryptoki::session::Session;
use keymgr_core::{Error, KeyRef};

use crate::backend::Inner;
use crate::error;
use crate::keys;
use crate::rotation::{explicit_label, list_labels};
use crate::session_pool::Failure;

/// Opt-in deletion (`keep_versions` configured): deletes versions older than the newest
/// `keep` that are already disabled, with a warning each. Enabled versions (still in
/// their overlap, or enabled outside keymgr) and version 0 (the original key, made
/// outside keymgr) are never deleted.
pub(crate) fn prune(
    inner: &Inner,
    s: &Session,
    name: &str,
    base: &str,
    keep: usize,
) -> Result<(), Failure> {
    let made_here: Vec<(u32, String)> = list_labels(s, base)?
        .into_iter()
        .filter(|(n, _)| *n != 0)
        .collect();
    let excess = made_here.len().saturating_sub(keep);
    for (n, label) in made_here.iter().take(excess) {
        let disabled = keys::find(s, &format!("{name}@{n}"), label)
            .ok()
            .flatten()
            .is_some_and(|k| k.disabled.is_some());
        if !disabled {
            continue;
        }
        destroy_label(s, label)?;
        inner.forget_label(label);
        tracing::warn!(
            event = "key_version_deleted",
            key = name,
            %label,
            version = n,
            keep,
            "deleted disabled HSM key version {label:?} of {name}: HSM_KEEP_VERSIONS={keep} keeps only the newest {keep} versions"
        );
    }
    Ok(())
}

fn destroy_label(s: &Session, label: &str) -> Result<usize, Failure> {
    let wrap = |e: CkError| Failure::Pkcs11(e, Some(label.to_owned()));
    let mut objects = keys::private_keys(s, label).map_err(wrap)?;
    objects.extend(keys::public_keys(s, label).map_err(wrap)?);
    objects.extend(keys::markers(s, label).map_err(wrap)?);
    for h in &objects {
        match s.destroy_object(*h) {
            Ok(()) => {}
            Err(e) if error::is_stale_handle(&e) => {} // gone already
            Err(e) => return Err(wrap(e)),
        }
    }
    Ok(objects.len())
}

pub(crate) fn delete_version(inner: &Inner, s: &Session, key: &KeyRef) -> Result<(), Failure> {
    let label = explicit_label(inner, key, "delete_version")?;
    if keys::private_keys(s, &label)
        .map_err(|e| Failure::Pkcs11(e, Some(label.clone())))?
        .is_empty()
    {
        return Err(Error::not_found(
            key.to_string(),
            format!(
                "no private key labelled {label:?} on token {:?}",
                inner.pool.token().label()
            ),
        )
        .into());
    }
    let n = destroy_label(s, &label)?;
    inner.forget_label(&label);
    tracing::warn!(event = "key_version_deleted", key = %key, %label, objects = n, "deleted HSM key version");
    Ok(())
}
