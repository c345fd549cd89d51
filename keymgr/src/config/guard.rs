//! The logical keys `evm` and `xrp` exist only when their variable is set: no backend
//! gets asked for a key named literally `evm` because `AWS_KMS_EVM_KEY_ID` was empty.

use std::sync::Arc;

use async_trait::async_trait;
use keymgr_core::config::{VarSource, Vars};
use keymgr_core::{
    DataKey, EncryptionContext, Error, HealthReport, KeyBackend, KeyRef, KeyVersion, PublicKey,
    Result, SecretBytes, SignPayload, VerifiedSignature,
};

use super::BackendKind;

/// The variables that configure the `evm` and `xrp` keys of backend `kind`.
pub(crate) fn key_variables(kind: BackendKind) -> [(&'static str, &'static str); 2] {
    match kind {
        BackendKind::Env => [("EVM_PRIVATE_KEY", "evm"), ("XRP_SEED", "xrp")],
        BackendKind::AwsKms => [("AWS_KMS_EVM_KEY_ID", "evm"), ("AWS_KMS_XRP_KEY_ID", "xrp")],
        BackendKind::GcpKms => [("GCP_KMS_EVM_KEY_ID", "evm"), ("GCP_KMS_XRP_KEY_ID", "xrp")],
        BackendKind::AzureKeyVault => {
            [("AZURE_EVM_KEY_NAME", "evm"), ("AZURE_XRP_KEY_NAME", "xrp")]
        }
        BackendKind::Hsm => [("HSM_EVM_KEY_LABEL", "evm"), ("HSM_XRP_KEY_LABEL", "xrp")],
    }
}

/// `backend`, refusing the logical keys whose variable is unset with a configuration
/// error naming it (other names pass through: `alias/payments`, a label, ...).
pub(crate) fn configured_keys(
    kind: BackendKind,
    source: &dyn VarSource,
    backend: Arc<dyn KeyBackend>,
) -> Arc<dyn KeyBackend> {
    guard(unset_keys(kind, source, &str::to_owned), backend)
}

/// The logical keys of `kind` whose variable `source` does not set, as (variable as
/// `rename` spells it, key name): a failover member reads `HSM_2_EVM_KEY_LABEL` through
/// a source that renames, and its errors name that variable.
pub(crate) fn unset_keys(
    kind: BackendKind,
    source: &dyn VarSource,
    rename: &dyn Fn(&str) -> String,
) -> Vec<(String, &'static str)> {
    let vars = Vars::new(source);
    key_variables(kind)
        .into_iter()
        .filter(|(variable, _)| vars.os(variable).is_none())
        .map(|(variable, key)| (rename(variable), key))
        .collect()
}

/// `backend`, refusing the keys in `unset` (see [`unset_keys`]).
pub(crate) fn guard(
    unset: Vec<(String, &'static str)>,
    backend: Arc<dyn KeyBackend>,
) -> Arc<dyn KeyBackend> {
    if unset.is_empty() {
        return backend;
    }
    Arc::new(ConfiguredKeys {
        inner: backend,
        unset,
    })
}

#[derive(Debug)]
struct ConfiguredKeys {
    inner: Arc<dyn KeyBackend>,
    /// (variable, key name) of the logical keys that are not configured.
    unset: Vec<(String, &'static str)>,
}

impl ConfiguredKeys {
    fn check(&self, name: &str) -> Result<()> {
        match self.unset.iter().find(|(_, key)| *key == name) {
            None => Ok(()),
            Some((variable, key)) => Err(Error::config(
                variable.as_str(),
                format!("the {} key that serves `{key}`", self.inner.name()),
                format!("key `{key}` is used but {variable} is not set"),
            )),
        }
    }
}

#[async_trait]
impl KeyBackend for ConfiguredKeys {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn public_key(&self, key: &KeyRef) -> Result<PublicKey> {
        self.check(key.name())?;
        self.inner.public_key(key).await
    }
    async fn sign(&self, key: &KeyRef, payload: &SignPayload) -> Result<VerifiedSignature> {
        self.check(key.name())?;
        self.inner.sign(key, payload).await
    }
    async fn health(&self) -> HealthReport {
        self.inner.health().await
    }
    async fn list_versions(&self, name: &str) -> Result<Vec<KeyVersion>> {
        self.check(name)?;
        self.inner.list_versions(name).await
    }
    async fn create_version(&self, name: &str) -> Result<KeyVersion> {
        self.check(name)?;
        self.inner.create_version(name).await
    }
    async fn disable_version(&self, key: &KeyRef) -> Result<()> {
        self.check(key.name())?;
        self.inner.disable_version(key).await
    }
    async fn delete_version(&self, key: &KeyRef) -> Result<()> {
        self.check(key.name())?;
        self.inner.delete_version(key).await
    }
    async fn encrypt(
        &self,
        key: &KeyRef,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Vec<u8>> {
        self.check(key.name())?;
        self.inner.encrypt(key, plaintext, context).await
    }
    async fn decrypt(
        &self,
        key: &KeyRef,
        ciphertext: &[u8],
        context: &EncryptionContext,
    ) -> Result<SecretBytes> {
        self.check(key.name())?;
        self.inner.decrypt(key, ciphertext, context).await
    }
    async fn generate_data_key(
        &self,
        key: &KeyRef,
        context: &EncryptionContext,
    ) -> Result<DataKey> {
        self.check(key.name())?;
        self.inner.generate_data_key(key, context).await
    }
    fn invalidate(&self, name: &str) {
        self.inner.invalidate(name)
    }
}
