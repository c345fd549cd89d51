//! The backend trait every provider implements and every layer wraps.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::layer::BreakerState;
use crate::{
    Error, KeyRef, KeyVersion, OutcomeContext, PublicKey, Result, SignContext, SignPayload,
    VerifiedSignature,
};

/// Key/value pairs bound to symmetric ciphertexts (AWS encryption context, AAD).
pub type EncryptionContext = BTreeMap<String, String>;

/// A key store that can sign (and optionally encrypt) with keys it never hands out.
///
/// Object-safe: use it as `Arc<dyn KeyBackend>`. Operations a backend lacks return
/// [`Error::Unsupported`] with the reason (the default implementations do exactly that).
///
/// Contract for [`sign`](KeyBackend::sign): the returned [`VerifiedSignature`] is
/// normalized (low-s for secp256k1) and was verified, once, against the public key of the
/// version that signed (providers end with [`crate::finish_signature`] or
/// [`crate::finish_recoverable`], the only ways to make one).
///
/// # Key versions
///
/// A logical key (`KeyRef::new("evm")`) has one or more versions; `name@VERSION` names
/// one. Every backend keeps these rules, and `keymgr_testkit::conformance::versions`
/// checks them against each one:
///
/// - **Version id** — the backend's own, as text: the KMS key id (a UUID) for AWS, the
///   `cryptoKeyVersions/N` number for Google Cloud KMS, the 32-hex-digit key version for
///   Azure Key Vault, the decimal `N` of the PKCS#11 label `LABEL.vN` (`0` for the bare
///   label) for HSMs, `1` for the env backend (one version, never rotated).
/// - **Ordering** — [`list_versions`](KeyBackend::list_versions) returns versions oldest
///   first; a version made by [`create_version`](KeyBackend::create_version) comes last.
/// - **Exactly one current version** — the one the unversioned name resolves to; it is
///   the only entry with [`KeyVersion::current`] set, and `public_key`/`sign` without a
///   version use it.
/// - **`create_version` never deletes** — it adds a version with the same algorithm,
///   makes it current and leaves every earlier version listed, in its state (enabled
///   ones keep signing when named, for the overlap). Deleting is a separate, audited
///   operation ([`delete_version`](KeyBackend::delete_version)), which only keymgr-rotation's
///   `Rotator` calls, and only when the operator opted in (`HSM_KEEP_VERSIONS`).
/// - **The current version is never disabled** — `disable_version` on it (named by its
///   id or unversioned) is refused with [`Error::InvalidInput`]; rotate first.
/// - **Disabled means no signing, still verifiable** — `sign` with a disabled version is
///   [`Error::AccessDenied`] (not retryable); its `public_key` still answers, so old
///   signatures keep verifying; `list_versions` reports it
///   [`VersionState::Disabled`](crate::VersionState::Disabled). AWS KMS itself refuses
///   `GetPublicKey` on a disabled key: keymgr-aws records the public key on the key
///   (tag `keymgr:public-key`) before disabling it, so any process can read it; a
///   version disabled outside keymgr has no record and answers `AccessDenied`.
/// - **Disabling twice is a no-op** — `Ok(())`, the version stays disabled.
///
/// A backend without rotation (keys configured outside keymgr) returns
/// [`Error::Unsupported`] with the reason from `create_version` and `disable_version`,
/// and lists its single version as current.
#[async_trait]
pub trait KeyBackend: Send + Sync + fmt::Debug {
    /// Short backend name for errors, audit and health (`env`, `aws-kms`, `hsm`, ...).
    fn name(&self) -> &str;

    /// The public key of `key` (its current version unless one is given).
    async fn public_key(&self, key: &KeyRef) -> Result<PublicKey>;

    /// Signs `payload` with `key`; see the trait docs for what is guaranteed.
    async fn sign(&self, key: &KeyRef, payload: &SignPayload) -> Result<VerifiedSignature>;

    /// Signs like [`sign`](KeyBackend::sign), telling the audit layer what is being
    /// signed (`context` becomes typed fields of the audit entries).
    ///
    /// Adapters call this; [`KeyManager`](crate::KeyManager) records `context`. The default
    /// (providers, layers below the manager) ignores it and signs.
    async fn sign_with_context(
        &self,
        key: &KeyRef,
        payload: &SignPayload,
        context: &SignContext,
    ) -> Result<VerifiedSignature> {
        let _ = context;
        self.sign(key, payload).await
    }

    /// Signs like [`sign_with_context`](KeyBackend::sign_with_context); the success
    /// entry records `outcome`'s context for the signature instead of `context` (facts
    /// that depend on the signature, such as a signed transaction's hash; see
    /// [`OutcomeContext`]). The request and failure entries record `context`.
    ///
    /// The default (providers, layers below the manager) ignores `outcome` and calls
    /// [`sign_with_context`](KeyBackend::sign_with_context).
    async fn sign_with_outcome_context(
        &self,
        key: &KeyRef,
        payload: &SignPayload,
        context: &SignContext,
        outcome: &dyn OutcomeContext,
    ) -> Result<VerifiedSignature> {
        let _ = outcome;
        self.sign_with_context(key, payload, context).await
    }

    /// Records that an adapter refused, before asking for any signature, to sign
    /// `payload` with `key` as `context` describes, and returns `error` (why it refused)
    /// for the adapter to return. Nothing is signed.
    ///
    /// [`KeyManager`](crate::KeyManager) writes it as a `SIGN_FAILURE` entry with outcome
    /// `denied`, the error's kind and text, `context` and the payload's SHA-256, durable
    /// on return; if that entry cannot be written, the alarm is the audit log's and the
    /// refusal is still `error`. The default (providers, layers below the manager)
    /// returns `error` unrecorded.
    async fn refuse_sign(
        &self,
        key: &KeyRef,
        payload: &SignPayload,
        context: &SignContext,
        error: Error,
    ) -> Error {
        let _ = (key, payload, context);
        error
    }

    /// Cheap reachability and usability check.
    async fn health(&self) -> HealthReport;

    /// Versions of the logical key `name`, oldest first, exactly one of them current (see
    /// [Key versions](KeyBackend#key-versions)). `NotFound` when `name` does not exist,
    /// `InvalidInput` when it is not a key name ([`KeyRef::check_name`]).
    async fn list_versions(&self, name: &str) -> Result<Vec<KeyVersion>> {
        let _ = name;
        Err(Error::unsupported(
            self.name(),
            "list_versions",
            "this backend has no key versions",
        ))
    }

    /// Creates a new version of `name` with the same algorithm and makes it current;
    /// returns it (`current: true`, enabled). Deletes and disables nothing (see
    /// [Key versions](KeyBackend#key-versions)). `InvalidInput` when `name` is not a key
    /// name ([`KeyRef::check_name`]).
    async fn create_version(&self, name: &str) -> Result<KeyVersion> {
        let _ = name;
        Err(Error::unsupported(
            self.name(),
            "create_version",
            "this backend cannot create keys; rotate manually",
        ))
    }

    /// Disables the version `key` names (never deletes it): `InvalidInput` for the current
    /// version or an unversioned `key`, `Ok(())` when it is already disabled (see
    /// [Key versions](KeyBackend#key-versions)).
    async fn disable_version(&self, key: &KeyRef) -> Result<()> {
        let _ = key;
        Err(Error::unsupported(
            self.name(),
            "disable_version",
            "this backend cannot disable keys",
        ))
    }

    /// Destroys the version `key` names for good (its key material cannot be recovered).
    ///
    /// Only a version that is already disabled can be deleted: the current version, an
    /// unversioned `key` and a version that is still enabled (e.g. in its overlap) are
    /// refused with [`Error::InvalidInput`] (disable it first, or rotate); `NotFound` when
    /// the version does not exist. Backends that cannot destroy keys (the default) return
    /// [`Error::Unsupported`] with the reason. Not idempotent: a second call is
    /// `NotFound`, so layers neither retry nor abandon it.
    async fn delete_version(&self, key: &KeyRef) -> Result<()> {
        let _ = key;
        Err(Error::unsupported(
            self.name(),
            "delete_version",
            "this backend does not delete key versions; old versions stay disabled",
        ))
    }

    /// Encrypts with a symmetric key.
    async fn encrypt(
        &self,
        key: &KeyRef,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Vec<u8>> {
        let _ = (key, plaintext, context);
        Err(Error::unsupported(
            self.name(),
            "encrypt",
            "this backend has no symmetric keys",
        ))
    }

    /// Decrypts what [`encrypt`](KeyBackend::encrypt) produced.
    async fn decrypt(
        &self,
        key: &KeyRef,
        ciphertext: &[u8],
        context: &EncryptionContext,
    ) -> Result<SecretBytes> {
        let _ = (key, ciphertext, context);
        Err(Error::unsupported(
            self.name(),
            "decrypt",
            "this backend has no symmetric keys",
        ))
    }

    /// Generates a 256-bit data key, returned both in plaintext and wrapped by `key`.
    async fn generate_data_key(
        &self,
        key: &KeyRef,
        context: &EncryptionContext,
    ) -> Result<DataKey> {
        let _ = (key, context);
        Err(Error::unsupported(
            self.name(),
            "generate_data_key",
            "this backend has no symmetric keys",
        ))
    }

    /// Drops anything cached for `name` (called after rotation).
    fn invalidate(&self, name: &str) {
        let _ = name;
    }
}

// Keeps the trait dyn-compatible.
const _: fn(Arc<dyn KeyBackend>) = |_| {};

macro_rules! forward_backend {
    ($ty:ty) => {
        #[async_trait]
        impl<T: KeyBackend + ?Sized> KeyBackend for $ty {
            fn name(&self) -> &str {
                (**self).name()
            }
            async fn public_key(&self, key: &KeyRef) -> Result<PublicKey> {
                (**self).public_key(key).await
            }
            async fn sign(&self, key: &KeyRef, payload: &SignPayload) -> Result<VerifiedSignature> {
                (**self).sign(key, payload).await
            }
            async fn sign_with_context(
                &self,
                key: &KeyRef,
                payload: &SignPayload,
                context: &SignContext,
            ) -> Result<VerifiedSignature> {
                (**self).sign_with_context(key, payload, context).await
            }
            async fn sign_with_outcome_context(
                &self,
                key: &KeyRef,
                payload: &SignPayload,
                context: &SignContext,
                outcome: &dyn OutcomeContext,
            ) -> Result<VerifiedSignature> {
                (**self)
                    .sign_with_outcome_context(key, payload, context, outcome)
                    .await
            }
            async fn refuse_sign(
                &self,
                key: &KeyRef,
                payload: &SignPayload,
                context: &SignContext,
                error: Error,
            ) -> Error {
                (**self).refuse_sign(key, payload, context, error).await
            }
            async fn health(&self) -> HealthReport {
                (**self).health().await
            }
            async fn list_versions(&self, name: &str) -> Result<Vec<KeyVersion>> {
                (**self).list_versions(name).await
            }
            async fn create_version(&self, name: &str) -> Result<KeyVersion> {
                (**self).create_version(name).await
            }
            async fn disable_version(&self, key: &KeyRef) -> Result<()> {
                (**self).disable_version(key).await
            }
            async fn delete_version(&self, key: &KeyRef) -> Result<()> {
                (**self).delete_version(key).await
            }
            async fn encrypt(
                &self,
                key: &KeyRef,
                plaintext: &[u8],
                context: &EncryptionContext,
            ) -> Result<Vec<u8>> {
                (**self).encrypt(key, plaintext, context).await
            }
            async fn decrypt(
                &self,
                key: &KeyRef,
                ciphertext: &[u8],
                context: &EncryptionContext,
            ) -> Result<SecretBytes> {
                (**self).decrypt(key, ciphertext, context).await
            }
            async fn generate_data_key(
                &self,
                key: &KeyRef,
                context: &EncryptionContext,
            ) -> Result<DataKey> {
                (**self).generate_data_key(key, context).await
            }
            fn invalidate(&self, name: &str) {
                (**self).invalidate(name)
            }
        }
    };
}

forward_backend!(Arc<T>);
forward_backend!(Box<T>);

/// Secret bytes (plaintext data keys, decrypted data): zeroized on drop, redacted in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Takes ownership of `bytes`.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The secret itself; keep the borrow short.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes([REDACTED; {} bytes])", self.0.len())
    }
}

/// A data key from [`KeyBackend::generate_data_key`].
#[derive(Debug, Clone)]
pub struct DataKey {
    /// The plaintext key (32 bytes), zeroized on drop.
    pub plaintext: SecretBytes,
    /// The key wrapped by the KEK, safe to store.
    pub ciphertext: Vec<u8>,
}

/// Coarse health of a backend or of a whole stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Reachable and keys usable.
    Healthy,
    /// Working, but something is off (a failover target down, a breaker half-open).
    Degraded,
    /// Not usable.
    Unhealthy,
}

/// One backend's (or layer's) health, with nested reports for what it wraps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthReport {
    /// Backend or layer name.
    pub backend: String,
    /// Status.
    pub status: HealthStatus,
    /// How long the check took (`latency_ms` in JSON, milliseconds as a float).
    #[serde(rename = "latency_ms", with = "duration_ms")]
    pub latency: Duration,
    /// The state of the circuit breaker in front of this backend, if there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker: Option<BreakerState>,
    /// With an open or half-open breaker: milliseconds until it next lets a trial call
    /// through (0: the next call is the trial).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_trial_ms: Option<u64>,
    /// Human-readable detail (what failed, breaker state, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Reports of wrapped backends (failover targets).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<HealthReport>,
}

impl HealthReport {
    /// A healthy report.
    pub fn healthy(backend: impl Into<String>, latency: Duration) -> Self {
        Self {
            backend: backend.into(),
            status: HealthStatus::Healthy,
            latency,
            breaker: None,
            next_trial_ms: None,
            detail: None,
            components: Vec::new(),
        }
    }

    /// An unhealthy report with the reason.
    pub fn unhealthy(
        backend: impl Into<String>,
        latency: Duration,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            backend: backend.into(),
            status: HealthStatus::Unhealthy,
            latency,
            breaker: None,
            next_trial_ms: None,
            detail: Some(detail.into()),
            components: Vec::new(),
        }
    }

    /// Sets the detail.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

mod duration_ms {
    use serde::{Deserialize as _, Deserializer, Serializer};
    use std::time::Duration;

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64() * 1000.0)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let ms = f64::deserialize(d)?;
        Ok(Duration::from_secs_f64(ms.max(0.0) / 1000.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_bytes_debug_is_redacted() {
        let s = SecretBytes::new(vec![0xAB; 32]);
        let d = format!("{s:?}");
        assert!(!d.to_lowercase().contains("abab"), "{d}");
        assert!(d.contains("REDACTED"));
    }

    #[test]
    fn health_report_fields_in_json() {
        let mut r = HealthReport::healthy("aws-kms", Duration::from_micros(1500));
        r.breaker = Some(BreakerState::HalfOpen);
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(v["latency_ms"], serde_json::json!(1.5));
        assert_eq!(v["breaker"], "half_open");
        assert_eq!(v["status"], "healthy");
        let back: HealthReport = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
    }
}
