//! A disabled version's public key, readable by any process.
//!
//! Cloud KMS refuses
//! [`getPublicKey`](https://cloud.google.com/kms/docs/reference/rest/v1/projects.locations.keyRings.cryptoKeys.cryptoKeyVersions/getPublicKey)
//! on a version that is not `ENABLED` (`FAILED_PRECONDITION`), yet old signatures must
//! stay verifiable. Before disabling a version, keymgr records its public key on the
//! crypto key as the label [`LABEL_PUBLIC_KEY_PREFIX`]`N` (`N` the version id); the
//! value is the key's bytes (compressed SEC1, 33 bytes, for secp256k1; the raw 32 bytes
//! for Ed25519) in lowercase unpadded base32 (RFC 4648 §6), 53 or 52 characters.
//!
//! Why a label of the crypto key: `CryptoKeyVersion` has no labels or other writable
//! free-form field, and crypto key labels are the only metadata every reader of the key
//! can see. Labels allow at most 63 characters of `[a-z0-9_-]` per value and 64 labels
//! per resource
//! ([label requirements](https://cloud.google.com/kms/docs/creating-managing-labels#requirements)):
//! SPKI in base64 (120 characters, upper case) does not fit, the raw key in lowercase
//! base32 does; and a key keeps at most 62 such records (besides keymgr's two rotation
//! labels). When the label cannot be written, `disable_version` fails and the version
//! stays enabled.

use data_encoding::BASE32_NOPAD;
use google_cloud_kms_v1::model::CryptoKeyVersion;
use google_cloud_kms_v1::model::crypto_key_version::CryptoKeyVersionState;
use keymgr_core::{Error, IntegrityReason, KeyAlgorithm, PublicKey, Result};

use crate::GcpKmsBackend;
use crate::config::ResourceName;
use crate::resolve::version_id;

/// Prefix of the crypto key label recording version `N`'s public key
/// (`keymgr-public-key-3`).
pub const LABEL_PUBLIC_KEY_PREFIX: &str = "keymgr-public-key-";

/// The label recording the public key of the version named `version` (a resource name).
pub(crate) fn label_for(version: &str) -> String {
    format!("{LABEL_PUBLIC_KEY_PREFIX}{}", version_id(version))
}

/// The label value for `public_key`: lowercase unpadded base32 of its bytes.
pub(crate) fn encode(public_key: &PublicKey) -> String {
    BASE32_NOPAD
        .encode(&public_key.to_bytes())
        .to_ascii_lowercase()
}

/// Whether Cloud KMS refuses `getPublicKey` for a version in this state, so that its
/// public key comes from the recorded label.
pub(crate) fn needs_record(state: &CryptoKeyVersionState) -> bool {
    matches!(
        state,
        CryptoKeyVersionState::Disabled
            | CryptoKeyVersionState::DestroyScheduled
            | CryptoKeyVersionState::Destroyed
    )
}

impl GcpKmsBackend {
    /// The public key recorded for the non-enabled version `meta`, checked: it decodes
    /// to a key of `algorithm` (the version's own). Without a record (a version disabled
    /// outside keymgr) it cannot be read: `AccessDenied`, as Cloud KMS's own refusal.
    pub(crate) async fn recorded_public_key(
        &self,
        label: &str,
        meta: &CryptoKeyVersion,
        algorithm: KeyAlgorithm,
    ) -> Result<PublicKey> {
        let crypto_key = ResourceName::parse(&meta.name)
            .map(|r| r.crypto_key)
            .map_err(|reason| Error::integrity(label, reason))?;
        let key = self.get_crypto_key(label, &crypto_key).await?;
        let record_label = label_for(&meta.name);
        let state = meta.state.name().unwrap_or("in an unknown state");
        let Some(value) = key.labels.get(&record_label) else {
            return Err(Error::access_denied(
                label,
                format!(
                    "{} is {state} and {crypto_key} has no {record_label} label (it was not \
                     disabled by keymgr); Cloud KMS refuses getPublicKey until it is enabled",
                    meta.name
                ),
            ));
        };
        decode(label, &meta.name, &record_label, value, algorithm)
    }
}

/// The public key in a recorded label `value`, of `algorithm`.
pub(crate) fn decode(
    label: &str,
    version: &str,
    record_label: &str,
    value: &str,
    algorithm: KeyAlgorithm,
) -> Result<PublicKey> {
    let malformed = |why: String| {
        Error::integrity_failure(
            label,
            IntegrityReason::MalformedResponse,
            format!("the {record_label} label recording {version}'s public key {why}"),
        )
    };
    let bytes = BASE32_NOPAD
        .decode(value.to_ascii_uppercase().as_bytes())
        .map_err(|e| malformed(format!("is not base32: {e}")))?;
    let public_key = match algorithm {
        KeyAlgorithm::Secp256k1 => PublicKey::from_sec1(&bytes),
        KeyAlgorithm::Ed25519 => PublicKey::from_ed25519_bytes(&bytes),
        other => return Err(malformed(format!("cannot be a {other} key"))),
    }
    .map_err(|e| malformed(format!("is not a {algorithm} public key: {e}")))?;
    Ok(public_key)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn records_fit_a_label_and_read_back() {
        let secp = PublicKey::from_sec1(
            k256::ecdsa::SigningKey::from_slice(&[7; 32])
                .unwrap()
                .verifying_key()
                .to_encoded_point(true)
                .as_bytes(),
        )
        .unwrap();
        let ed = PublicKey::from_ed25519_bytes(
            ed25519_dalek::SigningKey::from_bytes(&[9; 32])
                .verifying_key()
                .as_bytes(),
        )
        .unwrap();
        for (pk, algorithm, len) in [
            (secp, KeyAlgorithm::Secp256k1, 53),
            (ed, KeyAlgorithm::Ed25519, 52),
        ] {
            let value = encode(&pk);
            assert_eq!(value.len(), len);
            assert!(
                value
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            );
            assert_eq!(decode("k", "v", "l", &value, algorithm).unwrap(), pk);
        }
        assert_eq!(
            label_for("projects/p/.../cryptoKeyVersions/12"),
            "keymgr-public-key-12"
        );
    }

    #[test]
    fn malformed_records_are_integrity_errors() {
        for (value, algorithm) in [
            ("not base32!", KeyAlgorithm::Secp256k1),
            ("aaaa", KeyAlgorithm::Ed25519),
            // 33 bytes that are not a point on secp256k1.
            (&*encode_raw(&[5; 33]), KeyAlgorithm::Secp256k1),
        ] {
            let e = decode("evm@1", "v", "l", value, algorithm).unwrap_err();
            assert_eq!(
                e.integrity_reason(),
                Some(IntegrityReason::MalformedResponse),
                "{e}"
            );
        }
    }

    fn encode_raw(bytes: &[u8]) -> String {
        BASE32_NOPAD.encode(bytes).to_ascii_lowercase()
    }
}
