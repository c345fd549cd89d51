//! The newcomer's tour of keymgr, on throwaway dev keys that need no configuration: an
//! EIP-191 message and an XRP Ledger payment-channel claim signed through a
//! [`KeyManager`] with a hash-chained audit log, each result checked by independent code
//! (alloy's recovery, rippled's claim verification rules, the audit chain verifier). The
//! audit log stays in a directory the tour names, and the text ends with next steps.
//!
//! [`run`] is `keymgr demo`; the `keymgr-demo` binary runs it alone, so that a newcomer's
//! first command (`cargo run -p keymgr-demo`) compiles only what the tour needs: no
//! command-line parser, no provider SDK, no configuration-file reader, no transaction
//! stack.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use alloy_signer::Signer as _;
use keymgr_audit::{AuditConfig, AuditLog, ChainKey};
use keymgr_core::{Error, KeyBackend, KeyManager, Result};
use keymgr_env::EnvBackend;
use keymgr_evm::EvmSigner;
use keymgr_xrp::ClaimSigner;
use serde_json::{Value, json};

/// The EIP-191 message the tour signs.
pub const MESSAGE: &str = "keymgr demo: settle batch 42";
/// The payment channel (256-bit id, uppercase hex as XRPL prints it) of the tour's claim.
pub const CHANNEL: &str = "5DB01B7FFED6B67E6B0414DED11E051D2EE2B7619CE0EAA6286D67A3A4D5BDB3";
/// The claim's cumulative amount, in drops.
pub const DROPS: u64 = 1_000_000;

/// What to do after the tour: point keymgr at real keys.
const NEXT_STEPS: &str = "\
next steps:
  - inspect the audit log:    keymgr audit verify {AUDIT} && keymgr audit export {AUDIT}
  - a PKCS#11 HSM:            export KEY_BACKEND=hsm HSM_PKCS11_LIBRARY_PATH=/usr/lib/softhsm/libsofthsm2.so
                              HSM_TOKEN_LABEL=... HSM_PIN=... HSM_EVM_KEY_LABEL=...; keymgr public-key --key evm
  - AWS KMS:                  export KEY_BACKEND=aws-kms AWS_REGION=... AWS_KMS_EVM_KEY_ID=alias/...;
                              keymgr public-key --key evm   (GCP: gcp-kms, Azure: azure-kv)
  - a local SoftHSM2 + moto:  cargo xtask provision   (prints the variables to export; --stop stops them)
  - the keymgr CLI:           cargo install --path keymgr-cli   (every backend and command)
  - every variable:           .env.example; per-backend quick starts: README.md";

/// The tour's results.
#[derive(Debug)]
pub struct Demo {
    /// What happened, step by step, for people; ends with the next steps.
    pub text: String,
    /// The same as JSON (`keymgr demo --json`): `backend`, `evm`, `xrp`, `audit`.
    pub json: Value,
}

/// Runs the tour, keeping its audit log in `audit_dir` (created 0700; an existing log is
/// continued), or by default in a new directory `keymgr-demo-<unix seconds>-<pid>` under
/// the system temp dir.
///
/// # Errors
/// The audit log's errors (the directory cannot be created or locked, I/O), and
/// [`Error::Integrity`] if a signature or the audit chain does not verify.
pub async fn run(audit_dir: Option<PathBuf>) -> Result<Demo> {
    let mut text = String::new();
    let mut say = |line: String| {
        text.push_str(&line);
        text.push('\n');
    };

    // 1. Keys that exist only in this process: secp256k1 for EVM, Ed25519 for XRPL.
    let backend: Arc<dyn KeyBackend> = Arc::new(EnvBackend::generate());
    say("1. generated throwaway keys in the env backend: evm (secp256k1), xrp (Ed25519)".into());

    // 2. A KeyManager that audits every operation into a hash-chained log.
    let audit_dir = audit_dir.unwrap_or_else(default_audit_dir);
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
    let signature = evm
        .sign_message(MESSAGE.as_bytes())
        .await
        .map_err(|e| failed("EIP-191 signing", e))?;
    let recovered = signature
        .recover_address_from_msg(MESSAGE)
        .map_err(|e| failed("EIP-191 recovery", e))?;
    if recovered != evm.address() {
        return Err(Error::integrity(
            "evm",
            format!("the EIP-191 signature recovered to {recovered}"),
        ));
    }
    let evm_sig = format!("0x{}", hex::encode(signature.as_bytes()));
    say(format!(
        "3. EIP-191 \"{MESSAGE}\"\n   address   {}\n   signature {evm_sig}\n   alloy recovers the address: ok",
        evm.address()
    ));

    // 4. An XRPL payment-channel claim; checked by the backend-free verifier.
    let claims = ClaimSigner::new(manager.clone(), "xrp").await?;
    let claim_sig = claims.sign_claim(CHANNEL, DROPS).await?;
    let public_key = claims.public_key().to_hex();
    if !keymgr_xrp::verify_claim(CHANNEL, DROPS, &claim_sig, &public_key) {
        return Err(Error::integrity(
            "xrp",
            "the claim signature does not verify",
        ));
    }
    if keymgr_xrp::verify_claim(CHANNEL, DROPS + 1, &claim_sig, &public_key) {
        return Err(Error::integrity("xrp", "a tampered claim amount verified"));
    }
    say(format!(
        "4. XRP claim: channel {CHANNEL}, {DROPS} drops\n   account   {}\n   public key {public_key}\n   signature {claim_sig}\n   verify_claim: ok (and a tampered amount fails)",
        claims.account_address()
    ));

    // 5. The audit chain verifies.
    log.flush().await?;
    let report = log.verifier().verify_paths(&[&audit_dir])?;
    if let Some(broken) = &report.broken {
        return Err(Error::integrity(
            "audit",
            format!(
                "the demo's audit chain in {} does not verify: {broken}",
                audit_dir.display()
            ),
        ));
    }
    say(format!(
        "5. audit log: {} entries, hash chain verifies (last seq {}); kept in {}",
        report.entries,
        report.last_seq.unwrap_or_default(),
        audit_dir.display()
    ));
    say(String::new());
    say(next_steps(&audit_dir));

    let json = json!({
        "backend": "env",
        "evm": { "address": evm.address().to_checksum(None), "message": MESSAGE, "signature": evm_sig, "verified": true },
        "xrp": { "account": claims.account_address(), "public_key": public_key, "channel": CHANNEL, "drops": DROPS, "signature": claim_sig, "verified": true },
        "audit": { "path": audit_dir.display().to_string(), "entries": report.entries, "chain_verified": true },
    });
    Ok(Demo { text, json })
}

fn next_steps(audit_dir: &Path) -> String {
    NEXT_STEPS.replace("{AUDIT}", &audit_dir.display().to_string())
}

/// An alloy signer error, as keymgr's own error when it carries one.
fn failed(what: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::backend("evm", format!("{what} failed: {e}"), Some(Box::new(e)))
}

/// `$TMPDIR/keymgr-demo-<unix seconds>-<pid>`: new for every run.
fn default_audit_dir() -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    std::env::temp_dir().join(format!("keymgr-demo-{secs}-{}", std::process::id()))
}
