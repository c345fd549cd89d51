//! RSA keys: their JWK, Wrap Key and Unwrap Key with `RSA-OAEP-256`.
//!
//! REST reference (api-version 2025-07-01):
//! <https://learn.microsoft.com/rest/api/keyvault/keys/wrap-key/wrap-key>
//! (`POST /keys/{name}/{version}/wrapkey`, body `{"alg","value"}` with `value`
//! base64url, answer `{"kid","value"}`) and
//! <https://learn.microsoft.com/rest/api/keyvault/keys/unwrap-key/unwrap-key>
//! (`POST /keys/{name}/{version}/unwrapkey`, same shapes). `RSA-OAEP-256` is RSAES-OAEP
//! with SHA-256 and MGF1-SHA-256 (RFC 8017 §7.1; JWA name from RFC 7518 §4.3), done here
//! with the `rsa` crate.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use rsa::traits::PublicKeyParts as _;
use rsa::{Oaep, RsaPrivateKey};
use serde_json::{Value, json};

use super::Fault;
use super::http::{Refusal, not_found};
use super::state::{Keys, Material};

/// The JWK of an RSA key (RFC 7518 §6.3.1: `n`, `e` base64url, big-endian).
pub(crate) fn rsa_jwk(key: &RsaPrivateKey, kid: &str) -> Value {
    json!({
        "kid": kid, "kty": "RSA",
        "key_ops": ["encrypt", "decrypt", "wrapKey", "unwrapKey"],
        "n": B64.encode(key.n().to_bytes_be()),
        "e": B64.encode(key.e().to_bytes_be()),
    })
}

/// Wrap Key (`unwrap == false`) or Unwrap Key on `name`'s `version` (newest when empty).
pub(crate) fn wrap(
    keys: &mut Keys,
    vault: &str,
    (name, version): (&str, &str),
    body: &Value,
    unwrap: bool,
    fault: Option<&Fault>,
) -> Result<Value, Refusal> {
    let operation = if unwrap { "unwrapKey" } else { "wrapKey" };
    let bad = |m: String| Refusal(400, "BadParameter", m);
    let v = keys
        .version_mut(name, version)
        .ok_or_else(|| not_found(name, version))?;
    if !v.enabled {
        return Err(Refusal(
            403,
            "Forbidden",
            format!("Operation \"{operation}\" is not allowed on a disabled key."),
        ));
    }
    let Material::Rsa(key) = &v.material else {
        return Err(bad(format!(
            "Operation \"{operation}\" is not allowed for the key type of {name}."
        )));
    };
    let alg = body.get("alg").and_then(Value::as_str).unwrap_or("");
    if alg != "RSA-OAEP-256" {
        return Err(bad(format!(
            "this stand-in wraps only with RSA-OAEP-256 (got alg {alg:?})"
        )));
    }
    let value = body
        .get("value")
        .and_then(Value::as_str)
        .and_then(|s| B64.decode(s).ok())
        .ok_or_else(|| bad("value must be base64url".into()))?;
    let mut out = if unwrap {
        key.decrypt(Oaep::new::<sha2::Sha256>(), &value)
            .map_err(|_| bad("The parameter is incorrect: unwrap failed.".into()))?
    } else {
        key.to_public_key()
            .encrypt(&mut rand_core::OsRng, Oaep::new::<sha2::Sha256>(), &value)
            .map_err(|e| bad(format!("cannot wrap {} bytes: {e}", value.len())))?
    };
    if matches!(fault, Some(Fault::WrongLength)) {
        out.pop();
    }
    Ok(json!({
        "kid": format!("{vault}/keys/{name}/{}", v.id),
        "value": B64.encode(out),
    }))
}
