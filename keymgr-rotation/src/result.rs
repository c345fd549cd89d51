//! What rotation reports: [`RotationEvent`]s and the one [`RotationResult`] type.

use keymgr_core::{KeyAlgorithm, KeyRef, PublicKey, xrpl};
use serde::ser::SerializeStruct as _;
use serde::{Serialize, Serializer};

use crate::store::{LeaseInfo, RotationRequest};

/// What one [`Rotator`](crate::Rotator) call did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RotationEvent {
    /// The rotation of `key` is due at `due_ms` (sent once per cycle).
    Notice {
        /// Logical key.
        key: String,
        /// When the rotation is due (ms since the epoch).
        due_ms: u64,
    },
    /// A rotation request was recorded and waits for approval by another actor.
    Requested {
        /// Logical key.
        key: String,
        /// The request.
        request: RotationRequest,
    },
    /// The rotation waits for [`Rotator::approve`](crate::Rotator::approve) of `request`.
    AwaitingApproval {
        /// Logical key.
        key: String,
        /// The request waiting.
        request: RotationRequest,
    },
    /// A request (or its approval) expired unused.
    Expired {
        /// Logical key.
        key: String,
        /// The expired request.
        request: RotationRequest,
    },
    /// A new version is current; the old one stays valid until its overlap ends.
    Rotated(Box<RotationResult>),
    /// A version was disabled in the backend (not deleted).
    Disabled {
        /// Logical key.
        key: String,
        /// The disabled version.
        version: String,
    },
    /// A disabled version beyond the opt-in keep count was deleted for good
    /// ([`RotationPolicy::keep_versions`](crate::RotationPolicy::keep_versions)).
    Deleted {
        /// Logical key.
        key: String,
        /// The deleted version.
        version: String,
    },
    /// Another live rotator holds the lease on this key; nothing was done.
    LeaseHeldElsewhere {
        /// Logical key.
        key: String,
        /// Who holds it and until when.
        lease: LeaseInfo,
    },
    /// The lease of a rotator whose process no longer exists was taken over.
    LeaseTakenOver {
        /// Logical key.
        key: String,
        /// The dead holder's lease.
        lease: LeaseInfo,
    },
}

/// One version's public key, with the identities derived from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotatedKey {
    /// The version, as a versioned [`KeyRef`] (`NAME@VERSION`) that signs with exactly it.
    pub key: KeyRef,
    /// Its public key.
    pub public_key: PublicKey,
}

impl RotatedKey {
    /// The version id.
    pub fn version(&self) -> &str {
        self.key.version().unwrap_or_default()
    }

    /// Ethereum address (EIP-55 checksummed); `None` for Ed25519 keys.
    pub fn evm_address(&self) -> Option<String> {
        self.public_key.evm_address()
    }

    /// The public key in XRPL form, upper-case hex: 33-byte compressed secp256k1, or
    /// `ED` ‖ 32 bytes for Ed25519 (as `rippled` prints it).
    pub fn xrpl_public_key(&self) -> String {
        hex::encode_upper(self.xrpl_bytes())
    }

    /// The XRPL classic account address (`r...`) of this public key.
    pub fn xrpl_account(&self) -> String {
        xrpl::classic_address(&self.xrpl_bytes())
    }

    fn xrpl_bytes(&self) -> Vec<u8> {
        match self.public_key.algorithm() {
            KeyAlgorithm::Ed25519 => [&[0xED][..], &self.public_key.to_bytes()].concat(),
            _ => self.public_key.to_bytes(),
        }
    }
}

impl Serialize for RotatedKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("RotatedKey", 6)?;
        st.serialize_field("version", self.version())?;
        st.serialize_field("algorithm", self.public_key.algorithm().as_str())?;
        st.serialize_field("public_key", &hex::encode(self.public_key.to_bytes()))?;
        st.serialize_field("evm_address", &self.evm_address())?;
        st.serialize_field("xrpl_public_key", &self.xrpl_public_key())?;
        st.serialize_field("xrpl_account", &self.xrpl_account())?;
        st.end()
    }
}

/// A completed rotation, with both public keys so operators can act on the change.
///
/// **The identity changes**: a secp256k1 key gets a new Ethereum address and XRPL
/// account, an Ed25519 key a new XRPL public key and account. [`note`](Self::note)
/// says what that means for users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RotationResult {
    /// Logical key.
    pub key: String,
    /// The previous version (valid until `overlap_until_ms`), if there was one.
    pub old: Option<RotatedKey>,
    /// The new current version.
    pub new: RotatedKey,
    /// End of the overlap (ms since the epoch).
    pub overlap_until_ms: u64,
    /// What changes for users of this key.
    pub note: String,
}

impl RotationResult {
    /// The algorithm (both versions share it).
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.new.public_key.algorithm()
    }

    pub(crate) fn note_for(algorithm: KeyAlgorithm) -> String {
        let identity = match algorithm {
            KeyAlgorithm::Ed25519 => {
                "Ed25519 key rotated: its XRPL public key and account address changed."
            }
            _ => {
                "secp256k1 key rotated: its Ethereum address and XRPL account changed. Fund / \
                 register the new address before relying on it; the old version signs \
                 (explicitly, NAME@VERSION) until the overlap ends."
            }
        };
        format!("{identity} {CHANNELS}")
    }
}

const CHANNELS: &str = "XRPL payment channels keep the public key they were opened with: \
     sign their claims with the old version (NAME@VERSION) while it is valid; once the \
     overlap ends that version is disabled and channels opened with it stop accepting new \
     claims, so settle or close them before then and open new channels for the new key.";

/// The warning for XRPL keys, as printed by the CLI.
pub fn xrpl_channel_warning() -> &'static str {
    CHANNELS
}
