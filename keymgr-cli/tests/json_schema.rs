//! The `--json` contract (README, "Scripting"), checked for every command: one JSON object
//! on stdout (one per line for `rotate run`) that the command's JSON Schema under
//! `keymgr-cli/schema/` accepts (`"schema": 1`, the documented fields, their types and hex
//! styles: 0x for EVM, upper-case for XRPL), snake_case keys, and for failures an `error`
//! object (`schema/error.json`) whose `exit_code` is the process's exit status.
//! Every schema file is used by at least one case here, and `main.rs`'s unit test checks
//! that every command has a schema file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
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

struct Case {
    name: &'static str,
    args: Vec<String>,
    stdin: Option<&'static str>,
    env: Vec<(&'static str, String)>,
    exit: i32,
    /// The schema file (stem) the output must match; `error` for failures.
    schema: &'static str,
}

fn case(name: &'static str, args: &[&str], exit: i32, schema: &'static str) -> Case {
    Case {
        name,
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        stdin: None,
        env: Vec::new(),
        exit,
        schema,
    }
}

/// Objects whose keys are data or an ecosystem's own JSON form, not our field names.
const FOREIGN_KEYS: &[&str] = &["encryption_context", "authorization", "details"];

fn command(args: &[String], env: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keymgr"));
    cmd.args(args)
        .env_remove("KEY_BACKEND")
        .env_remove("KEY_BACKENDS")
        .env_remove("KEYMGR_CONFIG")
        .env_remove("KEYMGR_AUDIT_PATH")
        .env_remove("KEYMGR_ROTATION_STATE_PATH")
        .env_remove("KEYMGR_ROTATION_ENABLED")
        .env_remove("KEYMGR_ROTATION_APPROVAL")
        .env("EVM_PRIVATE_KEY", KEY)
        .env("XRP_SEED", ED_SEED)
        .env("DEV_KEK", KEK)
        .env("KEYMGR_ACTOR", "schema-test")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn keymgr_with(args: &[String], stdin: Option<&str>, env: &[(&str, String)]) -> Output {
    let mut child = command(args, env).spawn().expect("run keymgr");
    let mut pipe = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        pipe.write_all(text.as_bytes()).unwrap();
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn keymgr(args: &[String], stdin: Option<&str>) -> Output {
    keymgr_with(args, stdin, &[])
}

fn schema_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schema")
}

/// The schema files, by stem, each checked against its meta-schema.
struct Schemas {
    validators: std::collections::BTreeMap<String, jsonschema::Validator>,
    used: BTreeSet<String>,
}

impl Schemas {
    fn load() -> Self {
        let mut validators = std::collections::BTreeMap::new();
        for entry in std::fs::read_dir(schema_dir()).unwrap() {
            let path = entry.unwrap().path();
            assert_eq!(path.extension().unwrap(), "json", "{path:?}");
            let schema: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            jsonschema::meta::validate(&schema)
                .unwrap_or_else(|e| panic!("{path:?} is not a valid JSON Schema: {e}"));
            let validator = jsonschema::validator_for(&schema).unwrap();
            let stem = path.file_stem().unwrap().to_str().unwrap().to_owned();
            validators.insert(stem, validator);
        }
        Self {
            validators,
            used: BTreeSet::new(),
        }
    }

    fn check(&mut self, case: &str, schema: &str, v: &Value) {
        let validator = self
            .validators
            .get(schema)
            .unwrap_or_else(|| panic!("{case}: no schema/{schema}.json"));
        let errors: Vec<String> = validator
            .iter_errors(v)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{case}: output does not match schema/{schema}.json: {errors:#?}\n{v}"
        );
        self.used.insert(schema.to_owned());
    }
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

fn check_object(schemas: &mut Schemas, c: &Case, v: &Value) {
    assert_eq!(v["schema"], 1, "{}: {v}", c.name);
    check_keys(c.name, v, "");
    schemas.check(c.name, c.schema, v);
    if c.schema == "error" {
        assert_eq!(v["error"]["exit_code"], c.exit, "{}: {v}", c.name);
    } else {
        assert!(v.get("error").is_none(), "{}: {v}", c.name);
    }
}

fn run_case(schemas: &mut Schemas, c: &Case) -> Value {
    let mut args = c.args.clone();
    args.push("--json".into());
    let out = keymgr_with(&args, c.stdin, &c.env);
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
    check_object(schemas, c, &v);
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

/// `rotate run --json` until SIGTERM: every line is one object of `rotate-run.json`.
fn rotate_run(schemas: &mut Schemas, state: &str) {
    let c = case("rotate run", &["rotate", "run"], 0, "rotate-run");
    let env = [
        ("KEYMGR_ROTATION_ENABLED", "true".to_owned()),
        ("KEYMGR_ROTATION_STATE_PATH", state.to_owned()),
    ];
    let args: Vec<String> = vec!["rotate".into(), "run".into(), "--json".into()];
    let child = command(&args, &env).spawn().unwrap();
    // The scheduler prints its start on stderr; give it a moment, then stop it as a
    // service manager would.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.last().unwrap()["stopped"], true, "{stdout}");
    for v in &lines {
        check_object(schemas, &c, v);
    }
}

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
    let digest = "11".repeat(32);
    let bad_signature = "AB".repeat(64);
    let mut schemas = Schemas::load();

    let mut cases = vec![
        case("demo", &["demo", "--audit-dir", audit], 0, "demo"),
        case(
            "public-key evm",
            &["public-key", "--key", "evm"],
            0,
            "public-key",
        ),
        case(
            "public-key xrp",
            &["public-key", "--key", "xrp"],
            0,
            "public-key",
        ),
        case(
            "sign secp256k1",
            &["sign", "--key", "evm", "--digest", &digest],
            0,
            "sign",
        ),
        case(
            "sign ed25519",
            &["sign", "--key", "xrp", "--message", "68656c6c6f"],
            0,
            "sign",
        ),
        case("health", &["health"], 0, "health"),
        case("evm address", &["evm", "address"], 0, "evm-address"),
        case(
            "evm sign-message",
            &["evm", "sign-message", "hello"],
            0,
            "evm-sign-message",
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
            "evm-sign-authorization",
        ),
        case(
            "xrp public-key",
            &["xrp", "public-key"],
            0,
            "xrp-public-key",
        ),
        case("xrp address", &["xrp", "address"], 0, "xrp-address"),
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
            "xrp-sign-claim",
        ),
        case("keys status", &["keys", "status"], 0, "keys-status"),
        case(
            "rotate --dry-run",
            &["rotate", "--key", "evm", "--dry-run"],
            0,
            "rotate",
        ),
        case(
            "rotate approve (nothing waits)",
            &["rotate", "approve", "--key", "evm"],
            3,
            "error",
        ),
        case("rotate run (disabled)", &["rotate", "run"], 3, "error"),
        case(
            "audit verify",
            &["audit", "verify", audit],
            0,
            "audit-verify",
        ),
        case(
            "audit export",
            &["audit", "export", audit],
            0,
            "audit-export",
        ),
        case(
            "audit export -o",
            &["audit", "export", audit, "-o", &exported],
            0,
            "audit-export",
        ),
        case(
            "config check",
            &["config", "check", "--config", &good],
            0,
            "config-check",
        ),
        case(
            "config check (problems)",
            &["config", "check", "--config", &bad],
            3,
            "config-check",
        ),
        case("completions", &["completions", "bash"], 0, "completions"),
        case("man", &["man"], 0, "man"),
        // Errors, one per row of the exit code table a test can reach without a cloud.
        case("usage", &["sign", "--key", "evm"], 2, "error"),
        case("not found", &["public-key", "--key", "nope"], 4, "error"),
        case(
            "invalid input",
            &["sign", "--key", "evm", "--digest", "abcd"],
            9,
            "error",
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
            "error",
        ),
        // An anchor past the end of the demo's log: truncation.
        case(
            "integrity",
            &["audit", "verify", "--anchor", "999999", audit],
            7,
            "error",
        ),
    ];
    cases.push(Case {
        env: vec![("KEYMGR_ROTATION_STATE_PATH", state.clone())],
        ..case(
            "rotate (nothing due)",
            &["rotate", "--key", "evm"],
            0,
            "rotate",
        )
    });
    cases.push(Case {
        stdin: Some("settle batch 42"),
        ..case(
            "evm sign-message --file -",
            &["evm", "sign-message", "--file", "-"],
            0,
            "evm-sign-message",
        )
    });
    cases.push(Case {
        env: vec![("KEY_BACKEND", "vault".to_owned())],
        ..case(
            "health (down: a configuration error)",
            &["health"],
            11,
            "health",
        )
    });
    cases.push(Case {
        stdin: Some(TX),
        ..case(
            "evm sign-tx",
            &["evm", "sign-tx", "--file", "-"],
            0,
            "evm-sign-tx",
        )
    });
    cases.push(Case {
        stdin: Some(TYPED),
        ..case(
            "evm sign-typed-data",
            &["evm", "sign-typed-data", "--file", "-"],
            0,
            "evm-sign-typed-data",
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
            "encrypt",
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
            "decrypt",
        ));
    }
    for c in &cases {
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
