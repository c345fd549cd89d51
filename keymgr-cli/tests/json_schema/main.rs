//! The `--json` contract (README, "Scripting"), checked for every command: one JSON object
//! on stdout (one per line for `rotate run`) that the command's JSON Schema under
//! `keymgr-cli/schema/` accepts (`"schema": 1`, the documented fields, their types and hex
//! styles: 0x for EVM, upper-case for XRPL), snake_case keys, and for failures an `error`
//! object (`schema/error.json`) whose `exit_code` is the process's exit status.
//! Every schema file is used by at least one case here, and `main.rs`'s unit test checks
//! that every command has a schema file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cases;
mod harness;

use std::process::Command;

use serde_json::Value;

use cases::{CHANNEL, Files};
use harness::{Case, Schemas, TempDir, case, keymgr, rotate_run, run_case};

#[test]
fn every_command_follows_its_json_schema() {
    let tmp = TempDir::new("all");
    let audit = tmp.path("audit");
    let plain = tmp.path("plain.txt");
    std::fs::write(&plain, b"settle batch 42").unwrap();
    let (enc, dec) = (tmp.path("msg.enc"), tmp.path("msg.out"));
    let exported = tmp.path("export.jsonl");
    let state = tmp.path("rotation");
    let good = tmp.path("good.toml");
    std::fs::write(&good, "KEYMGR_RETRY_MAX = 2\n").unwrap();
    let bad = tmp.path("bad.toml");
    std::fs::write(&bad, "KEYMGR_RETRY_MAX = 99\nKEYMGR_RETRY_MAXX = 1\n").unwrap();
    let (audit, plain, enc, dec) = (audit.as_str(), plain.as_str(), enc.as_str(), dec.as_str());
    let mut schemas = Schemas::load();
    let files = Files {
        audit,
        plain,
        enc,
        dec,
        exported: &exported,
        state: &state,
        good: &good,
        bad: &bad,
    };
    for c in &cases::single_runs(&files) {
        run_case(&mut schemas, c);
    }

    // A claim that verifies, with the signature the CLI made.
    let claim = run_case(
        &mut schemas,
        &case(
            "xrp sign-claim",
            &["xrp", "sign-claim", "--channel", CHANNEL, "--amount", "5"],
            0,
            "xrp-sign-claim",
        ),
    );
    let signature = claim["signature"].as_str().unwrap();
    let public_key = claim["public_key"].as_str().unwrap();
    run_case(
        &mut schemas,
        &case(
            "xrp verify-claim",
            &[
                "xrp",
                "verify-claim",
                "--channel",
                CHANNEL,
                "--amount",
                "5",
                "--signature",
                signature,
                "--public-key",
                public_key,
            ],
            0,
            "xrp-verify-claim",
        ),
    );

    // Approval workflow: a request, approved by another operator; another, rejected.
    let approval = |who: &str| {
        vec![
            ("KEYMGR_ROTATION_ENABLED", "true".to_owned()),
            ("KEYMGR_ROTATION_APPROVAL", "true".to_owned()),
            ("KEYMGR_ROTATION_STATE_PATH", state.clone()),
            ("KEYMGR_ACTOR", who.to_owned()),
        ]
    };
    for (key, decide, schema) in [
        (
            "xrp",
            &["rotate", "approve", "--key", "xrp"][..],
            "rotate-approve",
        ),
        (
            "evm",
            &["rotate", "reject", "--key", "evm", "--reason", "not now"][..],
            "rotate-reject",
        ),
    ] {
        let request = run_case(
            &mut schemas,
            &Case {
                env: approval("alice"),
                ..case(
                    "rotate --now (request)",
                    &["rotate", "--key", key, "--now"],
                    0,
                    "rotate",
                )
            },
        );
        assert_eq!(request["events"][0]["event"], "requested", "{request}");
        run_case(
            &mut schemas,
            &Case {
                env: approval("bob"),
                ..case("rotate approve / reject", decide, 0, schema)
            },
        );
    }
    rotate_run(&mut schemas, &state);

    // Every schema file is some command's contract and was checked here.
    let unused: Vec<&String> = schemas
        .validators
        .keys()
        .filter(|s| !schemas.used.contains(*s))
        .filter(|s| cfg!(feature = "envelope") || !["encrypt", "decrypt"].contains(&s.as_str()))
        .collect();
    assert!(unused.is_empty(), "schemas no case checked: {unused:?}");
}

#[test]
fn configuration_errors_exit_3_and_name_the_variable() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keymgr"));
    let out = cmd
        .args(["public-key", "--key", "evm", "--json"])
        .env("KEY_BACKEND", "vault")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["schema"], 1);
    assert_eq!(v["error"]["kind"], "config");
    assert_eq!(v["error"]["exit_code"], 3);
}

#[test]
fn completions_and_man_page_build() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = keymgr(&["completions".into(), shell.into()], None);
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(script.contains("keymgr"), "{shell}");
        // Every subcommand is completed.
        for sub in ["demo", "sign", "rotate", "completions", "man"] {
            assert!(script.contains(sub), "{shell} completion lacks {sub}");
        }
    }
    let out = keymgr(&["man".into()], None);
    assert!(out.status.success());
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(
        page.starts_with(".ie") || page.contains(".TH keymgr"),
        "{page}"
    );
    assert!(
        page.contains("KEY_BACKEND"),
        "the man page says where configuration comes from"
    );
    // `--help` says it too.
    let out = keymgr(&["--help".into()], None);
    assert!(String::from_utf8_lossy(&out.stdout).contains(".env.example"));
}

#[test]
fn demo_keeps_its_audit_log_and_names_next_steps() {
    let tmp = TempDir::new("demo");
    let dir = tmp.path("log");
    let out = keymgr(&["demo".into(), "--audit-dir".into(), dir.clone()], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains(&dir), "names the audit directory: {text}");
    assert!(text.contains("next steps") && text.contains("KEY_BACKEND=hsm"));
    assert!(text.contains("KEY_BACKEND=aws-kms") && text.contains("cargo xtask provision"));
    assert!(
        !text.contains('\u{1b}'),
        "no ANSI escapes when not a terminal"
    );
    // The log is still there and verifies with the CLI.
    let out = keymgr(
        &[
            "audit".into(),
            "verify".into(),
            dir.clone(),
            "--json".into(),
        ],
        None,
    );
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["report"]["entries"].as_u64().unwrap() > 0, "{v}");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "audit directory mode");
}
