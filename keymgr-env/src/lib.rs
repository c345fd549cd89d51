//! keymgr-env: the development backend. Keys come from environment variables
//! (`EVM_PRIVATE_KEY`, `XRP_SEED` with `XRP_KEY_TYPE`) or are generated for a demo; they live in process
//! memory, so use a KMS or HSM backend in production.
//!
//! ```
//! use keymgr_core::{KeyBackend, KeyRef, SignPayload};
//! use keymgr_env::EnvBackend;
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> keymgr_core::Result<()> {
//! // rippled's documented test seed (never use a published seed for real funds).
//! let backend = EnvBackend::new().with_xrpl_seed("xrp", "sEdSKaCy2JT7JaM7v95H9SxkhP9wS2r")?;
//! let sig = backend.sign(&KeyRef::new("xrp"), &SignPayload::message(b"hello".to_vec())).await?;
//! backend.public_key(&KeyRef::new("xrp")).await?.verify(&SignPayload::message(b"hello".to_vec()), sig.signature())?;
//! # Ok(()) }
//! ```

mod backend;
mod config;
mod seed;

pub use backend::EnvBackend;
pub use config::{DEFAULT_EVM_KEY, DEFAULT_XRP_KEY, EVM_PRIVATE_KEY, XRP_KEY_TYPE, XRP_SEED};
