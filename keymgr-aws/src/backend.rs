//! The [`KeyBackend`] implementation over AWS KMS.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use aws_sdk_kms::Client;
use aws_sdk_kms::primitives::{Blob, DateTime, DateTimeFormat};
use aws_sdk_kms::types::{
    DataKeySpec, KeyMetadata, KeySpec, KeyState, KeyUsageType, MessageType, SigningAlgorithmSpec,
    Tag,
};
use keymgr_core::{
    DataKey, EncryptionContext, Error, HealthReport, IntegrityReason, KeyAlgorithm, KeyBackend,
    KeyRef, KeyVersion, PublicKey, RawSignature, Result, SecretBytes, SignPayload,
    VerifiedSignature, VersionState, finish_signature,
};

use crate::AwsKmsConfig;
use crate::error::{BACKEND, map_sdk_error};

/// Tag naming the logical key (its alias, `alias/NAME`) a KMS key is a version of.
pub const TAG_LOGICAL_KEY: &str = "keymgr:logical-key";
/// Tag with the version number (1, 2, ...) within the logical key.
pub const TAG_VERSION: &str = "keymgr:version";
/// Tag with the creation time of the version (RFC 3339, UTC).
pub const TAG_CREATED: &str = "keymgr:created";
/// Tag with the key id of the version this one replaced.
pub const TAG_PREVIOUS: &str = "keymgr:previous";
/// Tag on the current key while a rotation creates its successor (the intent; cleared
/// once the alias moved). Found on a later rotation, it means "look for the key an
/// interrupted rotation made before creating another".
pub const TAG_ROTATING: &str = "keymgr:rotating";

/// How long a non-current version's `Enabled` state is trusted before `sign` asks
/// `DescribeKey` again (see [`AwsKmsBackend::with_version_state_ttl`]).
pub const DEFAULT_VERSION_STATE_TTL: Duration = Duration::from_secs(30);

/// AWS KMS limit for the `Message` of `Sign` (and `Plaintext` of `Encrypt`).
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// What keymgr needs to know about one KMS signing key; immutable for a key id.
#[derive(Debug)]
struct KeyInfo {
    key_id: String,
    arn: String,
    algorithm: KeyAlgorithm,
    public_key: PublicKey,
}

/// Signs, rotates and encrypts with keys held in AWS KMS.
///
/// - secp256k1 (`ECC_SECG_P256K1`): `Sign` with `MessageType=DIGEST` and `ECDSA_SHA_256`
///   on the 32-byte prehash; the DER signature is normalized to low-s by keymgr-core.
/// - Ed25519 (`ECC_NIST_EDWARDS25519`): `Sign` with `ED25519_SHA_512` on the raw message
///   (at most 4096 bytes, AWS's limit).
/// - Every signature is verified against the key's public key before it is returned.
/// - Rotation ([`create_version`](KeyBackend::create_version)) creates a new key with the
///   same spec, usage and tags, tags it with its version history and moves the alias;
///   old versions are disabled with `DisableKey`, never scheduled for deletion.
/// - Symmetric keys encrypt, decrypt and generate AES-256 data keys with an encryption
///   context.
///
/// Key names resolve through [`AwsKmsConfig::keys`] (e.g. `evm` → `alias/evm-settlement`);
/// any other name is passed to KMS as a key id, ARN, alias name or alias ARN. A version
/// (`name@VERSION`) is a KMS key id or key ARN that must be the alias's current target or
/// carry the tag `keymgr:logical-key=alias/NAME`, so a version can never reach a key
/// outside its logical key.
pub struct AwsKmsBackend {
    client: Client,
    keys: BTreeMap<String, String>,
    /// Resolved keys: by KMS identifier (unversioned) and by `name@version`.
    infos: RwLock<HashMap<String, Arc<KeyInfo>>>,
    /// Key ids this backend disabled (refused locally even if the service lags).
    disabled: RwLock<HashSet<String>>,
    /// When each explicitly named version (`name@version`) was last seen `Enabled`.
    enabled_seen: RwLock<HashMap<String, Instant>>,
    version_state_ttl: Duration,
}

impl fmt::Debug for AwsKmsBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let conf = self.client.config();
        f.debug_struct("AwsKmsBackend")
            .field("region", &conf.region().map(|r| r.as_ref().to_owned()))
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl AwsKmsBackend {
    /// Connects with the SDK's standard credential and region chains, with `config`'s
    /// region and endpoint overrides applied.
    pub async fn connect(config: AwsKmsConfig) -> Result<Self> {
        config.validate()?;
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = &config.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(url) = &config.endpoint_url {
            loader = loader.endpoint_url(url.clone());
        }
        let sdk = loader.load().await;
        if sdk.region().is_none() {
            return Err(Error::config(
                crate::AWS_REGION,
                "a region such as us-east-1 (or a profile with a region)",
                "no region is configured for AWS KMS",
            ));
        }
        Ok(Self::from_client(Client::new(&sdk), config.keys))
    }

    /// Reads [`AwsKmsConfig::from_env`] and connects.
    pub async fn from_env() -> Result<Self> {
        Self::connect(AwsKmsConfig::from_env()?).await
    }

    /// Wraps an SDK client you built yourself; `keys` maps logical names to KMS key
    /// identifiers.
    ///
    /// The SDK's own retries are turned off: retries are decided once, by keymgr's
    /// `Retry` layer (with the SDK's standard mode under it, one throttled `sign` could
    /// make 4 × 3 = 12 `Sign` calls).
    pub fn from_client(client: Client, keys: BTreeMap<String, String>) -> Self {
        let client = Client::from_conf(
            client
                .config()
                .to_builder()
                .retry_config(aws_sdk_kms::config::retry::RetryConfig::disabled())
                .build(),
        );
        Self {
            client,
            keys,
            infos: RwLock::new(HashMap::new()),
            disabled: RwLock::new(HashSet::new()),
            enabled_seen: RwLock::new(HashMap::new()),
            version_state_ttl: DEFAULT_VERSION_STATE_TTL,
        }
    }

    /// How long signing with an explicit version (`name@KEY_ID`) trusts that the KMS key
    /// is still `Enabled` before asking `DescribeKey` again, so a version disabled by
    /// another process is refused here too. Default [`DEFAULT_VERSION_STATE_TTL`];
    /// `Duration::ZERO` checks before every signature.
    #[must_use]
    pub fn with_version_state_ttl(mut self, ttl: Duration) -> Self {
        self.version_state_ttl = ttl;
        self
    }

    /// The SDK client (for operations keymgr does not wrap).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The KMS identifier a logical name resolves to.
    pub fn identifier<'a>(&'a self, name: &'a str) -> &'a str {
        self.keys.get(name).map(String::as_str).unwrap_or(name)
    }

    fn cached(&self, cache_key: &str) -> Option<Arc<KeyInfo>> {
        self.infos
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(cache_key)
            .cloned()
    }

    fn remember(&self, cache_key: String, info: Arc<KeyInfo>) {
        self.infos
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(cache_key, info);
    }

    fn is_disabled_locally(&self, key_id: &str) -> bool {
        self.disabled
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(key_id)
    }

    /// `GetPublicKey`, checked: a SIGN_VERIFY key of a supported spec whose SPKI parses
    /// to the algorithm the spec names.
    async fn fetch_info(&self, key: &KeyRef, target: &str) -> Result<Arc<KeyInfo>> {
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

    async fn describe(&self, label: &str, target: &str) -> Result<KeyMetadata> {
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

    async fn tags(&self, label: &str, key_id: &str) -> Result<HashMap<String, String>> {
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

    /// Checks that the KMS key `key_id` is a version of `key`'s logical key; returns its
    /// metadata and whether it is the current version.
    async fn check_version(&self, key: &KeyRef, key_id: &str) -> Result<(KeyMetadata, bool)> {
        self.version_status(key, key_id)
            .await?
            .ok_or_else(|| Error::not_found(key.to_string(), self.not_a_version(key, key_id)))
    }

    /// Like [`Self::check_version`], but `Ok(None)` when `key_id` is not a version of
    /// `key`, so callers tell that apart from failing to find out.
    async fn version_status(
        &self,
        key: &KeyRef,
        key_id: &str,
    ) -> Result<Option<(KeyMetadata, bool)>> {
        let label = key.to_string();
        let target = self.identifier(key.name());
        let version = self.describe(&label, key_id).await?;
        let current = self.describe(&label, target).await?;
        if version.key_id() == current.key_id() {
            return Ok(Some((version, true)));
        }
        if let Some(alias) = alias_of(target) {
            let tags = self.tags(&label, version.key_id()).await?;
            if tags.get(TAG_LOGICAL_KEY).map(String::as_str) == Some(alias.as_str()) {
                return Ok(Some((version, false)));
            }
        }
        Ok(None)
    }

    fn not_a_version(&self, key: &KeyRef, key_id: &str) -> String {
        let target = self.identifier(key.name());
        format!(
            "KMS key {key_id} is not a version of {target} (it is not the current key and has \
             no {TAG_LOGICAL_KEY} tag naming {target})"
        )
    }

    /// What `sign` sends to KMS and the key it expects to sign.
    async fn signing_target(&self, key: &KeyRef) -> Result<(String, Arc<KeyInfo>)> {
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
                let (meta, _) = self.check_version(key, version).await?;
                let info = self.fetch_info(key, meta.key_id()).await?;
                self.remember(cache_key, info.clone());
                Ok((info.arn.clone(), info))
            }
        }
    }

    /// Refuses to sign with an explicitly named version that KMS does not report as
    /// `Enabled` (checked at most every `version_state_ttl`): moto, and a lagging or
    /// misconfigured service, would sign with a disabled key.
    async fn ensure_enabled(&self, key: &KeyRef, info: &KeyInfo) -> Result<()> {
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

    /// The target for symmetric operations: the alias/identifier, or a checked version.
    async fn symmetric_target(&self, key: &KeyRef) -> Result<String> {
        match key.version() {
            None => Ok(self.identifier(key.name()).to_owned()),
            Some(version) => {
                let (meta, _) = self.check_version(key, version).await?;
                Ok(meta.arn().unwrap_or(meta.key_id()).to_owned())
            }
        }
    }

    fn version_of(
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

    fn rotation_alias(&self, name: &str, operation: &'static str) -> Result<String> {
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
    async fn move_alias(
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
        if moved.is_err() {
            let _ = self.client.disable_key().key_id(new_key).send().await;
        }
        moved
    }

    /// After the alias moved: clears the intent marker on the old key, drops cached
    /// state and describes the new current version.
    async fn finish_rotation(
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
    async fn find_successor(
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

    async fn sign_inner(&self, key: &KeyRef, payload: &SignPayload) -> Result<VerifiedSignature> {
        let label = key.to_string();
        let (target, mut info) = self.signing_target(key).await?;
        payload.check_algorithm(info.algorithm, &label)?;
        if self.is_disabled_locally(&info.key_id) {
            return Err(Error::access_denied(
                label,
                format!("KMS key {} was disabled by keymgr", info.arn),
            ));
        }
        if key.version().is_some() {
            self.ensure_enabled(key, &info).await?;
        }
        let (message_type, algorithm) = match payload {
            SignPayload::Prehash(_) => (MessageType::Digest, SigningAlgorithmSpec::EcdsaSha256),
            SignPayload::Message(m) => {
                if m.is_empty() || m.len() > MAX_MESSAGE_BYTES {
                    return Err(Error::invalid_input(
                        "message",
                        format!(
                            "key {label}: AWS KMS signs raw messages of 1 to {MAX_MESSAGE_BYTES} \
                             bytes, this one is {} bytes",
                            m.len()
                        ),
                    ));
                }
                (MessageType::Raw, SigningAlgorithmSpec::Ed25519Sha512)
            }
        };
        let out = self
            .client
            .sign()
            .key_id(&target)
            .message(Blob::new(payload.as_bytes()))
            .message_type(message_type)
            .signing_algorithm(algorithm)
            .send()
            .await
            .map_err(|e| map_sdk_error(e, "Sign", &label, &target))?;
        // An alias may have moved since the key was cached (rotation elsewhere): verify
        // against the key that actually signed, and remember it.
        if let Some(signer) = out.key_id()
            && key_id_of_arn(signer) != info.key_id
            && key.version().is_none()
        {
            info = self.fetch_info(key, signer).await?;
            self.remember(target.clone(), info.clone());
        }
        let der = out.signature().ok_or_else(|| {
            Error::integrity_failure(
                &label,
                IntegrityReason::MalformedResponse,
                format!("Sign on {target} returned no signature"),
            )
        })?;
        let raw = match info.algorithm {
            KeyAlgorithm::Ed25519 => RawSignature::Ed25519(der.as_ref()),
            _ => RawSignature::EcdsaDer(der.as_ref()),
        };
        finish_signature(&label, &info.public_key, payload, raw)
            .map(|s| s.with_key_version(info.key_id.clone()))
    }
}

#[async_trait]
impl KeyBackend for AwsKmsBackend {
    fn name(&self) -> &str {
        BACKEND
    }

    async fn public_key(&self, key: &KeyRef) -> Result<PublicKey> {
        match key.version() {
            // Always asks KMS: the alias may have moved (the manager caches on top).
            None => {
                let target = self.identifier(key.name()).to_owned();
                let info = self.fetch_info(key, &target).await?;
                let public_key = info.public_key.clone();
                self.remember(target, info);
                Ok(public_key)
            }
            // A key id's public key never changes: the cached one stays valid even after
            // the version is disabled (old signatures must keep verifying; KMS itself
            // refuses GetPublicKey on a disabled key).
            Some(_) => Ok(self.signing_target(key).await?.1.public_key.clone()),
        }
    }

    async fn sign(&self, key: &KeyRef, payload: &SignPayload) -> Result<VerifiedSignature> {
        self.sign_inner(key, payload).await
    }

    async fn health(&self) -> HealthReport {
        let started = Instant::now();
        let mut problems = Vec::new();
        let mut fine = Vec::new();
        if self.keys.is_empty()
            && let Err(e) = self.client.list_keys().limit(1).send().await
        {
            let e = map_sdk_error(e, "ListKeys", "(no key)", "(account)");
            return HealthReport::unhealthy(BACKEND, started.elapsed(), e.to_string());
        }
        for (name, target) in &self.keys {
            match self.describe(name, target).await {
                Ok(meta) if meta.key_state() == Some(&KeyState::Enabled) => {
                    fine.push(format!("{name}: enabled"));
                }
                Ok(meta) => problems.push(format!(
                    "{name}: KMS key {} is {}",
                    meta.key_id(),
                    meta.key_state()
                        .map_or("in an unknown state", KeyState::as_str)
                )),
                Err(e) => problems.push(e.to_string()),
            }
        }
        let latency = started.elapsed();
        if problems.is_empty() {
            let report = HealthReport::healthy(BACKEND, latency);
            if fine.is_empty() {
                report
            } else {
                report.with_detail(fine.join("; "))
            }
        } else {
            HealthReport::unhealthy(BACKEND, latency, problems.join("; "))
        }
    }

    async fn list_versions(&self, name: &str) -> Result<Vec<KeyVersion>> {
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

    async fn create_version(&self, name: &str) -> Result<KeyVersion> {
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
            .map_err(|e| Error::backend(BACKEND, format!("formatting the time: {e}"), None))?;
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

    async fn disable_version(&self, key: &KeyRef) -> Result<()> {
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
        let (meta, current) = self.check_version(key, version).await?;
        if current {
            return Err(Error::invalid_input(
                "key",
                format!(
                    "{key} is the current version of {}; rotate before disabling it",
                    key.name()
                ),
            ));
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

    async fn encrypt(
        &self,
        key: &KeyRef,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Vec<u8>> {
        let label = key.to_string();
        if plaintext.len() > MAX_MESSAGE_BYTES {
            return Err(Error::invalid_input(
                "plaintext",
                format!(
                    "key {label}: AWS KMS encrypts at most {MAX_MESSAGE_BYTES} bytes directly, got \
                     {}; use generate_data_key (envelope encryption) for larger data",
                    plaintext.len()
                ),
            ));
        }
        let target = self.symmetric_target(key).await?;
        let out = self
            .client
            .encrypt()
            .key_id(&target)
            .plaintext(Blob::new(plaintext))
            .set_encryption_context(context_of(context))
            .send()
            .await
            .map_err(|e| map_sdk_error(e, "Encrypt", &label, &target))?;
        out.ciphertext_blob.map(Blob::into_inner).ok_or_else(|| {
            Error::integrity_failure(
                &label,
                IntegrityReason::MalformedResponse,
                "Encrypt returned no ciphertext",
            )
        })
    }

    async fn decrypt(
        &self,
        key: &KeyRef,
        ciphertext: &[u8],
        context: &EncryptionContext,
    ) -> Result<SecretBytes> {
        let label = key.to_string();
        let target = self.symmetric_target(key).await?;
        let versioned = key.version().is_some();
        let out = self
            .client
            .decrypt()
            .set_key_id(versioned.then(|| target.clone()))
            .ciphertext_blob(Blob::new(ciphertext))
            .set_encryption_context(context_of(context))
            .send()
            .await
            .map_err(|e| map_sdk_error(e, "Decrypt", &label, &target))?;
        let plaintext = SecretBytes::new(out.plaintext.map(Blob::into_inner).ok_or_else(|| {
            Error::integrity_failure(
                &label,
                IntegrityReason::MalformedResponse,
                "Decrypt returned no plaintext",
            )
        })?);
        if !versioned {
            // Without a KeyId, KMS decrypts under whichever key made the ciphertext (so
            // data from before a rotation still decrypts): accept only a version of `key`.
            let used = out.key_id.unwrap_or_default();
            // A failed lookup (throttled, unreachable, denied) keeps its own kind and
            // request id; only a definite "not a version" is an integrity error.
            let used = key_id_of_arn(&used);
            if self.version_status(key, used).await?.is_none() {
                return Err(Error::integrity(
                    &label,
                    format!(
                        "the ciphertext was made by {}",
                        self.not_a_version(key, used)
                    ),
                ));
            }
        }
        Ok(plaintext)
    }

    async fn generate_data_key(
        &self,
        key: &KeyRef,
        context: &EncryptionContext,
    ) -> Result<DataKey> {
        let label = key.to_string();
        let target = self.symmetric_target(key).await?;
        let out = self
            .client
            .generate_data_key()
            .key_id(&target)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(context_of(context))
            .send()
            .await
            .map_err(|e| map_sdk_error(e, "GenerateDataKey", &label, &target))?;
        let plaintext = SecretBytes::new(out.plaintext.map(Blob::into_inner).ok_or_else(|| {
            Error::integrity_failure(
                &label,
                IntegrityReason::MalformedResponse,
                "GenerateDataKey returned no plaintext",
            )
        })?);
        if plaintext.len() != 32 {
            return Err(Error::integrity_failure(
                &label,
                IntegrityReason::MalformedResponse,
                format!(
                    "GenerateDataKey returned a {}-byte AES-256 key",
                    plaintext.len()
                ),
            ));
        }
        let ciphertext = out.ciphertext_blob.map(Blob::into_inner).ok_or_else(|| {
            Error::integrity_failure(
                &label,
                IntegrityReason::MalformedResponse,
                "GenerateDataKey returned no ciphertext",
            )
        })?;
        Ok(DataKey {
            plaintext,
            ciphertext,
        })
    }

    fn invalidate(&self, name: &str) {
        let target = self.identifier(name).to_owned();
        let prefix = format!("{name}@");
        self.infos
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|k, _| *k != target && !k.starts_with(&prefix));
    }
}

/// The algorithm a KMS `KeySpec` names; anything else is an error naming the key.
fn algorithm_of(spec: Option<&KeySpec>, label: &str, kms_key: &str) -> Result<KeyAlgorithm> {
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
fn alias_of(identifier: &str) -> Option<String> {
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
fn key_id_of_arn(arn: &str) -> &str {
    arn.rsplit_once(":key/").map_or(arn, |(_, id)| id)
}

fn tag(key: &str, value: &str) -> Result<Tag> {
    Tag::builder()
        .tag_key(key)
        .tag_value(value)
        .build()
        .map_err(|e| Error::backend(BACKEND, format!("building tag {key}: {e}"), None))
}

fn context_of(context: &EncryptionContext) -> Option<HashMap<String, String>> {
    (!context.is_empty()).then(|| {
        context
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    })
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
