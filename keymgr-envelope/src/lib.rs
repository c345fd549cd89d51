#![doc = include_str!("../README.md")]

mod cache;
pub mod context;
mod data_key;
mod decrypt;
mod encrypt;
mod error;
mod frame;
mod header;
pub mod keyring;
mod parse;
mod rewrap;
pub mod suite;

pub use cache::{CachePolicy, CacheStats, CachingMaterials};
pub use data_key::DataKey;
pub use decrypt::{DecryptOptions, DecryptSummary, Decrypted, Decryptor};
pub use encrypt::{DEFAULT_FRAME_LENGTH, EncryptSummary, Encryptor};
pub use error::{EnvelopeError, Field, Limit, Result, UnwrapAttempt};
pub use header::{EncryptedDataKey, Header};
pub use keyring::{
    AwsKmsKeyring, AzureKvKeyring, EncryptionMaterials, HsmAesKeyring, Keyring, MaterialsProvider,
    MultiKeyring, PROVIDER_ID_AWS_KMS, PROVIDER_ID_AZURE_KV, RawAesKeyring,
};
