//! Configuration from environment variables.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use keymgr_core::layer::{BreakerPolicy, CachePolicy, RateLimitPolicy, RetryPolicy, TimeoutPolicy};
use keymgr_core::{Error, KeyBackend, KeyManager, RecommendedLayers, Result};

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

impl Settings {
    /// Reads the shared settings through `var`; every malformed value is an error naming
    /// its variable.
    pub fn from_vars(var: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        let backend = match non_empty(var, KEY_BACKEND) {
            Some(v) => v.parse()?,
            None => BackendKind::Env,
        };
        let retry_max =
            parse_num::<u32>(var, KEYMGR_RETRY_MAX, "a whole number of retries, e.g. 3")?;
        let retry_base = parse_num::<u64>(var, KEYMGR_RETRY_BASE_MS, "milliseconds, e.g. 1000")?;
        let retry = match retry_max {
            Some(0) => None,
            max => {
                let mut p = RetryPolicy::default();
                if let Some(max) = max {
                    p.max_retries = max;
                }
                if let Some(ms) = retry_base {
                    p.base_delay = Duration::from_millis(ms);
                }
                Some(p)
            }
        };
        let timeout = match parse_num::<u64>(var, KEYMGR_TIMEOUT_MS, "milliseconds, e.g. 10000")? {
            Some(0) => None,
            Some(ms) => Some(Duration::from_millis(ms)),
            None => Some(Duration::from_secs(10)),
        };
        let public_key_cache =
            match parse_num::<u64>(var, KEYMGR_PUBLIC_KEY_CACHE_SECS, "seconds, e.g. 3600")? {
                Some(0) => None,
                Some(s) => Some(Duration::from_secs(s)),
                None => Some(Duration::from_secs(3600)),
            };
        let rate_limit = match parse_num::<u32>(
            var,
            KEYMGR_RATE_LIMIT_PER_MINUTE,
            "signatures per minute per key, e.g. 100",
        )? {
            Some(0) => None,
            Some(n) => Some(RateLimitPolicy {
                limit: n,
                per: Duration::from_secs(60),
            }),
            None => Some(RateLimitPolicy::default()),
        };
        let open_for = parse_num::<u64>(var, KEYMGR_BREAKER_OPEN_SECS, "seconds, e.g. 60")?;
        let breaker =
            match parse_num::<u32>(var, KEYMGR_BREAKER_FAILURES, "consecutive failures, e.g. 5")? {
                Some(0) => None,
                n => Some(BreakerPolicy {
                    failure_threshold: n.unwrap_or(5),
                    open_for: Duration::from_secs(open_for.unwrap_or(60)),
                }),
            };
        Ok(Self {
            backend,
            retry,
            timeout,
            public_key_cache,
            rate_limit,
            breaker,
            actor: non_empty(var, KEYMGR_ACTOR),
        })
    }
}

fn non_empty(var: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    var(name).filter(|v| !v.trim().is_empty())
}

fn parse_num<T: FromStr>(
    var: &dyn Fn(&str) -> Option<String>,
    name: &str,
    expected: &str,
) -> Result<Option<T>> {
    match non_empty(var, name) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| Error::config(name, expected, format!("{v:?} is not a valid number"))),
    }
}

/// Builds the provider `KEY_BACKEND` selects, reading its variables through `var`.
pub async fn backend_from_vars(
    kind: BackendKind,
    var: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Result<Arc<dyn KeyBackend>> {
    match kind {
        #[cfg(feature = "env")]
        BackendKind::Env => Ok(Arc::new(keymgr_env::EnvBackend::from_vars(var)?)),
        #[cfg(feature = "hsm")]
        BackendKind::Hsm => Ok(Arc::new(keymgr_hsm::HsmBackend::from_vars(var).await?)),
        #[cfg(feature = "aws")]
        BackendKind::AwsKms => Ok(Arc::new(
            keymgr_aws::AwsKmsBackend::connect(keymgr_aws::AwsKmsConfig::from_vars(var)?).await?,
        )),
        #[cfg(feature = "gcp")]
        BackendKind::GcpKms => Ok(Arc::new(
            keymgr_gcp::GcpKmsBackend::connect(keymgr_gcp::GcpKmsConfig::from_vars(var)?).await?,
        )),
        #[cfg(feature = "azure")]
        BackendKind::AzureKeyVault => Ok(Arc::new(keymgr_azure::AzureKvBackend::new(
            keymgr_azure::AzureKvConfig::from_vars(var)?,
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
pub async fn manager_from_vars(
    var: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Result<KeyManager> {
    // KEY_BACKENDS: several providers as failover members (see `crate::members`).
    if let Some(members) = crate::members::MemberConfig::from_vars(var)? {
        return crate::members::manager_from_members(members, var).await;
    }
    let settings = Settings::from_vars(var)?;
    let backend = backend_from_vars(settings.backend, var).await?;
    // KEYMGR_AUDIT_PATH turns the hash-chained file log on; without it, tracing only.
    let audit = keymgr_audit::sink_from_vars(var, Some(backend.clone())).await?;
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

/// `KeyManager::from_env()`: configuration from the process environment.
#[async_trait::async_trait]
pub trait FromEnv: Sized {
    /// Builds from the process environment (`KEY_BACKEND` and the provider's variables).
    async fn from_env() -> Result<Self>;
}

#[async_trait::async_trait]
impl FromEnv for KeyManager {
    async fn from_env() -> Result<Self> {
        manager_from_vars(&|name| std::env::var(name).ok()).await
    }
}
