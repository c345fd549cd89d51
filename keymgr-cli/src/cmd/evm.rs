//! `keymgr evm`: Ethereum addresses, EIP-191 messages, EIP-712 typed data, transactions
//! and EIP-7702 authorizations, signed by the configured backend through `keymgr-evm`.

use std::path::PathBuf;
use std::sync::Arc;

#[cfg(feature = "evm-eip712")]
use alloy_dyn_abi::TypedData;
use alloy_primitives::{Address, U256};
use alloy_signer::Signer as _;
use keymgr::{KeyBackend, KeyRef};
use keymgr_evm::{EvmSigner, MessageReading, RequestError};
use serde_json::json;

use crate::cmd::features::Feature;
#[cfg(feature = "evm-eip712")]
use crate::input::read_text;
use crate::input::{is_stdio, read_bytes};
use crate::{Context, Output};

#[cfg(feature = "evm-tx")]
mod transaction;
#[cfg(feature = "evm-tx")]
mod tx_output;

/// The largest EIP-712 typed data file `sign-typed-data` reads.
#[cfg(feature = "evm-eip712")]
const MAX_TYPED_DATA_BYTES: usize = 1024 * 1024;
/// Largest message `evm sign-message --file` signs.
const MAX_MESSAGE_FILE_BYTES: usize = 1024 * 1024;

/// `keymgr evm ...`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum EvmCommand {
    /// The key's Ethereum address (keccak-256 of the public key) and the version it is of.
    Address {
        /// Key name, optionally NAME@VERSION.
        #[arg(long, default_value = "evm")]
        key: String,
    },
    /// Sign an EIP-191 personal message. MESSAGE is read as UTF-8 text (as ethers, viem
    /// and eth-account read a string), also when it starts with 0x; pass --hex 0x... to
    /// sign hex-decoded bytes. The output says which reading was signed.
    #[command(group(clap::ArgGroup::new("reading").required(true)))]
    SignMessage {
        /// Key name, optionally NAME@VERSION.
        #[arg(long, default_value = "evm")]
        key: String,
        /// The message, read as UTF-8 text (the default reading).
        #[arg(group = "reading")]
        message: Option<String>,
        /// The message as UTF-8 text, explicitly.
        #[arg(long, group = "reading", value_name = "TEXT")]
        text: Option<String>,
        /// The message as bytes: 0x followed by an even number of hex digits.
        #[arg(long, group = "reading", value_name = "0xHEX")]
        hex: Option<String>,
        /// The message as the bytes of a file, unchanged (at most 1 MiB); `-` reads
        /// standard input.
        #[arg(long, group = "reading", value_name = "FILE|-")]
        file: Option<PathBuf>,
    },
    /// Sign EIP-712 typed data (the JSON eth_signTypedData_v4 takes).
    #[cfg_attr(
        not(feature = "evm-eip712"),
        command(
            about = "Sign EIP-712 typed data: not in this build (keymgr-cli feature `evm-eip712`)"
        )
    )]
    SignTypedData {
        /// Key name, optionally NAME@VERSION.
        #[arg(long, default_value = "evm")]
        key: String,
        /// File with {types, primaryType, domain, message}; `-` reads standard input.
        #[arg(long, value_name = "FILE|-")]
        file: PathBuf,
    },
    /// Sign a JSON transaction request; prints what was signed (type, chain, from, to or
    /// create, value, nonce, fees, calldata, hash) and the EIP-2718 encoded transaction.
    #[cfg_attr(
        not(feature = "evm-tx"),
        command(
            about = "Sign a JSON transaction request: not in this build (keymgr-cli feature `evm-tx`)"
        )
    )]
    SignTx {
        /// Key name, optionally NAME@VERSION.
        #[arg(long, default_value = "evm")]
        key: String,
        /// File with a transaction request (eth_sendTransaction form: to, value, nonce,
        /// gas, chainId, maxFeePerGas / gasPrice, ...); `-` reads standard input. Unknown
        /// or repeated fields and contradictions are refused; no `to` with init code in
        /// `data`/`input` creates a contract.
        #[arg(long, value_name = "FILE|-")]
        file: PathBuf,
        /// The chain the transaction is for (EIP-155), when the file has no chainId; it
        /// must match the file's chainId when both are given.
        #[arg(long)]
        chain_id: Option<u64>,
    },
    /// Sign an EIP-7702 authorization (chain id, delegate address, nonce); prints the
    /// signed tuple with y parity, r and s.
    #[command(group(clap::ArgGroup::new("chain").required(true)))]
    #[cfg_attr(
        not(feature = "evm-tx"),
        command(
            about = "Sign an EIP-7702 authorization: not in this build (keymgr-cli feature `evm-tx`)"
        )
    )]
    SignAuthorization {
        /// Key name, optionally NAME@VERSION.
        #[arg(long, default_value = "evm")]
        key: String,
        /// The chain the authorization is valid on (decimal or 0x hex).
        #[arg(long, group = "chain")]
        chain_id: Option<U256>,
        /// Sign chain id 0: the authorization is then valid on every chain.
        #[arg(long, group = "chain")]
        any_chain: bool,
        /// The contract whose code the account delegates to.
        #[arg(long)]
        address: Address,
        /// The account's nonce when the authorization is used.
        #[arg(long)]
        nonce: u64,
    },
}

impl EvmCommand {
    /// The keymgr-cli cargo feature that builds this subcommand, if it needs one.
    pub(crate) const fn feature(&self) -> Option<Feature> {
        match self {
            EvmCommand::SignTx { .. } | EvmCommand::SignAuthorization { .. } => {
                Some(Feature::EvmTx)
            }
            EvmCommand::SignTypedData { .. } => Some(Feature::EvmEip712),
            EvmCommand::Address { .. } | EvmCommand::SignMessage { .. } => None,
        }
    }

    /// The subcommand's name, as typed.
    pub(crate) const fn name(&self) -> &'static str {
        match self {
            EvmCommand::Address { .. } => "address",
            EvmCommand::SignMessage { .. } => "sign-message",
            EvmCommand::SignTypedData { .. } => "sign-typed-data",
            EvmCommand::SignTx { .. } => "sign-tx",
            EvmCommand::SignAuthorization { .. } => "sign-authorization",
        }
    }
}

/// Runs `cmd`; `main` has refused the subcommands this build lacks
/// ([`EvmCommand::feature`]).
pub(crate) async fn run(cmd: EvmCommand, ctx: &Context) -> anyhow::Result<Output> {
    let key = match &cmd {
        EvmCommand::Address { key }
        | EvmCommand::SignMessage { key, .. }
        | EvmCommand::SignTypedData { key, .. }
        | EvmCommand::SignTx { key, .. }
        | EvmCommand::SignAuthorization { key, .. } => KeyRef::parse(key)?,
    };
    // Requests are read and checked before the backend is touched.
    #[cfg(feature = "evm-tx")]
    let request = match &cmd {
        EvmCommand::SignTx { file, chain_id, .. } => Some(transaction::read(file, *chain_id)?),
        _ => None,
    };
    // A message file is read before the backend is touched too.
    let message_file = match &cmd {
        EvmCommand::SignMessage {
            file: Some(file), ..
        } => Some((
            read_bytes(file, MAX_MESSAGE_FILE_BYTES, "--file")?,
            if is_stdio(file) { "stdin" } else { "file" },
        )),
        _ => None,
    };
    #[cfg(feature = "evm-eip712")]
    let typed = match &cmd {
        EvmCommand::SignTypedData { file, .. } => Some(typed_data(file)?),
        _ => None,
    };
    let backend: Arc<dyn KeyBackend> = ctx.manager().await?;
    let signer = EvmSigner::new(backend, key).await?;
    let address = signer.address().to_checksum(None);
    let bound = signer.key().to_string();
    match cmd {
        EvmCommand::Address { .. } => Ok(Output::new(
            json!({ "key": bound, "address": address }),
            format!("{bound}: {address}"),
        )),
        EvmCommand::SignMessage { .. } if message_file.is_some() => {
            let (bytes, reading) = message_file.unwrap_or_default();
            let sig = signer.sign_message(&bytes).await.map_err(alloy_error)?;
            let hex_sig = format!("0x{}", hex::encode(sig.as_bytes()));
            Ok(Output::new(
                json!({
                    "key": bound,
                    "address": address,
                    "signature": hex_sig,
                    "message_bytes": bytes.len(),
                    "reading": reading,
                }),
                format!(
                    "EIP-191 signature by {address} ({bound}) of {} bytes read from {reading}:\n{hex_sig}",
                    bytes.len()
                ),
            ))
        }
        EvmCommand::SignMessage {
            message, text, hex, ..
        } => {
            let (input, reading, explicit) = match (message, text, hex) {
                (_, _, Some(h)) => (h, MessageReading::Hex, true),
                (_, Some(t), None) => (t, MessageReading::Text, true),
                (m, None, None) => (m.unwrap_or_default(), MessageReading::Text, false),
            };
            let bytes = keymgr_evm::message_bytes(&input, reading)
                .map_err(|e| request_error(e, "message"))?;
            let sig = signer.sign_message(&bytes).await.map_err(alloy_error)?;
            let hex_sig = format!("0x{}", hex::encode(sig.as_bytes()));
            let mut text = format!(
                "EIP-191 signature by {address} ({bound}) of {} bytes read as {}:\n{hex_sig}",
                bytes.len(),
                reading.as_str()
            );
            if !explicit && keymgr_evm::looks_like_hex(&input) {
                text.push_str(&format!(
                    "\nnote: the message looks like hex but was signed as {} bytes of text \
                     (the default); pass --hex to sign the {} decoded bytes",
                    bytes.len(),
                    (input.len() - 2) / 2
                ));
            }
            Ok(Output::new(
                json!({
                    "key": bound,
                    "address": address,
                    "reading": reading.as_str(),
                    "message_bytes": bytes.len(),
                    "signature": hex_sig,
                }),
                text,
            ))
        }
        #[cfg(feature = "evm-eip712")]
        EvmCommand::SignTypedData { .. } => {
            let (typed, hash) = typed.ok_or_else(|| anyhow::anyhow!("typed data not read"))?;
            let sig = signer
                .sign_dynamic_typed_data(&typed)
                .await
                .map_err(alloy_error)?;
            let hex_sig = format!("0x{}", hex::encode(sig.as_bytes()));
            Ok(Output::new(
                json!({
                    "key": bound,
                    "address": address,
                    "signing_hash": format!("{hash}"),
                    "signature": hex_sig,
                }),
                format!("EIP-712 signature by {address} ({bound}):\n{hex_sig}"),
            ))
        }
        #[cfg(feature = "evm-tx")]
        EvmCommand::SignTx { .. } => {
            let request = request.ok_or_else(|| anyhow::anyhow!("request not read"))?;
            let envelope = signer.sign_checked(request).await.map_err(alloy_error)?;
            Ok(tx_output::signed(&bound, signer.address(), &envelope))
        }
        #[cfg(feature = "evm-tx")]
        EvmCommand::SignAuthorization {
            chain_id,
            address: delegate,
            nonce,
            ..
        } => {
            let chain_id = match chain_id {
                Some(id) if id.is_zero() => {
                    return Err(keymgr::Error::invalid_input(
                        "--chain-id",
                        "0 makes the authorization valid on every chain; pass --any-chain \
                         to sign that deliberately",
                    )
                    .into());
                }
                Some(id) => id,
                None => U256::ZERO,
            };
            let signed = signer.sign_authorization(chain_id, delegate, nonce).await?;
            let tuple = json!({
                "chainId": format!("{:#x}", signed.chain_id()),
                "address": signed.address().to_checksum(None),
                "nonce": format!("{:#x}", signed.nonce()),
                "yParity": format!("{:#x}", signed.y_parity()),
                "r": format!("{:#x}", signed.r()),
                "s": format!("{:#x}", signed.s()),
            });
            Ok(Output::new(
                json!({ "key": bound, "authority": address, "authorization": tuple }),
                format!(
                    "EIP-7702 authorization by {address} ({bound}): delegate {} on {} at nonce \
                     {nonce}\n{tuple:#}",
                    delegate.to_checksum(None),
                    if chain_id.is_zero() {
                        "every chain (chain id 0)".to_owned()
                    } else {
                        format!("chain {chain_id}")
                    }
                ),
            ))
        }
        // `main` refuses the subcommands this build lacks before reading anything.
        #[cfg(not(feature = "evm-tx"))]
        EvmCommand::SignTx { .. } | EvmCommand::SignAuthorization { .. } => {
            unreachable!("evm-tx is not built")
        }
        #[cfg(not(feature = "evm-eip712"))]
        EvmCommand::SignTypedData { .. } => unreachable!("evm-eip712 is not built"),
    }
}

#[cfg(feature = "evm-eip712")]
fn typed_data(file: &std::path::Path) -> anyhow::Result<(TypedData, alloy_primitives::B256)> {
    let text = read_text(file, MAX_TYPED_DATA_BYTES, "--file")?;
    let typed: TypedData = serde_json::from_str(&text).map_err(|e| {
        keymgr::Error::invalid_input(
            "typed data",
            format!("{} is not EIP-712 typed data JSON: {e}", file.display()),
        )
    })?;
    let hash = typed.eip712_signing_hash().map_err(|e| {
        keymgr::Error::invalid_input("typed data", format!("cannot hash {}: {e}", file.display()))
    })?;
    Ok((typed, hash))
}

/// A refused request: the typed error, with where it came from as context.
fn request_error(e: RequestError, what: &str) -> anyhow::Error {
    anyhow::Error::new(e).context(format!("refused {what}"))
}

/// alloy errors keep their keymgr cause (see `context::error_kind`).
fn alloy_error(e: alloy_signer::Error) -> anyhow::Error {
    anyhow::Error::new(e)
}
