//! Key names → KMS keys: the per-key metadata cache, `GetPublicKey`/`DescribeKey`/
//! `ListResourceTags` lookups, and the check that a version (`name@KEY_ID`) belongs to
//! its logical key.
//!
//! - A key id's public key and algorithm never change: cached for the process
//!   ([`GetPublicKey`](https://docs.aws.amazon.com/kms/latest/APIReference/API_GetPublicKey.html)).
//! - An unversioned name (an alias) is cached by identifier; when `Sign` reports another
//!   key id (the alias moved), the signer's key is fetched and cached instead.
//! - A version is the alias's current target or carries the tag
//!   [`TAG_LOGICAL_KEY`](crate::TAG_LOGICAL_KEY)`=alias/NAME`
//!   ([`DescribeKey`](https://docs.aws.amazon.com/kms/latest/APIReference/API_DescribeKey.html),
//!   [`ListResourceTags`](https://docs.aws.amazon.com/kms/latest/APIReference/API_ListResourceTags.html));
//!   its `Enabled` state is re-read at most every
//!   [`DEFAULT_VERSION_STATE_TTL`](crate::DEFAULT_VERSION_STATE_TTL).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use aws_sdk_kms::types::{KeyMetadata, KeySpec, KeyState, KeyUsageType};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use keymgr_core::{Error, IntegrityReason, KeyAlgorithm, KeyRef, PublicKey, Result};

use crate::AwsKmsBackend;
use crate::error::map_sdk_error;
use crate::rotation::{TAG_LOGICAL_KEY, TAG_PUBLIC_KEY};

/// A KMS key found to be a version of a logical key.
pub(crate) struct VersionOf {
    pub(crate) meta: KeyMetadata,
    /// Whether the alias names it.
    pub(crate) current: bool,
    /// Its tags (read only for a non-current version; empty for the current one).
    pub(crate) tags: HashMap<String, String>,
}

/// What keymgr needs to know about one KMS signing key; immutable for a key id.
#[derive(Debug)]
pub(crate) struct KeyInfo {
    pub(crate) key_id: String,
    pub(crate) arn: String,
    pub(crate) algorithm: KeyAlgorithm,
    pub(crate) public_key: PublicKey,
}

impl AwsKmsBackend {
    pub(crate) fn cached(&self, cache_key: &str) -> Option<Arc<KeyInfo>> {
        self.infos
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(cache_key)
            .cloned()
    }

    pub(crate) fn remember(&self, cache_key: String, info: Arc<KeyInfo>) {
        self.infos
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(cache_key, info);
    }

    pub(crate) fn is_disabled_locally(&self, key_id: &str) -> bool {
        self.disabled
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(key_id)
    }

    /// `GetPublicKey`, checked: a SIGN_VERIFY key of a supported spec whose SPKI parses
    /// to the algorithm the spec names.
    pub(crate) async fn fetch_info(&self, key: &KeyRef, target: &str) -> Result<Arc<KeyInfo>> {
        let label = key.to_string();
        let out = self
            .client
            .get_public_key()
            .key_id(target)
            .send()
            .await
            .map_err(|e| map_sdk_error(e, "GetPublicKey", &label, target))?;
        let arn = out.key_id().unwrap_or(target).to_owned();
        let usage = out.key_usage();
        if usage != Some(&KeyUsageType::SignVerify) {
            return Err(Error::invalid_input(
                format!("key {label}"),
                format!(
                    "KMS key {arn} has KeyUsage {}; signing needs a SIGN_VERIFY key",
                    usage.map_or("(none)", KeyUsageType::as_str)
                ),
            ));
        }
        // CustomerMasterKeySpec is the deprecated twin of KeySpec; some emulators (moto)
        // send only that one.
        #[allow(deprecated)]
        let spec = out.key_spec().cloned().or_else(|| {
            out.customer_master_key_spec()
                .map(|s| KeySpec::from(s.as_str()))
        });
        let algorithm = algorithm_of(spec.as_ref(), &label, &arn)?;
        let der = out.public_key().ok_or_else(|| {
            Error::integrity_failure(
                &label,
                IntegrityReason::MalformedResponse,
                format!("GetPublicKey for {arn} returned no public key"),
            )
        })?;
        let public_key = PublicKey::from_spki_der(der.as_ref()).map_err(|e| {
            Error::integrity_failure(
                &label,
                IntegrityReason::MalformedResponse,
                format!("GetPublicKey for {arn} returned an unusable public key"),
            )
            .with_source(e)
        })?;
        if public_key.algorithm() != algorithm {
            return Err(Error::integrity_failure(
                &label,
                IntegrityReason::AlgorithmMismatch,
                format!(
                    "KMS key {arn} claims a {algorithm} KeySpec but its public key is {}",
                    public_key.algorithm()
                ),
            ));
        }
        Ok(Arc::new(KeyInfo {
            key_id: key_id_of_arn(&arn).to_owned(),
            arn,
            algorithm,
            public_key,
        }))
    }

    pub(crate) async fn describe(&self, label: &str, target: &str) -> Result<KeyMetadata> {
        let out = self
            .client
            .describe_key()
            .key_id(target)
            .send()
            .await
            .map_err(|e| map_sdk_error(e, "DescribeKey", label, target))?;
        out.key_metadata.ok_or_else(|| {
            Error::integrity_failure(
                label,
                IntegrityReason::MalformedResponse,
                format!("DescribeKey for {target} returned no metadata"),
            )
        })
    }

    pub(crate) async fn tags(&self, label: &str, key_id: &str) -> Result<HashMap<String, String>> {
        let mut tags = HashMap::new();
        let mut marker = None;
        loop {
            let out = self
                .client
                .list_resource_tags()
                .key_id(key_id)
                .set_marker(marker)
                .send()
                .await
                .map_err(|e| map_sdk_error(e, "ListResourceTags", label, key_id))?;
            for tag in out.tags() {
                tags.insert(tag.tag_key().to_owned(), tag.tag_value().to_owned());
            }
            match (out.truncated(), out.next_marker) {
                (true, Some(next)) => marker = Some(next),
                _ => return Ok(tags),
            }
        }
    }

    /// Checks that the KMS key `key_id` is a version of `key`'s logical key.
    pub(crate) async fn check_version(&self, key: &KeyRef, key_id: &str) -> Result<VersionOf> {
        self.version_status(key, key_id)
            .await?
            .ok_or_else(|| Error::not_found(key.to_string(), self.not_a_version(key, key_id)))
    }

    /// Like [`Self::check_version`], but `Ok(None)` when `key_id` is not a version of
    /// `key`, so callers tell that apart from failing to find out.
    pub(crate) async fn version_status(
        &self,
        key: &KeyRef,
        key_id: &str,
    ) -> Result<Option<VersionOf>> {
        let label = key.to_string();
        let target = self.identifier(key.name());
        let meta = self.describe(&label, key_id).await?;
        let current = self.describe(&label, target).await?;
        if meta.key_id() == current.key_id() {
            return Ok(Some(VersionOf {
                meta,
                current: true,
                tags: HashMap::new(),
            }));
        }
        if let Some(alias) = alias_of(target) {
            let tags = self.tags(&label, meta.key_id()).await?;
            if tags.get(TAG_LOGICAL_KEY).map(String::as_str) == Some(alias.as_str()) {
                return Ok(Some(VersionOf {
                    meta,
                    current: false,
                    tags,
                }));
            }
        }
        Ok(None)
    }

    pub(crate) fn not_a_version(&self, key: &KeyRef, key_id: &str) -> String {
        let target = self.identifier(key.name());
        format!(
            "KMS key {key_id} is not a version of {target} (it is not the current key and has \
             no {TAG_LOGICAL_KEY} tag naming {target})"
        )
    }

    /// What `sign` sends to KMS and the key it expects to sign.
    pub(crate) async fn signing_target(&self, key: &KeyRef) -> Result<(String, Arc<KeyInfo>)> {
        match key.version() {
            None => {
                let target = self.identifier(key.name()).to_owned();
                if let Some(info) = self.cached(&target) {
                    return Ok((target, info));
                }
                let info = self.fetch_info(key, &target).await?;
                self.remember(target.clone(), info.clone());
                Ok((target, info))
            }
            Some(version) => {
                let cache_key = key.to_string();
                if let Some(info) = self.cached(&cache_key) {
                    return Ok((info.arn.clone(), info));
                }
                let version = self.check_version(key, version).await?;
                let info = if version.meta.key_state() == Some(&KeyState::Enabled) {
                    self.fetch_info(key, version.meta.key_id()).await?
                } else {
                    // KMS refuses GetPublicKey on a disabled key: read what keymgr
                    // recorded before disabling it.
                    recorded_info(key, &version)?
                };
                self.remember(cache_key, info.clone());
                Ok((info.arn.clone(), info))
            }
        }
    }

    /// Refuses to sign with an explicitly named version that KMS does not report as
    /// `Enabled` (checked at most every `version_state_ttl`): moto, and a lagging or
    /// misconfigured service, would sign with a disabled key.
    pub(crate) async fn ensure_enabled(&self, key: &KeyRef, info: &KeyInfo) -> Result<()> {
        let label = key.to_string();
        let fresh = self
            .enabled_seen
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&label)
            .is_some_and(|seen| seen.elapsed() < self.version_state_ttl);
        if fresh {
            return Ok(());
        }
        let meta = self.describe(&label, &info.key_id).await?;
        if meta.key_state() != Some(&KeyState::Enabled) {
            self.enabled_seen
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&label);
            return Err(Error::access_denied(
                label,
                format!(
                    "KMS key {} is {}; keymgr does not sign with it",
                    info.arn,
                    meta.key_state()
                        .map_or("in an unknown state", KeyState::as_str)
                ),
            ));
        }
        self.enabled_seen
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(label, Instant::now());
        Ok(())
    }
}

/// The [`TAG_PUBLIC_KEY`] value for the KMS key `key_id`: `KEY_ID:BASE64(SPKI DER)`
/// (at most 37 + 120 characters, within KMS's 256-character tag values).
pub(crate) fn public_key_record(key_id: &str, public_key: &PublicKey) -> Result<String> {
    Ok(format!(
        "{key_id}:{}",
        STANDARD.encode(public_key.to_spki_der()?)
    ))
}

/// A non-enabled version's public key from its [`TAG_PUBLIC_KEY`] tag, checked: the
/// record names this key id and holds an SPKI of the algorithm its `KeySpec` names.
/// Without the tag (a key disabled outside keymgr) the public key cannot be read while
/// the key is disabled: `AccessDenied`, as KMS's own `DisabledException` would be.
pub(crate) fn recorded_info(key: &KeyRef, version: &VersionOf) -> Result<Arc<KeyInfo>> {
    let label = key.to_string();
    let meta = &version.meta;
    let key_id = meta.key_id();
    let arn = meta.arn().unwrap_or(key_id).to_owned();
    let state = meta
        .key_state()
        .map_or("in an unknown state", KeyState::as_str);
    let Some(record) = version.tags.get(TAG_PUBLIC_KEY) else {
        return Err(Error::access_denied(
            label,
            format!(
                "KMS key {arn} is {state} and has no {TAG_PUBLIC_KEY} tag (it was not disabled \
                 by keymgr); KMS refuses GetPublicKey on it until it is enabled again"
            ),
        ));
    };
    let malformed = |why: String| {
        Error::integrity_failure(
            &label,
            IntegrityReason::MalformedResponse,
            format!("the {TAG_PUBLIC_KEY} tag of KMS key {arn} {why}"),
        )
    };
    let encoded = match record.split_once(':') {
        Some((id, encoded)) if id == key_id => encoded,
        _ => {
            return Err(malformed(format!(
                "does not start with the key's own id {key_id}:"
            )));
        }
    };
    let der = STANDARD
        .decode(encoded)
        .map_err(|e| malformed(format!("is not base64: {e}")))?;
    let public_key = PublicKey::from_spki_der(&der)
        .map_err(|e| malformed("is not a supported SubjectPublicKeyInfo".into()).with_source(e))?;
    let algorithm = algorithm_of(meta.key_spec(), &label, &arn)?;
    if public_key.algorithm() != algorithm {
        return Err(Error::integrity_failure(
            &label,
            IntegrityReason::AlgorithmMismatch,
            format!(
                "KMS key {arn} has a {algorithm} KeySpec but its {TAG_PUBLIC_KEY} tag holds a {} key",
                public_key.algorithm()
            ),
        ));
    }
    Ok(Arc::new(KeyInfo {
        key_id: key_id.to_owned(),
        arn,
        algorithm,
        public_key,
    }))
}

/// The algorithm a KMS `KeySpec` names; anything else is an error naming the key.
pub(crate) fn algorithm_of(
    spec: Option<&KeySpec>,
    label: &str,
    kms_key: &str,
) -> Result<KeyAlgorithm> {
    match spec {
        Some(KeySpec::EccSecgP256K1) => Ok(KeyAlgorithm::Secp256k1),
        Some(KeySpec::EccNistEdwards25519) => Ok(KeyAlgorithm::Ed25519),
        other => Err(Error::invalid_input(
            format!("key {label}"),
            format!(
                "KMS key {kms_key} has KeySpec {}; keymgr signs with ECC_SECG_P256K1 \
                 (secp256k1) or ECC_NIST_EDWARDS25519 (Ed25519) keys",
                other.map_or("(none)", KeySpec::as_str)
            ),
        )),
    }
}

/// `alias/NAME` for an alias name or alias ARN; `None` for key ids and key ARNs.
pub(crate) fn alias_of(identifier: &str) -> Option<String> {
    if identifier.starts_with("alias/") {
        return Some(identifier.to_owned());
    }
    if identifier.starts_with("arn:")
        && let Some((_, alias)) = identifier.split_once(":alias/")
    {
        return Some(format!("alias/{alias}"));
    }
    None
}

/// The key id inside a key ARN (or the input itself).
pub(crate) fn key_id_of_arn(arn: &str) -> &str {
    arn.rsplit_once(":key/").map_or(arn, |(_, id)| id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert_eq!(alias_of("alias/evm").as_deref(), Some("alias/evm"));
        assert_eq!(
            alias_of("arn:aws:kms:us-east-1:111122223333:alias/a/b").as_deref(),
            Some("alias/a/b")
        );
        assert_eq!(alias_of("1234abcd-12ab-34cd-56ef-1234567890ab"), None);
        assert_eq!(
            alias_of("arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"),
            None
        );
        assert_eq!(
            key_id_of_arn(
                "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
            ),
            "1234abcd-12ab-34cd-56ef-1234567890ab"
        );
        assert_eq!(key_id_of_arn("abc"), "abc");
    }

    #[test]
    fn key_specs() {
        assert_eq!(
            algorithm_of(Some(&KeySpec::EccSecgP256K1), "evm", "k").ok(),
            Some(KeyAlgorithm::Secp256k1)
        );
        assert_eq!(
            algorithm_of(Some(&KeySpec::EccNistEdwards25519), "xrp", "k").ok(),
            Some(KeyAlgorithm::Ed25519)
        );
        let e = algorithm_of(Some(&KeySpec::EccNistP256), "evm", "arn:k").unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("evm") && text.contains("ECC_NIST_P256") && text.contains("arn:k"),
            "{text}"
        );
    }
}
