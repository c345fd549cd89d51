use std::collections::BTreeMap;
use std::fmt;
use std::time::Instant;

use async_trait::async_trait;
use ed25519_dalek::Signer as _;
use keymgr_core::{
    Error, HealthReport, KeyBackend, KeyRef, KeyVersion, PublicKey, RawSignature, Result,
    SignPayload, VerifiedSignature, finish_recoverable, finish_signature,
};
use zeroize::Zeroizing;

use crate::seed::{self, SeedKey};

const BACKEND: &str = "env";
/// The one version an env key has (its key material cannot rotate in place).
const ENV_VERSION: &str = "1";
const ROTATION_IS_MANUAL: &str = "rotation is manual for the env backend: generate a new key, \
     set EVM_PRIVATE_KEY / XRP_SEED to it and restart (use a KMS or HSM backend for \
     automatic rotation)";

/// A private key held in process memory; zeroized on drop, never printed.
enum EnvKey {
    Secp256k1(k256::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
}

impl EnvKey {
    fn public_key(&self) -> PublicKey {
        match self {
            EnvKey::Secp256k1(k) => PublicKey::Secp256k1(*k.verifying_key()),
            EnvKey::Ed25519(k) => PublicKey::Ed25519(k.verifying_key()),
        }
    }
}

/// Development backend: keys loaded from environment variables or generated at start.
///
/// Keys live in process memory (zeroized on drop; `Debug` shows only names and public
/// keys). Each key has exactly one version, `"1"`; rotation is [`Error::Unsupported`].
#[derive(Default)]
pub struct EnvBackend {
    keys: BTreeMap<String, EnvKey>,
}

impl fmt::Debug for EnvBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (name, key) in &self.keys {
            map.entry(name, &key.public_key());
        }
        map.finish()?;
        f.write_str(" (private keys [REDACTED])")
    }
}

impl EnvBackend {
    /// An empty backend; add keys with the `with_*` methods.
    pub fn new() -> Self {
        Self::default()
    }

    /// Throwaway keys from the OS RNG: `evm` (secp256k1) and `xrp` (Ed25519). For demos.
    pub fn generate() -> Self {
        Self::new()
            .with_secp256k1_key(
                crate::DEFAULT_EVM_KEY,
                k256::ecdsa::SigningKey::random(&mut rand_core::OsRng),
            )
            .with_ed25519_key(crate::DEFAULT_XRP_KEY, {
                let mut secret = Zeroizing::new([0u8; 32]);
                rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut *secret);
                ed25519_dalek::SigningKey::from_bytes(&secret)
            })
    }

    /// Adds a secp256k1 key.
    pub fn with_secp256k1_key(mut self, name: &str, key: k256::ecdsa::SigningKey) -> Self {
        self.keys.insert(name.to_owned(), EnvKey::Secp256k1(key));
        self
    }

    /// Adds an Ed25519 key.
    pub fn with_ed25519_key(mut self, name: &str, key: ed25519_dalek::SigningKey) -> Self {
        self.keys.insert(name.to_owned(), EnvKey::Ed25519(key));
        self
    }

    /// Adds a secp256k1 key from hex (`0x` prefix optional, 64 hex characters).
    pub fn with_secp256k1_hex(self, name: &str, hex_key: &str) -> Result<Self> {
        let trimmed = hex_key.trim();
        let digits = trimmed
            .strip_prefix("0x")
            .or_else(|| trimmed.strip_prefix("0X"))
            .unwrap_or(trimmed);
        if digits.len() != 64 {
            return Err(Error::invalid_input(
                "secp256k1 private key",
                format!("expected 64 hex characters after 0x, got {}", digits.len()),
            ));
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(digits, &mut *bytes).map_err(|_| {
            Error::invalid_input(
                "secp256k1 private key",
                "contains a character that is not hex",
            )
        })?;
        let key = k256::ecdsa::SigningKey::from_bytes(&(*bytes).into()).map_err(|_| {
            Error::invalid_input(
                "secp256k1 private key",
                "zero or not below the secp256k1 group order",
            )
        })?;
        Ok(self.with_secp256k1_key(name, key))
    }

    /// Adds the account key derived from an XRPL family seed (`s...` secp256k1 or `sEd...`
    /// Ed25519), as rippled derives it (account index 0), for the type the seed's prefix
    /// names. Use [`with_xrpl_seed_as`](Self::with_xrpl_seed_as) for an Ed25519 account
    /// whose seed is a plain `s...` seed.
    pub fn with_xrpl_seed(self, name: &str, seed: &str) -> Result<Self> {
        self.add_seed(name, seed, None)
    }

    /// Adds the account key of `seed` for `key_type`, as rippled's `wallet_propose`
    /// (`key_type`) and xrpl-py's `derive_keypair(seed, algorithm=…)` derive it: a plain
    /// `s...` seed serves either type; an `sEd...` seed with secp256k1 is
    /// [`Error::InvalidInput`].
    pub fn with_xrpl_seed_as(
        self,
        name: &str,
        seed: &str,
        key_type: keymgr_core::KeyAlgorithm,
    ) -> Result<Self> {
        self.add_seed(name, seed, Some(key_type))
    }

    fn add_seed(
        self,
        name: &str,
        seed: &str,
        key_type: Option<keymgr_core::KeyAlgorithm>,
    ) -> Result<Self> {
        Ok(match seed::derive(seed, key_type)? {
            SeedKey::Secp256k1(k) => self.with_secp256k1_key(name, k),
            SeedKey::Ed25519(k) => self.with_ed25519_key(name, k),
        })
    }

    /// Names of the loaded keys.
    pub fn key_names(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    fn key(&self, key: &KeyRef) -> Result<&EnvKey> {
        if let Some(v) = key.version()
            && v != "1"
        {
            {
                return Err(Error::not_found(
                    key.to_string(),
                    "env backend keys have exactly one version, \"1\"",
                ));
            }
        }
        self.keys.get(key.name()).ok_or_else(|| {
            let known: Vec<&str> = self.key_names().collect();
            Error::not_found(
                key.to_string(),
                format!("the env backend holds only {known:?}"),
            )
        })
    }
}

#[async_trait]
impl KeyBackend for EnvBackend {
    fn name(&self) -> &str {
        BACKEND
    }

    async fn public_key(&self, key: &KeyRef) -> Result<PublicKey> {
        Ok(self.key(key)?.public_key())
    }

    async fn sign(&self, key: &KeyRef, payload: &SignPayload) -> Result<VerifiedSignature> {
        let k = self.key(key)?;
        let public_key = k.public_key();
        let name = key.to_string();
        payload.check_algorithm(public_key.algorithm(), &name)?;
        match (k, payload) {
            (EnvKey::Secp256k1(sk), SignPayload::Prehash(h)) => {
                // The recovery id comes out of signing; finish_recoverable verifies once
                // and cross-checks it.
                let (sig, recovery_id) = sk.sign_prehash_recoverable(h).map_err(|e| {
                    Error::backend(
                        BACKEND,
                        format!("secp256k1 signing failed for {name}"),
                        Some(Box::new(e)),
                    )
                })?;
                finish_recoverable(&name, &public_key, h, sig, recovery_id)
                    .map(|s| s.with_key_version(ENV_VERSION))
            }
            (EnvKey::Ed25519(sk), SignPayload::Message(m)) => {
                let sig = sk.sign(m);
                finish_signature(
                    &name,
                    &public_key,
                    payload,
                    RawSignature::Ed25519(&sig.to_bytes()),
                )
                .map(|s| s.with_key_version(ENV_VERSION))
            }
            // check_algorithm above rejected the other combinations.
            _ => Err(Error::invalid_input(
                "payload",
                "payload does not fit the key",
            )),
        }
    }

    async fn health(&self) -> HealthReport {
        let started = Instant::now();
        if self.keys.is_empty() {
            return HealthReport::unhealthy(BACKEND, started.elapsed(), "no keys loaded");
        }
        HealthReport::healthy(BACKEND, started.elapsed())
            .with_detail(format!("{} key(s) in process memory", self.keys.len()))
    }

    async fn list_versions(&self, name: &str) -> Result<Vec<KeyVersion>> {
        KeyRef::check_name(name)?;
        let key = self.key(&KeyRef::new(name))?;
        Ok(vec![KeyVersion {
            key: KeyRef::versioned(name, ENV_VERSION),
            backend_id: format!("env:{name}"),
            algorithm: key.public_key().algorithm(),
            state: keymgr_core::VersionState::Enabled,
            created_at_ms: None,
            current: true,
        }])
    }

    async fn create_version(&self, _name: &str) -> Result<KeyVersion> {
        Err(Error::unsupported(
            BACKEND,
            "create_version",
            ROTATION_IS_MANUAL,
        ))
    }

    async fn disable_version(&self, _key: &KeyRef) -> Result<()> {
        Err(Error::unsupported(
            BACKEND,
            "disable_version",
            ROTATION_IS_MANUAL,
        ))
    }
}
