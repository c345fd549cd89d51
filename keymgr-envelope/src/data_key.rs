//! The plaintext data key: 32 bytes, zeroized on drop, redacted in `Debug`.

use std::fmt;

use zeroize::Zeroizing;

use crate::suite::DATA_KEY_LEN;

/// A plaintext AES-256 data key (DEK). Zeroized when dropped; `Debug` prints
/// `[REDACTED]`; no `Display`, no `Serialize`.
#[derive(Clone)]
pub struct DataKey(Zeroizing<[u8; DATA_KEY_LEN]>);

impl DataKey {
    /// Takes the key bytes.
    pub fn from_bytes(bytes: [u8; DATA_KEY_LEN]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Copies a 32-byte slice; `None` for any other length.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let mut key = Zeroizing::new([0u8; DATA_KEY_LEN]);
        if bytes.len() != DATA_KEY_LEN {
            return None;
        }
        key.copy_from_slice(bytes);
        Some(Self(key))
    }

    /// A fresh random key from the system CSPRNG (AWS-LC's).
    pub fn generate() -> Self {
        let mut key = Zeroizing::new([0u8; DATA_KEY_LEN]);
        // aws-lc's RNG only fails if the OS has no entropy source at all.
        if aws_lc_rs::rand::fill(key.as_mut()).is_err() {
            panic!("the system random number generator failed");
        }
        Self(key)
    }

    /// The key bytes; keep the borrow short.
    pub fn expose(&self) -> &[u8; DATA_KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey([REDACTED])")
    }
}

/// Fills `buf` with random bytes (message ids, IVs).
pub(crate) fn random<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    if aws_lc_rs::rand::fill(&mut out).is_err() {
        panic!("the system random number generator failed");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let k = DataKey::from_bytes([0xAB; 32]);
        let d = format!("{k:?}");
        assert!(!d.to_lowercase().contains("ab"), "{d}");
        assert!(!d.contains("171"), "{d}");
        assert!(d.contains("REDACTED"));
    }

    #[test]
    fn slice_length_checked() {
        assert!(DataKey::from_slice(&[1; 31]).is_none());
        assert_eq!(DataKey::from_slice(&[1; 32]).unwrap().expose(), &[1; 32]);
    }
}
