//! A Google Cloud KMS stand-in (cargo feature `gcp`): an in-process HTTP server on
//! 127.0.0.1 that speaks the documented REST protocol of Cloud KMS v1, holding real keys
//! (k256, ed25519-dalek, AES-256-GCM) so signatures and ciphertexts are genuine.
//!
//! No Google KMS emulator exists; this is test support only, never a dependency of a
//! shipping crate. What it follows, from the REST reference
//! (<https://cloud.google.com/kms/docs/reference/rest>):
//! - URL shapes `/v1/{name}`, `/v1/{name}/publicKey`, `/v1/{name}:asymmetricSign`,
//!   `/v1/{parent}/cryptoKeyVersions`, `/v1/{name}:encrypt`, `/v1/{name}:decrypt`;
//!   `PATCH` with `updateMask`.
//! - JSON: camelCase fields, int64 as decimal strings, bytes as base64, enums as
//!   integers when the client asks with `$alt=json;enum-encoding=int` (as
//!   `google-cloud-kms-v1` does) and as names otherwise, timestamps in RFC 3339.
//! - CRC32C on every field the service sets (`signatureCrc32c`, `pemCrc32c`,
//!   `ciphertextCrc32c`, `plaintextCrc32c`), `verified*Crc32c` flags, and
//!   `INVALID_ARGUMENT` for a request checksum that does not match
//!   (<https://cloud.google.com/kms/docs/data-integrity-guidelines>).
//! - Errors as `{"error": {"code", "message", "status", "details"}}` with a
//!   `google.rpc.RequestInfo` request id (<https://cloud.google.com/apis/design/errors>);
//!   `FAILED_PRECONDITION` for a version that is not `ENABLED`.
//!
//! [`Fault`]s make the next call of one method misbehave.

mod http;
mod state;
mod wire;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

pub use state::{Algorithm, State};

/// The key ring [`StandIn::create_key`] uses unless told otherwise.
pub const KEY_RING: &str = "projects/keymgr-test/locations/us-east1/keyRings/standin";

/// One misbehaviour, consumed by the next call of the method it was queued for.
#[derive(Debug, Clone)]
pub enum Fault {
    /// HTTP 503, `UNAVAILABLE`.
    Unavailable,
    /// HTTP 429, `RESOURCE_EXHAUSTED`, with a `google.rpc.RetryInfo` of one second and
    /// a `Retry-After` header.
    Throttled,
    /// Any status: HTTP code, `google.rpc.Code` name, message.
    Status(u16, &'static str, String),
    /// The response's checksum field (`signatureCrc32c`, `pemCrc32c`,
    /// `ciphertextCrc32c`, `plaintextCrc32c`) is off by one.
    WrongChecksum,
    /// `verifiedDigestCrc32c` / `verifiedDataCrc32c` / `verifiedPlaintextCrc32c` false.
    Unverified,
    /// `asymmetricSign` returns the high-s twin of its ECDSA signature (valid, but not
    /// canonical for Ethereum/XRPL).
    HighS,
    /// `asymmetricSign` signs a different digest or message (a faulty service).
    WrongSignature,
    /// HTTP 200 with a body that is not JSON.
    Malformed,
    /// HTTP 200 with JSON of the wrong shape (`signature` is not base64).
    WrongShape,
}

#[derive(Default)]
pub(crate) struct Shared {
    pub(crate) keys: Mutex<state::Keys>,
    /// Per method, what its next calls get (`None`: answered normally).
    faults: Mutex<HashMap<String, VecDeque<Option<Fault>>>>,
    counts: Mutex<HashMap<String, usize>>,
    requests: AtomicU64,
    /// Every distinct `Authorization` header value received (to prove tokens never leak).
    pub(crate) authorizations: Mutex<Vec<String>>,
}

impl Shared {
    pub(crate) fn lock_keys(&self) -> std::sync::MutexGuard<'_, state::Keys> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a call of `method` and takes its next queued fault.
    pub(crate) fn arrive(&self, method: &str) -> Option<Fault> {
        *self
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(method.to_owned())
            .or_default() += 1;
        self.faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(method)
            .and_then(VecDeque::pop_front)
            .flatten()
    }

    pub(crate) fn request_id(&self) -> String {
        format!(
            "standin-{:08}",
            self.requests.fetch_add(1, Ordering::SeqCst) + 1
        )
    }
}

/// A running stand-in; the server stops when this is dropped.
pub struct StandIn {
    addr: SocketAddr,
    shared: Arc<Shared>,
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

impl StandIn {
    /// Starts a server on `127.0.0.1:0` in the current tokio runtime.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared::default());
        let server = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let shared = server.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let shared = shared.clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(http::handle(&shared, req).await)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, shared, task }
    }

    /// `http://127.0.0.1:PORT`, for `with_endpoint` / `GCP_KMS_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Creates crypto key `id` in [`KEY_RING`] with one `ENABLED` version (the primary,
    /// for symmetric keys); returns its resource name.
    pub fn create_key(&self, id: &str, algorithm: Algorithm) -> String {
        let name = format!("{KEY_RING}/cryptoKeys/{id}");
        self.shared.lock_keys().create(&name, algorithm);
        name
    }

    /// Adds a version to `crypto_key` (as another client would); returns its name.
    pub fn add_version(&self, crypto_key: &str) -> String {
        let id = self
            .shared
            .lock_keys()
            .add_version(crypto_key)
            .expect("crypto key exists");
        format!("{crypto_key}/cryptoKeyVersions/{id}")
    }

    /// Sets a version's state directly (as an operator in the console would).
    pub fn set_state(&self, version: &str, state: State) {
        self.shared
            .lock_keys()
            .version_mut(version)
            .expect("version exists")
            .state = state;
    }

    /// A version's state.
    pub fn state(&self, version: &str) -> State {
        self.shared
            .lock_keys()
            .version_mut(version)
            .expect("version exists")
            .state
    }

    /// A crypto key's labels.
    pub fn labels(&self, crypto_key: &str) -> Vec<(String, String)> {
        let keys = self.shared.lock_keys();
        let key = keys.key(crypto_key).expect("crypto key exists");
        key.labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Sets one label of a crypto key directly (as an operator in the console would;
    /// not checked against Cloud KMS's label rules, which `UpdateCryptoKey` enforces).
    pub fn set_label(&self, crypto_key: &str, key: &str, value: &str) {
        self.shared
            .lock_keys()
            .key_mut(crypto_key)
            .expect("crypto key exists")
            .labels
            .insert(key.to_owned(), value.to_owned());
    }

    /// New versions stay `PENDING_GENERATION` for this many `GET`s (asymmetric keys are
    /// generated asynchronously by the real service).
    pub fn set_pending_generation_gets(&self, gets: u32) {
        self.shared.lock_keys().pending_gets = gets;
    }

    /// Queues `fault` for the next call of `method` (`asymmetricSign`, `getPublicKey`,
    /// `getCryptoKey`, `getCryptoKeyVersion`, `listCryptoKeyVersions`,
    /// `createCryptoKeyVersion`, `updateCryptoKey`, `updateCryptoKeyVersion`, `encrypt`,
    /// `decrypt`).
    pub fn inject(&self, method: &str, fault: Fault) {
        self.shared
            .faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(method.to_owned())
            .or_default()
            .push_back(Some(fault));
    }

    /// Lets the next `pass` calls of `method` through normally, then queues `fault` (a
    /// failure later in a sequence that calls `method` more than once).
    pub fn inject_after(&self, method: &str, pass: usize, fault: Fault) {
        let mut faults = self.shared.faults.lock().unwrap_or_else(|p| p.into_inner());
        let queue = faults.entry(method.to_owned()).or_default();
        queue.extend(std::iter::repeat_n(None, pass));
        queue.push_back(Some(fault));
    }

    /// Every distinct `Authorization` header the server received (bearer tokens), so
    /// tests can check that none of them appears in errors, `Debug` output or logs.
    pub fn authorizations(&self) -> Vec<String> {
        self.shared
            .authorizations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Decrypts a ciphertext of `crypto_key` with the stand-in's key material directly
    /// (no HTTP, no client): proves what a client's ciphertext is bound to. `None` if the
    /// ciphertext or `aad` does not match.
    pub fn open(&self, crypto_key: &str, ciphertext: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        let id = u32::from_be_bytes(ciphertext.get(..4)?.try_into().ok()?);
        let mut keys = self.shared.lock_keys();
        let version = keys
            .version_mut(&format!("{crypto_key}/cryptoKeyVersions/{id}"))
            .ok()?;
        version.decrypt(&ciphertext[4..], aad).ok()
    }

    /// Makes version `id` the primary of a symmetric crypto key (its new ciphertexts).
    pub fn set_primary(&self, crypto_key: &str, id: u32) {
        self.shared
            .lock_keys()
            .key_mut(crypto_key)
            .expect("crypto key exists")
            .primary = id;
    }

    /// How many calls of `method` arrived.
    pub fn calls(&self, method: &str) -> usize {
        self.shared
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(method)
            .copied()
            .unwrap_or(0)
    }
}
