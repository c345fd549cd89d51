//! Key identity and algorithms.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A signature algorithm keymgr knows how to use.
///
/// Always learned from the backend's own metadata (AWS `KeySpec`, GCP algorithm, Azure
/// `crv`, PKCS#11 `CKA_KEY_TYPE`/`CKA_EC_PARAMS`), never from a key's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum KeyAlgorithm {
    /// ECDSA over secp256k1 on a 32-byte prehash (Ethereum, XRPL secp256k1 accounts).
    Secp256k1,
    /// Ed25519 (RFC 8032, pure) on the raw message (XRPL Ed25519 accounts).
    Ed25519,
}

impl KeyAlgorithm {
    /// Stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::Secp256k1 => "secp256k1",
            KeyAlgorithm::Ed25519 => "ed25519",
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Names a key: a logical name (`evm-settlement`) and optionally one version of it.
///
/// Without a version, backends resolve the current version (an AWS alias target, the
/// primary GCP version, the newest Azure version, the newest HSM label version).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KeyRef {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<String>,
}

impl KeyRef {
    /// The current version of the logical key `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            version: None,
        }
    }

    /// One explicit version of `name`.
    pub fn versioned(name: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            version: Some(version.into()),
        }
    }

    /// Parses `name` or `name@version`.
    pub fn parse(s: &str) -> Result<Self> {
        let (name, version) = match s.split_once('@') {
            Some((n, v)) => (n, Some(v)),
            None => (s, None),
        };
        if name.is_empty() {
            return Err(Error::invalid_input(
                "key",
                "empty key name (expected NAME or NAME@VERSION)",
            ));
        }
        if version.is_some_and(str::is_empty) {
            return Err(Error::invalid_input(
                "key",
                format!("empty version in {s:?} (expected NAME@VERSION)"),
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            version: version.map(str::to_owned),
        })
    }

    /// The logical name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The explicit version, if any.
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// The same logical key without a version (its current version).
    pub fn unversioned(&self) -> Self {
        Self::new(self.name.clone())
    }
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.version {
            Some(v) => write!(f, "{}@{}", self.name, v),
            None => f.write_str(&self.name),
        }
    }
}

impl From<&str> for KeyRef {
    fn from(name: &str) -> Self {
        KeyRef::new(name)
    }
}

impl From<String> for KeyRef {
    fn from(name: String) -> Self {
        KeyRef::new(name)
    }
}

/// Whether a key version can still be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum VersionState {
    /// Usable for signing.
    Enabled,
    /// Disabled in the backend (never deleted by keymgr's rotation).
    Disabled,
    /// Being created or otherwise not yet usable.
    Pending,
}

/// One version of a logical key as the backend reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyVersion {
    /// The logical key with this version set.
    pub key: KeyRef,
    /// The backend's own identifier (ARN, resource name, PKCS#11 label, ...).
    pub backend_id: String,
    /// The algorithm, from backend metadata.
    pub algorithm: KeyAlgorithm,
    /// Usable or not.
    pub state: VersionState,
    /// Creation time in milliseconds since the Unix epoch, when the backend knows it.
    pub created_at_ms: Option<u64>,
    /// Whether this is the version the unversioned name resolves to.
    pub current: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ref_parse_and_display() {
        let k = KeyRef::parse("evm-settlement@3").unwrap();
        assert_eq!(k.name(), "evm-settlement");
        assert_eq!(k.version(), Some("3"));
        assert_eq!(k.to_string(), "evm-settlement@3");
        assert_eq!(KeyRef::parse("xrp").unwrap(), KeyRef::new("xrp"));
        assert!(KeyRef::parse("").is_err());
        assert!(KeyRef::parse("@1").is_err());
        assert!(KeyRef::parse("evm@").is_err());
    }
}
