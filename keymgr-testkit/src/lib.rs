//! Test support for keymgr (a dev-dependency only).
//!
//! - [`conformance`]: one suite every backend runs, so adding a backend means adding one
//!   test file, `tests/conformance.rs`, that calls [`conformance::run`],
//!   [`conformance::versions`] (or [`conformance::manual_rotation`]) and, where the
//!   service can be taken away, [`conformance::unreachable`].
//! - `evm` (cargo feature `evm`): the EVM signer suite, `evm::run`, for every backend
//!   with a secp256k1 key.
//! - `xrp` (cargo feature `xrp`): the XRP claim signer suite, `xrp::run`, for every
//!   backend with an Ed25519 or secp256k1 key.
//! - `gcp` (cargo feature `gcp`): a Google Cloud KMS REST stand-in, `gcp::StandIn`,
//!   with real keys and fault injection, for keymgr-gcp's tests.
//! - `proxy` (cargo feature `proxy`): a fault-injecting HTTP proxy,
//!   `proxy::FaultProxy`, between a real SDK client and its stand-in (delays, 500s,
//!   throttling, connection resets, truncated bodies).
//! - [`fault`]: a wrapper backend that injects errors, latency and corrupted signatures.
//! - [`verifiers`]: right values from eth-account, xrpl-py and coincurve (pinned).
//! - [`TempDir`]: a unique scratch directory, removed on drop.
//! - [`skip_or_fail`]: how tests that need an external component (SoftHSM2, moto)
//!   behave when it is missing: fail under `cargo xtask test`, skip loudly elsewhere.
//! - `azure` (cargo feature `azure`): an Azure Key Vault REST stand-in over HTTPS.

// Test support: panicking with a message is how it reports failures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[cfg(feature = "azure")]
pub mod azure;
pub mod conformance;
#[cfg(feature = "evm")]
pub mod evm;
pub mod fault;
#[cfg(feature = "gcp")]
pub mod gcp;
pub mod instant;
pub mod memory;
#[cfg(feature = "proxy")]
pub mod proxy;
mod temp;
pub mod verifiers;
#[cfg(feature = "xrp")]
pub mod xrp;

pub use temp::TempDir;

/// Environment variable `cargo xtask test` sets so that tests needing provisioned
/// components fail instead of skipping when those are missing.
pub const XTASK_TEST: &str = "KEYMGR_XTASK_TEST";

/// Call when a component a test needs is not available. Under `cargo xtask test` this
/// panics (the run must not pass without it); otherwise it prints a loud skip notice and
/// returns, and the test should return early.
pub fn skip_or_fail(component: &str, how_to_get_it: &str) {
    if std::env::var_os(XTASK_TEST).is_some() {
        panic!("{component} is required under `cargo xtask test` but is missing: {how_to_get_it}");
    }
    eprintln!(
        "\n!!!! SKIPPED: {component} is not available ({how_to_get_it}).\n!!!! Run `cargo xtask test` to provision it; this test did NOT run.\n"
    );
}
