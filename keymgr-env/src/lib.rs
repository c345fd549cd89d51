#![doc = include_str!("../README.md")]

mod backend;
mod config;
mod seed;

pub use backend::EnvBackend;
pub use config::{DEFAULT_EVM_KEY, DEFAULT_XRP_KEY, EVM_PRIVATE_KEY, XRP_KEY_TYPE, XRP_SEED};
