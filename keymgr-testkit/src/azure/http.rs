//! Request handling: the token endpoint, the 401 challenge, and the Key Vault key
//! operations the keymgr-azure backend calls.
//!
//! REST reference (api-version 2025-07-01, the SDK's default; `api-version` is a required
//! query parameter of every operation), <https://learn.microsoft.com/rest/api/keyvault/keys>:
//! `GET /keys/{name}/{version}` (Get Key), `GET /keys/{name}/versions` (Get Key Versions,
//! paged with `nextLink`), `POST /keys/{name}/create` (Create Key: a new version when the
//! name exists), `PATCH /keys/{name}/{version}` (Update Key: `attributes.enabled`, `tags`),
//! `POST /keys/{name}/{version}/sign` (Sign: `{"alg","value"}` base64url, result raw r‖s
//! for ES256K), `POST /keys/{name}/{version}/wrapkey` and `/unwrapkey` (see `wrap.rs`). Errors: `{"error":{"code","message"}}` with `x-ms-request-id`
//! (<https://learn.microsoft.com/azure/key-vault/general/rest-error-codes>); throttling is
//! HTTP 429 with `Retry-After` (<https://learn.microsoft.com/azure/key-vault/general/overview-throttling>).
//! Authentication: <https://learn.microsoft.com/azure/key-vault/general/authentication-requests-and-responses>.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response};
use k256::ecdsa::signature::hazmat::PrehashSigner;
use serde_json::{Value, json};

use super::form::{pairs, query_param};
use super::state::{Keys, Material, Version, secp256k1};
use super::{Fault, Shared};

pub(crate) type Reply = Response<Full<Bytes>>;

/// Page size of Get Key Versions when the client does not send `maxresults`.
const PAGE: usize = 25;

pub(crate) struct Refusal(pub(crate) u16, pub(crate) &'static str, pub(crate) String);

pub(crate) async fn handle(shared: &Shared, req: Request<Incoming>) -> Reply {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return error(shared, 400, "BadParameter", "unreadable body", None),
    };
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or("").to_owned();
    super::recorded::record(shared, &parts, &body);
    if path.ends_with("/oauth2/v2.0/token") {
        return token(shared, &path, &body);
    }
    let authorization = parts
        .headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let Some(authorization) = authorization else {
        return challenge(shared);
    };
    shared.saw_authorization(&authorization);
    if !shared.token_is_valid(authorization.trim_start_matches("Bearer ")) {
        return challenge(shared);
    }
    let Some(api_version) = query_param(&query, "api-version") else {
        return error(
            shared,
            400,
            "BadParameter",
            "the api-version query parameter is required",
            None,
        );
    };
    let Some(rest) = path.strip_prefix("/keys/") else {
        return error(shared, 404, "NotFound", &format!("no route {path}"), None);
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let (method, name, version) = match (&parts.method, segments.as_slice()) {
        (&Method::GET, [name, "versions"]) => ("listVersions", *name, ""),
        (&Method::GET, [name]) => ("getKey", *name, ""),
        (&Method::GET, [name, version]) => ("getKey", *name, *version),
        (&Method::PATCH, [name]) => ("updateKey", *name, ""),
        (&Method::PATCH, [name, version]) => ("updateKey", *name, *version),
        (&Method::POST, [name, "create"]) => ("createKey", *name, ""),
        (&Method::POST, [name, version, "sign"]) => ("sign", *name, *version),
        // Without a version the SDK sends `/keys/{name}//wrapkey`: the newest version.
        (&Method::POST, [name, version, "wrapkey"]) => ("wrapKey", *name, *version),
        (&Method::POST, [name, version, "unwrapkey"]) => ("unwrapKey", *name, *version),
        _ => {
            return error(
                shared,
                405,
                "BadParameter",
                &format!(
                    "{} {path} is not an operation of this stand-in",
                    parts.method
                ),
                None,
            );
        }
    };
    let fault = shared.arrive(method);
    match &fault {
        Some(Fault::Throttled) => {
            return error(
                shared,
                429,
                "Throttled",
                "Request was not allowed because application exceeded the maximum number of requests.",
                Some("1"),
            );
        }
        Some(Fault::Unavailable) => {
            return error(
                shared,
                503,
                "ServiceUnavailable",
                "The service is temporarily unavailable.",
                Some("1"),
            );
        }
        Some(Fault::Status(status, code, message)) => {
            return error(shared, *status, code, message, None);
        }
        Some(Fault::Malformed) => return reply(shared, 200, Bytes::from_static(b"<html>oops")),
        Some(Fault::Reply {
            status,
            body,
            retry_after,
        }) => {
            let mut r = reply(shared, *status, Bytes::from(body.clone()));
            if let Some(after) = retry_after {
                r.headers_mut().insert(
                    hyper::header::RETRY_AFTER,
                    hyper::header::HeaderValue::from_static(after),
                );
            }
            return r;
        }
        _ => {}
    }
    let vault = shared.vault_url();
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                return error(
                    shared,
                    400,
                    "BadParameter",
                    &format!("body is not JSON: {e}"),
                    None,
                );
            }
        }
    };
    let mut keys = shared.lock_keys();
    let result = match method {
        "listVersions" => list_versions(&keys, &vault, name, &query, &api_version),
        "getKey" => get_key(&mut keys, &vault, name, version),
        "updateKey" => update_key(&mut keys, &vault, name, version, &body),
        "createKey" => create_key(&mut keys, &vault, name, &body),
        "wrapKey" | "unwrapKey" => {
            let unwrap = method == "unwrapKey";
            super::wrap::wrap(
                &mut keys,
                &vault,
                (name, version),
                &body,
                unwrap,
                fault.as_ref(),
            )
        }
        _ => sign(
            shared,
            &mut keys,
            &vault,
            (name, version),
            &body,
            fault.as_ref(),
        ),
    };
    drop(keys);
    match result {
        Ok(v) => reply(shared, 200, Bytes::from(v.to_string())),
        Err(Refusal(status, code, message)) => error(shared, status, code, &message, None),
    }
}

/// Microsoft identity platform client-credentials grant
/// (<https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow>).
fn token(shared: &Shared, path: &str, body: &[u8]) -> Reply {
    let form: BTreeMap<String, String> =
        pairs(&String::from_utf8_lossy(body)).into_iter().collect();
    let tenant = path.trim_start_matches('/').split('/').next().unwrap_or("");
    let client = shared.client();
    let ok = form.get("grant_type").map(String::as_str) == Some("client_credentials")
        && tenant == client.tenant_id
        && form.get("client_id") == Some(&client.client_id)
        && form.get("client_secret") == Some(&client.client_secret)
        && form.get("scope").map(String::as_str) == Some("https://vault.azure.net/.default");
    shared.count("token");
    if !ok {
        let body = json!({
            "error": "invalid_client",
            "error_description": "AADSTS7000215: Invalid client secret provided.",
            "error_codes": [7000215],
        });
        return reply(shared, 401, Bytes::from(body.to_string()));
    }
    let body = json!({
        "token_type": "Bearer",
        "expires_in": 3599,
        "ext_expires_in": 3599,
        "access_token": shared.issue_token(),
    });
    reply(shared, 200, Bytes::from(body.to_string()))
}

/// The documented challenge to an unauthenticated request.
fn challenge(shared: &Shared) -> Reply {
    let mut r = error(
        shared,
        401,
        "Unauthorized",
        "AKV10000: Request is missing a Bearer or PoP token.",
        None,
    );
    let value = format!(
        "Bearer authorization=\"{}/{}\", resource=\"https://vault.azure.net\"",
        shared.vault_url(),
        shared.client().tenant_id
    );
    if let Ok(v) = hyper::header::HeaderValue::from_str(&value) {
        r.headers_mut().insert(hyper::header::WWW_AUTHENTICATE, v);
    }
    r
}

pub(crate) fn not_found(name: &str, version: &str) -> Refusal {
    Refusal(
        404,
        "KeyNotFound",
        format!("A key with (name/id) {name}/{version} was not found in this key vault."),
    )
}

fn jwk(v: &Version, kid: &str) -> Value {
    match &v.material {
        Material::Secp256k1(sk) => {
            let point = sk.verifying_key().to_encoded_point(false);
            json!({
                "kid": kid, "kty": "EC", "crv": "P-256K", "key_ops": ["sign", "verify"],
                "x": point.x().map(|x| B64.encode(x)).unwrap_or_default(),
                "y": point.y().map(|y| B64.encode(y)).unwrap_or_default(),
            })
        }
        Material::Rsa(key) => super::wrap::rsa_jwk(key, kid),
        Material::OtherCurve { kty, crv, xy } => json!({
            "kid": kid, "kty": kty, "crv": crv, "key_ops": ["sign", "verify"],
            "x": B64.encode(&xy.0), "y": B64.encode(&xy.1),
        }),
    }
}

fn attributes(v: &Version) -> Value {
    json!({
        "enabled": v.enabled, "created": v.created, "updated": v.updated,
        "recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90,
    })
}

fn bundle(vault: &str, name: &str, v: &Version) -> Value {
    let kid = format!("{vault}/keys/{name}/{}", v.id);
    json!({ "key": jwk(v, &kid), "attributes": attributes(v), "tags": v.tags })
}

fn get_key(keys: &mut Keys, vault: &str, name: &str, version: &str) -> Result<Value, Refusal> {
    let v = keys
        .version_mut(name, version)
        .ok_or_else(|| not_found(name, version))?;
    Ok(bundle(vault, name, v))
}

/// Get Key Versions; `nextLink` repeats the caller's `api-version`, as the service does.
fn list_versions(
    keys: &Keys,
    vault: &str,
    name: &str,
    query: &str,
    api_version: &str,
) -> Result<Value, Refusal> {
    let versions = keys.versions(name).ok_or_else(|| not_found(name, ""))?;
    let size = query_param(query, "maxresults")
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|n| (1..=25).contains(n))
        .unwrap_or(PAGE)
        // Pages smaller than asked, so every client exercises `nextLink`.
        .min(2);
    let skip = query_param(query, "$skiptoken")
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(0);
    let page: Vec<Value> = versions
        .iter()
        .skip(skip)
        .take(size)
        .map(|v| {
            json!({
                "kid": format!("{vault}/keys/{name}/{}", v.id),
                "attributes": attributes(v),
                "tags": v.tags,
            })
        })
        .collect();
    let next = (skip + size < versions.len()).then(|| {
        format!(
            "{vault}/keys/{name}/versions?api-version={api_version}&maxresults={size}&$skiptoken={}",
            skip + size
        )
    });
    Ok(json!({ "value": page, "nextLink": next }))
}

fn tags_of(body: &Value) -> BTreeMap<String, String> {
    body.get("tags")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

fn create_key(keys: &mut Keys, vault: &str, name: &str, body: &Value) -> Result<Value, Refusal> {
    let kty = body.get("kty").and_then(Value::as_str).unwrap_or("");
    let crv = body.get("crv").and_then(Value::as_str).unwrap_or("");
    let material = match kty {
        "EC" | "EC-HSM" if crv == "P-256K" => secp256k1(),
        "RSA" | "RSA-HSM" => {
            let bits = body.get("key_size").and_then(Value::as_u64).unwrap_or(2048);
            super::state::rsa(usize::try_from(bits).unwrap_or(0))
                .map_err(|m| Refusal(400, "BadParameter", m))?
        }
        _ => {
            return Err(Refusal(
                400,
                "BadParameter",
                format!(
                    "this stand-in generates only kty EC/EC-HSM with crv P-256K and kty \
                     RSA/RSA-HSM (got kty {kty:?}, crv {crv:?})"
                ),
            ));
        }
    };
    let id = keys.add(name, material, tags_of(body));
    let v = keys
        .version_mut(name, &id)
        .ok_or_else(|| not_found(name, &id))?;
    Ok(bundle(vault, name, v))
}

fn update_key(
    keys: &mut Keys,
    vault: &str,
    name: &str,
    version: &str,
    body: &Value,
) -> Result<Value, Refusal> {
    let v = keys
        .version_mut(name, version)
        .ok_or_else(|| not_found(name, version))?;
    if let Some(enabled) = body.pointer("/attributes/enabled") {
        v.enabled = enabled.as_bool().ok_or_else(|| {
            Refusal(
                400,
                "BadParameter",
                "attributes.enabled must be a boolean".into(),
            )
        })?;
    }
    if body.get("tags").is_some() {
        v.tags = tags_of(body);
    }
    v.updated = super::state::now();
    Ok(bundle(vault, name, v))
}

fn sign(
    shared: &Shared,
    keys: &mut Keys,
    vault: &str,
    (name, version): (&str, &str),
    body: &Value,
    fault: Option<&Fault>,
) -> Result<Value, Refusal> {
    let bad = |m: String| Refusal(400, "BadParameter", m);
    let v = keys
        .version_mut(name, version)
        .ok_or_else(|| not_found(name, version))?;
    if !v.enabled {
        return Err(Refusal(
            403,
            "Forbidden",
            "Operation \"sign\" is not allowed on a disabled key.".into(),
        ));
    }
    let alg = body.get("alg").and_then(Value::as_str).unwrap_or("");
    let digest = body
        .get("value")
        .and_then(Value::as_str)
        .and_then(|s| B64.decode(s).ok())
        .ok_or_else(|| bad("value must be base64url".into()))?;
    let Material::Secp256k1(sk) = &v.material else {
        return Err(bad(format!(
            "this stand-in holds no private key for {name}"
        )));
    };
    if alg != "ES256K" {
        return Err(bad(format!(
            "algorithm {alg:?} is not valid for a P-256K key"
        )));
    }
    if digest.len() != 32 {
        return Err(bad(format!(
            "ES256K signs a 32-byte digest (got {} bytes)",
            digest.len()
        )));
    }
    let mut to_sign = digest.clone();
    if matches!(fault, Some(Fault::WrongSignature)) {
        to_sign[0] ^= 1;
    }
    let memo_key = (name.to_owned(), v.id.clone(), to_sign.clone());
    let signature = match shared.precomputed(&memo_key) {
        Some(signature) => signature,
        None => {
            let signature: k256::ecdsa::Signature = sk
                .sign_prehash(&to_sign)
                .map_err(|e| bad(format!("cannot sign: {e}")))?;
            shared.remember(memo_key, signature);
            signature
        }
    };
    let mut raw = signature.to_bytes().to_vec();
    match fault {
        Some(Fault::HighS) => {
            let high = if signature.normalize_s().is_some() {
                signature
            } else {
                let (r, s) = signature.split_scalars();
                k256::ecdsa::Signature::from_scalars(r, -*s).map_err(|e| bad(e.to_string()))?
            };
            raw = high.to_bytes().to_vec();
        }
        Some(Fault::WrongLength) => raw.truncate(63),
        _ => {}
    }
    Ok(json!({
        "kid": format!("{vault}/keys/{name}/{}", v.id),
        "value": B64.encode(raw),
    }))
}

fn reply(shared: &Shared, status: u16, body: Bytes) -> Reply {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let headers = r.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    if let Ok(id) = hyper::header::HeaderValue::from_str(&shared.request_id()) {
        headers.insert("x-ms-request-id", id);
    }
    r
}

fn error(
    shared: &Shared,
    status: u16,
    code: &str,
    message: &str,
    retry: Option<&'static str>,
) -> Reply {
    let body = json!({ "error": { "code": code, "message": message } });
    let mut r = reply(shared, status, Bytes::from(body.to_string()));
    if let Some(after) = retry {
        r.headers_mut().insert(
            hyper::header::RETRY_AFTER,
            hyper::header::HeaderValue::from_static(after),
        );
    }
    r
}
