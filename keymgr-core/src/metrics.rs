//! Metrics through the [`metrics`] crate facade (0.24): nothing is recorded until the
//! application installs a recorder. For Prometheus, the `keymgr` facade's `prometheus`
//! feature (`keymgr::prometheus::install_recorder`) installs `metrics-exporter-prometheus`
//! 0.18 (built for `metrics` 0.24) with histogram buckets for the latencies; or the
//! application installs it itself, e.g.
//! `PrometheusBuilder::new().with_http_listener(([0, 0, 0, 0], 9000)).install()?`.
//!
//! | name | type | labels |
//! |---|---|---|
//! | `keymgr_operations_total` | counter | `provider`, `operation`, `key`, `outcome` (`success` or an error kind) |
//! | `keymgr_operation_duration_seconds` | histogram | `provider`, `operation`, `key`, `outcome` |
//! | `keymgr_errors_total` | counter | `provider`, `operation`, `key`, `kind` |
//! | `keymgr_retries_total` | counter | `provider`, `operation`, `kind` |
//! | `keymgr_breaker_transitions_total` | counter | `provider`, `state` (`open`, `half_open`, `closed`) |
//! | `keymgr_failovers_total` | counter | `member` (the member skipped), `operation` |
//! | `keymgr_cache_lookups_total` | counter | `cache`, `result` (`hit`, `miss`) |
//! | `keymgr_audit_commit_seconds` | histogram | `event` |
//!
//! Labels carry names only — provider and member names, logical key names (`evm`), the
//! operation, the error kind — never key material, payloads, digests or error messages.
//! Operations are recorded by the [`Metrics`](crate::layer::Metrics) layer; retries,
//! breaker transitions, failovers and cache lookups by their layers; audit commits by
//! [`KeyManager`](crate::KeyManager).

use std::time::Duration;

use crate::ErrorKind;
use crate::layer::BreakerState;

/// Operations by provider, operation, key and outcome.
pub const OPERATIONS_TOTAL: &str = "keymgr_operations_total";
/// Operation latency in seconds.
pub const OPERATION_DURATION_SECONDS: &str = "keymgr_operation_duration_seconds";
/// Failed operations by error kind.
pub const ERRORS_TOTAL: &str = "keymgr_errors_total";
/// Retries by the retry layer.
pub const RETRIES_TOTAL: &str = "keymgr_retries_total";
/// Circuit breaker state changes.
pub const BREAKER_TRANSITIONS_TOTAL: &str = "keymgr_breaker_transitions_total";
/// Failover members skipped after an availability failure.
pub const FAILOVERS_TOTAL: &str = "keymgr_failovers_total";
/// Cache lookups by result.
pub const CACHE_LOOKUPS_TOTAL: &str = "keymgr_cache_lookups_total";
/// Time for the audit sink to commit (make durable) an entry, in seconds.
pub const AUDIT_COMMIT_SECONDS: &str = "keymgr_audit_commit_seconds";

pub(crate) fn operation(
    provider: &str,
    operation: &'static str,
    key: &str,
    result: Result<(), ErrorKind>,
    took: Duration,
) {
    let outcome = match result {
        Ok(()) => "success",
        Err(kind) => kind.as_str(),
    };
    let labels = [
        ("provider", provider.to_owned()),
        ("operation", operation.to_owned()),
        ("key", key.to_owned()),
        ("outcome", outcome.to_owned()),
    ];
    metrics::counter!(OPERATIONS_TOTAL, &labels).increment(1);
    metrics::histogram!(OPERATION_DURATION_SECONDS, &labels).record(took.as_secs_f64());
    if let Err(kind) = result {
        metrics::counter!(
            ERRORS_TOTAL,
            "provider" => provider.to_owned(),
            "operation" => operation,
            "key" => key.to_owned(),
            "kind" => kind.as_str()
        )
        .increment(1);
    }
}

pub(crate) fn retry(provider: &str, operation: &'static str, kind: ErrorKind) {
    metrics::counter!(
        RETRIES_TOTAL,
        "provider" => provider.to_owned(),
        "operation" => operation,
        "kind" => kind.as_str()
    )
    .increment(1);
}

pub(crate) fn breaker_transition(provider: &str, to: BreakerState) {
    let state = match to {
        BreakerState::Open => "open",
        BreakerState::HalfOpen => "half_open",
        BreakerState::Closed => "closed",
    };
    metrics::counter!(BREAKER_TRANSITIONS_TOTAL, "provider" => provider.to_owned(), "state" => state)
        .increment(1);
}

pub(crate) fn failover(member: &str, operation: &'static str) {
    metrics::counter!(FAILOVERS_TOTAL, "member" => member.to_owned(), "operation" => operation)
        .increment(1);
}

pub(crate) fn cache_lookup(cache: &'static str, hit: bool) {
    let result = if hit { "hit" } else { "miss" };
    metrics::counter!(CACHE_LOOKUPS_TOTAL, "cache" => cache, "result" => result).increment(1);
}

pub(crate) fn audit_commit(event: &'static str, took: Duration) {
    metrics::histogram!(AUDIT_COMMIT_SECONDS, "event" => event).record(took.as_secs_f64());
}
