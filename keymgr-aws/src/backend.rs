//! The [`KeyBackend`](keymgr_core::KeyBackend) implementation over AWS KMS.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use aws_sdk_kms::Client;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeyState, MessageType, SigningAlgorithmSpec};
use keymgr_core::{
    Error, HealthReport, IntegrityReason, KeyAlgorithm, KeyRef, PublicKey, RawSignature, Result,
    SignPayload, VerifiedSignature, finish_signature,
};

use crate::AwsKmsConfig;
use crate::error::{BACKEND, map_sdk_error};
use crate::resolve::{KeyInfo, key_id_of_arn};

/// How long a non-current version's `Enabled` state is trusted before `sign` asks
/// `DescribeKey` again (see [`AwsKmsBackend::with_version_state_ttl`]).
pub const DEFAULT_VERSION_STATE_TTL: Duration = Duration::from_secs(30);

/// AWS KMS limit for the `Message` of `Sign` (and `Plaintext` of `Encrypt`).
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// Signs, rotates and encrypts with keys held in AWS KMS.
///
/// - secp256k1 (`ECC_SECG_P256K1`): `Sign` with `MessageType=DIGEST` and `ECDSA_SHA_256`
///   on the 32-byte prehash; the DER signature is normalized to low-s by keymgr-core.
/// - Ed25519 (`ECC_NIST_EDWARDS25519`): `Sign` with `ED25519_SHA_512` on the raw message
///   (at most 4096 bytes, AWS's limit).
/// - Every signature is verified against the key's public key before it is returned.
/// - Rotation ([`create_version`](keymgr_core::KeyBackend::create_version)) creates a new key with the
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
    pub(crate) client: Client,
    pub(crate) keys: BTreeMap<String, String>,
    /// Resolved keys: by KMS identifier (unversioned) and by `name@version`.
    pub(crate) infos: RwLock<HashMap<String, Arc<KeyInfo>>>,
    /// Key ids this backend disabled (refused locally even if the service lags).
    pub(crate) disabled: RwLock<HashSet<String>>,
    /// When each explicitly named version (`name@version`) was last seen `Enabled`.
    pub(crate) enabled_seen: RwLock<HashMap<String, Instant>>,
    pub(crate) version_state_ttl: Duration,
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

keymgr_core::provider_backend! {
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

    fn invalidate(&self, name: &str) {
        let target = self.identifier(name).to_owned();
        let prefix = format!("{name}@");
        self.infos
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|k, _| *k != target && !k.starts_with(&prefix));
    }
}
}
