//! `keymgr evm`: Ethereum addresses, EIP-191 messages, EIP-712 typed data and
//! transactions, signed by the configured backend through `keymgr-evm`.

use std::path::PathBuf;
use std::sync::Arc;

use alloy_dyn_abi::TypedData;
use alloy_eips::eip2718::Encodable2718 as _;
use alloy_signer::Signer as _;
use keymgr::{KeyBackend, KeyRef};
use keymgr_evm::{EvmSigner, TransactionRequest};
use serde_json::json;

use crate::{Context, Output};

/// `keymgr evm ...`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum EvmCommand {
    /// The key's Ethereum address (keccak-256 of the public key) and the version it is of.
    Address {
        /// Key name, optionally NAME@VERSION.
        #[arg(long, default_value = "evm")]
        key: String,
    },
    /// Sign TEXT as an EIP-191 personal message.
    SignMessage {
        /// Key name, optionally NAME@VERSION.
        #[arg(long, default_value = "evm")]
        key: String,
        /// The message (UTF-8 text; prefix with 0x to sign hex-decoded bytes).
        text: String,
    },
    /// Sign EIP-712 typed data (the JSON eth_signTypedData_v4 takes).
    SignTypedData {
        /// Key name, optionally NAME@VERSION.
        #[arg(long, default_value = "evm")]
        key: String,
        /// File with {types, primaryType, domain, message}.
        #[arg(long)]
        file: PathBuf,
    },
    /// Sign a JSON transaction request; prints the RLP/EIP-2718 encoded signed transaction.
    SignTx {
        /// Key name, optionally NAME@VERSION.
        #[arg(long, default_value = "evm")]
        key: String,
        /// File with a transaction request (eth_sendTransaction form: to, value, nonce,
        /// gas, chainId, maxFeePerGas / gasPrice, ...).
        #[arg(long)]
        file: PathBuf,
        /// The chain the transaction is for (EIP-155), when the file has no chainId; it
        /// must match the file's chainId when both are given.
        #[arg(long)]
        chain_id: Option<u64>,
    },
}

pub(crate) async fn run(cmd: EvmCommand, ctx: &Context) -> anyhow::Result<Output> {
    let key = match &cmd {
        EvmCommand::Address { key }
        | EvmCommand::SignMessage { key, .. }
        | EvmCommand::SignTypedData { key, .. }
        | EvmCommand::SignTx { key, .. } => KeyRef::parse(key)?,
    };
    let backend: Arc<dyn KeyBackend> = ctx.manager().await?;
    let signer = EvmSigner::new(backend, key).await?;
    let address = signer.address();
    let bound = signer.key().to_string();
    match cmd {
        EvmCommand::Address { .. } => Ok(Output::new(
            json!({ "key": bound, "address": address.to_checksum(None) }),
            format!("{bound}: {}", address.to_checksum(None)),
        )),
        EvmCommand::SignMessage { text, .. } => {
            let bytes = match text.strip_prefix("0x") {
                Some(h) => hex::decode(h).map_err(|e| {
                    keymgr::Error::invalid_input("message", format!("0x-prefixed but not hex: {e}"))
                })?,
                None => text.into_bytes(),
            };
            let sig = signer.sign_message(&bytes).await.map_err(alloy_error)?;
            let hex_sig = format!("0x{}", hex::encode(sig.as_bytes()));
            Ok(Output::new(
                json!({ "key": bound, "address": address.to_checksum(None), "signature": hex_sig }),
                format!(
                    "EIP-191 signature by {} ({bound}):\n{hex_sig}",
                    address.to_checksum(None)
                ),
            ))
        }
        EvmCommand::SignTypedData { file, .. } => {
            let text = read(&file)?;
            let typed: TypedData = serde_json::from_str(&text).map_err(|e| {
                keymgr::Error::invalid_input(
                    "typed data",
                    format!("{} is not EIP-712 typed data JSON: {e}", file.display()),
                )
            })?;
            let hash = typed.eip712_signing_hash().map_err(|e| {
                keymgr::Error::invalid_input(
                    "typed data",
                    format!("cannot hash {}: {e}", file.display()),
                )
            })?;
            let sig = signer
                .sign_dynamic_typed_data(&typed)
                .await
                .map_err(alloy_error)?;
            let hex_sig = format!("0x{}", hex::encode(sig.as_bytes()));
            Ok(Output::new(
                json!({
                    "key": bound,
                    "address": address.to_checksum(None),
                    "signing_hash": format!("{hash}"),
                    "signature": hex_sig,
                }),
                format!(
                    "EIP-712 signature by {} ({bound}):\n{hex_sig}",
                    address.to_checksum(None)
                ),
            ))
        }
        EvmCommand::SignTx { file, chain_id, .. } => {
            let text = read(&file)?;
            let mut request: TransactionRequest = serde_json::from_str(&text).map_err(|e| {
                keymgr::Error::invalid_input(
                    "transaction",
                    format!("{} is not a JSON transaction request: {e}", file.display()),
                )
            })?;
            request.chain_id = Some(chain_id_of(request.chain_id, chain_id, &file)?);
            let envelope = signer.sign_request(request).await.map_err(alloy_error)?;
            let raw = format!("0x{}", hex::encode(envelope.encoded_2718()));
            let hash = format!("{}", envelope.tx_hash());
            Ok(Output::new(
                json!({
                    "key": bound,
                    "from": address.to_checksum(None),
                    "type": u8::from(envelope.tx_type()),
                    "hash": hash,
                    "raw": raw,
                }),
                format!(
                    "signed transaction {hash} from {}:\n{raw}",
                    address.to_checksum(None)
                ),
            ))
        }
    }
}

/// The chain id to sign for. The CLI never signs without one: alloy would sign a legacy
/// request without replay protection and assume chain 1 for a typed one.
fn chain_id_of(
    in_file: Option<u64>,
    flag: Option<u64>,
    file: &std::path::Path,
) -> keymgr::Result<u64> {
    match (in_file, flag) {
        (Some(a), Some(b)) if a != b => Err(keymgr::Error::invalid_input(
            "chainId",
            format!(
                "{} has chainId {a} but --chain-id is {b}; they must agree",
                file.display()
            ),
        )),
        (Some(id), _) | (None, Some(id)) => Ok(id),
        (None, None) => Err(keymgr::Error::invalid_input(
            "chainId",
            format!(
                "{} has no chainId: set it in the file or pass --chain-id (keymgr does not sign \
                 transactions without EIP-155 replay protection)",
                file.display()
            ),
        )),
    }
}

fn read(file: &PathBuf) -> anyhow::Result<String> {
    std::fs::read_to_string(file).map_err(|e| {
        keymgr::Error::invalid_input("file", format!("cannot read {}: {e}", file.display())).into()
    })
}

/// alloy errors keep their keymgr cause (see `context::error_kind`).
fn alloy_error(e: alloy_signer::Error) -> anyhow::Error {
    anyhow::Error::new(e)
}
