//! The [`KeyBackend`] implementation: public key, sign, health.

use std::sync::Arc;
use std::time::Instant;

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::{ClientOptions, RetryOptions, Transport};
use azure_identity::{
    ClientSecretCredential, ClientSecretCredentialOptions, DeveloperToolsCredential,
    ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
    WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};
use azure_security_keyvault_keys::models::{
    KeyClientGetKeyOptions, KeyClientSignOptions, SignParameters, SignatureAlgorithm,
};
use azure_security_keyvault_keys::{KeyClient, KeyClientOptions};
use keymgr_core::{
    Error, HealthReport, KeyBackend, KeyRef, PublicKey, RawSignature, Result, SignPayload,
    VerifiedSignature, finish_signature,
};

use crate::config::{AzureKvConfig, Credential, SSL_CERT_FILE, VaultKey};
use crate::error::map;
use crate::resolve::{self, Cache, NO_ED25519, VersionInfo, version_of_kid};

/// The backend's name in errors, audit entries and health reports.
pub const BACKEND: &str = "azure-kv";

/// What [`KeyBackend::health`] signs with every configured key: SHA-256 of
/// `keymgr health canary` (a fixed digest, so it is never a transaction or claim hash
/// anyone asked for).
pub const HEALTH_CANARY_DIGEST: [u8; 32] = [
    0x43, 0x57, 0x76, 0xed, 0x57, 0x47, 0xd9, 0xd4, 0xab, 0xdb, 0x86, 0x94, 0x99, 0xdc, 0x5d, 0x5d,
    0x65, 0xfc, 0xc9, 0xa1, 0x5f, 0x84, 0x7a, 0x6c, 0x69, 0x12, 0x3d, 0xee, 0xa5, 0x94, 0x31, 0x59,
];

/// Signs with secp256k1 keys (EC, curve `P-256K`, algorithm `ES256K`) held in Azure Key
/// Vault, through Microsoft's `azure_security_keyvault_keys` client.
///
/// Every call runs once: the SDK's own retries are off so that keymgr's retry layer is
/// the only one (throttling and 5xx answers come back as retryable errors).
pub struct AzureKvBackend {
    pub(crate) client: KeyClient,
    pub(crate) config: AzureKvConfig,
    pub(crate) cache: Cache,
}

impl std::fmt::Debug for AzureKvBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureKvBackend")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The HTTP client: reqwest with rustls and the platform's roots, plus `SSL_CERT_FILE`'s.
fn transport(config: &AzureKvConfig) -> Result<Option<Transport>> {
    let Some(path) = &config.ca_file else {
        return Ok(None);
    };
    let bad =
        |reason: String| Error::config(SSL_CERT_FILE, "a PEM file of CA certificates", reason);
    let pem =
        std::fs::read(path).map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| bad(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(bad(format!("{} holds no certificate", path.display())));
    }
    let client = reqwest::ClientBuilder::new()
        .tls_certs_merge(certs)
        .build()
        .map_err(|e| bad(format!("cannot build the HTTPS client: {e}")))?;
    Ok(Some(Transport::new(Arc::new(client))))
}

fn client_options(config: &AzureKvConfig, transport: &Option<Transport>) -> ClientOptions {
    let mut options = ClientOptions {
        retry: RetryOptions::none(),
        transport: transport.clone(),
        ..Default::default()
    };
    if let Some(host) = &config.authority_host {
        let mut cloud = CustomConfiguration::default();
        cloud.authority_host = host.clone();
        options.cloud = Some(Arc::new(CloudConfiguration::Custom(cloud)));
    }
    options
}

fn credential(
    config: &AzureKvConfig,
    transport: &Option<Transport>,
) -> Result<Arc<dyn TokenCredential>> {
    let options = client_options(config, transport);
    let failed = |e: azure_core::Error| {
        Error::config(
            "AZURE_CREDENTIAL_KIND",
            "a usable Azure credential",
            format!("cannot create the credential: {e}"),
        )
    };
    Ok(match &config.credential {
        Credential::ClientSecret {
            tenant_id,
            client_id,
            secret,
        } => ClientSecretCredential::new(
            tenant_id,
            client_id.clone(),
            Secret::new(secret.expose().to_owned()),
            Some(ClientSecretCredentialOptions {
                client_options: options,
            }),
        )
        .map_err(failed)?,
        Credential::WorkloadIdentity => {
            let mut o = WorkloadIdentityCredentialOptions::default();
            o.credential_options.client_options = options;
            WorkloadIdentityCredential::new(Some(o)).map_err(failed)?
        }
        Credential::ManagedIdentity { client_id } => {
            ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                user_assigned_id: client_id.clone().map(UserAssignedId::ClientId),
                client_options: options,
            }))
            .map_err(failed)?
        }
        Credential::DeveloperTools => DeveloperToolsCredential::new(None).map_err(failed)?,
    })
}

impl AzureKvBackend {
    /// Builds the credential and the Key Vault client; no network call happens here.
    pub fn new(config: AzureKvConfig) -> Result<Self> {
        config.validate()?;
        let transport = transport(&config)?;
        let credential = credential(&config, &transport)?;
        let options = KeyClientOptions {
            client_options: client_options(&config, &transport),
            verify_challenge_resource: Some(config.verify_challenge_resource),
            ..Default::default()
        };
        let client = KeyClient::new(&config.vault_url, credential, Some(options)).map_err(|e| {
            Error::config(
                crate::config::AZURE_VAULT_URL,
                "an https:// vault URL",
                e.to_string(),
            )
        })?;
        Ok(Self {
            client,
            config,
            cache: Cache::default(),
        })
    }

    /// Reads the configuration from the environment and builds the backend.
    pub fn from_env() -> Result<Self> {
        Self::new(AzureKvConfig::from_env()?)
    }

    /// The configuration in use.
    pub fn config(&self) -> &AzureKvConfig {
        &self.config
    }

    /// Get Key for one version (or the newest), caching its public key.
    pub(crate) async fn fetch(&self, key: &KeyRef, target: &VaultKey) -> Result<VersionInfo> {
        let label = key.to_string();
        let options = KeyClientGetKeyOptions {
            key_version: target.version.clone(),
            ..Default::default()
        };
        let bundle = self
            .client
            .get_key(&target.name, Some(options))
            .await
            .map_err(|e| map(&label, "getKey", e))?
            .into_model()
            .map_err(|e| map(&label, "getKey", e))?;
        let info = resolve::version_info(&label, &bundle)?;
        if let Some(v) = &target.version
            && !v.eq_ignore_ascii_case(&info.version)
        {
            return Err(Error::integrity(
                &label,
                format!(
                    "asked Key Vault for version {v}, it answered with {}",
                    info.version
                ),
            ));
        }
        self.cache
            .store(&target.name, &info, target.version.is_none());
        Ok(info)
    }

    /// Signs [`HEALTH_CANARY_DIGEST`] with `key`'s current version (re-read from Key
    /// Vault, not cached) and verifies it; returns the version.
    async fn canary(&self, key: &KeyRef) -> Result<String> {
        self.invalidate(key.name());
        let (_, info) = self.resolve(key).await?;
        let pinned = KeyRef::versioned(key.name(), info.version.clone());
        let payload = SignPayload::Prehash(HEALTH_CANARY_DIGEST);
        // `sign` verifies the signature against the version's public key before returning.
        let signature = self.sign(&pinned, &payload).await?;
        if !signature.is_over(&payload) {
            return Err(Error::integrity(
                key.to_string(),
                "the health canary signature is over another payload",
            ));
        }
        Ok(info.version)
    }

    /// The explicit version and public key `key` resolves to now.
    pub(crate) async fn resolve(&self, key: &KeyRef) -> Result<(VaultKey, VersionInfo)> {
        let mut target = self.config.vault_key(key)?;
        let version = target
            .version
            .clone()
            .or_else(|| self.cache.current(&target.name));
        if let Some(version) = version
            && let Some(public_key) = self.cache.public_key(&target.name, &version)
        {
            target.version = Some(version.clone());
            return Ok((
                target,
                VersionInfo {
                    version,
                    public_key,
                },
            ));
        }
        let info = self.fetch(key, &target).await?;
        target.version = Some(info.version.clone());
        Ok((target, info))
    }
}

keymgr_core::provider_backend! {
impl KeyBackend for AzureKvBackend {
    fn name(&self) -> &str {
        BACKEND
    }

    async fn public_key(&self, key: &KeyRef) -> Result<PublicKey> {
        Ok(self.resolve(key).await?.1.public_key)
    }

    async fn sign(&self, key: &KeyRef, payload: &SignPayload) -> Result<VerifiedSignature> {
        let label = key.to_string();
        let (target, info) = self.resolve(key).await?;
        if matches!(payload, SignPayload::Message(_)) {
            // Only Ed25519 signs raw messages, and Key Vault has no Ed25519 keys.
            return Err(Error::invalid_input(
                "payload",
                format!(
                    "a raw message is an Ed25519 payload but {label} is a secp256k1 key; sign \
                     a 32-byte prehash instead ({NO_ED25519})"
                ),
            ));
        }
        payload.check_algorithm(info.public_key.algorithm(), &label)?;
        let parameters = SignParameters {
            algorithm: Some(SignatureAlgorithm::Es256K),
            value: Some(payload.as_bytes().to_vec()),
        };
        let options = KeyClientSignOptions {
            key_version: Some(info.version.clone()),
            ..Default::default()
        };
        let result = self
            .client
            .sign(
                &target.name,
                parameters.try_into().map_err(|e| map(&label, "sign", e))?,
                Some(options),
            )
            .await
            .map_err(|e| map(&label, "sign", e))?
            .into_model()
            .map_err(|e| map(&label, "sign", e))?;
        if let Some(kid) = result.kid.as_deref()
            && version_of_kid(kid).is_some_and(|v| !v.eq_ignore_ascii_case(&info.version))
        {
            return Err(Error::integrity(
                &label,
                format!(
                    "asked version {} to sign, Key Vault answered for {kid}",
                    info.version
                ),
            ));
        }
        let raw = result
            .result
            .ok_or_else(|| Error::integrity(&label, "Key Vault returned no signature value"))?;
        if raw.len() != 64 {
            return Err(Error::integrity(
                &label,
                format!(
                    "Key Vault returned a {}-byte ES256K signature (RFC 7518 §3.4: 64 bytes r‖s)",
                    raw.len()
                ),
            ));
        }
        finish_signature(
            &label,
            &info.public_key,
            payload,
            RawSignature::EcdsaRaw(&raw),
        )
        .map(|s| s.with_key_version(info.version.clone()))
    }

    /// A canary per configured key: signs [`HEALTH_CANARY_DIGEST`] with the current
    /// version and verifies the signature against the key's JWK, so a healthy report
    /// proves every key can sign, not only that the vault answers.
    async fn health(&self) -> HealthReport {
        let started = Instant::now();
        if self.config.keys.is_empty() {
            return HealthReport::unhealthy(BACKEND, started.elapsed(), "no keys configured");
        }
        let mut fine = Vec::new();
        let mut problems = Vec::new();
        for name in self.config.keys.keys() {
            let key = KeyRef::new(name.clone());
            match self.canary(&key).await {
                Ok(version) => fine.push(format!("{key}: version {version} signed the canary")),
                Err(e) => problems.push(e.to_string()),
            }
        }
        let latency = started.elapsed();
        if problems.is_empty() {
            HealthReport::healthy(BACKEND, latency).with_detail(fine.join("; "))
        } else {
            HealthReport::unhealthy(BACKEND, latency, problems.join("; "))
        }
    }

    fn invalidate(&self, name: &str) {
        if let Ok(target) = self.config.vault_key(&KeyRef::new(name)) {
            self.cache.invalidate(&target.name);
        }
    }
}
}
