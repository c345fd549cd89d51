//! `KeyManager` from environment variables: every missing or malformed setting is an
//! error naming the variable and the expected form.

use std::collections::HashMap;

use keymgr::{BackendKind, ErrorKind, KeyRef, Settings, SignPayload, manager_from_vars};

fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + Sync {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| map.get(name).cloned()
}

const KEY: &str = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";

#[tokio::test]
async fn default_backend_is_env() {
    let m = manager_from_vars(&vars(&[("EVM_PRIVATE_KEY", KEY)]))
        .await
        .unwrap();
    assert_eq!(m.backend().name(), "env");
    m.sign(&KeyRef::new("evm"), &SignPayload::Prehash([1; 32]))
        .await
        .unwrap();
}

#[tokio::test]
async fn unknown_backend_is_named_with_the_supported_list() {
    let e = manager_from_vars(&vars(&[("KEY_BACKEND", "vault")]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    let msg = e.to_string();
    assert!(
        msg.contains("KEY_BACKEND") && msg.contains("vault"),
        "{msg}"
    );
    assert!(
        msg.contains("env, aws-kms, gcp-kms, azure-kv, hsm"),
        "{msg}"
    );
}

/// Built without a provider's feature (`cargo xtask test` also runs this crate's tests
/// with default features, env only), selecting it names the feature to enable.
#[cfg(not(all(feature = "hsm", feature = "aws", feature = "gcp", feature = "azure")))]
#[tokio::test]
async fn uncompiled_provider_names_its_feature() {
    for (backend, feature, compiled) in [
        ("hsm", "hsm", cfg!(feature = "hsm")),
        ("aws-kms", "aws", cfg!(feature = "aws")),
        ("gcp-kms", "gcp", cfg!(feature = "gcp")),
        ("azure-kv", "azure", cfg!(feature = "azure")),
    ] {
        if compiled {
            continue;
        }
        let e = manager_from_vars(&vars(&[("KEY_BACKEND", backend)]))
            .await
            .unwrap_err();
        let msg = e.to_string();
        assert_eq!(e.kind(), ErrorKind::Config, "{msg}");
        assert!(
            msg.contains("KEY_BACKEND") && msg.contains(&format!("cargo feature `{feature}`")),
            "{msg}"
        );
        assert!(msg.contains("compiled into this build (env"), "{msg}");
    }
}

#[test]
fn malformed_layer_settings_name_their_variable() {
    for var in [
        "KEYMGR_RETRY_MAX",
        "KEYMGR_RETRY_BASE_MS",
        "KEYMGR_TIMEOUT_MS",
        "KEYMGR_PUBLIC_KEY_CACHE_SECS",
        "KEYMGR_RATE_LIMIT_PER_MINUTE",
        "KEYMGR_BREAKER_FAILURES",
        "KEYMGR_BREAKER_OPEN_SECS",
    ] {
        let e = Settings::from_vars(&vars(&[(var, "ten")])).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.to_string().contains(var), "{e}");
    }
    let s = Settings::from_vars(&vars(&[
        ("KEY_BACKEND", "hsm"),
        ("KEYMGR_RETRY_MAX", "0"),
        ("KEYMGR_TIMEOUT_MS", "2500"),
        ("KEYMGR_PUBLIC_KEY_CACHE_SECS", "0"),
    ]))
    .unwrap();
    assert_eq!(s.backend, BackendKind::Hsm);
    assert_eq!(s.retry, None);
    assert_eq!(s.timeout, Some(std::time::Duration::from_millis(2500)));
    assert_eq!(s.public_key_cache, None);
}

#[tokio::test]
async fn env_backend_variables_are_checked() {
    let e = manager_from_vars(&vars(&[("KEY_BACKEND", "env")]))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("EVM_PRIVATE_KEY"), "{e}");
    let e = manager_from_vars(&vars(&[("XRP_SEED", "sxxxx")]))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("XRP_SEED"), "{e}");
}

#[cfg(feature = "hsm")]
#[tokio::test]
async fn hsm_backend_variables_are_checked() {
    let e = manager_from_vars(&vars(&[("KEY_BACKEND", "hsm")]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("HSM_PKCS11_LIBRARY_PATH"), "{e}");
    let e = manager_from_vars(&vars(&[
        ("KEY_BACKEND", "hsm"),
        ("HSM_PKCS11_LIBRARY_PATH", "/nonexistent/libpkcs11.so"),
        ("HSM_SLOT_ID", "not-a-number"),
        ("HSM_PIN", "123456"),
        ("HSM_EVM_KEY_LABEL", "evm"),
    ]))
    .await
    .unwrap_err();
    assert!(!e.to_string().contains("123456"), "PIN echoed: {e}");
}

#[cfg(feature = "aws")]
#[tokio::test]
async fn aws_backend_variables_are_checked() {
    let e = manager_from_vars(&vars(&[("KEY_BACKEND", "aws-kms")]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    let msg = e.to_string();
    assert!(
        msg.contains("AWS_KMS_EVM_KEY_ID") || msg.contains("AWS_REGION"),
        "{msg}"
    );
}

#[tokio::test]
async fn audit_path_turns_the_file_log_on() {
    let dir = std::env::temp_dir().join(format!("keymgr-facade-audit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.to_string_lossy().into_owned();
    let m = manager_from_vars(&vars(&[
        ("EVM_PRIVATE_KEY", KEY),
        ("KEYMGR_AUDIT_PATH", &path),
        ("KEYMGR_NODE_ID", "node-a"),
    ]))
    .await
    .unwrap();
    m.sign(&KeyRef::new("evm"), &SignPayload::Prehash([2; 32]))
        .await
        .unwrap();
    let mut text = String::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        text.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap());
    }
    assert!(
        text.contains("SIGN_REQUEST") && text.contains("SIGN_SUCCESS"),
        "{text}"
    );
    assert!(text.contains("node-a"));
    assert!(!text.contains(&KEY[2..]), "secret in the audit log");
    let e = manager_from_vars(&vars(&[
        ("EVM_PRIVATE_KEY", KEY),
        ("KEYMGR_AUDIT_PATH", &path),
        ("KEYMGR_AUDIT_DURABILITY", "sometimes"),
    ]))
    .await
    .unwrap_err();
    assert!(e.to_string().contains("KEYMGR_AUDIT_DURABILITY"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
