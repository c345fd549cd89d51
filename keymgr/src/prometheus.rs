//! Prometheus exposition of keymgr's metrics (cargo feature `prometheus`), through
//! [`metrics-exporter-prometheus`](https://docs.rs/metrics-exporter-prometheus) 0.18.
//!
//! keymgr records through the [`metrics`](https://docs.rs/metrics) facade (names and
//! labels: [`keymgr_core::metrics`]); nothing is kept until the application installs a
//! recorder. [`install_recorder`] installs one, with Prometheus histogram buckets for
//! keymgr's latencies, and returns the handle whose
//! [`render`](PrometheusHandle::render) is the text a `/metrics` endpoint serves
//! ([text exposition format 0.0.4](https://prometheus.io/docs/instrumenting/exposition_formats/)):
//!
//! ```no_run
//! # fn demo() -> Result<(), keymgr::prometheus::BuildError> {
//! let handle = keymgr::prometheus::install_recorder()?;
//! // In the application's `/metrics` handler (every few seconds at most):
//! handle.run_upkeep();
//! let body: String = handle.render();
//! # let _ = body; Ok(()) }
//! ```
//!
//! The exporter is compiled without its HTTP listener and push gateway. An application
//! that wants the exporter to serve `/metrics` itself enables
//! `metrics-exporter-prometheus = { version = "0.18", features = ["http-listener"] }` and
//! calls `keymgr::prometheus::builder()?.with_http_listener(addr).install()` inside a
//! tokio runtime.

pub use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

use keymgr_core::metrics::{AUDIT_COMMIT_SECONDS, OPERATION_DURATION_SECONDS};

/// Histogram bucket bounds, in seconds, for keymgr's latency histograms: 1 ms to 30 s
/// (a local HSM signs in about a millisecond; a KMS call under retries takes seconds).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A [`PrometheusBuilder`] with [`LATENCY_BUCKETS`] for
/// `keymgr_operation_duration_seconds` and `keymgr_audit_commit_seconds` (rendered as
/// Prometheus histograms, `_bucket`/`_sum`/`_count`; other histograms are summaries).
///
/// # Errors
/// [`BuildError`] if the exporter refuses the buckets (it refuses an empty list only).
pub fn builder() -> Result<PrometheusBuilder, BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(OPERATION_DURATION_SECONDS.to_owned()),
            LATENCY_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full(AUDIT_COMMIT_SECONDS.to_owned()),
            LATENCY_BUCKETS,
        )
}

/// Installs [`builder`]'s recorder as the process-wide `metrics` recorder and returns
/// its handle; call [`PrometheusHandle::run_upkeep`] periodically (e.g. when serving a
/// scrape) so histogram samples are folded in.
///
/// # Errors
/// [`BuildError::FailedToSetGlobalRecorder`] if a recorder is already installed.
pub fn install_recorder() -> Result<PrometheusHandle, BuildError> {
    builder()?.install_recorder()
}
