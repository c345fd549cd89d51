//! Sign payloads and normalized signatures, with the DER/raw parsing and low-s
//! normalization every provider shares.

use std::fmt;

use crate::{Error, KeyAlgorithm, Result};

/// What to sign, made explicit so a payload can never be used with the wrong algorithm.
#[derive(Clone, PartialEq, Eq)]
pub enum SignPayload {
    /// A 32-byte digest for ECDSA (keccak-256 for EVM, SHA-512Half for XRPL secp256k1).
    Prehash([u8; 32]),
    /// The raw message, for Ed25519 (which hashes internally).
    Message(Vec<u8>),
}

impl SignPayload {
    /// A prehash from a slice, checking its length.
    pub fn prehash(bytes: &[u8]) -> Result<Self> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| {
            Error::invalid_input(
                "digest",
                format!(
                    "an ECDSA prehash must be exactly 32 bytes, got {}",
                    bytes.len()
                ),
            )
        })?;
        Ok(SignPayload::Prehash(arr))
    }

    /// A raw message.
    pub fn message(bytes: impl Into<Vec<u8>>) -> Self {
        SignPayload::Message(bytes.into())
    }

    /// The bytes handed to the backend.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            SignPayload::Prehash(h) => h,
            SignPayload::Message(m) => m,
        }
    }

    /// `"prehash"` or `"message"`.
    pub fn kind(&self) -> &'static str {
        match self {
            SignPayload::Prehash(_) => "prehash",
            SignPayload::Message(_) => "message",
        }
    }

    /// Checks that this payload fits `algorithm`; the error names both.
    pub fn check_algorithm(&self, algorithm: KeyAlgorithm, key: &str) -> Result<()> {
        match (self, algorithm) {
            (SignPayload::Prehash(_), KeyAlgorithm::Secp256k1) => Ok(()),
            (SignPayload::Message(_), KeyAlgorithm::Ed25519) => Ok(()),
            (SignPayload::Message(_), KeyAlgorithm::Secp256k1) => Err(Error::invalid_input(
                "payload",
                format!(
                    "key {key} is secp256k1: it signs a 32-byte prehash (e.g. keccak-256), not a raw message"
                ),
            )),
            (SignPayload::Prehash(_), KeyAlgorithm::Ed25519) => Err(Error::invalid_input(
                "payload",
                format!("key {key} is Ed25519: it signs the raw message, not a prehash"),
            )),
        }
    }
}

impl fmt::Debug for SignPayload {
    // Payloads may be large or sensitive business data: show only kind, size and a hash prefix.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(self.as_bytes());
        write!(
            f,
            "SignPayload::{}({} bytes, sha256 {}…)",
            self.kind(),
            self.as_bytes().len(),
            hex::encode(&digest[..4])
        )
    }
}

/// A secp256k1 ECDSA signature, always low-s (s ≤ n/2).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Secp256k1Signature(k256::ecdsa::Signature);

impl Secp256k1Signature {
    /// Parses a DER `ECDSA-Sig-Value` (AWS, GCP) and normalizes s to the low half.
    pub fn from_der(der: &[u8]) -> Result<Self> {
        let sig = k256::ecdsa::Signature::from_der(der).map_err(|_| {
            Error::invalid_input(
                "signature",
                format!("malformed DER ECDSA signature ({} bytes)", der.len()),
            )
        })?;
        Ok(Self::normalized(sig))
    }

    /// Parses raw `r ‖ s` (64 bytes: PKCS#11, Azure) and normalizes s to the low half.
    pub fn from_raw(raw: &[u8]) -> Result<Self> {
        if raw.len() != 64 {
            return Err(Error::invalid_input(
                "signature",
                format!(
                    "a raw secp256k1 signature is 64 bytes (r ‖ s), got {}",
                    raw.len()
                ),
            ));
        }
        let sig = k256::ecdsa::Signature::from_slice(raw).map_err(|_| {
            Error::invalid_input("signature", "r or s is zero or not below the curve order")
        })?;
        Ok(Self::normalized(sig))
    }

    fn normalized(sig: k256::ecdsa::Signature) -> Self {
        Self(sig.normalize_s().unwrap_or(sig))
    }

    /// Wraps a k256 signature, normalizing s.
    pub fn from_k256(sig: k256::ecdsa::Signature) -> Self {
        Self::normalized(sig)
    }

    /// r as 32 big-endian bytes.
    pub fn r(&self) -> [u8; 32] {
        self.0.r().to_bytes().into()
    }

    /// s as 32 big-endian bytes (low half).
    pub fn s(&self) -> [u8; 32] {
        self.0.s().to_bytes().into()
    }

    /// `r ‖ s`, 64 bytes.
    pub fn to_bytes(&self) -> [u8; 64] {
        self.0.to_bytes().into()
    }

    /// Canonical DER encoding (as XRPL requires).
    pub fn to_der(&self) -> Vec<u8> {
        self.0.to_der().as_bytes().to_vec()
    }

    /// The inner k256 signature.
    pub fn as_k256(&self) -> &k256::ecdsa::Signature {
        &self.0
    }
}

impl fmt::Debug for Secp256k1Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secp256k1Signature({})", hex::encode(self.to_bytes()))
    }
}

/// A 64-byte Ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Ed25519Signature([u8; 64]);

impl Ed25519Signature {
    /// From exactly 64 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        bytes.try_into().map(Self).map_err(|_| {
            Error::invalid_input(
                "signature",
                format!("an Ed25519 signature is 64 bytes, got {}", bytes.len()),
            )
        })
    }

    /// The 64 bytes `R ‖ S`.
    pub fn to_bytes(&self) -> [u8; 64] {
        self.0
    }
}

impl fmt::Debug for Ed25519Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ed25519Signature({})", hex::encode(self.0))
    }
}

/// A normalized signature as every backend returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signature {
    /// secp256k1 (r, s), low-s.
    Secp256k1(Secp256k1Signature),
    /// Ed25519, 64 bytes.
    Ed25519(Ed25519Signature),
}

impl Signature {
    /// The algorithm that made it.
    pub fn algorithm(&self) -> KeyAlgorithm {
        match self {
            Signature::Secp256k1(_) => KeyAlgorithm::Secp256k1,
            Signature::Ed25519(_) => KeyAlgorithm::Ed25519,
        }
    }

    /// `r ‖ s` (64 bytes) or the Ed25519 signature (64 bytes).
    pub fn to_bytes(&self) -> [u8; 64] {
        match self {
            Signature::Secp256k1(s) => s.to_bytes(),
            Signature::Ed25519(s) => s.to_bytes(),
        }
    }

    /// The secp256k1 signature, if this is one.
    pub fn as_secp256k1(&self) -> Option<&Secp256k1Signature> {
        match self {
            Signature::Secp256k1(s) => Some(s),
            Signature::Ed25519(_) => None,
        }
    }

    /// The Ed25519 signature, if this is one.
    pub fn as_ed25519(&self) -> Option<&Ed25519Signature> {
        match self {
            Signature::Ed25519(s) => Some(s),
            Signature::Secp256k1(_) => None,
        }
    }
}

/// A signature as a backend returned it, before normalization.
#[derive(Debug, Clone, Copy)]
pub enum RawSignature<'a> {
    /// DER `ECDSA-Sig-Value` (AWS KMS, Google Cloud KMS).
    EcdsaDer(&'a [u8]),
    /// Raw `r ‖ s` (PKCS#11 `CKM_ECDSA`, Azure `ES256K`).
    EcdsaRaw(&'a [u8]),
    /// 64-byte Ed25519 signature.
    Ed25519(&'a [u8]),
}

#[cfg(test)]
mod tests;
