//! Contract tests, first half: what the real SDK (through keymgr-azure) sends, and what
//! the stand-in answers, checked against the published Key Vault REST reference and the
//! Microsoft identity platform's client-credentials flow. The second half
//! (`contract_responses.rs`) feeds keymgr-azure the reference's response shapes verbatim.
//!
//! Reference pages (REST api-version 2025-07-01, the SDK's default):
//! - Sign: <https://learn.microsoft.com/rest/api/keyvault/keys/sign/sign> (`POST
//!   /keys/{name}/{version}/sign`, body `{"alg","value"}`, `value` base64url; answer
//!   `KeyOperationResult` `{"kid","value"}`)
//! - Get Key: <https://learn.microsoft.com/rest/api/keyvault/keys/get-key/get-key>
//!   (`KeyBundle` `{"key": JsonWebKey, "attributes": KeyAttributes, "tags"}`)
//! - JsonWebKey (`kid`, `kty`, `crv`, `x`, `y` base64url):
//!   <https://learn.microsoft.com/rest/api/keyvault/keys/get-key/get-key#jsonwebkey>;
//!   curve `P-256K` and algorithm `ES256K` (raw r‖s, RFC 7518 §3.4):
//!   <https://learn.microsoft.com/azure/key-vault/keys/about-keys-details>
//! - Get Key Versions (`nextLink` paging), Create Key, Update Key:
//!   <https://learn.microsoft.com/rest/api/keyvault/keys/get-key-versions/get-key-versions>,
//!   <https://learn.microsoft.com/rest/api/keyvault/keys/create-key/create-key>,
//!   <https://learn.microsoft.com/rest/api/keyvault/keys/update-key/update-key>
//! - Errors (`KeyVaultError` `{"error":{"code","message"}}`, `x-ms-request-id`):
//!   <https://learn.microsoft.com/azure/key-vault/general/rest-error-codes>
//! - Authentication (401 challenge `WWW-Authenticate: Bearer authorization=…,
//!   resource=…`): <https://learn.microsoft.com/azure/key-vault/general/authentication-requests-and-responses>
//! - Token endpoint (`POST /{tenant}/oauth2/v2.0/token`, form `client_id`, `scope`,
//!   `client_secret`, `grant_type=client_credentials`; answer `token_type`,
//!   `expires_in`, `access_token`; errors `error`, `error_description`):
//!   <https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow>

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
use keymgr_core::{KeyBackend, KeyRef, SignPayload};
use keymgr_testkit::azure::Recorded;
use serde_json::Value;
use support::{CLIENT_ID, SECRET, StandIn, TENANT_ID, fixture};

const API_VERSION: &str = "2025-07-01";
const PREHASH: [u8; 32] = [0x5a; 32];

/// base64url without padding (RFC 4648 §5; RFC 7515 §2 "Base64url Encoding"), of `len`
/// bytes.
fn assert_b64url(field: &str, value: &Value, len: usize) -> Vec<u8> {
    let s = value
        .as_str()
        .unwrap_or_else(|| panic!("{field} is not a string: {value}"));
    assert!(
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{field} is not unpadded base64url: {s}"
    );
    let bytes = B64URL.decode(s).unwrap();
    assert_eq!(bytes.len(), len, "{field}: {s}");
    bytes
}

fn is_version_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn api_versions(r: &Recorded) -> Vec<&str> {
    r.query
        .iter()
        .filter(|(k, _)| k == "api-version")
        .map(|(_, v)| v.as_str())
        .collect()
}

fn object_keys(v: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

#[tokio::test]
async fn sdk_requests_follow_the_reference() {
    let (stand_in, b) = fixture().await;
    let sig = b
        .sign(&KeyRef::new("evm"), &SignPayload::Prehash(PREHASH))
        .await
        .unwrap();
    let created = b.create_version("evm").await.unwrap();
    // A third version, so that Get Key Versions needs a second page.
    stand_in.create_secp256k1("evm-signer");
    let versions = b.list_versions("evm").await.unwrap();
    let old = stand_in.versions("evm-signer")[0].clone();
    b.disable_version(&KeyRef::versioned("evm", old.clone()))
        .await
        .unwrap();
    // Wrap Key / Unwrap Key of a data key with an RSA key (envelope encryption).
    stand_in.create_rsa("kek");
    let kek = KeyRef::new("kek");
    let data_key = [7u8; 32];
    let wrapped = b
        .encrypt(&kek, &data_key, &Default::default())
        .await
        .unwrap();
    let unwrapped = b
        .decrypt(&kek, &wrapped, &Default::default())
        .await
        .unwrap();
    assert_eq!(unwrapped.expose(), data_key);
    let requests = stand_in.requests();

    // Authentication: an unauthenticated first request, then the token grant.
    assert!(!requests[0].authorized, "{:?}", requests[0]);
    let token = requests
        .iter()
        .find(|r| r.path.ends_with("/oauth2/v2.0/token"))
        .expect("a token request");
    assert_eq!(token.method, "POST");
    assert_eq!(token.path, format!("/{TENANT_ID}/oauth2/v2.0/token"));
    assert!(
        token
            .content_type
            .as_deref()
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded")),
        "{token:?}"
    );
    assert_eq!(token.body["grant_type"], "client_credentials");
    assert_eq!(token.body["client_id"], CLIENT_ID);
    assert_eq!(token.body["scope"], "https://vault.azure.net/.default");
    assert_eq!(token.body["client_secret"], "<redacted>", "secret sent");

    // Every key operation names api-version once; authorized after the challenge.
    let key_ops: Vec<&Recorded> = requests
        .iter()
        .filter(|r| r.path.starts_with("/keys/"))
        .collect();
    for r in &key_ops {
        assert_eq!(api_versions(r), [API_VERSION], "{r:?}");
    }
    assert!(key_ops.iter().skip(1).all(|r| r.authorized));

    // Get Key of the current version: `GET /keys/{name}/` (empty version segment).
    let get = key_ops.iter().find(|r| r.method == "GET").unwrap();
    assert!(
        ["/keys/evm-signer", "/keys/evm-signer/"].contains(&get.path.as_str()),
        "{get:?}"
    );
    assert_eq!(get.body, Value::Null);

    // Sign names the version explicitly, alg ES256K, value = the 32-byte digest.
    let sign = key_ops
        .iter()
        .find(|r| r.path.ends_with("/sign") && r.authorized)
        .unwrap();
    assert_eq!(sign.method, "POST");
    let version = sign
        .path
        .strip_prefix("/keys/evm-signer/")
        .and_then(|p| p.strip_suffix("/sign"))
        .unwrap();
    assert!(is_version_id(version), "{version}");
    assert_eq!(Some(version), sig.key_version());
    assert!(
        sign.content_type
            .as_deref()
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(object_keys(&sign.body), ["alg", "value"], "{:?}", sign.body);
    assert_eq!(sign.body["alg"], "ES256K");
    assert_eq!(assert_b64url("value", &sign.body["value"], 32), PREHASH);

    // Create Key on the existing name: `POST /keys/{name}/create`, EC on P-256K.
    let create = key_ops
        .iter()
        .find(|r| r.path == "/keys/evm-signer/create" && r.authorized)
        .unwrap();
    assert_eq!(create.method, "POST");
    assert!(
        ["EC", "EC-HSM"].contains(&create.body["kty"].as_str().unwrap()),
        "{:?}",
        create.body
    );
    assert_eq!(create.body["crv"], "P-256K");
    assert!(versions.iter().any(|v| v.key == created.key));

    // Get Key Versions follows `nextLink` (the stand-in pages by two; three versions).
    let lists: Vec<&&Recorded> = key_ops
        .iter()
        .filter(|r| r.method == "GET" && r.path == "/keys/evm-signer/versions")
        .collect();
    assert!(lists.len() >= 2, "nextLink not followed: {lists:?}");
    assert!(
        lists
            .iter()
            .any(|r| r.query.iter().any(|(k, _)| k == "$skiptoken"))
    );

    // Update Key disables the old version and sends nothing else.
    let update = key_ops
        .iter()
        .find(|r| r.method == "PATCH" && r.authorized)
        .unwrap();
    assert_eq!(update.path, format!("/keys/evm-signer/{old}"));
    assert_eq!(
        object_keys(&update.body),
        ["attributes"],
        "{:?}",
        update.body
    );
    assert_eq!(
        update.body["attributes"],
        serde_json::json!({ "enabled": false })
    );
    assert!(!stand_in.enabled("evm-signer", &old));

    // Wrap Key: `POST /keys/{name}/{version}/wrapkey`, `{"alg":"RSA-OAEP-256","value"}`
    // (<https://learn.microsoft.com/rest/api/keyvault/keys/wrap-key/wrap-key>); Unwrap
    // Key names the version that wrapped (Unwrap Key reference, same shape).
    let kek_version = stand_in.versions("kek")[0].clone();
    for (op, len) in [("wrapkey", 32), ("unwrapkey", 256)] {
        let r = key_ops
            .iter()
            .find(|r| r.path.ends_with(&format!("/{op}")) && r.authorized)
            .unwrap_or_else(|| panic!("no {op} request"));
        assert_eq!(r.method, "POST");
        assert!(
            [
                format!("/keys/kek/{kek_version}/{op}"),
                format!("/keys/kek//{op}"),
            ]
            .contains(&r.path),
            "{r:?}"
        );
        assert_eq!(object_keys(&r.body), ["alg", "value"], "{:?}", r.body);
        assert_eq!(r.body["alg"], "RSA-OAEP-256");
        let value = assert_b64url("value", &r.body["value"], len);
        if op == "wrapkey" {
            assert_eq!(value, data_key);
        }
    }
}

/// A bare HTTPS client trusting the stand-in's CA (not the SDK: this checks the stand-in).
fn http(stand_in: &StandIn) -> reqwest::Client {
    let pem = std::fs::read(stand_in.ca_file()).unwrap();
    reqwest::ClientBuilder::new()
        .tls_certs_merge(reqwest::Certificate::from_pem_bundle(&pem).unwrap())
        .build()
        .unwrap()
}

async fn json(r: reqwest::Response) -> (u16, reqwest::header::HeaderMap, Value) {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.bytes().await.unwrap();
    let value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&body)));
    (status, headers, value)
}

async fn token(client: &reqwest::Client, url: &str, secret: &str) -> (u16, Value) {
    let form = format!(
        "client_id={CLIENT_ID}&scope=https%3A%2F%2Fvault.azure.net%2F.default\
         &client_secret={secret}&grant_type=client_credentials"
    );
    let r = client
        .post(format!("{url}/{TENANT_ID}/oauth2/v2.0/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    let (status, _, body) = json(r).await;
    (status, body)
}

fn assert_key_vault_error(body: &Value, code: &str) {
    assert_eq!(object_keys(body), ["error"], "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
}

#[tokio::test]
async fn stand_in_answers_follow_the_reference() {
    let stand_in = StandIn::start(SECRET).await;
    let version = stand_in.create_secp256k1("evm-signer");
    let url = stand_in.url();
    let client = http(&stand_in);
    let key_url = format!("{url}/keys/evm-signer/{version}?api-version={API_VERSION}");

    // No token: 401, KeyVaultError body, and the challenge naming authority and resource.
    let (status, headers, body) = json(client.get(&key_url).send().await.unwrap()).await;
    assert_eq!(status, 401);
    assert_key_vault_error(&body, "Unauthorized");
    let challenge = headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.starts_with("Bearer authorization=\"")
            && challenge.contains(&format!("/{TENANT_ID}\""))
            && challenge.contains("resource=\"https://vault.azure.net\""),
        "{challenge}"
    );

    // The token endpoint: a wrong secret is `invalid_client`; the right one a bearer token.
    let (status, body) = token(&client, &url, "wrong").await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_client");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS")
    );
    let (status, body) = token(&client, &url, SECRET).await;
    assert_eq!(status, 200);
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_u64().is_some_and(|s| s > 0), "{body}");
    let bearer = format!("Bearer {}", body["access_token"].as_str().unwrap());

    // Get Key: a KeyBundle with an EC P-256K JWK, coordinates 32 bytes base64url.
    let r = client.get(&key_url).header("authorization", &bearer);
    let (status, headers, bundle) = json(r.send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert!(headers.contains_key("x-ms-request-id"));
    let jwk = &bundle["key"];
    assert_eq!(jwk["kid"], format!("{url}/keys/evm-signer/{version}"));
    assert_eq!(
        (jwk["kty"].as_str(), jwk["crv"].as_str()),
        (Some("EC"), Some("P-256K"))
    );
    let x = assert_b64url("x", &jwk["x"], 32);
    let y = assert_b64url("y", &jwk["y"], 32);
    let point = stand_in
        .verifying_key("evm-signer", &version)
        .to_encoded_point(false);
    assert_eq!(
        (point.x().unwrap().to_vec(), point.y().unwrap().to_vec()),
        (x, y)
    );
    let attributes = &bundle["attributes"];
    assert_eq!(attributes["enabled"], true);
    // `created`/`updated` are Unix seconds (integers), not RFC 3339 strings.
    assert!(attributes["created"].is_u64() && attributes["updated"].is_u64());
    assert!(attributes["recoveryLevel"].is_string());

    // Sign: KeyOperationResult {kid, value}, value 64 bytes r‖s over the digest.
    let r = client
        .post(format!(
            "{url}/keys/evm-signer/{version}/sign?api-version={API_VERSION}"
        ))
        .header("authorization", &bearer)
        .header("content-type", "application/json")
        .body(serde_json::json!({ "alg": "ES256K", "value": B64URL.encode(PREHASH) }).to_string());
    let (status, _, result) = json(r.send().await.unwrap()).await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(object_keys(&result), ["kid", "value"]);
    assert_eq!(result["kid"], jwk["kid"]);
    let raw = assert_b64url("value", &result["value"], 64);
    let signature = k256::ecdsa::Signature::from_slice(&raw).unwrap();
    stand_in
        .verifying_key("evm-signer", &version)
        .verify_prehash(&PREHASH, &signature)
        .unwrap();

    // Errors: KeyNotFound (404) and BadParameter (400: digest of the wrong length, and
    // no api-version, a required query parameter), each with x-ms-request-id.
    let absent = format!("{url}/keys/absent/?api-version={API_VERSION}");
    let missing_version = format!("{url}/keys/evm-signer/{version}");
    let short = serde_json::json!({ "alg": "ES256K", "value": B64URL.encode([1u8; 20]) });
    for (request, status, code) in [
        (client.get(&absent), 404, "KeyNotFound"),
        (client.get(&missing_version), 400, "BadParameter"),
        (
            client
                .post(format!(
                    "{url}/keys/evm-signer/{version}/sign?api-version={API_VERSION}"
                ))
                .body(short.to_string()),
            400,
            "BadParameter",
        ),
    ] {
        let r = request
            .header("authorization", &bearer)
            .send()
            .await
            .unwrap();
        let (got, headers, body) = json(r).await;
        assert_eq!(got, status, "{body}");
        assert_key_vault_error(&body, code);
        assert!(headers.contains_key("x-ms-request-id"));
    }
}
