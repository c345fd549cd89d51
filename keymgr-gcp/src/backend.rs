//! The [`KeyBackend`](keymgr_core::KeyBackend) implementation over Google Cloud KMS: public key, sign, health.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use google_cloud_gax::retry_policy::NeverRetry;
use google_cloud_kms_v1::client::KeyManagementService;
use google_cloud_kms_v1::model::Digest;
use keymgr_core::{
    Error, HealthReport, KeyAlgorithm, KeyRef, PublicKey, RawSignature, Result, SignPayload,
    VerifiedSignature, finish_signature,
};

use crate::GcpKmsConfig;
use crate::error::{BACKEND, map_gax_error};
use crate::resolve::VersionInfo;

/// How long the current version of an unversioned name is trusted before the crypto key
/// is read again (see [`GcpKmsBackend::with_current_version_ttl`]).
pub const DEFAULT_CURRENT_VERSION_TTL: Duration = Duration::from_secs(30);

/// Cloud KMS limit for `AsymmetricSignRequest.data` (and `EncryptRequest.plaintext`).
pub const MAX_DATA_BYTES: usize = 64 * 1024;

/// Signs, rotates and encrypts with keys held in Google Cloud KMS.
///
/// - `EC_SIGN_SECP256K1_SHA256`: `asymmetricSign` with the 32-byte prehash in
///   `digest.sha256`; the DER signature is normalized to low-s by keymgr-core.
/// - `EC_SIGN_ED25519`: `asymmetricSign` with the raw message in `data` (at most
///   [`MAX_DATA_BYTES`]).
/// - Request and response CRC32C fields are sent and checked; a mismatch is an
///   integrity error after one retry. Every signature is verified against the version's
///   public key before it is returned.
/// - Rotation creates a crypto key version, records it in the
///   [`LABEL_CURRENT_VERSION`](crate::LABEL_CURRENT_VERSION) label and disables old
///   versions (never destroys them).
/// - Symmetric (`GOOGLE_SYMMETRIC_ENCRYPTION`) keys encrypt and decrypt with the
///   encryption context as additional authenticated data.
///
/// The client is built with retries off: keymgr's retry layer is the only retry loop.
pub struct GcpKmsBackend {
    pub(crate) client: KeyManagementService,
    pub(crate) keys: BTreeMap<String, String>,
    /// Signing metadata by version resource name.
    pub(crate) infos: RwLock<HashMap<String, Arc<VersionInfo>>>,
    /// Current version by crypto key resource name, with when it was read.
    pub(crate) current: RwLock<HashMap<String, (String, Instant)>>,
    pub(crate) current_version_ttl: Duration,
}

impl fmt::Debug for GcpKmsBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcpKmsBackend")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl GcpKmsBackend {
    /// Connects with Google's default credentials (`GOOGLE_APPLICATION_CREDENTIALS`,
    /// gcloud user credentials, workload identity, the metadata server).
    ///
    /// A plain `http://` endpoint (a local stand-in or emulator) gets anonymous
    /// credentials instead, so no token ever travels unencrypted.
    pub async fn connect(config: GcpKmsConfig) -> Result<Self> {
        config.validate()?;
        let mut builder = KeyManagementService::builder().with_retry_policy(NeverRetry);
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint.clone());
            if endpoint.starts_with("http://") {
                builder = builder.with_credentials(
                    google_cloud_auth::credentials::anonymous::Builder::new().build(),
                );
            }
        }
        let client = builder.build().await.map_err(|e| {
            let detail = format!("building the Cloud KMS client: {e}");
            if e.is_default_credentials() {
                Error::config(
                    "GOOGLE_APPLICATION_CREDENTIALS",
                    "Google application default credentials (a service account key file, \
                     gcloud auth application-default login, workload identity or the metadata \
                     server)",
                    detail,
                )
            } else {
                Error::backend(BACKEND, detail, Some(Box::new(e)))
            }
        })?;
        Ok(Self::from_client(client, config.keys))
    }

    /// Reads [`GcpKmsConfig::from_env`] and connects.
    pub async fn from_env() -> Result<Self> {
        Self::connect(GcpKmsConfig::from_env()?).await
    }

    /// Wraps a client you built yourself; `keys` maps logical names to crypto key (or
    /// pinned version) resource names. Build it with `NeverRetry` so keymgr's retry layer
    /// is the only one.
    pub fn from_client(client: KeyManagementService, keys: BTreeMap<String, String>) -> Self {
        Self {
            client,
            keys,
            infos: RwLock::new(HashMap::new()),
            current: RwLock::new(HashMap::new()),
            current_version_ttl: DEFAULT_CURRENT_VERSION_TTL,
        }
    }

    /// How long an unversioned name's current version is trusted before the crypto key
    /// is read again (a rotation by another process is seen within this time). Default
    /// [`DEFAULT_CURRENT_VERSION_TTL`]; `Duration::ZERO` reads it for every call.
    #[must_use]
    pub fn with_current_version_ttl(mut self, ttl: Duration) -> Self {
        self.current_version_ttl = ttl;
        self
    }

    /// The Google client (for operations keymgr does not wrap).
    pub fn client(&self) -> &KeyManagementService {
        &self.client
    }

    async fn sign_once(
        &self,
        label: &str,
        info: &VersionInfo,
        payload: &SignPayload,
    ) -> std::result::Result<VerifiedSignature, Failure> {
        let mut request = self.client.asymmetric_sign().set_name(&info.name);
        request = match payload {
            SignPayload::Prehash(h) => request
                .set_digest(Digest::new().set_sha256(Bytes::copy_from_slice(h)))
                .set_digest_crc32c(crc32c_i64(h)),
            SignPayload::Message(m) => request
                .set_data(Bytes::copy_from_slice(m))
                .set_data_crc32c(crc32c_i64(m)),
        };
        let out = request
            .send()
            .await
            .map_err(|e| Failure::Other(map_gax_error(e, "AsymmetricSign", label, &info.name)))?;
        let verified = match payload {
            SignPayload::Prehash(_) => out.verified_digest_crc32c,
            SignPayload::Message(_) => out.verified_data_crc32c,
        };
        if !verified {
            return Err(Failure::Crc(Error::integrity(
                label,
                format!(
                    "AsymmetricSign on {}: the service did not confirm the request's {} \
                     checksum (verified_{}_crc32c is false)",
                    info.name,
                    payload.kind(),
                    if matches!(payload, SignPayload::Prehash(_)) {
                        "digest"
                    } else {
                        "data"
                    }
                ),
            )));
        }
        if out.signature_crc32c != Some(crc32c_i64(&out.signature)) {
            return Err(Failure::Crc(Error::integrity(
                label,
                format!(
                    "AsymmetricSign on {}: signatureCrc32c {:?} does not match the signature \
                     received (corrupted in transit)",
                    info.name, out.signature_crc32c
                ),
            )));
        }
        if out.name != info.name {
            return Err(Failure::Other(Error::integrity(
                label,
                format!("asked {} to sign but {} answered", info.name, out.name),
            )));
        }
        let raw = match info.algorithm {
            KeyAlgorithm::Ed25519 => RawSignature::Ed25519(&out.signature),
            _ => RawSignature::EcdsaDer(&out.signature),
        };
        finish_signature(label, &info.public_key, payload, raw)
            .map(|s| s.with_key_version(crate::resolve::version_id(&info.name)))
            .map_err(Failure::Other)
    }
}

keymgr_core::provider_backend! {
impl KeyBackend for GcpKmsBackend {
    fn name(&self) -> &str {
        BACKEND
    }

    async fn public_key(&self, key: &KeyRef) -> Result<PublicKey> {
        let label = key.to_string();
        let version = self.version_name(key).await?;
        Ok(self.info(&label, &version).await?.public_key.clone())
    }

    async fn sign(&self, key: &KeyRef, payload: &SignPayload) -> Result<VerifiedSignature> {
        let label = key.to_string();
        let version = self.version_name(key).await?;
        let info = self.info(&label, &version).await?;
        payload.check_algorithm(info.algorithm, &label)?;
        if let SignPayload::Message(m) = payload
            && m.len() > MAX_DATA_BYTES
        {
            return Err(Error::invalid_input(
                "message",
                format!(
                    "key {label}: Cloud KMS signs messages of at most {MAX_DATA_BYTES} bytes, \
                     this one is {} bytes",
                    m.len()
                ),
            ));
        }
        let result = with_crc_retry(|| self.sign_once(&label, &info, payload)).await;
        if result.is_err() && key.version().is_none() {
            // The version may have been rotated away and disabled by another process:
            // read the current version again on the next call.
            self.forget_current(key.name());
        }
        result
    }

    async fn health(&self) -> HealthReport {
        let started = Instant::now();
        let mut problems = Vec::new();
        let mut fine = Vec::new();
        for name in self.keys.keys() {
            let key = KeyRef::new(name.as_str());
            match self.version_name(&key).await {
                Ok(version) => match self.get_version(name, &version).await {
                    Ok(v) if v.state
                        == google_cloud_kms_v1::model::crypto_key_version::CryptoKeyVersionState::Enabled =>
                    {
                        fine.push(format!("{name}: {version} enabled"));
                    }
                    Ok(v) => problems.push(format!(
                        "{name}: {version} is {}",
                        v.state.name().unwrap_or("in an unknown state")
                    )),
                    Err(e) => problems.push(e.to_string()),
                },
                Err(e) => problems.push(e.to_string()),
            }
        }
        let latency = started.elapsed();
        if problems.is_empty() {
            let report = HealthReport::healthy(BACKEND, latency);
            if fine.is_empty() {
                report.with_detail("no keys configured")
            } else {
                report.with_detail(fine.join("; "))
            }
        } else {
            HealthReport::unhealthy(BACKEND, latency, problems.join("; "))
        }
    }

    fn invalidate(&self, name: &str) {
        self.forget_current(name);
    }
}
}

/// A failed attempt: a checksum mismatch (retried once) or anything else.
pub(crate) enum Failure {
    Crc(Error),
    Other(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Other(e)
    }
}

/// Runs `attempt`, once more if it failed a CRC32C check (Google's guidance: "discard
/// the response ... and perform a limited number of retries").
pub(crate) async fn with_crc_retry<T, F, Fut>(attempt: F) -> Result<T>
where
    F: Fn() -> Fut,
    Fut: Future<Output = std::result::Result<T, Failure>>,
{
    match attempt().await {
        Ok(v) => Ok(v),
        Err(Failure::Other(e)) => Err(e),
        Err(Failure::Crc(first)) => {
            tracing::warn!(error = %first, "Cloud KMS checksum mismatch; retrying once");
            match attempt().await {
                Ok(v) => Ok(v),
                Err(Failure::Crc(e) | Failure::Other(e)) => Err(e),
            }
        }
    }
}

/// CRC32C (Castagnoli) as Cloud KMS's int64 checksum fields carry it.
pub(crate) fn crc32c_i64(bytes: &[u8]) -> i64 {
    i64::from(crc32c::crc32c(bytes))
}
