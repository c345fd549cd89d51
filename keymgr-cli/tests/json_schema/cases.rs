//! The cases that run once each with fixed arguments: every command's success output and
//! one error per reachable row of the exit-code table.

use crate::harness::{Case, case};

pub(crate) const CHANNEL: &str = "5DB01B7FFED6B67E6B0414DED11E051D2EE2B7619CE0EAA6286D67A3A4D5BDB3";
pub(crate) const DELEGATE: &str = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
pub(crate) const TX: &str = r#"{"to": "0x5FbDB2315678afecb367f032d93F642f64180aa3", "value": "0x1",
    "nonce": "0x0", "gas": "0x5208", "maxFeePerGas": "0x3b9aca00",
    "maxPriorityFeePerGas": "0x1", "chainId": "0x2105"}"#;
pub(crate) const TYPED: &str = r#"{
  "types": {"EIP712Domain": [{"name": "name", "type": "string"}, {"name": "chainId", "type": "uint256"}],
            "Claim": [{"name": "amount", "type": "uint256"}]},
  "primaryType": "Claim",
  "domain": {"name": "keymgr", "chainId": 1},
  "message": {"amount": "7"}
}"#;

/// The files the cases read and write, under one temporary directory.
pub(crate) struct Files<'a> {
    pub(crate) audit: &'a str,
    pub(crate) plain: &'a str,
    pub(crate) enc: &'a str,
    pub(crate) dec: &'a str,
    pub(crate) exported: &'a str,
    pub(crate) state: &'a str,
    pub(crate) good: &'a str,
    pub(crate) bad: &'a str,
}

/// The single-run cases, in the order they run (`demo` first: it writes the audit log
/// the `audit` cases read).
pub(crate) fn single_runs(f: &Files<'_>) -> Vec<Case> {
    let Files {
        audit,
        plain,
        enc,
        dec,
        exported,
        state,
        good,
        bad,
    } = *f;
    let digest = "11".repeat(32);
    let bad_signature = "AB".repeat(64);
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
            &["audit", "export", audit, "-o", exported],
            0,
            "audit-export",
        ),
        case(
            "config check",
            &["config", "check", "--config", good],
            0,
            "config-check",
        ),
        case(
            "config check (problems)",
            &["config", "check", "--config", bad],
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
        env: vec![("KEYMGR_ROTATION_STATE_PATH", state.to_owned())],
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
    cases
}
