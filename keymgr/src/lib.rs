//! keymgr: sign and encrypt with keys that never leave a KMS or HSM.
//!
//! This facade re-exports [`keymgr_core`] and, behind cargo features, the providers
//! (`env` by default; `hsm` for PKCS#11, `aws` for AWS KMS, `gcp` for Google Cloud
//! KMS). [`FromEnv`] builds a
//! [`KeyManager`] from the environment variables documented in `.env.example`.
//!
//! ```no_run
//! use keymgr::{FromEnv, KeyManager, KeyRef, SignPayload};
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> keymgr::Result<()> {
//! let manager = KeyManager::from_env().await?; // KEY_BACKEND=env by default
//! let sig = manager.sign(&KeyRef::new("evm"), &SignPayload::Prehash([1; 32])).await?;
//! # let _ = sig; Ok(()) }
//! ```

pub mod config;
pub mod members;
#[cfg(feature = "prometheus")]
pub mod prometheus;
mod provider;

pub use config::{BackendKind, FromEnv, Settings, backend_from_vars, manager_from_vars};
pub use keymgr_core::*;
pub use members::{KEY_BACKENDS, MemberConfig, MemberSpec, health_from_vars};
pub use provider::ProviderConfig;

/// The hash-chained audit log (`KEYMGR_AUDIT_PATH`).
pub use keymgr_audit as audit;

/// The env (development) provider.
#[cfg(feature = "env")]
pub use keymgr_env as env;

/// The PKCS#11 HSM provider.
#[cfg(feature = "hsm")]
pub use keymgr_hsm as hsm;

/// The AWS KMS provider.
#[cfg(feature = "aws")]
pub use keymgr_aws as aws;
/// The Azure Key Vault provider.
#[cfg(feature = "azure")]
pub use keymgr_azure as azure;

/// The Google Cloud KMS provider.
#[cfg(feature = "gcp")]
pub use keymgr_gcp as gcp;

/// The alloy `Signer` / `TxSigner`.
#[cfg(feature = "evm")]
pub use keymgr_evm as evm;

/// The XRP Ledger payment-channel claim signer.
#[cfg(feature = "xrp")]
pub use keymgr_xrp as xrp;

/// Scheduled rotation.
#[cfg(feature = "rotation")]
pub use keymgr_rotation as rotation;

/// Envelope encryption in the AWS Encryption SDK message format (feature `envelope`).
#[cfg(feature = "envelope")]
pub use keymgr_envelope as envelope;
