//! Configuration from environment variables, a dotenv file and a TOML file.
//!
//! Every setting has one name (the environment variable's, see `.env.example`), read
//! through [`keymgr_core::config::Vars`]. Precedence, first wins: command-line flag >
//! process environment > `--env-file` > configuration file (`KEYMGR_CONFIG` /
//! `--config`) > default. See [`sources`].

mod check;
mod file;
mod guard;
mod names;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use keymgr_core::layer::{BreakerPolicy, CachePolicy, RateLimitPolicy, RetryPolicy, TimeoutPolicy};
use keymgr_core::{Error, KeyBackend, KeyManager, RecommendedLayers, Result};

pub use check::{CANARY_MESSAGE, CheckReport, KeyCheck, Setting, check};
pub use file::{ConfigFile, KEYMGR_CONFIG, Sources, sources};
pub(crate) use guard::{guard, unset_keys};
pub use keymgr_core::config::{
    Layered, MapSource, Origin, Problems, ProcessEnv, TimeUnit, VarSource, Vars, process_env,
};
pub use names::{
    MEMBER_PREFIXES, VARIABLES, Variable, check_text, is_secret, member_variable, member_variables,
    variable,
};

/// Selects the provider.
pub const KEY_BACKEND: &str = "KEY_BACKEND";
/// Retries after the first attempt (default 3; 0 disables).
pub const KEYMGR_RETRY_MAX: &str = "KEYMGR_RETRY_MAX";
/// Delay before the first retry in milliseconds (default 1000; doubles each retry).
pub const KEYMGR_RETRY_BASE_MS: &str = "KEYMGR_RETRY_BASE_MS";
/// Per-attempt timeout in milliseconds (default 10000; 0 disables).
pub const KEYMGR_TIMEOUT_MS: &str = "KEYMGR_TIMEOUT_MS";
/// Public key cache TTL in seconds (default 3600; 0 disables).
pub const KEYMGR_PUBLIC_KEY_CACHE_SECS: &str = "KEYMGR_PUBLIC_KEY_CACHE_SECS";
/// Signatures per minute per key (default 100; 0 disables).
pub const KEYMGR_RATE_LIMIT_PER_MINUTE: &str = "KEYMGR_RATE_LIMIT_PER_MINUTE";
/// Consecutive failures that open the circuit breaker (default 5; 0 disables).
pub const KEYMGR_BREAKER_FAILURES: &str = "KEYMGR_BREAKER_FAILURES";
/// Seconds the breaker stays open before a trial call (default 60).
pub const KEYMGR_BREAKER_OPEN_SECS: &str = "KEYMGR_BREAKER_OPEN_SECS";
/// Who is acting, recorded in audit entries.
pub const KEYMGR_ACTOR: &str = "KEYMGR_ACTOR";

/// The providers `KEY_BACKEND` can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendKind {
    /// `env`: keys from `EVM_PRIVATE_KEY` / `XRP_SEED` (development).
    Env,
    /// `aws-kms`.
    AwsKms,
    /// `gcp-kms`.
    GcpKms,
    /// `azure-kv`.
    AzureKeyVault,
    /// `hsm`: PKCS#11.
    Hsm,
}

const EXPECTED_BACKENDS: &str = "one of env, aws-kms, gcp-kms, azure-kv, hsm";

impl FromStr for BackendKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "env" => Ok(BackendKind::Env),
            "aws-kms" => Ok(BackendKind::AwsKms),
            "gcp-kms" => Ok(BackendKind::GcpKms),
            "azure-kv" => Ok(BackendKind::AzureKeyVault),
            "hsm" => Ok(BackendKind::Hsm),
            other => Err(Error::config(
                KEY_BACKEND,
                EXPECTED_BACKENDS,
                format!("unknown backend {other:?}"),
            )),
        }
    }
}

impl BackendKind {
    /// The `KEY_BACKEND` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Env => "env",
            BackendKind::AwsKms => "aws-kms",
            BackendKind::GcpKms => "gcp-kms",
            BackendKind::AzureKeyVault => "azure-kv",
            BackendKind::Hsm => "hsm",
        }
    }

    /// The cargo feature of the `keymgr` crate that compiles this provider; `None` for
    /// providers this version of keymgr does not ship (every backend ships today).
    pub fn feature(self) -> Option<&'static str> {
        match self {
            BackendKind::Env => Some("env"),
            BackendKind::AwsKms => Some("aws"),
            BackendKind::GcpKms => Some("gcp"),
            BackendKind::Hsm => Some("hsm"),
            BackendKind::AzureKeyVault => Some("azure"),
        }
    }
}

/// Settings shared by every backend (layers and identity), from the environment.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The selected provider.
    pub backend: BackendKind,
    /// Retry policy; `None` when `KEYMGR_RETRY_MAX=0`.
    pub retry: Option<RetryPolicy>,
    /// Per-attempt timeout; `None` when `KEYMGR_TIMEOUT_MS=0`.
    pub timeout: Option<Duration>,
    /// Public key cache TTL; `None` when `KEYMGR_PUBLIC_KEY_CACHE_SECS=0`.
    pub public_key_cache: Option<Duration>,
    /// Per-key signature rate limit; `None` when `KEYMGR_RATE_LIMIT_PER_MINUTE=0`.
    pub rate_limit: Option<RateLimitPolicy>,
    /// Circuit breaker; `None` when `KEYMGR_BREAKER_FAILURES=0`.
    pub breaker: Option<BreakerPolicy>,
    /// Actor recorded in audit entries.
    pub actor: Option<String>,
}

/// Upper bound of `KEYMGR_RETRY_MAX`.
pub const MAX_RETRIES: u32 = 10;
/// Upper bound of `KEYMGR_RETRY_BASE_MS` (one minute).
pub const MAX_RETRY_BASE_MS: u64 = 60_000;
/// Upper bound of `KEYMGR_TIMEOUT_MS` (ten minutes).
pub const MAX_TIMEOUT_MS: u64 = 600_000;
/// Upper bound of `KEYMGR_PUBLIC_KEY_CACHE_SECS` (seven days).
pub const MAX_PUBLIC_KEY_CACHE_SECS: u64 = 7 * 86_400;
/// Upper bound of `KEYMGR_RATE_LIMIT_PER_MINUTE`.
pub const MAX_RATE_LIMIT_PER_MINUTE: u32 = 6_000_000;
/// Upper bound of `KEYMGR_BREAKER_FAILURES`.
pub const MAX_BREAKER_FAILURES: u32 = 10_000;
/// Upper bound of `KEYMGR_BREAKER_OPEN_SECS` (one day).
pub const MAX_BREAKER_OPEN_SECS: u64 = 86_400;

impl Settings {
    /// Reads the shared settings from `source`; every malformed or out-of-range value
    /// is an error naming its variable and the accepted range. A value that is not
    /// UTF-8 in any variable keymgr reads (paths excepted) is refused here too, whichever
    /// backend is selected ([`names::check_text`]).
    pub fn from_vars(source: &dyn VarSource) -> Result<Self> {
        names::check_text(source)?;
        let vars = Vars::new(source);
        let backend = match vars.get(KEY_BACKEND)? {
            Some(v) => match v.parse() {
                Ok(kind) => kind,
                Err(e) => {
                    vars.refuse::<()>(e)?;
                    BackendKind::Env
                }
            },
            None => BackendKind::Env,
        };
        let retry_max = vars.bounded(KEYMGR_RETRY_MAX, 0..=MAX_RETRIES, "retries")?;
        let retry_base = vars.duration(
            KEYMGR_RETRY_BASE_MS,
            TimeUnit::Millis,
            0..=MAX_RETRY_BASE_MS,
        )?;
        let retry = match retry_max {
            Some(0) => None,
            max => {
                let mut p = RetryPolicy::default();
                if let Some(max) = max {
                    p.max_retries = max;
                }
                if let Some(delay) = retry_base {
                    p.base_delay = delay;
                }
                Some(p)
            }
        };
        let ms = |name, max| vars.duration(name, TimeUnit::Millis, 0..=max);
        let secs = |name, min, max| vars.duration(name, TimeUnit::Secs, min..=max);
        let timeout = match ms(KEYMGR_TIMEOUT_MS, MAX_TIMEOUT_MS)? {
            Some(Duration::ZERO) => None,
            Some(d) => Some(d),
            None => Some(Duration::from_secs(10)),
        };
        let public_key_cache =
            match secs(KEYMGR_PUBLIC_KEY_CACHE_SECS, 0, MAX_PUBLIC_KEY_CACHE_SECS)? {
                Some(Duration::ZERO) => None,
                Some(d) => Some(d),
                None => Some(Duration::from_secs(3600)),
            };
        let rate_limit = match vars.bounded(
            KEYMGR_RATE_LIMIT_PER_MINUTE,
            0..=MAX_RATE_LIMIT_PER_MINUTE,
            "signatures per minute per key",
        )? {
            Some(0) => None,
            Some(n) => Some(RateLimitPolicy {
                limit: n,
                per: Duration::from_secs(60),
            }),
            None => Some(RateLimitPolicy::default()),
        };
        let open_for = secs(KEYMGR_BREAKER_OPEN_SECS, 1, MAX_BREAKER_OPEN_SECS)?;
        let breaker = match vars.bounded(
            KEYMGR_BREAKER_FAILURES,
            0..=MAX_BREAKER_FAILURES,
            "consecutive failures",
        )? {
            Some(0) => None,
            n => Some(BreakerPolicy {
                failure_threshold: n.unwrap_or(5),
                open_for: open_for.unwrap_or(Duration::from_secs(60)),
            }),
        };
        Ok(Self {
            backend,
            retry,
            timeout,
            public_key_cache,
            rate_limit,
            breaker,
            actor: vars.get(KEYMGR_ACTOR)?,
        })
    }
}

/// Builds the provider `KEY_BACKEND` selects, reading its variables from `source`.
///
/// The logical keys `evm` and `xrp` are served only when their variable is set (e.g.
/// `AWS_KMS_EVM_KEY_ID`); using one that is not configured is an error naming that
/// variable, never a request for a key literally named `evm`.
pub async fn backend_from_vars(
    kind: BackendKind,
    source: &dyn VarSource,
) -> Result<Arc<dyn KeyBackend>> {
    let backend = provider_from_vars(kind, source).await?;
    Ok(guard::configured_keys(kind, source, backend))
}

pub(crate) async fn provider_from_vars(
    kind: BackendKind,
    source: &dyn VarSource,
) -> Result<Arc<dyn KeyBackend>> {
    let var = Vars::new(source);
    match kind {
        #[cfg(feature = "env")]
        BackendKind::Env => Ok(Arc::new(keymgr_env::EnvBackend::from_source(&var)?)),
        #[cfg(feature = "hsm")]
        BackendKind::Hsm => Ok(Arc::new(
            keymgr_hsm::HsmBackend::connect(keymgr_hsm::HsmConfig::from_source(&var)?).await?,
        )),
        #[cfg(feature = "aws")]
        BackendKind::AwsKms => Ok(Arc::new(
            keymgr_aws::AwsKmsBackend::connect(keymgr_aws::AwsKmsConfig::from_source(&var)?)
                .await?,
        )),
        #[cfg(feature = "gcp")]
        BackendKind::GcpKms => Ok(Arc::new(
            keymgr_gcp::GcpKmsBackend::connect(keymgr_gcp::GcpKmsConfig::from_source(&var)?)
                .await?,
        )),
        #[cfg(feature = "azure")]
        BackendKind::AzureKeyVault => Ok(Arc::new(keymgr_azure::AzureKvBackend::new(
            keymgr_azure::AzureKvConfig::from_source(&var)?,
        )?)),
        #[allow(unreachable_patterns)]
        other => {
            let _ = var;
            Err(Error::config(
                KEY_BACKEND,
                format!(
                    "a backend compiled into this build ({})",
                    compiled_backends().join(", ")
                ),
                match other.feature() {
                    Some(feature) => format!(
                        "{} is not available: rebuild keymgr with cargo feature `{feature}`",
                        other.as_str()
                    ),
                    None => format!(
                        "{} is not available: this version of keymgr has no provider for it yet",
                        other.as_str()
                    ),
                },
            ))
        }
    }
}

fn compiled_backends() -> Vec<&'static str> {
    let all: &[(&str, bool)] = &[
        ("env", cfg!(feature = "env")),
        ("hsm", cfg!(feature = "hsm")),
        ("aws-kms", cfg!(feature = "aws")),
        ("gcp-kms", cfg!(feature = "gcp")),
        ("azure-kv", cfg!(feature = "azure")),
    ];
    all.iter().filter(|(_, on)| *on).map(|(n, _)| *n).collect()
}

/// Builds a [`KeyManager`] (provider + layers) from variables read through `var`.
pub async fn manager_from_vars(source: &dyn VarSource) -> Result<KeyManager> {
    // KEY_BACKENDS: several providers as failover members (see `crate::members`).
    // Read through `source` itself: a text value that is not UTF-8 is refused by name,
    // a path (HSM_2_PKCS11_LIBRARY_PATH, KEYMGR_AUDIT_PATH) is read as an `OsString`.
    if let Some(members) = crate::members::MemberConfig::from_source(source)? {
        return crate::members::manager_from_members(members, source).await;
    }
    let settings = Settings::from_vars(source)?;
    let backend = backend_from_vars(settings.backend, source).await?;
    // KEYMGR_AUDIT_PATH turns the hash-chained file log on; without it, tracing only.
    let audit = keymgr_audit::sink_from_source(source, Some(backend.clone())).await?;
    let mut builder = KeyManager::builder(backend)
        .audit(audit)
        .recommended_layers(RecommendedLayers {
            rate_limit: settings.rate_limit,
            cache: settings.public_key_cache.map(|ttl| CachePolicy { ttl }),
            retry: settings.retry,
            breaker: settings.breaker,
            timeout: settings.timeout.map(|limit| TimeoutPolicy { limit }),
        })
        .layer(keymgr_core::layer::MetricsPolicy::default());
    if let Some(actor) = settings.actor {
        builder = builder.actor(actor);
    }
    Ok(builder.build())
}

/// `KeyManager::from_env()`: configuration from the process environment, over the
/// TOML file `KEYMGR_CONFIG` names when it is set.
#[async_trait::async_trait]
pub trait FromEnv: Sized {
    /// Builds from the process environment (`KEY_BACKEND` and the provider's variables)
    /// layered over the file `KEYMGR_CONFIG` names, if any (see [`sources`]).
    async fn from_env() -> Result<Self>;
}

#[async_trait::async_trait]
impl FromEnv for KeyManager {
    async fn from_env() -> Result<Self> {
        let sources = sources(MapSource::new(), None, None)?;
        sources.ensure_valid()?;
        manager_from_vars(&sources.layered).await
    }
}
