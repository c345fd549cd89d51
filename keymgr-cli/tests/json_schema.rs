//! The `--json` contract (README, "Scripting"), checked for every command: one JSON object
//! on stdout with `"schema": 1`, snake_case keys, the documented fields with their types
//! and hex styles (0x for EVM, upper-case for XRPL), and for failures an `error` object
//! whose `exit_code` is the process's exit status from the documented table.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const KEY: &str = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
const ED_SEED: &str = "sEdSKaCy2JT7JaM7v95H9SxkhP9wS2r";
const CHANNEL: &str = "5DB01B7FFED6B67E6B0414DED11E051D2EE2B7619CE0EAA6286D67A3A4D5BDB3";
const DELEGATE: &str = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
const KEK: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";
const TX: &str = r#"{"to": "0x5FbDB2315678afecb367f032d93F642f64180aa3", "value": "0x1",
    "nonce": "0x0", "gas": "0x5208", "maxFeePerGas": "0x3b9aca00",
    "maxPriorityFeePerGas": "0x1", "chainId": "0x2105"}"#;
const TYPED: &str = r#"{
  "types": {"EIP712Domain": [{"name": "name", "type": "string"}, {"name": "chainId", "type": "uint256"}],
            "Claim": [{"name": "amount", "type": "uint256"}]},
  "primaryType": "Claim",
  "domain": {"name": "keymgr", "chainId": 1},
  "message": {"amount": "7"}
}"#;

/// What a field must be.
#[derive(Clone, Copy, Debug)]
enum Ty {
    Str,
    Num,
    Bool,
    Obj,
    Arr,
    /// `0x` + lower- or mixed-case (EIP-55) hex.
    Hex0x,
    /// Upper-case hex without prefix (XRPL).
    HexUpper,
    /// Lower-case hex without prefix (generic commands).
    HexLower,
}

struct Case {
    name: &'static str,
    args: Vec<String>,
    stdin: Option<&'static str>,
    exit: i32,
    fields: &'static [(&'static str, Ty)],
}

fn case(
    name: &'static str,
    args: &[&str],
    exit: i32,
    fields: &'static [(&'static str, Ty)],
) -> Case {
    Case {
        name,
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        stdin: None,
        exit,
        fields,
    }
}

/// Objects whose keys are data or an ecosystem's own JSON form, not our field names.
const FOREIGN_KEYS: &[&str] = &["encryption_context", "authorization", "details"];

fn keymgr(args: &[String], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keymgr"));
    cmd.args(args)
        .env_remove("KEY_BACKEND")
        .env_remove("KEYMGR_AUDIT_PATH")
        .env_remove("KEYMGR_ROTATION_STATE_PATH")
        .env_remove("KEYMGR_ROTATION_ENABLED")
        .env("EVM_PRIVATE_KEY", KEY)
        .env("XRP_SEED", ED_SEED)
        .env("DEV_KEK", KEK)
        .env("KEYMGR_ACTOR", "schema-test")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run keymgr");
    let mut pipe = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        pipe.write_all(text.as_bytes()).unwrap();
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn get<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(v, |v, part| match part.parse::<usize>() {
            Ok(i) => v.get(i),
            Err(_) => v.get(part),
        })
}

fn check_type(name: &str, path: &str, v: &Value, ty: Ty) {
    let s = v.as_str();
    let hex = |s: &str, upper: bool| {
        !s.is_empty()
            && s.chars().all(|c| {
                c.is_ascii_digit()
                    || if upper {
                        ('A'..='F').contains(&c)
                    } else {
                        ('a'..='f').contains(&c)
                    }
            })
    };
    let ok = match ty {
        Ty::Str => v.is_string(),
        Ty::Num => v.is_number(),
        Ty::Bool => v.is_boolean(),
        Ty::Obj => v.is_object(),
        Ty::Arr => v.is_array(),
        Ty::Hex0x => s
            .and_then(|s| s.strip_prefix("0x"))
            .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit())),
        Ty::HexUpper => s.is_some_and(|s| hex(s, true)),
        Ty::HexLower => s.is_some_and(|s| hex(s, false)),
    };
    assert!(ok, "{name}: {path} should be {ty:?}, is {v}");
}

/// Every key is snake_case (lower-case ASCII, digits, `_`), recursively.
fn check_keys(name: &str, v: &Value, at: &str) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                assert!(
                    !k.is_empty()
                        && k.chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                    "{name}: key {at}.{k} is not snake_case"
                );
                if !FOREIGN_KEYS.contains(&k.as_str()) {
                    check_keys(name, child, &format!("{at}.{k}"));
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| check_keys(name, i, at)),
        _ => {}
    }
}

fn run_case(c: &Case) -> Value {
    let mut args = c.args.clone();
    args.push("--json".into());
    let out = keymgr(&args, c.stdin);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(c.exit),
        "{}: exit status; stdout {stdout} stderr {}",
        c.name,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim().lines().count(), 1, "{}: {stdout}", c.name);
    let v: Value = serde_json::from_str(stdout.trim()).expect("valid JSON");
    assert_eq!(v["schema"], 1, "{}: {v}", c.name);
    check_keys(c.name, &v, "");
    if c.exit == 0 {
        assert!(v.get("error").is_none(), "{}: {v}", c.name);
    } else {
        check_type(c.name, "error.kind", &v["error"]["kind"], Ty::Str);
        check_type(c.name, "error.message", &v["error"]["message"], Ty::Str);
        assert_eq!(v["error"]["exit_code"], c.exit, "{}: {v}", c.name);
    }
    for (path, ty) in c.fields {
        let field = get(&v, path).unwrap_or_else(|| panic!("{}: no {path} in {v}", c.name));
        check_type(c.name, path, field, *ty);
    }
    v
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("keymgr-schema-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
    fn path(&self, file: &str) -> String {
        self.0.join(file).display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn every_command_follows_the_json_schema() {
    use Ty::*;
    let tmp = TempDir::new("all");
    let audit = tmp.path("audit");
    let plain = tmp.path("plain.txt");
    std::fs::write(&plain, b"settle batch 42").unwrap();
    let (enc, dec) = (tmp.path("msg.enc"), tmp.path("msg.out"));
    let (audit, plain, enc, dec) = (audit.as_str(), plain.as_str(), enc.as_str(), dec.as_str());
    let digest = "11".repeat(32);
    let bad_signature = "AB".repeat(64);

    let mut cases = vec![
        case(
            "demo",
            &["demo", "--audit-dir", audit],
            0,
            &[
                ("evm.address", Hex0x),
                ("evm.signature", Hex0x),
                ("evm.verified", Bool),
                ("xrp.public_key", HexUpper),
                ("xrp.signature", HexUpper),
                ("xrp.channel", HexUpper),
                ("xrp.drops", Num),
                ("audit.path", Str),
                ("audit.entries", Num),
            ],
        ),
        case(
            "public-key",
            &["public-key", "--key", "evm"],
            0,
            &[
                ("algorithm", Str),
                ("public_key", HexLower),
                ("backend", Str),
            ],
        ),
        case(
            "sign",
            &["sign", "--key", "evm", "--digest", &digest],
            0,
            &[
                ("signature", HexLower),
                ("recovery_id", Num),
                ("der", HexLower),
            ],
        ),
        case(
            "health",
            &["health"],
            0,
            &[("backend", Str), ("status", Str)],
        ),
        case("evm address", &["evm", "address"], 0, &[("address", Hex0x)]),
        case(
            "evm sign-message",
            &["evm", "sign-message", "hello"],
            0,
            &[
                ("address", Hex0x),
                ("signature", Hex0x),
                ("message_bytes", Num),
            ],
        ),
        case(
            "evm sign-authorization",
            &[
                "evm",
                "sign-authorization",
                "--chain-id",
                "1",
                "--address",
                DELEGATE,
                "--nonce",
                "7",
            ],
            0,
            &[
                ("authority", Hex0x),
                ("authorization.r", Hex0x),
                ("authorization.s", Hex0x),
            ],
        ),
        case(
            "xrp public-key",
            &["xrp", "public-key"],
            0,
            &[
                ("public_key", HexUpper),
                ("address", Str),
                ("algorithm", Str),
            ],
        ),
        case(
            "xrp address",
            &["xrp", "address"],
            0,
            &[("address", Str), ("public_key", HexUpper)],
        ),
        case(
            "xrp sign-claim",
            &[
                "xrp",
                "sign-claim",
                "--channel",
                CHANNEL,
                "--amount",
                "1000",
            ],
            0,
            &[
                ("signature", HexUpper),
                ("channel", HexUpper),
                ("amount", Str),
            ],
        ),
        case(
            "keys status",
            &["keys", "status"],
            0,
            &[("keys", Arr), ("keys.0.key", Str), ("keys.0.status", Obj)],
        ),
        case(
            "rotate --dry-run",
            &["rotate", "--key", "evm", "--dry-run"],
            0,
            &[("would_rotate", Bool), ("dry_run", Bool)],
        ),
        case(
            "rotate approve (nothing waits)",
            &["rotate", "approve", "--key", "evm"],
            3,
            &[],
        ),
        case("rotate run (disabled)", &["rotate", "run"], 3, &[]),
        case(
            "audit verify",
            &["audit", "verify", audit],
            0,
            &[("ok", Bool), ("logs", Arr), ("report.entries", Num)],
        ),
        case(
            "audit export",
            &["audit", "export", audit],
            0,
            &[("exported", Num), ("scanned", Num), ("entries", Arr)],
        ),
        case(
            "completions",
            &["completions", "bash"],
            0,
            &[("shell", Str), ("script", Str)],
        ),
        case("man", &["man"], 0, &[("section", Num), ("roff", Str)]),
        // Errors, one per row of the exit code table a test can reach without a cloud.
        case("usage", &["sign", "--key", "evm"], 2, &[]),
        case("not found", &["public-key", "--key", "nope"], 4, &[]),
        case(
            "invalid input",
            &["sign", "--key", "evm", "--digest", "abcd"],
            9,
            &[("error.kind", Str)],
        ),
        case(
            "xrp verify-claim (does not verify)",
            &[
                "xrp",
                "verify-claim",
                "--channel",
                CHANNEL,
                "--amount",
                "1",
                "--signature",
                &bad_signature,
                "--public-key",
                "ED01FA53FA5A7E77798F882ECE20B1ABC00BB358A9E55A202D0D0676BD0CE37A63",
            ],
            9,
            &[],
        ),
        // An anchor past the end of the demo's log: truncation.
        case(
            "integrity",
            &["audit", "verify", "--anchor", "999999", audit],
            7,
            &[],
        ),
    ];
    cases.push(Case {
        stdin: Some(TX),
        ..case(
            "evm sign-tx",
            &["evm", "sign-tx", "--file", "-"],
            0,
            &[
                ("from", Hex0x),
                ("hash", Hex0x),
                ("raw", Hex0x),
                ("chain_id", Num),
            ],
        )
    });
    cases.push(Case {
        stdin: Some(TYPED),
        ..case(
            "evm sign-typed-data",
            &["evm", "sign-typed-data", "--file", "-"],
            0,
            &[("signing_hash", Hex0x), ("signature", Hex0x)],
        )
    });
    if cfg!(feature = "envelope") {
        cases.push(case(
            "encrypt",
            &[
                "encrypt",
                "--in",
                plain,
                "--out",
                enc,
                "--kek",
                "env:DEV_KEK",
                "--context",
                "tenant=acme",
            ],
            0,
            &[
                ("message_id", HexLower),
                ("plaintext_bytes", Num),
                ("encryption_context", Obj),
            ],
        ));
        cases.push(case(
            "decrypt",
            &[
                "decrypt",
                "--in",
                enc,
                "--out",
                dec,
                "--kek",
                "env:DEV_KEK",
                "--context",
                "tenant=acme",
            ],
            0,
            &[("plaintext_bytes", Num), ("frames", Num)],
        ));
    }
    for c in &cases {
        run_case(c);
    }
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
