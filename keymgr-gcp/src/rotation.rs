//! List, create and disable crypto key versions.
//!
//! Cloud KMS keeps every version of a crypto key under it
//! ([`cryptoKeyVersions`](https://cloud.google.com/kms/docs/reference/rest/v1/projects.locations.keyRings.cryptoKeys.cryptoKeyVersions));
//! asymmetric keys have no primary version, so the current one is recorded in the
//! [`LABEL_CURRENT_VERSION`] label of the crypto key, which every process reads.
//! Old versions are disabled (`state: DISABLED`), never destroyed; their public key is
//! recorded on the crypto key first ([`crate::recorded`]), as Cloud KMS refuses
//! `getPublicKey` on a disabled version.
//!
//! A rotation survives a crash at any step: it first records the current version and
//! its intent ([`LABEL_ROTATING_FROM`]) in one label update, then creates the version,
//! waits until it is `ENABLED`, and moves the current-version label while clearing the
//! intent in a second update. Until that update the old version stays current (it signs);
//! a later rotation that finds the intent adopts the version the interrupted one created
//! (`ENABLED` or still `PENDING_GENERATION`) instead of creating a second one.

use std::time::Duration;

use google_cloud_kms_v1::model::crypto_key::CryptoKeyPurpose;
use google_cloud_kms_v1::model::crypto_key_version::CryptoKeyVersionState;
use google_cloud_kms_v1::model::{CryptoKey, CryptoKeyVersion};
use google_cloud_wkt::FieldMask;
use keymgr_core::{Error, KeyRef, KeyVersion, Result, VersionState};

use crate::GcpKmsBackend;
use crate::config::validate_version_id;
use crate::error::{BACKEND, map_gax_error};
use crate::recorded;
use crate::resolve::{
    LABEL_CURRENT_VERSION, algorithm_name, signing_algorithm, version_id, version_number,
};

/// Label on a crypto key while keymgr rotates it: the version that was current when the
/// rotation started. Removed when the current-version label moves (same update).
pub const LABEL_ROTATING_FROM: &str = "keymgr-rotating-from";

/// How long `create_version` waits for a new version to leave `PENDING_GENERATION`.
pub const GENERATION_TIMEOUT: Duration = Duration::from_secs(60);

impl GcpKmsBackend {
    /// The crypto key a rotation operation may change: configured by crypto key, not
    /// pinned to one version.
    fn rotatable(&self, name: &str, operation: &'static str) -> Result<String> {
        let resource = self.resource_of(name)?;
        if resource.version.is_some() {
            return Err(Error::unsupported(
                BACKEND,
                operation,
                format!(
                    "key {name} is pinned to one crypto key version; configure the crypto key \
                     (…/cryptoKeys/K) to rotate it"
                ),
            ));
        }
        Ok(resource.crypto_key)
    }

    pub(crate) async fn list_versions_inner(&self, name: &str) -> Result<Vec<KeyVersion>> {
        let resource = self.resource_of(name)?;
        let current = self.version_name(&KeyRef::new(name)).await?;
        let mut versions = self.versions_of(name, &resource.crypto_key).await?;
        versions.sort_by_key(|v| version_number(&v.name));
        versions
            .iter()
            .map(|v| key_version(name, v, v.name == current))
            .collect()
    }

    pub(crate) async fn create_version_inner(&self, name: &str) -> Result<KeyVersion> {
        let crypto_key = self.rotatable(name, "create_version")?;
        let key = self.get_crypto_key(name, &crypto_key).await?;
        if key.purpose != CryptoKeyPurpose::AsymmetricSign {
            return Err(Error::unsupported(
                BACKEND,
                "create_version",
                format!(
                    "{crypto_key} has purpose {}; keymgr rotates signing keys only (for \
                     symmetric keys set a Cloud KMS rotation period, which keeps old \
                     ciphertexts decryptable)",
                    key.purpose.name().unwrap_or("UNKNOWN")
                ),
            ));
        }
        self.forget_current(name);
        let old = self.current_version(name, &crypto_key).await?;
        let old_id = version_id(&old).to_owned();
        let interrupted = key.labels.get(LABEL_ROTATING_FROM) == Some(&old_id);
        let adopted = if interrupted {
            self.interrupted_successor(name, &crypto_key, &old).await?
        } else {
            None
        };
        let (key, created) = match adopted {
            Some(orphan) => {
                tracing::warn!(
                    key = name,
                    crypto_key = %crypto_key,
                    adopted = %orphan.name,
                    "adopting the version an interrupted rotation created"
                );
                (key, orphan)
            }
            None => {
                // Intent first, with the current version written down (a key never
                // rotated has no label, and its newest ENABLED version would otherwise
                // become current the moment the new version is enabled).
                let key = self
                    .update_labels(name, &key, |labels| {
                        labels.insert(LABEL_CURRENT_VERSION.to_owned(), old_id.clone());
                        labels.insert(LABEL_ROTATING_FROM.to_owned(), old_id.clone());
                    })
                    .await?;
                let created = self
                    .client
                    .create_crypto_key_version()
                    .set_parent(&crypto_key)
                    .set_crypto_key_version(CryptoKeyVersion::new())
                    .send()
                    .await
                    .map_err(|e| map_gax_error(e, "CreateCryptoKeyVersion", name, &crypto_key))?;
                (key, created)
            }
        };
        let created = self.wait_enabled(name, created).await?;
        signing_algorithm(&created.algorithm, name, &created.name)?;
        self.set_current_label(name, &key, version_id(&created.name))
            .await?;
        self.forget_current(name);
        tracing::info!(
            key = name,
            crypto_key = %crypto_key,
            old_version = %old,
            new_version = %created.name,
            "rotated Cloud KMS crypto key"
        );
        key_version(name, &created, true)
    }

    /// Polls a new version until it is `ENABLED` (asymmetric keys are generated
    /// asynchronously: `PENDING_GENERATION` first).
    async fn wait_enabled(&self, name: &str, mut v: CryptoKeyVersion) -> Result<CryptoKeyVersion> {
        let started = std::time::Instant::now();
        let mut delay = Duration::from_millis(50);
        loop {
            match v.state {
                CryptoKeyVersionState::Enabled => return Ok(v),
                CryptoKeyVersionState::PendingGeneration => {}
                other => {
                    return Err(Error::backend(
                        BACKEND,
                        format!(
                            "{name}: new version {} is {} ({})",
                            v.name,
                            other.name().unwrap_or("in an unknown state"),
                            v.generation_failure_reason
                        ),
                        None,
                    ));
                }
            }
            if started.elapsed() > GENERATION_TIMEOUT {
                return Err(Error::unavailable(
                    BACKEND,
                    format!(
                        "{name}: new version {} still PENDING_GENERATION after {GENERATION_TIMEOUT:?}; \
                         it was not made current",
                        v.name
                    ),
                    None,
                ));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
            v = self.get_version(name, &v.name).await?;
        }
    }

    /// The newest version above `current` that an interrupted rotation left `ENABLED`
    /// or `PENDING_GENERATION` (versions disabled or destroyed since are not adopted).
    async fn interrupted_successor(
        &self,
        name: &str,
        crypto_key: &str,
        current: &str,
    ) -> Result<Option<CryptoKeyVersion>> {
        let floor = version_number(current);
        Ok(self
            .versions_of(name, crypto_key)
            .await?
            .into_iter()
            .filter(|v| version_number(&v.name) > floor)
            .filter(|v| {
                matches!(
                    v.state,
                    CryptoKeyVersionState::Enabled | CryptoKeyVersionState::PendingGeneration
                )
            })
            .max_by_key(|v| version_number(&v.name)))
    }

    /// Moves the current-version label to `version` and clears the rotation intent.
    async fn set_current_label(&self, name: &str, key: &CryptoKey, version: &str) -> Result<()> {
        let updated = self
            .update_labels(name, key, |labels| {
                labels.insert(LABEL_CURRENT_VERSION.to_owned(), version.to_owned());
                labels.remove(LABEL_ROTATING_FROM);
            })
            .await?;
        if updated
            .labels
            .get(LABEL_CURRENT_VERSION)
            .map(String::as_str)
            != Some(version)
            || updated.labels.contains_key(LABEL_ROTATING_FROM)
        {
            return Err(Error::integrity(
                name,
                format!(
                    "UpdateCryptoKey on {} did not record {LABEL_CURRENT_VERSION}={version}",
                    key.name
                ),
            ));
        }
        Ok(())
    }

    /// One `UpdateCryptoKey` of the labels (mask `labels`), returning the updated key.
    async fn update_labels(
        &self,
        name: &str,
        key: &CryptoKey,
        change: impl FnOnce(&mut std::collections::HashMap<String, String>),
    ) -> Result<CryptoKey> {
        let mut labels = key.labels.clone();
        change(&mut labels);
        let update = CryptoKey::new().set_name(&key.name).set_labels(labels);
        self.client
            .update_crypto_key()
            .set_crypto_key(update)
            .set_update_mask(FieldMask::default().set_paths(["labels"]))
            .send()
            .await
            .map_err(|e| map_gax_error(e, "UpdateCryptoKey", name, &key.name))
    }

    pub(crate) async fn disable_version_inner(&self, key: &KeyRef) -> Result<()> {
        let Some(version) = key.version() else {
            return Err(Error::invalid_input(
                "key",
                format!(
                    "disable_version needs an explicit version ({}@N); the current version is \
                     never disabled",
                    key.name()
                ),
            ));
        };
        validate_version_id(version)
            .map_err(|r| Error::invalid_input("key", format!("{key}: {r}")))?;
        let crypto_key = self.rotatable(key.name(), "disable_version")?;
        self.forget_current(key.name());
        let current = self.current_version(key.name(), &crypto_key).await?;
        let target = format!("{crypto_key}/cryptoKeyVersions/{version}");
        if current == target {
            return Err(Error::invalid_input(
                "key",
                format!(
                    "{key} is the current version of {}; rotate before disabling it",
                    key.name()
                ),
            ));
        }
        let label = key.to_string();
        self.record_public_key(&label, &crypto_key, &target).await?;
        let update = CryptoKeyVersion::new()
            .set_name(&target)
            .set_state(CryptoKeyVersionState::Disabled);
        let updated = self
            .client
            .update_crypto_key_version()
            .set_crypto_key_version(update)
            .set_update_mask(FieldMask::default().set_paths(["state"]))
            .send()
            .await
            .map_err(|e| map_gax_error(e, "UpdateCryptoKeyVersion", &label, &target))?;
        if updated.state != CryptoKeyVersionState::Disabled {
            return Err(Error::integrity(
                label,
                format!(
                    "UpdateCryptoKeyVersion left {target} {}",
                    updated.state.name().unwrap_or("in an unknown state")
                ),
            ));
        }
        tracing::info!(key = %key, version = %target, "disabled Cloud KMS crypto key version");
        Ok(())
    }
}

impl GcpKmsBackend {
    /// Records the public key of the `ENABLED` version `target` on `crypto_key`
    /// ([`crate::recorded`]) unless recorded already: the last moment Cloud KMS answers
    /// `getPublicKey` for it. A version not `ENABLED` is left as it is.
    async fn record_public_key(&self, label: &str, crypto_key: &str, target: &str) -> Result<()> {
        let meta = self.get_version(label, target).await?;
        if meta.state != CryptoKeyVersionState::Enabled {
            return Ok(());
        }
        let public_key = self.info(label, target).await?.public_key.clone();
        let record_label = recorded::label_for(target);
        let value = recorded::encode(&public_key);
        let key = self.get_crypto_key(label, crypto_key).await?;
        if key.labels.get(&record_label) == Some(&value) {
            return Ok(());
        }
        let updated = self
            .update_labels(label, &key, |labels| {
                labels.insert(record_label.clone(), value.clone());
            })
            .await?;
        if updated.labels.get(&record_label) != Some(&value) {
            return Err(Error::integrity(
                label,
                format!("UpdateCryptoKey on {crypto_key} did not record {record_label}"),
            ));
        }
        Ok(())
    }
}

/// One Cloud KMS version as keymgr reports it.
fn key_version(name: &str, v: &CryptoKeyVersion, current: bool) -> Result<KeyVersion> {
    let algorithm = signing_algorithm(&v.algorithm, name, &v.name).map_err(|_| {
        Error::unsupported(
            BACKEND,
            "list_versions",
            format!(
                "{} has algorithm {}; keymgr manages versions of signing keys \
                 (EC_SIGN_SECP256K1_SHA256, EC_SIGN_ED25519)",
                v.name,
                algorithm_name(&v.algorithm)
            ),
        )
    })?;
    let state = match v.state {
        CryptoKeyVersionState::Enabled => VersionState::Enabled,
        CryptoKeyVersionState::PendingGeneration | CryptoKeyVersionState::PendingImport => {
            VersionState::Pending
        }
        _ => VersionState::Disabled,
    };
    let created_at_ms = v.create_time.as_ref().and_then(|t| {
        let ms = t.seconds().checked_mul(1000)? + i64::from(t.nanos()) / 1_000_000;
        u64::try_from(ms).ok()
    });
    Ok(KeyVersion {
        key: KeyRef::versioned(name, version_id(&v.name)),
        backend_id: v.name.clone(),
        algorithm,
        state,
        created_at_ms,
        current,
    })
}
