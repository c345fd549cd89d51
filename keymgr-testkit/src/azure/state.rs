//! The stand-in's vault: named keys, each a list of versions holding real key pairs.

use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use k256::ecdsa::SigningKey;
use rand_core::{OsRng, RngCore};

/// What a key version holds.
#[derive(Clone)]
pub enum Material {
    /// An EC key on curve `P-256K` (secp256k1) with its private half: signs for real.
    Secp256k1(SigningKey),
    /// A public-only key of another type or curve (EC `P-256`, `P-384`, ..., or an `OKP`
    /// `Ed25519` key as Key Vault does not offer): only its JWK is served, so tests can
    /// check that keymgr refuses it by name.
    OtherCurve {
        /// The JWK `kty`.
        kty: &'static str,
        /// The JWK `crv`.
        crv: &'static str,
        /// Raw coordinate bytes served as `x` and `y`.
        xy: (Vec<u8>, Vec<u8>),
    },
}

/// One key version (Key Vault's `KeyBundle` without the vault URL).
#[derive(Clone)]
pub struct Version {
    /// 32 lowercase hex characters, like Key Vault's version ids.
    pub id: String,
    /// The key pair.
    pub material: Material,
    /// `attributes.enabled`.
    pub enabled: bool,
    /// `attributes.created`, seconds since the Unix epoch.
    pub created: u64,
    /// `attributes.updated`, seconds since the Unix epoch.
    pub updated: u64,
    /// `tags` (Key Vault keeps tags per version).
    pub tags: BTreeMap<String, String>,
}

/// Every key in the vault; versions in creation order (the last is the current one).
#[derive(Default)]
pub struct Keys {
    pub(crate) keys: HashMap<String, Vec<Version>>,
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn version_id() -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Keys {
    /// Adds a new version of `name` (creating the key if needed); returns its id.
    pub fn add(
        &mut self,
        name: &str,
        material: Material,
        tags: BTreeMap<String, String>,
    ) -> String {
        let id = version_id();
        let t = now();
        self.keys.entry(name.to_owned()).or_default().push(Version {
            id: id.clone(),
            material,
            enabled: true,
            created: t,
            updated: t,
            tags,
        });
        id
    }

    /// Version `version` of `name`, or its newest version when `version` is empty.
    pub fn version_mut(&mut self, name: &str, version: &str) -> Option<&mut Version> {
        let versions = self.keys.get_mut(name)?;
        if version.is_empty() {
            versions.last_mut()
        } else {
            versions.iter_mut().find(|v| v.id == version)
        }
    }

    /// All versions of `name`, oldest first.
    pub fn versions(&self, name: &str) -> Option<&[Version]> {
        self.keys.get(name).map(Vec::as_slice)
    }
}

/// A fresh secp256k1 key pair.
pub fn secp256k1() -> Material {
    Material::Secp256k1(SigningKey::random(&mut OsRng))
}
