//! The audit context of each kind of EVM signature ([`SignContext`]): what an auditor
//! needs to know what a signature authorized, without the payload itself.

#[cfg(feature = "tx")]
use alloy_consensus::{SignableTransaction, TypedTransaction};
#[cfg(feature = "tx")]
use alloy_eips::Typed2718 as _;
#[cfg(feature = "tx")]
use alloy_primitives::{B256, Signature, TxKind};
#[cfg(feature = "eip712")]
use alloy_sol_types::Eip712Domain;
#[cfg(feature = "eip712")]
use keymgr_core::Eip712DomainContext;
use keymgr_core::SignContext;
#[cfg(feature = "tx")]
use keymgr_core::{Error, OutcomeContext, VerifiedSignature};

/// A transaction's chain id, type, recipient, value, nonce and signing hash (the
/// transaction hash is added once the signature exists, by [`SignedTxHash`]).
#[cfg(feature = "tx")]
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
        tx_hash: None,
    }
}

/// Completes a transaction's context with the hash of the signed EIP-2718 envelope
/// (keccak-256 of what `eth_sendRawTransaction` takes), computed by alloy from the
/// signature the backend returned.
#[cfg(feature = "tx")]
pub(crate) struct SignedTxHash {
    tx: TypedTransaction,
    context: SignContext,
}

#[cfg(feature = "tx")]
impl SignedTxHash {
    /// Reads `tx` back from its signing encoding as one of Ethereum's transaction types
    /// (alloy's `TypedTransaction::decode_unsigned`), so that its signed envelope can be
    /// hashed once the signature exists. Refused (nothing is signed) when that is not
    /// possible: a type other than 0 to 4, an encoding alloy does not read back to the
    /// same bytes (the audit entry could not name the transaction hash), or an encoding
    /// of another type than the transaction's own.
    pub(crate) fn new(
        tx: &dyn SignableTransaction<Signature>,
        context: SignContext,
    ) -> Result<Self, Error> {
        let encoded = tx.encoded_for_signing();
        let mut rest = encoded.as_slice();
        let refused = |why: String| {
            Error::unsupported(
                "evm",
                "sign_transaction",
                format!(
                    "a type {} transaction cannot be signed with an audited transaction hash: {why}",
                    tx.ty()
                ),
            )
        };
        let decoded = TypedTransaction::decode_unsigned(&mut rest)
            .map_err(|e| refused(format!("alloy cannot read its signing encoding back ({e})")))?;
        if !rest.is_empty() || decoded.encoded_for_signing() != encoded {
            return Err(refused(
                "its signing encoding does not read back to the same transaction".into(),
            ));
        }
        // A transaction that names one type and encodes as another would be signed as
        // something other than what it (and its audit entry) says it is.
        if decoded.ty() != tx.ty() {
            return Err(refused(format!(
                "its signing encoding is a type {} transaction",
                decoded.ty()
            )));
        }
        Ok(Self {
            tx: decoded,
            context,
        })
    }

    /// The hash of the transaction signed with `signature`.
    pub(crate) fn tx_hash(&self, signature: Signature) -> B256 {
        *self.tx.clone().into_envelope(signature).tx_hash()
    }
}

#[cfg(feature = "tx")]
impl OutcomeContext for SignedTxHash {
    fn outcome_context(&self, signature: &VerifiedSignature) -> SignContext {
        let mut context = self.context.clone();
        // A signature without a y parity (x-reduced recovery id) is refused by the
        // signer after this; its entry then has no transaction hash (there is none).
        if let (Some(sig), Some(id)) = (signature.as_secp256k1(), signature.recovery_id())
            && !id.is_x_reduced()
            && let SignContext::EvmTransaction { tx_hash, .. } = &mut context
        {
            let sig = Signature::from_signature_and_parity(*sig.as_k256(), id.is_y_odd());
            *tx_hash = Some(hex::encode(self.tx_hash(sig)));
        }
        context
    }
}

/// An EIP-712 signature's primary type and domain.
#[cfg(feature = "eip712")]
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

    #[cfg(feature = "tx")]
    #[test]
    fn transaction_fields() {
        use alloy_consensus::TxEip1559;
        use alloy_primitives::{U256, address};

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
            tx_hash,
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
        assert_eq!(tx_hash, None, "known only once signed");
        let create = TxEip1559 {
            to: TxKind::Create,
            ..tx
        };
        assert!(matches!(
            transaction(&create),
            SignContext::EvmTransaction { to: None, .. }
        ));
    }

    #[cfg(feature = "eip712")]
    #[test]
    fn typed_data_domain() {
        use alloy_primitives::Address;

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
