//! `keymgr encrypt` / `keymgr decrypt`: envelope encryption of files or pipes in the AWS
//! Encryption SDK message format (keymgr-envelope).

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use keymgr::{EncryptionContext, KeyBackend};
use keymgr_envelope::{
    AwsKmsKeyring, AzureKvKeyring, DecryptOptions, Decryptor, EncryptedDataKey, Encryptor,
    HsmAesKeyring, Keyring, MultiKeyring, PROVIDER_ID_AWS_KMS, PROVIDER_ID_AZURE_KV, RawAesKeyring,
};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::{Context, Output};

/// Files at least this large get a progress bar (on a terminal).
const PROGRESS_MIN_BYTES: u64 = 8 << 20;
/// Namespace of development KEKs read from environment variables (`--kek env:VAR`).
const DEV_NAMESPACE: &str = "keymgr-env";
/// Raw AES keyring namespace of HSM KEKs given without one (`--kek hsm:LABEL`).
const HSM_NAMESPACE: &str = "keymgr-hsm";

/// Options shared by `encrypt` and `decrypt`.
#[derive(Debug, clap::Args)]
pub(crate) struct EnvelopeArgs {
    /// Input file, or `-` for stdin.
    #[arg(long = "in", value_name = "FILE|-")]
    input: String,
    /// Output file, or `-` for stdout. An existing file is refused unless --force.
    #[arg(long = "out", value_name = "FILE|-")]
    output: String,
    /// Encryption context pair (repeatable). Encrypting: bound to the message as AAD.
    /// Decrypting: the message must carry each pair with this value.
    #[arg(long = "context", value_name = "KEY=VALUE")]
    context: Vec<String>,
    /// KEK, in order (repeatable, at least one). Through the configured backend:
    /// `aws-kms:KEY_ARN` (KEY_BACKEND=aws-kms), `azure-kv:KEY_NAME` (an RSA key,
    /// KEY_BACKEND=azure-kv), `hsm:[NAMESPACE:]AES_KEY_LABEL` (an AES key on the token,
    /// KEY_BACKEND=hsm; entries are raw AES keyring entries under NAMESPACE, default
    /// `keymgr-hsm`). Or `env:VARIABLE`: a 256-bit hex key from that environment variable
    /// (development only). Encrypting wraps the data key under every KEK, the first
    /// generating it; decrypting tries them in order.
    #[arg(long = "kek", value_name = "SPEC", required = true)]
    kek: Vec<String>,
    /// Replace an existing output file.
    #[arg(long)]
    force: bool,
}

/// `keymgr encrypt`.
#[derive(Debug, clap::Args)]
pub(crate) struct EncryptArgs {
    #[command(flatten)]
    common: EnvelopeArgs,
    /// Plaintext bytes per frame.
    #[arg(long, default_value_t = keymgr_envelope::DEFAULT_FRAME_LENGTH)]
    frame_length: u32,
}

fn invalid(field: &str, reason: impl Into<String>) -> anyhow::Error {
    keymgr::Error::invalid_input(field, reason).into()
}

fn parse_context(pairs: &[String]) -> anyhow::Result<EncryptionContext> {
    let mut context = EncryptionContext::new();
    for pair in pairs {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| invalid("--context", format!("'{pair}': expected KEY=VALUE")))?;
        if context.insert(k.to_owned(), v.to_owned()).is_some() {
            return Err(invalid("--context", format!("key '{k}' given twice")));
        }
    }
    Ok(context)
}

async fn keyrings(specs: &[String], ctx: &Context) -> anyhow::Result<MultiKeyring> {
    let mut keyrings: Vec<Arc<dyn Keyring>> = Vec::new();
    for spec in specs {
        let keyring: Arc<dyn Keyring> = match spec.split_once(':') {
            Some((PROVIDER_ID_AWS_KMS, arn)) => {
                let manager: Arc<dyn KeyBackend> = ctx.manager().await?;
                Arc::new(AwsKmsKeyring::new(manager, arn)?)
            }
            Some((PROVIDER_ID_AZURE_KV, name)) => {
                let manager: Arc<dyn KeyBackend> = ctx.manager().await?;
                Arc::new(AzureKvKeyring::new(manager, name)?)
            }
            Some(("hsm", rest)) => {
                let (namespace, key) = rest.split_once(':').unwrap_or((HSM_NAMESPACE, rest));
                let manager: Arc<dyn KeyBackend> = ctx.manager().await?;
                Arc::new(HsmAesKeyring::new(manager, namespace, key)?)
            }
            Some(("env", var)) => Arc::new(RawAesKeyring::dev_from_env(var, DEV_NAMESPACE, var)?),
            _ => {
                return Err(invalid(
                    "--kek",
                    format!(
                        "'{spec}': expected aws-kms:KEY_ARN, azure-kv:KEY_NAME, \
                         hsm:[NAMESPACE:]AES_KEY_LABEL or env:VARIABLE"
                    ),
                ));
            }
        };
        keyrings.push(keyring);
    }
    let (first, rest) = keyrings
        .split_first()
        .ok_or_else(|| invalid("--kek", "give at least one KEK"))?;
    Ok(rest.iter().fold(MultiKeyring::new(first.clone()), |m, k| {
        m.wrap_with(k.clone())
    }))
}

/// Where output goes: stdout, or a temporary file (0600, created new, never through a
/// symlink) renamed over the target only once everything is written and verified.
enum Sink {
    Stdout(tokio::io::Stdout),
    File {
        file: tokio::fs::File,
        temp: PathBuf,
        target: PathBuf,
    },
}

impl Sink {
    async fn open(output: &str, force: bool) -> anyhow::Result<Self> {
        if output == "-" {
            return Ok(Sink::Stdout(tokio::io::stdout()));
        }
        let target = PathBuf::from(output);
        if !force && tokio::fs::symlink_metadata(&target).await.is_ok() {
            return Err(invalid(
                "--out",
                format!("{output} exists; pass --force to replace it"),
            ));
        }
        let name = target
            .file_name()
            .ok_or_else(|| invalid("--out", format!("{output} is not a file path")))?;
        let temp = target.with_file_name(format!(
            ".{}.keymgr-{}.tmp",
            name.to_string_lossy(),
            std::process::id()
        ));
        let mut options = tokio::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        options.mode(0o600);
        let file = options
            .open(&temp)
            .await
            .map_err(|e| anyhow::anyhow!("creating {}: {e}", temp.display()))?;
        Ok(Sink::File { file, temp, target })
    }

    fn writer(&mut self) -> &mut (dyn AsyncWrite + Unpin + Send) {
        match self {
            Sink::Stdout(s) => s,
            Sink::File { file, .. } => file,
        }
    }

    /// Keeps the output: syncs and renames the temporary file into place.
    async fn commit(self) -> anyhow::Result<()> {
        if let Sink::File { file, temp, target } = self {
            file.sync_all().await?;
            drop(file);
            tokio::fs::rename(&temp, &target).await.map_err(|e| {
                anyhow::anyhow!("renaming {} to {}: {e}", temp.display(), target.display())
            })?;
        }
        Ok(())
    }

    /// Drops the output (nothing unverified is left behind).
    async fn discard(self) {
        if let Sink::File { file, temp, .. } = self {
            drop(file);
            let _ = tokio::fs::remove_file(&temp).await;
        }
    }
}

/// Input plus its size when known (a regular file).
async fn open_input(
    input: &str,
) -> anyhow::Result<(Box<dyn AsyncRead + Unpin + Send>, Option<u64>)> {
    if input == "-" {
        return Ok((Box::new(tokio::io::stdin()), None));
    }
    let file = tokio::fs::File::open(input)
        .await
        .map_err(|e| anyhow::anyhow!("opening {input}: {e}"))?;
    let meta = file.metadata().await?;
    let len = meta.is_file().then_some(meta.len());
    Ok((Box::new(file), len))
}

/// Counts bytes read into a progress bar.
struct Progress<R> {
    inner: R,
    bar: indicatif::ProgressBar,
}

impl<R: AsyncRead + Unpin> AsyncRead for Progress<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        self.bar.inc(read as u64);
        poll
    }
}

fn with_progress(
    reader: Box<dyn AsyncRead + Unpin + Send>,
    len: Option<u64>,
) -> (
    Box<dyn AsyncRead + Unpin + Send>,
    Option<indicatif::ProgressBar>,
) {
    match len {
        Some(len) if len >= PROGRESS_MIN_BYTES && std::io::stderr().is_terminal() => {
            let bar = indicatif::ProgressBar::new(len);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
            ) {
                bar.set_style(style);
            }
            let reader = Progress {
                inner: reader,
                bar: bar.clone(),
            };
            (Box::new(reader), Some(bar))
        }
        _ => (reader, None),
    }
}

fn check_json_target(args: &EnvelopeArgs, json: bool) -> anyhow::Result<()> {
    if json && args.output == "-" {
        return Err(invalid(
            "--out",
            "with --json the summary goes to stdout; write the data to a file",
        ));
    }
    Ok(())
}

fn edks_json(edks: &[EncryptedDataKey]) -> serde_json::Value {
    edks.iter()
        .map(|e| {
            json!({
                "provider_id": e.provider_id,
                // KMS: the key ARN; raw AES: the key name (the IV and lengths follow).
                "key": e.key_name(),
            })
        })
        .collect()
}

/// Keeps the output only if the operation succeeded; otherwise removes it.
async fn finish<T>(
    sink: Sink,
    result: Result<T, keymgr_envelope::EnvelopeError>,
) -> anyhow::Result<T> {
    match result {
        Ok(v) => {
            sink.commit().await?;
            Ok(v)
        }
        Err(e) => {
            sink.discard().await;
            Err(envelope_error(e))
        }
    }
}

/// The envelope error as is: `--json` reports its [`keymgr_envelope::EnvelopeError::kind`].
fn envelope_error(e: keymgr_envelope::EnvelopeError) -> anyhow::Error {
    e.into()
}

pub(crate) async fn encrypt(
    args: EncryptArgs,
    ctx: &Context,
    json: bool,
) -> anyhow::Result<Output> {
    let common = &args.common;
    check_json_target(common, json)?;
    let context = parse_context(&common.context)?;
    let keyring = Arc::new(keyrings(&common.kek, ctx).await?);
    let encryptor = Encryptor::new(keyring)
        .frame_length(args.frame_length)
        .map_err(envelope_error)?;
    let (reader, len) = open_input(&common.input).await?;
    let (mut reader, bar) = with_progress(reader, len);
    let mut sink = Sink::open(&common.output, common.force).await?;
    let result = encryptor
        .encrypt_stream(&mut reader, sink.writer(), &context, len)
        .await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let summary = finish(sink, result).await?;
    Ok(Output::new(
        json!({
            "operation": "encrypt",
            "in": common.input,
            "out": common.output,
            "message_id": hex::encode(summary.message_id),
            "plaintext_bytes": summary.plaintext_bytes,
            "message_bytes": summary.message_bytes,
            "frames": summary.frames,
            "encryption_context": context,
            "encrypted_data_keys": edks_json(&summary.encrypted_data_keys),
        }),
        if common.output == "-" {
            String::new()
        } else {
            format!(
                "encrypted {} bytes into {} ({} bytes, {} frames, data key wrapped under {})",
                summary.plaintext_bytes,
                common.output,
                summary.message_bytes,
                summary.frames,
                summary
                    .encrypted_data_keys
                    .iter()
                    .map(EncryptedDataKey::key_name)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
    ))
}

pub(crate) async fn decrypt(
    args: EnvelopeArgs,
    ctx: &Context,
    json: bool,
) -> anyhow::Result<Output> {
    check_json_target(&args, json)?;
    let required_context = parse_context(&args.context)?;
    let keyring = Arc::new(keyrings(&args.kek, ctx).await?);
    let decryptor = Decryptor::new(keyring).options(DecryptOptions {
        required_context,
        ..DecryptOptions::default()
    });
    let (reader, len) = open_input(&args.input).await?;
    let (mut reader, bar) = with_progress(reader, len);
    let mut sink = Sink::open(&args.output, args.force).await?;
    let result = decryptor.decrypt_stream(&mut reader, sink.writer()).await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let summary = finish(sink, result).await?;
    let header = &summary.header;
    Ok(Output::new(
        json!({
            "operation": "decrypt",
            "in": args.input,
            "out": args.output,
            "message_id": hex::encode(header.message_id),
            "plaintext_bytes": summary.plaintext_bytes,
            "message_bytes": summary.message_bytes,
            "frames": summary.frames,
            "encryption_context": header.context,
            "encrypted_data_keys": edks_json(&header.encrypted_data_keys),
        }),
        if args.output == "-" {
            String::new()
        } else {
            format!(
                "decrypted {} bytes into {} (context: {})",
                summary.plaintext_bytes,
                args.output,
                header
                    .context
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
    ))
}
