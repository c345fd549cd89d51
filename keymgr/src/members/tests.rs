//! Tests of [`super`]: parsing `KEY_BACKENDS`, members failing over, health.

#![allow(clippy::unwrap_used)]
use std::collections::HashMap;

use super::*;

fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + Sync {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| map.get(name).cloned()
}

fn config_error(e: Error) -> String {
    match e {
        Error::Config { variable, .. } => variable,
        other => panic!("not a configuration error: {other:?}"),
    }
}

#[test]
fn members_parse_in_order_with_numbered_repeats() {
    let m = parse_members(Some(" hsm, hsm:2 ,aws-kms,env "))
        .unwrap()
        .unwrap();
    let names: Vec<_> = m.iter().map(MemberSpec::name).collect();
    assert_eq!(names, ["hsm", "hsm:2", "aws-kms", "env"]);
    assert_eq!(parse_members(None).unwrap(), None);
    assert_eq!(parse_members(Some("  ")).unwrap(), None);
    for bad in [
        "hsm,,env",
        "hsm,hsm",
        "hsm:1",
        "hsm:0",
        "hsm:x",
        "vault",
        "hsm:2,hsm:2",
    ] {
        let e = parse_members(Some(bad)).unwrap_err();
        assert_eq!(config_error(e), KEY_BACKENDS, "{bad}");
    }
}

#[test]
fn numbered_members_read_their_own_variables_only() {
    let second = MemberSpec {
        kind: BackendKind::Hsm,
        index: 2,
    };
    assert_eq!(second.variable("HSM_PIN"), "HSM_2_PIN");
    assert_eq!(
        second.variable("HSM_PKCS11_LIBRARY_PATH"),
        "HSM_2_PKCS11_LIBRARY_PATH"
    );
    assert_eq!(
        second.variable("AWS_KMS_EVM_KEY_ID"),
        "AWS_2_KMS_EVM_KEY_ID"
    );
    assert_eq!(second.variable("EVM_PRIVATE_KEY"), "EVM_2_PRIVATE_KEY");
    assert_eq!(second.variable("SSL_CERT_FILE"), "SSL_CERT_FILE");
    let first = MemberSpec {
        kind: BackendKind::Hsm,
        index: 1,
    };
    assert_eq!(first.variable("HSM_PIN"), "HSM_PIN");
}

const KEY_A: &str = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
const KEY_B: &str = "0x8da4ef21b864d2cc526dbdb2a120bd2874c36c9d0a1fb7f8c63d7f7a8b41de8f";

#[tokio::test]
async fn env_members_fail_over_and_a_different_key_is_a_configuration_error() {
    let var = vars(&[
        ("KEY_BACKENDS", "env,env:2"),
        ("EVM_PRIVATE_KEY", KEY_A),
        ("EVM_2_PRIVATE_KEY", KEY_A),
    ]);
    let config = MemberConfig::from_vars(&var).unwrap().unwrap();
    let debug = format!("{config:?}");
    assert!(!debug.contains(&KEY_A[2..]), "{debug}");
    let failover = config.build().await.unwrap();
    assert_eq!(
        failover.member_names().collect::<Vec<_>>(),
        ["env", "env:2"]
    );
    let report = failover.health().await;
    assert_eq!(
        report.status,
        keymgr_core::HealthStatus::Healthy,
        "{report:?}"
    );

    let var = vars(&[
        ("KEY_BACKENDS", "env,env:2"),
        ("EVM_PRIVATE_KEY", KEY_A),
        ("EVM_2_PRIVATE_KEY", KEY_B),
    ]);
    let e = MemberConfig::from_vars(&var)
        .unwrap()
        .unwrap()
        .build()
        .await
        .unwrap_err();
    let text = format!("{e} {e:?}");
    assert_eq!(config_error(e), KEY_BACKENDS);
    assert!(
        !text.contains(&KEY_A[2..]) && !text.contains(&KEY_B[2..]),
        "{text}"
    );
}

#[test]
fn contradictions_and_malformed_member_settings_name_the_variable() {
    let both = vars(&[("KEY_BACKENDS", "env"), ("KEY_BACKEND", "hsm")]);
    assert_eq!(
        config_error(MemberConfig::from_vars(&both).unwrap_err()),
        KEY_BACKEND
    );
    let bad = vars(&[
        ("KEY_BACKENDS", "env,env:2"),
        ("EVM_PRIVATE_KEY", KEY_A),
        ("EVM_2_PRIVATE_KEY", "0x12"),
    ]);
    assert_eq!(
        config_error(MemberConfig::from_vars(&bad).unwrap_err()),
        "EVM_2_PRIVATE_KEY"
    );
    let bad = vars(&[
        ("KEY_BACKENDS", "env"),
        ("EVM_PRIVATE_KEY", KEY_A),
        (KEYMGR_HEALTH_CACHE_SECS, "soon"),
    ]);
    assert_eq!(
        config_error(MemberConfig::from_vars(&bad).unwrap_err()),
        KEYMGR_HEALTH_CACHE_SECS
    );
}

#[tokio::test]
async fn health_reports_a_configuration_error_instead_of_failing() {
    let var = vars(&[("KEY_BACKENDS", "env,nope")]);
    let report = health_from_vars(&var).await;
    assert_eq!(report.status, keymgr_core::HealthStatus::Unhealthy);
    assert!(report.detail.unwrap().contains(KEY_BACKENDS));
}
