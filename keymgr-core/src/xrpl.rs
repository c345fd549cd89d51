//! XRP Ledger encodings shared by the env backend (family seeds) and keymgr-xrp
//! (addresses): base58check with the XRPL alphabet and SHA-512Half.

use sha2::{Digest as _, Sha512};
use zeroize::Zeroizing;

use crate::{Error, Result};

/// Version byte of a classic account id (`r...`).
pub const ACCOUNT_ID_PREFIX: &[u8] = &[0x00];
/// Version byte of a secp256k1 family seed (`s...`).
pub const SECP256K1_SEED_PREFIX: &[u8] = &[0x21];
/// Version bytes of an Ed25519 family seed (`sEd...`).
pub const ED25519_SEED_PREFIX: &[u8] = &[0x01, 0xE1, 0x4B];

/// First 32 bytes of SHA-512, XRPL's standard hash.
pub fn sha512_half(data: &[u8]) -> [u8; 32] {
    let full = Sha512::digest(data);
    let mut out = [0u8; 32];
    out.copy_from_slice(&full[..32]);
    out
}

/// Base58check-encodes `prefix ‖ payload` with the XRPL alphabet.
pub fn encode_base58check(prefix: &[u8], payload: &[u8]) -> String {
    let mut bytes = Vec::with_capacity(prefix.len() + payload.len());
    bytes.extend_from_slice(prefix);
    bytes.extend_from_slice(payload);
    bs58::encode(bytes)
        .with_alphabet(bs58::Alphabet::RIPPLE)
        .with_check()
        .into_string()
}

/// Decodes a base58check string in the XRPL alphabet whose payload starts with `prefix`,
/// returning the bytes after the prefix (the inverse of [`encode_base58check`]).
///
/// `field` names the input in errors; errors never echo the input.
///
/// Inputs longer than [`MAX_BASE58_LEN`] characters are refused before decoding
/// (base58 decoding is quadratic in the input length).
pub fn decode_base58check(field: &str, prefix: &[u8], s: &str) -> Result<Vec<u8>> {
    check_base58_len(field, s)?;
    let bytes = bs58::decode(s)
        .with_alphabet(bs58::Alphabet::RIPPLE)
        .with_check(None)
        .into_vec()
        .map_err(|e| {
            Error::invalid_input(
                field,
                format!(
                    "not a base58check string in the XRPL alphabet ({})",
                    redact_bs58(&e)
                ),
            )
        })?;
    match bytes.strip_prefix(prefix) {
        Some(payload) => Ok(payload.to_vec()),
        None => Err(Error::invalid_input(
            field,
            format!(
                "wrong version prefix: expected {}",
                hex::encode_upper(prefix)
            ),
        )),
    }
}

/// The longest base58check string the decoders here accept, in characters: XRPL's
/// encodings (seeds, account ids, public keys) are at most 38 bytes, 52 characters.
pub const MAX_BASE58_LEN: usize = 64;

fn check_base58_len(field: &str, s: &str) -> Result<()> {
    if s.len() > MAX_BASE58_LEN {
        return Err(Error::invalid_input(
            field,
            format!(
                "{} bytes is too long for base58check (at most {MAX_BASE58_LEN} characters)",
                s.len()
            ),
        ));
    }
    Ok(())
}

/// The classic account id of a public key: RIPEMD-160(SHA-256(public key)).
///
/// `public_key` is in XRPL form: 33-byte compressed secp256k1, or `0xED ‖ 32 bytes`.
pub fn account_id(public_key: &[u8]) -> [u8; 20] {
    use ripemd::Ripemd160;
    let sha = sha2::Sha256::digest(public_key);
    Ripemd160::digest(sha).into()
}

/// The classic `r...` address of a public key in XRPL form (see [`account_id`]).
pub fn classic_address(public_key: &[u8]) -> String {
    encode_base58check(ACCOUNT_ID_PREFIX, &account_id(public_key))
}

/// Which algorithm an XRPL family seed is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeedType {
    /// `s...` seeds: secp256k1 (XRPL's default).
    Secp256k1,
    /// `sEd...` seeds.
    Ed25519,
}

/// The 16 bytes of entropy in a family seed, zeroized on drop.
pub type SeedEntropy = Zeroizing<[u8; 16]>;

/// Decodes an XRPL family seed (`s...` or `sEd...`) into its type and 16-byte entropy.
///
/// Errors never echo the seed.
pub fn decode_seed(seed: &str) -> Result<(SeedType, SeedEntropy)> {
    check_base58_len("XRPL seed", seed.trim())?;
    let bytes = Zeroizing::new(
        bs58::decode(seed.trim())
            .with_alphabet(bs58::Alphabet::RIPPLE)
            .with_check(None)
            .into_vec()
            .map_err(|e| {
                Error::invalid_input(
                    "XRPL seed",
                    format!(
                        "not a base58check string in the XRPL alphabet ({})",
                        redact_bs58(&e)
                    ),
                )
            })?,
    );
    let (kind, entropy) = if bytes.len() == 19 && bytes.starts_with(ED25519_SEED_PREFIX) {
        (SeedType::Ed25519, &bytes[3..])
    } else if bytes.len() == 17 && bytes.starts_with(SECP256K1_SEED_PREFIX) {
        (SeedType::Secp256k1, &bytes[1..])
    } else {
        return Err(Error::invalid_input(
            "XRPL seed",
            "not a family seed: expected an s... (secp256k1) or sEd... (Ed25519) seed of 16 bytes",
        ));
    };
    let mut out = Zeroizing::new([0u8; 16]);
    out.copy_from_slice(entropy);
    Ok((kind, out))
}

fn redact_bs58(e: &bs58::decode::Error) -> &'static str {
    // bs58's messages can quote characters of the input; name the class only.
    match e {
        bs58::decode::Error::InvalidCharacter { .. } => "invalid character",
        bs58::decode::Error::InvalidChecksum { .. } => "checksum mismatch",
        bs58::decode::Error::NoChecksum => "too short for a checksum",
        _ => "malformed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn genesis_seed_decodes() {
        // rippled's genesis account: passphrase "masterpassphrase"
        // (XRPL docs, "wallet_propose"): seed snoPBrXtMeMyMHUVTgbuqAfg1SUTb,
        // entropy DEDCE9CE67B451D852FD4E846FCDE31C.
        let (t, e) = decode_seed("snoPBrXtMeMyMHUVTgbuqAfg1SUTb").unwrap();
        assert_eq!(t, SeedType::Secp256k1);
        assert_eq!(hex::encode_upper(*e), "DEDCE9CE67B451D852FD4E846FCDE31C");
        assert_eq!(
            encode_base58check(SECP256K1_SEED_PREFIX, &*e),
            "snoPBrXtMeMyMHUVTgbuqAfg1SUTb"
        );
    }

    #[test]
    fn genesis_address() {
        // Same XRPL docs vector: public key -> rHb9CJAWyB4rj91VRWn96DkukG4bwdtyTh.
        let pk = hex::decode("0330E7FC9D56BB25D6893BA3F317AE5BCF33B3291BD63DB32654A313222F7FD020")
            .unwrap();
        assert_eq!(classic_address(&pk), "rHb9CJAWyB4rj91VRWn96DkukG4bwdtyTh");
    }

    #[test]
    fn base58check_round_trip() {
        // XRPL docs (channel_verify example): the account public key
        // aB44YfzW24VDEJQ2UuLPV2PvqcPCSoLnL7y5M1EzhdW4LnK5xMS3 (version byte 0x23).
        let pk = decode_base58check(
            "public key",
            &[0x23],
            "aB44YfzW24VDEJQ2UuLPV2PvqcPCSoLnL7y5M1EzhdW4LnK5xMS3",
        )
        .unwrap();
        assert_eq!(
            hex::encode_upper(&pk),
            "023693F15967AE357D0327974AD46FE3C127113B1110D6044FD41E723689F81CC6"
        );
        assert_eq!(
            encode_base58check(&[0x23], &pk),
            "aB44YfzW24VDEJQ2UuLPV2PvqcPCSoLnL7y5M1EzhdW4LnK5xMS3"
        );
        let e = decode_base58check("public key", &[0x23], "rHb9CJAWyB4rj91VRWn96DkukG4bwdtyTh")
            .unwrap_err();
        assert!(e.to_string().contains("prefix"), "{e}");
        let corrupted = "aB44YfzW24VDEJQ2UuLPV2PvqcPCSoLnL7y5M1EzhdW4LnK5xMS4";
        assert!(decode_base58check("x", &[0x23], corrupted).is_err());
    }

    #[test]
    fn long_inputs_are_refused_before_decoding() {
        let long = "r".repeat(60_000);
        for e in [
            decode_base58check("public key", &[0x23], &long).unwrap_err(),
            decode_seed(&long).unwrap_err(),
        ] {
            assert!(matches!(e, Error::InvalidInput { .. }), "{e}");
            assert!(!e.to_string().contains(&long[..100]), "{e}");
        }
    }

    #[test]
    fn bad_seeds_do_not_echo() {
        for bad in [
            "",
            "snoPBrXtMeMyMHUVTgbuqAfg1SUTc",
            "0OIl",
            "rHb9CJAWyB4rj91VRWn96DkukG4bwdtyTh",
        ] {
            let e = decode_seed(bad).unwrap_err();
            if !bad.is_empty() {
                assert!(!e.to_string().contains(bad), "{e}");
            }
        }
    }
}
