//! The env backend: known-answer vectors, configuration errors, and secret hygiene (the
//! shared conformance suite runs from `conformance.rs`).

use std::collections::HashMap;

use keymgr_core::{ErrorKind, KeyBackend, KeyRef, SignPayload, xrpl};
use keymgr_env::EnvBackend;
use sha3::{Digest as _, Keccak256};

/// web3.js documentation, `web3.eth.accounts.privateKeyToAccount` example.
const ETH_KEY: &str = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
const ETH_ADDRESS: &str = "2c7536e3605d9c16a7a3d7b1898e529396a65c23";

/// ripple-keypairs test fixtures (xrpl.js `packages/ripple-keypairs/test/fixtures/api.json`).
const XRP_ED_SEED: &str = "sEdSKaCy2JT7JaM7v95H9SxkhP9wS2r";
const XRP_ED_PUBLIC: &str = "ED01FA53FA5A7E77798F882ECE20B1ABC00BB358A9E55A202D0D0676BD0CE37A63";
const XRP_ED_ADDRESS: &str = "rLUEXYuLiQptky37CqLcm9USQpPiz5rkpD";
const XRP_ED_SIG_TEST_MESSAGE: &str = "CB199E1BFD4E3DAA105E4832EEDFA36413E1F44205E4EFB9E27E826044C21E3E2E848BBC8195E8959BADF887599B7310AD1B7047EF11B682E0D068F73749750E";
const XRP_SECP_SEED: &str = "sp5fghtJtpUorTwvof1NpDXAzNwf5";
const XRP_SECP_PUBLIC: &str = "030D58EB48B4420B1F7B9DF55087E0E29FEF0E8468F9A6825B01CA2C361042D435";
const XRP_SECP_ADDRESS: &str = "rU6K7V3Po4snVhBBaU29sesqs2qTQJWDw1";
const XRP_SECP_SIG_TEST_MESSAGE: &str = "30440220583A91C95E54E6A651C47BEC22744E0B101E2C4060E7B08F6341657DAD9BC3EE02207D1489C7395DB0188D3A56A977ECBA54B36FA9371B40319655B1B4429E33EF2D";

/// XRPL docs, `wallet_propose` with passphrase "masterpassphrase" (the genesis account).
const GENESIS_SEED: &str = "snoPBrXtMeMyMHUVTgbuqAfg1SUTb";
const GENESIS_PUBLIC: &str = "0330E7FC9D56BB25D6893BA3F317AE5BCF33B3291BD63DB32654A313222F7FD020";
const GENESIS_ADDRESS: &str = "rHb9CJAWyB4rj91VRWn96DkukG4bwdtyTh";

fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| map.get(name).cloned()
}

fn xrpl_public(pk: &keymgr_core::PublicKey) -> Vec<u8> {
    match pk {
        keymgr_core::PublicKey::Ed25519(k) => [&[0xED][..], k.as_bytes()].concat(),
        other => other.to_bytes(),
    }
}

#[tokio::test]
async fn ethereum_private_key_gives_known_address() {
    let backend = EnvBackend::from_vars(vars(&[("EVM_PRIVATE_KEY", ETH_KEY)])).unwrap();
    let pk = backend.public_key(&KeyRef::new("evm")).await.unwrap();
    let uncompressed = pk.to_uncompressed().unwrap();
    let hash = Keccak256::digest(&uncompressed[1..]);
    assert_eq!(hex::encode(&hash[12..]), ETH_ADDRESS);
    // Without the 0x prefix too.
    let bare = EnvBackend::new()
        .with_secp256k1_hex("evm", &ETH_KEY[2..])
        .unwrap();
    assert_eq!(bare.public_key(&KeyRef::new("evm")).await.unwrap(), pk);
}

#[tokio::test]
async fn xrpl_seeds_give_published_keys_addresses_and_signatures() {
    let backend = EnvBackend::new()
        .with_xrpl_seed("ed", XRP_ED_SEED)
        .unwrap()
        .with_xrpl_seed("secp", XRP_SECP_SEED)
        .unwrap()
        .with_xrpl_seed("genesis", GENESIS_SEED)
        .unwrap();
    for (name, public, address) in [
        ("ed", XRP_ED_PUBLIC, XRP_ED_ADDRESS),
        ("secp", XRP_SECP_PUBLIC, XRP_SECP_ADDRESS),
        ("genesis", GENESIS_PUBLIC, GENESIS_ADDRESS),
    ] {
        let pk = backend.public_key(&KeyRef::new(name)).await.unwrap();
        let xrpl_pk = xrpl_public(&pk);
        assert_eq!(hex::encode_upper(&xrpl_pk), public, "{name}");
        assert_eq!(xrpl::classic_address(&xrpl_pk), address, "{name}");
    }
    // Published signatures over "test message": Ed25519 is deterministic; secp256k1
    // signs SHA-512Half(message) with RFC 6979 nonces, as ripple-keypairs does.
    let msg = b"test message".to_vec();
    let sig = backend
        .sign(&KeyRef::new("ed"), &SignPayload::message(msg.clone()))
        .await
        .unwrap();
    assert_eq!(hex::encode_upper(sig.to_bytes()), XRP_ED_SIG_TEST_MESSAGE);
    let sig = backend
        .sign(
            &KeyRef::new("secp"),
            &SignPayload::Prehash(xrpl::sha512_half(&msg)),
        )
        .await
        .unwrap();
    assert_eq!(
        hex::encode_upper(sig.as_secp256k1().unwrap().to_der()),
        XRP_SECP_SIG_TEST_MESSAGE
    );
}

#[test]
fn config_errors_name_the_variable_and_never_the_value() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[], "EVM_PRIVATE_KEY"),
        (&[("EVM_PRIVATE_KEY", "0x1234")], "EVM_PRIVATE_KEY"),
        (
            &[(
                "EVM_PRIVATE_KEY",
                "0xzz0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318",
            )],
            "EVM_PRIVATE_KEY",
        ),
        (
            &[(
                "EVM_PRIVATE_KEY",
                "0x0000000000000000000000000000000000000000000000000000000000000000",
            )],
            "EVM_PRIVATE_KEY",
        ),
        (
            &[(
                "EVM_PRIVATE_KEY",
                "0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141",
            )],
            "EVM_PRIVATE_KEY",
        ),
        (
            &[("XRP_SEED", "sEdSKaCy2JT7JaM7v95H9SxkhP9wS2X")],
            "XRP_SEED",
        ),
        (&[("XRP_SEED", "not-a-seed")], "XRP_SEED"),
        (&[("XRP_SEED", GENESIS_ADDRESS)], "XRP_SEED"),
        (
            &[("EVM_PRIVATE_KEY", ETH_KEY), ("XRP_SEED", "sBADSEED")],
            "XRP_SEED",
        ),
    ];
    for (pairs, variable) in cases {
        let e = EnvBackend::from_vars(vars(pairs)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        let msg = e.to_string();
        assert!(msg.contains(variable), "{msg}");
        for (_, value) in pairs.iter() {
            assert!(!msg.contains(&value[2..]), "secret echoed: {msg}");
            assert!(
                !format!("{e:?}").contains(&value[2..]),
                "secret echoed in Debug"
            );
        }
    }
}

#[tokio::test]
async fn no_secret_in_debug_or_errors() {
    let backend = EnvBackend::from_vars(vars(&[
        ("EVM_PRIVATE_KEY", ETH_KEY),
        ("XRP_SEED", XRP_ED_SEED),
    ]))
    .unwrap();
    // The derived Ed25519 private key from the fixtures, and the raw secp256k1 key.
    let secrets = [
        ETH_KEY[2..].to_string(),
        XRP_ED_SEED.to_string(),
        "B4C4E046826BD26190D09715FC31F4E6A728204EADD112905B08B14B7F15C4F3".to_lowercase(),
    ];
    let mut texts = vec![format!("{backend:?}"), format!("{backend:#?}")];
    for e in [
        backend
            .sign(&KeyRef::new("evm"), &SignPayload::message(vec![1]))
            .await
            .unwrap_err(),
        backend
            .sign(&KeyRef::new("nope"), &SignPayload::Prehash([0; 32]))
            .await
            .unwrap_err(),
        backend.create_version("xrp").await.unwrap_err(),
    ] {
        texts.push(e.to_string());
        texts.push(format!("{e:?}"));
    }
    for text in &texts {
        let lower = text.to_lowercase();
        for s in &secrets {
            assert!(
                !lower.contains(&s.to_lowercase()),
                "secret leaked in {text}"
            );
        }
    }
    assert!(texts[0].contains("REDACTED"));
}
