//! The `keymgr` binary: text and `--json` output, exit codes, and errors that name what
//! was wrong without echoing secrets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

use k256::ecdsa::signature::hazmat::PrehashVerifier as _;

const KEY: &str = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
const ED_SEED: &str = "sEdSKaCy2JT7JaM7v95H9SxkhP9wS2r";

fn keymgr(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keymgr"));
    cmd.args(args);
    for var in [
        "KEY_BACKEND",
        "EVM_PRIVATE_KEY",
        "XRP_SEED",
        "KEYMGR_AUDIT_PATH",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
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

#[test]
fn demo_needs_no_configuration() {
    let out = keymgr(&["demo"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = keymgr(&["demo", "--json"], &[]);
    assert!(out.status.success());
    let v = json(&out);
    assert_eq!(v["backend"], "env");

    // Both signatures check out independently of keymgr.
    let evm = &v["evm"];
    let sig: alloy_primitives::Signature = evm["signature"].as_str().unwrap().parse().unwrap();
    let address: alloy_primitives::Address = evm["address"].as_str().unwrap().parse().unwrap();
    let message = evm["message"].as_str().unwrap();
    assert_eq!(sig.recover_address_from_msg(message).unwrap(), address);

    let xrp = &v["xrp"];
    let public_key = hex::decode(xrp["public_key"].as_str().unwrap()).unwrap();
    assert_eq!(public_key[0], 0xED, "an XRPL Ed25519 public key");
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&public_key[1..].try_into().unwrap()).unwrap();
    let mut claim = b"CLM\0".to_vec();
    claim.extend(hex::decode(xrp["channel"].as_str().unwrap()).unwrap());
    claim.extend(xrp["drops"].as_u64().unwrap().to_be_bytes());
    let signature = hex::decode(xrp["signature"].as_str().unwrap()).unwrap();
    let signature = ed25519_dalek::Signature::from_slice(&signature).unwrap();
    vk.verify_strict(&claim, &signature)
        .expect("the claim signature verifies with ed25519-dalek");
}

#[test]
fn argument_errors_with_json_are_one_json_object() {
    let out = keymgr(&["sign", "--key", "evm", "--json"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let v = json(&out);
    assert_eq!(v["error"]["kind"], "usage", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("--digest") && message.contains("--message"),
        "{message}"
    );
}

#[test]
fn public_key_and_sign_verify_independently() {
    let env = [("EVM_PRIVATE_KEY", KEY), ("XRP_SEED", ED_SEED)];
    let out = keymgr(&["public-key", "--key", "evm", "--json"], &env);
    assert!(out.status.success());
    let pk = json(&out);
    assert_eq!(pk["algorithm"], "secp256k1");
    let pk_bytes = hex::decode(pk["public_key"].as_str().unwrap()).unwrap();
    let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(&pk_bytes).unwrap();

    let digest = "11".repeat(32);
    let out = keymgr(
        &["sign", "--key", "evm", "--digest", &digest, "--json"],
        &env,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sig = json(&out);
    let sig = k256::ecdsa::Signature::from_slice(
        &hex::decode(sig["signature"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    vk.verify_prehash(&hex::decode(&digest).unwrap(), &sig)
        .unwrap();

    let out = keymgr(&["public-key", "--key", "xrp", "--json"], &env);
    let pk = json(&out);
    assert_eq!(
        pk["public_key"],
        "01fa53fa5a7e77798f882ece20b1abc00bb358a9e55a202d0d0676bd0ce37a63"
    );
    let msg = hex::encode(b"hello");
    let out = keymgr(&["sign", "--key", "xrp", "--message", &msg, "--json"], &env);
    assert!(out.status.success());
    let sig: [u8; 64] = hex::decode(json(&out)["signature"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let vk = ed25519_dalek::VerifyingKey::from_bytes(
        &hex::decode(pk["public_key"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap(),
    )
    .unwrap();
    vk.verify_strict(b"hello", &ed25519_dalek::Signature::from_bytes(&sig))
        .unwrap();
}

#[test]
fn errors_are_json_objects_with_kind_and_never_echo_secrets() {
    let bad_key = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f3623";
    let out = keymgr(
        &["public-key", "--key", "evm", "--json"],
        &[("EVM_PRIVATE_KEY", bad_key)],
    );
    assert!(!out.status.success());
    let v = json(&out);
    assert_eq!(v["error"]["kind"], "config");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("EVM_PRIVATE_KEY"), "{msg}");
    assert!(!msg.contains(&bad_key[2..]), "secret echoed: {msg}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains(&bad_key[2..]));

    let env = [("EVM_PRIVATE_KEY", KEY)];
    let out = keymgr(
        &["sign", "--key", "evm", "--digest", "abcd", "--json"],
        &env,
    );
    let v = json(&out);
    assert_eq!(v["error"]["kind"], "invalid_input");
    assert!(v["error"]["message"].as_str().unwrap().contains("32 bytes"));

    let out = keymgr(
        &["sign", "--key", "nope", "--digest", &"00".repeat(32)],
        &env,
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("nope") && stderr.contains("not found"),
        "{stderr}"
    );
    assert!(!stderr.contains(&KEY[2..]));

    let out = keymgr(
        &["public-key", "--json", "--key", "evm"],
        &[("KEY_BACKEND", "vault")],
    );
    let v = json(&out);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("KEY_BACKEND")
    );
}

#[test]
fn health_reports_the_backend() {
    let out = keymgr(&["health", "--json"], &[("EVM_PRIVATE_KEY", KEY)]);
    assert!(out.status.success());
    let v = json(&out);
    assert_eq!(v["components"][0]["backend"], "env");
    assert_eq!(v["status"], "healthy");
    assert_eq!(v["aggregate"], "healthy");
    assert_eq!(v["exit_code"], 0);
}

#[test]
fn health_reports_down_when_the_configuration_cannot_be_loaded() {
    // An unreadable --config: still a report (down, exit 11), as a probe needs.
    let missing = std::env::temp_dir().join(format!("keymgr-no-such-{}.toml", std::process::id()));
    let missing = missing.to_str().unwrap();
    let out = keymgr(
        &["health", "--json", "--config", missing],
        &[("EVM_PRIVATE_KEY", KEY)],
    );
    assert_eq!(out.status.code(), Some(11));
    let v = json(&out);
    assert_eq!(v["aggregate"], "down");
    assert_eq!(v["exit_code"], 11);
    assert_eq!(v["schema"], 1);
    // A config file with an unknown setting: refused like everywhere else, as "down".
    let dir = std::env::temp_dir().join(format!("keymgr-health-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("keymgr.toml");
    std::fs::write(&file, "NOT_A_KEYMGR_SETTING = \"x\"\n").unwrap();
    let out = keymgr(
        &["health", "--json", "--config", file.to_str().unwrap()],
        &[("EVM_PRIVATE_KEY", KEY)],
    );
    assert_eq!(
        out.status.code(),
        Some(11),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(json(&out)["aggregate"], "down");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn commands_that_need_no_configuration_never_read_it() {
    let dir = std::env::temp_dir().join(format!("keymgr-cli-noconfig-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let broken = dir.join("broken.toml");
    std::fs::write(&broken, "KEY_BACKEND = [unterminated\n").unwrap();
    let broken = broken.to_str().unwrap();
    let missing = dir.join("missing.env");
    let missing = missing.to_str().unwrap();
    let audit = dir.join("audit");
    let audit = audit.to_str().unwrap();
    // Each way a configuration can be broken: the file KEYMGR_CONFIG names, the file
    // --config names, an --env-file that does not exist.
    type Way<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)]);
    let broken_ways: [Way<'_>; 3] = [
        (&[], &[("KEYMGR_CONFIG", broken)]),
        (&["--config", broken], &[]),
        (&["--env-file", missing], &[]),
    ];
    for (flags, env) in broken_ways {
        for command in [
            &["demo", "--audit-dir", audit][..],
            &["completions", "bash"],
            &["man"],
        ] {
            let args: Vec<&str> = command.iter().chain(flags).copied().collect();
            let out = keymgr(&args, env);
            assert!(
                out.status.success(),
                "{args:?} {env:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let _ = std::fs::remove_dir_all(audit);
        }
        // A command that needs the configuration still refuses it (exit 3).
        let args: Vec<&str> = ["public-key", "--key", "evm", "--json"]
            .iter()
            .chain(flags)
            .copied()
            .collect();
        let out = keymgr(&args, env);
        assert_eq!(out.status.code(), Some(3), "{args:?} {env:?}");
        assert_eq!(json(&out)["error"]["kind"], "config");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
