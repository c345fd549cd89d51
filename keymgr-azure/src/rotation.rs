//! Versions of a key: list, create (rotation), disable (never delete).
//!
//! Rotation in Key Vault is a new version under the same name (Create Key on an existing
//! name, <https://learn.microsoft.com/rest/api/keyvault/keys/create-key/create-key>); the
//! newest version becomes current at once. Old versions are disabled with Update Key
//! `{"attributes":{"enabled":false}}`
//! (<https://learn.microsoft.com/rest/api/keyvault/keys/update-key/update-key>); keymgr
//! never deletes a key. Versions are listed with Get Key Versions, following `nextLink`
//! (<https://learn.microsoft.com/rest/api/keyvault/keys/get-key-versions/get-key-versions>).

use std::collections::HashMap;

use azure_security_keyvault_keys::models::{
    CreateKeyParameters, CurveName, KeyAttributes, KeyClientUpdateKeyPropertiesOptions, KeyType,
    UpdateKeyPropertiesParameters,
};
use futures::TryStreamExt;
use keymgr_core::{Error, KeyAlgorithm, KeyRef, KeyVersion, Result, VersionState};

use crate::backend::AzureKvBackend;
use crate::error::map;
use crate::resolve::version_of_kid;

/// Tag keymgr puts on the versions it creates.
pub const TAG_CREATED_BY: &str = "created-by";

impl AzureKvBackend {
    pub(crate) async fn list_versions_inner(&self, name: &str) -> Result<Vec<KeyVersion>> {
        let target = self.config.vault_key(&KeyRef::new(name))?;
        let mut pager = self
            .client
            .list_key_properties_versions(&target.name, None)
            .map_err(|e| map(name, "getKeyVersions", e))?;
        let mut found = Vec::new();
        while let Some(props) = pager
            .try_next()
            .await
            .map_err(|e| map(name, "getKeyVersions", e))?
        {
            let Some(version) = props.kid.as_deref().and_then(version_of_kid) else {
                return Err(Error::integrity(
                    name,
                    "Key Vault listed a version without a kid",
                ));
            };
            let attributes = props.attributes.unwrap_or_default();
            let created = attributes
                .created
                .map(|t| u64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0));
            found.push((
                created,
                version.to_owned(),
                attributes.enabled != Some(false),
            ));
        }
        if found.is_empty() {
            return Err(Error::not_found(
                name,
                format!("no versions of {}", target.name),
            ));
        }
        // Key Vault lists in no documented order and `created` has one-second resolution:
        // order by creation time, the current (newest) version last among equals, the
        // service's order otherwise (a stable sort).
        self.cache.invalidate(&target.name);
        let current = self.resolve(&KeyRef::new(name)).await?.1.version;
        found.sort_by_key(|(created, version, _)| (*created, *version == current));
        Ok(found
            .into_iter()
            .map(|(created_at_ms, version, enabled)| KeyVersion {
                key: KeyRef::versioned(name, version.clone()),
                backend_id: format!(
                    "{}/keys/{}/{version}",
                    self.config.vault_url.trim_end_matches('/'),
                    target.name
                ),
                algorithm: KeyAlgorithm::Secp256k1,
                state: if enabled {
                    VersionState::Enabled
                } else {
                    VersionState::Disabled
                },
                created_at_ms,
                current: version == current,
            })
            .collect())
    }

    pub(crate) async fn create_version_inner(&self, name: &str) -> Result<KeyVersion> {
        let key = KeyRef::new(name);
        let target = self.config.vault_key(&key)?;
        if target.version.is_some() {
            return Err(Error::invalid_input(
                "key",
                format!(
                    "{name} is pinned to version {} in the configuration; remove the version \
                     to let rotation move it",
                    target.version.as_deref().unwrap_or_default()
                ),
            ));
        }
        // The current version's curve decides the new one's (P-256K; anything else is refused).
        let (_, current) = self.resolve(&key).await?;
        let parameters = CreateKeyParameters {
            kty: Some(KeyType::Ec),
            curve: Some(CurveName::P256K),
            tags: Some(HashMap::from([(
                TAG_CREATED_BY.to_owned(),
                "keymgr".to_owned(),
            )])),
            ..Default::default()
        };
        let bundle = self
            .client
            .create_key(
                &target.name,
                parameters
                    .try_into()
                    .map_err(|e| map(name, "createKey", e))?,
                None,
            )
            .await
            .map_err(|e| map(name, "createKey", e))?
            .into_model()
            .map_err(|e| map(name, "createKey", e))?;
        let info = crate::resolve::version_info(name, &bundle)?;
        self.cache.invalidate(&target.name);
        self.cache.store(&target.name, &info, true);
        tracing::info!(key = name, old = %current.version, new = %info.version, "created Azure Key Vault key version");
        Ok(KeyVersion {
            key: KeyRef::versioned(name, info.version.clone()),
            backend_id: format!(
                "{}/keys/{}/{}",
                self.config.vault_url.trim_end_matches('/'),
                target.name,
                info.version
            ),
            algorithm: KeyAlgorithm::Secp256k1,
            state: VersionState::Enabled,
            created_at_ms: bundle
                .attributes
                .and_then(|a| a.created)
                .map(|t| u64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)),
            current: true,
        })
    }

    pub(crate) async fn disable_version_inner(&self, key: &KeyRef) -> Result<()> {
        let Some(version) = key.version() else {
            return Err(Error::invalid_input(
                "key",
                format!(
                    "disable_version needs an explicit version ({}@VERSION); the current \
                     version is never disabled",
                    key.name()
                ),
            ));
        };
        let target = self.config.vault_key(key)?;
        self.cache.invalidate(&target.name);
        let (_, current) = self.resolve(&key.unversioned()).await?;
        if current.version.eq_ignore_ascii_case(version) {
            return Err(Error::invalid_input(
                "key",
                format!(
                    "{key} is the current version of {}; rotate before disabling it",
                    key.name()
                ),
            ));
        }
        let parameters = UpdateKeyPropertiesParameters {
            key_attributes: Some(KeyAttributes {
                enabled: Some(false),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = KeyClientUpdateKeyPropertiesOptions {
            key_version: Some(version.to_owned()),
            ..Default::default()
        };
        let label = key.to_string();
        let bundle = self
            .client
            .update_key_properties(
                &target.name,
                parameters
                    .try_into()
                    .map_err(|e| map(&label, "updateKey", e))?,
                Some(options),
            )
            .await
            .map_err(|e| map(&label, "updateKey", e))?
            .into_model()
            .map_err(|e| map(&label, "updateKey", e))?;
        if bundle.attributes.and_then(|a| a.enabled) != Some(false) {
            return Err(Error::integrity(
                &label,
                "Key Vault did not report the version disabled",
            ));
        }
        tracing::info!(key = %key, "disabled Azure Key Vault key version");
        Ok(())
    }
}
