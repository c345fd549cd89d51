//! [`HsmBackend`]: the [`KeyBackend`](keymgr_core::KeyBackend) over a PKCS#11 token.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::session::Session;
use keymgr_core::{
    Error, HealthReport, KeyAlgorithm, KeyRef, KeyVersion, PublicKey, RawSignature, Result,
    SignPayload, VerifiedSignature, finish_signature,
};
use rand_core::RngCore as _;

use crate::config::{HSM_SLOT_ID, HSM_TOKEN_LABEL, HsmConfig, TokenSelector};
use crate::deletion;
use crate::error::{self, BACKEND, Phase, Subject};
use crate::keys::FoundKey;
use crate::library::{Library, lock};
use crate::resolve::Cached;
use crate::rotation;
use crate::session_pool::{Failure, SessionPool};
use crate::token::Token;

/// Signs with secp256k1 and Ed25519 key pairs held in a PKCS#11 token.
///
/// - Keys are found by `CKA_LABEL`; logical names map to labels through
///   [`HsmConfig::keys`] (`evm` → `HSM_EVM_KEY_LABEL`, `xrp` → `HSM_XRP_KEY_LABEL`), any
///   other name is used as the label itself.
/// - Versions: the label itself is version `0` (a key made outside keymgr), and
///   rotation creates `<label>.v1`, `<label>.v2`, ...; the unversioned name resolves to
///   the highest version whose key pair is complete. See [`create_version`](keymgr_core::KeyBackend::create_version).
/// - Calls run on tokio's blocking thread pool with a session from a bounded pool.
///
/// `Debug` shows the module, token and key labels, never the PIN.
#[derive(Clone)]
pub struct HsmBackend {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: HsmConfig,
    pub(crate) pool: Arc<SessionPool>,
    /// label → resolved key pair.
    pub(crate) keys: Mutex<HashMap<String, Cached<FoundKey>>>,
    /// logical name → label of its current (highest) version.
    pub(crate) current: Mutex<HashMap<String, Cached<String>>>,
}

impl fmt::Debug for HsmBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.inner.config;
        f.debug_struct("HsmBackend")
            .field("library_path", &c.library_path)
            .field("token", &self.inner.pool.token().label())
            .field("slot", &self.inner.pool.token().slot_id())
            .field("keys", &c.keys)
            .field("pool_size", &self.inner.pool.size())
            .field("pin", &c.pin)
            .finish()
    }
}

enum StartFailure {
    /// No token matches the selector (yet): retried, then a configuration error. While
    /// another process rewrites a SoftHSM2 token, it can be missing or read with an
    /// empty label.
    NoToken {
        variable: String,
        expected: &'static str,
        detail: String,
    },
    Failure(Failure),
}

impl From<Failure> for StartFailure {
    fn from(f: Failure) -> Self {
        StartFailure::Failure(f)
    }
}

impl From<CkError> for StartFailure {
    fn from(e: CkError) -> Self {
        StartFailure::Failure(e.into())
    }
}

impl HsmBackend {
    /// Loads the module, finds the token, logs in and prepares the session pool.
    ///
    /// Transient start-up failures — what concurrent `C_Login`s on one token produce
    /// (`CKR_GENERAL_ERROR`, `CKR_SLOT_ID_INVALID`, the token briefly missing) — are
    /// retried with backoff for [`HsmConfig::startup_timeout`]. `CKR_USER_PIN_NOT_INITIALIZED`,
    /// which SoftHSM2 also answers while another process rewrites the token file, is
    /// retried for two seconds before it is reported. A wrong PIN, a missing module or a
    /// label mismatch fail at once.
    pub async fn connect(config: HsmConfig) -> Result<Self> {
        tokio::task::spawn_blocking(move || Self::connect_blocking(config))
            .await
            .map_err(|e| {
                Error::backend(
                    BACKEND,
                    format!("start-up task failed: {e}"),
                    Some(Box::new(e)),
                )
            })?
    }

    /// [`HsmConfig::from_env`] + [`connect`](Self::connect).
    pub async fn from_env() -> Result<Self> {
        Self::connect(HsmConfig::from_env()?).await
    }

    /// [`HsmConfig::from_vars`] + [`connect`](Self::connect). The variables are read
    /// before the returned future first runs.
    pub fn from_vars(
        var: impl Fn(&str) -> Option<String> + Sync,
    ) -> impl Future<Output = Result<Self>> + Send + 'static {
        let config = HsmConfig::from_vars(var);
        async move { Self::connect(config?).await }
    }

    fn connect_blocking(config: HsmConfig) -> Result<Self> {
        let started = Instant::now();
        let deadline = started + config.startup_timeout;
        let mut delay = Duration::from_millis(20);
        let mut attempt = 0u32;
        let token = loop {
            attempt += 1;
            let failure = match start(&config) {
                Ok(token) => break token,
                Err(f) => f,
            };
            let transient = match &failure {
                StartFailure::NoToken { .. } => true,
                StartFailure::Failure(Failure::Pkcs11(e, _)) => {
                    error::is_startup_transient(e)
                        || (error::is_startup_suspect(e)
                            && started.elapsed() + delay < error::SUSPECT_WINDOW)
                }
                StartFailure::Failure(Failure::Other(_)) => false,
            };
            if !transient || Instant::now() + delay > deadline {
                let waited = if attempt > 1 {
                    format!(" (after {attempt} attempts in {:.1?})", started.elapsed())
                } else {
                    String::new()
                };
                return Err(match failure {
                    StartFailure::NoToken {
                        variable,
                        expected,
                        detail,
                    } => Error::config(variable, expected, format!("{detail}{waited}")),
                    StartFailure::Failure(Failure::Other(e)) => e,
                    StartFailure::Failure(Failure::Pkcs11(e, _)) => {
                        let subject = config.token.to_string();
                        match error::map(e, Phase::Startup, Subject::token(&subject)) {
                            Error::Unavailable {
                                backend,
                                detail,
                                source,
                            } => Error::Unavailable {
                                backend,
                                detail: format!("{detail}{waited}"),
                                source,
                            },
                            other => other,
                        }
                    }
                });
            }
            let code = match &failure {
                StartFailure::NoToken { detail, .. } => detail.clone(),
                StartFailure::Failure(Failure::Pkcs11(e, _)) => {
                    error::rv(e).map(error::ckr_name).unwrap_or_default()
                }
                StartFailure::Failure(Failure::Other(e)) => e.to_string(),
            };
            tracing::debug!(attempt, %code, token = %config.token, "HSM start-up failed transiently; retrying");
            let jitter = u64::from(rand_core::OsRng.next_u32()) % (delay.as_millis() as u64 + 1);
            std::thread::sleep(delay + Duration::from_millis(jitter));
            delay = (delay * 2).min(Duration::from_millis(500));
        };
        let pool = Arc::new(SessionPool::new(token, config.pool_size));
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                pool,
                keys: Mutex::new(HashMap::new()),
                current: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &HsmConfig {
        &self.inner.config
    }

    /// The label of the token in use.
    pub fn token_label(&self) -> &str {
        self.inner.pool.token().label()
    }

    /// The slot id of the token in use (SoftHSM2 assigns large, non-zero ids).
    pub fn slot_id(&self) -> u64 {
        self.inner.pool.token().slot_id()
    }

    /// Creates a new logical key: a key pair labelled `<name>.v1` (or `<label>.v1` when
    /// `name` is configured to a label), private key sensitive and non-extractable.
    /// Fails if any version of `name` exists already.
    pub async fn create_key(&self, name: &str, algorithm: KeyAlgorithm) -> Result<KeyVersion> {
        let inner = self.inner.clone();
        let owned = name.to_owned();
        let result = self
            .inner
            .pool
            .change_once(move |s, _| rotation::create_key(&inner, s, &owned, algorithm))
            .await;
        self.inner.forget_name(name);
        result.map_err(|f| self.inner.map_failure(f, &KeyRef::new(name)))
    }
}

fn selector_variable(selector: &TokenSelector) -> String {
    match selector {
        TokenSelector::Label(_) => HSM_TOKEN_LABEL.to_owned(),
        TokenSelector::SlotId(_) => HSM_SLOT_ID.to_owned(),
        TokenSelector::SlotAndLabel(..) => format!("{HSM_SLOT_ID} / {HSM_TOKEN_LABEL}"),
    }
}

/// One start-up attempt. On failure every handle is dropped, so a module nobody else
/// in the process uses is finalized and the next attempt re-initializes it (SoftHSM2
/// reads its token directory at `C_Initialize`).
fn start(config: &HsmConfig) -> std::result::Result<Arc<Token>, StartFailure> {
    let lib = Library::get(&config.library_path)?;
    let Some(slot) = lib.find_slot(&config.token)? else {
        return Err(StartFailure::NoToken {
            variable: selector_variable(&config.token),
            expected: "a token that is present in the module",
            detail: format!(
                "no {} in {}; tokens present: [{}]",
                config.token,
                config.library_path.display(),
                lib.token_labels().join(", ")
            ),
        });
    };
    let label = match &config.token {
        TokenSelector::SlotAndLabel(id, want) => {
            let have = lib.token_label(slot)?;
            if &have != want {
                return Err(StartFailure::NoToken {
                    variable: format!("{HSM_SLOT_ID} / {HSM_TOKEN_LABEL}"),
                    expected: "a slot id and token label that name the same token",
                    detail: format!("slot {id} holds token {have:?}, not {want:?}"),
                });
            }
            Some(want.as_str())
        }
        TokenSelector::Label(want) => Some(want.as_str()),
        TokenSelector::SlotId(_) => None,
    };
    Ok(Token::get(&lib, slot, &config.pin, label)?)
}

pub(crate) fn mechanism(algorithm: KeyAlgorithm) -> Mechanism<'static> {
    match algorithm {
        KeyAlgorithm::Secp256k1 => Mechanism::Ecdsa,
        _ => Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
    }
}

impl Inner {
    pub(crate) fn map_failure(&self, f: Failure, key: &KeyRef) -> Error {
        match f {
            Failure::Other(e) => e,
            Failure::Pkcs11(e, label) => {
                let name = key.to_string();
                error::map(
                    e,
                    Phase::Operation,
                    Subject {
                        key: &name,
                        label: label.as_deref(),
                    },
                )
            }
        }
    }

    fn sign_blocking(
        &self,
        s: &Session,
        epoch: u64,
        key: &KeyRef,
        payload: &SignPayload,
    ) -> std::result::Result<VerifiedSignature, Failure> {
        let name = key.to_string();
        let mut retried = false;
        loop {
            let found = self.resolve(s, epoch, key)?;
            payload.check_algorithm(found.algorithm(), &name)?;
            if let Some(d) = found.disabled {
                return Err(Error::access_denied(
                    name,
                    format!("version {:?} is disabled: {}", found.label, d.describe()),
                )
                .into());
            }
            let algorithm = found.algorithm();
            let raw = match s.sign(&mechanism(algorithm), found.private, payload.as_bytes()) {
                Ok(raw) => raw,
                Err(e) if !retried && error::is_stale_handle(&e) => {
                    // Handles change when the module is re-initialized or the key was
                    // replaced: look the label up again, once.
                    retried = true;
                    self.forget_label(&found.label);
                    lock(&self.current).remove(key.name());
                    self.pool.token().ensure_login(true)?;
                    continue;
                }
                Err(e) => {
                    if matches!(error::rv(&e), Some(RvError::KeyFunctionNotPermitted)) {
                        self.forget_label(&found.label);
                    }
                    return Err(Failure::Pkcs11(e, Some(found.label)));
                }
            };
            let raw_sig = match algorithm {
                KeyAlgorithm::Secp256k1 => RawSignature::EcdsaRaw(&raw),
                _ => RawSignature::Ed25519(&raw),
            };
            match finish_signature(&name, &found.public, payload, raw_sig) {
                Ok(sig) => {
                    // The label says which version signed (`LABEL` = 0, `LABEL.vN` = N).
                    let base = self.config.base_label(key.name());
                    return Ok(match rotation::parse_version(base, &found.label) {
                        Some(n) => sig.with_key_version(n.to_string()),
                        None => sig,
                    });
                }
                Err(e) if !retried => {
                    // The cached public key may belong to a key that was replaced under
                    // the same label: read it again before calling this an integrity error.
                    tracing::warn!(key = %name, label = %found.label, "signature did not verify; re-reading the key once: {e}");
                    retried = true;
                    self.forget_label(&found.label);
                    lock(&self.current).remove(key.name());
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl HsmBackend {
    pub(crate) async fn list_versions_inner(&self, name: &str) -> Result<Vec<KeyVersion>> {
        let inner = self.inner.clone();
        let owned = name.to_owned();
        self.inner
            .pool
            .run(move |s, _| rotation::list_versions(&inner, s, &owned))
            .await
            .map_err(|f| self.inner.map_failure(f, &KeyRef::new(name)))
    }

    /// Generates `<label>.v<N+1>` (`C_GenerateKeyPair`, private key sensitive and
    /// non-extractable, same curve as the current version), `N` being the highest version
    /// any object on the token carries, and makes it current. Old versions stay (disable
    /// them with [`disable_version`](keymgr_core::KeyBackend::disable_version)); nothing is
    /// deleted. The creation time is recorded on the token: a `CKO_DATA` object labelled
    /// `keymgr.created:<label>` holding milliseconds since the epoch.
    pub(crate) async fn create_version_inner(&self, name: &str) -> Result<KeyVersion> {
        let inner = self.inner.clone();
        let owned = name.to_owned();
        let result = self
            .inner
            .pool
            .change_once(move |s, epoch| rotation::create_version(&inner, s, epoch, &owned))
            .await;
        self.inner.forget_name(name);
        result.map_err(|f| self.inner.map_failure(f, &KeyRef::new(name)))
    }

    /// Sets `CKA_SIGN=false` on the version's private key; where the token refuses,
    /// stores keymgr's disabled-marker object instead, which this backend honours.
    pub(crate) async fn disable_version_inner(&self, key: &KeyRef) -> Result<()> {
        let inner = self.inner.clone();
        let owned = key.clone();
        let result = self
            .inner
            .pool
            .change(move |s, _| rotation::disable_version(&inner, s, &owned))
            .await;
        self.inner.forget_name(key.name());
        result.map_err(|f| self.inner.map_failure(f, key))
    }
}

keymgr_core::provider_backend! {
impl KeyBackend for HsmBackend {
    fn name(&self) -> &str {
        BACKEND
    }

    async fn public_key(&self, key: &KeyRef) -> Result<PublicKey> {
        let inner = self.inner.clone();
        let k = key.clone();
        self.inner
            .pool
            .run(move |s, epoch| inner.resolve(s, epoch, &k).map(|f| f.public))
            .await
            .map_err(|f| self.inner.map_failure(f, key))
    }

    async fn sign(&self, key: &KeyRef, payload: &SignPayload) -> Result<VerifiedSignature> {
        let inner = self.inner.clone();
        let k = key.clone();
        let p = payload.clone();
        self.inner
            .pool
            .run(move |s, epoch| inner.sign_blocking(s, epoch, &k, &p))
            .await
            .map_err(|f| self.inner.map_failure(f, key))
    }

    async fn health(&self) -> HealthReport {
        let started = Instant::now();
        let inner = self.inner.clone();
        let names: Vec<String> = self.inner.config.keys.keys().cloned().collect();
        let result = self
            .inner
            .pool
            .run(move |s, epoch| {
                s.get_session_info()?;
                Ok(names
                    .iter()
                    .map(|n| {
                        let key = KeyRef::new(n.as_str());
                        match inner.resolve(s, epoch, &key) {
                            Ok(k) if k.disabled.is_none() => {
                                (true, format!("{n}: {} key {:?}", k.algorithm(), k.label))
                            }
                            Ok(k) => (false, format!("{n}: {:?} is disabled", k.label)),
                            Err(f) => (false, format!("{n}: {}", inner.map_failure(f, &key))),
                        }
                    })
                    .collect::<Vec<_>>())
            })
            .await;
        let token = format!(
            "token {:?} (slot {}), pool {} session(s), {} idle",
            self.inner.pool.token().label(),
            self.inner.pool.token().slot_id(),
            self.inner.pool.size(),
            self.inner.pool.idle_sessions()
        );
        match result {
            Ok(keys) => {
                let ok = keys.iter().all(|(ok, _)| *ok);
                let detail = format!(
                    "{token}; {}",
                    keys.into_iter()
                        .map(|(_, d)| d)
                        .collect::<Vec<_>>()
                        .join("; ")
                );
                if ok {
                    HealthReport::healthy(BACKEND, started.elapsed()).with_detail(detail)
                } else {
                    HealthReport::unhealthy(BACKEND, started.elapsed(), detail)
                }
            }
            Err(f) => HealthReport::unhealthy(
                BACKEND,
                started.elapsed(),
                format!(
                    "{token}: {}",
                    // The error names the token; a label that is not a key name (empty,
                    // or with `@`) cannot be a KeyRef, so the backend's name stands in.
                    self.inner.map_failure(
                        f,
                        &KeyRef::parse(self.inner.pool.token().label())
                            .ok()
                            .filter(|k| k.version().is_none())
                            .unwrap_or_else(|| KeyRef::new(BACKEND))
                    )
                ),
            ),
        }
    }

    /// Destroys a disabled, non-current version (`C_DestroyObject` on its private key,
    /// public key, disabled marker and creation record). `InvalidInput` (field `key`)
    /// for an unversioned key, version `0`, the current version or an enabled one;
    /// `NotFound` when the version does not exist. Only keymgr-rotation's `Rotator`
    /// calls it, under the opt-in `HSM_KEEP_VERSIONS`, and audits each call.
    async fn delete_version(&self, key: &KeyRef) -> Result<()> {
        let inner = self.inner.clone();
        let owned = key.clone();
        let result = self
            .inner
            .pool
            .change_once(move |s, _| deletion::delete_version(&inner, s, &owned))
            .await;
        self.inner.forget_name(key.name());
        result.map_err(|f| self.inner.map_failure(f, key))
    }

    fn invalidate(&self, name: &str) {
        self.inner.forget_name(name);
    }
}
}
