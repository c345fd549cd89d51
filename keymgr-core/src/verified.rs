//! [`VerifiedSignature`]: a signature core has checked against a public key, carrying
//! what that check proved (the key, the payload and, for secp256k1, the recovery id), so
//! no layer or adapter verifies or recovers again.

use k256::ecdsa::RecoveryId;
use k256::elliptic_curve::ops::{Invert as _, LinearCombination as _, Reduce};
use k256::elliptic_curve::point::AffineCoordinates as _;
use k256::elliptic_curve::scalar::IsHigh as _;
use k256::{ProjectivePoint, Scalar, U256};
use sha2::Digest as _;

use crate::{
    Ed25519Signature, Error, IntegrityReason, KeyAlgorithm, PublicKey, RawSignature, Result,
    Secp256k1Signature, SignPayload, Signature,
};

/// What a [`VerifiedSignature`] was checked over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signed {
    /// The 32-byte ECDSA prehash itself.
    Prehash([u8; 32]),
    /// SHA-256 of the raw (Ed25519) message; the message itself is not kept.
    MessageSha256([u8; 32]),
}

impl Signed {
    fn of(payload: &SignPayload) -> Self {
        match payload {
            SignPayload::Prehash(h) => Signed::Prehash(*h),
            SignPayload::Message(m) => Signed::MessageSha256(sha2::Sha256::digest(m).into()),
        }
    }
}

/// A normalized signature that has been verified against `public_key()` over one payload.
///
/// Only core constructs it, by verifying: [`finish_signature`] (what a backend returned)
/// and [`finish_recoverable`] (an in-process secp256k1 signature). Every
/// [`KeyBackend::sign`](crate::KeyBackend::sign) returns one, so layers, [`KeyManager`]
/// and adapters compare keys and payloads (cheap equality) instead of verifying again, and
/// EVM adapters take the recovery id from [`recovery_id`](Self::recovery_id) instead of
/// searching for it.
///
/// [`KeyManager`]: crate::KeyManager
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSignature {
    signature: Signature,
    public_key: PublicKey,
    recovery_id: Option<RecoveryId>,
    signed: Signed,
    key_version: Option<String>,
}

impl VerifiedSignature {
    /// The signature (low-s `(r, s)` for secp256k1, 64 bytes for Ed25519).
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The signature, dropping what was proven about it.
    pub fn into_signature(self) -> Signature {
        self.signature
    }

    /// The public key the signature verified against (the version that signed).
    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    /// The provider's version of the key that signed (`3` on an HSM for `LABEL.v3`, the
    /// key id on AWS KMS, the version number on GCP, ...), as in
    /// [`KeyRef::versioned`](crate::KeyRef::versioned); `None` if the provider did not say.
    pub fn key_version(&self) -> Option<&str> {
        self.key_version.as_deref()
    }

    /// Records which version of the key signed. Providers call this on what
    /// [`finish_signature`] or [`finish_recoverable`] returned; it changes nothing that
    /// verification proved ([`public_key`](Self::public_key) is the key that verified).
    #[must_use]
    pub fn with_key_version(mut self, version: impl Into<String>) -> Self {
        self.key_version = Some(version.into());
        self
    }

    /// For secp256k1, the recovery id computed during verification (the y parity of R,
    /// and whether x(R) was reduced mod n); `None` for Ed25519.
    pub fn recovery_id(&self) -> Option<RecoveryId> {
        self.recovery_id
    }

    /// Whether the signature was verified over exactly `payload`.
    pub fn is_over(&self, payload: &SignPayload) -> bool {
        match (self.signed, payload) {
            (Signed::Prehash(a), SignPayload::Prehash(b)) => a == *b,
            (Signed::MessageSha256(_), SignPayload::Message(_)) => {
                self.signed == Signed::of(payload)
            }
            _ => false,
        }
    }

    /// The algorithm that made it.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.signature.algorithm()
    }

    /// `r ‖ s` (64 bytes) or the Ed25519 signature (64 bytes).
    pub fn to_bytes(&self) -> [u8; 64] {
        self.signature.to_bytes()
    }

    /// The secp256k1 signature, if this is one.
    pub fn as_secp256k1(&self) -> Option<&Secp256k1Signature> {
        self.signature.as_secp256k1()
    }

    /// The Ed25519 signature, if this is one.
    pub fn as_ed25519(&self) -> Option<&Ed25519Signature> {
        self.signature.as_ed25519()
    }
}

impl From<VerifiedSignature> for Signature {
    fn from(v: VerifiedSignature) -> Self {
        v.signature
    }
}

/// Verifies a low-s secp256k1 signature over `prehash` and returns its recovery id.
///
/// With the `libsecp256k1` feature (on in the `keymgr` facade, the CLI and every remote
/// provider crate), as follows. Without it (a pure-Rust build, no C compiler needed),
/// k256's double-scalar multiplication alone decides, about 1.5 times slower.
///
/// A signature is valid for Q with recovery id v exactly when public-key recovery
/// (SEC 1 §4.1.6) with v yields Q, so recovering and comparing with the known key proves
/// validity and gives the parity together. Recovery runs in libsecp256k1 (the
/// `secp256k1` crate, Bitcoin Core's library): measured in one process (criterion,
/// release, 2-core machine), one recovery there takes 47 to 51 µs against 109 to 115 µs
/// for one k256 `verify_prehash` (R' = u1·G + u2·Q) and 226 µs for one k256 recovery. The
/// even-y id is tried first and the odd one second (on average 1.5 recoveries, 73 µs);
/// only when neither matches, k256's double-scalar multiplication decides, which also
/// covers an x-reduced R (r ≥ n, about 2^-128 per honest signature) and is the
/// authority for a refusal. It is independent of k256, which signs for the in-process
/// backends. High-s signatures are refused, as k256's `verify_prehash` refuses them.
pub fn verify_recoverable(
    public_key: &k256::ecdsa::VerifyingKey,
    prehash: &[u8; 32],
    signature: &k256::ecdsa::Signature,
) -> Option<RecoveryId> {
    if bool::from(signature.s().is_high()) {
        return None;
    }
    #[cfg(feature = "libsecp256k1")]
    {
        let expected = public_key.to_encoded_point(false);
        [false, true]
            .into_iter()
            .map(|y_odd| RecoveryId::new(y_odd, false))
            .find(|&id| recovers_to(expected.as_bytes(), prehash, signature, id))
            .or_else(|| verify_double_scalar(public_key, prehash, signature))
    }
    #[cfg(not(feature = "libsecp256k1"))]
    verify_double_scalar(public_key, prehash, signature)
}

/// Whether (`signature`, `id`) is valid over `prehash` for `public_key` (low-s checked by
/// the caller): one libsecp256k1 recovery, or k256's double-scalar verification.
fn verifies_with_id(
    public_key: &k256::ecdsa::VerifyingKey,
    prehash: &[u8; 32],
    signature: &k256::ecdsa::Signature,
    id: RecoveryId,
) -> bool {
    #[cfg(feature = "libsecp256k1")]
    {
        let expected = public_key.to_encoded_point(false);
        recovers_to(expected.as_bytes(), prehash, signature, id)
    }
    #[cfg(not(feature = "libsecp256k1"))]
    {
        verify_double_scalar(public_key, prehash, signature) == Some(id)
    }
}

/// Whether libsecp256k1 recovers the uncompressed SEC 1 key `expected` from
/// (`signature`, `id`) over `prehash`.
#[cfg(feature = "libsecp256k1")]
fn recovers_to(
    expected: &[u8],
    prehash: &[u8; 32],
    signature: &k256::ecdsa::Signature,
    id: RecoveryId,
) -> bool {
    let id = match id.to_byte() {
        0 => secp256k1::ecdsa::RecoveryId::Zero,
        1 => secp256k1::ecdsa::RecoveryId::One,
        _ => return false,
    };
    secp256k1::ecdsa::RecoverableSignature::from_compact(&signature.to_bytes(), id)
        .and_then(|sig| {
            secp256k1::SECP256K1.recover_ecdsa(secp256k1::Message::from_digest(*prehash), &sig)
        })
        .is_ok_and(|recovered| recovered.serialize_uncompressed().as_slice() == expected)
}

/// SEC 1 §4.1.4 in k256: R' = u1·G + u2·Q (u1 = z/s, u2 = r/s), valid when x(R') ≡ r;
/// the parity of y(R') is the recovery id.
pub(crate) fn verify_double_scalar(
    public_key: &k256::ecdsa::VerifyingKey,
    prehash: &[u8; 32],
    signature: &k256::ecdsa::Signature,
) -> Option<RecoveryId> {
    let z = <Scalar as Reduce<U256>>::reduce_bytes(&(*prehash).into());
    let (r, s) = signature.split_scalars();
    let s_inv = *s.invert_vartime();
    let u1 = z * s_inv;
    let u2 = *r * s_inv;
    let q = ProjectivePoint::from(*public_key.as_affine());
    let big_r = ProjectivePoint::lincomb(&ProjectivePoint::GENERATOR, &u1, &q, &u2).to_affine();
    let x = big_r.x();
    let x_reduced = <Scalar as Reduce<U256>>::reduce_bytes(&x);
    if x_reduced != *r {
        return None;
    }
    let is_x_reduced = x != r.to_bytes();
    Some(RecoveryId::new(big_r.y_is_odd().into(), is_x_reduced))
}

fn integrity(key: &str, reason: IntegrityReason, detail: String) -> Error {
    Error::integrity_failure(key, reason, detail)
}

/// Normalizes what a backend returned and verifies it against the key's public key, once.
///
/// Every remote provider ends its `sign` with this: a wrong key, a faulty HSM or a
/// corrupted response becomes an [`Error::Integrity`] naming `key` with a typed
/// [`IntegrityReason`] (malformed response, algorithm mismatch, does not verify), never a
/// valid-looking signature. For secp256k1 the recovery id comes out of the same
/// verification ([`verify_recoverable`]).
pub fn finish_signature(
    key: &str,
    public_key: &PublicKey,
    payload: &SignPayload,
    raw: RawSignature<'_>,
) -> Result<VerifiedSignature> {
    let malformed = |e: Error| {
        Error::integrity_failure(
            key,
            IntegrityReason::MalformedResponse,
            "backend returned an unusable signature",
        )
        .with_source(e)
    };
    let signature = match raw {
        RawSignature::EcdsaDer(b) => {
            Signature::Secp256k1(Secp256k1Signature::from_der(b).map_err(malformed)?)
        }
        RawSignature::EcdsaRaw(b) => {
            Signature::Secp256k1(Secp256k1Signature::from_raw(b).map_err(malformed)?)
        }
        RawSignature::Ed25519(b) => {
            Signature::Ed25519(Ed25519Signature::from_slice(b).map_err(malformed)?)
        }
    };
    verify_once(key, public_key, payload, signature, None)
}

/// Verifies an in-process secp256k1 signature (env, testkit) once and keeps the recovery
/// id signing produced (`sign_prehash_recoverable`), cross-checked against the one the
/// verification computes: a fault in either is an [`Error::Integrity`].
///
/// `signature` may be high-s; it is normalized and `recovery_id` flipped accordingly.
pub fn finish_recoverable(
    key: &str,
    public_key: &PublicKey,
    prehash: &[u8; 32],
    signature: k256::ecdsa::Signature,
    recovery_id: RecoveryId,
) -> Result<VerifiedSignature> {
    let (signature, recovery_id) = match signature.normalize_s() {
        Some(low) => (
            low,
            RecoveryId::new(!recovery_id.is_y_odd(), recovery_id.is_x_reduced()),
        ),
        None => (signature, recovery_id),
    };
    verify_once(
        key,
        public_key,
        &SignPayload::Prehash(*prehash),
        Signature::Secp256k1(Secp256k1Signature::from_k256(signature)),
        Some(recovery_id),
    )
}

fn verify_once(
    key: &str,
    public_key: &PublicKey,
    payload: &SignPayload,
    signature: Signature,
    expected_recovery_id: Option<RecoveryId>,
) -> Result<VerifiedSignature> {
    let does_not_verify = || {
        integrity(
            key,
            IntegrityReason::DoesNotVerify,
            format!(
                "the backend's {} signature does not verify against the key's public key \
                 (wrong key, faulty device or corrupted response)",
                signature.algorithm()
            ),
        )
    };
    let recovery_id = match (public_key, payload, &signature) {
        (PublicKey::Secp256k1(pk), SignPayload::Prehash(h), Signature::Secp256k1(s)) => {
            // A recovery id reported by the signer is checked with one recovery; anything
            // else takes the full search, which also tells a bad id from a bad signature.
            let id = match expected_recovery_id {
                Some(id)
                    if !bool::from(s.as_k256().s().is_high())
                        && verifies_with_id(pk, h, s.as_k256(), id) =>
                {
                    id
                }
                _ => verify_recoverable(pk, h, s.as_k256()).ok_or_else(does_not_verify)?,
            };
            if expected_recovery_id.is_some_and(|e| e != id) {
                return Err(integrity(
                    key,
                    IntegrityReason::DoesNotVerify,
                    "signing reported another recovery id than verification found (faulty signer)"
                        .into(),
                ));
            }
            Some(id)
        }
        (PublicKey::Ed25519(pk), SignPayload::Message(m), Signature::Ed25519(s)) => {
            // verify_strict is RFC 8032's equation plus rejection of small-order keys and
            // non-canonical R; it implies `verify`, so one call is enough.
            let sig = ed25519_dalek::Signature::from_bytes(&s.to_bytes());
            pk.verify_strict(m, &sig).map_err(|_| does_not_verify())?;
            None
        }
        _ => {
            return Err(integrity(
                key,
                IntegrityReason::AlgorithmMismatch,
                format!(
                    "backend returned a {} signature over a {} for a {} key",
                    signature.algorithm(),
                    payload.kind(),
                    public_key.algorithm()
                ),
            ));
        }
    };
    Ok(VerifiedSignature {
        signature,
        public_key: public_key.clone(),
        recovery_id,
        signed: Signed::of(payload),
        key_version: None,
    })
}
