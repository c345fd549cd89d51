//! `keymgr config check`: the whole configuration, every problem, every key's canary.

use std::process::ExitCode;

use clap::Subcommand;
use keymgr::config::{CheckReport, Sources};
use serde_json::{Value, json};

/// Exit code of `config check` when anything is wrong (the CLI's "configuration" code).
pub(crate) const EXIT_CONFIG: u8 = 3;

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Load the whole configuration (flags, environment, --env-file, config file), list
    /// every problem with its variable, print the effective settings (secrets redacted)
    /// and where each came from, and sign a fixed digest with every configured key. With
    /// KEY_BACKENDS, every failover member is checked (its own variables, e.g. HSM_2_PIN,
    /// its keys' canaries, the same public key on every member). Exits 3 on any problem.
    Check,
}

pub(crate) async fn run(cmd: ConfigCommand, sources: &Sources, json: bool) -> ExitCode {
    let ConfigCommand::Check = cmd;
    let report = keymgr::config::check(sources).await;
    if json {
        println!("{}", crate::context::versioned(to_json(&report, sources)));
    } else {
        print!("{}", to_text(&report, sources));
    }
    if report.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_CONFIG)
    }
}

fn problem_json(e: &keymgr::Error) -> Value {
    match e {
        keymgr::Error::Config {
            variable,
            expected,
            reason,
            ..
        } => json!({ "variable": variable, "expected": expected, "reason": reason }),
        other => json!({ "variable": null, "expected": null, "reason": other.to_string() }),
    }
}

fn to_json(report: &CheckReport, sources: &Sources) -> Value {
    json!({
        "ok": report.is_ok(),
        "config_file": sources.config_file.as_ref().map(|p| p.to_string_lossy()),
        "problems": report.problems.iter().map(problem_json).collect::<Vec<_>>(),
        "warnings": report.warnings,
        "keys": report.keys.iter().map(|k| json!({
            "key": k.key,
            "member": k.member,
            "variable": k.variable,
            "algorithm": k.algorithm.map(|a| a.to_string()),
            "public_key": k.public_key.as_ref().map(|p| hex::encode(p.to_bytes())),
            "canary_signature": k.signature.as_ref().map(|s| hex::encode(s.to_bytes())),
            "ok": k.error.is_none(),
            "error": k.error.as_ref().map(|e| json!({
                "kind": e.kind().as_str(),
                "message": e.to_string(),
            })),
        })).collect::<Vec<_>>(),
        "settings": report.settings.iter().map(|s| json!({
            "name": s.name,
            "value": s.value,
            "origin": s.origin.as_str(),
            "secret": s.secret,
        })).collect::<Vec<_>>(),
    })
}

fn to_text(report: &CheckReport, sources: &Sources) -> String {
    let mut out = String::new();
    if let Some(p) = &sources.config_file {
        out.push_str(&format!("configuration file: {}\n", p.display()));
    }
    if report.problems.is_empty() {
        out.push_str("problems: none\n");
    } else {
        out.push_str(&format!("problems ({}):\n", report.problems.len()));
        for e in &report.problems {
            out.push_str(&format!("  - {e}\n"));
        }
    }
    for w in &report.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    if !report.keys.is_empty() {
        out.push_str("keys (canary: sign a fixed digest, verify):\n");
        for k in &report.keys {
            let member = k
                .member
                .as_ref()
                .map_or_else(String::new, |m| format!(" on {m}"));
            let algorithm = k
                .algorithm
                .map_or_else(|| "?".to_owned(), |a| a.to_string());
            match &k.error {
                None => out.push_str(&format!(
                    "  {}{member} ({}, {algorithm}): ok\n",
                    k.key, k.variable
                )),
                Some(e) => out.push_str(&format!(
                    "  {}{member} ({}): FAILED: {e}\n",
                    k.key, k.variable
                )),
            }
        }
    }
    out.push_str("effective configuration (unset settings use their defaults):\n");
    let width = report
        .settings
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(0);
    for s in report.settings.iter().filter(|s| s.value.is_some()) {
        out.push_str(&format!(
            "  {:width$}  {:8}  {}\n",
            s.name,
            s.origin.as_str(),
            s.value.as_deref().unwrap_or_default(),
        ));
    }
    let unset = report.settings.iter().filter(|s| s.value.is_none()).count();
    out.push_str(&format!("  ({unset} more settings unset: defaults)\n"));
    out.push_str(if report.is_ok() {
        "configuration OK\n"
    } else {
        "configuration has problems\n"
    });
    out
}
