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

    // --output streams to a file.
    let file = dir.path().join("export.jsonl");
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
