//! Checking a JSON-RPC transaction request at the door: a request that is contradictory,
//! ambiguous or not expressible is refused with an error naming its JSON fields, never
//! signed as something else.

use alloy_consensus::TxType;
use alloy_primitives::{Bytes, TxKind};
use serde_json::{Map, Value};

use crate::TransactionRequest;
pub use crate::request_error::RequestError;

/// The largest JSON transaction request [`CheckedRequest::from_json`] reads, in bytes
/// (room for a full EIP-4844 sidecar of 6 blobs in hex, 6 × 256 KiB).
pub const MAX_REQUEST_JSON_BYTES: usize = 2 * 1024 * 1024;

/// The JSON field names of an `eth_sendTransaction` request (execution-apis
/// `GenericTransaction`), as alloy's `TransactionRequest` reads them.
pub const REQUEST_FIELDS: &[&str] = &[
    "from",
    "to",
    "gas",
    "gasPrice",
    "maxFeePerGas",
    "maxPriorityFeePerGas",
    "maxFeePerBlobGas",
    "value",
    "input",
    "data",
    "nonce",
    "chainId",
    "accessList",
    "type",
    "blobVersionedHashes",
    "blobs",
    "commitments",
    "proofs",
    "cellProofs",
    "authorizationList",
];

/// Fields whose values are quantities (JSON-RPC: `0x`-prefixed hex strings).
const QUANTITY_FIELDS: &[&str] = &[
    "gas",
    "gasPrice",
    "maxFeePerGas",
    "maxPriorityFeePerGas",
    "maxFeePerBlobGas",
    "value",
    "nonce",
    "chainId",
    "type",
];

/// The blob sidecar's fields (flattened into the request).
const SIDECAR_FIELDS: &[&str] = &["blobs", "commitments", "proofs", "cellProofs"];

/// A transaction request that was checked once, at the door: no unknown or duplicate
/// fields, no contradiction, an explicit `type` honoured exactly, a nonzero chain id,
/// contract creation made explicit. [`EvmSigner::sign_checked`](crate::EvmSigner::sign_checked)
/// signs exactly this.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedRequest {
    request: TransactionRequest,
    tx_type: TxType,
}

impl CheckedRequest {
    /// Parses and checks a JSON request (the `eth_sendTransaction` object; quantities as
    /// hex strings). Beyond [`new`](Self::new)'s checks, refuses input larger than
    /// [`MAX_REQUEST_JSON_BYTES`], fields not in [`REQUEST_FIELDS`] (a typo such as
    /// `valeu` would otherwise sign value 0), fields given twice, quantity strings
    /// without `0x` (`"10"`: decimal or hex?), and values that do not parse (the error
    /// names the field).
    pub fn from_json(text: &str) -> Result<Self, RequestError> {
        if text.len() > MAX_REQUEST_JSON_BYTES {
            return Err(RequestError::TooLarge {
                limit: MAX_REQUEST_JSON_BYTES,
            });
        }
        let object = crate::json_object::parse_unique(text)?;
        for key in object.keys() {
            if !REQUEST_FIELDS.contains(&key.as_str()) {
                return Err(RequestError::UnknownField {
                    field: key.clone(),
                    suggestion: suggest(key),
                });
            }
        }
        // Each field alone first, so a bad value is reported under its own name.
        for (key, value) in &object {
            if let Some(text) = value.as_str()
                && QUANTITY_FIELDS.contains(&key.as_str())
                && !(text.starts_with("0x") || text.starts_with("0X"))
            {
                // "10" is 10 to alloy but 16 to whoever thinks in hex; geth refuses it.
                return Err(RequestError::InvalidValue {
                    field: key.clone(),
                    reason: "a quantity string must be 0x-prefixed hex (JSON-RPC); write \
                             hex such as \"0xa\", or a JSON number for decimal"
                        .into(),
                });
            }
            if SIDECAR_FIELDS.contains(&key.as_str()) || value.is_null() {
                continue;
            }
            let mut single = Map::new();
            single.insert(key.clone(), value.clone());
            serde_json::from_value::<TransactionRequest>(Value::Object(single)).map_err(|e| {
                RequestError::InvalidValue {
                    field: key.clone(),
                    reason: e.to_string(),
                }
            })?;
        }
        let request: TransactionRequest =
            serde_json::from_value(Value::Object(object)).map_err(|e| {
                RequestError::InvalidValue {
                    field: "blobs/commitments/proofs".into(),
                    reason: e.to_string(),
                }
            })?;
        Self::new(request)
    }

    /// Checks a request alloy already deserialized: `data` and `input` agree; the chain
    /// id, when set, is not 0; an explicit `type` (0 legacy, 1 EIP-2930, 2 EIP-1559,
    /// 3 EIP-4844, 4 EIP-7702) fits the fields, or, without one, the fields fit exactly
    /// one type (alloy's choice: `authorizationList` → 4, blob fields → 3, 1559 fees → 2,
    /// `gasPrice` with `accessList` → 1, `gasPrice` → 0); every field that type needs is
    /// there. A request without `to` (or `"to": null`) and with init code in
    /// `data`/`input` is a contract creation (types 0–2).
    pub fn new(mut request: TransactionRequest) -> Result<Self, RequestError> {
        let input = unique_input(&request)?;
        request.input.input = input.clone();
        request.input.data = None;
        if request.chain_id == Some(0) {
            return Err(RequestError::InvalidValue {
                field: "chainId".into(),
                reason: "chain id 0 is no chain (EIP-155); set the chain the transaction is for"
                    .into(),
            });
        }
        let present = Present::of(&request);
        let tx_type = match request.transaction_type {
            Some(t) => {
                TxType::try_from(t).map_err(|_| RequestError::UnsupportedType { tx_type: t })?
            }
            None => inferred_type(&present)?,
        };
        check_fits(tx_type, &present, request.transaction_type.is_some())?;
        check_fees(&request)?;
        match request.to {
            Some(TxKind::Call(_)) => {}
            Some(TxKind::Create) | None => {
                if matches!(tx_type, TxType::Eip4844 | TxType::Eip7702) {
                    return Err(RequestError::Missing {
                        tx_type: tx_type as u8,
                        fields: vec!["to"],
                        reason: "blob and set-code (EIP-7702) transactions cannot create a \
                                 contract"
                            .into(),
                    });
                }
                if input.as_ref().is_none_or(|b| b.is_empty()) {
                    return Err(RequestError::Missing {
                        tx_type: tx_type as u8,
                        fields: vec!["to"],
                        reason: "no `to` and no init code in `data`/`input`: neither a call \
                                 nor a contract creation"
                            .into(),
                    });
                }
                request.to = Some(TxKind::Create);
            }
        }
        if tx_type == TxType::Eip2930 && request.access_list.is_none() {
            // `"type": "0x1"` without a list: the empty list is exactly what was asked.
            request.access_list = Some(Default::default());
        }
        let missing = missing_fields(tx_type, &request);
        if !missing.is_empty() {
            return Err(RequestError::Missing {
                tx_type: tx_type as u8,
                fields: missing,
                reason: format!("a type {} transaction needs them", tx_type as u8),
            });
        }
        request.transaction_type = Some(tx_type as u8);
        Ok(Self { request, tx_type })
    }

    /// The transaction type that will be signed.
    pub fn tx_type(&self) -> TxType {
        self.tx_type
    }

    /// The checked request (`type` set, `to` explicit, `input` normalized).
    pub fn request(&self) -> &TransactionRequest {
        &self.request
    }

    /// The checked request, by value.
    pub fn into_request(self) -> TransactionRequest {
        self.request
    }

    /// Sets the chain id when the request has none (never replaces one).
    pub(crate) fn fill_chain_id(&mut self, chain_id: Option<u64>) -> Result<(), RequestError> {
        if self.request.chain_id.is_none() {
            if chain_id == Some(0) {
                return Err(RequestError::InvalidValue {
                    field: "chainId".into(),
                    reason: "chain id 0 is no chain (EIP-155)".into(),
                });
            }
            self.request.chain_id = chain_id;
        }
        Ok(())
    }
}

/// `data` and `input` are two names for one field; both set and different is refused
/// (as go-ethereum does: "both 'data' and 'input' are set and not equal").
fn unique_input(request: &TransactionRequest) -> Result<Option<Bytes>, RequestError> {
    match (&request.input.input, &request.input.data) {
        (Some(a), Some(b)) if a != b => Err(RequestError::Conflict {
            fields: vec!["data", "input"],
            reason: "both are set and not equal; they are two names for the calldata, give one"
                .into(),
        }),
        (Some(a), _) => Ok(Some(a.clone())),
        (None, b) => Ok(b.clone()),
    }
}

/// Which type-deciding fields a request has, by JSON name.
struct Present {
    gas_price: bool,
    max_fee: bool,
    max_priority_fee: bool,
    access_list: bool,
    blob_fields: Vec<&'static str>,
    authorization_list: bool,
}

impl Present {
    fn of(r: &TransactionRequest) -> Self {
        let mut blob_fields = Vec::new();
        if r.max_fee_per_blob_gas.is_some() {
            blob_fields.push("maxFeePerBlobGas");
        }
        if r.blob_versioned_hashes.is_some() {
            blob_fields.push("blobVersionedHashes");
        }
        if r.sidecar.is_some() {
            blob_fields.push("blobs");
        }
        Self {
            gas_price: r.gas_price.is_some(),
            max_fee: r.max_fee_per_gas.is_some(),
            max_priority_fee: r.max_priority_fee_per_gas.is_some(),
            access_list: r.access_list.is_some(),
            blob_fields,
            authorization_list: r.authorization_list.is_some(),
        }
    }

    fn eip1559_fields(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.max_fee {
            v.push("maxFeePerGas");
        }
        if self.max_priority_fee {
            v.push("maxPriorityFeePerGas");
        }
        v
    }
}

/// The one type the fields name (alloy's order), refusing legacy and EIP-1559 fees
/// together instead of letting one win.
fn inferred_type(p: &Present) -> Result<TxType, RequestError> {
    if p.gas_price && (p.max_fee || p.max_priority_fee) {
        let mut fields = vec!["gasPrice"];
        fields.extend(p.eip1559_fields());
        return Err(RequestError::Conflict {
            fields,
            reason: "legacy (gasPrice) and EIP-1559 fees together: give one kind".into(),
        });
    }
    Ok(if p.authorization_list {
        TxType::Eip7702
    } else if p
        .blob_fields
        .iter()
        .any(|f| *f == "blobVersionedHashes" || *f == "blobs")
    {
        TxType::Eip4844
    } else if p.max_fee || p.max_priority_fee {
        TxType::Eip1559
    } else if p.gas_price && p.access_list {
        TxType::Eip2930
    } else if p.gas_price {
        TxType::Legacy
    } else {
        // No fee at all: alloy would build EIP-1559 and then miss its fees.
        TxType::Eip1559
    })
}

/// Fields that the type cannot carry (or that would make alloy's builder pick another
/// type) are refused, naming the type and the fields.
fn check_fits(tx_type: TxType, p: &Present, explicit: bool) -> Result<(), RequestError> {
    let mut foreign: Vec<&'static str> = Vec::new();
    let legacy_fee = matches!(tx_type, TxType::Legacy | TxType::Eip2930);
    if legacy_fee {
        foreign.extend(p.eip1559_fields());
    } else if p.gas_price {
        foreign.push("gasPrice");
    }
    if tx_type == TxType::Legacy && p.access_list {
        foreign.push("accessList");
    }
    if tx_type != TxType::Eip4844 {
        foreign.extend(p.blob_fields.iter().copied());
    }
    if tx_type != TxType::Eip7702 && p.authorization_list {
        foreign.push("authorizationList");
    }
    if foreign.is_empty() {
        return Ok(());
    }
    let mut fields = vec!["type"];
    fields.extend(foreign.iter().copied());
    Err(RequestError::Conflict {
        reason: if explicit {
            format!(
                "`type` is {} ({}), which cannot carry {}",
                tx_type as u8,
                type_name(tx_type),
                foreign.join(", ")
            )
        } else {
            format!(
                "the fields make a type {} ({}) transaction, which cannot carry {}",
                tx_type as u8,
                type_name(tx_type),
                foreign.join(", ")
            )
        },
        fields: if explicit {
            fields
        } else {
            fields.split_off(1)
        },
    })
}

/// `maxPriorityFeePerGas` above `maxFeePerGas` is a transaction no node accepts.
fn check_fees(r: &TransactionRequest) -> Result<(), RequestError> {
    if let (Some(max), Some(tip)) = (r.max_fee_per_gas, r.max_priority_fee_per_gas)
        && tip > max
    {
        return Err(RequestError::Conflict {
            fields: vec!["maxFeePerGas", "maxPriorityFeePerGas"],
            reason: format!("the priority fee ({tip} wei) exceeds the maximum fee ({max} wei)"),
        });
    }
    Ok(())
}

/// The fields `tx_type` needs that `r` lacks, by JSON name.
fn missing_fields(tx_type: TxType, r: &TransactionRequest) -> Vec<&'static str> {
    let mut missing = Vec::new();
    if r.nonce.is_none() {
        missing.push("nonce");
    }
    if r.gas.is_none() {
        missing.push("gas");
    }
    match tx_type {
        TxType::Legacy | TxType::Eip2930 => {
            if r.gas_price.is_none() {
                missing.push("gasPrice");
            }
        }
        TxType::Eip1559 | TxType::Eip4844 | TxType::Eip7702 => {
            if r.max_fee_per_gas.is_none() {
                missing.push("maxFeePerGas");
            }
            if r.max_priority_fee_per_gas.is_none() {
                missing.push("maxPriorityFeePerGas");
            }
        }
    }
    if tx_type == TxType::Eip4844 {
        if r.max_fee_per_blob_gas.is_none() {
            missing.push("maxFeePerBlobGas");
        }
        if r.sidecar.is_none() {
            missing.push("blobs");
        }
    }
    missing
}

/// The type's usual name.
pub fn type_name(tx_type: TxType) -> &'static str {
    match tx_type {
        TxType::Legacy => "legacy",
        TxType::Eip2930 => "EIP-2930",
        TxType::Eip1559 => "EIP-1559",
        TxType::Eip4844 => "EIP-4844",
        TxType::Eip7702 => "EIP-7702",
    }
}

/// The known field closest to a misspelt one (optimal string alignment distance ≤ 2,
/// ignoring case: `valeu` is one from `value`).
fn suggest(field: &str) -> Option<&'static str> {
    if field.len() > 64 {
        return None;
    }
    let field = field.to_lowercase();
    REQUEST_FIELDS
        .iter()
        .map(|known| (strsim::osa_distance(&field, &known.to_lowercase()), *known))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, known)| known)
}

impl<B: keymgr_core::KeyBackend> crate::EvmSigner<B> {
    /// Signs a checked request exactly: its type, its fields. A request without `chainId`
    /// takes the signer's chain id ([`Signer::chain_id`](alloy_signer::Signer::chain_id));
    /// a `from` other than [`address`](Self::address) is refused.
    ///
    /// Errors: [`RequestError`] (inside [`alloy_signer::Error::Other`]; find it with
    /// [`request_error`](crate::request_error)) for the request, keymgr errors for the
    /// backend.
    pub async fn sign_checked(
        &self,
        mut checked: CheckedRequest,
    ) -> alloy_signer::Result<alloy_consensus::TxEnvelope> {
        use alloy_consensus::SignableTransaction as _;
        use alloy_network::TxSigner as _;

        if let Some(from) = checked.request.from
            && from != self.address()
        {
            return Err(alloy_signer::Error::other(RequestError::InvalidValue {
                field: "from".into(),
                reason: format!(
                    "the request is from {from}, but this signer ({}) signs for {}",
                    self.key(),
                    self.address()
                ),
            }));
        }
        checked
            .fill_chain_id(self.chain_id())
            .map_err(alloy_signer::Error::other)?;
        let tx_type = checked.tx_type;
        let mut tx = checked.request.build_typed_tx().map_err(|unbuilt| {
            // `new` checked every field the type needs; this is alloy disagreeing.
            alloy_signer::Error::other(RequestError::Missing {
                tx_type: tx_type as u8,
                fields: Vec::new(),
                reason: format!(
                    "alloy cannot build this type {} request (missing {:?})",
                    tx_type as u8,
                    unbuilt.missing_keys().err().map(|(_, m)| m)
                ),
            })
        })?;
        if tx.tx_type() != tx_type {
            return Err(alloy_signer::Error::other(RequestError::Conflict {
                fields: vec!["type"],
                reason: format!(
                    "alloy would build a type {} transaction from a type {} request",
                    tx.tx_type() as u8,
                    tx_type as u8
                ),
            }));
        }
        let signature = self.sign_transaction(&mut tx).await?;
        Ok(tx.into_signed(signature).into())
    }
}
