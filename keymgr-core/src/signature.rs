//! Public keys, sign payloads and normalized signatures, with the parsing, low-s
//! normalization and verification every provider shares.

use std::fmt;

use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
use k256::pkcs8::der::{Decode as _, asn1::ObjectIdentifier};
use k256::pkcs8::spki::SubjectPublicKeyInfoRef;

use crate::{Error, KeyAlgorithm, Result};

/// `id-ecPublicKey` (RFC 5480).
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// `secp256k1` (SEC 2).
pub const OID_SECP256K1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.10");
/// `id-Ed25519` (RFC 8410).
pub const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

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
                k.verify_prehash(h, &s.0).is_ok()
            }
            (PublicKey::Ed25519(k), SignPayload::Message(m), Signature::Ed25519(s)) => {
                // verify_strict implies `verify` (same equation, plus small-order and
                // canonical-R checks).
                let sig = ed25519_dalek::Signature::from_bytes(&s.0);
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
mod tests {
    use super::*;
    use crate::{IntegrityReason, finish_recoverable, finish_signature, verify_recoverable};
    use k256::ecdsa::SigningKey;
    use k256::elliptic_curve::scalar::IsHigh as _;
    use k256::pkcs8::EncodePublicKey as _;
    use proptest::prelude::*;

    fn secp_key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed.max(1); 32].into()).unwrap()
    }

    #[test]
    fn high_s_der_is_normalized() {
        let sk = secp_key(7);
        let h = [0x42u8; 32];
        let (sig, _) = sk.sign_prehash_recoverable(&h).unwrap();
        let low = sig.normalize_s().unwrap_or(sig);
        // Build the high-s twin: s' = n - s.
        let high = k256::ecdsa::Signature::from_scalars(low.r(), -*low.s()).unwrap();
        assert!(bool::from(high.s().is_high()));
        let parsed = Secp256k1Signature::from_der(high.to_der().as_bytes()).unwrap();
        assert_eq!(parsed.as_k256(), &low);
        let parsed_raw = Secp256k1Signature::from_raw(&high.to_bytes()).unwrap();
        assert_eq!(parsed_raw.as_k256(), &low);
        let pk = PublicKey::Secp256k1(*sk.verifying_key());
        finish_signature(
            "k",
            &pk,
            &SignPayload::Prehash(h),
            RawSignature::EcdsaDer(high.to_der().as_bytes()),
        )
        .unwrap();
    }

    #[test]
    fn malformed_der_is_typed_error() {
        for bad in [&[][..], &[0x30], &[0x30, 0x02, 0x02, 0x00], &[0xff; 72]] {
            let e = Secp256k1Signature::from_der(bad).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidInput);
        }
        assert!(Secp256k1Signature::from_raw(&[0u8; 64]).is_err());
        assert!(Secp256k1Signature::from_raw(&[1u8; 63]).is_err());
    }

    #[test]
    fn spki_round_trip_and_wrong_curve() {
        let sk = secp_key(3);
        let der = sk.verifying_key().to_public_key_der().unwrap();
        let pk = PublicKey::from_spki_der(der.as_bytes()).unwrap();
        assert_eq!(pk.as_secp256k1(), Some(sk.verifying_key()));
        let pem = sk
            .verifying_key()
            .to_public_key_pem(Default::default())
            .unwrap();
        assert_eq!(PublicKey::from_spki_pem(&pem).unwrap(), pk);

        let ed = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        let der = ed.verifying_key().to_public_key_der().unwrap();
        let pk = PublicKey::from_spki_der(der.as_bytes()).unwrap();
        assert_eq!(pk.algorithm(), KeyAlgorithm::Ed25519);

        // A P-256 SPKI (RFC 5480 structure, prime256v1 OID).
        let p256 = hex::decode(concat!(
            "3059301306072a8648ce3d020106082a8648ce3d03010703420004",
            "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296",
            "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5"
        ))
        .unwrap();
        let e = PublicKey::from_spki_der(&p256).unwrap_err();
        assert!(e.to_string().contains("1.2.840.10045.3.1.7"), "{e}");
        assert!(e.to_string().contains("P-256"), "{e}");
    }

    #[test]
    fn evm_address_known_answer() {
        // The private key and address from web3.js's `eth.accounts` documentation.
        let sk = k256::ecdsa::SigningKey::from_slice(
            &hex::decode("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
                .unwrap(),
        )
        .unwrap();
        let pk = PublicKey::Secp256k1(*sk.verifying_key());
        assert_eq!(
            pk.evm_address().as_deref(),
            Some("0x2c7536E3605D9C16a7a3D7b1898e529396a65c23")
        );
        let ed = PublicKey::from_ed25519_bytes(&[
            0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64,
            0x07, 0x3a, 0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68,
            0xf7, 0x07, 0x51, 0x1a,
        ])
        .unwrap();
        assert_eq!(ed.evm_address(), None);
    }

    #[test]
    fn truncated_inputs_are_errors() {
        let sk = secp_key(5);
        let der = sk.verifying_key().to_public_key_der().unwrap();
        let der = der.as_bytes();
        for n in 0..der.len() {
            assert!(PublicKey::from_spki_der(&der[..n]).is_err());
        }
        for compressed in [true, false] {
            let sec1 = sk.verifying_key().to_encoded_point(compressed);
            let sec1 = sec1.as_bytes();
            assert!(PublicKey::from_sec1(sec1).is_ok());
            for n in 0..sec1.len() {
                assert!(PublicKey::from_sec1(&sec1[..n]).is_err(), "{n} bytes");
            }
        }
        assert!(PublicKey::from_sec1(&[4; 10]).is_err());
        assert!(PublicKey::from_ed25519_bytes(&[0; 31]).is_err());
        assert!(PublicKey::from_spki_pem("not pem").is_err());
    }

    #[test]
    fn payload_algorithm_mismatch() {
        let e = SignPayload::message(b"hi".to_vec())
            .check_algorithm(KeyAlgorithm::Secp256k1, "evm")
            .unwrap_err();
        assert!(e.to_string().contains("evm") && e.to_string().contains("prehash"));
        assert!(
            SignPayload::Prehash([0; 32])
                .check_algorithm(KeyAlgorithm::Ed25519, "xrp")
                .is_err()
        );
        assert!(SignPayload::prehash(&[0; 31]).is_err());
    }

    #[test]
    fn wrong_key_is_integrity_error() {
        let sk = secp_key(1);
        let other = PublicKey::Secp256k1(*secp_key(2).verifying_key());
        let h = [7u8; 32];
        let (sig, _) = sk.sign_prehash_recoverable(&h).unwrap();
        let e = finish_signature(
            "evm",
            &other,
            &SignPayload::Prehash(h),
            RawSignature::EcdsaRaw(&sig.to_bytes()),
        )
        .unwrap_err();
        assert_eq!(e.integrity_reason(), Some(IntegrityReason::DoesNotVerify));
        assert!(matches!(&e, Error::Integrity { key, .. } if key == "evm"));
        // A flipped recovery id from an in-process signer is a fault, not a signature.
        let (sig, rid) = sk.sign_prehash_recoverable(&h).unwrap();
        let own = PublicKey::Secp256k1(*sk.verifying_key());
        let flipped = k256::ecdsa::RecoveryId::new(!rid.is_y_odd(), rid.is_x_reduced());
        let e = finish_recoverable("evm", &own, &h, sig, flipped).unwrap_err();
        assert_eq!(e.integrity_reason(), Some(IntegrityReason::DoesNotVerify));
        // Garbage and the wrong algorithm have their own reasons, with the cause kept.
        let e = finish_signature(
            "evm",
            &own,
            &SignPayload::Prehash(h),
            RawSignature::EcdsaDer(&[0x30, 1]),
        )
        .unwrap_err();
        assert_eq!(
            e.integrity_reason(),
            Some(IntegrityReason::MalformedResponse)
        );
        assert!(std::error::Error::source(&e).is_some());
        let e = finish_signature(
            "evm",
            &own,
            &SignPayload::Prehash(h),
            RawSignature::Ed25519(&[1; 64]),
        )
        .unwrap_err();
        assert_eq!(
            e.integrity_reason(),
            Some(IntegrityReason::AlgorithmMismatch)
        );
        // A verified signature is bound to its payload.
        let ok = finish_recoverable("evm", &own, &h, sig, rid).unwrap();
        assert!(ok.is_over(&SignPayload::Prehash(h)));
        assert!(!ok.is_over(&SignPayload::Prehash([8; 32])));
        assert!(!ok.is_over(&SignPayload::message(h.to_vec())));
        let ed =
            PublicKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[1; 32]).verifying_key());
        let e = finish_signature(
            "xrp",
            &ed,
            &SignPayload::message(vec![1]),
            RawSignature::Ed25519(&[0; 64]),
        )
        .unwrap_err();
        assert_eq!(e.integrity_reason(), Some(IntegrityReason::DoesNotVerify));
    }

    proptest! {
        #[test]
        fn secp_sign_verify_der_round_trip(seed in any::<[u8; 32]>(), h in any::<[u8; 32]>()) {
            let Ok(sk) = SigningKey::from_bytes(&seed.into()) else { return Ok(()) };
            let (sig, _) = sk.sign_prehash_recoverable(&h).unwrap();
            let pk = PublicKey::Secp256k1(*sk.verifying_key());
            let verified = finish_signature("k", &pk, &SignPayload::Prehash(h), RawSignature::EcdsaDer(sig.to_der().as_bytes())).unwrap();
            let s = *verified.as_secp256k1().unwrap();
            prop_assert!(!bool::from(s.as_k256().s().is_high()));
            prop_assert_eq!(Secp256k1Signature::from_der(&s.to_der()).unwrap(), s);
            let rid = verified.recovery_id().unwrap();
            prop_assert_eq!(Some(rid), verify_recoverable(sk.verifying_key(), &h, s.as_k256()));
            let rec = k256::ecdsa::VerifyingKey::recover_from_prehash(&h, s.as_k256(), rid).unwrap();
            prop_assert_eq!(&rec, sk.verifying_key());
            // The in-process path keeps signing's recovery id, which must agree.
            let (sig2, rid2) = sk.sign_prehash_recoverable(&h).unwrap();
            let local = finish_recoverable("k", &pk, &h, sig2, rid2).unwrap();
            prop_assert_eq!(local.recovery_id(), Some(rid));
            prop_assert!(local.is_over(&SignPayload::Prehash(h)));
        }

        #[test]
        fn ed25519_sign_verify(seed in any::<[u8; 32]>(), msg in proptest::collection::vec(any::<u8>(), 0..256)) {
            use ed25519_dalek::Signer as _;
            let sk = ed25519_dalek::SigningKey::from_bytes(&seed);
            let sig = sk.sign(&msg);
            let pk = PublicKey::Ed25519(sk.verifying_key());
            let p = SignPayload::message(msg.clone());
            finish_signature("k", &pk, &p, RawSignature::Ed25519(&sig.to_bytes())).unwrap();
            let mut tampered = msg.clone();
            tampered.push(0);
            prop_assert!(finish_signature("k", &pk, &SignPayload::message(tampered), RawSignature::Ed25519(&sig.to_bytes())).is_err());
        }

        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = PublicKey::from_spki_der(&bytes);
            let _ = PublicKey::from_sec1(&bytes);
            let _ = Secp256k1Signature::from_der(&bytes);
            let _ = Secp256k1Signature::from_raw(&bytes);
        }
    }
}
