#![doc = include_str!("../README.md")]

mod backend;
mod config;
mod error;
mod resolve;
mod rotation;
mod symmetric;

pub use backend::{AwsKmsBackend, DEFAULT_VERSION_STATE_TTL, MAX_MESSAGE_BYTES};
pub use config::{
    AWS_ENDPOINT_URL, AWS_KMS_EVM_KEY_ID, AWS_KMS_XRP_KEY_ID, AWS_REGION, AwsKmsConfig,
    DEFAULT_EVM_KEY, DEFAULT_XRP_KEY,
};
pub use rotation::{
    TAG_CREATED, TAG_LOGICAL_KEY, TAG_PREVIOUS, TAG_PUBLIC_KEY, TAG_ROTATING, TAG_VERSION,
};
/// The AWS SDK crates this backend is built on, for callers that build their own client.
pub mod deps {
    pub use aws_config;
    pub use aws_sdk_kms;
}
