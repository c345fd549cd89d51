//! EIP-712 types for payment-channel balance proofs.
//!
//! A balance proof is what the payer in a unidirectional payment channel signs off-chain
//! each time it pays: the contract at `verifyingContract` later accepts the latest proof
//! (highest `nonce`) to settle the channel. The EIP-712 domain is
//! `{ name: "PaymentChannel", version: "1", chainId, verifyingContract }`
//! ([`domain`]); chain id 8453 is Base mainnet ([`BASE_CHAIN_ID`]).
//!
//! The Solidity side hashes the same struct:
//!
//! ```solidity
//! bytes32 constant BALANCE_PROOF_TYPEHASH = keccak256(
//!     "BalanceProof(bytes32 channelId,uint256 transferredAmount,uint256 lockedAmount,bytes32 locksroot,uint256 nonce)"
//! );
//! bytes32 structHash = keccak256(abi.encode(
//!     BALANCE_PROOF_TYPEHASH, channelId, transferredAmount, lockedAmount, locksroot, nonce
//! ));
//! address signer = ECDSA.recover(_hashTypedDataV4(structHash), signature); // OpenZeppelin EIP712
//! ```

use alloy_primitives::Address;
use alloy_sol_types::{Eip712Domain, eip712_domain};

/// The EIP-712 domain name.
pub const DOMAIN_NAME: &str = "PaymentChannel";
/// The EIP-712 domain version.
pub const DOMAIN_VERSION: &str = "1";
/// Base mainnet, the chain the payment-channel contracts are deployed on.
pub const BASE_CHAIN_ID: u64 = 8453;

alloy_sol_types::sol! {
    /// An off-chain balance proof for one payment channel.
    ///
    /// Solidity types, and why:
    /// - `channelId` — `bytes32`: channel ids are hashes (e.g. `keccak256(payer, payee,
    ///   salt)`), 32 bytes like every on-chain identifier of that kind.
    /// - `transferredAmount` — `uint256`: the cumulative amount paid so far, in the
    ///   token's base units (wei for ETH, 10^-6 for USDC); monotonically increasing.
    ///   `uint256` because that is what ERC-20 balances and `msg.value` are.
    /// - `lockedAmount` — `uint256`: the sum of pending conditional (hash-locked) transfers.
    /// - `locksroot` — `bytes32`: the Merkle root of those pending locks
    ///   (`bytes32(0)` when there are none).
    /// - `nonce` — `uint256`: strictly increasing per channel; the contract keeps the
    ///   proof with the highest nonce, so an older proof can never replace a newer one.
    ///
    /// Serde uses the Solidity field names, so `TypedData::from_struct(&proof, Some(domain))`
    /// gives the JSON that `eth_signTypedData_v4` takes.
    #[derive(Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
    struct BalanceProof {
        /// The channel this proof is for.
        bytes32 channelId;
        /// Cumulative amount transferred to the payee, in token base units.
        uint256 transferredAmount;
        /// Amount in pending hash-locked transfers.
        uint256 lockedAmount;
        /// Merkle root of the pending locks (zero when none).
        bytes32 locksroot;
        /// Strictly increasing per channel.
        uint256 nonce;
    }
}

/// The payment-channel EIP-712 domain for the contract at `verifying_contract` on
/// `chain_id` (normally [`BASE_CHAIN_ID`]).
pub fn domain(chain_id: u64, verifying_contract: Address) -> Eip712Domain {
    eip712_domain! {
        name: DOMAIN_NAME,
        version: DOMAIN_VERSION,
        chain_id: chain_id,
        verifying_contract: verifying_contract,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::{B256, U256, address, keccak256};
    use alloy_sol_types::SolStruct as _;

    #[test]
    fn type_hash_is_the_documented_solidity_string() {
        let expected = keccak256(
            "BalanceProof(bytes32 channelId,uint256 transferredAmount,uint256 lockedAmount,bytes32 locksroot,uint256 nonce)",
        );
        assert_eq!(BalanceProof::default().eip712_type_hash(), expected);
    }

    /// The signing hash written out by hand from the EIP-712 definition (`"\x19\x01" ‖
    /// domainSeparator ‖ hashStruct`), independent of the `sol!` code path.
    #[test]
    fn signing_hash_matches_the_eip712_definition() {
        let contract = address!("1111111111111111111111111111111111111111");
        let proof = BalanceProof {
            channelId: B256::repeat_byte(0xc1),
            transferredAmount: U256::from(1_500_000u64),
            lockedAmount: U256::from(250u64),
            locksroot: B256::ZERO,
            nonce: U256::from(7u64),
        };
        let word = |v: U256| v.to_be_bytes::<32>();
        let mut domain_enc = Vec::new();
        domain_enc.extend(keccak256(
            "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)",
        ));
        domain_enc.extend(keccak256("PaymentChannel"));
        domain_enc.extend(keccak256("1"));
        domain_enc.extend(word(U256::from(8453u64)));
        domain_enc.extend([0u8; 12]);
        domain_enc.extend(contract.as_slice());
        let separator = keccak256(&domain_enc);

        let mut struct_enc = Vec::new();
        struct_enc.extend(keccak256(
            "BalanceProof(bytes32 channelId,uint256 transferredAmount,uint256 lockedAmount,bytes32 locksroot,uint256 nonce)",
        ));
        struct_enc.extend(proof.channelId);
        struct_enc.extend(word(proof.transferredAmount));
        struct_enc.extend(word(proof.lockedAmount));
        struct_enc.extend(proof.locksroot);
        struct_enc.extend(word(proof.nonce));
        let struct_hash = keccak256(&struct_enc);

        let mut digest_input = vec![0x19, 0x01];
        digest_input.extend(separator);
        digest_input.extend(struct_hash);
        let expected = keccak256(&digest_input);

        let d = domain(BASE_CHAIN_ID, contract);
        assert_eq!(d.separator(), separator);
        assert_eq!(proof.eip712_signing_hash(&d), expected);
    }
}
