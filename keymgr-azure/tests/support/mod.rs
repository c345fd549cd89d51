//! Shared set-up: the in-process Key Vault stand-in and a backend configured the way a
//! user would (the `AZURE_*` variables through `from_vars`, the stand-in's CA through
//! `SSL_CERT_FILE`), with the client-secret credential against the stand-in's token
//! endpoint (`AZURE_AUTHORITY_HOST`).

#![allow(dead_code, unused_imports)]

use std::collections::BTreeMap;
use std::sync::Arc;

use keymgr_azure::{AzureKvBackend, AzureKvConfig};
pub use keymgr_testkit::azure::{CLIENT_ID, Fault, StandIn, TENANT_ID};

/// The client secret the stand-in accepts; tests check it never leaks.
pub const SECRET: &str = "kv-standin-SECRET-7f3a9c2e";

/// The variables a user would set for `stand_in`, plus `extra`.
pub fn vars(stand_in: &StandIn, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut v: BTreeMap<String, String> = [
        ("AZURE_VAULT_URL", stand_in.url()),
        ("AZURE_AUTHORITY_HOST", stand_in.url()),
        ("AZURE_TENANT_ID", TENANT_ID.to_owned()),
        ("AZURE_CLIENT_ID", CLIENT_ID.to_owned()),
        ("AZURE_CLIENT_SECRET", SECRET.to_owned()),
        ("SSL_CERT_FILE", stand_in.ca_file().display().to_string()),
        // The stand-in is not under *.vault.azure.net.
        (
            "AZURE_KEYVAULT_VERIFY_CHALLENGE_RESOURCE",
            "false".to_owned(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (k, val) in extra {
        v.insert((*k).to_owned(), (*val).to_owned());
    }
    v
}

/// The configuration for `vars`.
pub fn config(vars: &BTreeMap<String, String>) -> AzureKvConfig {
    AzureKvConfig::from_vars(|n| vars.get(n).cloned()).expect("config")
}

/// A backend for `stand_in` serving `evm`/`xrp` as given (`NAME` or `NAME/VERSION`).
pub fn backend(stand_in: &StandIn, evm: &str, xrp: &str) -> Arc<AzureKvBackend> {
    let v = vars(
        stand_in,
        &[("AZURE_EVM_KEY_NAME", evm), ("AZURE_XRP_KEY_NAME", xrp)],
    );
    Arc::new(AzureKvBackend::new(config(&v)).expect("backend"))
}

/// A stand-in with secp256k1 keys `evm-signer` and `xrp-signer`, and a backend for them.
pub async fn fixture() -> (StandIn, Arc<AzureKvBackend>) {
    let stand_in = StandIn::start(SECRET).await;
    stand_in.create_secp256k1("evm-signer");
    stand_in.create_secp256k1("xrp-signer");
    let b = backend(&stand_in, "evm-signer", "xrp-signer");
    (stand_in, b)
}
