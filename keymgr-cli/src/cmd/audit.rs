//! `keymgr audit`: verify and export the hash-chained audit log (keymgr-audit).
//!
//! A keyed log (KEYMGR_AUDIT_HMAC_KEY, or KEYMGR_AUDIT_HMAC_KEY_WRAPPED + _KEK) is
//! verified with the same key; the mode is never guessed from the log.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;

use keymgr::PublicKey;
use keymgr_audit::{Anchor, ChainKey, HmacKeySource, TimeRange, Verifier, VerifyReport};
use serde_json::json;

use crate::{Context, Output};

/// `keymgr audit ...`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum AuditCommand {
    /// Verify the hash chain of a log (directories or segment files); exits with an
    /// error naming the first broken link (seq and reason).
    Verify(VerifyArgs),
    /// Print the entries of a time range as JSON lines (verified while reading).
    Export(ExportArgs),
}

/// `keymgr audit verify`.
#[derive(Debug, clap::Args)]
pub(crate) struct VerifyArgs {
    /// Log directories (KEYMGR_AUDIT_PATH) or segment files.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// A point the log must contain, SEQ or SEQ:HASH (e.g. from a signed checkpoint kept
    /// elsewhere); detects truncation at an entry boundary.
    #[arg(long)]
    anchor: Option<String>,
    /// Public key (hex: 33-byte secp256k1 or 32-byte Ed25519) whose checkpoints you
    /// trust; repeatable. The report names the last checkpoint such a key signed.
    #[arg(long = "trust-key")]
    trust_keys: Vec<String>,
}

/// `keymgr audit export`.
#[derive(Debug, clap::Args)]
pub(crate) struct ExportArgs {
    /// Start, inclusive, RFC 3339 (e.g. 2025-01-31T00:00:00Z or 2025-01-31).
    #[arg(long)]
    from: Option<String>,
    /// End, exclusive, RFC 3339.
    #[arg(long)]
    to: Option<String>,
    /// Write the JSON lines to this file (streamed) instead of stdout.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Log directories (KEYMGR_AUDIT_PATH) or segment files.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

pub(crate) async fn run(cmd: AuditCommand, ctx: &Context, json: bool) -> anyhow::Result<Output> {
    match cmd {
        AuditCommand::Verify(args) => verify(args, ctx).await,
        AuditCommand::Export(args) => export(args, ctx, json).await,
    }
}

/// The chain key from the environment (a wrapped key is unwrapped by the backend).
async fn chain_key(ctx: &Context) -> anyhow::Result<ChainKey> {
    let var = |name: &str| std::env::var(name).ok();
    Ok(match HmacKeySource::from_vars(var)? {
        None => ChainKey::sha256(),
        Some(src @ HmacKeySource::Raw(_)) => src.resolve(None).await?,
        Some(src) => {
            let backend = ctx.bare_backend().await?;
            src.resolve(Some(backend.as_ref())).await?
        }
    })
}

fn parse_public_key(hex_key: &str) -> anyhow::Result<PublicKey> {
    let bytes = hex::decode(hex_key.trim().trim_start_matches("0x"))
        .map_err(|e| keymgr::Error::invalid_input("--trust-key", format!("expected hex: {e}")))?;
    Ok(match bytes.len() {
        32 => PublicKey::from_ed25519_bytes(&bytes)?,
        _ => PublicKey::from_sec1(&bytes)?,
    })
}

fn summary(r: &VerifyReport) -> String {
    let range = match (r.first_seq, r.last_seq) {
        (Some(a), Some(b)) => format!("seq {a}..={b}"),
        _ => "no entries".to_owned(),
    };
    let mut s = format!(
        "{} entries ({range}) in {} file(s), {} checkpoint(s), chain {}",
        r.entries, r.files, r.checkpoints, r.mode
    );
    if let Some(h) = &r.last_hash {
        s.push_str(&format!(", head {h}"));
    }
    if let Some((seq, hash)) = &r.last_trusted_checkpoint {
        s.push_str(&format!(
            "\nlast checkpoint signed by a trusted key: seq {seq} ({hash})"
        ));
    }
    s
}

async fn verify(args: VerifyArgs, ctx: &Context) -> anyhow::Result<Output> {
    let mut verifier = Verifier::new(chain_key(ctx).await?);
    if let Some(a) = &args.anchor {
        verifier = verifier.anchor(Anchor::parse(a)?);
    }
    for k in &args.trust_keys {
        verifier = verifier.trust(parse_public_key(k)?);
    }
    let report = verifier.verify_paths(&args.paths)?;
    if let Some(b) = &report.broken {
        let place = args
            .paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" ");
        return Err(keymgr::Error::integrity(
            format!("audit log {place}"),
            format!(
                "chain broken at {b}; {} entries before it verified",
                report.entries
            ),
        )
        .into());
    }
    let text = format!("OK: {}", summary(&report));
    Ok(Output::new(json!({ "ok": true, "report": report }), text))
}

async fn export(args: ExportArgs, ctx: &Context, json: bool) -> anyhow::Result<Output> {
    let range = TimeRange::parse(args.from.as_deref(), args.to.as_deref())?;
    let verifier = Verifier::new(chain_key(ctx).await?);
    let (report, lines) = match &args.output {
        // Text mode streams the verified JSON lines straight to stdout (any size of log);
        // with --json they are collected into the one JSON object.
        None if !json => {
            let stdout = std::io::stdout();
            let report =
                keymgr_audit::export(&args.paths, range, &verifier, BufWriter::new(stdout.lock()))?;
            (report, None)
        }
        Some(path) => {
            let file = File::create(path).map_err(|e| {
                keymgr::Error::invalid_input(
                    "--output",
                    format!("cannot create {}: {e}", path.display()),
                )
            })?;
            let report = keymgr_audit::export(&args.paths, range, &verifier, BufWriter::new(file))?;
            (report, None)
        }
        None => {
            let mut buf = Vec::new();
            let report = keymgr_audit::export(&args.paths, range, &verifier, &mut buf)?;
            (report, Some(String::from_utf8(buf)?))
        }
    };
    if let Some(b) = &report.broken {
        return Err(keymgr::Error::integrity(
            "audit log",
            format!(
                "chain broken at {b}; export stopped after {} entries",
                report.exported
            ),
        )
        .into());
    }
    let mut out = json!({ "exported": report.exported, "scanned": report.scanned });
    let text = match (lines, &args.output) {
        // Text mode prints exactly the JSON lines (pipe them into a file or a SIEM).
        (Some(lines), _) => {
            out["entries"] = serde_json::Value::Array(
                lines
                    .lines()
                    .map(serde_json::from_str)
                    .collect::<Result<_, _>>()?,
            );
            lines
        }
        (None, Some(path)) => {
            out["output"] = json!(path.display().to_string());
            format!(
                "exported {} of {} entries to {}",
                report.exported,
                report.scanned,
                path.display()
            )
        }
        // Streamed to stdout already.
        (None, None) => String::new(),
    };
    Ok(Output::new(out, text))
}
