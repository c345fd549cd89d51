//! An in-memory backend with real key versions, for rotation tests: create, list and
//! disable versions; disabled versions refuse to sign; hooks make the next create or
//! disable fail before or after its side effect (a crash at that step).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use ed25519_dalek::Signer as _;
use keymgr_core::{
    Error, HealthReport, KeyAlgorithm, KeyBackend, KeyRef, KeyVersion, PublicKey, RawSignature,
    Result, SignPayload, VerifiedSignature, VersionState, finish_recoverable, finish_signature,
};
use rand_core::RngCore as _;

enum Material {
    Secp256k1(k256::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
}

impl Material {
    fn generate(algorithm: KeyAlgorithm) -> Self {
        match algorithm {
            KeyAlgorithm::Ed25519 => {
                let mut seed = [0u8; 32];
                rand_core::OsRng.fill_bytes(&mut seed);
                Material::Ed25519(ed25519_dalek::SigningKey::from_bytes(&seed))
            }
            _ => Material::Secp256k1(k256::ecdsa::SigningKey::random(&mut rand_core::OsRng)),
        }
    }

    fn public_key(&self) -> PublicKey {
        match self {
            Material::Secp256k1(k) => PublicKey::Secp256k1(*k.verifying_key()),
            Material::Ed25519(k) => PublicKey::Ed25519(k.verifying_key()),
        }
    }
}

struct Version {
    material: Material,
    enabled: bool,
    created_at_ms: u64,
}

/// Where an injected failure happens relative to the side effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailAt {
    /// The call fails and changes nothing.
    Before,
    /// The change happens, then the call fails (a crash right after the side effect).
    After,
}

/// In-memory rotating backend; versions are "1", "2", ... and the newest is current.
#[derive(Default)]
pub struct MemoryBackend {
    keys: Mutex<BTreeMap<String, Vec<Version>>>,
    fail_create: Mutex<Option<FailAt>>,
    fail_disable: Mutex<Option<FailAt>>,
    creates: AtomicU64,
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemoryBackend([REDACTED])")
    }
}

impl MemoryBackend {
    /// A backend with one key `name` of `algorithm` (version "1").
    pub fn with_key(name: &str, algorithm: KeyAlgorithm) -> Self {
        let b = Self::default();
        b.lock().insert(
            name.to_owned(),
            vec![Version {
                material: Material::generate(algorithm),
                enabled: true,
                created_at_ms: 0,
            }],
        );
        b
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<Version>>> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next `create_version` fails at `at`.
    pub fn fail_next_create(&self, at: FailAt) {
        *self.fail_create.lock().unwrap_or_else(|p| p.into_inner()) = Some(at);
    }

    /// The next `disable_version` fails at `at`.
    pub fn fail_next_disable(&self, at: FailAt) {
        *self.fail_disable.lock().unwrap_or_else(|p| p.into_inner()) = Some(at);
    }

    /// How many versions `create_version` made.
    pub fn creates(&self) -> u64 {
        self.creates.load(Ordering::SeqCst)
    }

    /// (version, enabled) of every version of `name`.
    pub fn versions(&self, name: &str) -> Vec<(String, bool)> {
        self.lock()
            .get(name)
            .map(|vs| {
                vs.iter()
                    .enumerate()
                    .map(|(i, v)| ((i + 1).to_string(), v.enabled))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn index(&self, key: &KeyRef, versions: &[Version]) -> Result<usize> {
        match key.version() {
            None => Ok(versions.len() - 1),
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|i| (1..=versions.len()).contains(i))
                .map(|i| i - 1)
                .ok_or_else(|| Error::not_found(key.to_string(), "no such version")),
        }
    }

    fn injected(slot: &Mutex<Option<FailAt>>) -> Option<FailAt> {
        slot.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

fn crash(what: &str) -> Error {
    Error::unavailable("memory", format!("injected failure during {what}"), None)
}

#[async_trait]
impl KeyBackend for MemoryBackend {
    fn name(&self) -> &str {
        "memory"
    }

    async fn public_key(&self, key: &KeyRef) -> Result<PublicKey> {
        let keys = self.lock();
        let vs = keys
            .get(key.name())
            .ok_or_else(|| Error::not_found(key.to_string(), "no such key"))?;
        Ok(vs[self.index(key, vs)?].material.public_key())
    }

    async fn sign(&self, key: &KeyRef, payload: &SignPayload) -> Result<VerifiedSignature> {
        let keys = self.lock();
        let vs = keys
            .get(key.name())
            .ok_or_else(|| Error::not_found(key.to_string(), "no such key"))?;
        let index = self.index(key, vs)?;
        let version = (index + 1).to_string();
        let v = &vs[index];
        if !v.enabled {
            return Err(Error::access_denied(key.to_string(), "version is disabled"));
        }
        let pk = v.material.public_key();
        payload.check_algorithm(pk.algorithm(), &key.to_string())?;
        match (&v.material, payload) {
            (Material::Secp256k1(k), SignPayload::Prehash(h)) => {
                let (sig, recovery_id) = k
                    .sign_prehash_recoverable(h)
                    .map_err(|e| Error::backend("memory", "signing failed", Some(Box::new(e))))?;
                finish_recoverable(&key.to_string(), &pk, h, sig, recovery_id)
                    .map(|s| s.with_key_version(version))
            }
            (Material::Ed25519(k), SignPayload::Message(m)) => finish_signature(
                &key.to_string(),
                &pk,
                payload,
                RawSignature::Ed25519(&k.sign(m).to_bytes()),
            )
            .map(|s| s.with_key_version(version)),
            _ => Err(Error::invalid_input("payload", "does not fit the key")),
        }
    }

    async fn health(&self) -> HealthReport {
        HealthReport::healthy("memory", std::time::Duration::ZERO)
    }

    async fn list_versions(&self, name: &str) -> Result<Vec<KeyVersion>> {
        KeyRef::check_name(name)?;
        let keys = self.lock();
        let vs = keys
            .get(name)
            .ok_or_else(|| Error::not_found(name, "no such key"))?;
        Ok(vs
            .iter()
            .enumerate()
            .map(|(i, v)| KeyVersion {
                key: KeyRef::versioned(name, (i + 1).to_string()),
                backend_id: format!("memory:{name}/{}", i + 1),
                algorithm: v.material.public_key().algorithm(),
                state: if v.enabled {
                    VersionState::Enabled
                } else {
                    VersionState::Disabled
                },
                created_at_ms: Some(v.created_at_ms),
                current: i + 1 == vs.len(),
            })
            .collect())
    }

    async fn create_version(&self, name: &str) -> Result<KeyVersion> {
        KeyRef::check_name(name)?;
        let fail = Self::injected(&self.fail_create);
        if fail == Some(FailAt::Before) {
            return Err(crash("create_version"));
        }
        {
            let mut keys = self.lock();
            let vs = keys
                .get_mut(name)
                .ok_or_else(|| Error::not_found(name, "no such key"))?;
            let algorithm = vs[vs.len() - 1].material.public_key().algorithm();
            vs.push(Version {
                material: Material::generate(algorithm),
                enabled: true,
                created_at_ms: 0,
            });
            self.creates.fetch_add(1, Ordering::SeqCst);
        }
        if fail == Some(FailAt::After) {
            return Err(crash("create_version"));
        }
        let versions = self.list_versions(name).await?;
        versions
            .into_iter()
            .last()
            .ok_or_else(|| Error::not_found(name, "no versions"))
    }

    async fn disable_version(&self, key: &KeyRef) -> Result<()> {
        let fail = Self::injected(&self.fail_disable);
        if fail == Some(FailAt::Before) {
            return Err(crash("disable_version"));
        }
        {
            let mut keys = self.lock();
            let vs = keys
                .get_mut(key.name())
                .ok_or_else(|| Error::not_found(key.to_string(), "no such key"))?;
            let i = self.index(key, vs)?;
            if i + 1 == vs.len() {
                return Err(Error::invalid_input(
                    "version",
                    format!("{key} is the current version; it cannot be disabled"),
                ));
            }
            vs[i].enabled = false;
        }
        if fail == Some(FailAt::After) {
            return Err(crash("disable_version"));
        }
        Ok(())
    }
}
