//! `keymgr`: the operator's command line. Every command prints a human summary, or with
//! `--json` exactly one JSON object on stdout (errors included: `{"error": {...}}`).

mod cmd;
mod context;
mod env_file;
mod input;

use clap::{CommandFactory as _, Parser, Subcommand};

pub(crate) use context::{Context, Output};

/// Sign and manage keys held in a KMS or HSM. The backend comes from KEY_BACKEND and the
/// variables in .env.example (default: env, the development backend).
///
/// Configuration, first wins: flags (--backend) > environment > --env-file > the TOML
/// file --config or KEYMGR_CONFIG names (same names as the variables) > defaults.
/// `keymgr config check` shows the result.
#[derive(Debug, Parser)]
#[command(name = "keymgr", version, about, after_help = CONFIG_HELP)]
struct Cli {
    /// Print one JSON object on stdout instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// TOML configuration file (NAME = value, names as in .env.example); overrides
    /// KEYMGR_CONFIG. The environment wins over it.
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<std::path::PathBuf>,
    /// Dotenv file of NAME=value lines, below the real environment (a variable set in
    /// the environment wins) and above the configuration file.
    #[arg(long, global = true, value_name = "PATH")]
    env_file: Option<std::path::PathBuf>,
    /// The backend (overrides KEY_BACKEND): env, aws-kms, gcp-kms, azure-kv or hsm.
    #[arg(long, global = true, value_name = "KIND")]
    backend: Option<String>,
    #[command(subcommand)]
    command: Command,
}

/// Where configuration comes from (printed under `--help` and in the man page).
const CONFIG_HELP: &str = "\
Configuration: environment variables, read at start-up. KEY_BACKEND selects the backend
(env | hsm | aws-kms | gcp-kms | azure-kv; default env); every variable and its form is in
.env.example, and the README has a quick start per backend. Secrets (HSM_PIN, seeds,
client secrets) are never printed. RUST_LOG sets the log level on stderr (default warn).

Output: text for people; with --json one JSON object with \"schema\": 1 on stdout (errors
too). Exit codes: 0 ok, 1 unexpected, 2 usage, 3 configuration, 4 not found, 5 access
denied, 6 unavailable (timeout, throttled, rate limited, breaker open), 7 integrity,
8 refused by policy, 9 invalid input or unsupported, 10 health degraded, 11 health down,
75 busy (lease held; try again).";

#[derive(Debug, Subcommand)]
enum Command {
    /// Sign and verify with throwaway dev keys; needs no configuration.
    Demo(cmd::demo::DemoArgs),
    /// Print a key's public key and algorithm.
    PublicKey(cmd::keys::PublicKeyArgs),
    /// Sign a 32-byte digest (secp256k1) or a raw message (Ed25519).
    Sign(cmd::keys::SignArgs),
    /// Health of every configured provider (canary sign-and-verify, latency, breaker)
    /// and the aggregate. Exit code: 0 healthy, 10 degraded, 11 down.
    Health(cmd::health::HealthArgs),
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
    #[cfg(feature = "envelope")]
    /// Envelope-encrypt a file or stdin (AWS Encryption SDK message format).
    Encrypt(cmd::envelope::EncryptArgs),
    #[cfg(not(feature = "envelope"))]
    /// Envelope-encrypt a file or stdin: not in this build (keymgr-cli feature `envelope`).
    Encrypt(cmd::features::NotBuiltArgs),
    /// Configuration: `config check` validates everything and tries every key.
    #[command(subcommand)]
    Config(cmd::config::ConfigCommand),
    #[cfg(feature = "envelope")]
    /// Decrypt an envelope-encrypted message. A file output appears only once the whole
    /// message verified; with `--out -`, frames are written as they verify, so discard
    /// the output if the command fails.
    Decrypt(cmd::envelope::EnvelopeArgs),
    #[cfg(not(feature = "envelope"))]
    /// Decrypt an envelope-encrypted message: not in this build (keymgr-cli feature
    /// `envelope`).
    Decrypt(cmd::features::NotBuiltArgs),
    /// Print a shell completion script on stdout, e.g. `keymgr completions bash >
    /// /etc/bash_completion.d/keymgr`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on stdout, e.g. `keymgr man > /usr/local/share/man/man1/keymgr.1`.
    Man,
}

impl Command {
    /// The keymgr-cli cargo feature that builds this command, if it needs one, and the
    /// command's name as typed.
    fn feature(&self) -> Option<(cmd::features::Feature, String)> {
        use cmd::features::Feature;
        match self {
            Command::Evm(c) => c.feature().map(|f| (f, format!("evm {}", c.name()))),
            Command::Encrypt(_) => Some((Feature::Envelope, "encrypt".into())),
            Command::Decrypt(_) => Some((Feature::Envelope, "decrypt".into())),
            _ => None,
        }
    }
}

async fn dispatch(command: Command, ctx: &Context, json: bool) -> anyhow::Result<Output> {
    match command {
        // Handled in `main` before any configuration is read.
        Command::Demo(_) | Command::Completions { .. } | Command::Man => {
            unreachable!("commands that need no configuration run before it is loaded")
        }
        Command::PublicKey(args) => cmd::keys::public_key(args, ctx).await,
        Command::Sign(args) => cmd::keys::sign(args, ctx).await,
        Command::Health(_) => unreachable!("health is run by main with its own exit codes"),
        Command::Audit(c) => cmd::audit::run(c, ctx, json).await,
        Command::Evm(c) => cmd::evm::run(c, ctx).await,
        Command::Xrp(c) => cmd::xrp::run(c, ctx).await,
        Command::Rotate(args) => cmd::rotate::rotate(args, ctx, json).await,
        Command::Keys(c) => cmd::status::keys(c, ctx).await,
        #[cfg(feature = "envelope")]
        Command::Encrypt(args) => cmd::envelope::encrypt(args, ctx, json).await,
        #[cfg(feature = "envelope")]
        Command::Decrypt(args) => cmd::envelope::decrypt(args, ctx, json).await,
        #[cfg(not(feature = "envelope"))]
        Command::Encrypt(_) | Command::Decrypt(_) => {
            unreachable!("main refuses the commands this build lacks before reading anything")
        }
        // Handled in `main`: it prints its own report.
        Command::Config(_) => unreachable!("config commands run before dispatch"),
    }
}

fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    {
        use tracing_subscriber::layer::SubscriberExt as _;
        use tracing_subscriber::util::SubscriberInitExt as _;
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            // Colour only for a terminal, and never with NO_COLOR (https://no-color.org).
            .with_ansi(
                std::io::IsTerminal::is_terminal(&std::io::stderr())
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
            )
            .finish()
            .with(log_filter(&std::env::var("RUST_LOG").unwrap_or_default()))
            .init();
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("keymgr: cannot start the async runtime: {e}");
            return context::Exit::Unexpected.code();
        }
    };
    // A command this build lacks is refused before anything is read, naming the feature
    // that builds it. (A compiled-out command takes its arguments as given, `--json`
    // included.)
    if let Some((feature, name)) = cli.command.feature().filter(|(f, _)| !f.built()) {
        let json = cli.json || std::env::args_os().any(|a| a == "--json");
        return context::print(Err(feature.not_built(&name).into()), json);
    }
    // Commands that need no configuration never read it: a broken configuration file or
    // `--env-file` must not stop the demo, the completions or the man page.
    match cli.command {
        Command::Demo(args) => {
            return context::print(runtime.block_on(cmd::demo::run(args)), cli.json);
        }
        Command::Completions { shell } => {
            return context::print(cmd::docs::completions(shell, Cli::command()), cli.json);
        }
        Command::Man => return context::print(cmd::docs::man(Cli::command()), cli.json),
        _ => {}
    }
    let sources = match load_sources(&cli) {
        Ok(s) => s,
        Err(e) if matches!(cli.command, Command::Health(_)) => {
            return cmd::health::unloadable(&e, cli.json);
        }
        Err(e) => {
            context::print(Err(e), cli.json);
            return context::Exit::Config.code();
        }
    };
    match cli.command {
        Command::Config(c) => return runtime.block_on(cmd::config::run(c, &sources, cli.json)),
        Command::Health(args) => {
            return runtime.block_on(cmd::health::run(args, cli.json, &sources));
        }
        _ => {}
    }
    let ctx = Context::new(sources);
    let result = runtime.block_on(dispatch(cli.command, &ctx, cli.json));
    context::print(result, cli.json)
}

/// Third-party crates whose own logs (the AWS SDK's request dumps, hyper's connection
/// chatter) stay quiet unless RUST_LOG names them.
const QUIET_DEPENDENCIES: &[&str] = &[
    "aws_config",
    "aws_runtime",
    "aws_sdk_kms",
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http_client",
    "hyper",
    "hyper_util",
    "reqwest",
    "rustls",
    "h2",
];

/// The log filter for `RUST_LOG` (`spec`): comma-separated `level` and `target=level`
/// directives (`warn,keymgr=debug`), the most specific target prefix winning; empty or
/// unparsable means `warn`. [`QUIET_DEPENDENCIES`] are capped at `error` unless `spec`
/// names them. (A target filter, not `EnvFilter`: span and field-value filters would
/// compile a regex engine into every build of the CLI.)
fn log_filter(spec: &str) -> tracing_subscriber::filter::Targets {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    let mut filter = Some(spec.trim())
        .filter(|s| !s.is_empty())
        .and_then(|s| s.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::WARN));
    for target in QUIET_DEPENDENCIES {
        if !spec.contains(target) {
            filter = filter.with_target(*target, LevelFilter::ERROR);
        }
    }
    filter
}

/// Flags, environment, `--env-file` and the configuration file, stacked.
fn load_sources(cli: &Cli) -> anyhow::Result<keymgr::config::Sources> {
    let mut flags = keymgr::config::MapSource::new();
    if let Some(b) = &cli.backend {
        flags.set(keymgr::config::KEY_BACKEND, b.as_str());
    }
    let env_file = cli
        .env_file
        .as_deref()
        .map(env_file::env_file)
        .transpose()?;
    Ok(keymgr::config::sources(
        flags,
        env_file,
        cli.config.clone(),
    )?)
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
    let exit = context::Exit::Usage;
    println!(
        "{}",
        context::versioned(serde_json::json!({
            "error": { "kind": "usage", "exit_code": exit as u8, "message": message }
        }))
    );
    exit.code()
}

#[cfg(test)]
mod tests {
    use tracing::Level;

    #[test]
    fn log_filter_defaults_to_warn_and_reads_rust_log_directives() {
        for spec in ["", "  ", "keymgr=loud"] {
            let f = super::log_filter(spec);
            assert!(f.would_enable("keymgr_core", &Level::WARN), "{spec:?}");
            assert!(!f.would_enable("keymgr_core", &Level::INFO), "{spec:?}");
        }
        let f = super::log_filter("info,keymgr_aws=trace");
        assert!(f.would_enable("keymgr_core::retry", &Level::INFO));
        assert!(!f.would_enable("keymgr_core::retry", &Level::DEBUG));
        assert!(f.would_enable("keymgr_aws::client", &Level::TRACE));
        // Only the named target: everything else is off, as with `EnvFilter`.
        let f = super::log_filter("keymgr_evm=debug");
        assert!(f.would_enable("keymgr_evm", &Level::DEBUG));
        assert!(!f.would_enable("keymgr_core", &Level::ERROR));
    }

    #[test]
    fn log_filter_keeps_dependency_chatter_at_error_unless_named() {
        let f = super::log_filter("trace");
        assert!(f.would_enable("keymgr_aws", &Level::TRACE));
        for target in super::QUIET_DEPENDENCIES {
            let inner = format!("{target}::inner");
            assert!(f.would_enable(&inner, &Level::ERROR), "{target}");
            assert!(!f.would_enable(&inner, &Level::WARN), "{target}");
        }
        let f = super::log_filter("warn,aws_smithy_runtime=debug");
        assert!(f.would_enable("aws_smithy_runtime::client", &Level::DEBUG));
        assert!(!f.would_enable("hyper::proto", &Level::WARN));
    }

    /// Each command built by a cargo feature names it, in every build (a build without
    /// the feature refuses the command with [`Feature::not_built`](crate::cmd::features::Feature::not_built)).
    #[test]
    fn feature_gated_commands_name_their_feature() {
        use crate::cmd::features::Feature;
        use clap::Parser as _;
        type Case<'a> = (&'a [&'a str], Option<(Feature, &'a str)>);
        let cases: [Case<'_>; 7] = [
            (
                &["evm", "sign-tx", "--file", "tx.json"],
                Some((Feature::EvmTx, "evm sign-tx")),
            ),
            (
                &[
                    "evm",
                    "sign-authorization",
                    "--any-chain",
                    "--address",
                    "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
                    "--nonce",
                    "0",
                ],
                Some((Feature::EvmTx, "evm sign-authorization")),
            ),
            (
                &["evm", "sign-typed-data", "--file", "-"],
                Some((Feature::EvmEip712, "evm sign-typed-data")),
            ),
            (
                &["encrypt", "--in", "-", "--out", "-", "--kek", "env:K"],
                Some((Feature::Envelope, "encrypt")),
            ),
            (
                &["decrypt", "--in", "-", "--out", "-", "--kek", "env:K"],
                Some((Feature::Envelope, "decrypt")),
            ),
            (&["evm", "sign-message", "hello"], None),
            (&["demo"], None),
        ];
        for (args, expected) in cases {
            let cli =
                super::Cli::try_parse_from(std::iter::once("keymgr").chain(args.iter().copied()))
                    .unwrap_or_else(|e| panic!("{args:?}: {e}"));
            let got = cli.command.feature();
            assert_eq!(
                got.as_ref().map(|(f, n)| (*f, n.as_str())),
                expected,
                "{args:?}"
            );
        }
    }

    #[test]
    fn command_line_definition_is_consistent() {
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }

    /// The commands that print something of their own: leaves, and commands that also
    /// run without a subcommand (`rotate`), as `rotate-approve`, `evm-sign-tx`, ...
    fn runnable(cmd: &clap::Command, prefix: &str, out: &mut Vec<String>) {
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let name = if prefix.is_empty() {
                sub.get_name().to_owned()
            } else {
                format!("{prefix}-{}", sub.get_name())
            };
            if !sub.has_subcommands() || !sub.is_subcommand_required_set() {
                out.push(name.clone());
            }
            runnable(sub, &name, out);
        }
    }

    /// Every command accepts `--json`, and each has its output's JSON Schema under
    /// `schema/` (tests/json_schema/ validates every command's output against it).
    #[test]
    fn every_command_has_a_json_schema() {
        let cli = <super::Cli as clap::CommandFactory>::command();
        assert!(
            cli.get_arguments()
                .any(|a| a.get_id() == "json" && a.is_global_set())
        );
        let mut commands = Vec::new();
        runnable(&cli, "", &mut commands);
        assert!(commands.len() > 20, "{commands:?}");
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema");
        let missing: Vec<&String> = commands
            .iter()
            .filter(|c| !dir.join(format!("{c}.json")).is_file())
            .collect();
        assert!(
            missing.is_empty(),
            "commands without schema/NAME.json: {missing:?}"
        );
    }
}
