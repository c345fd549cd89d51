//! What `evm sign-tx` prints: the decoded transaction it signed, so the operator sees
//! what went out (type, chain, from, to or create, value, nonce, fees, calldata, hash).

use alloy_consensus::{Transaction as _, TxEnvelope};
use alloy_eips::eip2718::Encodable2718 as _;
use alloy_primitives::{Address, TxKind};
use serde_json::json;

use crate::Output;

/// The output for a signed envelope (read back from the envelope, not the request).
pub(super) fn signed(key: &str, from: Address, envelope: &TxEnvelope) -> Output {
    let tx_type = envelope.tx_type();
    let type_name = keymgr_evm::type_name(tx_type);
    let raw = format!("0x{}", hex::encode(envelope.encoded_2718()));
    let hash = format!("{}", envelope.tx_hash());
    let from_hex = from.to_checksum(None);
    let (to, created) = match envelope.kind() {
        TxKind::Call(to) => (Some(to.to_checksum(None)), None),
        TxKind::Create => (None, Some(from.create(envelope.nonce()).to_checksum(None))),
    };
    let input = envelope.input();
    let selector = (input.len() >= 4).then(|| format!("0x{}", hex::encode(&input[..4])));
    let mut fees = serde_json::Map::new();
    if let Some(p) = envelope.gas_price() {
        fees.insert("gas_price_wei".into(), json!(p.to_string()));
    } else {
        fees.insert(
            "max_fee_per_gas_wei".into(),
            json!(envelope.max_fee_per_gas().to_string()),
        );
        if let Some(tip) = envelope.max_priority_fee_per_gas() {
            fees.insert(
                "max_priority_fee_per_gas_wei".into(),
                json!(tip.to_string()),
            );
        }
    }
    if let Some(blob) = envelope.max_fee_per_blob_gas() {
        fees.insert("max_fee_per_blob_gas_wei".into(), json!(blob.to_string()));
    }
    let chain_id = envelope.chain_id();
    let authorizations = envelope.authorization_list().map(<[_]>::len);
    let json = json!({
        "key": key,
        "from": from_hex,
        "type": u8::from(tx_type),
        "type_name": type_name,
        "chain_id": chain_id,
        "to": to,
        "create": created.is_some(),
        "contract_address": created,
        "value": envelope.value().to_string(),
        "nonce": envelope.nonce(),
        "gas": envelope.gas_limit(),
        "fees": fees,
        "calldata_bytes": input.len(),
        "selector": selector,
        "authorizations": authorizations,
        "hash": hash,
        "raw": raw,
    });
    let fees_text = fees
        .iter()
        .map(|(k, v)| {
            let name = k.strip_suffix("_wei").unwrap_or(k);
            format!("{name} {} wei", v.as_str().unwrap_or_default())
        })
        .collect::<Vec<_>>()
        .join(", ");
    let to_text = match (&to, &created) {
        (Some(to), _) => to.clone(),
        (None, Some(c)) => format!("create (contract address {c})"),
        (None, None) => "create".to_owned(),
    };
    let calldata = match &selector {
        Some(s) => format!("{} bytes, selector {s}", input.len()),
        None => format!("{} bytes", input.len()),
    };
    let mut text = format!(
        "signed {type_name} (type {}) transaction\nchain id: {}\nfrom:     {from_hex} ({key})\nto:       {to_text}\nvalue:    {} wei\nnonce:    {}\ngas:      {}\nfees:     {fees_text}\ncalldata: {calldata}\n",
        u8::from(tx_type),
        chain_id.map_or_else(|| "none (pre-EIP-155)".to_owned(), |c| c.to_string()),
        envelope.value(),
        envelope.nonce(),
        envelope.gas_limit(),
    );
    if let Some(n) = authorizations {
        text.push_str(&format!("authorizations: {n}\n"));
    }
    text.push_str(&format!("hash:     {hash}\nraw:      {raw}"));
    Output::new(json, text)
}
