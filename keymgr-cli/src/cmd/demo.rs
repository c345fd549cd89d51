//! `keymgr demo`: signs with throwaway dev keys and verifies independently.

use keymgr::{KeyBackend as _, KeyManager, KeyRef, SignPayload};
use keymgr_env::EnvBackend;
use serde_json::json;

use crate::Output;

pub(crate) async fn run() -> anyhow::Result<Output> {
    let backend = std::sync::Arc::new(EnvBackend::generate());
    let manager = KeyManager::builder(backend).build();
    let evm = KeyRef::new("evm");
    let xrp = KeyRef::new("xrp");
    let digest = [0x11u8; 32];
    let sig = manager.sign(&evm, &SignPayload::Prehash(digest)).await?;
    let pk = manager.public_key(&evm).await?;
    pk.verify(&SignPayload::Prehash(digest), &sig)?;
    let msg = SignPayload::message(b"keymgr demo".to_vec());
    let xsig = manager.sign(&xrp, &msg).await?;
    manager.public_key(&xrp).await?.verify(&msg, &xsig)?;
    Ok(Output::new(
        json!({ "backend": manager.name(), "evm_signature": hex::encode(sig.to_bytes()), "xrp_signature": hex::encode(xsig.to_bytes()) }),
        "demo signed and verified",
    ))
}
