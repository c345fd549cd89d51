//! No seed or private key reaches an error message or Debug output, even when one is
//! pasted into the wrong argument.

// Test helpers panic to fail the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use keymgr_env::EnvBackend;
use keymgr_xrp::{ClaimSigner, try_verify_claim};

const SEED: &str = "sEdSKaCy2JT7JaM7v95H9SxkhP9wS2r";
const SECP_PRIVATE: &str = "ACCD3309DB14D1A4FC9B1DAE608031F4408C85C73EE05E035B7DC8B25840107A";

#[tokio::test]
async fn secrets_in_the_wrong_field_are_not_echoed() {
    let backend = EnvBackend::new()
        .with_xrpl_seed("xrp", SEED)
        .unwrap()
        .with_secp256k1_hex("evm", SECP_PRIVATE)
        .unwrap();
    let signer = ClaimSigner::new(Arc::new(backend), "xrp").await.unwrap();
    let channel = "5DB01B7FFED6B67E6B0414DED11E051D2EE2B7619CE0EAA6286D67A3A4D5BDB3";
    let secp_private_0x = format!("0x{SECP_PRIVATE}");
    let secrets = [SEED, SECP_PRIVATE, secp_private_0x.as_str()];
    let mut errors = Vec::new();
    for secret in secrets {
        // A 64-hex-character private key is indistinguishable from a channel id; only
        // check the inputs it is malformed for.
        if let Err(e) = signer.sign_claim(secret, "1").await {
            errors.push(e);
        }
        errors.push(signer.sign_claim(channel, secret).await.unwrap_err());
        errors.push(try_verify_claim(secret, "1", "00", "ED00").unwrap_err());
        errors.push(try_verify_claim(channel, "1", secret, "ED00").unwrap_err());
        errors.push(
            try_verify_claim(channel, "1", secret, &signer.public_key().to_string()).unwrap_err(),
        );
        errors.push(try_verify_claim(channel, "1", "00", secret).unwrap_err());
    }
    assert!(errors.len() >= 16);
    for e in errors {
        let texts = [e.to_string(), format!("{e:?}")];
        let core = keymgr_core::Error::from(e);
        for text in texts
            .into_iter()
            .chain([core.to_string(), format!("{core:?}")])
        {
            for secret in secrets {
                let upper = secret.to_uppercase();
                assert!(
                    !text.to_uppercase().contains(&upper[..16]),
                    "secret echoed in {text}"
                );
            }
        }
    }
    let debug = format!("{signer:?}");
    for secret in secrets {
        assert!(!debug.contains(secret), "{debug}");
    }
}
