#![doc = include_str!("../README.md")]

mod backend;
mod config;
mod error;
mod resolve;
mod rotation;
mod symmetric;

pub use backend::{AzureKvBackend, BACKEND, HEALTH_CANARY_DIGEST};
pub use config::{
    AZURE_AUTHORITY_HOST, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET, AZURE_CREDENTIAL_KIND,
    AZURE_EVM_KEY_NAME, AZURE_FEDERATED_TOKEN_FILE, AZURE_KEYVAULT_VERIFY_CHALLENGE_RESOURCE,
    AZURE_TENANT_ID, AZURE_VAULT_URL, AZURE_XRP_KEY_NAME, AzureKvConfig, ClientSecret, Credential,
    DEFAULT_EVM_KEY, DEFAULT_XRP_KEY, SSL_CERT_FILE, VaultKey,
};
pub use error::KeyVaultError;
pub use resolve::CURRENT_VERSION_TTL;
pub use rotation::TAG_CREATED_BY;
pub use symmetric::{WRAPPED_KEY_FORMAT, WrappedKey};

/// The Azure crates this backend is built on, for callers that build their own client.
pub mod deps {
    pub use azure_core;
    pub use azure_identity;
    pub use azure_security_keyvault_keys;
}
