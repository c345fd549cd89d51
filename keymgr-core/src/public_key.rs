//! Public keys (secp256k1, Ed25519): SPKI/SEC1/PEM parsing, EVM addresses and
//! verification.

use std::fmt;

use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
use k256::pkcs8::der::{Decode as _, asn1::ObjectIdentifier};
use k256::pkcs8::spki::SubjectPublicKeyInfoRef;

use crate::{Error, KeyAlgorithm, Result, SignPayload, Signature};

/// `id-ecPublicKey` (RFC 5480).
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// `secp256k1` (SEC 2).
pub const OID_SECP256K1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.10");
/// `id-Ed25519` (RFC 8410).
pub const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// A public key of one of the supported algorithms.
#[derive(Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// secp256k1 point.
    Secp256k1(k256::ecdsa::VerifyingKey),
    /// Ed25519 point.
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl PublicKey {
    /// The key's algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        match self {
            PublicKey::Secp256k1(_) => KeyAlgorithm::Secp256k1,
            PublicKey::Ed25519(_) => KeyAlgorithm::Ed25519,
        }
    }

    /// Parses a DER `SubjectPublicKeyInfo` (AWS `GetPublicKey`, decoded PEM).
    ///
    /// Accepts `id-ecPublicKey` on secp256k1 and `id-Ed25519`; any other algorithm or
    /// curve is an error naming its OID.
    pub fn from_spki_der(der: &[u8]) -> Result<Self> {
        let spki = SubjectPublicKeyInfoRef::from_der(der).map_err(|e| {
            Error::invalid_input(
                "public key",
                format!("malformed DER SubjectPublicKeyInfo: {e}"),
            )
        })?;
        let bits = spki.subject_public_key.as_bytes().ok_or_else(|| {
            Error::invalid_input(
                "public key",
                "SubjectPublicKeyInfo bit string has unused bits",
            )
        })?;
        match spki.algorithm.oid {
            OID_EC_PUBLIC_KEY => {
                let curve = spki.algorithm.parameters_oid().map_err(|e| {
                    Error::invalid_input(
                        "public key",
                        format!("EC SubjectPublicKeyInfo without a named curve: {e}"),
                    )
                })?;
                if curve != OID_SECP256K1 {
                    return Err(Error::invalid_input(
                        "public key",
                        format!(
                            "unsupported EC curve {curve}{}; keymgr needs secp256k1 (1.3.132.0.10)",
                            curve_name(&curve)
                        ),
                    ));
                }
                Self::from_sec1(bits)
            }
            OID_ED25519 => Self::from_ed25519_bytes(bits),
            other => Err(Error::invalid_input(
                "public key",
                format!(
                    "unsupported key algorithm {other}; keymgr supports secp256k1 ECDSA and Ed25519"
                ),
            )),
        }
    }

    /// Parses a PEM `PUBLIC KEY` block (GCP `GetPublicKey`, files).
    pub fn from_spki_pem(pem: &str) -> Result<Self> {
        let (label, doc) = k256::pkcs8::Document::from_pem(pem)
            .map_err(|e| Error::invalid_input("public key", format!("malformed PEM: {e}")))?;
        if label != "PUBLIC KEY" {
            return Err(Error::invalid_input(
                "public key",
                format!("expected a PEM \"PUBLIC KEY\" block, got {label:?}"),
            ));
        }
        Self::from_spki_der(doc.as_bytes())
    }

    /// Parses a SEC1 secp256k1 point, compressed (33 bytes) or uncompressed (65 bytes).
    pub fn from_sec1(bytes: &[u8]) -> Result<Self> {
        if !matches!(bytes.len(), 33 | 65) {
            return Err(Error::invalid_input(
                "public key",
                format!(
                    "a SEC1 secp256k1 point is 33 (compressed) or 65 (uncompressed) bytes, got {}",
                    bytes.len()
                ),
            ));
        }
        k256::ecdsa::VerifyingKey::from_sec1_bytes(bytes)
            .map(PublicKey::Secp256k1)
            .map_err(|_| Error::invalid_input("public key", "not a point on secp256k1"))
    }

    /// Parses a raw 32-byte Ed25519 public key.
    pub fn from_ed25519_bytes(bytes: &[u8]) -> Result<Self> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| {
            Error::invalid_input(
                "public key",
                format!("an Ed25519 public key is 32 bytes, got {}", bytes.len()),
            )
        })?;
        ed25519_dalek::VerifyingKey::from_bytes(&arr)
            .map(PublicKey::Ed25519)
            .map_err(|_| Error::invalid_input("public key", "not a valid Ed25519 point"))
    }

    /// DER `SubjectPublicKeyInfo` (RFC 5480 for secp256k1: 88 bytes; RFC 8410 for
    /// Ed25519: 44 bytes), the form [`from_spki_der`](Self::from_spki_der) reads.
    pub fn to_spki_der(&self) -> Result<Vec<u8>> {
        use k256::pkcs8::EncodePublicKey as _;
        let der = match self {
            PublicKey::Secp256k1(k) => k.to_public_key_der(),
            PublicKey::Ed25519(k) => k.to_public_key_der(),
        };
        der.map(|d| d.into_vec()).map_err(|e| {
            Error::invalid_input("public key", format!("cannot encode as SPKI DER: {e}"))
        })
    }

    /// Compressed SEC1 (33 bytes) for secp256k1, the 32 raw bytes for Ed25519.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            PublicKey::Secp256k1(k) => k.to_encoded_point(true).as_bytes().to_vec(),
            PublicKey::Ed25519(k) => k.to_bytes().to_vec(),
        }
    }

    /// Uncompressed SEC1 (65 bytes, `04 ‖ x ‖ y`); `None` for Ed25519.
    pub fn to_uncompressed(&self) -> Option<[u8; 65]> {
        match self {
            PublicKey::Secp256k1(k) => {
                let point = k.to_encoded_point(false);
                point.as_bytes().try_into().ok()
            }
            PublicKey::Ed25519(_) => None,
        }
    }

    /// The Ethereum address of a secp256k1 key (last 20 bytes of keccak-256 of the
    /// uncompressed point), EIP-55 checksummed; `None` for Ed25519.
    pub fn evm_address(&self) -> Option<String> {
        use sha3::{Digest as _, Keccak256};
        let point = self.to_uncompressed()?;
        let hash = Keccak256::digest(&point[1..]);
        let lower = hex::encode(&hash[12..]);
        let check = Keccak256::digest(lower.as_bytes());
        let mut out = String::with_capacity(42);
        out.push_str("0x");
        for (i, c) in lower.chars().enumerate() {
            let nibble = (check[i / 2] >> if i % 2 == 0 { 4 } else { 0 }) & 0xf;
            out.push(if nibble >= 8 {
                c.to_ascii_uppercase()
            } else {
                c
            });
        }
        Some(out)
    }

    /// The secp256k1 verifying key, if this is one.
    pub fn as_secp256k1(&self) -> Option<&k256::ecdsa::VerifyingKey> {
        match self {
            PublicKey::Secp256k1(k) => Some(k),
            PublicKey::Ed25519(_) => None,
        }
    }

    /// The Ed25519 verifying key, if this is one.
    pub fn as_ed25519(&self) -> Option<&ed25519_dalek::VerifyingKey> {
        match self {
            PublicKey::Ed25519(k) => Some(k),
            PublicKey::Secp256k1(_) => None,
        }
    }

    /// Verifies `signature` over `payload` with this key.
    ///
    /// ECDSA verification requires low-s, as keymgr signatures always are.
    pub fn verify(&self, payload: &SignPayload, signature: &Signature) -> Result<()> {
        let ok = match (self, payload, signature) {
            (PublicKey::Secp256k1(k), SignPayload::Prehash(h), Signature::Secp256k1(s)) => {
                k.verify_prehash(h, s.as_k256()).is_ok()
            }
            (PublicKey::Ed25519(k), SignPayload::Message(m), Signature::Ed25519(s)) => {
                // verify_strict implies `verify` (same equation, plus small-order and
                // canonical-R checks).
                let sig = ed25519_dalek::Signature::from_bytes(&s.to_bytes());
                k.verify_strict(m, &sig).is_ok()
            }
            _ => {
                return Err(Error::invalid_input(
                    "signature",
                    format!(
                        "a {} signature over a {} cannot be checked with a {} key",
                        signature.algorithm(),
                        payload.kind(),
                        self.algorithm()
                    ),
                ));
            }
        };
        if ok {
            Ok(())
        } else {
            Err(Error::invalid_input(
                "signature",
                "signature does not verify",
            ))
        }
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PublicKey::{}({})",
            self.algorithm(),
            hex::encode(self.to_bytes())
        )
    }
}

fn curve_name(oid: &ObjectIdentifier) -> &'static str {
    match oid.to_string().as_str() {
        "1.2.840.10045.3.1.7" => " (NIST P-256)",
        "1.3.132.0.34" => " (NIST P-384)",
        "1.3.132.0.35" => " (NIST P-521)",
        _ => "",
    }
}
