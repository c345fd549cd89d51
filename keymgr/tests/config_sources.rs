//! Configuration sources: every variable in `.env.example` refuses a non-UTF-8 value at
//! start-up naming it, numeric settings are bounded, the TOML file stacks below the
//! environment, and secrets inline in it are reported, never echoed.
#![allow(clippy::expect_used)]

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use keymgr::config::{ConfigFile, MapSource, Origin, VARIABLES, Variable, Vars, sources, variable};
use keymgr::{Error, ErrorKind, manager_from_vars};

const KEY: &str = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";

/// Every variable `.env.example` documents (also commented-out ones such as
/// `# SSL_CERT_FILE=`).
fn env_example_names() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.env.example");
    let text = std::fs::read_to_string(path).expect("reading .env.example");
    let mut names: Vec<String> = text
        .lines()
        .map(|l| l.trim_start_matches('#').trim())
        .filter_map(|l| l.split_once('=').map(|(n, _)| n))
        .filter(|n| {
            !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        })
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names
}

fn not_utf8() -> OsString {
    OsString::from_vec(b"value-\xff-not-utf8".to_vec())
}

fn config_variable(e: &Error) -> &str {
    match e {
        Error::Config { variable, .. } => variable,
        other => panic!("not a configuration error: {other}"),
    }
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("keymgr-config-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating the test directory");
    dir
}

#[test]
fn env_example_and_the_registry_list_the_same_variables() {
    let names = env_example_names();
    assert!(names.len() > 50, "{names:?}");
    for n in &names {
        assert!(variable(n).is_some(), "{n} is in .env.example but unknown");
    }
    for v in VARIABLES {
        assert!(
            names.iter().any(|n| n == v.name()),
            "{} is read but not documented in .env.example",
            v.name()
        );
    }
}

#[tokio::test]
async fn a_non_utf8_value_of_any_variable_fails_start_up_naming_it() {
    for name in env_example_names() {
        let source = MapSource::new()
            .with("EVM_PRIVATE_KEY", KEY)
            .with(name.as_str(), not_utf8());
        match variable(&name).unwrap() {
            // Paths may be any bytes on Linux: read as OsString, never as "unset"
            // (start-up with one is `a_non_utf8_audit_path_is_used_as_given`).
            Variable::Path(_) => {
                let path = Vars::new(&source).path(&name).unwrap().unwrap();
                assert_eq!(path.as_os_str().as_bytes(), not_utf8().as_bytes(), "{name}");
                keymgr::config::check_text(&source).unwrap();
            }
            _ => {
                let result = manager_from_vars(&source).await;
                let e = result.err().unwrap_or_else(|| panic!("{name}: accepted"));
                assert_eq!(e.kind(), ErrorKind::Config, "{name}: {e}");
                assert_eq!(config_variable(&e), name, "{e}");
                assert!(e.to_string().contains("UTF-8"), "{e}");
            }
        }
    }
}

#[tokio::test]
async fn a_non_utf8_audit_path_is_used_as_given() {
    let dir = temp("audit-bytes");
    let mut bytes = dir.as_os_str().as_bytes().to_vec();
    bytes.extend_from_slice(b"/log-\xff");
    let path = PathBuf::from(OsString::from_vec(bytes));
    let source = MapSource::new()
        .with("EVM_PRIVATE_KEY", KEY)
        .with("KEYMGR_AUDIT_PATH", path.clone().into_os_string());
    manager_from_vars(&source).await.unwrap();
    assert!(path.is_dir(), "the audit log was not kept in {path:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn absurd_numbers_are_configuration_errors() {
    let huge = ["1000000000000", "18446744073709551615", "-1", "1e3"];
    for name in [
        "KEYMGR_RETRY_MAX",
        "KEYMGR_RETRY_BASE_MS",
        "KEYMGR_TIMEOUT_MS",
        "KEYMGR_PUBLIC_KEY_CACHE_SECS",
        "KEYMGR_RATE_LIMIT_PER_MINUTE",
        "KEYMGR_BREAKER_FAILURES",
        "KEYMGR_BREAKER_OPEN_SECS",
        "KEYMGR_AUDIT_RETENTION_DAYS",
        "KEYMGR_AUDIT_SEGMENT_MAX_BYTES",
        "KEYMGR_AUDIT_CHECKPOINT_SECS",
        "KEYMGR_AUDIT_LOCK_WAIT_SECS",
        "KEYMGR_AUDIT_COMMIT_DELAY_US",
    ] {
        for value in huge {
            let dir = temp("numbers");
            let source = MapSource::new()
                .with("EVM_PRIVATE_KEY", KEY)
                .with("KEYMGR_AUDIT_PATH", dir.as_os_str())
                .with(name, value);
            let e = manager_from_vars(&source)
                .await
                .err()
                .unwrap_or_else(|| panic!("{name}={value} accepted"));
            assert_eq!(config_variable(&e), name, "{name}={value}: {e}");
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

#[cfg(feature = "hsm")]
#[tokio::test]
async fn absurd_hsm_pool_sizes_are_configuration_errors_not_aborts() {
    for value in ["1000000000000", "18446744073709551615", "0"] {
        let source = MapSource::new()
            .with("KEY_BACKEND", "hsm")
            .with("HSM_PKCS11_LIBRARY_PATH", "/nonexistent/libsofthsm2.so")
            .with("HSM_TOKEN_LABEL", "keymgr")
            .with("HSM_PIN", "1234")
            .with("HSM_EVM_KEY_LABEL", "evm")
            .with("HSM_POOL_SIZE", value);
        let e = manager_from_vars(&source).await.err().unwrap();
        assert_eq!(config_variable(&e), "HSM_POOL_SIZE", "{value}: {e}");
    }
}

#[test]
fn the_file_stacks_below_flags_and_the_env_file() {
    let dir = temp("stack");
    let file = dir.join("keymgr.toml");
    std::fs::write(
        &file,
        "KEYMGR_NODE_ID = \"from-file\"\nKEYMGR_ACTOR = \"file-actor\"\n\
         KEYMGR_TIMEOUT_MS = 2500\nKEYMGR_AUDIT_SEGMENT_DAILY = false\n\
         KEYMGR_BREAKER_FAILURES = \"7\"\n",
    )
    .unwrap();
    let flags = MapSource::new().with("KEYMGR_NODE_ID", "from-flag");
    let env_file = MapSource::new()
        .with("KEYMGR_NODE_ID", "from-env-file")
        .with("KEYMGR_ACTOR", "env-file-actor");
    let s = sources(flags, Some(env_file), Some(file.clone())).unwrap();
    s.ensure_valid().unwrap();
    assert_eq!(s.config_file.as_deref(), Some(file.as_path()));
    let vars = Vars::new(&s.layered);
    let got = |n| (vars.get(n).unwrap().unwrap(), vars.origin(n));
    assert_eq!(got("KEYMGR_NODE_ID"), ("from-flag".into(), Origin::Flag));
    assert_eq!(
        got("KEYMGR_ACTOR"),
        ("env-file-actor".into(), Origin::EnvFile)
    );
    assert_eq!(got("KEYMGR_TIMEOUT_MS"), ("2500".into(), Origin::File));
    assert_eq!(
        got("KEYMGR_AUDIT_SEGMENT_DAILY"),
        ("false".into(), Origin::File)
    );
    let settings = keymgr::Settings::from_vars(&s.layered).unwrap();
    assert_eq!(
        settings.timeout,
        Some(std::time::Duration::from_millis(2500))
    );
    assert_eq!(settings.breaker.unwrap().failure_threshold, 7);
    assert_eq!(vars.origin("KEYMGR_PROFILE"), Origin::Default);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn file_problems_name_the_setting_and_secrets_are_flagged_not_echoed() {
    let secret = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
    let text = format!(
        "EVM_PRIVATE_KEY = \"{secret}\"\nHSM_PIN = \"98765\"\nHSM_POOL_SIZ = 4\n\
         KEYMGR_TIMEOUT_MS = 1.5\nKEYMGR_PROFILE = [\"production\"]\nAWS_SECRET_ACCESS_KEY = \"x\"\n"
    );
    let f = ConfigFile::parse(Path::new("keymgr.toml"), &text).unwrap();
    assert_eq!(f.inline_secrets, ["EVM_PRIVATE_KEY", "HSM_PIN"]);
    let names: Vec<&str> = f.problems.iter().map(config_variable).collect();
    assert_eq!(
        names,
        [
            "AWS_SECRET_ACCESS_KEY",
            "HSM_POOL_SIZ",
            "KEYMGR_PROFILE",
            "KEYMGR_TIMEOUT_MS"
        ]
    );
    let typo = f
        .problems
        .iter()
        .find(|e| config_variable(e) == "HSM_POOL_SIZ")
        .unwrap();
    assert!(
        typo.to_string().contains("did you mean HSM_POOL_SIZE"),
        "{typo}"
    );
    let all = format!("{f:?} {:?}", f.problems);
    assert!(!all.contains(secret) && !all.contains("98765"), "{all}");

    // A syntax error names the file and line, not the line's text.
    let bad = format!("KEYMGR_ACTOR = \"ok\"\nHSM_PIN = {secret}zz\n");
    let e = ConfigFile::parse(Path::new("keymgr.toml"), &bad).unwrap_err();
    assert_eq!(config_variable(&e), "KEYMGR_CONFIG");
    let msg = format!("{e} {e:?}");
    assert!(msg.contains("line 2"), "{msg}");
    assert!(!msg.contains(secret), "{msg}");
}

#[tokio::test]
async fn config_check_collects_every_problem() {
    let dir = temp("check");
    let file = dir.join("keymgr.toml");
    std::fs::write(&file, "KEYMGR_RETRY_MAX = 99\nKEYMGR_NODE = \"x\"\n").unwrap();
    let flags = MapSource::new()
        .with("EVM_PRIVATE_KEY", KEY)
        .with("KEYMGR_TIMEOUT_MS", "ten")
        .with("KEYMGR_ROTATION_ENABLED", "maybe")
        .with("XRP_KEY_TYPE", not_utf8());
    let s = sources(flags, None, Some(file)).unwrap();
    let report = keymgr::config::check(&s).await;
    let mut names: Vec<&str> = report.problems.iter().map(config_variable).collect();
    names.sort();
    let mut expected = vec![
        "KEYMGR_NODE",
        "KEYMGR_RETRY_MAX",
        "KEYMGR_TIMEOUT_MS",
        "XRP_KEY_TYPE",
    ];
    if cfg!(feature = "rotation") {
        expected.push("KEYMGR_ROTATION_ENABLED");
        expected.sort();
    }
    assert_eq!(names, expected);
    assert!(!report.is_ok());
    // The backend still started: the configured key's canary ran and passed.
    assert_eq!(report.keys.len(), 1);
    assert!(report.keys[0].error.is_none(), "{:?}", report.keys[0]);
    let evm = report
        .settings
        .iter()
        .find(|s| s.name == "EVM_PRIVATE_KEY")
        .unwrap();
    assert_eq!(evm.value.as_deref(), Some("[REDACTED]"));
    assert!(!format!("{report:?}").contains(&KEY[2..]));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_unconfigured_logical_key_names_its_variable() {
    let seed = "sEdSKaCy2JT7JaM7v95H9SxkhP9wS2r";
    let m = manager_from_vars(&MapSource::new().with("XRP_SEED", seed))
        .await
        .unwrap();
    let payload = keymgr::SignPayload::Prehash([7; 32]);
    let e = m
        .sign(&keymgr::KeyRef::new("evm"), &payload)
        .await
        .unwrap_err();
    assert_eq!(config_variable(&e), "EVM_PRIVATE_KEY", "{e}");
}

/// With `KEY_BACKEND=aws-kms` and only the XRP key configured, `evm` is refused naming
/// `AWS_KMS_EVM_KEY_ID` before any request (the endpoint is unreachable on purpose).
#[cfg(feature = "aws")]
#[tokio::test]
async fn an_unset_aws_key_id_is_not_sent_as_the_literal_name() {
    let source = MapSource::new()
        .with("KEY_BACKEND", "aws-kms")
        .with("AWS_REGION", "us-east-1")
        .with("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .with("AWS_KMS_XRP_KEY_ID", "alias/xrp")
        .with("KEYMGR_RETRY_MAX", "0");
    let m = manager_from_vars(&source).await.unwrap();
    let key = keymgr::KeyRef::new("evm");
    let e = m.public_key(&key).await.unwrap_err();
    assert_eq!(config_variable(&e), "AWS_KMS_EVM_KEY_ID", "{e}");
    let payload = keymgr::SignPayload::Prehash([7; 32]);
    let e = m.sign(&key, &payload).await.unwrap_err();
    assert_eq!(config_variable(&e), "AWS_KMS_EVM_KEY_ID", "{e}");
}
