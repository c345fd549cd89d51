//! `keymgr audit verify` and `keymgr audit export` on logs written by keymgr-audit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use keymgr::{KeyManager, KeyRef, SignPayload};
use keymgr_audit::{AuditConfig, AuditLog, ChainKey, Entry};
use keymgr_env::EnvBackend;
use keymgr_testkit::TempDir;

fn keymgr(args: &[&str], hmac_key: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keymgr"));
    cmd.args(args);
    for var in [
        "KEY_BACKEND",
        "KEYMGR_AUDIT_PATH",
        "KEYMGR_AUDIT_HMAC_KEY",
        "KEYMGR_AUDIT_HMAC_KEY_WRAPPED",
        "KEYMGR_AUDIT_HMAC_KEK",
    ] {
        cmd.env_remove(var);
    }
    if let Some(k) = hmac_key {
        cmd.env("KEYMGR_AUDIT_HMAC_KEY", k);
    }
    cmd.output().expect("run keymgr")
}

fn json(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.trim().lines().count(),
        1,
        "one JSON object: {stdout}"
    );
    serde_json::from_str(stdout.trim()).expect("valid JSON")
}

/// Signs `n` times through a KeyManager auditing into `dir` (2 entries per signature).
fn write_log(dir: &Path, key: ChainKey, n: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let log = AuditLog::open_with(&AuditConfig::new(dir), key).unwrap();
        let manager = KeyManager::recommended(Arc::new(EnvBackend::generate()))
            .audit(Arc::new(log))
            .build();
        for i in 0..n {
            manager
                .sign(&KeyRef::new("evm"), &SignPayload::Prehash([i as u8; 32]))
                .await
                .unwrap();
        }
    });
}

fn segment(dir: &Path) -> PathBuf {
    keymgr_audit::segment::list(dir).unwrap()[0].path.clone()
}

#[test]
fn verify_reports_ok_and_the_first_broken_link() {
    let dir = TempDir::new("verify");
    write_log(dir.path(), ChainKey::sha256(), 5);
    let path = dir.path().to_str().unwrap();

    let out = keymgr(&["--json", "audit", "verify", path], None);
    assert!(out.status.success(), "{out:?}");
    let v = json(&out);
    assert_eq!(v["ok"], true);
    assert_eq!(v["report"]["entries"], 10);
    assert_eq!(v["report"]["last_seq"], 10);

    let text = keymgr(&["audit", "verify", path], None);
    assert!(text.status.success());
    assert!(String::from_utf8_lossy(&text.stdout).starts_with("OK: 10 entries (seq 1..=10)"));

    // An anchor beyond the end detects truncation.
    let out = keymgr(&["--json", "audit", "verify", "--anchor", "12", path], None);
    assert!(!out.status.success());
    let msg = json(&out)["error"]["message"].as_str().unwrap().to_owned();
    assert!(msg.contains("seq 11") && msg.contains("truncated"), "{msg}");

    // Edit entry 3's key: verify fails at seq 3, in text and JSON.
    let file = segment(dir.path());
    let text = std::fs::read_to_string(&file).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[2] = lines[2].replacen("\"key\":\"evm\"", "\"key\":\"evx\"", 1);
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let out = keymgr(&["--json", "audit", "verify", path], None);
    assert!(!out.status.success());
    let v = json(&out);
    assert_eq!(v["error"]["kind"], "integrity");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("seq 3") && msg.contains("hash mismatch"),
        "{msg}"
    );
    let out = keymgr(&["audit", "verify", path], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("seq 3"));
}

#[test]
fn verify_keyed_log_needs_the_key() {
    let dir = TempDir::new("keyed");
    let key_hex = "11".repeat(32);
    write_log(dir.path(), ChainKey::hmac(&[0x11; 32]).unwrap(), 2);
    let path = dir.path().to_str().unwrap();
    let ok = keymgr(&["--json", "audit", "verify", path], Some(&key_hex));
    assert!(ok.status.success(), "{ok:?}");
    assert_eq!(json(&ok)["report"]["mode"], "hmac-sha256");
    let without = keymgr(&["--json", "audit", "verify", path], None);
    assert!(!without.status.success());
    let wrong = keymgr(&["--json", "audit", "verify", path], Some(&"22".repeat(32)));
    assert!(!wrong.status.success());
    // The key never appears in output.
    for out in [&ok, &without, &wrong] {
        assert!(!String::from_utf8_lossy(&out.stdout).contains(&key_hex));
        assert!(!String::from_utf8_lossy(&out.stderr).contains(&key_hex));
    }
}

#[test]
fn export_time_range_as_json_lines() {
    let dir = TempDir::new("export");
    write_log(dir.path(), ChainKey::sha256(), 3);
    let path = dir.path().to_str().unwrap();
    let all: Vec<Entry> = std::fs::read_to_string(segment(dir.path()))
        .unwrap()
        .lines()
        .map(|l| Entry::parse(l.as_bytes()).unwrap())
        .collect();
    let from = keymgr_audit::time::format_rfc3339(all[2].ts_ms);
    let to = keymgr_audit::time::format_rfc3339(all[4].ts_ms + 1);
    let expected: Vec<u64> = all
        .iter()
        .filter(|e| e.ts_ms >= all[2].ts_ms && e.ts_ms <= all[4].ts_ms)
        .map(|e| e.seq)
        .collect();

    // Text mode: exactly the stored lines.
    let out = keymgr(
        &["audit", "export", "--from", &from, "--to", &to, path],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let seqs: Vec<u64> = stdout
        .lines()
        .map(|l| Entry::parse(l.as_bytes()).unwrap().seq)
        .collect();
    assert_eq!(seqs, expected);

    // --json: one object with the entries and counts.
    let out = keymgr(
        &[
            "--json", "audit", "export", "--from", &from, "--to", &to, path,
        ],
        None,
    );
    let v = json(&out);
    assert_eq!(v["exported"], expected.len());
    assert_eq!(v["scanned"], 6);
    assert_eq!(v["entries"].as_array().unwrap().len(), expected.len());

    // --output streams to a file (outside the log).
    let elsewhere = TempDir::new("export-out");
    let file = elsewhere.path().join("export.jsonl");
    let out = keymgr(
        &["audit", "export", "-o", file.to_str().unwrap(), path],
        None,
    );
    assert!(out.status.success());
    assert_eq!(std::fs::read_to_string(&file).unwrap().lines().count(), 6);

    // Malformed time and reversed range are clear errors.
    let out = keymgr(
        &["--json", "audit", "export", "--from", "yesterday", path],
        None,
    );
    assert!(
        json(&out)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("RFC 3339")
    );
    let out = keymgr(
        &[
            "--json", "audit", "export", "--from", &to, "--to", &from, path,
        ],
        None,
    );
    assert!(
        json(&out)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("after")
    );
}

/// Runs keymgr with exactly the audit-related variables in `env` (others removed).
fn keymgr_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keymgr"));
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("KEYMGR_") || k == "KEY_BACKEND" || k == "EVM_PRIVATE_KEY" {
            cmd.env_remove(k);
        }
    }
    cmd.env("RUST_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run keymgr")
}

const EVM_KEY: &str = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";

/// The reproduction: 15 signatures with KEYMGR_AUDIT_HMAC_KEY, then one with it
/// unset. The forgotten key must refuse to sign, move nothing, and say why.
#[test]
fn signing_with_a_forgotten_hmac_key_is_refused() {
    let dir = TempDir::new("cli-forgotten-key");
    let log = dir.path().join("log");
    let log_s = log.to_str().unwrap();
    let hmac = "ab".repeat(32);
    let base = [
        ("EVM_PRIVATE_KEY", EVM_KEY),
        ("KEYMGR_AUDIT_PATH", log_s),
        ("KEYMGR_AUDIT_SEGMENT_MAX_BYTES", "4096"),
    ];
    let keyed: Vec<_> = base
        .iter()
        .copied()
        .chain([("KEYMGR_AUDIT_HMAC_KEY", hmac.as_str())])
        .collect();
    for i in 1..=15u8 {
        let digest = format!("{i:064x}");
        let out = keymgr_env(&["sign", "--key", "evm", "--digest", &digest], &keyed);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let before: Vec<_> = keymgr_audit::segment::list(&log)
        .unwrap()
        .into_iter()
        .map(|s| (s.path.clone(), std::fs::read(&s.path).unwrap()))
        .collect();
    assert!(before.len() > 1);

    let out = keymgr_env(
        &[
            "--json",
            "sign",
            "--key",
            "evm",
            "--digest",
            &format!("{:064x}", 99),
        ],
        &base,
    );
    assert!(!out.status.success(), "signed without the HMAC key");
    let v = json(&out);
    assert_eq!(v["error"]["kind"], "config", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("KEYMGR_AUDIT_HMAC_KEY")
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&hmac));
    let after: Vec<_> = keymgr_audit::segment::list(&log)
        .unwrap()
        .into_iter()
        .map(|s| (s.path.clone(), std::fs::read(&s.path).unwrap()))
        .collect();
    assert_eq!(before, after, "nothing moved or cut");
    let ok = keymgr(&["--json", "audit", "verify", log_s], Some(&hmac));
    assert_eq!(json(&ok)["report"]["entries"], 30);
}

/// Start-up without a file log or with an unkeyed chain: a WARN the CLI shows by
/// default; refused under KEYMGR_PROFILE=production.
#[test]
fn no_file_log_or_unkeyed_chain_warns_and_production_refuses() {
    let dir = TempDir::new("cli-profile");
    let log = dir.path().join("log");
    let digest = "11".repeat(32);
    let sign = [
        "--json",
        "sign",
        "--key",
        "evm",
        "--digest",
        digest.as_str(),
    ];
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keymgr"));
    cmd.args(sign);
    for (k, _) in std::env::vars() {
        if k.starts_with("KEYMGR_") || k == "RUST_LOG" || k == "KEY_BACKEND" {
            cmd.env_remove(k);
        }
    }
    cmd.env("EVM_PRIVATE_KEY", EVM_KEY);
    let out = cmd.output().unwrap();
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("WARN"),
        "shown by default"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("KEYMGR_AUDIT_PATH is not set"));

    let unkeyed = [
        ("EVM_PRIVATE_KEY", EVM_KEY),
        ("KEYMGR_AUDIT_PATH", log.to_str().unwrap()),
    ];
    let out = keymgr_env(&sign, &unkeyed);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unkeyed"));

    for (env, var) in [
        (vec![("EVM_PRIVATE_KEY", EVM_KEY)], "KEYMGR_AUDIT_PATH"),
        (unkeyed.to_vec(), "KEYMGR_AUDIT_HMAC_KEY"),
    ] {
        let mut env = env;
        env.push(("KEYMGR_PROFILE", "production"));
        let out = keymgr_env(&sign, &env);
        assert!(!out.status.success());
        let v = json(&out);
        assert_eq!(v["error"]["kind"], "config");
        assert!(v["error"]["message"].as_str().unwrap().contains(var), "{v}");
    }
}

#[test]
fn export_refuses_an_output_inside_the_log() {
    let dir = TempDir::new("cli-export-inside");
    write_log(dir.path(), ChainKey::sha256(), 3);
    let path = dir.path().to_str().unwrap();
    let seg = segment(dir.path());
    let before = std::fs::read(&seg).unwrap();
    for out_path in [seg.clone(), dir.path().join("export.jsonl")] {
        let out = keymgr(
            &[
                "--json",
                "audit",
                "export",
                "-o",
                out_path.to_str().unwrap(),
                path,
            ],
            None,
        );
        assert!(!out.status.success());
        assert_eq!(json(&out)["error"]["kind"], "invalid_input");
    }
    // Also when the segment is named directly.
    let out = keymgr(
        &[
            "--json",
            "audit",
            "export",
            "-o",
            seg.to_str().unwrap(),
            seg.to_str().unwrap(),
        ],
        None,
    );
    assert!(!out.status.success());
    assert_eq!(std::fs::read(&seg).unwrap(), before, "the log is untouched");
    assert!(!dir.path().join("export.jsonl").exists());
    let v = keymgr(&["--json", "audit", "verify", path], None);
    assert_eq!(json(&v)["report"]["entries"], 6);

    // An existing output elsewhere is replaced by a new file (0600), not truncated in place.
    let elsewhere = TempDir::new("cli-export-elsewhere");
    let file = elsewhere.path().join("out.jsonl");
    std::fs::write(&file, "old").unwrap();
    let keep = elsewhere.path().join("hardlink");
    std::fs::hard_link(&file, &keep).unwrap();
    let out = keymgr(
        &["audit", "export", "-o", file.to_str().unwrap(), path],
        None,
    );
    assert!(out.status.success());
    assert_eq!(std::fs::read_to_string(&file).unwrap().lines().count(), 6);
    assert_eq!(std::fs::read_to_string(&keep).unwrap(), "old");
    use std::os::unix::fs::MetadataExt as _;
    assert_eq!(std::fs::metadata(&file).unwrap().mode() & 0o777, 0o600);
}

#[test]
fn export_into_a_closed_pipe_ends_quietly() {
    let dir = TempDir::new("cli-export-pipe");
    write_log(dir.path(), ChainKey::sha256(), 200);
    let mut child = Command::new(env!("CARGO_BIN_EXE_keymgr"))
        .args(["audit", "export", dir.path().to_str().unwrap()])
        .env_remove("KEYMGR_AUDIT_HMAC_KEY")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // `| head -n 1`: read one line, then close the pipe.
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    assert!(Entry::parse(first.trim_end().as_bytes()).is_ok());
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_missing_path_is_not_found() {
    let dir = TempDir::new("cli-missing");
    let missing = dir.path().join("no-such-log");
    for cmd in ["verify", "export"] {
        let out = keymgr(&["--json", "audit", cmd, missing.to_str().unwrap()], None);
        assert!(!out.status.success());
        assert_eq!(json(&out)["error"]["kind"], "not_found", "{cmd}");
    }
}

#[test]
fn verify_warns_and_strict_fails_on_warnings() {
    let dir = TempDir::new("cli-strict");
    write_log(dir.path(), ChainKey::sha256(), 1);
    let path = dir.path().to_str().unwrap();
    let out = keymgr(&["--json", "audit", "verify", path], None);
    let v = json(&out);
    let kinds: Vec<&str> = v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["warning"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["unkeyed_chain", "tail_not_anchored"]);
    let out = keymgr(&["--json", "audit", "verify", "--strict", path], None);
    assert!(!out.status.success());
    // An empty log.
    let empty = TempDir::new("cli-strict-empty");
    std::fs::create_dir_all(empty.path()).unwrap();
    let out = keymgr(
        &["--json", "audit", "verify", empty.path().to_str().unwrap()],
        None,
    );
    assert!(
        json(&out)["warnings"][0]["warning"] == "empty_log",
        "{out:?}"
    );
}

#[test]
fn verify_checks_several_chains_and_published_checkpoints() {
    let root = TempDir::new("cli-checkpoints");
    let cps = root.path().join("cp/checkpoints.jsonl");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (a, b) = (root.path().join("node-a"), root.path().join("node-b"));
    rt.block_on(async {
        let backend: Arc<dyn keymgr::KeyBackend> = Arc::new(EnvBackend::generate());
        for (dir, node) in [(&a, "node-a"), (&b, "node-b")] {
            let mut c = AuditConfig::new(dir);
            c.node_id = node.into();
            c.checkpoint_key = Some(KeyRef::new("evm"));
            c.checkpoint_file = Some(cps.clone());
            let log = AuditLog::open(c, Some(backend.clone())).await.unwrap();
            let manager = KeyManager::builder(backend.clone())
                .audit(Arc::new(log.clone()))
                .build();
            for i in 0..3u8 {
                manager
                    .sign(&KeyRef::new("evm"), &SignPayload::Prehash([i; 32]))
                    .await
                    .unwrap();
            }
            log.checkpoint().await.unwrap();
        }
    });
    let (a_s, b_s, cp_s) = (
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        cps.to_str().unwrap(),
    );
    let out = keymgr(
        &["--json", "audit", "verify", "--checkpoints", cp_s, a_s, b_s],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    let v = json(&out);
    assert_eq!(v["logs"].as_array().unwrap().len(), 2);
    assert_eq!(v["logs"][0]["report"]["external_points"], 1);

    // Only one of the two logs given: node-b's checkpoints match nothing.
    let out = keymgr(
        &["--json", "audit", "verify", "--checkpoints", cp_s, a_s],
        None,
    );
    assert!(!out.status.success());
    // Node b's last entry (its checkpoint) and the one it vouches for cut off.
    let seg = segment(&b);
    let text = std::fs::read_to_string(&seg).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(&seg, lines[..lines.len() - 2].join("\n") + "\n").unwrap();
    let out = keymgr(&["--json", "audit", "verify", a_s, b_s], None);
    assert!(out.status.success(), "the chain alone cannot see it");
    let out = keymgr(
        &["--json", "audit", "verify", "--checkpoints", cp_s, a_s, b_s],
        None,
    );
    assert!(!out.status.success());
    let msg = json(&out)["error"]["message"].as_str().unwrap().to_owned();
    assert!(msg.contains("node-b") && msg.contains("truncated"), "{msg}");
}

/// With a permissive umask (000), the log still creates its directory 0700 and its
/// files (segments, lock, checkpoint file) 0600.
#[test]
fn files_are_private_whatever_the_umask() {
    use std::os::unix::fs::MetadataExt as _;
    let root = TempDir::new("cli-umask");
    let log = root.path().join("a/log");
    let script = format!(
        "umask 000; exec {} sign --key evm --digest {}",
        env!("CARGO_BIN_EXE_keymgr"),
        "22".repeat(32)
    );
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &script]);
    for (k, _) in std::env::vars() {
        if k.starts_with("KEYMGR_") || k == "KEY_BACKEND" {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .env("EVM_PRIVATE_KEY", EVM_KEY)
        .env("KEYMGR_AUDIT_PATH", &log)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o777;
    assert_eq!(mode(&log), 0o700);
    assert_eq!(mode(&root.path().join("a")), 0o700);
    assert_eq!(mode(&log.join(keymgr_audit::LOCK_FILE)), 0o600);
    assert_eq!(mode(&segment(&log)), 0o600);
}
