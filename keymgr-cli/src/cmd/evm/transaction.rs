//! `keymgr evm sign-tx`'s input: the JSON transaction request and its chain id.

use keymgr_evm::{CheckedRequest, RequestError};

use super::request_error;
use crate::input::read_text;

/// Reads and checks a transaction request, with the chain id from the file or the flag.
pub(super) fn read(file: &std::path::Path, flag: Option<u64>) -> anyhow::Result<CheckedRequest> {
    let text = read_text(file, keymgr_evm::MAX_REQUEST_JSON_BYTES, "--file")?;
    let mut request = CheckedRequest::from_json(&text)
        .map_err(|e| request_error(e, "transaction request"))?
        .into_request();
    request.chain_id = Some(chain_id_of(request.chain_id, flag)?);
    CheckedRequest::new(request).map_err(|e| request_error(e, "transaction request"))
}

/// The chain id to sign for. The CLI never signs without one: alloy would sign a legacy
/// request without replay protection and assume chain 1 for a typed one.
fn chain_id_of(in_file: Option<u64>, flag: Option<u64>) -> anyhow::Result<u64> {
    let id = match (in_file, flag) {
        (Some(a), Some(b)) if a != b => {
            return Err(request_error(
                RequestError::InvalidValue {
                    field: "chainId".into(),
                    reason: format!("the file has {a} but --chain-id is {b}; they must agree"),
                },
                "transaction request",
            ));
        }
        (Some(id), _) | (None, Some(id)) => id,
        (None, None) => {
            return Err(request_error(
                RequestError::InvalidValue {
                    field: "chainId".into(),
                    reason: "missing: set it in the file or pass --chain-id (keymgr does not \
                             sign transactions without EIP-155 replay protection)"
                        .into(),
                },
                "transaction request",
            ));
        }
    };
    Ok(id)
}
