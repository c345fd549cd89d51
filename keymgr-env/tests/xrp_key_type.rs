//! XRP_KEY_TYPE: rippled keeps the key type apart from the seed, so a plain `s...` seed
//! may be an Ed25519 account's. Right values from xrpl-py 5.2.0, recorded with
//!
//! ```text
//! python -c "from xrpl.core.keypairs import derive_keypair, derive_classic_address
//! from xrpl.constants import CryptoAlgorithm as A
//! for a in (A.SECP256K1, A.ED25519):
//!     pub, _ = derive_keypair('sscp1XjMR4nKVXzP2JBzBmhZ2Qnjj', algorithm=a)
//!     print(a, pub, derive_classic_address(pub))"
//! ```
//!
//! and recomputed live through keymgr_testkit::verifiers under `cargo xtask test`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use ed25519_dalek::Verifier as _;
use keymgr_core::{Error, KeyAlgorithm, KeyBackend, KeyRef, PublicKey, SignPayload, xrpl};
use keymgr_env::EnvBackend;
use keymgr_testkit::verifiers;

/// The issue's seed: a plain `s...` family seed.
const SEED: &str = "sscp1XjMR4nKVXzP2JBzBmhZ2Qnjj";
const SECP_PUBLIC: &str = "026749EC866B15316B3CBFF5F5C111BF7005FCA26598AA119390642436DFB3DDF4";
const SECP_ADDRESS: &str = "r4He1PBDZnJ7FDut65Gdm6DhXGZn1bCShg";
const ED_PUBLIC: &str = "ED7716CACB7E8D03108372F0B554D9DEF246CAFADDF7FDEC2F8EB56943B09736CD";
const ED_ADDRESS: &str = "rS1d1Y1fTx4ZrcxMcWVsPUcVMTWVAvmtz";
/// ripple-keypairs fixture (xrpl.js `packages/ripple-keypairs/test/fixtures/api.json`).
const ED_SEED: &str = "sEdSKaCy2JT7JaM7v95H9SxkhP9wS2r";

fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| map.get(name).cloned()
}

fn xrpl_hex(pk: &PublicKey) -> String {
    match pk {
        PublicKey::Ed25519(k) => format!("ED{}", hex::encode_upper(k.as_bytes())),
        other => hex::encode_upper(other.to_bytes()),
    }
}

async fn xrp_key(pairs: &[(&str, &str)]) -> PublicKey {
    let backend = EnvBackend::from_vars(vars(pairs)).unwrap();
    backend.public_key(&KeyRef::new("xrp")).await.unwrap()
}

#[tokio::test]
async fn plain_seed_serves_the_key_type_asked_for() {
    // Default: the prefix's type, secp256k1.
    for pairs in [
        &[("XRP_SEED", SEED)][..],
        &[("XRP_SEED", SEED), ("XRP_KEY_TYPE", "secp256k1")],
        &[("XRP_SEED", SEED), ("XRP_KEY_TYPE", "")],
    ] {
        let pk = xrp_key(pairs).await;
        assert_eq!(pk.algorithm(), KeyAlgorithm::Secp256k1);
        assert_eq!(xrpl_hex(&pk), SECP_PUBLIC);
        assert_eq!(
            xrpl::classic_address(&hex::decode(SECP_PUBLIC).unwrap()),
            SECP_ADDRESS
        );
    }
    // The Ed25519 account of the same seed.
    for key_type in ["ed25519", "ED25519", " Ed25519 "] {
        let pk = xrp_key(&[("XRP_SEED", SEED), ("XRP_KEY_TYPE", key_type)]).await;
        assert_eq!(pk.algorithm(), KeyAlgorithm::Ed25519);
        assert_eq!(xrpl_hex(&pk), ED_PUBLIC);
    }
    assert_eq!(
        xrpl::classic_address(&hex::decode(ED_PUBLIC).unwrap()),
        ED_ADDRESS
    );

    // Its signatures verify with ed25519-dalek against the xrpl-py public key.
    let backend =
        EnvBackend::from_vars(vars(&[("XRP_SEED", SEED), ("XRP_KEY_TYPE", "ed25519")])).unwrap();
    let message = b"CLM\0claim bytes".to_vec();
    let sig = backend
        .sign(&KeyRef::new("xrp"), &SignPayload::message(message.clone()))
        .await
        .unwrap();
    let vk = ed25519_dalek::VerifyingKey::from_bytes(
        &hex::decode(&ED_PUBLIC[2..]).unwrap().try_into().unwrap(),
    )
    .unwrap();
    let sig = ed25519_dalek::Signature::from_bytes(&sig.to_bytes());
    vk.verify(&message, &sig).unwrap();
}

#[test]
fn xrpl_py_agrees_live() {
    let Some(python) = verifiers::python() else {
        return;
    };
    for (algorithm, public, address) in [
        ("secp256k1", SECP_PUBLIC, SECP_ADDRESS),
        ("ed25519", ED_PUBLIC, ED_ADDRESS),
    ] {
        let out = verifiers::run(&python, "xrp-keypair", &[SEED, algorithm]);
        assert!(out.contains(public) && out.contains(address), "{out}");
    }
}

#[tokio::test]
async fn ed25519_seed_with_secp256k1_is_refused() {
    let e = EnvBackend::from_vars(vars(&[
        ("XRP_SEED", ED_SEED),
        ("XRP_KEY_TYPE", "secp256k1"),
    ]))
    .unwrap_err();
    assert!(
        matches!(&e, Error::Config { variable, .. } if variable == "XRP_KEY_TYPE"),
        "{e}"
    );
    assert!(!e.to_string().contains(ED_SEED));
    // The library says the same.
    let e = EnvBackend::new()
        .with_xrpl_seed_as("xrp", ED_SEED, KeyAlgorithm::Secp256k1)
        .unwrap_err();
    assert!(
        matches!(&e, Error::InvalidInput { field, .. } if field == "XRPL seed"),
        "{e}"
    );
    assert!(!e.to_string().contains(ED_SEED));
    // ed25519 with an sEd seed is what the prefix says anyway.
    let pk = xrp_key(&[("XRP_SEED", ED_SEED), ("XRP_KEY_TYPE", "ed25519")]).await;
    assert_eq!(pk.algorithm(), KeyAlgorithm::Ed25519);
}

#[test]
fn bad_key_type_settings_name_the_variable() {
    for pairs in [
        &[("XRP_SEED", SEED), ("XRP_KEY_TYPE", "rsa")][..],
        &[
            (
                "EVM_PRIVATE_KEY",
                "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318",
            ),
            ("XRP_KEY_TYPE", "ed25519"),
        ],
    ] {
        let e = EnvBackend::from_vars(vars(pairs)).unwrap_err();
        assert!(
            matches!(&e, Error::Config { variable, .. } if variable == "XRP_KEY_TYPE"),
            "{e}"
        );
    }
    // A malformed seed still names XRP_SEED and does not echo it.
    let e = EnvBackend::from_vars(vars(&[
        ("XRP_SEED", "sscp1XjMR4nKVXzP2JBzBmhZ2Qnjk"),
        ("XRP_KEY_TYPE", "ed25519"),
    ]))
    .unwrap_err();
    assert!(
        matches!(&e, Error::Config { variable, .. } if variable == "XRP_SEED"),
        "{e}"
    );
    assert!(!e.to_string().contains("sscp1XjMR4nKVXzP2JBzBmhZ2Qnjk"));
    // Debug of a backend holding the seed's key shows no secret.
    let backend =
        EnvBackend::from_vars(vars(&[("XRP_SEED", SEED), ("XRP_KEY_TYPE", "ed25519")])).unwrap();
    let debug = format!("{backend:?}");
    assert!(
        !debug.contains(SEED) && debug.contains("REDACTED"),
        "{debug}"
    );
}
