//! Reading the env backend's keys from environment variables.

use keymgr_core::{Error, Result};
use zeroize::Zeroizing;

use crate::EnvBackend;

/// Hex secp256k1 private key (the EVM key).
pub const EVM_PRIVATE_KEY: &str = "EVM_PRIVATE_KEY";
/// XRPL family seed (the XRP key).
pub const XRP_SEED: &str = "XRP_SEED";
/// Logical name under which `EVM_PRIVATE_KEY` is served.
pub const DEFAULT_EVM_KEY: &str = "evm";
/// Logical name under which `XRP_SEED` is served.
pub const DEFAULT_XRP_KEY: &str = "xrp";

impl EnvBackend {
    /// Loads `EVM_PRIVATE_KEY` (as key `evm`) and `XRP_SEED` (as key `xrp`) from the
    /// process environment. At least one must be set; errors name the variable and the
    /// expected form, never the value.
    pub fn from_env() -> Result<Self> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](Self::from_env) with a custom variable lookup (tests, config files).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut backend = EnvBackend::new();
        // The variables' values are secrets: zeroized when this function returns.
        let evm = var(EVM_PRIVATE_KEY)
            .filter(|v| !v.trim().is_empty())
            .map(Zeroizing::new);
        let xrp = var(XRP_SEED)
            .filter(|v| !v.trim().is_empty())
            .map(Zeroizing::new);
        if evm.is_none() && xrp.is_none() {
            return Err(Error::config(
                format!("{EVM_PRIVATE_KEY} / {XRP_SEED}"),
                "EVM_PRIVATE_KEY=0x<64 hex chars> and/or XRP_SEED=s... (XRPL family seed)",
                "neither is set; the env backend has no keys",
            ));
        }
        if let Some(hex) = evm {
            backend = backend
                .with_secp256k1_hex(DEFAULT_EVM_KEY, &hex)
                .map_err(|e| {
                    as_config(
                        EVM_PRIVATE_KEY,
                        "0x followed by 64 hex characters (a secp256k1 private key)",
                        e,
                    )
                })?;
        }
        if let Some(seed) = xrp {
            backend = backend
                .with_xrpl_seed(DEFAULT_XRP_KEY, &seed)
                .map_err(|e| {
                    as_config(
                        XRP_SEED,
                        "an XRPL family seed: s... (secp256k1) or sEd... (Ed25519)",
                        e,
                    )
                })?;
        }
        Ok(backend)
    }
}

fn as_config(variable: &str, expected: &str, e: Error) -> Error {
    let reason = match e {
        Error::InvalidInput { reason, .. } => reason,
        other => other.to_string(),
    };
    Error::config(variable, expected, reason)
}
