//! One module per command group.

pub(crate) mod audit;
pub(crate) mod config;
pub(crate) mod demo;
pub(crate) mod docs;
#[cfg(feature = "envelope")]
pub(crate) mod envelope;
pub(crate) mod evm;
pub(crate) mod features;
pub(crate) mod health;
pub(crate) mod keys;
pub(crate) mod rotate;
pub(crate) mod status;
pub(crate) mod xrp;
