//! Failover members (`KEY_BACKENDS`) in the configuration: their numbered variables are
//! known settings (file, `config check`), `config check` checks every member, the
//! unset-key guard names the member's own variable, and a non-UTF-8 path on the
//! failover path is read as a path.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
use std::path::{Path, PathBuf};

use keymgr::config::{ConfigFile, MapSource, sources};
use keymgr::{Error, ErrorKind, KeyRef, SignPayload, manager_from_vars};

const KEY_A: &str = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
const KEY_B: &str = "0x8da4ef21b864d2cc526dbdb2a120bd2874c36c9d0a1fb7f8c63d7f7a8b41de8f";
const SEED: &str = "sEdSKaCy2JT7JaM7v95H9SxkhP9wS2r";

fn config_variable(e: &Error) -> &str {
    match e {
        Error::Config { variable, .. } => variable,
        other => panic!("not a configuration error: {other}"),
    }
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("keymgr-members-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn not_utf8() -> OsString {
    OsString::from_vec(b"value-\xff-not-utf8".to_vec())
}

#[test]
fn numbered_member_variables_are_settings_of_the_file_and_misspellings_are_named() {
    let text = format!(
        "KEY_BACKENDS = \"env,env:2\"\nEVM_2_PRIVATE_KEY = \"{KEY_A}\"\nHSM_3_TOKEN_LABEL = \"t\"\nHSM_2_TOKEN_LABLE = \"t\"\nHSM_1_PIN = \"1234\"\n"
    );
    let file = ConfigFile::parse(Path::new("keymgr.toml"), &text).unwrap();
    let mut unknown: Vec<&str> = file.problems.iter().map(config_variable).collect();
    unknown.sort();
    assert_eq!(unknown, ["HSM_1_PIN", "HSM_2_TOKEN_LABLE"]);
    let misspelt = file
        .problems
        .iter()
        .find(|e| config_variable(e) == "HSM_2_TOKEN_LABLE")
        .unwrap();
    assert!(
        misspelt
            .to_string()
            .contains("did you mean HSM_2_TOKEN_LABEL?"),
        "{misspelt}"
    );
    // A member's secret inline is warned about like the provider's own.
    assert_eq!(file.inline_secrets, ["EVM_2_PRIVATE_KEY"]);
    let all = format!("{file:?} {}", unknown.join(" "));
    assert!(!all.contains(&KEY_A[2..]), "{all}");
}

#[tokio::test]
async fn config_check_checks_every_member() {
    let flags = MapSource::new()
        .with("KEY_BACKENDS", "env,env:2")
        .with("EVM_PRIVATE_KEY", KEY_A)
        .with("EVM_2_PRIVATE_KEY", KEY_A)
        .with("XRP_2_SEED", SEED);
    let report = keymgr::config::check(&sources(flags, None, None).unwrap()).await;
    assert!(report.is_ok(), "{:?}", report.problems);
    let checked: Vec<(Option<&str>, &str, &str)> = report
        .keys
        .iter()
        .map(|k| (k.member.as_deref(), k.key.as_str(), k.variable.as_str()))
        .collect();
    assert_eq!(
        checked,
        [
            (Some("env"), "evm", "EVM_PRIVATE_KEY"),
            (Some("env:2"), "evm", "EVM_2_PRIVATE_KEY"),
            (Some("env:2"), "xrp", "XRP_2_SEED"),
        ]
    );
    // Each canary signature verifies with k256 / ed25519-dalek, not with keymgr.
    for k in &report.keys {
        let pk = k.public_key.as_ref().unwrap().to_bytes();
        let sig = k.signature.as_ref().unwrap().to_bytes();
        if k.key == "xrp" {
            let vk = ed25519_dalek::VerifyingKey::from_bytes(&pk.try_into().unwrap()).unwrap();
            let sig = ed25519_dalek::Signature::from_bytes(&sig);
            vk.verify_strict(keymgr::config::CANARY_MESSAGE, &sig)
                .unwrap();
        } else {
            use k256::ecdsa::signature::DigestVerifier as _;
            use k256::sha2::Digest as _;
            let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(&pk).unwrap();
            let sig = k256::ecdsa::Signature::from_slice(&sig).unwrap();
            let digest = k256::sha2::Sha256::new_with_prefix(keymgr::config::CANARY_MESSAGE);
            vk.verify_digest(digest, &sig).unwrap();
        }
    }
    let pin = report
        .settings
        .iter()
        .find(|s| s.name == "EVM_2_PRIVATE_KEY")
        .unwrap();
    assert_eq!(pin.value.as_deref(), Some("[REDACTED]"));
    assert!(!format!("{report:?}").contains(&KEY_A[2..]));
}

#[tokio::test]
async fn config_check_names_each_members_problem() {
    // A malformed member variable, a member with a different key, and KEY_BACKEND set
    // beside KEY_BACKENDS: each is a problem naming its own variable.
    let flags = MapSource::new()
        .with("KEY_BACKENDS", "env,env:2,env:3")
        .with("KEY_BACKEND", "env")
        .with("EVM_PRIVATE_KEY", KEY_A)
        .with("EVM_2_PRIVATE_KEY", KEY_B)
        .with("EVM_3_PRIVATE_KEY", "0x12")
        .with("XRP_3_KEY_TYPE", not_utf8());
    let report = keymgr::config::check(&sources(flags, None, None).unwrap()).await;
    let mut names: Vec<&str> = report.problems.iter().map(config_variable).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "EVM_3_PRIVATE_KEY",
            "KEY_BACKEND",
            "KEY_BACKENDS",
            "XRP_3_KEY_TYPE"
        ],
        "{:?}",
        report.problems
    );
    assert!(!report.is_ok());
    let text = format!("{report:?}");
    assert!(!text.contains(&KEY_A[2..]) && !text.contains(&KEY_B[2..]));

    let bad = MapSource::new().with("KEY_BACKENDS", "env,vault");
    let report = keymgr::config::check(&sources(bad, None, None).unwrap()).await;
    let names: Vec<&str> = report.problems.iter().map(config_variable).collect();
    assert_eq!(names, ["KEY_BACKENDS"]);
}

#[tokio::test]
async fn an_unconfigured_key_of_a_member_names_the_members_variable() {
    let source = MapSource::new()
        .with("KEY_BACKENDS", "env:2")
        .with("EVM_2_PRIVATE_KEY", KEY_A);
    let m = manager_from_vars(&source).await.unwrap();
    let xrp = KeyRef::new("xrp");
    let e = m.public_key(&xrp).await.unwrap_err();
    assert_eq!(config_variable(&e), "XRP_2_SEED", "{e}");
    let e = m
        .sign(&xrp, &SignPayload::Message(b"claim".to_vec()))
        .await
        .unwrap_err();
    assert_eq!(config_variable(&e), "XRP_2_SEED", "{e}");
    // The configured key still signs.
    m.public_key(&KeyRef::new("evm")).await.unwrap();
}

/// With `KEY_BACKENDS=aws-kms` and only the XRP key configured, `evm` is refused naming
/// `AWS_KMS_EVM_KEY_ID` before any request (the endpoint is unreachable on purpose).
#[cfg(feature = "aws")]
#[tokio::test]
async fn an_unset_aws_key_id_of_a_member_is_not_sent_as_the_literal_name() {
    let source = MapSource::new()
        .with("KEY_BACKENDS", "aws-kms")
        .with("AWS_REGION", "us-east-1")
        .with("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .with("AWS_KMS_XRP_KEY_ID", "alias/xrp")
        .with("KEYMGR_RETRY_MAX", "0");
    let m = manager_from_vars(&source).await.unwrap();
    let e = m.public_key(&KeyRef::new("evm")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert_eq!(config_variable(&e), "AWS_KMS_EVM_KEY_ID", "{e}");
}

#[tokio::test]
async fn a_non_utf8_path_on_the_failover_path_is_read_as_a_path() {
    let dir = temp("audit-bytes");
    let mut bytes = dir.as_os_str().as_bytes().to_vec();
    bytes.extend_from_slice(b"/log-\xff");
    let path = PathBuf::from(OsString::from_vec(bytes));
    let source = MapSource::new()
        .with("KEY_BACKENDS", "env")
        .with("EVM_PRIVATE_KEY", KEY_A)
        .with("KEYMGR_AUDIT_PATH", path.clone().into_os_string());
    manager_from_vars(&source).await.unwrap();
    assert!(path.is_dir(), "the audit log was not kept in {path:?}");
    let _ = std::fs::remove_dir_all(&dir);

    // A text setting of a member that is not UTF-8 is still refused, by its own name.
    let source = MapSource::new()
        .with("KEY_BACKENDS", "env,env:2")
        .with("EVM_PRIVATE_KEY", KEY_A)
        .with("EVM_2_PRIVATE_KEY", not_utf8());
    let e = manager_from_vars(&source).await.err().unwrap();
    assert_eq!(config_variable(&e), "EVM_2_PRIVATE_KEY", "{e}");
}
