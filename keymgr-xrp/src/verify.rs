//! Claim verification: needs only the public key, never a backend.

use ed25519_dalek::Verifier as _;
use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
use k256::elliptic_curve::scalar::IsHigh as _;
use keymgr_core::{PublicKey, xrpl};

use crate::error::hex_problem;
use crate::{ChannelId, Drops, IntoChannelId, IntoDrops, XrpError, XrplPublicKey, encode_claim};

/// The longest DER ECDSA signature over secp256k1 (two 33-byte integers + headers).
const MAX_DER_LEN: usize = 72;

/// Whether `signature` (hex) is a valid claim by `public_key` (hex or `a...` base58) for
/// `amount` drops on `channel`. Malformed inputs are simply `false`; use
/// [`try_verify_claim`] to learn which input was malformed.
///
/// Accepts what rippled accepts for a `PaymentChannelClaim`: Ed25519 signatures over the
/// encoded claim, or canonical DER secp256k1 signatures with low s over its SHA-512Half.
pub fn verify_claim(
    channel: impl IntoChannelId,
    amount: impl IntoDrops,
    signature: &str,
    public_key: &str,
) -> bool {
    try_verify_claim(channel, amount, signature, public_key).unwrap_or(false)
}

/// Like [`verify_claim`], but a malformed channel, amount, signature or public key is an
/// [`XrpError`] naming the field. `Ok(false)` means well-formed but not a valid claim
/// (wrong key, tampered claim, or a high-s secp256k1 signature, which rippled rejects).
pub fn try_verify_claim(
    channel: impl IntoChannelId,
    amount: impl IntoDrops,
    signature: &str,
    public_key: &str,
) -> Result<bool, XrpError> {
    let channel = channel.into_channel_id()?;
    let amount = amount.into_drops()?;
    let public_key = XrplPublicKey::parse(public_key)?;
    let signature = decode_signature_hex(signature)?;
    public_key.verify_claim(&channel, amount, &signature)
}

impl XrplPublicKey {
    /// Verifies a claim signature given as bytes (DER for secp256k1, 64 bytes for
    /// Ed25519); see [`try_verify_claim`] for what `Ok(false)` and errors mean.
    pub fn verify_claim(
        &self,
        channel: &ChannelId,
        amount: Drops,
        signature: &[u8],
    ) -> Result<bool, XrpError> {
        verify_data(self, &encode_claim(channel, amount), signature)
    }
}

/// Decodes a hex signature (either case), bounding its length before allocating.
pub(crate) fn decode_signature_hex(s: &str) -> Result<Vec<u8>, XrpError> {
    if s.is_empty() {
        return Err(XrpError::signature("empty; expected hex"));
    }
    if s.len() > 2 * MAX_DER_LEN {
        return Err(XrpError::signature(format!(
            "{} characters is too long for a claim signature (at most {} hex characters)",
            s.chars().count(),
            2 * MAX_DER_LEN
        )));
    }
    hex::decode(s).map_err(|_| XrpError::signature(hex_problem(s)))
}

/// XRPL signature verification of `data` (ripple-keypairs `verify`): Ed25519 over the
/// data, secp256k1 over SHA-512Half(data) with a canonical DER, low-s signature.
pub(crate) fn verify_data(
    public_key: &XrplPublicKey,
    data: &[u8],
    signature: &[u8],
) -> Result<bool, XrpError> {
    match public_key.as_public_key() {
        PublicKey::Ed25519(key) => {
            let bytes: [u8; 64] = signature.try_into().map_err(|_| {
                XrpError::signature(format!(
                    "an Ed25519 signature is 64 bytes, got {} (the public key is Ed25519)",
                    signature.len()
                ))
            })?;
            let sig = ed25519_dalek::Signature::from_bytes(&bytes);
            Ok(key.verify_strict(data, &sig).is_ok() && key.verify(data, &sig).is_ok())
        }
        PublicKey::Secp256k1(key) => {
            let sig = k256::ecdsa::Signature::from_der(signature).map_err(|_| {
                XrpError::signature(format!(
                    "not a DER ECDSA signature ({} bytes; the public key is secp256k1)",
                    signature.len()
                ))
            })?;
            // rippled accepts only fully canonical signatures: canonical DER and s ≤ n/2.
            if sig.to_der().as_bytes() != signature || bool::from(sig.s().is_high()) {
                return Ok(false);
            }
            Ok(key.verify_prehash(&xrpl::sha512_half(data), &sig).is_ok())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // XRPL docs, channel_verify / channel_authorize examples
    // (https://xrpl.org/docs/references/http-websocket-apis/public-api-methods/payment-channel-methods/channel_verify).
    const DOCS_CHANNEL: &str = "5DB01B7FFED6B67E6B0414DED11E051D2EE2B7619CE0EAA6286D67A3A4D5BDB3";
    const DOCS_SIGNATURE: &str = "304402204EF0AFB78AC23ED1C472E74F4299C0C21F1B21D07EFC0A3838A420F76D783A400220154FB11B6F54320666E4C36CA7F686C16A3A0456800BBC43746F34AF50290064";
    const DOCS_PUBLIC_KEY: &str = "aB44YfzW24VDEJQ2UuLPV2PvqcPCSoLnL7y5M1EzhdW4LnK5xMS3";

    #[test]
    fn docs_claim_verifies() {
        assert!(verify_claim(
            DOCS_CHANNEL,
            "1000000",
            DOCS_SIGNATURE,
            DOCS_PUBLIC_KEY
        ));
        assert!(verify_claim(
            DOCS_CHANNEL.to_lowercase(),
            1_000_000u64,
            &DOCS_SIGNATURE.to_lowercase(),
            "023693F15967AE357D0327974AD46FE3C127113B1110D6044FD41E723689F81CC6"
        ));
        assert!(!verify_claim(
            DOCS_CHANNEL,
            1_000_001u64,
            DOCS_SIGNATURE,
            DOCS_PUBLIC_KEY
        ));
    }

    #[test]
    fn high_s_twin_is_rejected_as_rippled_does() {
        let sig = k256::ecdsa::Signature::from_der(&hex::decode(DOCS_SIGNATURE).unwrap()).unwrap();
        let high = k256::ecdsa::Signature::from_scalars(sig.r(), -*sig.s()).unwrap();
        let high_der = hex::encode(high.to_der().as_bytes());
        // The malleated twin of a valid signature (same r, s' = n - s), which rippled
        // rejects as not fully canonical.
        assert!(bool::from(high.s().is_high()));
        assert_eq!(high.normalize_s(), Some(sig));
        assert!(!try_verify_claim(DOCS_CHANNEL, 1_000_000u64, &high_der, DOCS_PUBLIC_KEY).unwrap());
    }

    #[test]
    fn malformed_inputs_name_the_field() {
        let cases: [(&str, &str, &str, &str, &str); 8] = [
            ("abc", "1", DOCS_SIGNATURE, DOCS_PUBLIC_KEY, "channel"),
            (
                DOCS_CHANNEL,
                "1.0",
                DOCS_SIGNATURE,
                DOCS_PUBLIC_KEY,
                "amount",
            ),
            (DOCS_CHANNEL, "0", DOCS_SIGNATURE, DOCS_PUBLIC_KEY, "amount"),
            (DOCS_CHANNEL, "1", "", DOCS_PUBLIC_KEY, "signature"),
            (DOCS_CHANNEL, "1", "30440", DOCS_PUBLIC_KEY, "signature"),
            (DOCS_CHANNEL, "1", "00", DOCS_PUBLIC_KEY, "signature"),
            (
                DOCS_CHANNEL,
                "1",
                &"00".repeat(73),
                DOCS_PUBLIC_KEY,
                "signature",
            ),
            (DOCS_CHANNEL, "1", DOCS_SIGNATURE, "ED00", "public key"),
        ];
        for (c, a, s, k, field) in cases {
            let e = try_verify_claim(c, a, s, k).unwrap_err();
            assert_eq!(e.field(), Some(field), "{e}");
            assert!(!verify_claim(c, a, s, k));
        }
        // Input from the other party is bounded: every field of a 60 KB request is
        // refused before any quadratic work (base58 of 60 KB took seconds).
        let huge_base58 = format!("a{}", "B".repeat(60_000));
        let huge_hex = "0".repeat(60_000);
        let huge_digits = "1".repeat(60_000);
        for (c, a, s, k, field) in [
            (
                DOCS_CHANNEL,
                "1",
                DOCS_SIGNATURE,
                huge_base58.as_str(),
                "public key",
            ),
            (
                DOCS_CHANNEL,
                "1",
                DOCS_SIGNATURE,
                huge_hex.as_str(),
                "public key",
            ),
            (
                DOCS_CHANNEL,
                "1",
                huge_hex.as_str(),
                DOCS_PUBLIC_KEY,
                "signature",
            ),
            (
                huge_hex.as_str(),
                "1",
                DOCS_SIGNATURE,
                DOCS_PUBLIC_KEY,
                "channel",
            ),
            (
                DOCS_CHANNEL,
                huge_digits.as_str(),
                DOCS_SIGNATURE,
                DOCS_PUBLIC_KEY,
                "amount",
            ),
        ] {
            let e = try_verify_claim(c, a, s, k).unwrap_err();
            assert_eq!(e.field(), Some(field), "{e}");
            assert!(
                e.to_string().len() < 300,
                "the error does not echo the input: {e}"
            );
        }
        // A DER signature against an Ed25519 key says why.
        let e = try_verify_claim(
            DOCS_CHANNEL,
            "1",
            DOCS_SIGNATURE,
            "ED01FA53FA5A7E77798F882ECE20B1ABC00BB358A9E55A202D0D0676BD0CE37A63",
        )
        .unwrap_err();
        assert!(e.to_string().contains("Ed25519"), "{e}");
    }
}
