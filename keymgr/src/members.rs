//! Several providers at once: `KEY_BACKENDS` names an ordered list of failover members
//! for the same logical keys, each built from its provider's usual variables.
//!
//! ```text
//! KEY_BACKENDS=hsm,hsm:2,aws-kms
//! HSM_PIN=...            # member `hsm`: the usual HSM_* variables
//! HSM_2_PIN=...          # member `hsm:2`: the same names with `_2` after the prefix
//! AWS_REGION=...         # member `aws-kms`
//! ```
//!
//! A member is `<backend>` or `<backend>:<n>` (n ≥ 2). Member `<backend>:<n>` reads each
//! provider variable with `_<n>` inserted after its prefix (`HSM_`, `AWS_`, `GCP_`,
//! `AZURE_`, `EVM_`, `XRP_`): `HSM_2_PKCS11_LIBRARY_PATH`, `HSM_2_TOKEN_LABEL`,
//! `AWS_2_KMS_EVM_KEY_ID`, `EVM_2_PRIVATE_KEY`, ... — and nothing else, so two members
//! never share a setting by accident. Process-wide settings (`SSL_CERT_FILE`, the AWS
//! SDK's credential chain, `KEYMGR_*`) are shared.
//!
//! Each member sits behind its own metrics, public key cache, retry budget
//! (`KEYMGR_MEMBER_RETRY_MAX`, default 0: fail over at once), circuit breaker and timeout
//! (`KEYMGR_BREAKER_*`, `KEYMGR_TIMEOUT_MS`); the failover sits behind the rate limit,
//! cache and retry layers (see [`keymgr_core::layer`]). A malformed setting fails at
//! start-up; a provider that cannot be *started* (token missing, wrong PIN, endpoint
//! down) is started again on use, and is reported unhealthy until then.
//! The members' public keys are compared at start-up: a mismatch is a configuration error
//! naming `KEY_BACKENDS`.

use std::sync::Arc;
use std::time::Duration;

use keymgr_core::config::VarSource;
use keymgr_core::layer::{
    CachePolicy, CanaryPolicy, Failover, Layer as _, MetricsPolicy, Restarting, RetryPolicy,
    TimeoutPolicy,
};
use keymgr_core::{Error, HealthReport, KeyBackend, KeyRef, Result};

use crate::config::{BackendKind, KEY_BACKEND, Settings};
use crate::provider::ProviderConfig;

/// The ordered failover members, e.g. `hsm,hsm:2,aws-kms`.
pub const KEY_BACKENDS: &str = "KEY_BACKENDS";
/// Retries per member before failing over (default 0).
pub const KEYMGR_MEMBER_RETRY_MAX: &str = "KEYMGR_MEMBER_RETRY_MAX";
/// Keys compared across members at start-up and signed by the health canary (default:
/// `evm,xrp`, those some member holds).
pub const KEYMGR_HEALTH_KEYS: &str = "KEYMGR_HEALTH_KEYS";
/// Symmetric keys the health canary encrypts and decrypts with (default: none).
pub const KEYMGR_HEALTH_SYMMETRIC_KEYS: &str = "KEYMGR_HEALTH_SYMMETRIC_KEYS";
/// Seconds a member's health report is reused (default 5; 0: never).
pub const KEYMGR_HEALTH_CACHE_SECS: &str = "KEYMGR_HEALTH_CACHE_SECS";
/// Milliseconds one member's health probe may take (default 5000).
pub const KEYMGR_HEALTH_DEADLINE_MS: &str = "KEYMGR_HEALTH_DEADLINE_MS";

const EXPECTED_MEMBERS: &str = "a comma-separated list of env, aws-kms, gcp-kms, azure-kv, hsm, each optionally :N (N >= 2) for another member of the same provider, e.g. hsm,hsm:2,aws-kms";
use crate::config::MEMBER_PREFIXES as PREFIXES;

/// One failover member: a provider and which of its variable sets it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSpec {
    /// The provider.
    pub kind: BackendKind,
    /// 1 for the provider's usual variables, n ≥ 2 for `<PREFIX>_<n>_...`.
    pub index: u32,
}

impl MemberSpec {
    /// The member's name: `hsm`, `hsm:2`, ...
    pub fn name(&self) -> String {
        match self.index {
            1 => self.kind.as_str().to_owned(),
            n => format!("{}:{n}", self.kind.as_str()),
        }
    }

    /// The variable this member reads for the provider variable `name`:
    /// `HSM_PIN` → `HSM_2_PIN` for index 2; unchanged for index 1 and shared settings.
    pub fn variable(&self, name: &str) -> String {
        Self::numbered_variable(name, self.index)
    }

    /// `name` as member number `index` spells it (unchanged for 1 and shared settings).
    pub fn numbered_variable(name: &str, index: u32) -> String {
        if index == 1 {
            return name.to_owned();
        }
        match PREFIXES.iter().find(|p| name.starts_with(**p)) {
            Some(prefix) => format!("{prefix}{index}_{}", &name[prefix.len()..]),
            None => name.to_owned(),
        }
    }

    /// `source` as this member reads it: `HSM_PIN` is `HSM_2_PIN` for member `hsm:2`.
    /// Values pass through unchanged (a non-UTF-8 path stays an `OsString`).
    pub fn source<'a>(&'a self, source: &'a dyn VarSource) -> MemberSource<'a> {
        MemberSource { spec: self, source }
    }
}

/// A [`VarSource`] read under one member's names (see [`MemberSpec::source`]).
pub struct MemberSource<'a> {
    spec: &'a MemberSpec,
    source: &'a dyn VarSource,
}

impl VarSource for MemberSource<'_> {
    fn var_os(&self, name: &str) -> Option<std::ffi::OsString> {
        self.source.var_os(&self.spec.variable(name))
    }
    fn origin(&self, name: &str) -> Option<keymgr_core::config::Origin> {
        self.source.origin(&self.spec.variable(name))
    }
}

impl MemberSpec {
    /// A provider's configuration error names the variable as the provider spells it
    /// (`HSM_PIN`); for this member it is `HSM_2_PIN`.
    pub(crate) fn rename_variable(&self, mut error: Error) -> Error {
        if let Error::Config { variable, .. } = &mut error {
            let names: Vec<String> = variable
                .split(" / ")
                .map(|v| self.variable(v.trim()))
                .collect();
            *variable = names.join(" / ");
        }
        error
    }
}

/// A text setting; a value that is not UTF-8 reads as unset here because
/// [`Settings::from_vars`] (run first by every loader) refuses it by name.
fn text(vars: &keymgr_core::config::Vars<'_>, name: &str) -> Option<String> {
    vars.get(name).ok().flatten()
}

/// Parses `KEY_BACKENDS`; `None` when it is unset or empty.
pub fn parse_members(value: Option<&str>) -> Result<Option<Vec<MemberSpec>>> {
    let Some(value) = value.filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    let mut members: Vec<MemberSpec> = Vec::new();
    for entry in value.split(',').map(str::trim) {
        let bad = |why: String| Error::config(KEY_BACKENDS, EXPECTED_MEMBERS, why);
        if entry.is_empty() {
            return Err(bad(format!("{value:?} has an empty entry")));
        }
        let (kind, index) = match entry.split_once(':') {
            None => (entry, 1),
            Some((kind, n)) => match n.parse::<u32>() {
                Ok(n) if n >= 2 => (kind, n),
                _ => {
                    return Err(bad(format!(
                        "{entry:?}: the member number must be a whole number of at least 2 (the first member of a provider has none)"
                    )));
                }
            },
        };
        let kind: BackendKind = kind
            .parse()
            .map_err(|_| bad(format!("{entry:?}: unknown backend {kind:?}")))?;
        let spec = MemberSpec { kind, index };
        if members.contains(&spec) {
            return Err(bad(format!("member {entry:?} is listed twice")));
        }
        members.push(spec);
    }
    Ok(Some(members))
}

type UnsetKeys = Vec<(String, &'static str)>;

/// Everything `KEY_BACKENDS` configures: members (parsed, not started) and policies.
#[derive(Debug)]
pub struct MemberConfig {
    /// Each member, its provider settings and the logical keys it does not configure
    /// (refused by name on use, see `config::guard`).
    members: Vec<(MemberSpec, ProviderConfig, UnsetKeys)>,
    settings: Settings,
    member_retry: Option<RetryPolicy>,
    canary: CanaryPolicy,
    /// Whether `KEYMGR_HEALTH_KEYS` named the keys (else: those some member holds).
    keys_given: bool,
}

/// The keys checked and canaried when `KEYMGR_HEALTH_KEYS` is unset.
pub(crate) fn default_keys() -> Vec<KeyRef> {
    vec![KeyRef::new("evm"), KeyRef::new("xrp")]
}

/// A comma-separated list of key references; a malformed one (`a@`, `@1`) is a config
/// error naming the variable.
fn key_list(var: &dyn Fn(&str) -> Option<String>, name: &str) -> Result<Option<Vec<KeyRef>>> {
    let Some(v) = var(name).filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    v.split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(|k| {
            KeyRef::parse(k).map_err(|e| {
                Error::config(
                    name,
                    "comma-separated keys, NAME or NAME@VERSION",
                    e.to_string(),
                )
            })
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

fn number(var: &dyn Fn(&str) -> Option<String>, name: &str, expected: &str) -> Result<Option<u64>> {
    match var(name).filter(|v| !v.trim().is_empty()) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| Error::config(name, expected, format!("{v:?} is not a valid number"))),
    }
}

/// The canary settings (`KEYMGR_HEALTH_*`) and whether the keys were named.
pub(crate) fn canary_from_vars(
    var: &dyn Fn(&str) -> Option<String>,
) -> Result<(CanaryPolicy, bool)> {
    let defaults = CanaryPolicy::default();
    let given = key_list(var, KEYMGR_HEALTH_KEYS)?;
    let keys_given = given.is_some();
    Ok((
        CanaryPolicy {
            sign_keys: given.unwrap_or_else(default_keys),
            symmetric_keys: key_list(var, KEYMGR_HEALTH_SYMMETRIC_KEYS)?.unwrap_or_default(),
            cache_for: number(var, KEYMGR_HEALTH_CACHE_SECS, "seconds, e.g. 5")?
                .map_or(defaults.cache_for, Duration::from_secs),
            deadline: number(var, KEYMGR_HEALTH_DEADLINE_MS, "milliseconds, e.g. 5000")?
                .map_or(defaults.deadline, Duration::from_millis),
        },
        keys_given,
    ))
}

impl MemberConfig {
    /// Reads `KEY_BACKENDS` and every member's variables through `var`; `None` when
    /// `KEY_BACKENDS` is unset. Malformed settings are errors naming the variable (with
    /// the member's own name, e.g. `HSM_2_PIN`); nothing is started yet.
    pub fn from_vars(var: &(dyn Fn(&str) -> Option<String> + Sync)) -> Result<Option<Self>> {
        Self::from_source(&var)
    }

    /// Like [`from_vars`](Self::from_vars), from any [`VarSource`]: text settings that
    /// are not UTF-8 are refused by name, paths are read as `OsString`.
    pub fn from_source(source: &dyn VarSource) -> Result<Option<Self>> {
        let vars = keymgr_core::config::Vars::new(source);
        let var = |name: &str| text(&vars, name);
        let Some(specs) = parse_members(vars.get(KEY_BACKENDS)?.as_deref())? else {
            return Ok(None);
        };
        if var(KEY_BACKEND).is_some_and(|v| !v.trim().is_empty()) {
            return Err(Error::config(
                KEY_BACKEND,
                format!(
                    "either {KEY_BACKEND} (one provider) or {KEY_BACKENDS} (failover members), not both"
                ),
                "both are set",
            ));
        }
        Self::with_members(specs, source).map(Some)
    }

    /// `KEY_BACKENDS`' members, or else the one provider `KEY_BACKEND` selects as the
    /// only member (what `keymgr health` probes).
    pub fn from_vars_or_single(var: &(dyn Fn(&str) -> Option<String> + Sync)) -> Result<Self> {
        Self::from_source_or_single(&var)
    }

    /// Like [`from_vars_or_single`](Self::from_vars_or_single), from any [`VarSource`].
    pub fn from_source_or_single(source: &dyn VarSource) -> Result<Self> {
        match Self::from_source(source)? {
            Some(config) => Ok(config),
            None => {
                let kind = Settings::from_vars(source)?.backend;
                Self::with_members(vec![MemberSpec { kind, index: 1 }], source)
            }
        }
    }

    fn with_members(specs: Vec<MemberSpec>, source: &dyn VarSource) -> Result<Self> {
        let settings = Settings::from_vars(source)?;
        let vars = keymgr_core::config::Vars::new(source);
        let var = |name: &str| text(&vars, name);
        let mut members = Vec::with_capacity(specs.len());
        for spec in specs {
            let member_source = spec.source(source);
            let config = ProviderConfig::from_source(spec.kind, &member_source)
                .map_err(|e| spec.rename_variable(e))?;
            let unset = crate::config::unset_keys(spec.kind, &member_source, &|v| spec.variable(v));
            members.push((spec, config, unset));
        }
        let member_retry = match number(
            &var,
            KEYMGR_MEMBER_RETRY_MAX,
            "a whole number of retries, e.g. 0",
        )? {
            None | Some(0) => None,
            Some(n) => Some(RetryPolicy {
                max_retries: u32::try_from(n).unwrap_or(u32::MAX),
                ..settings.retry.clone().unwrap_or_default()
            }),
        };
        let (canary, keys_given) = canary_from_vars(&var)?;
        Ok(Self {
            members,
            settings,
            member_retry,
            canary,
            keys_given,
        })
    }

    /// The shared settings (layers around the failover, actor).
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The members, in order of preference.
    pub fn members(&self) -> impl Iterator<Item = &MemberSpec> {
        self.members.iter().map(|(spec, _, _)| spec)
    }

    /// Builds the failover: each member behind its own metrics, cache, retry budget,
    /// breaker and timeout, started now (one that cannot start is started again on use);
    /// then compares the members' public keys (a mismatch is an [`Error::Config`] naming
    /// `KEY_BACKENDS`). Fails if no member could be started.
    pub async fn build(self) -> Result<Failover> {
        self.build_inner(true).await
    }

    /// Like [`build`](Self::build), but succeeds even when no member can be started
    /// (health reports each member's reason instead).
    pub async fn build_for_health(self) -> Result<Failover> {
        self.build_inner(false).await
    }

    async fn build_inner(self, require_one: bool) -> Result<Failover> {
        let mut members: Vec<(String, Arc<dyn KeyBackend>)> = Vec::new();
        let mut start_errors = Vec::new();
        for (spec, config, unset) in self.members {
            let name = spec.name();
            let restarting = Arc::new(Restarting::new(name.clone(), move || config.start()));
            if let Err(e) = restarting.start_now().await {
                tracing::error!(member = %name, error = %e, "failover member could not be started; it is retried on use");
                start_errors.push(format!("{name}: {e}"));
            }
            // A logical key this member does not configure is refused naming the
            // member's variable, never asked of the provider by its literal name.
            let provider = crate::config::guard(unset, restarting);
            members.push((
                name.clone(),
                self.settings
                    .member_stack(&name, self.member_retry.clone(), provider),
            ));
        }
        if require_one && start_errors.len() == members.len() {
            return Err(Error::unavailable(
                "failover",
                format!(
                    "no failover member could be started: {}",
                    start_errors.join("; ")
                ),
                None,
            ));
        }
        let failover = Failover::named(members)?;
        let held = failover
            .verify_members(&self.canary.sign_keys, KEY_BACKENDS)
            .await?;
        let mut canary = self.canary;
        if !self.keys_given && !held.is_empty() {
            canary.sign_keys = held;
        }
        Ok(failover.with_canary(canary))
    }
}

impl Settings {
    /// One member's stack, outermost first: metrics (labelled with the member name),
    /// public key cache, retry budget, breaker, timeout.
    fn member_stack(
        &self,
        name: &str,
        retry: Option<RetryPolicy>,
        provider: Arc<dyn KeyBackend>,
    ) -> Arc<dyn KeyBackend> {
        let mut stack = provider;
        if let Some(limit) = self.timeout {
            stack = Arc::new(TimeoutPolicy { limit }.layer(stack));
        }
        if let Some(policy) = self.breaker {
            stack = Arc::new(policy.layer(stack));
        }
        if let Some(policy) = retry {
            stack = Arc::new(policy.layer(stack));
        }
        if let Some(ttl) = self.public_key_cache {
            stack = Arc::new(CachePolicy { ttl }.layer(stack));
        }
        Arc::new(MetricsPolicy::named(name).layer(stack))
    }
}

/// Health that never fails to report: every configured member with its status, a
/// member that cannot be started saying why, and a configuration error as an unhealthy
/// report naming the variable.
pub async fn health_from_vars(var: &(dyn Fn(&str) -> Option<String> + Sync)) -> HealthReport {
    health_from_source(&var).await
}

/// Like [`health_from_vars`], from any [`VarSource`].
pub async fn health_from_source(source: &dyn VarSource) -> HealthReport {
    let started = tokio::time::Instant::now();
    let failover = match MemberConfig::from_source_or_single(source) {
        Ok(config) => config.build_for_health().await,
        Err(e) => Err(e),
    };
    match failover {
        Ok(failover) => failover.health().await,
        Err(e) => HealthReport::unhealthy("keymgr", started.elapsed(), e.to_string()),
    }
}

/// Builds a [`KeyManager`](keymgr_core::KeyManager) over the failover `config`
/// describes: rate limit, public key cache and retries around the failover (each member
/// has its own breaker and timeout), with the audit sink `KEYMGR_AUDIT_PATH` selects.
pub async fn manager_from_members(
    config: MemberConfig,
    source: &dyn VarSource,
) -> Result<keymgr_core::KeyManager> {
    let settings = config.settings.clone();
    let failover: Arc<dyn KeyBackend> = Arc::new(config.build().await?);
    let audit = keymgr_audit::sink_from_source(source, Some(failover.clone())).await?;
    let mut builder = keymgr_core::KeyManager::builder(failover)
        .audit(audit)
        .recommended_layers(keymgr_core::RecommendedLayers {
            rate_limit: settings.rate_limit,
            cache: settings.public_key_cache.map(|ttl| CachePolicy { ttl }),
            retry: settings.retry,
            breaker: None,
            timeout: None,
        });
    if let Some(actor) = settings.actor {
        builder = builder.actor(actor);
    }
    Ok(builder.build())
}

#[cfg(test)]
mod tests;
