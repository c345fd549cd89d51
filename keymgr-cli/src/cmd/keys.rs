//! Backend-generic commands: public keys and raw signing.

use keymgr::{KeyRef, SignPayload};
use serde_json::json;

use crate::{Context, Output};

/// `keymgr public-key`.
#[derive(Debug, clap::Args)]
pub(crate) struct PublicKeyArgs {
    /// Key name, optionally with a version: NAME or NAME@VERSION.
    #[arg(long)]
    key: String,
}

/// `keymgr sign`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("payload").required(true)))]
pub(crate) struct SignArgs {
    /// Key name, optionally with a version: NAME or NAME@VERSION.
    #[arg(long)]
    key: String,
    /// A 32-byte prehash as 64 hex characters (secp256k1 keys).
    #[arg(long, group = "payload")]
    digest: Option<String>,
    /// A raw message as hex (Ed25519 keys).
    #[arg(long, group = "payload")]
    message: Option<String>,
}

fn decode_hex(field: &str, s: &str) -> anyhow::Result<Vec<u8>> {
    let s = s.trim();
    let s = s.strip_prefix("0x").unwrap_or(s);
    hex::decode(s)
        .map_err(|e| keymgr::Error::invalid_input(field, format!("expected hex: {e}")).into())
}

pub(crate) async fn public_key(args: PublicKeyArgs, ctx: &Context) -> anyhow::Result<Output> {
    let key = KeyRef::parse(&args.key)?;
    let manager = ctx.manager().await?;
    let pk = manager.public_key(&key).await?;
    let hex_pk = hex::encode(pk.to_bytes());
    let uncompressed = pk.to_uncompressed().map(hex::encode);
    Ok(Output::new(
        json!({
            "key": key.to_string(),
            "backend": manager.backend().name(),
            "algorithm": pk.algorithm().as_str(),
            "public_key": hex_pk,
            "public_key_uncompressed": uncompressed,
        }),
        format!(
            "{key} ({}, {}): {hex_pk}",
            pk.algorithm(),
            manager.backend().name()
        ),
    ))
}

pub(crate) async fn sign(args: SignArgs, ctx: &Context) -> anyhow::Result<Output> {
    let key = KeyRef::parse(&args.key)?;
    let digest = match &args.digest {
        Some(d) => Some(decode_hex("digest", d)?),
        None => None,
    };
    let payload = match (&digest, &args.message) {
        (Some(d), _) => SignPayload::prehash(d)?,
        (None, Some(m)) => SignPayload::message(decode_hex("message", m)?),
        (None, None) => anyhow::bail!("pass --digest or --message"),
    };
    let manager = ctx.manager().await?;
    let sig = manager.sign(&key, &payload).await?;
    let mut out = json!({
        "key": key.to_string(),
        "backend": manager.backend().name(),
        "algorithm": sig.algorithm().as_str(),
        "signature": hex::encode(sig.to_bytes()),
    });
    let mut text = format!(
        "{} signature by {key}: {}",
        sig.algorithm(),
        hex::encode(sig.to_bytes())
    );
    if let (Some(s), Some(recovery_id)) = (sig.as_secp256k1(), sig.recovery_id()) {
        out["r"] = json!(hex::encode(s.r()));
        out["s"] = json!(hex::encode(s.s()));
        out["der"] = json!(hex::encode(s.to_der()));
        // The recovery id makes the signature usable where the key is recovered from it
        // (EVM ecrecover); it came out of the verification against the public key.
        out["recovery_id"] = json!(recovery_id.to_byte());
        if recovery_id.is_x_reduced() {
            // Probability about 2^-127; an Ethereum v cannot express it.
            text.push_str(&format!(
                "\nrecovery id: {} (x-reduced: no EVM v)",
                recovery_id.to_byte()
            ));
        } else {
            let y_parity = u8::from(recovery_id.is_y_odd());
            let v = 27 + y_parity;
            out["y_parity"] = json!(y_parity);
            out["v"] = json!(v);
            out["signature_rsv"] = json!(format!("{}{v:02x}", hex::encode(s.to_bytes())));
            text.push_str(&format!(
                "\ny parity: {y_parity}, v: {v}\nr‖s‖v: {}{v:02x}",
                hex::encode(s.to_bytes())
            ));
        }
    }
    Ok(Output::new(out, text))
}
