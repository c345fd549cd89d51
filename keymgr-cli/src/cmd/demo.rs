//! `keymgr demo`: a tour on throwaway dev keys that needs no configuration. Signs an
//! EIP-191 message and an XRP Ledger payment-channel claim through a `KeyManager` with a
//! hash-chained audit log, then checks each result with independent code: alloy's
//! recovery, rippled's claim verification rules, and the audit chain verifier. The audit
//! log stays in a directory the output names, and the output ends with next steps.

use std::path::PathBuf;
use std::sync::Arc;

use alloy_signer::Signer as _;
use keymgr::audit::{AuditConfig, AuditLog, ChainKey};
use keymgr::{KeyBackend, KeyManager};
use keymgr_env::EnvBackend;
use keymgr_evm::EvmSigner;
use keymgr_xrp::ClaimSigner;
use serde_json::json;

use crate::Output;

const MESSAGE: &str = "keymgr demo: settle batch 42";
const CHANNEL: &str = "5DB01B7FFED6B67E6B0414DED11E051D2EE2B7619CE0EAA6286D67A3A4D5BDB3";
const DROPS: u64 = 1_000_000;

/// `keymgr demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Directory for the demo's audit log (created 0700; an existing log is continued).
    /// Default: a new directory `keymgr-demo-<time>-<pid>` under the system temp dir.
    #[arg(long, value_name = "DIR")]
    audit_dir: Option<PathBuf>,
}

/// What to do after the demo: point keymgr at real keys.
const NEXT_STEPS: &str = "\
next steps:
  - inspect the audit log:    keymgr audit verify {AUDIT} && keymgr audit export {AUDIT}
  - a PKCS#11 HSM:            export KEY_BACKEND=hsm HSM_PKCS11_LIBRARY_PATH=/usr/lib/softhsm/libsofthsm2.so
                              HSM_TOKEN_LABEL=... HSM_PIN=... HSM_EVM_KEY_LABEL=...; keymgr public-key --key evm
  - AWS KMS:                  export KEY_BACKEND=aws-kms AWS_REGION=... AWS_KMS_EVM_KEY_ID=alias/...;
                              keymgr public-key --key evm   (GCP: gcp-kms, Azure: azure-kv)
  - a local SoftHSM2 + moto:  cargo xtask provision   (prints the variables to export; --stop stops them)
  - every variable:           .env.example; per-backend quick starts: README.md";

pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<Output> {
    let mut text = String::new();
    let mut say = |line: String| {
        text.push_str(&line);
        text.push('\n');
    };

    // 1. Keys that exist only in this process: secp256k1 for EVM, Ed25519 for XRPL.
    let backend: Arc<dyn KeyBackend> = Arc::new(EnvBackend::generate());
    say("1. generated throwaway keys in the env backend: evm (secp256k1), xrp (Ed25519)".into());

    // 2. A KeyManager that audits every operation into a hash-chained log.
    let audit_dir = args.audit_dir.unwrap_or_else(default_audit_dir);
    let log = Arc::new(AuditLog::open_with(
        &AuditConfig::new(&audit_dir),
        ChainKey::sha256(),
    )?);
    let manager: Arc<dyn KeyBackend> = Arc::new(
        KeyManager::recommended(backend)
            .audit(log.clone())
            .actor("keymgr-demo")
            .build(),
    );
    say(format!(
        "2. KeyManager with an audit log in {}",
        audit_dir.display()
    ));

    // 3. EIP-191 through the alloy signer; recovered by alloy.
    let evm = EvmSigner::new(manager.clone(), "evm").await?;
    let signature = evm.sign_message(MESSAGE.as_bytes()).await?;
    let recovered = signature.recover_address_from_msg(MESSAGE)?;
    anyhow::ensure!(
        recovered == evm.address(),
        "EIP-191 signature recovered to {recovered}"
    );
    let evm_sig = format!("0x{}", hex::encode(signature.as_bytes()));
    say(format!(
        "3. EIP-191 \"{MESSAGE}\"\n   address   {}\n   signature {evm_sig}\n   alloy recovers the address: ok",
        evm.address()
    ));

    // 4. An XRPL payment-channel claim; checked by the backend-free verifier.
    let claims = ClaimSigner::new(manager.clone(), "xrp").await?;
    let claim_sig = claims.sign_claim(CHANNEL, DROPS).await?;
    let public_key = claims.public_key().to_hex();
    anyhow::ensure!(
        keymgr_xrp::verify_claim(CHANNEL, DROPS, &claim_sig, &public_key),
        "claim signature does not verify"
    );
    anyhow::ensure!(
        !keymgr_xrp::verify_claim(CHANNEL, DROPS + 1, &claim_sig, &public_key),
        "a tampered amount verified"
    );
    say(format!(
        "4. XRP claim: channel {CHANNEL}, {DROPS} drops\n   account   {}\n   public key {public_key}\n   signature {claim_sig}\n   verify_claim: ok (and a tampered amount fails)",
        claims.account_address()
    ));

    // 5. The audit chain verifies.
    log.flush().await?;
    let report = log.verifier().verify_paths(&[&audit_dir])?;
    if let Some(broken) = &report.broken {
        anyhow::bail!(keymgr::Error::integrity(
            "audit",
            format!(
                "the demo's audit chain in {} does not verify: {broken}",
                audit_dir.display()
            )
        ));
    }
    say(format!(
        "5. audit log: {} entries, hash chain verifies (last seq {}); kept in {}",
        report.entries,
        report.last_seq.unwrap_or_default(),
        audit_dir.display()
    ));
    say(String::new());
    say(NEXT_STEPS.replace("{AUDIT}", &audit_dir.display().to_string()));

    Ok(Output::new(
        json!({
            "backend": "env",
            "evm": { "address": evm.address().to_checksum(None), "message": MESSAGE, "signature": evm_sig, "verified": true },
            "xrp": { "account": claims.account_address(), "public_key": public_key, "channel": CHANNEL, "drops": DROPS, "signature": claim_sig, "verified": true },
            "audit": { "path": audit_dir.display().to_string(), "entries": report.entries, "chain_verified": true },
        }),
        text,
    ))
}

/// `$TMPDIR/keymgr-demo-<unix seconds>-<pid>`: new for every run.
fn default_audit_dir() -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    std::env::temp_dir().join(format!("keymgr-demo-{secs}-{}", std::process::id()))
}
