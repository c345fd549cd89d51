//! Key versions on a PKCS#11 token.
//!
//! # Label scheme
//!
//! A logical key with base label `L` (its configured label, e.g. `evm-settlement`) has
//! these versions:
//!
//! | version | `CKA_LABEL` | made by |
//! |---|---|---|
//! | `0` | `L` | anyone (pkcs11-tool, the vendor's tools): the original key |
//! | `1`, `2`, ... | `L.v1`, `L.v2`, ... | [`KeyBackend::create_version`](keymgr_core::KeyBackend::create_version), [`HsmBackend::create_key`](crate::HsmBackend::create_key) |
//!
//! The unversioned name resolves to the highest version whose key pair is complete (a
//! private key with its public key object). Version numbers are decimal without leading
//! zeros and are allocated above every object that carries a versioned label — private
//! key, public key or anything else — so the public half of a pair whose generation was
//! killed (`C_GenerateKeyPair` interrupted after the public key object was written) is
//! never reused as a label; such orphans are ignored when resolving.
//!
//! Old versions are disabled, never deleted, by this module. Deleting is a separate
//! operation ([`KeyBackend::delete_version`](keymgr_core::KeyBackend::delete_version))
//! that only keymgr-rotation's `Rotator` drives, audited, when the operator opted in
//! (`HSM_KEEP_VERSIONS`). Each version keymgr makes carries its creation time in a
//! private `CKO_DATA` object with `CKA_APPLICATION` `keymgr`, `CKA_LABEL`
//! `keymgr.created:<version label>` and `CKA_VALUE` the milliseconds since the Unix epoch
//! (decimal ASCII); `CKA_START_DATE` is a date without a time of day, too coarse to count
//! an overlap from.
//!
//! Disabling sets `CKA_SIGN=false` on the private key; a token that refuses that change
//! gets a marker instead: a private token `CKO_DATA` object with `CKA_APPLICATION`
//! `keymgr` and `CKA_LABEL` `keymgr.disabled:<version label>`, which this backend honours.

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use keymgr_core::{Error, KeyAlgorithm, KeyRef, KeyVersion, VersionState};
use rand_core::RngCore as _;

use crate::backend::Inner;
use crate::created;
use crate::error::{self, BACKEND};
use crate::keys::{self, MARKER_APPLICATION, MARKER_PREFIX};
use crate::session_pool::Failure;

/// The version number `label` has under `base`, if it is one of its versions.
pub(crate) fn parse_version(base: &str, label: &str) -> Option<u32> {
    if label == base {
        return Some(0);
    }
    let digits = label.strip_prefix(base)?.strip_prefix(".v")?;
    if digits.is_empty() || digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The label of version `version` (as the caller spelled it) of `base`.
pub(crate) fn versioned_label(base: &str, version: &str) -> Result<String, Error> {
    let canonical = version == "0"
        || (!version.starts_with('0') && version.bytes().all(|b| b.is_ascii_digit()));
    match version.parse::<u32>() {
        Ok(n) if canonical => Ok(label_for(base, n)),
        _ => Err(Error::invalid_input(
            "version",
            format!(
                "{version:?} is not an HSM key version: versions are numbers without leading \
                 zeros (0 = the original label {base:?}, 1 = {:?}, 2 = {:?}, ...)",
                label_for(base, 1),
                label_for(base, 2)
            ),
        )),
    }
}

fn label_for(base: &str, n: u32) -> String {
    if n == 0 {
        base.to_owned()
    } else {
        format!("{base}.v{n}")
    }
}

/// `(version, label)` of every private key that is a version of `base`, oldest first.
pub(crate) fn list_labels(s: &Session, base: &str) -> Result<Vec<(u32, String)>, Failure> {
    let wrap = |e: CkError| Failure::Pkcs11(e, Some(base.to_owned()));
    let handles = s
        .find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])
        .map_err(wrap)?;
    let mut versions = Vec::new();
    for h in handles {
        let attrs = match s.get_attributes(h, &[AttributeType::Label]) {
            Ok(a) => a,
            // Deleted by someone else between the search and now.
            Err(e) if error::is_stale_handle(&e) => continue,
            Err(e) => return Err(wrap(e)),
        };
        for a in attrs {
            if let Attribute::Label(bytes) = a
                && let Ok(label) = String::from_utf8(bytes)
                && let Some(n) = parse_version(base, &label)
            {
                versions.push((n, label));
            }
        }
    }
    versions.sort();
    versions.dedup();
    Ok(versions)
}

/// The highest version number any object on the token carries under `base` (private
/// key, public key, data object), or `None`.
pub(crate) fn highest_allocated(s: &Session, base: &str) -> Result<Option<u32>, Failure> {
    let wrap = |e: CkError| Failure::Pkcs11(e, Some(base.to_owned()));
    let mut highest = None;
    for h in s.find_objects(&[]).map_err(wrap)? {
        let attrs = match s.get_attributes(h, &[AttributeType::Label]) {
            Ok(a) => a,
            Err(e) if error::is_stale_handle(&e) => continue,
            // Objects without a readable label cannot carry a version.
            Err(_) => continue,
        };
        for a in attrs {
            if let Attribute::Label(bytes) = a
                && let Ok(label) = String::from_utf8(bytes)
                && let Some(n) = parse_version(base, &label)
            {
                highest = highest.max(Some(n));
            }
        }
    }
    Ok(highest)
}

/// The current version of `name`: the highest version whose private key exists and has
/// its public key object. A version whose public key is missing (an interrupted
/// generation on a module that writes the private half first) is skipped with a warning.
/// `Ok(None)` when no version has a private key.
pub(crate) fn current_key(
    s: &Session,
    name: &str,
    base: &str,
) -> Result<Option<keys::FoundKey>, Failure> {
    for (n, label) in list_labels(s, base)?.into_iter().rev() {
        let key = KeyRef::versioned(name, n.to_string()).to_string();
        match keys::find(s, &key, &label) {
            Ok(Some(found)) => return Ok(Some(found)),
            Ok(None) => continue,
            Err(Failure::Other(e)) if e.kind() == keymgr_core::ErrorKind::NotFound => {
                tracing::warn!(key = name, %label, "skipping an incomplete key pair: {e}");
            }
            Err(f) => return Err(f),
        }
    }
    Ok(None)
}

fn not_found(inner: &Inner, name: &str, base: &str) -> Error {
    Error::not_found(
        name,
        format!(
            "no private key labelled {base:?} or {base:?}.v<N> on token {:?}",
            inner.pool.token().label()
        ),
    )
}

pub(crate) fn list_versions(
    inner: &Inner,
    s: &Session,
    name: &str,
) -> Result<Vec<KeyVersion>, Failure> {
    let base = inner.config.base_label(name).to_owned();
    let mut labels = list_labels(s, &base)?;
    if labels.is_empty() {
        inner.pool.token().ensure_login(true)?;
        labels = list_labels(s, &base)?;
    }
    if labels.is_empty() {
        return Err(not_found(inner, name, &base).into());
    }
    let mut out = Vec::with_capacity(labels.len());
    for (n, label) in labels {
        let key = KeyRef::versioned(name, n.to_string());
        let found = match keys::find(s, &key.to_string(), &label) {
            Ok(Some(found)) => found,
            // Deleted meanwhile, or half a key pair: not a usable version.
            Ok(None) => continue,
            Err(Failure::Other(e)) if e.kind() == keymgr_core::ErrorKind::NotFound => continue,
            Err(f) => return Err(f),
        };
        let created_at_ms =
            created::read(s, &label).map_err(|e| Failure::Pkcs11(e, Some(label.clone())))?;
        out.push(KeyVersion {
            key,
            backend_id: label,
            algorithm: found.algorithm(),
            state: if found.disabled.is_some() {
                VersionState::Disabled
            } else {
                VersionState::Enabled
            },
            created_at_ms,
            current: false,
        });
    }
    match out.last_mut() {
        Some(last) => last.current = true,
        None => return Err(not_found(inner, name, &base).into()),
    }
    Ok(out)
}

/// `C_GenerateKeyPair` under `label`: token objects, private key private, sensitive,
/// non-extractable and able to sign; both halves share a random `CKA_ID`. The first of
/// `params` the token accepts is used.
fn generate(
    s: &Session,
    algorithm: KeyAlgorithm,
    params: &[Vec<u8>],
    label: &str,
) -> Result<(ObjectHandle, ObjectHandle), CkError> {
    let mechanism = match algorithm {
        KeyAlgorithm::Secp256k1 => Mechanism::EccKeyPairGen,
        _ => Mechanism::EccEdwardsKeyPairGen,
    };
    let mut id = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut id);
    let mut last = None;
    for p in params {
        let public = [
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::EcParams(p.clone()),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.to_vec()),
        ];
        let private = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.to_vec()),
        ];
        match s.generate_key_pair(&mechanism, &public, &private) {
            Ok(pair) => return Ok(pair),
            Err(
                e @ CkError::Pkcs11(
                    RvError::AttributeValueInvalid
                    | RvError::CurveNotSupported
                    | RvError::DomainParamsInvalid
                    | RvError::TemplateInconsistent,
                    _,
                ),
            ) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or(CkError::InvalidValue))
}

/// Generates a pair under `label` and checks that nobody else did at the same moment.
fn generate_unique(
    s: &Session,
    key: &str,
    algorithm: KeyAlgorithm,
    params: &[Vec<u8>],
    label: &str,
) -> Result<keys::FoundKey, Failure> {
    let wrap = |e: CkError| Failure::Pkcs11(e, Some(label.to_owned()));
    let (public, private) = generate(s, algorithm, params, label).map_err(wrap)?;
    let privs = keys::private_keys(s, label).map_err(wrap)?;
    if privs.len() > 1 {
        for h in [private, public] {
            if let Err(e) = s.destroy_object(h) {
                tracing::warn!(%label, "could not remove the key pair keymgr just made: {e}");
            }
        }
        return Err(Error::unavailable(
            BACKEND,
            format!(
                "another process created {label:?} for {key} at the same moment; keymgr \
                 removed its own copy: list the versions and retry"
            ),
            None,
        )
        .into());
    }
    keys::find(s, key, label)?.ok_or_else(|| {
        Error::integrity(
            key,
            format!("the key pair {label:?} vanished right after creation"),
        )
        .into()
    })
}

fn now_ms() -> Option<u64> {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| u64::try_from(d.as_millis()).ok())
}

pub(crate) fn create_key(
    inner: &Inner,
    s: &Session,
    name: &str,
    algorithm: KeyAlgorithm,
) -> Result<KeyVersion, Failure> {
    let base = inner.config.base_label(name).to_owned();
    crate::config::validate_label(&base)
        .map_err(|reason| Error::invalid_input("key name", reason))?;
    let existing = list_labels(s, &base)?;
    if let Some((n, label)) = existing.last() {
        return Err(Error::invalid_input(
            "key name",
            format!(
                "key {name} already exists (version {n}, label {label:?}); use create_version \
                 to rotate it"
            ),
        )
        .into());
    }
    // Above any orphan object a killed generation left under a versioned label.
    let n = highest_allocated(s, &base)?.unwrap_or(0) + 1;
    let label = label_for(&base, n);
    let found = generate_unique(
        s,
        name,
        algorithm,
        &keys::named_curve_params(algorithm),
        &label,
    )?;
    let created_at_ms = now_ms();
    if let Some(ms) = created_at_ms {
        created::record(s, &label, ms);
    }
    tracing::info!(key = name, %label, %algorithm, "created HSM key");
    Ok(KeyVersion {
        key: KeyRef::versioned(name, n.to_string()),
        backend_id: label,
        algorithm: found.algorithm(),
        state: VersionState::Enabled,
        created_at_ms,
        current: true,
    })
}

pub(crate) fn create_version(
    inner: &Inner,
    s: &Session,
    epoch: u64,
    name: &str,
) -> Result<KeyVersion, Failure> {
    // Read the current version from the token, not the cache: another process may
    // have rotated since.
    inner.forget_name(name);
    let current = inner.resolve(s, epoch, &KeyRef::new(name))?;
    let base = inner.config.base_label(name).to_owned();
    let n = highest_allocated(s, &base)?
        .unwrap_or(0)
        .max(parse_version(&base, &current.label).unwrap_or(0));
    let label = label_for(&base, n + 1);
    let found = generate_unique(
        s,
        name,
        current.algorithm(),
        std::slice::from_ref(&current.ec_params),
        &label,
    )?;
    let created_at_ms = now_ms();
    if let Some(ms) = created_at_ms {
        created::record(s, &label, ms);
    }
    tracing::info!(key = name, old = %current.label, new = %label, "created HSM key version");
    Ok(KeyVersion {
        key: KeyRef::versioned(name, (n + 1).to_string()),
        backend_id: label,
        algorithm: found.algorithm(),
        state: VersionState::Enabled,
        created_at_ms,
        current: true,
    })
}

pub(crate) fn explicit_label(
    inner: &Inner,
    key: &KeyRef,
    operation: &str,
) -> Result<String, Failure> {
    let Some(version) = key.version() else {
        return Err(Error::invalid_input(
            "key",
            format!(
                "{operation} needs an explicit version ({}@<version>); keymgr never applies it \
                 to whatever version is current",
                key.name()
            ),
        )
        .into());
    };
    Ok(versioned_label(
        inner.config.base_label(key.name()),
        version,
    )?)
}

pub(crate) fn disable_version(inner: &Inner, s: &Session, key: &KeyRef) -> Result<(), Failure> {
    let label = explicit_label(inner, key, "disable_version")?;
    let wrap = |e: CkError| Failure::Pkcs11(e, Some(label.clone()));
    let name = key.to_string();
    // The versions contract (`KeyBackend`, "Key versions"): the current version is never
    // disabled, or the unversioned name would stop signing.
    let base = inner.config.base_label(key.name());
    if current_key(s, key.name(), base)?.is_some_and(|current| current.label == label) {
        return Err(Error::invalid_input(
            "key",
            format!(
                "{name} (label {label:?}) is the current version of {}; rotate before \
                 disabling it",
                key.name()
            ),
        )
        .into());
    }
    let private = match keys::private_keys(s, &label).map_err(wrap)?.as_slice() {
        [] => {
            return Err(Error::not_found(
                name,
                format!(
                    "no private key labelled {label:?} on token {:?}",
                    inner.pool.token().label()
                ),
            )
            .into());
        }
        [one] => *one,
        many => return Err(keys::collision(&name, &label, many.len(), "private key").into()),
    };
    let sign_cleared = match s.update_attributes(private, &[Attribute::Sign(false)]) {
        Ok(()) => s
            .get_attributes(private, &[AttributeType::Sign])
            .map_err(wrap)?
            .iter()
            .any(|a| matches!(a, Attribute::Sign(false))),
        Err(CkError::Pkcs11(
            RvError::AttributeReadOnly
            | RvError::ActionProhibited
            | RvError::AttributeValueInvalid
            | RvError::AttributeTypeInvalid
            | RvError::TemplateInconsistent,
            _,
        )) => false,
        Err(e) => return Err(wrap(e)),
    };
    if !sign_cleared && keys::markers(s, &label).map_err(wrap)?.is_empty() {
        s.create_object(&[
            Attribute::Class(ObjectClass::DATA),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Application(MARKER_APPLICATION.to_vec()),
            Attribute::Label(format!("{MARKER_PREFIX}{label}").into_bytes()),
            Attribute::Value(b"disabled by keymgr".to_vec()),
        ])
        .map_err(wrap)?;
    }
    inner.forget_label(&label);
    tracing::info!(
        key = %name,
        %label,
        how = if sign_cleared { "CKA_SIGN=false" } else { "keymgr marker object" },
        "disabled HSM key version"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_scheme() {
        assert_eq!(parse_version("evm", "evm"), Some(0));
        assert_eq!(parse_version("evm", "evm.v1"), Some(1));
        assert_eq!(parse_version("evm", "evm.v42"), Some(42));
        for not in [
            "evm.v",
            "evm.v0",
            "evm.v01",
            "evm.v1x",
            "evm2",
            "evm.x1",
            "ev",
            "evm.v1.v2",
        ] {
            assert_eq!(parse_version("evm", not), None, "{not}");
        }
        // A base that itself looks versioned still works.
        assert_eq!(parse_version("a.v3", "a.v3.v1"), Some(1));
        assert_eq!(versioned_label("evm", "0").unwrap(), "evm");
        assert_eq!(versioned_label("evm", "7").unwrap(), "evm.v7");
        for bad in ["latest", "", "+1", "01", "-1", "99999999999"] {
            assert!(versioned_label("evm", bad).is_err(), "{bad}");
        }
        let e = versioned_label("evm", "latest").unwrap_err();
        assert_eq!(e.kind(), keymgr_core::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("evm.v1"), "{e}");
    }
}
