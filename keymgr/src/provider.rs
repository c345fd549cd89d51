//! A provider's parsed configuration, started separately: parsing fails at start-up
//! (a malformed setting), starting may fail and be retried later (a token missing, an
//! endpoint down), which is what failover members need.

use std::sync::Arc;

use keymgr_core::config::VarSource;
use keymgr_core::layer::BoxFuture;
use keymgr_core::{Error, KeyBackend, Result};

use crate::config::{BackendKind, KEY_BACKEND};

/// One provider's configuration, read and checked but not connected.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ProviderConfig {
    /// The env backend (keys already parsed; nothing to start).
    #[cfg(feature = "env")]
    Env(Arc<keymgr_env::EnvBackend>),
    /// PKCS#11.
    #[cfg(feature = "hsm")]
    Hsm(keymgr_hsm::HsmConfig),
    /// AWS KMS.
    #[cfg(feature = "aws")]
    Aws(keymgr_aws::AwsKmsConfig),
    /// Google Cloud KMS.
    #[cfg(feature = "gcp")]
    Gcp(keymgr_gcp::GcpKmsConfig),
    /// Azure Key Vault.
    #[cfg(feature = "azure")]
    Azure(keymgr_azure::AzureKvConfig),
}

impl ProviderConfig {
    /// Reads `kind`'s variables through `var`; a malformed or missing one is an
    /// [`Error::Config`] naming it (as `var` spells it: a member's `HSM_2_PIN`).
    pub fn from_vars(
        kind: BackendKind,
        var: &(dyn Fn(&str) -> Option<String> + Sync),
    ) -> Result<Self> {
        Self::from_source(kind, &var)
    }

    /// Like [`from_vars`](Self::from_vars), from any [`VarSource`]: paths are read as
    /// `OsString` (a non-UTF-8 `HSM_PKCS11_LIBRARY_PATH` is a valid path).
    pub fn from_source(kind: BackendKind, var: &dyn VarSource) -> Result<Self> {
        match kind {
            #[cfg(feature = "env")]
            BackendKind::Env => Ok(Self::Env(Arc::new(keymgr_env::EnvBackend::from_source(
                var,
            )?))),
            #[cfg(feature = "hsm")]
            BackendKind::Hsm => Ok(Self::Hsm(keymgr_hsm::HsmConfig::from_source(var)?)),
            #[cfg(feature = "aws")]
            BackendKind::AwsKms => Ok(Self::Aws(keymgr_aws::AwsKmsConfig::from_source(var)?)),
            #[cfg(feature = "gcp")]
            BackendKind::GcpKms => Ok(Self::Gcp(keymgr_gcp::GcpKmsConfig::from_source(var)?)),
            #[cfg(feature = "azure")]
            BackendKind::AzureKeyVault => {
                Ok(Self::Azure(keymgr_azure::AzureKvConfig::from_source(var)?))
            }
            #[allow(unreachable_patterns)]
            other => {
                let _ = var;
                Err(Error::config(
                    KEY_BACKEND,
                    "a backend compiled into this build",
                    format!(
                        "{} is not available: rebuild keymgr with cargo feature `{}`",
                        other.as_str(),
                        other.feature().unwrap_or("?")
                    ),
                ))
            }
        }
    }

    /// Connects (logs in, builds the client).
    pub fn start(&self) -> BoxFuture<'static, Result<Arc<dyn KeyBackend>>> {
        let config = self.clone();
        Box::pin(async move {
            // A build with one provider feature has one arm.
            #[allow(clippy::infallible_destructuring_match)]
            let backend: Arc<dyn KeyBackend> = match config {
                #[cfg(feature = "env")]
                ProviderConfig::Env(b) => b,
                #[cfg(feature = "hsm")]
                ProviderConfig::Hsm(c) => Arc::new(keymgr_hsm::HsmBackend::connect(c).await?),
                #[cfg(feature = "aws")]
                ProviderConfig::Aws(c) => Arc::new(keymgr_aws::AwsKmsBackend::connect(c).await?),
                #[cfg(feature = "gcp")]
                ProviderConfig::Gcp(c) => Arc::new(keymgr_gcp::GcpKmsBackend::connect(c).await?),
                #[cfg(feature = "azure")]
                ProviderConfig::Azure(c) => Arc::new(keymgr_azure::AzureKvBackend::new(c)?),
            };
            Ok(backend)
        })
    }
}
