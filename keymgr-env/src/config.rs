//! Reading the env backend's keys from environment variables.

use keymgr_core::config::{ProcessEnv, VarSource, Vars};
use keymgr_core::{Error, KeyAlgorithm, Result, xrpl};
use zeroize::Zeroizing;

use crate::EnvBackend;

/// Hex secp256k1 private key (the EVM key).
pub const EVM_PRIVATE_KEY: &str = "EVM_PRIVATE_KEY";
/// XRPL family seed (the XRP key).
pub const XRP_SEED: &str = "XRP_SEED";
/// Key type of `XRP_SEED`: `ed25519` or `secp256k1` (default: the type the seed's
/// prefix names, `sEd...` Ed25519, `s...` secp256k1), as rippled keeps `key_type` apart
/// from the seed.
pub const XRP_KEY_TYPE: &str = "XRP_KEY_TYPE";
/// Logical name under which `EVM_PRIVATE_KEY` is served.
pub const DEFAULT_EVM_KEY: &str = "evm";
/// Logical name under which `XRP_SEED` is served.
pub const DEFAULT_XRP_KEY: &str = "xrp";

impl EnvBackend {
    /// Loads `EVM_PRIVATE_KEY` (as key `evm`) and `XRP_SEED` (as key `xrp`) from the
    /// process environment. At least one must be set; errors name the variable and the
    /// expected form, never the value.
    pub fn from_env() -> Result<Self> {
        Self::from_source(&ProcessEnv)
    }

    /// Like [`from_env`](Self::from_env) with a custom variable lookup (tests, config files).
    pub fn from_vars(var: impl Fn(&str) -> Option<String> + Sync) -> Result<Self> {
        Self::from_source(&var)
    }

    /// Like `from_vars`, from any [`VarSource`] (the process environment, a map,
    /// the environment layered over a configuration file, a collecting
    /// [`Vars`] of `keymgr config check`). A value that is not UTF-8 is an error
    /// naming its variable.
    pub fn from_source(source: &dyn VarSource) -> Result<Self> {
        let vars = Vars::new(source);
        let mut backend = EnvBackend::new();
        // The variables' values are secrets: zeroized when this function returns.
        let secret = |name| -> Result<Option<Zeroizing<String>>> {
            Ok(vars
                .secret(name)?
                .map(Zeroizing::new)
                .filter(|v| !v.trim().is_empty()))
        };
        let evm = secret(EVM_PRIVATE_KEY)?;
        let xrp = secret(XRP_SEED)?;
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
        let key_type = vars.choice(
            XRP_KEY_TYPE,
            &[
                ("ed25519", KeyAlgorithm::Ed25519),
                ("secp256k1", KeyAlgorithm::Secp256k1),
            ],
        )?;
        if let Some(seed) = xrp {
            let seed_error = |e| {
                as_config(
                    XRP_SEED,
                    "an XRPL family seed: s... (secp256k1, or Ed25519 with \
                     XRP_KEY_TYPE=ed25519) or sEd... (Ed25519)",
                    e,
                )
            };
            let (prefix_type, _) = xrpl::decode_seed(&seed).map_err(seed_error)?;
            backend = match key_type {
                Some(t) => backend.with_xrpl_seed_as(DEFAULT_XRP_KEY, &seed, t),
                None => backend.with_xrpl_seed(DEFAULT_XRP_KEY, &seed),
            }
            .map_err(|e| match (prefix_type, key_type) {
                (xrpl::SeedType::Ed25519, Some(KeyAlgorithm::Secp256k1)) => Error::config(
                    XRP_KEY_TYPE,
                    "ed25519 for an sEd... seed",
                    "XRP_KEY_TYPE=secp256k1 but XRP_SEED is an sEd... (Ed25519) seed",
                ),
                _ => seed_error(e),
            })?;
            let algorithm = key_type.unwrap_or(match prefix_type {
                xrpl::SeedType::Ed25519 => KeyAlgorithm::Ed25519,
                xrpl::SeedType::Secp256k1 => KeyAlgorithm::Secp256k1,
            });
            match (key_type, prefix_type) {
                (Some(_), _) => tracing::info!(
                    "env backend: key {DEFAULT_XRP_KEY} is {algorithm} (XRP_KEY_TYPE)"
                ),
                (None, xrpl::SeedType::Ed25519) => tracing::info!(
                    "env backend: key {DEFAULT_XRP_KEY} is {algorithm} (XRP_SEED is an sEd... seed)"
                ),
                // A plain s... seed may belong to an Ed25519 account (rippled's
                // wallet_propose returns such seeds): say which key this is.
                (None, xrpl::SeedType::Secp256k1) => tracing::warn!(
                    "env backend: key {DEFAULT_XRP_KEY} is {algorithm}, from XRP_SEED's s... \
                     prefix; set XRP_KEY_TYPE=ed25519 if the account is Ed25519 \
                     (XRP_KEY_TYPE=secp256k1 silences this)"
                ),
            }
        } else if let Some(t) = key_type {
            return Err(Error::config(
                XRP_KEY_TYPE,
                "XRP_KEY_TYPE only together with XRP_SEED",
                format!("XRP_KEY_TYPE={t} is set but XRP_SEED is not"),
            ));
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
