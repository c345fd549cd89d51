//! `keymgr`: the operator's command line. Every command prints a human summary, or with
//! `--json` exactly one JSON object on stdout (errors included: `{"error": {...}}`).

mod cmd;
mod context;
mod input;

use clap::{Parser, Subcommand};

pub(crate) use context::{Context, Output};

/// Sign and manage keys held in a KMS or HSM. The backend comes from KEY_BACKEND and the
/// variables in .env.example (default: env, the development backend).
#[derive(Debug, Parser)]
#[command(name = "keymgr", version, about)]
struct Cli {
    /// Print one JSON object on stdout instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sign and verify with throwaway dev keys; needs no configuration.
    Demo,
    /// Print a key's public key and algorithm.
    PublicKey(cmd::keys::PublicKeyArgs),
    /// Sign a 32-byte digest (secp256k1) or a raw message (Ed25519).
    Sign(cmd::keys::SignArgs),
    /// Check the configured backend's health.
    Health,
    /// Audit log: verify the hash chain, export a time range.
    #[command(subcommand)]
    Audit(cmd::audit::AuditCommand),
    /// Ethereum: address, EIP-191 messages, EIP-712 typed data, transactions.
    #[command(subcommand)]
    Evm(cmd::evm::EvmCommand),
    /// Rotate a key now or when due; `rotate approve` / `rotate reject` decide on a
    /// request; `rotate run` runs the scheduler.
    Rotate(cmd::rotate::RotateArgs),
    /// Key versions, states and rotation schedule.
    #[command(subcommand)]
    Keys(cmd::status::KeysCommand),
    /// XRP Ledger payment-channel claims: public key, address, sign, verify.
    #[command(subcommand)]
    Xrp(cmd::xrp::XrpCommand),
    /// Envelope-encrypt a file or stdin (AWS Encryption SDK message format).
    Encrypt(cmd::envelope::EncryptArgs),
    /// Decrypt an envelope-encrypted message. A file output appears only once the whole
    /// message verified; with `--out -`, frames are written as they verify, so discard
    /// the output if the command fails.
    Decrypt(cmd::envelope::EnvelopeArgs),
}

async fn dispatch(command: Command, ctx: &Context, json: bool) -> anyhow::Result<Output> {
    match command {
        Command::Demo => cmd::demo::run().await,
        Command::PublicKey(args) => cmd::keys::public_key(args, ctx).await,
        Command::Sign(args) => cmd::keys::sign(args, ctx).await,
        Command::Health => cmd::keys::health(ctx).await,
        Command::Audit(c) => cmd::audit::run(c, ctx, json).await,
        Command::Evm(c) => cmd::evm::run(c, ctx).await,
        Command::Xrp(c) => cmd::xrp::run(c, ctx).await,
        Command::Rotate(args) => cmd::rotate::rotate(args, ctx, json).await,
        Command::Keys(c) => cmd::status::keys(c, ctx).await,
        Command::Encrypt(args) => cmd::envelope::encrypt(args, ctx, json).await,
        Command::Decrypt(args) => cmd::envelope::decrypt(args, ctx, json).await,
    }
}

fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("keymgr: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let ctx = Context::from_env();
    let result = runtime.block_on(dispatch(cli.command, &ctx, cli.json));
    context::print(result, cli.json)
}

/// Bad arguments: clap's own report, or with `--json` one JSON object on stdout (kind
/// `usage`) so scripts never parse clap's text. Help and version print as usual.
fn usage_error(e: &clap::Error) -> std::process::ExitCode {
    use clap::error::ErrorKind;
    let wants_json = std::env::args_os().any(|a| a == "--json");
    if !wants_json || matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        e.exit();
    }
    let message = e.render().to_string();
    let message = message.trim().trim_start_matches("error: ");
    println!(
        "{}",
        serde_json::json!({ "error": { "kind": "usage", "message": message } })
    );
    std::process::ExitCode::from(2)
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_line_definition_is_consistent() {
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}
