//! The stand-in's keys: crypto keys, their versions (real k256 / ed25519-dalek / AES-256
//! keys) and labels, with the operations the REST handlers call.
//!
//! Resource model and states:
//! <https://cloud.google.com/kms/docs/reference/rest/v1/projects.locations.keyRings.cryptoKeys>
//! and <https://cloud.google.com/kms/docs/reference/rest/v1/projects.locations.keyRings.cryptoKeys.cryptoKeyVersions#CryptoKeyVersionState>.

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use ed25519_dalek::Signer as _;
use k256::pkcs8::EncodePublicKey as _;
use rand_core::RngCore as _;
use ring::aead;

/// A version's algorithm, as `CryptoKeyVersionAlgorithm` numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// `GOOGLE_SYMMETRIC_ENCRYPTION` (1), purpose `ENCRYPT_DECRYPT`.
    Symmetric,
    /// `EC_SIGN_P256_SHA256` (12): listed, but the stand-in holds no P-256 key material
    /// (keymgr must refuse it from the metadata alone).
    P256,
    /// `EC_SIGN_SECP256K1_SHA256` (31).
    Secp256k1,
    /// `EC_SIGN_ED25519` (40).
    Ed25519,
}

impl Algorithm {
    /// The enum's integer value.
    pub fn number(self) -> i32 {
        match self {
            Algorithm::Symmetric => 1,
            Algorithm::P256 => 12,
            Algorithm::Secp256k1 => 31,
            Algorithm::Ed25519 => 40,
        }
    }

    /// The enum's name.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Symmetric => "GOOGLE_SYMMETRIC_ENCRYPTION",
            Algorithm::P256 => "EC_SIGN_P256_SHA256",
            Algorithm::Secp256k1 => "EC_SIGN_SECP256K1_SHA256",
            Algorithm::Ed25519 => "EC_SIGN_ED25519",
        }
    }

    /// `CryptoKeyPurpose`: `ENCRYPT_DECRYPT` (1) or `ASYMMETRIC_SIGN` (5).
    pub(crate) fn purpose(self) -> (i32, &'static str) {
        match self {
            Algorithm::Symmetric => (1, "ENCRYPT_DECRYPT"),
            _ => (5, "ASYMMETRIC_SIGN"),
        }
    }
}

/// `CryptoKeyVersionState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// `PENDING_GENERATION` (5).
    PendingGeneration,
    /// `ENABLED` (1).
    Enabled,
    /// `DISABLED` (2).
    Disabled,
    /// `DESTROYED` (3).
    Destroyed,
}

impl State {
    pub(crate) fn number(self) -> i32 {
        match self {
            State::PendingGeneration => 5,
            State::Enabled => 1,
            State::Disabled => 2,
            State::Destroyed => 3,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            State::PendingGeneration => "PENDING_GENERATION",
            State::Enabled => "ENABLED",
            State::Disabled => "DISABLED",
            State::Destroyed => "DESTROYED",
        }
    }

    pub(crate) fn parse(v: &serde_json::Value) -> Option<Self> {
        match (v.as_i64(), v.as_str()) {
            (Some(1), _) | (_, Some("ENABLED")) => Some(State::Enabled),
            (Some(2), _) | (_, Some("DISABLED")) => Some(State::Disabled),
            _ => None,
        }
    }
}

pub(crate) enum Material {
    Secp256k1(k256::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
    Aes([u8; 32]),
    None,
}

pub(crate) struct Version {
    pub(crate) id: u32,
    pub(crate) state: State,
    pub(crate) algorithm: Algorithm,
    pub(crate) material: Material,
    pub(crate) created: SystemTime,
    /// GETs left before a `PENDING_GENERATION` version becomes `ENABLED`.
    pub(crate) pending_gets: u32,
}

pub(crate) struct CryptoKey {
    pub(crate) algorithm: Algorithm,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) versions: Vec<Version>,
    pub(crate) primary: u32,
    pub(crate) created: SystemTime,
}

/// Every crypto key, by resource name.
#[derive(Default)]
pub(crate) struct Keys {
    pub(crate) keys: HashMap<String, CryptoKey>,
    /// How many GETs a newly created version stays `PENDING_GENERATION`.
    pub(crate) pending_gets: u32,
}

/// A REST error: HTTP status, `google.rpc.Code` name, message.
pub(crate) type Refusal = (u16, &'static str, String);

pub(crate) fn not_found(name: &str) -> Refusal {
    (404, "NOT_FOUND", format!("{name} not found."))
}

impl Keys {
    pub(crate) fn create(&mut self, name: &str, algorithm: Algorithm) {
        let key = CryptoKey {
            algorithm,
            labels: BTreeMap::new(),
            versions: vec![new_version(1, algorithm, 0)],
            primary: 1,
            created: SystemTime::now(),
        };
        self.keys.insert(name.to_owned(), key);
    }

    pub(crate) fn key(&self, name: &str) -> Result<&CryptoKey, Refusal> {
        self.keys.get(name).ok_or_else(|| not_found(name))
    }

    pub(crate) fn key_mut(&mut self, name: &str) -> Result<&mut CryptoKey, Refusal> {
        self.keys.get_mut(name).ok_or_else(|| not_found(name))
    }

    /// The version `…/cryptoKeyVersions/N`, with its crypto key's name.
    pub(crate) fn version_mut(&mut self, name: &str) -> Result<&mut Version, Refusal> {
        let (key, id) = name
            .rsplit_once("/cryptoKeyVersions/")
            .ok_or_else(|| not_found(name))?;
        let id: u32 = id.parse().map_err(|_| not_found(name))?;
        self.key_mut(key)?
            .versions
            .iter_mut()
            .find(|v| v.id == id)
            .ok_or_else(|| not_found(name))
    }

    /// A version usable for `purpose`-type operations: `FAILED_PRECONDITION` otherwise,
    /// as Cloud KMS answers for a disabled version.
    pub(crate) fn usable(&mut self, name: &str) -> Result<&Version, Refusal> {
        let v = self.version_mut(name)?;
        if v.state != State::Enabled {
            return Err((
                400,
                "FAILED_PRECONDITION",
                format!(
                    "{name} is not enabled, current state is: {}.",
                    v.state.name()
                ),
            ));
        }
        Ok(v)
    }

    pub(crate) fn add_version(&mut self, key_name: &str) -> Result<u32, Refusal> {
        let pending = self.pending_gets;
        let key = self.key_mut(key_name)?;
        let id = key.versions.iter().map(|v| v.id).max().unwrap_or(0) + 1;
        let algorithm = key.algorithm;
        key.versions.push(new_version(id, algorithm, pending));
        Ok(id)
    }
}

fn new_version(id: u32, algorithm: Algorithm, pending_gets: u32) -> Version {
    let mut seed = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut seed);
    let material = match algorithm {
        Algorithm::Secp256k1 => {
            Material::Secp256k1(k256::ecdsa::SigningKey::random(&mut rand_core::OsRng))
        }
        Algorithm::Ed25519 => Material::Ed25519(ed25519_dalek::SigningKey::from_bytes(&seed)),
        Algorithm::Symmetric => Material::Aes(seed),
        Algorithm::P256 => Material::None,
    };
    Version {
        id,
        state: if pending_gets > 0 {
            State::PendingGeneration
        } else {
            State::Enabled
        },
        algorithm,
        material,
        created: SystemTime::now(),
        pending_gets,
    }
}

impl Version {
    /// The PEM `getPublicKey` returns.
    pub(crate) fn pem(&self) -> Result<String, Refusal> {
        let pem = match &self.material {
            Material::Secp256k1(k) => k.verifying_key().to_public_key_pem(Default::default()),
            Material::Ed25519(k) => k.verifying_key().to_public_key_pem(Default::default()),
            Material::Aes(_) => {
                return Err((
                    400,
                    "FAILED_PRECONDITION",
                    "Operation requires an asymmetric key, got GOOGLE_SYMMETRIC_ENCRYPTION."
                        .to_owned(),
                ));
            }
            Material::None => {
                return Err((
                    501,
                    "UNIMPLEMENTED",
                    "the stand-in holds no key material for this algorithm".to_owned(),
                ));
            }
        };
        pem.map_err(|e| (500, "INTERNAL", e.to_string()))
    }

    /// `asymmetricSign`: DER ECDSA over the SHA-256 digest, or Ed25519 over the data.
    pub(crate) fn sign(
        &self,
        digest: Option<&[u8]>,
        data: Option<&[u8]>,
    ) -> Result<Vec<u8>, Refusal> {
        let invalid = |m: &str| (400, "INVALID_ARGUMENT", m.to_owned());
        match (&self.material, digest, data) {
            (Material::Secp256k1(k), Some(d), None) => {
                let d: [u8; 32] = d
                    .try_into()
                    .map_err(|_| invalid("digest.sha256 must be 32 bytes."))?;
                let (sig, _) = k
                    .sign_prehash_recoverable(&d)
                    .map_err(|e| (500, "INTERNAL", e.to_string()))?;
                Ok(sig.to_der().as_bytes().to_vec())
            }
            (Material::Secp256k1(_), _, _) => Err(invalid(
                "EC_SIGN_SECP256K1_SHA256 keys sign a digest.sha256, not data.",
            )),
            (Material::Ed25519(k), None, data) => {
                Ok(k.sign(data.unwrap_or_default()).to_bytes().to_vec())
            }
            (Material::Ed25519(_), Some(_), _) => {
                Err(invalid("EC_SIGN_ED25519 keys sign data, not a digest."))
            }
            _ => Err((
                400,
                "FAILED_PRECONDITION",
                format!("{} keys cannot sign.", self.algorithm.name()),
            )),
        }
    }

    /// `encrypt`: `version id (4 bytes) ‖ nonce (12) ‖ AES-256-GCM(plaintext, aad)`.
    pub(crate) fn encrypt(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, Refusal> {
        let Material::Aes(k) = &self.material else {
            return Err((
                400,
                "FAILED_PRECONDITION",
                format!("{} keys cannot encrypt.", self.algorithm.name()),
            ));
        };
        let key = aead::LessSafeKey::new(
            aead::UnboundKey::new(&aead::AES_256_GCM, k).map_err(|_| internal())?,
        );
        let mut nonce = [0u8; 12];
        rand_core::OsRng.fill_bytes(&mut nonce);
        let mut sealed = plaintext.to_vec();
        key.seal_in_place_append_tag(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(aad),
            &mut sealed,
        )
        .map_err(|_| internal())?;
        let mut out = self.id.to_be_bytes().to_vec();
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// `decrypt` of what [`Self::encrypt`] made with this version.
    pub(crate) fn decrypt(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, Refusal> {
        let failed = || {
            (
                400,
                "INVALID_ARGUMENT",
                "Decryption failed: the ciphertext is invalid.".to_owned(),
            )
        };
        let Material::Aes(k) = &self.material else {
            return Err(failed());
        };
        if sealed.len() < 12 + 16 {
            return Err(failed());
        }
        let key = aead::LessSafeKey::new(
            aead::UnboundKey::new(&aead::AES_256_GCM, k).map_err(|_| internal())?,
        );
        let nonce: [u8; 12] = sealed[..12].try_into().map_err(|_| failed())?;
        let mut buf = sealed[12..].to_vec();
        let plain = key
            .open_in_place(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(aad),
                &mut buf,
            )
            .map_err(|_| failed())?;
        Ok(plain.to_vec())
    }
}

fn internal() -> Refusal {
    (500, "INTERNAL", "internal error".to_owned())
}
