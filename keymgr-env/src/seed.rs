//! XRPL family seed → key pair, as rippled and ripple-keypairs derive it.

use k256::elliptic_curve::PrimeField as _;
use k256::elliptic_curve::sec1::ToEncodedPoint as _;
use k256::{NonZeroScalar, Scalar};
use keymgr_core::xrpl::{self, SeedType};
use keymgr_core::{Error, KeyAlgorithm, Result};
use sha2::{Digest as _, Sha512};
use zeroize::{Zeroize as _, Zeroizing};

/// A key pair derived from a family seed.
pub(crate) enum SeedKey {
    Secp256k1(k256::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
}

/// Derives the account key pair (account index 0) from an `s...`/`sEd...` seed, for
/// `key_type` when given (rippled keeps the key type apart from the seed: a plain `s...`
/// seed may be an Ed25519 account's), else for the type the seed's prefix names.
///
/// An `sEd...` seed with secp256k1 is refused: that prefix exists only for Ed25519.
pub(crate) fn derive(seed: &str, key_type: Option<KeyAlgorithm>) -> Result<SeedKey> {
    let (prefix_type, entropy) = xrpl::decode_seed(seed)?;
    let kind = match (prefix_type, key_type) {
        (SeedType::Ed25519, Some(KeyAlgorithm::Secp256k1)) => {
            return Err(Error::invalid_input(
                "XRPL seed",
                "an sEd... seed is an Ed25519 seed; it cannot serve a secp256k1 key",
            ));
        }
        (_, Some(KeyAlgorithm::Ed25519)) => SeedType::Ed25519,
        (_, Some(KeyAlgorithm::Secp256k1)) => SeedType::Secp256k1,
        (_, Some(other)) => {
            return Err(Error::invalid_input(
                "XRPL seed",
                format!("XRPL seeds derive secp256k1 or Ed25519 keys, not {other}"),
            ));
        }
        (from_prefix, None) => from_prefix,
    };
    match kind {
        SeedType::Ed25519 => {
            // Private key = SHA-512Half(entropy).
            let secret = Zeroizing::new(xrpl::sha512_half(&*entropy));
            Ok(SeedKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(
                &secret,
            )))
        }
        SeedType::Secp256k1 => {
            // Intermediate secrets are zeroized on drop too.
            let root = Zeroizing::new(derive_scalar(&*entropy, None)?);
            let root_public = (k256::ProjectivePoint::GENERATOR * **root)
                .to_affine()
                .to_encoded_point(true);
            let tweak = Zeroizing::new(derive_scalar(root_public.as_bytes(), Some(0))?);
            let sum = Zeroizing::new(**root + **tweak);
            let account = NonZeroScalar::new(*sum)
                .into_option()
                .ok_or_else(|| seed_error("derived account key is zero"))?;
            Ok(SeedKey::Secp256k1(k256::ecdsa::SigningKey::from(account)))
        }
    }
}

/// The first `SHA-512Half(bytes ‖ [discriminator] ‖ i)` that is a valid nonzero scalar.
fn derive_scalar(bytes: &[u8], discriminator: Option<u32>) -> Result<NonZeroScalar> {
    for i in 0u32..=u32::MAX {
        let mut hasher = Sha512::new();
        hasher.update(bytes);
        if let Some(d) = discriminator {
            hasher.update(d.to_be_bytes());
        }
        hasher.update(i.to_be_bytes());
        let mut digest = hasher.finalize();
        let mut half = Zeroizing::new([0u8; 32]);
        half.copy_from_slice(&digest[..32]);
        AsMut::<[u8]>::as_mut(&mut digest).zeroize();
        let candidate: Option<Scalar> = Scalar::from_repr((*half).into()).into();
        if let Some(s) = candidate.and_then(|s| NonZeroScalar::new(s).into_option()) {
            return Ok(s);
        }
    }
    Err(seed_error("no valid secp256k1 scalar"))
}

fn seed_error(reason: &str) -> Error {
    Error::invalid_input("XRPL seed", reason)
}
