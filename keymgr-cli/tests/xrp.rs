//! `keymgr xrp`: public key, address, sign-claim and verify-claim, in text and `--json`,
//! against published XRPL vectors; signatures checked independently.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
use sha2::Digest as _;

/// ripple-keypairs fixture seed (xrpl.js packages/ripple-keypairs/test/fixtures/api.json).
const ED_SEED: &str = "sEdSKaCy2JT7JaM7v95H9SxkhP9wS2r";
/// xrpl.js signPaymentChannelClaim test key.
const SECP_KEY: &str = "0xACCD3309DB14D1A4FC9B1DAE608031F4408C85C73EE05E035B7DC8B25840107A";
const CHANNEL: &str = "5DB01B7FFED6B67E6B0414DED11E051D2EE2B7619CE0EAA6286D67A3A4D5BDB3";
/// XRPL docs, channel_verify example.
const DOCS_SIGNATURE: &str = "304402204EF0AFB78AC23ED1C472E74F4299C0C21F1B21D07EFC0A3838A420F76D783A400220154FB11B6F54320666E4C36CA7F686C16A3A0456800BBC43746F34AF50290064";
const DOCS_PUBLIC_KEY: &str = "aB44YfzW24VDEJQ2UuLPV2PvqcPCSoLnL7y5M1EzhdW4LnK5xMS3";

fn keymgr(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keymgr"));
    cmd.args(args);
    for var in ["KEY_BACKEND", "KEYMGR_AUDIT_PATH"] {
        cmd.env_remove(var);
    }
    cmd.env("XRP_SEED", ED_SEED)
        .env("EVM_PRIVATE_KEY", SECP_KEY);
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

fn claim_bytes(channel: &str, drops: u64) -> Vec<u8> {
    let mut m = b"CLM\0".to_vec();
    m.extend(hex::decode(channel).unwrap());
    m.extend(drops.to_be_bytes());
    m
}

#[test]
fn public_key_and_address() {
    let out = keymgr(&["xrp", "public-key", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    // The signer pins the key's current version (channels are bound to one key).
    assert_eq!(v["key"], "xrp@1");
    assert_eq!(v["algorithm"], "ed25519");
    assert_eq!(
        v["public_key"],
        "ED01FA53FA5A7E77798F882ECE20B1ABC00BB358A9E55A202D0D0676BD0CE37A63"
    );
    assert_eq!(v["address"], "rLUEXYuLiQptky37CqLcm9USQpPiz5rkpD");

    let out = keymgr(&["xrp", "address"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "rLUEXYuLiQptky37CqLcm9USQpPiz5rkpD"
    );
    let v = json(&keymgr(&["xrp", "address", "--key", "evm", "--json"]));
    assert_eq!(
        v["public_key"],
        "02F89EAEC7667B30F33D0687BBA86C3FE2A08CCA40A9186C5BDE2DAA6FA97A37D8"
    );
}

#[test]
fn sign_claim_ed25519_verifies_independently() {
    let out = keymgr(&[
        "xrp",
        "sign-claim",
        "--channel",
        CHANNEL,
        "--amount",
        "1000000",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    let sig = v["signature"].as_str().unwrap();
    // xrpl-py 5.2.0 gives the same signature for this seed and claim (see
    // keymgr-xrp/tests/known_answers.rs).
    assert_eq!(
        sig,
        "F86EFC14E70AAC691277620DA42C71906948C232187A68C75C0825D9AC2B5F2C3EA483AC6BD0FD6FDFC54F2B92E9CFFF82FEF541D6639B67DC5F66BE875CED01"
    );
    let pk = hex::decode(v["public_key"].as_str().unwrap()).unwrap();
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&pk[1..].try_into().unwrap()).unwrap();
    let sig_bytes: [u8; 64] = hex::decode(sig).unwrap().try_into().unwrap();
    vk.verify_strict(
        &claim_bytes(CHANNEL, 1_000_000),
        &ed25519_dalek::Signature::from_bytes(&sig_bytes),
    )
    .unwrap();

    let out = keymgr(&[
        "xrp",
        "verify-claim",
        "--channel",
        CHANNEL,
        "--amount",
        "1000000",
        "--signature",
        sig,
        "--public-key",
        v["public_key"].as_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success());
    assert_eq!(json(&out)["valid"], true);
}

#[test]
fn sign_claim_secp256k1_matches_xrpl_js() {
    // xrpl.js signPaymentChannelClaim test: channel 3E18…9037, 10 drops.
    let channel = "3E18C05AD40319B809520F1A136370C4075321B285217323396D6FD9EE1E9037";
    let out = keymgr(&[
        "xrp",
        "sign-claim",
        "--key",
        "evm",
        "--channel",
        channel,
        "--amount",
        "10",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    let sig = v["signature"].as_str().unwrap();
    assert_eq!(
        sig,
        "3045022100B5C54654221F154347679B97AE7791CBEF5E6772A3F894F9C781B8F1B400F89F022021E466D29DC5AEB5DFAFC76E8A88D2E388EBD25A84143B6AC3B647F479CB89B7"
    );
    let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(
        &hex::decode(v["public_key"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    let digest = sha2::Sha512::digest(claim_bytes(channel, 10));
    let der = k256::ecdsa::Signature::from_der(&hex::decode(sig).unwrap()).unwrap();
    vk.verify_prehash(&digest[..32], &der).unwrap();
}

#[test]
fn verify_claim_docs_vector_and_failures() {
    let out = keymgr(&[
        "xrp",
        "verify-claim",
        "--channel",
        CHANNEL,
        "--amount",
        "1000000",
        "--signature",
        DOCS_SIGNATURE,
        "--public-key",
        DOCS_PUBLIC_KEY,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("valid") && text.contains("rN7n7otQDd6FczFgLdSqtcsAUxDkw6fzRH"),
        "{text}"
    );

    // A claim that does not verify exits non-zero.
    let out = keymgr(&[
        "xrp",
        "verify-claim",
        "--channel",
        CHANNEL,
        "--amount",
        "1000001",
        "--signature",
        DOCS_SIGNATURE,
        "--public-key",
        DOCS_PUBLIC_KEY,
        "--json",
    ]);
    assert!(!out.status.success());
    let v = json(&out);
    assert_eq!(v["error"]["kind"], "invalid_input");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not verify")
    );
}

#[test]
fn malformed_inputs_name_the_field_and_never_echo_secrets() {
    for (args, needle) in [
        (
            vec!["xrp", "sign-claim", "--channel", "abc", "--amount", "1"],
            "channel",
        ),
        (
            vec!["xrp", "sign-claim", "--channel", CHANNEL, "--amount", "0"],
            "amount",
        ),
        (
            vec!["xrp", "sign-claim", "--channel", CHANNEL, "--amount", "1.5"],
            "amount",
        ),
        (
            vec!["xrp", "sign-claim", "--channel", ED_SEED, "--amount", "1"],
            "channel",
        ),
        (
            vec![
                "xrp",
                "sign-claim",
                "--channel",
                CHANNEL,
                "--amount",
                ED_SEED,
            ],
            "amount",
        ),
        (
            vec![
                "xrp",
                "verify-claim",
                "--channel",
                CHANNEL,
                "--amount",
                "1",
                "--signature",
                ED_SEED,
                "--public-key",
                DOCS_PUBLIC_KEY,
            ],
            "signature",
        ),
        (
            vec![
                "xrp",
                "verify-claim",
                "--channel",
                CHANNEL,
                "--amount",
                "1",
                "--signature",
                "00",
                "--public-key",
                ED_SEED,
            ],
            "public key",
        ),
    ] {
        let mut with_json = args.clone();
        with_json.push("--json");
        let out = keymgr(&with_json);
        assert!(!out.status.success(), "{args:?}");
        let v = json(&out);
        assert_eq!(v["error"]["kind"], "invalid_input", "{args:?}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{args:?}: {msg}");
        assert!(!msg.contains(ED_SEED), "seed echoed: {msg}");
        let out = keymgr(&args);
        assert!(!String::from_utf8_lossy(&out.stderr).contains(ED_SEED));
    }
    let out = keymgr(&["xrp", "public-key", "--key", "nope", "--json"]);
    assert_eq!(json(&out)["error"]["kind"], "not_found");
}

#[test]
fn untrusted_verify_inputs_are_bounded() {
    // A payee's service runs this on the other party's input: a 60 KB base58 "public
    // key" is refused before decoding (quadratic base58 took seconds on it).
    let huge = format!("a{}", "B".repeat(60_000));
    let out = keymgr(&[
        "xrp",
        "verify-claim",
        "--channel",
        CHANNEL,
        "--amount",
        "1000000",
        "--signature",
        DOCS_SIGNATURE,
        "--public-key",
        &huge,
        "--json",
    ]);
    assert!(!out.status.success());
    let v = json(&out);
    assert_eq!(v["error"]["kind"], "invalid_input", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("public key") && message.len() < 300,
        "{message}"
    );
}

#[test]
fn xrp_key_type_selects_the_ed25519_account_of_a_plain_seed() {
    // xrpl-py 5.2.0 derive_keypair("sscp1XjMR4nKVXzP2JBzBmhZ2Qnjj", algorithm=...) (the
    // script is in keymgr-env/tests/xrp_key_type.rs, which also recomputes it live).
    for (key_type, public, address) in [
        (
            "ed25519",
            "ED7716CACB7E8D03108372F0B554D9DEF246CAFADDF7FDEC2F8EB56943B09736CD",
            "rS1d1Y1fTx4ZrcxMcWVsPUcVMTWVAvmtz",
        ),
        (
            "secp256k1",
            "026749EC866B15316B3CBFF5F5C111BF7005FCA26598AA119390642436DFB3DDF4",
            "r4He1PBDZnJ7FDut65Gdm6DhXGZn1bCShg",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_keymgr"))
            .args(["xrp", "public-key", "--json"])
            .env_remove("KEY_BACKEND")
            .env_remove("KEYMGR_AUDIT_PATH")
            .env_remove("EVM_PRIVATE_KEY")
            .env("XRP_SEED", "sscp1XjMR4nKVXzP2JBzBmhZ2Qnjj")
            .env("XRP_KEY_TYPE", key_type)
            .output()
            .unwrap();
        let v = json(&out);
        assert_eq!(v["public_key"], public, "{v}");
        assert_eq!(v["address"], address);
        assert_eq!(v["algorithm"], key_type);
    }
    // Without XRP_KEY_TYPE a plain seed serves secp256k1 and says so on stderr.
    let out = Command::new(env!("CARGO_BIN_EXE_keymgr"))
        .args(["xrp", "address"])
        .env_remove("KEY_BACKEND")
        .env_remove("KEYMGR_AUDIT_PATH")
        .env_remove("EVM_PRIVATE_KEY")
        .env_remove("XRP_KEY_TYPE")
        .env("XRP_SEED", "sscp1XjMR4nKVXzP2JBzBmhZ2Qnjj")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("XRP_KEY_TYPE=ed25519"), "{stderr}");
    assert!(
        !stderr.contains("sscp1XjMR4nKVXzP2JBzBmhZ2Qnjj"),
        "{stderr}"
    );
}
