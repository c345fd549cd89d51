//! A fault-injecting HTTP/1.1 proxy (cargo feature `proxy`) to put between a provider's
//! real SDK client and its local stand-in (moto's KMS server, say): each request is
//! forwarded unchanged, or answered with a [`Fault`] chosen by a plan the test sets.
//!
//! ```no_run
//! # async fn demo(moto: &str) {
//! use keymgr_testkit::proxy::{Fault, FaultProxy};
//! let proxy = FaultProxy::start(moto).await.unwrap();
//! // Every `Sign` is throttled; everything else reaches moto.
//! proxy.set_plan(|operation, _n| (operation == "Sign").then(Fault::throttling));
//! let endpoint = proxy.url(); // give this to the SDK as its endpoint
//! # let _ = endpoint;
//! # }
//! ```
//!
//! The operation is the part of the `X-Amz-Target` header after the service prefix
//! (`TrentService.Sign` → `Sign`, the AWS JSON protocol), else the request path. Faults
//! that cut a connection ([`Fault::Reset`], [`Fault::Truncate`]) close the socket with
//! `SO_LINGER` 0, so the client gets a TCP RST, as from a crashed load balancer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// What the proxy does to one request instead of (or before) forwarding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Waits this long, then forwards the request (a slow network or service).
    Delay(Duration),
    /// Answers with this status and JSON body without forwarding (`{"__type": ...}` as
    /// AWS JSON-protocol services spell their errors).
    Respond {
        /// HTTP status, e.g. 500.
        status: u16,
        /// The response body.
        body: String,
    },
    /// Reads the request, then resets the connection without answering.
    Reset,
    /// Forwards the request, then sends the response headers (with the full
    /// `Content-Length`) and only the first half of the body before resetting the
    /// connection.
    Truncate,
}

impl Fault {
    /// HTTP 500 `KMSInternalException`, as AWS KMS answers an internal failure.
    pub fn internal_error() -> Self {
        Self::Respond {
            status: 500,
            body: r#"{"__type":"KMSInternalException","message":"injected by FaultProxy"}"#
                .to_owned(),
        }
    }

    /// HTTP 400 `ThrottlingException` (`Rate exceeded`), as AWS answers over its quota.
    pub fn throttling() -> Self {
        Self::Respond {
            status: 400,
            body: r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.to_owned(),
        }
    }

    /// A short name for counting: `delay`, `status-500`, `reset`, `truncate`.
    pub fn kind(&self) -> String {
        match self {
            Self::Delay(_) => "delay".to_owned(),
            Self::Respond { status, .. } => format!("status-{status}"),
            Self::Reset => "reset".to_owned(),
            Self::Truncate => "truncate".to_owned(),
        }
    }
}

/// Chooses the fault for the `n`-th request (from 0) of an operation; `None` forwards it.
type Plan = Box<dyn FnMut(&str, usize) -> Option<Fault> + Send>;

#[derive(Default)]
struct Shared {
    plan: Mutex<Option<Plan>>,
    /// Requests received per operation (faulted ones included).
    requests: Mutex<HashMap<String, usize>>,
    /// Faults applied per [`Fault::kind`].
    applied: Mutex<HashMap<String, usize>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn choose(&self, operation: &str) -> Option<Fault> {
        let n = {
            let mut requests = lock(&self.requests);
            let count = requests.entry(operation.to_owned()).or_default();
            *count += 1;
            *count - 1
        };
        let fault = lock(&self.plan)
            .as_mut()
            .and_then(|plan| plan(operation, n));
        if let Some(f) = &fault {
            *lock(&self.applied).entry(f.kind()).or_default() += 1;
        }
        fault
    }
}

/// A running proxy on `127.0.0.1`; it stops (closing its port and every connection)
/// on [`stop`](Self::stop) or drop.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

type ProxyBody = BoxBody<Bytes, std::io::Error>;

impl FaultProxy {
    /// Starts a proxy on `127.0.0.1:0` (current tokio runtime) forwarding to `upstream`,
    /// an `http://host:port` URL; everything is forwarded until [`set_plan`](Self::set_plan).
    pub async fn start(upstream: &str) -> std::io::Result<Self> {
        let authority = upstream
            .strip_prefix("http://")
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("upstream {upstream:?} is not an http:// URL"),
                )
            })?
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let state = shared.clone();
        let task = tokio::spawn(async move {
            // Dropping the set (when this task is aborted) aborts every connection.
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                while connections.try_join_next().is_some() {}
                connections.spawn(serve(stream, state.clone(), authority.clone()));
            }
        });
        Ok(Self {
            addr,
            shared,
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT`: the endpoint to give the client.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sets the plan: `plan(operation, n)` picks the fault for the `n`-th request (from
    /// 0, counted since the proxy started) of `operation`, or `None` to forward it.
    pub fn set_plan(&self, plan: impl FnMut(&str, usize) -> Option<Fault> + Send + 'static) {
        *lock(&self.shared.plan) = Some(Box::new(plan));
    }

    /// Forwards every request from now on.
    pub fn clear_plan(&self) {
        *lock(&self.shared.plan) = None;
    }

    /// Requests received for `operation` so far (faulted ones included).
    pub fn requests(&self, operation: &str) -> usize {
        lock(&self.shared.requests)
            .get(operation)
            .copied()
            .unwrap_or(0)
    }

    /// Faults applied so far, by [`Fault::kind`].
    pub fn applied(&self) -> HashMap<String, usize> {
        lock(&self.shared.applied).clone()
    }

    /// Stops the proxy: its port refuses connections from now on (as when the service
    /// behind it is stopped) and open connections are reset.
    pub async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

/// Serves one client connection; resets it (RST) if a fault asked for it.
async fn serve(mut stream: TcpStream, shared: Arc<Shared>, upstream: String) {
    let reset = Arc::new(AtomicBool::new(false));
    let flag = reset.clone();
    let service = hyper::service::service_fn(move |req| {
        let (shared, upstream, flag) = (shared.clone(), upstream.clone(), flag.clone());
        async move { handle(req, &shared, &upstream, &flag).await }
    });
    let result = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(&mut stream), service)
        .await;
    if result.is_err() || reset.load(Ordering::SeqCst) {
        let _ = stream.set_zero_linger();
    }
}

fn operation_of(req: &Request<Incoming>) -> String {
    match req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
    {
        Some(target) => target
            .rsplit_once('.')
            .map_or(target, |(_, op)| op)
            .to_owned(),
        None => req.uri().path().to_owned(),
    }
}

fn full(body: impl Into<Bytes>) -> ProxyBody {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

async fn handle(
    req: Request<Incoming>,
    shared: &Shared,
    upstream: &str,
    reset: &AtomicBool,
) -> std::io::Result<Response<ProxyBody>> {
    let operation = operation_of(&req);
    let fault = shared.choose(&operation);
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    match fault {
        Some(Fault::Respond { status, body }) => {
            let status = StatusCode::from_u16(status).map_err(std::io::Error::other)?;
            Response::builder()
                .status(status)
                .header("content-type", "application/x-amz-json-1.1")
                .header("x-amzn-requestid", format!("fault-proxy-{operation}"))
                .body(full(body))
                .map_err(std::io::Error::other)
        }
        Some(Fault::Reset) => {
            reset.store(true, Ordering::SeqCst);
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "fault injected: reset",
            ))
        }
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(d).await;
            forward(Request::from_parts(parts, body), upstream).await
        }
        Some(Fault::Truncate) => {
            let response = forward(Request::from_parts(parts, body), upstream).await?;
            let (mut parts, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            parts.headers.insert("content-length", body.len().into());
            reset.store(true, Ordering::SeqCst);
            let half = body.slice(..body.len() / 2);
            let frames = futures::stream::iter([
                Ok(Frame::data(half)),
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "fault injected: truncated body",
                )),
            ]);
            Ok(Response::from_parts(parts, StreamBody::new(frames).boxed()))
        }
        None => forward(Request::from_parts(parts, body), upstream).await,
    }
}

/// Sends `req` to `upstream` on a new connection and returns its whole response.
async fn forward(req: Request<Bytes>, upstream: &str) -> std::io::Result<Response<ProxyBody>> {
    let stream = TcpStream::connect(upstream).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(connection);
    let (parts, body) = req.into_parts();
    let response = sender
        .send_request(Request::from_parts(parts, Full::new(body)))
        .await
        .map_err(std::io::Error::other)?;
    let (mut parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    for hop in ["connection", "keep-alive", "transfer-encoding"] {
        parts.headers.remove(hop);
    }
    parts.headers.insert("content-length", body.len().into());
    Ok(Response::from_parts(parts, full(body)))
}
