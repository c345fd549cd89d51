#![doc = include_str!("../README.md")]
//!
//! See [`rotation`] for the versioned label scheme.

mod backend;
mod config;
mod created;
mod deletion;
mod error;
mod keys;
mod library;
mod resolve;
pub mod rotation;
mod session_pool;
pub mod symmetric;
mod token;

pub use backend::HsmBackend;
pub use config::{
    DEFAULT_EVM_KEY, DEFAULT_KEEP_VERSIONS, DEFAULT_XRP_KEY, HSM_EVM_KEY_LABEL, HSM_KEEP_VERSIONS,
    HSM_PIN, HSM_PKCS11_LIBRARY_PATH, HSM_POOL_SIZE, HSM_SLOT_ID, HSM_TOKEN_LABEL,
    HSM_XRP_KEY_LABEL, HsmConfig, Pin, TokenSelector,
};
