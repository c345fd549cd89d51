//! Key identity and algorithms.

use std::fmt;
use std::str::FromStr;

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
///
/// # Text form
///
/// `NAME` or `NAME@VERSION`, split at the `@`: `"xrp@1"` is key `xrp`, version `1`, and
/// `"xrp"` is the current version of `xrp`. [`KeyRef::parse`] is the one parser; every
/// conversion from text ([`FromStr`], `From<&str>`, `From<String>`, serde, the CLI's
/// `--key`, settings that name a key) goes through it, and [`Display`](fmt::Display)
/// writes the same form, so `KeyRef::from(k.to_string()) == k` for every `KeyRef`.
///
/// Neither part may be empty or contain `@` (a version is never silently dropped or
/// merged into the name): [`KeyRef::parse`] refuses `""`, `"@1"`, `"xrp@"` and
/// `"a@b@c"` with [`Error::InvalidInput`] (field `key`). The infallible constructors
/// ([`KeyRef::new`], [`KeyRef::versioned`], `From`) panic on such text instead, so use
/// `parse` (or `str::parse`) for text you did not write yourself. A backend identifier
/// that contains `@` (a PKCS#11 label, say) is reached through a configured logical name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "KeyRefFields")]
pub struct KeyRef {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<String>,
}

/// The serialized fields of a [`KeyRef`], validated on the way in.
#[derive(Deserialize)]
struct KeyRefFields {
    name: String,
    #[serde(default)]
    version: Option<String>,
}

impl TryFrom<KeyRefFields> for KeyRef {
    type Error = Error;

    fn try_from(f: KeyRefFields) -> Result<Self> {
        KeyRef::checked(f.name, f.version).map_err(|r| KeyRef::invalid(&r))
    }
}

/// Why `part` cannot be a key name or version, if it cannot.
fn part_problem(part: &str, what: &str) -> Option<String> {
    if part.is_empty() {
        Some(format!("empty {what}"))
    } else if part.contains('@') {
        Some(format!("{what} {part:?} contains '@'"))
    } else {
        None
    }
}

impl KeyRef {
    /// The current version of the logical key `name`.
    ///
    /// # Panics
    ///
    /// If `name` is empty or contains `@` (see the [text form](KeyRef#text-form)); use
    /// [`KeyRef::parse`] for text you did not write yourself.
    pub fn new(name: impl Into<String>) -> Self {
        Self::checked(name.into(), None).unwrap_or_else(|r| panic!("{}", Self::invalid(&r)))
    }

    /// One explicit version of `name`.
    ///
    /// # Panics
    ///
    /// If `name` or `version` is empty or contains `@` (see the
    /// [text form](KeyRef#text-form)).
    pub fn versioned(name: impl Into<String>, version: impl Into<String>) -> Self {
        Self::checked(name.into(), Some(version.into()))
            .unwrap_or_else(|r| panic!("{}", Self::invalid(&r)))
    }

    /// Parses `NAME` or `NAME@VERSION` (see the [text form](KeyRef#text-form)).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] (field `key`) naming the text when the name or the version
    /// is empty or either contains another `@`.
    pub fn parse(s: &str) -> Result<Self> {
        let (name, version) = match s.split_once('@') {
            Some((n, v)) => (n, Some(v)),
            None => (s, None),
        };
        Self::checked(name.to_owned(), version.map(str::to_owned))
            .map_err(|reason| Self::invalid(&format!("{s:?} is not a key reference: {reason}")))
    }

    /// Checks that `name` can be a key name (non-empty, no `@`), for APIs that take a
    /// name as text (`list_versions`, `create_version`, rotation).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] (field `key`) saying what is wrong; a `NAME@VERSION` gets
    /// "a key name, not a version" (those operations act on the logical key).
    pub fn check_name(name: &str) -> Result<()> {
        match part_problem(name, "key name") {
            None => Ok(()),
            Some(_) if KeyRef::parse(name).is_ok() => Err(Error::invalid_input(
                "key",
                format!("{name:?} names a version; this operation takes a key NAME"),
            )),
            Some(reason) => Err(Self::invalid(&reason)),
        }
    }

    /// Validates the parts; `Err` is the reason, for the caller to put in context.
    fn checked(name: String, version: Option<String>) -> std::result::Result<Self, String> {
        let problem = part_problem(&name, "key name").or_else(|| {
            version
                .as_deref()
                .and_then(|v| part_problem(v, "key version"))
        });
        match problem {
            Some(reason) => Err(reason),
            None => Ok(Self { name, version }),
        }
    }

    fn invalid(reason: &str) -> Error {
        Error::invalid_input("key", format!("{reason} (expected NAME or NAME@VERSION)"))
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
        Self {
            name: self.name.clone(),
            version: None,
        }
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

impl FromStr for KeyRef {
    type Err = Error;

    /// [`KeyRef::parse`].
    fn from_str(s: &str) -> Result<Self> {
        KeyRef::parse(s)
    }
}

/// [`KeyRef::parse`], panicking on malformed text (see the [text form](KeyRef#text-form)).
impl From<&str> for KeyRef {
    fn from(s: &str) -> Self {
        KeyRef::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// [`KeyRef::parse`], panicking on malformed text (see the [text form](KeyRef#text-form)).
impl From<String> for KeyRef {
    fn from(s: String) -> Self {
        KeyRef::from(s.as_str())
    }
}

/// Whether a key version can still be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum VersionState {
    /// Usable for signing.
    Enabled,
    /// Disabled in the backend (deleted only under an operator's opt-in, see
    /// [`KeyBackend::delete_version`](crate::KeyBackend::delete_version)).
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
    }

    #[test]
    fn every_conversion_from_text_splits_the_version() {
        let want = KeyRef::versioned("xrp", "1");
        assert_eq!(KeyRef::from("xrp@1"), want);
        assert_eq!(KeyRef::from("xrp@1".to_owned()), want);
        assert_eq!("xrp@1".parse::<KeyRef>().unwrap(), want);
        let into: KeyRef = "xrp@1".into();
        assert_eq!(into, want);
        assert_eq!(KeyRef::from("xrp"), KeyRef::new("xrp"));
        // AWS key ids, GCP numbers and Azure hex versions keep their spelling.
        let aws = KeyRef::from("evm@1234abcd-12ab-34cd-56ef-1234567890ab");
        assert_eq!(aws.version(), Some("1234abcd-12ab-34cd-56ef-1234567890ab"));
    }

    #[test]
    fn malformed_text_is_an_invalid_input_error_naming_it() {
        for bad in ["", "@1", "xrp@", "@", "a@b@c", "xrp@@1"] {
            let e = KeyRef::parse(bad).unwrap_err();
            let Error::InvalidInput { field, reason, .. } = &e else {
                panic!("{bad:?}: {e:?}")
            };
            assert_eq!(field, "key");
            assert!(reason.contains(&format!("{bad:?}")), "{bad:?}: {reason}");
            assert!(bad.parse::<KeyRef>().is_err());
            let panicked = std::panic::catch_unwind(|| KeyRef::from(bad));
            assert!(panicked.is_err(), "From<&str> accepted {bad:?}");
        }
        for (name, version) in [
            ("a@b", None),
            ("", None),
            ("a", Some("")),
            ("a", Some("1@2")),
        ] {
            let built = std::panic::catch_unwind(|| match version {
                Some(v) => KeyRef::versioned(name, v),
                None => KeyRef::new(name),
            });
            assert!(built.is_err(), "{name:?} {version:?}");
        }
    }

    #[test]
    fn check_name_refuses_versions_and_malformed_names() {
        assert!(KeyRef::check_name("evm").is_ok());
        for bad in ["", "evm@2", "@", "a@b@c", "evm@"] {
            let e = KeyRef::check_name(bad).unwrap_err();
            assert!(
                matches!(&e, Error::InvalidInput { field, .. } if field == "key"),
                "{bad:?}: {e:?}"
            );
        }
    }

    #[test]
    fn serde_round_trips_and_refuses_malformed_parts() {
        for k in [KeyRef::new("evm"), KeyRef::versioned("evm", "7")] {
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(serde_json::from_str::<KeyRef>(&json).unwrap(), k);
        }
        for bad in [
            r#"{"name":"a@b"}"#,
            r#"{"name":""}"#,
            r#"{"name":"a","version":""}"#,
        ] {
            let e = serde_json::from_str::<KeyRef>(bad).unwrap_err();
            assert!(e.to_string().contains("key"), "{bad}: {e}");
        }
    }

    proptest::proptest! {
        #[test]
        fn display_then_from_is_identity(
            name in "[^@]{1,24}",
            version in proptest::option::of("[^@]{1,24}"),
        ) {
            let k = match version {
                Some(v) => KeyRef::versioned(name, v),
                None => KeyRef::new(name),
            };
            proptest::prop_assert_eq!(KeyRef::from(k.to_string()), k.clone());
            proptest::prop_assert_eq!(k.to_string().parse::<KeyRef>().unwrap(), k);
        }
    }
}
