//! Key names → crypto key versions, and the per-version metadata cache.
//!
//! - A version's algorithm comes from its own metadata
//!   ([`CryptoKeyVersion.algorithm`](https://cloud.google.com/kms/docs/reference/rest/v1/projects.locations.keyRings.cryptoKeys.cryptoKeyVersions#CryptoKeyVersion)),
//!   never from a name; its public key from
//!   [`getPublicKey`](https://cloud.google.com/kms/docs/reference/rest/v1/projects.locations.keyRings.cryptoKeys.cryptoKeyVersions/getPublicKey)
//!   (PEM, checked against `pemCrc32c`), or, when it refuses a disabled version, from
//!   the label keymgr recorded before disabling it ([`crate::recorded`]). Both never
//!   change for a version: cached forever.
//! - The current version of an unversioned name is the crypto key's
//!   [`LABEL_CURRENT_VERSION`] label (written by rotation, readable by every process),
//!   else its primary version (symmetric keys), else its newest `ENABLED` version;
//!   cached for [`GcpKmsBackend::with_current_version_ttl`].

use std::sync::Arc;
use std::time::Instant;

use google_cloud_kms_v1::model::crypto_key::CryptoKeyPurpose;
use google_cloud_kms_v1::model::crypto_key_version::{
    CryptoKeyVersionAlgorithm, CryptoKeyVersionState,
};
use google_cloud_kms_v1::model::{CryptoKey, CryptoKeyVersion};
use keymgr_core::{Error, ErrorKind, KeyAlgorithm, KeyRef, PublicKey, Result};

use crate::GcpKmsBackend;
use crate::backend::{Failure, crc32c_i64, with_crc_retry};
use crate::config::{ResourceName, validate_version_id};
use crate::error::{BACKEND, map_gax_error};
use crate::recorded;

/// Label on a crypto key naming its current version (`keymgr-current-version=3`):
/// Cloud KMS has a primary version only for symmetric keys.
pub const LABEL_CURRENT_VERSION: &str = "keymgr-current-version";

/// What keymgr needs to know about one signing key version; immutable for a version.
#[derive(Debug)]
pub(crate) struct VersionInfo {
    /// `projects/…/cryptoKeyVersions/N`.
    pub(crate) name: String,
    pub(crate) algorithm: KeyAlgorithm,
    pub(crate) public_key: PublicKey,
}

impl GcpKmsBackend {
    /// The crypto key a logical name stands for, and the version it pins (if any).
    ///
    /// Names not in the configuration must be full resource names; anything else is not
    /// found (no call is made).
    pub(crate) fn resource_of(&self, name: &str) -> Result<ResourceName> {
        let resource = self.keys.get(name).map(String::as_str).unwrap_or(name);
        if !resource.starts_with("projects/") {
            return Err(Error::not_found(
                name,
                format!(
                    "no Cloud KMS key is configured as {name:?} (configured: {}); use a \
                     configured name or a resource name projects/P/locations/L/keyRings/R/cryptoKeys/K",
                    self.keys.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        ResourceName::parse(resource).map_err(|reason| Error::invalid_input("key", reason))
    }

    /// The crypto key version resource name `key` designates.
    pub(crate) async fn version_name(&self, key: &KeyRef) -> Result<String> {
        let resource = self.resource_of(key.name())?;
        if let Some(v) = key.version() {
            validate_version_id(v)
                .map_err(|r| Error::invalid_input("key", format!("{key}: {r}")))?;
            return Ok(ResourceName::version_name(&resource.crypto_key, v));
        }
        if let Some(v) = &resource.version {
            return Ok(ResourceName::version_name(&resource.crypto_key, v));
        }
        self.current_version(key.name(), &resource.crypto_key).await
    }

    /// The current version of `crypto_key` (cached for the current-version TTL).
    pub(crate) async fn current_version(&self, label: &str, crypto_key: &str) -> Result<String> {
        if let Some((version, seen)) = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(crypto_key)
            && seen.elapsed() < self.current_version_ttl
        {
            return Ok(version.clone());
        }
        let key = self.get_crypto_key(label, crypto_key).await?;
        let version = match key.labels.get(LABEL_CURRENT_VERSION) {
            Some(v) => {
                validate_version_id(v).map_err(|r| {
                    Error::integrity(
                        label,
                        format!("{crypto_key} has a malformed {LABEL_CURRENT_VERSION} label: {r}"),
                    )
                })?;
                ResourceName::version_name(crypto_key, v)
            }
            None => match &key.primary {
                Some(primary) if key.purpose == CryptoKeyPurpose::EncryptDecrypt => {
                    primary.name.clone()
                }
                _ => self.newest_enabled(label, crypto_key).await?,
            },
        };
        self.current
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(crypto_key.to_owned(), (version.clone(), Instant::now()));
        Ok(version)
    }

    async fn newest_enabled(&self, label: &str, crypto_key: &str) -> Result<String> {
        self.versions_of(label, crypto_key)
            .await?
            .into_iter()
            .filter(|v| v.state == CryptoKeyVersionState::Enabled)
            .max_by_key(|v| version_number(&v.name))
            .map(|v| v.name)
            .ok_or_else(|| {
                Error::not_found(
                    label,
                    format!(
                        "{crypto_key} has no ENABLED version and no {LABEL_CURRENT_VERSION} label"
                    ),
                )
            })
    }

    pub(crate) async fn get_crypto_key(&self, label: &str, crypto_key: &str) -> Result<CryptoKey> {
        self.client
            .get_crypto_key()
            .set_name(crypto_key)
            .send()
            .await
            .map_err(|e| map_gax_error(e, "GetCryptoKey", label, crypto_key))
    }

    pub(crate) async fn get_version(&self, label: &str, name: &str) -> Result<CryptoKeyVersion> {
        self.client
            .get_crypto_key_version()
            .set_name(name)
            .send()
            .await
            .map_err(|e| map_gax_error(e, "GetCryptoKeyVersion", label, name))
    }

    /// Every version of `crypto_key`, all pages.
    pub(crate) async fn versions_of(
        &self,
        label: &str,
        crypto_key: &str,
    ) -> Result<Vec<CryptoKeyVersion>> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let page = self
                .client
                .list_crypto_key_versions()
                .set_parent(crypto_key)
                .set_page_token(token)
                .send()
                .await
                .map_err(|e| map_gax_error(e, "ListCryptoKeyVersions", label, crypto_key))?;
            out.extend(page.crypto_key_versions);
            if page.next_page_token.is_empty() {
                return Ok(out);
            }
            token = page.next_page_token;
        }
    }

    /// The signing metadata of `version` (cached forever: it never changes).
    pub(crate) async fn info(&self, label: &str, version: &str) -> Result<Arc<VersionInfo>> {
        if let Some(info) = self
            .infos
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(version)
        {
            return Ok(info.clone());
        }
        let meta = self.get_version(label, version).await?;
        let algorithm = signing_algorithm(&meta.algorithm, label, version)?;
        let public_key = match with_crc_retry(|| self.fetch_public_key(label, version, algorithm))
            .await
        {
            // Cloud KMS refuses getPublicKey on a disabled version (FAILED_PRECONDITION):
            // what keymgr recorded before disabling it (see `recorded`).
            Err(e)
                if e.kind() == ErrorKind::AccessDenied && recorded::needs_record(&meta.state) =>
            {
                self.recorded_public_key(label, &meta, algorithm).await?
            }
            other => other?,
        };
        let info = Arc::new(VersionInfo {
            name: version.to_owned(),
            algorithm,
            public_key,
        });
        self.infos
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(version.to_owned(), info.clone());
        Ok(info)
    }

    async fn fetch_public_key(
        &self,
        label: &str,
        version: &str,
        algorithm: KeyAlgorithm,
    ) -> std::result::Result<PublicKey, Failure> {
        let out = self
            .client
            .get_public_key()
            .set_name(version)
            .send()
            .await
            .map_err(|e| Failure::Other(map_gax_error(e, "GetPublicKey", label, version)))?;
        if out.pem_crc32c != Some(crc32c_i64(out.pem.as_bytes())) {
            return Err(Failure::Crc(Error::integrity(
                label,
                format!(
                    "GetPublicKey for {version}: pemCrc32c {:?} does not match the PEM received \
                     (corrupted in transit)",
                    out.pem_crc32c
                ),
            )));
        }
        if !out.name.is_empty() && out.name != version {
            return Err(Failure::Other(Error::integrity(
                label,
                format!("GetPublicKey for {version} answered for {}", out.name),
            )));
        }
        let answered = signing_algorithm(&out.algorithm, label, version)?;
        let public_key = PublicKey::from_spki_pem(&out.pem)
            .map_err(|e| Error::integrity(label, format!("GetPublicKey for {version}: {e}")))?;
        if answered != algorithm || public_key.algorithm() != algorithm {
            return Err(Failure::Other(Error::integrity(
                label,
                format!(
                    "{version} is {algorithm} but GetPublicKey returned a {answered} algorithm \
                     with a {} key",
                    public_key.algorithm()
                ),
            )));
        }
        Ok(public_key)
    }

    /// Drops the cached current version of the crypto key behind `name`.
    pub(crate) fn forget_current(&self, name: &str) {
        if let Ok(resource) = self.resource_of(name) {
            self.current
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&resource.crypto_key);
        }
    }
}

/// The keymgr algorithm of a Cloud KMS signing algorithm; anything else is
/// `Unsupported` naming it.
pub(crate) fn signing_algorithm(
    algorithm: &CryptoKeyVersionAlgorithm,
    label: &str,
    version: &str,
) -> Result<KeyAlgorithm> {
    match algorithm {
        CryptoKeyVersionAlgorithm::EcSignSecp256K1Sha256 => Ok(KeyAlgorithm::Secp256k1),
        CryptoKeyVersionAlgorithm::EcSignEd25519 => Ok(KeyAlgorithm::Ed25519),
        other => Err(Error::unsupported(
            BACKEND,
            "sign",
            format!(
                "key {label}: {version} has algorithm {}; keymgr signs with \
                 EC_SIGN_SECP256K1_SHA256 or EC_SIGN_ED25519 versions",
                algorithm_name(other)
            ),
        )),
    }
}

/// `EC_SIGN_P256_SHA256`, or `UNKNOWN(n)` for values this client does not know.
pub(crate) fn algorithm_name(algorithm: &CryptoKeyVersionAlgorithm) -> String {
    algorithm
        .name()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("UNKNOWN({})", algorithm.value().unwrap_or(-1)))
}

/// The numeric id at the end of a version resource name (0 if malformed).
pub(crate) fn version_number(name: &str) -> u64 {
    name.rsplit('/')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The version id at the end of a version resource name.
pub(crate) fn version_id(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}
