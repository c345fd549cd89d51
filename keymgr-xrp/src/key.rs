//! Public keys in XRPL form.

use std::fmt;
use std::str::FromStr;

use keymgr_core::{KeyAlgorithm, PublicKey, xrpl};

use crate::XrpError;
use crate::error::hex_problem;

/// Version byte of an account public key in base58 (`a...`), as rippled prints it.
pub const ACCOUNT_PUBLIC_KEY_PREFIX: u8 = 0x23;

/// First byte of an Ed25519 public key in XRPL form.
const ED25519_PREFIX: u8 = 0xED;

/// A public key in XRPL form: `0xED ‖ 32 bytes` for Ed25519, 33-byte compressed SEC1
/// for secp256k1. `Display` is uppercase hex, as XRPL tools print it.
#[derive(Clone, PartialEq, Eq)]
pub struct XrplPublicKey(PublicKey);

impl XrplPublicKey {
    /// Parses the 33 bytes of XRPL form.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, XrpError> {
        if bytes.len() != 33 {
            return Err(XrpError::public_key(format!(
                "an XRPL public key is 33 bytes (ED + 32 for Ed25519, compressed secp256k1), got {}",
                bytes.len()
            )));
        }
        let key = match bytes[0] {
            ED25519_PREFIX => PublicKey::from_ed25519_bytes(&bytes[1..])
                .map_err(|_| XrpError::public_key("not a valid Ed25519 point"))?,
            0x02 | 0x03 => PublicKey::from_sec1(bytes)
                .map_err(|_| XrpError::public_key("not a point on secp256k1"))?,
            other => {
                return Err(XrpError::public_key(format!(
                    "first byte {other:02X} is neither ED (Ed25519) nor 02/03 (compressed secp256k1)"
                )));
            }
        };
        Ok(Self(key))
    }

    /// Parses 66 hex characters (either case).
    pub fn from_hex(s: &str) -> Result<Self, XrpError> {
        if s.len() != 66 {
            return Err(XrpError::public_key(format!(
                "expected 66 hex characters (33 bytes), got {} bytes",
                s.len()
            )));
        }
        let mut bytes = [0u8; 33];
        hex::decode_to_slice(s, &mut bytes).map_err(|_| XrpError::public_key(hex_problem(s)))?;
        Self::from_bytes(&bytes)
    }

    /// Parses hex, or the base58 account public key form (`a...`) that rippled's
    /// `channel_verify` also accepts.
    ///
    /// Input from another party is bounded: anything longer than 66 characters is refused
    /// before decoding.
    pub fn parse(s: &str) -> Result<Self, XrpError> {
        if s.len() > 66 {
            return Err(XrpError::public_key(format!(
                "{} bytes is too long for a public key (66 hex or at most 52 base58 characters)",
                s.len()
            )));
        }
        if s.starts_with('a') && s.len() != 66 {
            let bytes = xrpl::decode_base58check("public key", &[ACCOUNT_PUBLIC_KEY_PREFIX], s)
                .map_err(|e| match e {
                    keymgr_core::Error::InvalidInput { reason, .. } => XrpError::public_key(reason),
                    other => XrpError::Backend(other),
                })?;
            return Self::from_bytes(&bytes);
        }
        Self::from_hex(s)
    }

    /// The 33 bytes of XRPL form.
    pub fn to_bytes(&self) -> [u8; 33] {
        let mut out = [0u8; 33];
        match &self.0 {
            PublicKey::Ed25519(k) => {
                out[0] = ED25519_PREFIX;
                out[1..].copy_from_slice(k.as_bytes());
            }
            PublicKey::Secp256k1(k) => {
                out.copy_from_slice(k.to_encoded_point(true).as_bytes());
            }
        }
        out
    }

    /// Uppercase hex of [`to_bytes`](Self::to_bytes) (what `Display` prints).
    pub fn to_hex(&self) -> String {
        hex::encode_upper(self.to_bytes())
    }

    /// The base58 account public key form (`a...`).
    pub fn to_base58(&self) -> String {
        xrpl::encode_base58check(&[ACCOUNT_PUBLIC_KEY_PREFIX], &self.to_bytes())
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.0.algorithm()
    }

    /// The 20-byte account id: RIPEMD-160(SHA-256(public key)).
    pub fn account_id(&self) -> [u8; 20] {
        xrpl::account_id(&self.to_bytes())
    }

    /// The classic address (`r...`).
    pub fn classic_address(&self) -> String {
        xrpl::classic_address(&self.to_bytes())
    }

    /// The keymgr public key.
    pub fn as_public_key(&self) -> &PublicKey {
        &self.0
    }
}

impl From<PublicKey> for XrplPublicKey {
    fn from(key: PublicKey) -> Self {
        Self(key)
    }
}

impl From<XrplPublicKey> for PublicKey {
    fn from(key: XrplPublicKey) -> Self {
        key.0
    }
}

impl FromStr for XrplPublicKey {
    type Err = XrpError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for XrplPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for XrplPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "XrplPublicKey::{}({self})", self.algorithm())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // ripple-keypairs fixtures (xrpl.js packages/ripple-keypairs/test/fixtures/api.json).
    const ED_PK: &str = "ED01FA53FA5A7E77798F882ECE20B1ABC00BB358A9E55A202D0D0676BD0CE37A63";
    const ED_ADDRESS: &str = "rLUEXYuLiQptky37CqLcm9USQpPiz5rkpD";
    const SECP_PK: &str = "030D58EB48B4420B1F7B9DF55087E0E29FEF0E8468F9A6825B01CA2C361042D435";
    const SECP_ADDRESS: &str = "rU6K7V3Po4snVhBBaU29sesqs2qTQJWDw1";

    #[test]
    fn xrpl_form_and_addresses() {
        let ed = XrplPublicKey::from_hex(ED_PK).unwrap();
        assert_eq!(ed.algorithm(), KeyAlgorithm::Ed25519);
        assert_eq!(ed.to_string(), ED_PK);
        assert_eq!(ed.classic_address(), ED_ADDRESS);
        let secp = XrplPublicKey::from_hex(&SECP_PK.to_lowercase()).unwrap();
        assert_eq!(secp.algorithm(), KeyAlgorithm::Secp256k1);
        assert_eq!(secp.to_string(), SECP_PK);
        assert_eq!(secp.classic_address(), SECP_ADDRESS);
    }

    #[test]
    fn base58_form() {
        // XRPL docs, channel_verify example: aB44… is 023693F1…1CC6.
        let k =
            XrplPublicKey::parse("aB44YfzW24VDEJQ2UuLPV2PvqcPCSoLnL7y5M1EzhdW4LnK5xMS3").unwrap();
        assert_eq!(
            k.to_hex(),
            "023693F15967AE357D0327974AD46FE3C127113B1110D6044FD41E723689F81CC6"
        );
        assert_eq!(
            k.to_base58(),
            "aB44YfzW24VDEJQ2UuLPV2PvqcPCSoLnL7y5M1EzhdW4LnK5xMS3"
        );
    }

    #[test]
    fn malformed_keys_are_typed_errors() {
        for bad in [
            "",
            "ED",
            &ED_PK[..64],
            &format!("{ED_PK}00"),
            &format!("04{}", &SECP_PK[2..]),
            &format!("{}zz", &SECP_PK[..64]),
            "rLUEXYuLiQptky37CqLcm9USQpPiz5rkpD",
            "aB44YfzW24VDEJQ2UuLPV2PvqcPCSoLnL7y5M1EzhdW4LnK5xMS4",
            // x = 5 is not on secp256k1 (5^3 + 7 = 132 is a non-residue mod p).
            "020000000000000000000000000000000000000000000000000000000000000005",
        ] {
            let e = XrplPublicKey::parse(bad).unwrap_err();
            assert_eq!(e.field(), Some("public key"), "{bad:?}: {e}");
        }
    }
}
