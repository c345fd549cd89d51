//! Claim inputs (channel id, amount in drops) and the bytes a claim signature covers.

use std::fmt;
use std::str::FromStr;

use crate::XrpError;
use crate::error::hex_problem;

/// The hash prefix of a payment-channel claim: `"CLM\0"` (0x434C4D00).
pub const CLAIM_PREFIX: [u8; 4] = *b"CLM\0";

/// Length of the encoded claim: prefix (4) ‖ channel id (32) ‖ amount (8).
pub const CLAIM_LEN: usize = 44;

/// The largest amount a claim can carry: 10^17 drops, the XRP supply cap (100 billion XRP).
pub const MAX_DROPS: u64 = 100_000_000_000_000_000;

/// A payment channel id: the 256-bit id of a `PayChannel` ledger entry.
///
/// Parsed from 64 hex characters (either case); displayed in uppercase, as XRPL tools
/// print it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId([u8; 32]);

impl ChannelId {
    /// From the 32 raw bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Parses 64 hex characters (either case, no `0x`).
    pub fn from_hex(s: &str) -> Result<Self, XrpError> {
        if s.starts_with("0x") || s.starts_with("0X") {
            return Err(XrpError::channel(
                "expected 64 hex characters without a 0x prefix",
            ));
        }
        if s.len() != 64 {
            return Err(XrpError::channel(format!(
                "expected 64 hex characters, got {} characters",
                s.chars().count()
            )));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| XrpError::channel(hex_problem(s)))?;
        Ok(Self(out))
    }

    /// The 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl FromStr for ChannelId {
    type Err = XrpError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_hex(s)
    }
}

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode_upper(self.0))
    }
}

impl fmt::Debug for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChannelId({self})")
    }
}

impl From<[u8; 32]> for ChannelId {
    fn from(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

/// An XRP amount in drops (1 XRP = 1,000,000 drops), in `1..=10^17`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Drops(u64);

impl Drops {
    /// The smallest claim amount.
    pub const MIN: Drops = Drops(1);
    /// The largest claim amount ([`MAX_DROPS`]).
    pub const MAX: Drops = Drops(MAX_DROPS);

    /// Checks the range `1..=10^17`.
    pub fn new(drops: u64) -> Result<Self, XrpError> {
        match drops {
            0 => Err(XrpError::amount(
                "a claim must authorize at least 1 drop, got 0",
            )),
            d if d > MAX_DROPS => Err(XrpError::amount(format!(
                "{d} drops exceeds the XRP supply cap of 10^17 drops"
            ))),
            d => Ok(Self(d)),
        }
    }

    /// Parses a decimal number of drops: ASCII digits only (no sign, decimal point,
    /// exponent or whitespace), in `1..=10^17`.
    pub fn parse(s: &str) -> Result<Self, XrpError> {
        if s.is_empty() {
            return Err(XrpError::amount("empty; expected a whole number of drops"));
        }
        if let Some((i, c)) = s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
            let what = match c {
                '.' => "a decimal point (amounts are whole drops, not XRP)".to_owned(),
                '-' => "a minus sign (amounts are positive)".to_owned(),
                '+' => "a plus sign".to_owned(),
                'e' | 'E' => "an exponent".to_owned(),
                c if c.is_whitespace() => "whitespace".to_owned(),
                _ => "a character that is not a decimal digit".to_owned(),
            };
            return Err(XrpError::amount(format!(
                "{what} at position {i}; expected a whole number of drops (digits only)"
            )));
        }
        // All digits: the only parse failure left is overflow.
        let drops = s.parse::<u64>().map_err(|_| {
            XrpError::amount(format!(
                "{}-digit number exceeds the XRP supply cap of 10^17 drops",
                s.len()
            ))
        })?;
        Self::new(drops)
    }

    /// The number of drops.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl FromStr for Drops {
    type Err = XrpError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Drops {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl TryFrom<u64> for Drops {
    type Error = XrpError;

    fn try_from(drops: u64) -> Result<Self, Self::Error> {
        Self::new(drops)
    }
}

impl From<Drops> for u64 {
    fn from(d: Drops) -> u64 {
        d.0
    }
}

/// The bytes a claim signature covers: `"CLM\0"` ‖ channel id ‖ amount (u64 big-endian).
pub fn encode_claim(channel: &ChannelId, amount: Drops) -> [u8; CLAIM_LEN] {
    let mut out = [0u8; CLAIM_LEN];
    out[..4].copy_from_slice(&CLAIM_PREFIX);
    out[4..36].copy_from_slice(&channel.0);
    out[36..].copy_from_slice(&amount.0.to_be_bytes());
    out
}

/// Anything that names a channel: a hex string, a [`ChannelId`] or 32 bytes.
pub trait IntoChannelId {
    /// Converts, with [`XrpError::InvalidChannel`] on malformed input.
    fn into_channel_id(self) -> Result<ChannelId, XrpError>;
}

impl IntoChannelId for ChannelId {
    fn into_channel_id(self) -> Result<ChannelId, XrpError> {
        Ok(self)
    }
}

impl IntoChannelId for &ChannelId {
    fn into_channel_id(self) -> Result<ChannelId, XrpError> {
        Ok(*self)
    }
}

impl IntoChannelId for [u8; 32] {
    fn into_channel_id(self) -> Result<ChannelId, XrpError> {
        Ok(ChannelId(self))
    }
}

impl IntoChannelId for &str {
    fn into_channel_id(self) -> Result<ChannelId, XrpError> {
        ChannelId::from_hex(self)
    }
}

impl IntoChannelId for &String {
    fn into_channel_id(self) -> Result<ChannelId, XrpError> {
        ChannelId::from_hex(self)
    }
}

impl IntoChannelId for String {
    fn into_channel_id(self) -> Result<ChannelId, XrpError> {
        ChannelId::from_hex(&self)
    }
}

/// Anything that gives an amount in drops: a decimal string, an integer or [`Drops`].
pub trait IntoDrops {
    /// Converts, with [`XrpError::InvalidAmount`] on malformed or out-of-range input.
    fn into_drops(self) -> Result<Drops, XrpError>;
}

impl IntoDrops for Drops {
    fn into_drops(self) -> Result<Drops, XrpError> {
        Ok(self)
    }
}

impl IntoDrops for &str {
    fn into_drops(self) -> Result<Drops, XrpError> {
        Drops::parse(self)
    }
}

impl IntoDrops for &String {
    fn into_drops(self) -> Result<Drops, XrpError> {
        Drops::parse(self)
    }
}

impl IntoDrops for String {
    fn into_drops(self) -> Result<Drops, XrpError> {
        Drops::parse(&self)
    }
}

impl IntoDrops for u64 {
    fn into_drops(self) -> Result<Drops, XrpError> {
        Drops::new(self)
    }
}

impl IntoDrops for u32 {
    fn into_drops(self) -> Result<Drops, XrpError> {
        Drops::new(self.into())
    }
}

impl IntoDrops for i64 {
    fn into_drops(self) -> Result<Drops, XrpError> {
        let d = u64::try_from(self)
            .map_err(|_| XrpError::amount(format!("{self} is negative; amounts are positive")))?;
        Drops::new(d)
    }
}

impl IntoDrops for i32 {
    fn into_drops(self) -> Result<Drops, XrpError> {
        i64::from(self).into_drops()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_matches_ripple_binary_codec() {
        // xrpl.js packages/ripple-binary-codec/test/signing-data-encoding.test.ts,
        // "can create claim blob": channel 43904CBF…5FB1, amount "1000".
        let channel =
            ChannelId::from_hex("43904CBFCDCEC530B4037871F86EE90BF799DF8D2E0EA564BC8A3F332E4F5FB1")
                .unwrap();
        let bytes = encode_claim(&channel, Drops::new(1000).unwrap());
        assert_eq!(
            hex::encode_upper(bytes),
            concat!(
                "434C4D00",
                "43904CBFCDCEC530B4037871F86EE90BF799DF8D2E0EA564BC8A3F332E4F5FB1",
                "00000000000003E8"
            )
        );
    }

    #[test]
    fn encoding_matches_xrpl4j() {
        // xrpl4j SignatureUtilsTest.unsignedClaimToSignableBytesActual: channel ABCD…,
        // amount 1 drop.
        let channel = ChannelId::from_hex(&"ABCD".repeat(16)).unwrap();
        assert_eq!(
            hex::encode_upper(encode_claim(&channel, Drops::MIN)),
            format!("434C4D00{}0000000000000001", "ABCD".repeat(16))
        );
    }

    #[test]
    fn channel_accepts_either_case_and_prints_upper() {
        let lower = "5db01b7ffed6b67e6b0414ded11e051d2ee2b7619ce0eaa6286d67a3a4d5bdb3";
        let c = ChannelId::from_hex(lower).unwrap();
        assert_eq!(c.to_string(), lower.to_uppercase());
        assert_eq!(lower.to_uppercase().parse::<ChannelId>().unwrap(), c);
    }

    #[test]
    fn channel_errors_name_the_problem() {
        let e = ChannelId::from_hex("abc").unwrap_err();
        assert_eq!(e.field(), Some("channel"));
        assert!(e.to_string().contains("64 hex characters"), "{e}");
        let e = ChannelId::from_hex(&format!("0x{}", "a".repeat(62))).unwrap_err();
        assert!(e.to_string().contains("0x"), "{e}");
        let e = ChannelId::from_hex(&format!("{}g", "a".repeat(63))).unwrap_err();
        assert!(e.to_string().contains("position 63"), "{e}");
        // A multi-byte character must not make slicing panic.
        assert!(ChannelId::from_hex(&format!("{}é", "a".repeat(62))).is_err());
    }

    #[test]
    fn amount_range_and_syntax() {
        assert_eq!(Drops::parse("1").unwrap().get(), 1);
        assert_eq!(Drops::parse("100000000000000000").unwrap(), Drops::MAX);
        assert_eq!(Drops::parse("0010").unwrap().get(), 10);
        for (bad, needle) in [
            ("0", "at least 1"),
            ("100000000000000001", "supply cap"),
            ("18446744073709551616", "supply cap"),
            ("99999999999999999999999999", "supply cap"),
            ("", "empty"),
            ("1.5", "decimal point"),
            ("-1", "minus"),
            ("+1", "plus"),
            ("1e6", "exponent"),
            (" 1", "whitespace"),
            ("1 ", "whitespace"),
            ("0x10", "decimal digit"),
            ("١", "decimal digit"),
        ] {
            let e = Drops::parse(bad).unwrap_err();
            assert_eq!(e.field(), Some("amount"));
            assert!(e.to_string().contains(needle), "{bad:?}: {e}");
        }
        assert!(0u64.into_drops().is_err());
        assert!(
            (-5i64)
                .into_drops()
                .unwrap_err()
                .to_string()
                .contains("negative")
        );
        assert!((MAX_DROPS + 1).into_drops().is_err());
        assert_eq!(7i32.into_drops().unwrap().get(), 7);
    }
}
