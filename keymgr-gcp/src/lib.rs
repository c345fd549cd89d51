#![doc = include_str!("../README.md")]

mod backend;
mod config;
mod error;
mod recorded;
mod resolve;
mod rotation;
mod symmetric;

pub use backend::{DEFAULT_CURRENT_VERSION_TTL, GcpKmsBackend, MAX_DATA_BYTES};
pub use config::{
    DEFAULT_EVM_KEY, DEFAULT_XRP_KEY, GCP_KEY_RING_ID, GCP_KMS_ENDPOINT, GCP_KMS_EVM_KEY_ID,
    GCP_KMS_XRP_KEY_ID, GCP_LOCATION_ID, GCP_PROJECT_ID, GcpKmsConfig,
};
pub use recorded::LABEL_PUBLIC_KEY_PREFIX;
pub use resolve::LABEL_CURRENT_VERSION;
pub use rotation::{GENERATION_TIMEOUT, LABEL_ROTATING_FROM};
pub use symmetric::aad_of;

/// The Google crates this backend is built on, for callers that build their own client.
pub mod deps {
    pub use google_cloud_auth;
    pub use google_cloud_gax;
    pub use google_cloud_kms_v1;
}
