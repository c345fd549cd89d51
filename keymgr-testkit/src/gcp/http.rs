//! REST routing and JSON encoding of the stand-in.
//!
//! Methods of <https://cloud.google.com/kms/docs/reference/rest/v1/projects.locations.keyRings.cryptoKeys>
//! (`get`, `patch`, `encrypt`, `decrypt`) and
//! <https://cloud.google.com/kms/docs/reference/rest/v1/projects.locations.keyRings.cryptoKeys.cryptoKeyVersions>
//! (`get`, `list`, `create`, `patch`, `getPublicKey`, `asymmetricSign`).

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::{Method, Request, body::Incoming};
use k256::elliptic_curve::scalar::IsHigh as _;
use serde_json::{Value, json};

use super::state::{Keys, Refusal, State, Version};
use super::{Fault, Shared};

use super::wire::{Reply, error, query_param, reply};

/// Request context: whether enums travel as integers.
struct Ctx {
    int_enums: bool,
}

impl Ctx {
    fn enum_value(&self, number: i32, name: &str) -> Value {
        if self.int_enums {
            json!(number)
        } else {
            json!(name)
        }
    }
}

pub(crate) async fn handle(shared: &Shared, req: Request<Incoming>) -> Reply {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    if let Some(auth) = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let mut seen = shared
            .authorizations
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if !seen.iter().any(|s| s == auth) {
            seen.push(auth.to_owned());
        }
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return error(shared, 400, "INVALID_ARGUMENT", &e.to_string(), None),
    };
    let ctx = Ctx {
        int_enums: query_param(&query, "$alt").is_some_and(|v| v.contains("enum-encoding=int")),
    };
    let Some(name) = path.strip_prefix("/v1/") else {
        return error(shared, 404, "NOT_FOUND", &format!("no route {path}"), None);
    };
    let body: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                let m = format!("Invalid JSON payload received. {e}");
                return error(shared, 400, "INVALID_ARGUMENT", &m, None);
            }
        }
    };
    let (op, target) = route(&method, name);
    let fault = shared.arrive(op);
    match fault {
        Some(Fault::Unavailable) => {
            return error(
                shared,
                503,
                "UNAVAILABLE",
                "The service is currently unavailable.",
                None,
            );
        }
        Some(Fault::Throttled) => {
            let m = "Quota exceeded for quota metric 'Cryptographic requests' and limit \
                     'Cryptographic requests per minute'.";
            return error(shared, 429, "RESOURCE_EXHAUSTED", m, Some("1s"));
        }
        Some(Fault::Status(code, status, message)) => {
            return error(shared, code, status, &message, None);
        }
        Some(Fault::Malformed) => {
            return reply(200, Bytes::from_static(b"<html>502 Bad Gateway</html>"));
        }
        _ => {}
    }
    let mut keys = shared.lock_keys();
    let result = match op {
        "asymmetricSign" => sign(&mut keys, target, &body, fault.as_ref()),
        "getPublicKey" => public_key(&mut keys, target, &ctx),
        "encrypt" => encrypt(&mut keys, target, &body),
        "decrypt" => decrypt(&mut keys, target, &body),
        "listCryptoKeyVersions" => list_versions(&mut keys, target, &ctx, &query),
        "createCryptoKeyVersion" => keys.add_version(target).and_then(|id| {
            let name = format!("{target}/cryptoKeyVersions/{id}");
            version_json(keys.version_mut(&name)?, &name, &ctx)
        }),
        "getCryptoKeyVersion" => get_version(&mut keys, target, &ctx),
        "updateCryptoKeyVersion" => update_version(&mut keys, target, &body, &query, &ctx),
        "getCryptoKey" => crypto_key_json(&keys, target, &ctx),
        "updateCryptoKey" => update_key(&mut keys, target, &body, &query, &ctx),
        _ => Err((404, "NOT_FOUND", format!("no route {method} {path}"))),
    };
    drop(keys);
    match result {
        Ok(mut v) => {
            apply_response_fault(&mut v, fault.as_ref());
            reply(200, Bytes::from(v.to_string()))
        }
        Err((code, status, message)) => error(shared, code, status, &message, None),
    }
}

/// The method name and the resource it acts on.
fn route<'a>(method: &Method, name: &'a str) -> (&'static str, &'a str) {
    if let Some(n) = name.strip_suffix(":asymmetricSign") {
        return ("asymmetricSign", n);
    }
    if let Some(n) = name.strip_suffix(":encrypt") {
        return ("encrypt", n);
    }
    if let Some(n) = name.strip_suffix(":decrypt") {
        return ("decrypt", n);
    }
    if let Some(n) = name.strip_suffix("/publicKey") {
        return ("getPublicKey", n);
    }
    if let Some(n) = name.strip_suffix("/cryptoKeyVersions") {
        return match *method {
            Method::POST => ("createCryptoKeyVersion", n),
            _ => ("listCryptoKeyVersions", n),
        };
    }
    let version = name.contains("/cryptoKeyVersions/");
    match (method.clone(), version) {
        (Method::PATCH, true) => ("updateCryptoKeyVersion", name),
        (_, true) => ("getCryptoKeyVersion", name),
        (Method::PATCH, false) => ("updateCryptoKey", name),
        _ => ("getCryptoKey", name),
    }
}

fn crc(bytes: &[u8]) -> String {
    crc32c::crc32c(bytes).to_string()
}

/// A base64 bytes field and whether its `…Crc32c` companion (if sent) matches.
fn bytes_field(body: &Value, field: &str) -> Result<(Vec<u8>, bool), Refusal> {
    let value = match body.pointer(field).and_then(Value::as_str) {
        Some(s) => B64
            .decode(s)
            .map_err(|_| (400, "INVALID_ARGUMENT", format!("{field}: invalid base64")))?,
        None => Vec::new(),
    };
    let crc_field = format!(
        "{}Crc32c",
        field
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or(field)
    );
    let sent = body.get(&crc_field);
    let verified = match sent {
        None | Some(Value::Null) => false,
        Some(v) => {
            let got = v
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| v.to_string());
            if got != crc(&value) {
                return Err((
                    400,
                    "INVALID_ARGUMENT",
                    format!(
                        "The checksum in field {crc_field} did not match the data in field {field}."
                    ),
                ));
            }
            true
        }
    };
    Ok((value, verified))
}

fn sign(
    keys: &mut Keys,
    name: &str,
    body: &Value,
    fault: Option<&Fault>,
) -> Result<Value, Refusal> {
    let (mut digest, digest_ok) = bytes_field(body, "/digest/sha256")?;
    let (mut data, data_ok) = bytes_field(body, "/data")?;
    let v = keys.usable(name)?;
    let has_digest = body.get("digest").is_some();
    if matches!(fault, Some(Fault::WrongSignature)) {
        if let Some(b) = digest.last_mut() {
            *b ^= 1;
        }
        data.push(0);
    }
    let mut signature = v.sign(
        has_digest.then_some(&digest[..]),
        (!has_digest).then_some(&data[..]),
    )?;
    if matches!(fault, Some(Fault::HighS)) {
        signature = high_s(&signature);
    }
    Ok(json!({
        "signature": B64.encode(&signature),
        "signatureCrc32c": crc(&signature),
        "verifiedDigestCrc32c": has_digest && digest_ok,
        "verifiedDataCrc32c": !has_digest && data_ok,
        "name": name,
        "protectionLevel": 1,
    }))
}

/// The high-s twin (r, n - s) of a DER secp256k1 signature.
fn high_s(der: &[u8]) -> Vec<u8> {
    let Ok(sig) = k256::ecdsa::Signature::from_der(der) else {
        return der.to_vec();
    };
    if bool::from(sig.s().is_high()) {
        return der.to_vec();
    }
    k256::ecdsa::Signature::from_scalars(sig.r(), -*sig.s())
        .map(|s| s.to_der().as_bytes().to_vec())
        .unwrap_or_else(|_| der.to_vec())
}

fn public_key(keys: &mut Keys, name: &str, ctx: &Ctx) -> Result<Value, Refusal> {
    let v = keys.usable(name)?;
    let pem = v.pem()?;
    Ok(json!({
        "pem": pem,
        "pemCrc32c": crc(pem.as_bytes()),
        "algorithm": ctx.enum_value(v.algorithm.number(), v.algorithm.name()),
        "name": name,
        "protectionLevel": ctx.enum_value(1, "SOFTWARE"),
    }))
}

fn encrypt(keys: &mut Keys, name: &str, body: &Value) -> Result<Value, Refusal> {
    let (plaintext, p_ok) = bytes_field(body, "/plaintext")?;
    let (aad, a_ok) = bytes_field(body, "/additionalAuthenticatedData")?;
    let version = if name.contains("/cryptoKeyVersions/") {
        name.to_owned()
    } else {
        let primary = keys.key(name)?.primary;
        format!("{name}/cryptoKeyVersions/{primary}")
    };
    let ciphertext = keys.usable(&version)?.encrypt(&plaintext, &aad)?;
    Ok(json!({
        "name": version,
        "ciphertext": B64.encode(&ciphertext),
        "ciphertextCrc32c": crc(&ciphertext),
        "verifiedPlaintextCrc32c": p_ok,
        "verifiedAdditionalAuthenticatedDataCrc32c": a_ok,
        "protectionLevel": 1,
    }))
}

fn decrypt(keys: &mut Keys, name: &str, body: &Value) -> Result<Value, Refusal> {
    let (ciphertext, _) = bytes_field(body, "/ciphertext")?;
    let (aad, _) = bytes_field(body, "/additionalAuthenticatedData")?;
    let failed = || {
        (
            400,
            "INVALID_ARGUMENT",
            "Decryption failed: the ciphertext is invalid.".to_owned(),
        )
    };
    let id: [u8; 4] = ciphertext
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(failed)?;
    let version = format!("{name}/cryptoKeyVersions/{}", u32::from_be_bytes(id));
    keys.key(name)?;
    let primary = keys.key(name)?.primary;
    let plaintext = keys
        .usable(&version)
        .map_err(|e| if e.0 == 404 { failed() } else { e })?
        .decrypt(&ciphertext[4..], &aad)?;
    Ok(json!({
        "plaintext": B64.encode(&plaintext),
        "plaintextCrc32c": crc(&plaintext),
        "usedPrimary": version.ends_with(&format!("/{primary}")),
        "protectionLevel": 1,
    }))
}

fn timestamp(t: std::time::SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn version_json(v: &Version, name: &str, ctx: &Ctx) -> Result<Value, Refusal> {
    Ok(json!({
        "name": name,
        "state": ctx.enum_value(v.state.number(), v.state.name()),
        "protectionLevel": ctx.enum_value(1, "SOFTWARE"),
        "algorithm": ctx.enum_value(v.algorithm.number(), v.algorithm.name()),
        "createTime": timestamp(v.created),
    }))
}

fn get_version(keys: &mut Keys, name: &str, ctx: &Ctx) -> Result<Value, Refusal> {
    let v = keys.version_mut(name)?;
    if v.state == State::PendingGeneration {
        v.pending_gets = v.pending_gets.saturating_sub(1);
        if v.pending_gets == 0 {
            v.state = State::Enabled;
        }
    }
    version_json(v, name, ctx)
}

fn list_versions(keys: &mut Keys, name: &str, ctx: &Ctx, query: &str) -> Result<Value, Refusal> {
    // Two versions a page, so clients must follow nextPageToken.
    const PAGE: usize = 2;
    let start: usize = query_param(query, "pageToken")
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let key = keys.key(name)?;
    let mut page = Vec::new();
    for v in key.versions.iter().skip(start).take(PAGE) {
        page.push(version_json(
            v,
            &format!("{name}/cryptoKeyVersions/{}", v.id),
            ctx,
        )?);
    }
    let mut out = json!({ "cryptoKeyVersions": page, "totalSize": key.versions.len() });
    if start + PAGE < key.versions.len() {
        out["nextPageToken"] = json!((start + PAGE).to_string());
    }
    Ok(out)
}

fn update_version(
    keys: &mut Keys,
    name: &str,
    body: &Value,
    query: &str,
    ctx: &Ctx,
) -> Result<Value, Refusal> {
    if query_param(query, "updateMask").as_deref() != Some("state") {
        return Err((
            400,
            "INVALID_ARGUMENT",
            "updateMask must be \"state\".".to_owned(),
        ));
    }
    let state = State::parse(&body["state"]).ok_or_else(|| {
        (
            400,
            "INVALID_ARGUMENT",
            "state must be ENABLED or DISABLED.".to_owned(),
        )
    })?;
    let v = keys.version_mut(name)?;
    if !matches!(v.state, State::Enabled | State::Disabled) {
        return Err((
            400,
            "FAILED_PRECONDITION",
            format!("{name} is {}.", v.state.name()),
        ));
    }
    v.state = state;
    version_json(v, name, ctx)
}

fn crypto_key_json(keys: &Keys, name: &str, ctx: &Ctx) -> Result<Value, Refusal> {
    let key = keys.key(name)?;
    let (purpose, purpose_name) = key.algorithm.purpose();
    let mut out = json!({
        "name": name,
        "purpose": ctx.enum_value(purpose, purpose_name),
        "createTime": timestamp(key.created),
        "labels": key.labels,
        "versionTemplate": {
            "protectionLevel": ctx.enum_value(1, "SOFTWARE"),
            "algorithm": ctx.enum_value(key.algorithm.number(), key.algorithm.name()),
        },
    });
    if purpose == 1
        && let Some(v) = key.versions.iter().find(|v| v.id == key.primary)
    {
        out["primary"] = version_json(v, &format!("{name}/cryptoKeyVersions/{}", v.id), ctx)?;
    }
    Ok(out)
}

fn update_key(
    keys: &mut Keys,
    name: &str,
    body: &Value,
    query: &str,
    ctx: &Ctx,
) -> Result<Value, Refusal> {
    if query_param(query, "updateMask").as_deref() != Some("labels") {
        return Err((
            400,
            "INVALID_ARGUMENT",
            "the stand-in updates labels only.".to_owned(),
        ));
    }
    let labels: BTreeMap<String, String> = body["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.as_str().unwrap_or_default().to_owned()))
        .collect();
    check_labels(&labels)?;
    keys.key_mut(name)?.labels = labels;
    crypto_key_json(keys, name, ctx)
}

/// Cloud KMS's label rules (<https://cloud.google.com/kms/docs/creating-managing-labels#requirements>),
/// ASCII part: at most 64 labels; keys of 1-63 characters starting with a lowercase
/// letter, values of 0-63; both only lowercase letters, digits, `_` and `-`.
fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), Refusal> {
    let allowed = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    };
    if labels.len() > 64 {
        return Err(invalid(format!(
            "{} labels; at most 64 are allowed",
            labels.len()
        )));
    }
    for (k, v) in labels {
        let key_ok =
            (1..=63).contains(&k.len()) && k.as_bytes()[0].is_ascii_lowercase() && allowed(k);
        if !key_ok || v.len() > 63 || !allowed(v) {
            return Err(invalid(format!(
                "label {k:?}={v:?} breaks the label requirements"
            )));
        }
    }
    Ok(())
}

fn invalid(message: String) -> Refusal {
    (400, "INVALID_ARGUMENT", message)
}

/// Corrupts a successful response as `fault` says.
fn apply_response_fault(v: &mut Value, fault: Option<&Fault>) {
    match fault {
        Some(Fault::WrongChecksum) => {
            for field in [
                "signatureCrc32c",
                "pemCrc32c",
                "ciphertextCrc32c",
                "plaintextCrc32c",
            ] {
                if let Some(c) = v
                    .get(field)
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse::<u64>().ok())
                {
                    v[field] = json!(((c + 1) % (1 << 32)).to_string());
                }
            }
        }
        Some(Fault::Unverified) => {
            for field in [
                "verifiedDigestCrc32c",
                "verifiedDataCrc32c",
                "verifiedPlaintextCrc32c",
                "verifiedAdditionalAuthenticatedDataCrc32c",
            ] {
                if v.get(field).is_some() {
                    v[field] = json!(false);
                }
            }
        }
        Some(Fault::WrongShape) => {
            for field in ["signature", "pem", "ciphertext", "plaintext"] {
                if v.get(field).is_some() {
                    v[field] = json!(12345);
                }
            }
        }
        _ => {}
    }
}
