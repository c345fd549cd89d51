//! [`SignContext`]: what an adapter says it is signing, recorded as typed audit fields.
//!
//! A hash alone does not tell an auditor what a signature authorized. Adapters
//! (`keymgr-evm`, `keymgr-xrp`) describe each request here and pass it with
//! [`KeyBackend::sign_with_context`](crate::KeyBackend::sign_with_context);
//! [`KeyManager`](crate::KeyManager) records it on the request and outcome entries.
//! Fields are public facts of the request (addresses, amounts, chain ids, hashes): never
//! secrets and never whole payloads.

use serde::{Deserialize, Serialize};

use crate::{SignPayload, VerifiedSignature};

/// What a signature request is for, as typed audit fields (JSON: an object with `kind`).
///
/// Addresses are `0x`-prefixed hex (EIP-55 checksummed for EVM), hashes lowercase hex
/// without prefix, big numbers (wei, `uint256` chain ids) decimal strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum SignContext {
    /// An EIP-191 personal message (`personal_sign`,
    /// <https://eips.ethereum.org/EIPS/eip-191>); chain-independent.
    EvmMessage {
        /// Length of the message in bytes (the message itself is not recorded).
        message_len: u64,
    },
    /// EIP-712 typed data (<https://eips.ethereum.org/EIPS/eip-712>).
    EvmTypedData {
        /// The primary type (`Permit`, `BalanceProof`, ...).
        primary_type: String,
        /// The domain separator's fields.
        domain: Eip712DomainContext,
    },
    /// An EVM transaction (the hash that was signed is its EIP-2718 signing hash).
    EvmTransaction {
        /// EIP-155 chain id (`None`: a legacy transaction signed without one).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        chain_id: Option<u64>,
        /// EIP-2718 transaction type (0 legacy, 1 EIP-2930, 2 EIP-1559, 3 EIP-4844,
        /// 4 EIP-7702).
        tx_type: u8,
        /// Recipient (`None`: contract creation).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
        /// Value in wei (decimal).
        value: String,
        /// Sender nonce.
        nonce: u64,
        /// keccak-256 signing hash of the unsigned transaction (hex): what the key
        /// signed.
        signing_hash: String,
        /// keccak-256 of the signed transaction's EIP-2718 encoding (hex): the
        /// transaction hash a node and a block explorer show
        /// (<https://eips.ethereum.org/EIPS/eip-2718>). It depends on the signature, so
        /// only the outcome entry of a produced signature carries it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tx_hash: Option<String>,
    },
    /// An EIP-7702 authorization (<https://eips.ethereum.org/EIPS/eip-7702>).
    EvmAuthorization {
        /// Chain id (decimal `uint256`; 0 = every chain).
        chain_id: String,
        /// The contract the account delegates to.
        address: String,
        /// The account nonce the authorization is valid for.
        nonce: u64,
    },
    /// A caller-supplied 32-byte digest, signed exactly as given (alloy's
    /// `Signer::sign_hash`, `keymgr sign --digest`, [`KeyManager::sign`](crate::KeyManager::sign)
    /// of a [`SignPayload::Prehash`] without a context): keymgr cannot tell what it
    /// commits to; `payload_sha256` of the entry identifies it.
    RawDigest {
        /// The chain id the signer was configured with, if any (the digest itself may
        /// or may not commit to it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        chain_id: Option<u64>,
    },
    /// A caller-supplied message, signed exactly as given (Ed25519 `keymgr sign
    /// --message`, [`KeyManager::sign`](crate::KeyManager::sign) of a
    /// [`SignPayload::Message`] without a context).
    RawMessage {
        /// Length of the message in bytes (the message itself is not recorded).
        message_len: u64,
    },
    /// An XRPL payment channel claim
    /// (<https://xrpl.org/docs/references/protocol/transactions/types/paymentchannelclaim>).
    XrpChannelClaim {
        /// The 256-bit channel id (uppercase hex, as XRPL prints it).
        channel_id: String,
        /// Cumulative amount authorized, in drops.
        amount_drops: u64,
    },
}

impl SignContext {
    /// The `kind` tag (`evm_transaction`, `xrp_channel_claim`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            SignContext::EvmMessage { .. } => "evm_message",
            SignContext::EvmTypedData { .. } => "evm_typed_data",
            SignContext::EvmTransaction { .. } => "evm_transaction",
            SignContext::EvmAuthorization { .. } => "evm_authorization",
            SignContext::RawDigest { .. } => "raw_digest",
            SignContext::RawMessage { .. } => "raw_message",
            SignContext::XrpChannelClaim { .. } => "xrp_channel_claim",
        }
    }

    /// What a payload signed without a context is: [`RawDigest`](Self::RawDigest)
    /// (no chain id) for a prehash, [`RawMessage`](Self::RawMessage) for a message.
    pub fn raw(payload: &SignPayload) -> Self {
        match payload {
            SignPayload::Prehash(_) => SignContext::RawDigest { chain_id: None },
            SignPayload::Message(m) => SignContext::RawMessage {
                message_len: m.len() as u64,
            },
        }
    }
}

/// Completes a request's [`SignContext`] for its outcome entry once the signature is
/// known: facts that depend on the signature, such as a signed transaction's hash
/// (`tx_hash` of [`SignContext::EvmTransaction`]).
///
/// Passed to [`KeyBackend::sign_with_outcome_context`](crate::KeyBackend::sign_with_outcome_context);
/// [`KeyManager`](crate::KeyManager) calls it on the verified signature before it
/// writes the `SIGN_SUCCESS` entry, in the same commit as the request (no extra write).
/// Any `Fn(&VerifiedSignature) -> SignContext` closure is one.
pub trait OutcomeContext: Send + Sync {
    /// The context to record on the success entry for `signature`.
    fn outcome_context(&self, signature: &VerifiedSignature) -> SignContext;
}

impl<F> OutcomeContext for F
where
    F: Fn(&VerifiedSignature) -> SignContext + Send + Sync,
{
    fn outcome_context(&self, signature: &VerifiedSignature) -> SignContext {
        self(signature)
    }
}

/// The fields of an EIP-712 domain that were present (EIP-712 `EIP712Domain`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Eip712DomainContext {
    /// `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `chainId` (decimal `uint256`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_id: Option<String>,
    /// `verifyingContract`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verifying_contract: Option<String>,
    /// `salt` (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_round_trips() {
        let c = SignContext::EvmTransaction {
            chain_id: Some(8453),
            tx_type: 2,
            to: None,
            value: "1000".into(),
            nonce: 7,
            signing_hash: "ab".repeat(32),
            tx_hash: None,
        };
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["kind"], c.kind());
        assert_eq!(v["chain_id"], 8453);
        assert!(v.get("to").is_none());
        assert_eq!(serde_json::from_value::<SignContext>(v).unwrap(), c);
        let claim = SignContext::XrpChannelClaim {
            channel_id: "5D".repeat(32),
            amount_drops: 1_000_000,
        };
        let text = serde_json::to_string(&claim).unwrap();
        assert_eq!(serde_json::from_str::<SignContext>(&text).unwrap(), claim);
        let bad = text.replace("amount_drops", "amount");
        assert!(serde_json::from_str::<SignContext>(&bad).is_err());
    }

    #[test]
    fn raw_payloads_say_what_they_are() {
        let digest = SignContext::raw(&SignPayload::Prehash([1; 32]));
        assert_eq!(digest, SignContext::RawDigest { chain_id: None });
        assert_eq!(
            serde_json::to_value(&digest).unwrap(),
            serde_json::json!({"kind": "raw_digest"})
        );
        let message = SignContext::raw(&SignPayload::message(vec![0; 5]));
        assert_eq!(
            serde_json::to_value(&message).unwrap(),
            serde_json::json!({"kind": "raw_message", "message_len": 5})
        );
        let with_chain = SignContext::RawDigest {
            chain_id: Some(8453),
        };
        let v = serde_json::to_value(&with_chain).unwrap();
        assert_eq!(v["kind"], with_chain.kind());
        assert_eq!(
            serde_json::from_value::<SignContext>(v).unwrap(),
            with_chain
        );
    }
}
