//! `keymgr audit`: verify and export the hash-chained audit log (keymgr-audit).
//!
//! A keyed log (KEYMGR_AUDIT_HMAC_KEY, or KEYMGR_AUDIT_HMAC_KEY_WRAPPED + _KEK) is
//! verified with the same key; the mode is never guessed from the log.

use std::io::BufWriter;
use std::path::PathBuf;

use keymgr::PublicKey;
use keymgr_audit::{Anchor, ChainKey, HmacKeySource, TimeRange, Verifier, VerifyReport, publish};
use serde_json::json;

use crate::{Context, Output};

/// `keymgr audit ...`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum AuditCommand {
    /// Verify the hash chains of logs: each directory is a chain of its own (one writer
    /// per directory), segment files given directly form one more; exits with an error
    /// naming the first broken link (seq and reason).
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
    /// elsewhere); detects truncation at an entry boundary. Repeatable.
    #[arg(long)]
    anchor: Vec<String>,
    /// The checkpoint file the writer publishes to (KEYMGR_AUDIT_CHECKPOINT_FILE): every
    /// checkpoint must verify and be in the logs, which detects a cut-off tail, deleted
    /// segments and a replaced log.
    #[arg(long)]
    checkpoints: Option<PathBuf>,
    /// Fail on warnings too: an empty log, an unkeyed chain, nothing outside the log
    /// (--checkpoints/--anchor) to check the tail against.
    #[arg(long)]
    strict: bool,
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
    /// Write the JSON lines to this file (streamed) instead of stdout; `-` is stdout.
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
    Ok(match HmacKeySource::from_source(&ctx.vars())? {
        None => ChainKey::sha256(),
        Some(src @ HmacKeySource::Raw(_)) => src.resolve(None).await?,
        Some(src) => {
            let backend = ctx.bare_backend().await?;
            src.resolve(Some(backend.as_ref())).await?
        }
    })
}

fn is_broken_pipe(e: &keymgr::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        {
            return true;
        }
        source = s.source();
    }
    false
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
    for a in &args.anchor {
        verifier = verifier.anchor(Anchor::parse(a)?);
    }
    let trusted = args
        .trust_keys
        .iter()
        .map(|k| parse_public_key(k))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for k in &trusted {
        verifier = verifier.trust(k.clone());
    }
    let checkpoints = match &args.checkpoints {
        Some(file) => {
            let cps = publish::read_published(file)?;
            publish::check_published(&cps, &trusted, &file.display().to_string())?;
            cps
        }
        None => Vec::new(),
    };
    let verifier = verifier.checkpoints(&checkpoints);
    let reports = verifier.verify_each(&args.paths)?;
    for (name, report) in &reports {
        if let Some(b) = &report.broken {
            return Err(keymgr::Error::integrity(
                format!("audit log {name}"),
                format!(
                    "chain broken at {b}; {} entries before it verified",
                    report.entries
                ),
            )
            .into());
        }
    }
    let unmatched = verifier.unmatched_nodes(reports.iter().map(|(_, r)| r));
    if !unmatched.is_empty() {
        return Err(keymgr::Error::integrity(
            "audit log",
            format!(
                "published checkpoints of node(s) {} match no entries in the logs given (log missing, replaced or renamed)",
                unmatched.join(", ")
            ),
        )
        .into());
    }
    let mut text = Vec::new();
    let mut all_warnings = Vec::new();
    let several = reports.len() > 1;
    for (name, report) in &reports {
        let label = if several {
            format!("{name}: ")
        } else {
            String::new()
        };
        text.push(format!("OK: {label}{}", summary(report)));
        for w in report.warnings() {
            text.push(format!("WARNING: {name}: {w}"));
            all_warnings.push(json!({ "log": name, "warning": w, "message": w.to_string() }));
        }
    }
    if args.strict && !all_warnings.is_empty() {
        let messages: Vec<&str> = text
            .iter()
            .filter_map(|l| l.strip_prefix("WARNING: "))
            .collect();
        return Err(keymgr::Error::integrity(
            "audit log",
            format!("--strict: {}", messages.join("; ")),
        )
        .into());
    }
    let json_reports: Vec<_> = reports
        .iter()
        .map(|(name, r)| json!({ "log": name, "report": r }))
        .collect();
    let mut out = json!({ "ok": true, "logs": json_reports, "warnings": all_warnings });
    if let [(_, only)] = reports.as_slice() {
        out["report"] = json!(only);
    }
    Ok(Output::new(out, text.join("\n")))
}

async fn export(mut args: ExportArgs, ctx: &Context, json: bool) -> anyhow::Result<Output> {
    if args.output.as_deref() == Some(std::path::Path::new("-")) {
        args.output = None;
    }
    let range = TimeRange::parse(args.from.as_deref(), args.to.as_deref())?;
    let verifier = Verifier::new(chain_key(ctx).await?);
    let (report, lines) = match &args.output {
        // Text mode streams the verified JSON lines straight to stdout (any size of log);
        // with --json they are collected into the one JSON object.
        None if !json => {
            let stdout = std::io::stdout();
            match keymgr_audit::export(&args.paths, range, &verifier, BufWriter::new(stdout.lock()))
            {
                Ok(report) => (report, None),
                // The reader went away (`export | head`): nothing left to say.
                Err(e) if is_broken_pipe(&e) => return Ok(Output::new(json!({}), "")),
                Err(e) => return Err(e.into()),
            }
        }
        Some(path) => {
            let report = keymgr_audit::export_file(&args.paths, range, &verifier, path)?;
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
