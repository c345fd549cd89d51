//! `keymgr xrp`: XRP Ledger payment-channel claims with a key held by the backend.

use std::sync::Arc;

use keymgr::{KeyBackend, KeyRef};
use keymgr_xrp::{ChannelId, ClaimSigner, Drops, XrpError, XrplPublicKey, try_verify_claim};
use serde_json::json;

use crate::{Context, Output};

/// `keymgr xrp ...`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum XrpCommand {
    /// Print the key's public key in XRPL form (ED… or 02…/03…) and its address.
    PublicKey(KeyArgs),
    /// Print the key's classic account address (r...).
    Address(KeyArgs),
    /// Sign a payment-channel claim for a cumulative amount of drops.
    SignClaim(SignClaimArgs),
    /// Check a claim signature against a public key (needs no key or backend); exits
    /// with an error when the signature is not valid.
    VerifyClaim(VerifyClaimArgs),
}

/// Which key.
#[derive(Debug, clap::Args)]
pub(crate) struct KeyArgs {
    /// Key name, optionally with a version: NAME or NAME@VERSION.
    #[arg(long, default_value = "xrp")]
    key: String,
}

/// `keymgr xrp sign-claim`.
#[derive(Debug, clap::Args)]
pub(crate) struct SignClaimArgs {
    #[command(flatten)]
    key: KeyArgs,
    /// Channel id: 64 hex characters.
    #[arg(long)]
    channel: String,
    /// Cumulative amount in drops (1 XRP = 1000000 drops), 1..=10^17.
    #[arg(long)]
    amount: String,
}

/// `keymgr xrp verify-claim`.
#[derive(Debug, clap::Args)]
pub(crate) struct VerifyClaimArgs {
    /// Channel id: 64 hex characters.
    #[arg(long)]
    channel: String,
    /// Amount in drops the signature authorizes.
    #[arg(long)]
    amount: String,
    /// The claim signature, hex (DER for secp256k1, 64 bytes for Ed25519).
    #[arg(long)]
    signature: String,
    /// The channel's public key: hex (ED… or 02…/03…) or base58 (a…).
    #[arg(long)]
    public_key: String,
}

/// Runs one `keymgr xrp` command.
pub(crate) async fn run(cmd: XrpCommand, ctx: &Context) -> anyhow::Result<Output> {
    match cmd {
        XrpCommand::PublicKey(args) => {
            let (backend, signer) = signer(&args, ctx).await?;
            let pk = signer.public_key();
            Ok(Output::new(
                json!({
                    "key": signer.key().to_string(),
                    "backend": backend,
                    "algorithm": signer.algorithm().as_str(),
                    "public_key": pk.to_hex(),
                    "public_key_base58": pk.to_base58(),
                    "address": signer.account_address(),
                }),
                format!(
                    "{} ({}, {backend}): {pk}\naddress: {}",
                    signer.key(),
                    signer.algorithm(),
                    signer.account_address()
                ),
            ))
        }
        XrpCommand::Address(args) => {
            let (_, signer) = signer(&args, ctx).await?;
            Ok(Output::new(
                json!({
                    "key": signer.key().to_string(),
                    "address": signer.account_address(),
                    "public_key": signer.public_key().to_hex(),
                }),
                signer.account_address(),
            ))
        }
        XrpCommand::SignClaim(args) => {
            // Validate before touching the backend, so a typo needs no configuration.
            let channel = ChannelId::from_hex(&args.channel).map_err(core_error)?;
            let amount = Drops::parse(&args.amount).map_err(core_error)?;
            let (backend, signer) = signer(&args.key, ctx).await?;
            let signature = signer
                .sign_claim(channel, amount)
                .await
                .map_err(core_error)?;
            Ok(Output::new(
                json!({
                    "key": signer.key().to_string(),
                    "backend": backend,
                    "algorithm": signer.algorithm().as_str(),
                    "channel": channel.to_string(),
                    "amount": amount.to_string(),
                    "signature": signature,
                    "public_key": signer.public_key().to_hex(),
                    "address": signer.account_address(),
                }),
                format!(
                    "claim for {amount} drops on channel {channel}\nsignature:  {signature}\npublic key: {}",
                    signer.public_key()
                ),
            ))
        }
        XrpCommand::VerifyClaim(args) => {
            let valid = try_verify_claim(
                args.channel.as_str(),
                args.amount.as_str(),
                &args.signature,
                &args.public_key,
            )
            .map_err(core_error)?;
            if !valid {
                return Err(keymgr::Error::invalid_input(
                    "signature",
                    "does not verify: it was not made by this public key for this channel \
                     and amount (or it is a high-s secp256k1 signature, which the XRP Ledger \
                     rejects)",
                )
                .into());
            }
            // The inputs parsed above; parse again only for the normalized output.
            let channel = ChannelId::from_hex(&args.channel).map_err(core_error)?;
            let amount = Drops::parse(&args.amount).map_err(core_error)?;
            let pk = XrplPublicKey::parse(&args.public_key).map_err(core_error)?;
            Ok(Output::new(
                json!({
                    "valid": true,
                    "channel": channel.to_string(),
                    "amount": amount.to_string(),
                    "algorithm": pk.algorithm().as_str(),
                    "public_key": pk.to_hex(),
                    "address": pk.classic_address(),
                }),
                format!(
                    "valid: claim for {amount} drops on channel {channel} by {} ({})",
                    pk.classic_address(),
                    pk.algorithm()
                ),
            ))
        }
    }
}

async fn signer(args: &KeyArgs, ctx: &Context) -> anyhow::Result<(String, ClaimSigner)> {
    let key = KeyRef::parse(&args.key)?;
    let manager = ctx.manager().await?;
    let backend = manager.backend().name().to_owned();
    let signer = ClaimSigner::new(manager as Arc<dyn KeyBackend>, key)
        .await
        .map_err(core_error)?;
    Ok((backend, signer))
}

/// keymgr's own error type, so `--json` reports its kind (`invalid_input`, ...).
fn core_error(e: XrpError) -> anyhow::Error {
    keymgr::Error::from(e).into()
}
