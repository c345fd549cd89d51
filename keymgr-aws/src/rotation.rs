//! Rotation by alias: list, create (with crash adoption) and disable versions.
//!
//! A logical key is a KMS alias; each version is its own KMS key, tagged with its place
//! in the history ([`TAG_LOGICAL_KEY`], [`TAG_VERSION`], [`TAG_CREATED`],
//! [`TAG_PREVIOUS`]). `create_version` marks its intent on the current key
//! ([`TAG_ROTATING`]) before
//! [`CreateKey`](https://docs.aws.amazon.com/kms/latest/APIReference/API_CreateKey.html),
//! then moves the alias
//! ([`UpdateAlias`](https://docs.aws.amazon.com/kms/latest/APIReference/API_UpdateAlias.html));
//! a later rotation that finds the marker adopts the key an interrupted one created
//! instead of creating another. Old versions are disabled
//! ([`DisableKey`](https://docs.aws.amazon.com/kms/latest/APIReference/API_DisableKey.html)),
//! never scheduled for deletion.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use aws_sdk_kms::primitives::{DateTime, DateTimeFormat};
use aws_sdk_kms::types::{KeyMetadata, KeySpec, KeyState, Tag};
use keymgr_core::{
    Error, IntegrityReason, KeyAlgorithm, KeyBackend as _, KeyRef, KeyVersion, Result, VersionState,
};

use crate::AwsKmsBackend;
use crate::error::{BACKEND, map_sdk_error};
use crate::resolve::{VersionOf, algorithm_of, alias_of, public_key_record};

/// Tag naming the logical key (its alias, `alias/NAME`) a KMS key is a version of.
pub const TAG_LOGICAL_KEY: &str = "keymgr:logical-key";
/// Tag with the version number (1, 2, ...) within the logical key.
pub const TAG_VERSION: &str = "keymgr:version";
/// Tag with the creation time of the version (RFC 3339, UTC).
pub const TAG_CREATED: &str = "keymgr:created";
/// Tag with the key id of the version this one replaced.
pub const TAG_PREVIOUS: &str = "keymgr:previous";
/// Tag recording a version's public key before keymgr disables it, as
/// `KEY_ID:BASE64(SPKI DER)`: KMS refuses `GetPublicKey` on a disabled key, and old
/// signatures must stay verifiable from any process.
pub const TAG_PUBLIC_KEY: &str = "keymgr:public-key";
/// Tag on the current key while a rotation creates its successor (the intent; cleared
/// once the alias moved). Found on a later rotation, it means "look for the key an
/// interrupted rotation made before creating another".
pub const TAG_ROTATING: &str = "keymgr:rotating";

impl AwsKmsBackend {
    pub(crate) fn version_of(
        &self,
        name: &str,
        meta: &KeyMetadata,
        tags: &HashMap<String, String>,
        current: bool,
    ) -> Result<KeyVersion> {
        let label = format!("{name}@{}", meta.key_id());
        let algorithm = algorithm_of(meta.key_spec(), &label, meta.key_id())?;
        let state = if self.is_disabled_locally(meta.key_id()) {
            VersionState::Disabled
        } else {
            match meta.key_state() {
                Some(KeyState::Enabled) => VersionState::Enabled,
                Some(KeyState::Creating | KeyState::PendingImport | KeyState::Updating) => {
                    VersionState::Pending
                }
                _ => VersionState::Disabled,
            }
        };
        let created_at_ms = meta
            .creation_date()
            .and_then(|d| d.to_millis().ok())
            .and_then(|ms| u64::try_from(ms).ok())
            .or_else(|| {
                let tag = tags.get(TAG_CREATED)?;
                let parsed = DateTime::from_str(tag, DateTimeFormat::DateTime).ok()?;
                u64::try_from(parsed.to_millis().ok()?).ok()
            });
        Ok(KeyVersion {
            key: KeyRef::versioned(name, meta.key_id()),
            backend_id: meta.arn().unwrap_or(meta.key_id()).to_owned(),
            algorithm,
            state,
            created_at_ms,
            current,
        })
    }

    pub(crate) fn rotation_alias(&self, name: &str, operation: &'static str) -> Result<String> {
        let target = self.identifier(name);
        alias_of(target).ok_or_else(|| {
            Error::unsupported(
                BACKEND,
                operation,
                format!(
                    "key {name} is named by KMS key {target}, not by an alias; rotation moves an \
                     alias to a new key, so configure the key as alias/NAME"
                ),
            )
        })
    }

    /// Points `alias` at `new_key`, unless another process rotated meanwhile (the alias
    /// no longer names `old_key`). On failure `new_key` is disabled (never deleted), so no
    /// usable orphan is left behind.
    pub(crate) async fn move_alias(
        &self,
        name: &str,
        alias: &str,
        old_key: &str,
        new_key: &str,
    ) -> Result<()> {
        let moved = match self.describe(name, alias).await {
            Ok(now_current) if now_current.key_id() == old_key => self
                .client
                .update_alias()
                .alias_name(alias)
                .target_key_id(new_key)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| map_sdk_error(e, "UpdateAlias", name, alias)),
            Ok(now_current) => Err(Error::backend(
                BACKEND,
                format!(
                    "{alias} was rotated concurrently to KMS key {}; the key created here ({new_key}) \
                     was disabled",
                    now_current.key_id(),
                ),
                None,
            )),
            Err(e) => Err(e),
        };
        if moved.is_err()
            && let Err(e) = self.client.disable_key().key_id(new_key).send().await
        {
            tracing::warn!(key = name, kms_key = new_key, error = %e, "could not disable the key this rotation created");
        }
        moved
    }

    /// After the alias moved: clears the intent marker on the old key, drops cached
    /// state and describes the new current version.
    pub(crate) async fn finish_rotation(
        &self,
        name: &str,
        alias: &str,
        old: &KeyMetadata,
        new: &KeyMetadata,
        version: u64,
        algorithm: KeyAlgorithm,
    ) -> Result<KeyVersion> {
        if let Err(e) = self
            .client
            .untag_resource()
            .key_id(old.key_id())
            .tag_keys(TAG_ROTATING)
            .send()
            .await
        {
            // Harmless: the next rotation scans once for a successor and finds none.
            tracing::warn!(key = name, kms_key = old.key_id(), error = %e, "could not clear {TAG_ROTATING}");
        }
        self.invalidate(name);
        tracing::info!(
            key = name,
            alias = %alias,
            old_key = old.key_id(),
            new_key = new.key_id(),
            version,
            "rotated AWS KMS key"
        );
        Ok(KeyVersion {
            key: KeyRef::versioned(name, new.key_id()),
            backend_id: new.arn().unwrap_or(new.key_id()).to_owned(),
            algorithm,
            state: VersionState::Enabled,
            created_at_ms: new
                .creation_date()
                .and_then(|d| d.to_millis().ok())
                .and_then(|ms| u64::try_from(ms).ok()),
            current: true,
        })
    }

    /// An enabled key tagged as `alias`'s successor of `previous` (made by a rotation that
    /// was interrupted before it moved the alias). Lists every key in the account, so it
    /// runs only when the intent marker says a rotation was interrupted.
    pub(crate) async fn find_successor(
        &self,
        name: &str,
        alias: &str,
        previous: &str,
    ) -> Result<Option<KeyMetadata>> {
        let mut marker = None;
        loop {
            let page = self
                .client
                .list_keys()
                .set_marker(marker)
                .send()
                .await
                .map_err(|e| map_sdk_error(e, "ListKeys", name, "(account)"))?;
            for entry in page.keys() {
                let Some(id) = entry.key_id() else { continue };
                if id == previous {
                    continue;
                }
                let tags = match self.tags(name, id).await {
                    Ok(t) => t,
                    // Keys this principal may not read are not ours to adopt.
                    Err(e) if e.kind() == keymgr_core::ErrorKind::AccessDenied => continue,
                    Err(e) => return Err(e),
                };
                if tags.get(TAG_PREVIOUS).map(String::as_str) == Some(previous)
                    && tags.get(TAG_LOGICAL_KEY).map(String::as_str) == Some(alias)
                {
                    let meta = self.describe(name, id).await?;
                    if meta.key_state() == Some(&KeyState::Enabled) {
                        return Ok(Some(meta));
                    }
                }
            }
            match (page.truncated(), page.next_marker) {
                (true, Some(next)) => marker = Some(next),
                _ => return Ok(None),
            }
        }
    }

    pub(crate) async fn list_versions_inner(&self, name: &str) -> Result<Vec<KeyVersion>> {
        let target = self.identifier(name).to_owned();
        let mut meta = self.describe(name, &target).await?;
        let mut versions = Vec::new();
        let mut seen = HashSet::new();
        loop {
            let tags = self.tags(name, meta.key_id()).await?;
            versions.push(self.version_of(name, &meta, &tags, versions.is_empty())?);
            seen.insert(meta.key_id().to_owned());
            let previous = match tags.get(TAG_PREVIOUS) {
                Some(p) if alias_of(&target).is_some() && !seen.contains(p) => p.clone(),
                _ => break,
            };
            meta = match self.describe(name, &previous).await {
                Ok(m) => m,
                // History ends where a key was deleted outside keymgr.
                Err(e) if e.kind() == keymgr_core::ErrorKind::NotFound => break,
                Err(e) => return Err(e),
            };
        }
        versions.reverse();
        Ok(versions)
    }

    pub(crate) async fn create_version_inner(&self, name: &str) -> Result<KeyVersion> {
        let alias = self.rotation_alias(name, "create_version")?;
        let current = self.describe(name, &alias).await?;
        let algorithm = algorithm_of(current.key_spec(), name, current.key_id()).map_err(|_| {
            Error::unsupported(
                BACKEND,
                "create_version",
                format!(
                    "{alias} points to KMS key {} with KeySpec {}; keymgr rotates signing \
                         keys only (for symmetric keys enable AWS automatic key rotation, which \
                         keeps old ciphertexts decryptable)",
                    current.key_id(),
                    current.key_spec().map_or("(none)", KeySpec::as_str)
                ),
            )
        })?;
        let tags = self.tags(name, current.key_id()).await?;
        let current_version: u64 = tags
            .get(TAG_VERSION)
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        if !tags.contains_key(TAG_VERSION) {
            // A key created outside keymgr becomes version 1 of the history.
            let created = current
                .creation_date()
                .and_then(|d| d.fmt(DateTimeFormat::DateTime).ok())
                .unwrap_or_default();
            self.client
                .tag_resource()
                .key_id(current.key_id())
                .set_tags(Some(vec![
                    tag(TAG_LOGICAL_KEY, &alias)?,
                    tag(TAG_VERSION, "1")?,
                    tag(TAG_CREATED, &created)?,
                ]))
                .send()
                .await
                .map_err(|e| map_sdk_error(e, "TagResource", name, current.key_id()))?;
        }
        let now = DateTime::from(SystemTime::now())
            .fmt(DateTimeFormat::DateTime)
            .map_err(|e| {
                Error::backend(
                    BACKEND,
                    format!("formatting the time: {e}"),
                    Some(Box::new(e)),
                )
            })?;
        let next = current_version + 1;
        // An earlier attempt was interrupted after marking its intent: the key it may have
        // created (tagged as the successor of `current`) is adopted, not duplicated.
        if tags.contains_key(TAG_ROTATING)
            && let Some(orphan) = self.find_successor(name, &alias, current.key_id()).await?
        {
            tracing::warn!(
                key = name,
                alias = %alias,
                adopted = orphan.key_id(),
                "adopting the KMS key an interrupted rotation created"
            );
            self.move_alias(name, &alias, current.key_id(), orphan.key_id())
                .await?;
            return self
                .finish_rotation(name, &alias, &current, &orphan, next, algorithm)
                .await;
        }
        // Intent first: a crash between CreateKey and UpdateAlias leaves this marker, so
        // the next attempt looks for the key it made (a scan paid only after a crash).
        self.client
            .tag_resource()
            .key_id(current.key_id())
            .tags(tag(TAG_ROTATING, &now)?)
            .send()
            .await
            .map_err(|e| map_sdk_error(e, "TagResource", name, current.key_id()))?;
        let mut new_tags = Vec::new();
        for (k, v) in &tags {
            if !k.starts_with("keymgr:") {
                new_tags.push(tag(k, v)?);
            }
        }
        new_tags.push(tag(TAG_LOGICAL_KEY, &alias)?);
        new_tags.push(tag(TAG_VERSION, &next.to_string())?);
        new_tags.push(tag(TAG_CREATED, &now)?);
        new_tags.push(tag(TAG_PREVIOUS, current.key_id())?);
        let description = match current.description() {
            Some(d) if !d.is_empty() => d.to_owned(),
            _ => format!("keymgr {alias} version {next}"),
        };
        let created = self
            .client
            .create_key()
            .set_key_spec(current.key_spec().cloned())
            .set_key_usage(current.key_usage().cloned())
            .description(description)
            .set_tags(Some(new_tags))
            .send()
            .await
            .map_err(|e| map_sdk_error(e, "CreateKey", name, &alias))?
            .key_metadata
            .ok_or_else(|| {
                Error::integrity_failure(
                    name,
                    IntegrityReason::MalformedResponse,
                    "CreateKey returned no key metadata",
                )
            })?;
        self.move_alias(name, &alias, current.key_id(), created.key_id())
            .await?;
        self.finish_rotation(name, &alias, &current, &created, next, algorithm)
            .await
    }

    pub(crate) async fn disable_version_inner(&self, key: &KeyRef) -> Result<()> {
        let Some(version) = key.version() else {
            return Err(Error::invalid_input(
                "key",
                format!(
                    "disable_version needs an explicit version ({}@KEY_ID); the current version \
                     is never disabled",
                    key.name()
                ),
            ));
        };
        let VersionOf {
            meta,
            current,
            tags,
        } = self.check_version(key, version).await?;
        if current {
            return Err(Error::invalid_input(
                "key",
                format!(
                    "{key} is the current version of {}; rotate before disabling it",
                    key.name()
                ),
            ));
        }
        if meta.key_state() == Some(&KeyState::Enabled) && !tags.contains_key(TAG_PUBLIC_KEY) {
            // Last chance to read it: recorded on the key, so every process can still
            // verify old signatures (keymgr-aws answers `public_key` from this tag).
            let info = self.fetch_info(key, meta.key_id()).await?;
            let record = public_key_record(meta.key_id(), &info.public_key)?;
            self.client
                .tag_resource()
                .key_id(meta.key_id())
                .tags(tag(TAG_PUBLIC_KEY, &record)?)
                .send()
                .await
                .map_err(|e| map_sdk_error(e, "TagResource", &key.to_string(), meta.key_id()))?;
        }
        self.client
            .disable_key()
            .key_id(meta.key_id())
            .send()
            .await
            .map_err(|e| map_sdk_error(e, "DisableKey", &key.to_string(), meta.key_id()))?;
        self.disabled
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(meta.key_id().to_owned());
        tracing::info!(key = %key, kms_key = meta.key_id(), "disabled AWS KMS key version");
        Ok(())
    }
}

pub(crate) fn tag(key: &str, value: &str) -> Result<Tag> {
    Tag::builder()
        .tag_key(key)
        .tag_value(value)
        .build()
        .map_err(|e| {
            Error::backend(
                BACKEND,
                format!("building tag {key}: {e}"),
                Some(Box::new(e)),
            )
        })
}
