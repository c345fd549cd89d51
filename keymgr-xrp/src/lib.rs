#![doc = include_str!("../README.md")]

mod claim;
mod error;
mod key;
mod signer;
mod verify;

pub use claim::{
    CLAIM_LEN, CLAIM_PREFIX, ChannelId, Drops, IntoChannelId, IntoDrops, MAX_DROPS, encode_claim,
};
pub use error::XrpError;
pub use key::{ACCOUNT_PUBLIC_KEY_PREFIX, XrplPublicKey};
pub use signer::{ClaimSigner, ClaimSignerBuilder, KeyChange};
pub use verify::{try_verify_claim, verify_claim};
