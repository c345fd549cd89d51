//! The audit context of each kind of EVM signature ([`SignContext`]): what an auditor
//! needs to know what a signature authorized, without the payload itself.

use alloy_consensus::SignableTransaction;
use alloy_primitives::{Signature, TxKind};
use alloy_sol_types::Eip712Domain;
use keymgr_core::{Eip712DomainContext, SignContext};

/// A transaction's chain id, type, recipient, value, nonce and signing hash.
pub(crate) fn transaction(tx: &dyn SignableTransaction<Signature>) -> SignContext {
    SignContext::EvmTransaction {
        chain_id: tx.chain_id(),
        tx_type: tx.ty(),
        to: match tx.kind() {
            TxKind::Call(to) => Some(to.to_checksum(None)),
            TxKind::Create => None,
        },
        value: tx.value().to_string(),
        nonce: tx.nonce(),
        signing_hash: hex::encode(tx.signature_hash()),
    }
}

/// An EIP-712 signature's primary type and domain.
pub(crate) fn typed_data(primary_type: &str, domain: &Eip712Domain) -> SignContext {
    SignContext::EvmTypedData {
        primary_type: primary_type.to_owned(),
        domain: Eip712DomainContext {
            name: domain.name.as_deref().map(str::to_owned),
            version: domain.version.as_deref().map(str::to_owned),
            chain_id: domain.chain_id.map(|c| c.to_string()),
            verifying_contract: domain.verifying_contract.map(|a| a.to_checksum(None)),
            salt: domain.salt.map(hex::encode),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_consensus::TxEip1559;
    use alloy_primitives::{Address, U256, address};

    #[test]
    fn transaction_fields() {
        let to = address!("0x000000000000000000000000000000000000dEaD");
        let tx = TxEip1559 {
            chain_id: 8453,
            nonce: 9,
            to: TxKind::Call(to),
            value: U256::from(1_000_000_000u64),
            ..Default::default()
        };
        let SignContext::EvmTransaction {
            chain_id,
            tx_type,
            to: recorded,
            value,
            nonce,
            signing_hash,
        } = transaction(&tx)
        else {
            panic!("not a transaction context");
        };
        assert_eq!(chain_id, Some(8453));
        assert_eq!(tx_type, 2);
        assert_eq!(recorded.as_deref(), Some(to.to_checksum(None).as_str()));
        assert_eq!(value, "1000000000");
        assert_eq!(nonce, 9);
        assert_eq!(signing_hash, hex::encode(tx.signature_hash()));
        let create = TxEip1559 {
            to: TxKind::Create,
            ..tx
        };
        assert!(matches!(
            transaction(&create),
            SignContext::EvmTransaction { to: None, .. }
        ));
    }

    #[test]
    fn typed_data_domain() {
        let domain = crate::payment_channel::domain(8453, Address::repeat_byte(0x11));
        let SignContext::EvmTypedData {
            primary_type,
            domain: d,
        } = typed_data("BalanceProof", &domain)
        else {
            panic!("not a typed data context");
        };
        assert_eq!(primary_type, "BalanceProof");
        assert_eq!(d.name.as_deref(), Some(crate::payment_channel::DOMAIN_NAME));
        assert_eq!(d.chain_id.as_deref(), Some("8453"));
        assert_eq!(
            d.verifying_contract,
            Some(Address::repeat_byte(0x11).to_checksum(None))
        );
        assert_eq!(d.salt, None);
    }
}
