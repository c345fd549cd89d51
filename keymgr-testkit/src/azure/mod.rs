//! An Azure Key Vault stand-in (cargo feature `azure`): an in-process HTTPS server on
//! 127.0.0.1 that speaks the documented Key Vault keys REST protocol and the Microsoft
//! identity platform's client-credentials token endpoint, holding real secp256k1 keys so
//! signatures are genuine, and real RSA keys so Wrap Key / Unwrap Key (`RSA-OAEP-256`)
//! are genuine.
//!
//! No Key Vault emulator exists, and `azure_core` refuses to send a bearer token to an
//! `http://` endpoint, so the server uses TLS with a certificate made at start-up
//! (`rcgen`): a throwaway CA, written to [`StandIn::ca_file`] for `SSL_CERT_FILE` (the
//! path users have for private CAs), and a leaf for `127.0.0.1`/`localhost`.
//!
//! What it follows (see `http.rs` for the reference pages): the first request comes
//! without authorization and gets `401` with
//! `WWW-Authenticate: Bearer authorization="…/{tenant}", resource="https://vault.azure.net"`;
//! the token endpoint `POST /{tenant}/oauth2/v2.0/token` checks the client id and secret;
//! JWK fields are base64url; Get Key Versions pages with `nextLink`; errors are
//! `{"error":{"code","message"}}` with `x-ms-request-id`. The same server is both the
//! vault and the authority host (`AZURE_AUTHORITY_HOST`).
//!
//! Because the challenge names `https://vault.azure.net` and the server is not under
//! `*.vault.azure.net`, clients must turn off the SDK's challenge-resource check
//! (`verify_challenge_resource`), which only this test set-up needs.
//!
//! [`Fault`]s make the next call of one operation misbehave.

mod form;
mod http;
mod recorded;
mod state;
mod wrap;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rand_core::{OsRng, RngCore};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

pub use recorded::Recorded;
pub use state::Material;

use crate::TempDir;

/// Tenant id the stand-in's token endpoint accepts.
pub const TENANT_ID: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
/// Client (application) id the stand-in's token endpoint accepts.
pub const CLIENT_ID: &str = "5b6c1f4e-6f7e-4c55-9e3c-3f1d2b7a9c01";

/// One misbehaviour, consumed by the next call of the operation it was queued for.
#[derive(Debug, Clone)]
pub enum Fault {
    /// HTTP 429, code `Throttled`, `Retry-After: 1`.
    Throttled,
    /// HTTP 503, code `ServiceUnavailable`, `Retry-After: 1`.
    Unavailable,
    /// Any status: HTTP code, Key Vault error code, message.
    Status(u16, &'static str, String),
    /// HTTP 200 with a body that is not JSON.
    Malformed,
    /// `sign` returns 63 bytes instead of 64.
    WrongLength,
    /// `sign` returns the high-s twin of its signature (valid, not canonical).
    HighS,
    /// `sign` signs a different digest (a faulty service).
    WrongSignature,
    /// A verbatim answer: HTTP status, body (served as `application/json`, with an
    /// `x-ms-request-id`), and `Retry-After` when given. Contract tests serve the REST
    /// reference's example responses, and malformed variants of them, this way.
    Reply {
        /// HTTP status.
        status: u16,
        /// Response body, as sent.
        body: String,
        /// `Retry-After` header value, if any.
        retry_after: Option<&'static str>,
    },
}

pub(crate) struct Client {
    pub(crate) tenant_id: String,
    pub(crate) client_id: String,
    pub(crate) client_secret: String,
}

pub(crate) struct Shared {
    keys: Mutex<state::Keys>,
    faults: Mutex<HashMap<String, VecDeque<Fault>>>,
    counts: Mutex<HashMap<String, usize>>,
    requests: AtomicU64,
    tokens: Mutex<HashSet<String>>,
    authorizations: Mutex<Vec<String>>,
    recorded: Mutex<Vec<Recorded>>,
    client: Client,
    vault_url: String,
    /// (name, version, digest) → signature, when [`StandIn::precompute_signatures`] is on.
    signatures: Mutex<Option<HashMap<SignedDigest, k256::ecdsa::Signature>>>,
}

/// Key name, version id, digest.
pub(crate) type SignedDigest = (String, String, Vec<u8>);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub(crate) fn lock_keys(&self) -> std::sync::MutexGuard<'_, state::Keys> {
        lock(&self.keys)
    }

    pub(crate) fn count(&self, method: &str) {
        *lock(&self.counts).entry(method.to_owned()).or_default() += 1;
    }

    /// Counts a call of `method` and takes its next queued fault.
    pub(crate) fn arrive(&self, method: &str) -> Option<Fault> {
        self.count(method);
        lock(&self.faults)
            .get_mut(method)
            .and_then(VecDeque::pop_front)
    }

    pub(crate) fn request_id(&self) -> String {
        let n = self.requests.fetch_add(1, Ordering::SeqCst) + 1;
        format!("00000000-0000-4000-8000-{n:012}")
    }

    /// The signature made earlier for this digest, if precomputing is on.
    pub(crate) fn precomputed(&self, key: &SignedDigest) -> Option<k256::ecdsa::Signature> {
        lock(&self.signatures).as_ref()?.get(key).copied()
    }

    pub(crate) fn remember(&self, key: SignedDigest, signature: k256::ecdsa::Signature) {
        if let Some(memo) = lock(&self.signatures).as_mut() {
            memo.insert(key, signature);
        }
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    pub(crate) fn vault_url(&self) -> String {
        self.vault_url.clone()
    }

    pub(crate) fn issue_token(&self) -> String {
        let mut bytes = [0u8; 24];
        OsRng.fill_bytes(&mut bytes);
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let token = format!("standin-access-token-{token}");
        lock(&self.tokens).insert(token.clone());
        token
    }

    pub(crate) fn token_is_valid(&self, token: &str) -> bool {
        lock(&self.tokens).contains(token)
    }

    pub(crate) fn record(&self, request: Recorded) {
        lock(&self.recorded).push(request);
    }

    pub(crate) fn saw_authorization(&self, value: &str) {
        let mut seen = lock(&self.authorizations);
        if !seen.iter().any(|s| s == value) {
            seen.push(value.to_owned());
        }
    }
}

/// A running stand-in; the server stops when this is dropped.
pub struct StandIn {
    addr: SocketAddr,
    shared: Arc<Shared>,
    ca_dir: TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for StandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StandIn").field("addr", &self.addr).finish()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn tls_config() -> (rustls::ServerConfig, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.distinguished_name.push(
        rcgen::DnType::CommonName,
        "keymgr-testkit Key Vault stand-in CA",
    );
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().expect("leaf key");
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("leaf params");
    leaf.use_authority_key_identifier_extension = true;
    let leaf_cert = leaf
        .signed_by(&leaf_key, &issuer)
        .expect("leaf certificate");
    let key =
        rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).expect("leaf key DER");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![leaf_cert.der().clone(), ca_cert.der().clone()], key)
        .expect("server certificate");
    (config, ca_cert.pem())
}

impl StandIn {
    /// Starts a server on `127.0.0.1:0` in the current tokio runtime; its token endpoint
    /// accepts [`TENANT_ID`], [`CLIENT_ID`] and `client_secret`.
    pub async fn start(client_secret: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let (config, ca_pem) = tls_config();
        let ca_dir = TempDir::new("azure-standin-ca");
        std::fs::write(ca_dir.path().join("ca.pem"), ca_pem).expect("write CA file");
        let shared = Arc::new(Shared {
            keys: Mutex::default(),
            faults: Mutex::default(),
            counts: Mutex::default(),
            requests: AtomicU64::new(0),
            tokens: Mutex::default(),
            authorizations: Mutex::default(),
            recorded: Mutex::default(),
            client: Client {
                tenant_id: TENANT_ID.to_owned(),
                client_id: CLIENT_ID.to_owned(),
                client_secret: client_secret.to_owned(),
            },
            vault_url: format!("https://{addr}"),
            signatures: Mutex::new(None),
        });
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let server = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let shared = server.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = service_fn(move |req| {
                        let shared = shared.clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(http::handle(&shared, req).await)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            shared,
            ca_dir,
            task,
        }
    }

    /// `https://127.0.0.1:PORT`: the vault URL and the authority host.
    pub fn url(&self) -> String {
        self.shared.vault_url()
    }

    /// The PEM file of the throwaway CA that issued the server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.ca_dir.path().join("ca.pem")
    }

    /// Creates key `name` (or a new version of it) on curve `P-256K`; returns the version.
    pub fn create_secp256k1(&self, name: &str) -> String {
        self.shared
            .lock_keys()
            .add(name, state::secp256k1(), Default::default())
    }

    /// Creates a public-only key with JWK `kty` and `crv` (`EC`/`P-256`, `EC`/`P-384`,
    /// `OKP`/`Ed25519`, ...); returns the version. The stand-in refuses to sign with it.
    pub fn create_other_curve(&self, name: &str, kty: &'static str, crv: &'static str) -> String {
        let mut x = vec![0u8; 32];
        let mut y = vec![0u8; 32];
        OsRng.fill_bytes(&mut x);
        OsRng.fill_bytes(&mut y);
        self.shared.lock_keys().add(
            name,
            Material::OtherCurve {
                kty,
                crv,
                xy: (x, y),
            },
            Default::default(),
        )
    }

    /// The secp256k1 public key of `name`'s `version` (newest when empty), as an
    /// independent reference.
    pub fn verifying_key(&self, name: &str, version: &str) -> k256::ecdsa::VerifyingKey {
        match &self
            .shared
            .lock_keys()
            .version_mut(name, version)
            .expect("key exists")
            .material
        {
            Material::Secp256k1(sk) => *sk.verifying_key(),
            Material::Rsa(_) => panic!("{name} is an RSA key"),
            Material::OtherCurve { crv, .. } => panic!("{name} is a {crv} key"),
        }
    }

    /// Creates key `name` (or a new version of it) as a 2048-bit RSA key for Wrap Key and
    /// Unwrap Key; returns the version.
    pub fn create_rsa(&self, name: &str) -> String {
        let material = state::rsa(2048).expect("RSA key");
        self.shared
            .lock_keys()
            .add(name, material, Default::default())
    }

    /// The private half of RSA key `name`'s `version` (newest when empty) as PKCS#8 DER,
    /// so tests can unwrap data keys independently of the stand-in's code.
    pub fn rsa_private_key_pkcs8(&self, name: &str, version: &str) -> Vec<u8> {
        use rsa::pkcs8::EncodePrivateKey as _;
        match &self
            .shared
            .lock_keys()
            .version_mut(name, version)
            .expect("key exists")
            .material
        {
            Material::Rsa(key) => key.to_pkcs8_der().expect("PKCS#8").as_bytes().to_vec(),
            _ => panic!("{name} is not an RSA key"),
        }
    }

    /// Sets a version's `attributes.enabled` (as an operator in the portal would).
    pub fn set_enabled(&self, name: &str, version: &str, enabled: bool) {
        self.shared
            .lock_keys()
            .version_mut(name, version)
            .expect("key exists")
            .enabled = enabled;
    }

    /// A version's `attributes.enabled`.
    pub fn enabled(&self, name: &str, version: &str) -> bool {
        self.shared
            .lock_keys()
            .version_mut(name, version)
            .expect("key exists")
            .enabled
    }

    /// Version ids of `name`, oldest first (empty if the key does not exist).
    pub fn versions(&self, name: &str) -> Vec<String> {
        self.shared
            .lock_keys()
            .versions(name)
            .map(|vs| vs.iter().map(|v| v.id.clone()).collect())
            .unwrap_or_default()
    }

    /// A version's tags.
    pub fn tags(&self, name: &str, version: &str) -> Vec<(String, String)> {
        self.shared
            .lock_keys()
            .version_mut(name, version)
            .expect("key exists")
            .tags
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Queues `fault` for the next call of `operation` (`getKey`, `listVersions`,
    /// `createKey`, `updateKey`, `sign`, `wrapKey`, `unwrapKey`).
    pub fn inject(&self, operation: &str, fault: Fault) {
        lock(&self.shared.faults)
            .entry(operation.to_owned())
            .or_default()
            .push_back(fault);
    }

    /// From now on `sign` answers a digest it signed before (same key version) with that
    /// signature instead of signing again: a precomputed genuine response, so a benchmark
    /// measures the client's time, not the stand-in's k256 signing. Faults still apply;
    /// ES256K with RFC 6979 nonces gives the same signature anyway.
    pub fn precompute_signatures(&self) {
        lock(&self.shared.signatures).get_or_insert_with(HashMap::new);
    }

    /// How many calls of `operation` (or `token`) arrived.
    pub fn calls(&self, operation: &str) -> usize {
        lock(&self.shared.counts)
            .get(operation)
            .copied()
            .unwrap_or(0)
    }

    /// Every request received so far, in arrival order (token requests included).
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared.recorded).clone()
    }

    /// Every distinct `Authorization` header received, so tests can check that no token
    /// appears in errors, `Debug` output or logs.
    pub fn authorizations(&self) -> Vec<String> {
        lock(&self.shared.authorizations).clone()
    }
}
