//! A signer over an audited KeyManager, and reading its log back, for the EVM tests.

// Each test binary uses a part of it (the log handle only keeps the writer alive in some).
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use alloy_primitives::{Address, address};
use alloy_signer::Signer as _;
use keymgr_audit::{AuditLog, ChainKey, TimeRange, Verifier};
use keymgr_core::{KeyBackend, KeyManager};
use keymgr_env::EnvBackend;
use keymgr_evm::EvmSigner;
use keymgr_testkit::TempDir;
use serde_json::Value;

/// web3.js documentation key (public test vector) and its address.
pub const KEY: &str = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
pub const ADDRESS: Address = address!("2c7536E3605D9C16a7a3D7b1898e529396a65c23");

/// An EvmSigner for [`KEY`] over a KeyManager that writes a durable log in `dir`.
pub struct Logged {
    pub dir: TempDir,
    pub log: AuditLog,
    pub signer: EvmSigner,
}

/// A [`Logged`] signer in a new directory tagged `tag`, for `chain_id`.
pub async fn logged(tag: &str, chain_id: Option<u64>) -> Logged {
    let dir = TempDir::new(tag);
    let mut config = keymgr_audit::AuditConfig::new(dir.path());
    config.node_id = "evm-test".into();
    let log = AuditLog::open_with(&config, ChainKey::sha256()).unwrap();
    let env = EnvBackend::new().with_secp256k1_hex("evm", KEY).unwrap();
    let manager: Arc<dyn KeyBackend> = Arc::new(
        KeyManager::recommended(Arc::new(env))
            .audit(Arc::new(log.clone()))
            .build(),
    );
    let mut signer = EvmSigner::new(manager, "evm").await.unwrap();
    signer.set_chain_id(chain_id);
    assert_eq!(signer.address(), ADDRESS);
    Logged { dir, log, signer }
}

/// Every entry, through `keymgr_audit::export` (which verifies the chain as it reads).
pub fn exported(dir: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    let report = keymgr_audit::export(
        &[dir],
        TimeRange::parse(None, None).unwrap(),
        &Verifier::new(ChainKey::sha256()),
        &mut out,
    )
    .unwrap();
    assert!(report.broken.is_none(), "{report:?}");
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
