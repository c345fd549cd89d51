//! Key names → versions, and the JWK → public key translation with its cache.
//!
//! Key Vault keeps every version of a key under one name; the newest version is the one
//! an unversioned request uses (Get Key,
//! <https://learn.microsoft.com/rest/api/keyvault/keys/get-key/get-key>). keymgr pins
//! every signature to an explicit version: the current version is looked up (and cached
//! for [`CURRENT_VERSION_TTL`]) and the sign call names it, so a rotation between the
//! two calls can never produce a signature by a key other than the one verified.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use azure_security_keyvault_keys::models::{CurveName, JsonWebKey, Key, KeyType};
use keymgr_core::{Error, KeyAlgorithm, PublicKey, Result};

use crate::backend::BACKEND;

/// How long the newest version of a name is trusted before it is looked up again
/// (rotation through this backend invalidates it at once).
pub const CURRENT_VERSION_TTL: Duration = Duration::from_secs(30);

/// Why Ed25519 is unsupported, quoted by every refusal.
pub(crate) const NO_ED25519: &str = "Azure Key Vault does not offer Ed25519 keys (its EC \
     curves are P-256, P-256K, P-384 and P-521); XRP Ledger accounts on Azure use a \
     secp256k1 (P-256K) key, which keymgr-xrp supports";

/// A version's public key and whether it is enabled.
#[derive(Debug, Clone)]
pub(crate) struct VersionInfo {
    pub(crate) version: String,
    pub(crate) public_key: PublicKey,
}

#[derive(Debug, Default)]
pub(crate) struct Cache {
    /// (key name, version) → public key; versions never change their key material.
    public_keys: Mutex<HashMap<(String, String), PublicKey>>,
    /// key name → (newest version, when looked up).
    current: Mutex<HashMap<String, (String, Instant)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Cache {
    pub(crate) fn current(&self, name: &str) -> Option<String> {
        lock(&self.current)
            .get(name)
            .filter(|(_, at)| at.elapsed() < CURRENT_VERSION_TTL)
            .map(|(v, _)| v.clone())
    }

    pub(crate) fn public_key(&self, name: &str, version: &str) -> Option<PublicKey> {
        lock(&self.public_keys)
            .get(&(name.to_owned(), version.to_owned()))
            .cloned()
    }

    pub(crate) fn store(&self, name: &str, info: &VersionInfo, is_current: bool) {
        lock(&self.public_keys).insert(
            (name.to_owned(), info.version.clone()),
            info.public_key.clone(),
        );
        if is_current {
            lock(&self.current).insert(name.to_owned(), (info.version.clone(), Instant::now()));
        }
    }

    pub(crate) fn invalidate(&self, name: &str) {
        lock(&self.current).remove(name);
    }
}

/// The version id at the end of a `kid` (`https://vault/keys/NAME/VERSION`).
pub(crate) fn version_of_kid(kid: &str) -> Option<&str> {
    let (rest, version) = kid.trim_end_matches('/').rsplit_once('/')?;
    rest.contains("/keys/").then_some(version)
}

/// The public key and version of a Get Key / Create Key response for `key`.
pub(crate) fn version_info(key: &str, bundle: &Key) -> Result<VersionInfo> {
    let jwk = bundle
        .key
        .as_ref()
        .ok_or_else(|| Error::integrity(key, "Key Vault returned a key without its JWK"))?;
    let version =
        jwk.kid.as_deref().and_then(version_of_kid).ok_or_else(|| {
            Error::integrity(key, "Key Vault returned a JWK without a usable kid")
        })?;
    Ok(VersionInfo {
        version: version.to_owned(),
        public_key: public_key(key, jwk)?,
    })
}

/// The algorithm of a JWK, from its `kty` and `crv` (never from the key's name).
pub(crate) fn algorithm(key: &str, jwk: &JsonWebKey) -> Result<KeyAlgorithm> {
    let unsupported = |reason: String| Error::unsupported(BACKEND, "sign", reason);
    match jwk.kty.as_ref() {
        Some(KeyType::Ec | KeyType::EcHsm) => match jwk.crv.as_ref() {
            Some(CurveName::P256K) => Ok(KeyAlgorithm::Secp256k1),
            Some(CurveName::UnknownValue(c)) if c.eq_ignore_ascii_case("Ed25519") => Err(
                unsupported(format!("{key} is an Ed25519 key: {NO_ED25519}")),
            ),
            Some(other) => Err(unsupported(format!(
                "{key} is an EC key on curve {other}; keymgr signs with secp256k1 (P-256K) keys only"
            ))),
            None => Err(Error::integrity(
                key,
                "Key Vault returned an EC key without crv",
            )),
        },
        Some(KeyType::UnknownValue(t)) if t == "OKP" || t == "OKP-HSM" => Err(unsupported(
            format!("{key} is an {t} (Ed25519) key: {NO_ED25519}"),
        )),
        Some(other) => Err(unsupported(format!(
            "{key} is a {other} key; keymgr signs with EC keys on curve P-256K"
        ))),
        None => Err(Error::integrity(
            key,
            "Key Vault returned a JWK without kty",
        )),
    }
}

/// secp256k1 public key from the JWK's `x`/`y` (RFC 7518 §6.2.1: 32 bytes each).
pub(crate) fn public_key(key: &str, jwk: &JsonWebKey) -> Result<PublicKey> {
    algorithm(key, jwk)?;
    let (Some(x), Some(y)) = (jwk.x.as_deref(), jwk.y.as_deref()) else {
        return Err(Error::integrity(
            key,
            "Key Vault returned an EC JWK without x and y",
        ));
    };
    if x.len() != 32 || y.len() != 32 {
        return Err(Error::integrity(
            key,
            format!(
                "Key Vault returned JWK coordinates of {} and {} bytes (P-256K needs 32 each)",
                x.len(),
                y.len()
            ),
        ));
    }
    let mut sec1 = Vec::with_capacity(65);
    sec1.push(0x04);
    sec1.extend_from_slice(x);
    sec1.extend_from_slice(y);
    PublicKey::from_sec1(&sec1).map_err(|e| {
        Error::integrity(
            key,
            format!("Key Vault returned a JWK that is not a secp256k1 point: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kid_versions() {
        assert_eq!(
            version_of_kid("https://v.vault.azure.net/keys/evm/0123456789abcdef0123456789abcdef"),
            Some("0123456789abcdef0123456789abcdef")
        );
        assert_eq!(version_of_kid("nonsense"), None);
    }

    #[test]
    fn curves_are_named() {
        let mut jwk = JsonWebKey {
            kty: Some(KeyType::Ec),
            crv: Some(CurveName::P256),
            ..Default::default()
        };
        match algorithm("k", &jwk).unwrap_err() {
            Error::Unsupported { reason, .. } => {
                assert!(
                    reason.contains("P-256") && reason.contains("k "),
                    "{reason}"
                )
            }
            other => panic!("{other:?}"),
        }
        jwk.kty = Some(KeyType::UnknownValue("OKP".into()));
        jwk.crv = Some(CurveName::UnknownValue("Ed25519".into()));
        match algorithm("k", &jwk).unwrap_err() {
            Error::Unsupported { reason, .. } => {
                assert!(
                    reason.starts_with("k is an OKP") && reason.contains("Ed25519"),
                    "{reason}"
                )
            }
            other => panic!("{other:?}"),
        }
    }
}
