//! Sign a payment-channel balance proof (EIP-712) with a key held by keymgr, and check it
//! the way the channel contract does.
//!
//! ```sh
//! cargo run -p keymgr-evm --example balance_proof                # throwaway key
//! EVM_PRIVATE_KEY=0x... cargo run -p keymgr-evm --example balance_proof
//! ```
//!
//! With a KMS or HSM backend only the first lines change: build that provider's backend
//! instead of `EnvBackend`.

use std::sync::Arc;

use alloy_dyn_abi::eip712::TypedData;
use alloy_primitives::{B256, U256, address, keccak256};
use alloy_signer::Signer as _;
use alloy_sol_types::SolStruct as _;
use keymgr_core::{KeyBackend, KeyManager};
use keymgr_env::EnvBackend;
use keymgr_evm::EvmSigner;
use keymgr_evm::payment_channel::{BASE_CHAIN_ID, BalanceProof, domain};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let backend: Arc<dyn KeyBackend> = match std::env::var_os(keymgr_env::EVM_PRIVATE_KEY) {
        Some(_) => Arc::new(EnvBackend::from_env()?),
        None => {
            eprintln!("EVM_PRIVATE_KEY is not set: using a throwaway key");
            Arc::new(EnvBackend::generate())
        }
    };
    let manager = Arc::new(KeyManager::new(backend));
    let signer = EvmSigner::new(manager, keymgr_env::DEFAULT_EVM_KEY)
        .await?
        .with_chain_id(Some(BASE_CHAIN_ID));
    println!("payer:   {} (key {})", signer.address(), signer.key());

    let channel_contract = address!("5FbDB2315678afecb367f032d93F642f64180aa3");
    let domain = domain(BASE_CHAIN_ID, channel_contract);
    let proof = BalanceProof {
        channelId: keccak256("example channel"),
        transferredAmount: U256::from(1_500_000u64), // 1.5 USDC, 6 decimals
        lockedAmount: U256::ZERO,
        locksroot: B256::ZERO,
        nonce: U256::from(1u64),
    };

    // What a wallet would be asked to sign (eth_signTypedData_v4).
    let typed = TypedData::from_struct(&proof, Some(domain.clone()));
    println!("typed data:\n{}", serde_json::to_string_pretty(&typed)?);

    let signature = signer.sign_typed_data(&proof, &domain).await?;
    println!(
        "signature: 0x{}",
        alloy_primitives::hex::encode(signature.as_bytes())
    );

    // The contract side: recover the payer from the EIP-712 signing hash.
    let hash = proof.eip712_signing_hash(&domain);
    assert_eq!(typed.eip712_signing_hash()?, hash);
    let payer = signature.recover_address_from_prehash(&hash)?;
    assert_eq!(payer, signer.address());
    println!("recovered payer {payer}: the proof is valid");
    Ok(())
}
