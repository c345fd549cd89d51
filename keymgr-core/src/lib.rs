//! keymgr-core: the backend trait, key and signature types, errors, layers and
//! [`KeyManager`] that every keymgr crate builds on.
//!
//! Providers (`keymgr-env`, `keymgr-aws`, `keymgr-hsm`, ...) implement [`KeyBackend`];
//! adapters (`keymgr-evm`, `keymgr-xrp`) consume any `KeyBackend`; [`layer`] wraps one
//! backend in another to add caching, retries and timeouts.
//!
//! Shared logic lives here once: SPKI/SEC1/PEM public key parsing, DER and raw ECDSA
//! signature parsing with low-s normalization, verify-after-sign
//! ([`finish_signature`]), recovery-id search and XRPL encodings.
//!
//! ```
//! use keymgr_core::{PublicKey, SignPayload, KeyAlgorithm};
//! let payload = SignPayload::prehash(&[0u8; 32]).unwrap();
//! assert!(payload.check_algorithm(KeyAlgorithm::Ed25519, "xrp").is_err());
//! assert!(PublicKey::from_sec1(&[0u8; 3]).is_err());
//! ```

mod audit;
mod backend;
pub mod config;
mod error;
mod key;
pub mod layer;
mod manager;
pub mod metrics;
mod provider;
mod public_key;
mod sign_context;
mod signature;
mod verified;
pub mod xrpl;

pub use audit::{AuditEvent, AuditRecord, AuditSink, Outcome, TracingAuditSink, trace_record};
pub use backend::{
    DataKey, EncryptionContext, HealthReport, HealthStatus, KeyBackend, SecretBytes,
};
pub use error::{BoxError, Error, ErrorKind, IntegrityReason, ProviderError, Result};
pub use key::{KeyAlgorithm, KeyRef, KeyVersion, VersionState};
pub use manager::{KeyManager, KeyManagerBuilder, RecommendedLayers};
pub use public_key::{OID_ED25519, OID_SECP256K1, PublicKey};
pub use sign_context::{Eip712DomainContext, OutcomeContext, SignContext};
pub use signature::{Ed25519Signature, RawSignature, Secp256k1Signature, SignPayload, Signature};
pub use verified::{VerifiedSignature, finish_recoverable, finish_signature, verify_recoverable};

/// Crates every backend uses, re-exported so providers and adapters agree on versions.
pub mod deps {
    pub use async_trait::async_trait;
    pub use ed25519_dalek;
    pub use k256;
}
