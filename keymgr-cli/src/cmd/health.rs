//! `keymgr health [--json] [--watch]`: per-member and aggregate health, with an exit
//! code a probe can use: 0 healthy, 10 degraded, 11 down (or not configured).

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::time::Duration;

use keymgr::config::Sources;
use keymgr::layer::Failover;
use keymgr::{HealthReport, HealthStatus, KeyBackend as _, MemberConfig};
use serde_json::json;

/// Exit code when every member is healthy.
pub(crate) const EXIT_HEALTHY: u8 = 0;
/// Exit code when some member is down or degraded but keys are usable.
pub(crate) const EXIT_DEGRADED: u8 = 10;
/// Exit code when no member can sign (or the configuration cannot be used).
pub(crate) const EXIT_DOWN: u8 = 11;

/// `keymgr health`.
#[derive(Debug, clap::Args)]
pub(crate) struct HealthArgs {
    /// Refresh the report until interrupted (on a terminal the screen is redrawn).
    #[arg(long)]
    watch: bool,
    /// Seconds between refreshes with --watch.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    interval: u64,
}

fn aggregate(status: HealthStatus) -> (&'static str, u8) {
    match status {
        HealthStatus::Healthy => ("healthy", EXIT_HEALTHY),
        HealthStatus::Degraded => ("degraded", EXIT_DEGRADED),
        HealthStatus::Unhealthy => ("down", EXIT_DOWN),
    }
}

fn status_word(status: HealthStatus) -> &'static str {
    match status {
        HealthStatus::Healthy => "healthy",
        HealthStatus::Degraded => "degraded",
        HealthStatus::Unhealthy => "unhealthy",
    }
}

fn json_of(report: &HealthReport) -> serde_json::Value {
    let (word, code) = aggregate(report.status);
    let mut v = serde_json::to_value(report).unwrap_or_else(|e| json!({ "error": e.to_string() }));
    v["aggregate"] = json!(word);
    v["exit_code"] = json!(code);
    crate::context::versioned(v)
}

fn text_of(report: &HealthReport) -> String {
    let (word, _) = aggregate(report.status);
    let mut out = format!(
        "{word}: {} ({:.1} ms)\n",
        report.detail.as_deref().unwrap_or(""),
        report.latency.as_secs_f64() * 1000.0
    );
    for member in &report.components {
        let breaker = match (member.breaker, member.next_trial_ms) {
            (Some(state), Some(ms)) => {
                format!(
                    ", breaker {state:?}, next trial in {:.1} s",
                    ms as f64 / 1000.0
                )
            }
            (Some(state), None) => format!(", breaker {state:?}"),
            _ => String::new(),
        };
        out.push_str(&format!(
            "  {:<12} {:<9} {:>8.1} ms{breaker}\n      {}\n",
            member.backend,
            status_word(member.status),
            member.latency.as_secs_f64() * 1000.0,
            member.detail.as_deref().unwrap_or("")
        ));
    }
    out
}

fn print(report: &HealthReport, json: bool, redraw: bool) {
    if json {
        println!("{}", json_of(report));
        return;
    }
    if redraw {
        // Clear the screen and home the cursor (ANSI), so the report refreshes in place.
        print!("\x1b[2J\x1b[H");
    }
    print!("{}", text_of(report));
}

async fn probe(sources: &Sources) -> Result<Failover, HealthReport> {
    let started = tokio::time::Instant::now();
    let failed =
        |e: keymgr::Error| HealthReport::unhealthy("keymgr", started.elapsed(), e.to_string());
    // Problems the rest of the CLI refuses (a config file's unknown or malformed
    // settings) make the report "down" too, never a healthy report on a partial view.
    sources.ensure_valid().map_err(failed)?;
    // Text settings that are not UTF-8 are refused by name; paths are read as paths.
    match MemberConfig::from_source_or_single(&sources.layered) {
        Ok(config) => config.build_for_health().await.map_err(failed),
        Err(e) => Err(failed(e)),
    }
}

/// `keymgr health` when the configuration sources themselves cannot be loaded (an
/// unreadable `--config` or `--env-file`): still a report, "down", exit 11.
pub(crate) fn unloadable(error: &anyhow::Error, json: bool) -> ExitCode {
    let report = HealthReport::unhealthy("keymgr", Duration::ZERO, format!("{error:#}"));
    print(&report, json, false);
    ExitCode::from(EXIT_DOWN)
}

/// Runs `keymgr health`; prints the report (text or JSON) and returns the exit code.
pub(crate) async fn run(args: HealthArgs, json: bool, sources: &Sources) -> ExitCode {
    let failover = match probe(sources).await {
        Ok(f) => f,
        Err(report) => {
            print(&report, json, false);
            return ExitCode::from(EXIT_DOWN);
        }
    };
    let redraw = args.watch && !json && std::io::stdout().is_terminal();
    loop {
        let report = failover.health().await;
        print(&report, json, redraw);
        let code = aggregate(report.status).1;
        if !args.watch {
            return ExitCode::from(code);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(args.interval)) => {}
            _ = tokio::signal::ctrl_c() => return ExitCode::from(code),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_distinguish_the_three_aggregates() {
        assert_eq!(aggregate(HealthStatus::Healthy), ("healthy", 0));
        assert_eq!(aggregate(HealthStatus::Degraded), ("degraded", 10));
        assert_eq!(aggregate(HealthStatus::Unhealthy), ("down", 11));
    }
}
