//! EIP-7702 authorizations: the tuple an EOA signs to delegate its code to a contract.

use alloy_eips::eip7702::{Authorization, SignedAuthorization};
use alloy_primitives::{Address, U256};
use keymgr_core::{KeyBackend, Result, SignContext};

use crate::EvmSigner;

impl<B: KeyBackend> EvmSigner<B> {
    /// Signs an EIP-7702 authorization (<https://eips.ethereum.org/EIPS/eip-7702>):
    /// keccak-256(`0x05` ‖ rlp([chain_id, address, nonce])), returned with its y parity,
    /// r and s. `chain_id` 0 makes the authorization valid on every chain; `nonce` is the
    /// signing account's nonce at the time the authorization is used.
    pub async fn sign_authorization(
        &self,
        chain_id: U256,
        address: Address,
        nonce: u64,
    ) -> Result<SignedAuthorization> {
        let context = SignContext::EvmAuthorization {
            chain_id: chain_id.to_string(),
            address: address.to_checksum(None),
            nonce,
        };
        let authorization = Authorization {
            chain_id,
            address,
            nonce,
        };
        let signature = self
            .sign_prehash_in(&authorization.signature_hash(), &context)
            .await?;
        Ok(authorization.into_signed(signature))
    }
}
