//! An HTTP/1.1 server on loopback that answers from precomputed responses at once, for
//! measuring what a client adds to a call with no server time in it (the providers'
//! `*_stub/*` benchmarks).
//!
//! Each connection has its own thread that busy-polls its socket for [`SPIN`] after each
//! response before it blocks. On a virtual machine a thread that has slept wakes tens of
//! microseconds late, later the longer it slept, so a blocking server would charge a
//! client that works between requests (keymgr verifying a signature) for the server's
//! wake-up. With the server spinning, the difference between two clients is their own
//! work.

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a connection's thread spins for the next request before it blocks.
pub const SPIN: Duration = Duration::from_millis(5);

/// One request's head, as the router sees it.
#[derive(Debug)]
pub struct Request<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// The request target without its query (`/v1/projects/...`).
    pub path: &'a str,
    head: &'a str,
}

impl Request<'_> {
    /// The value of header `name` (case-insensitive), trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// A `200 OK` response: its `content-type` and body.
#[derive(Debug, Clone)]
pub struct Response {
    /// The `content-type` header.
    pub content_type: &'static str,
    /// The body, sent as is.
    pub body: String,
}

type Router = dyn Fn(&Request<'_>) -> Option<Response> + Send + Sync;

/// Starts the server on its own threads; `route` answers each request, and `None`
/// closes the connection. Returns the `http://127.0.0.1:PORT` endpoint. The server
/// lives as long as the process.
pub fn start(route: impl Fn(&Request<'_>) -> Option<Response> + Send + Sync + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let addr = listener.local_addr().expect("local address");
    let route: Arc<Router> = Arc::new(route);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let route = route.clone();
            std::thread::spawn(move || serve(conn, &*route));
        }
    });
    format!("http://{addr}")
}

/// Reads more bytes into `buf`: spins while the last response is younger than [`SPIN`],
/// then blocks. `false` at end of stream or on an error.
fn fill(conn: &mut TcpStream, buf: &mut Vec<u8>, since: Instant) -> bool {
    let mut chunk = [0u8; 8192];
    loop {
        if conn.set_nonblocking(since.elapsed() < SPIN).is_err() {
            return false;
        }
        match conn.read(&mut chunk) {
            Ok(0) => return false,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return true;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::hint::spin_loop(),
            Err(_) => return false,
        }
    }
}

/// Keep-alive: one response per request until the client closes or `route` declines.
fn serve(mut conn: TcpStream, route: &Router) {
    let _ = conn.set_nodelay(true);
    let mut buf = Vec::new();
    let mut since = Instant::now();
    loop {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            if !fill(&mut conn, &mut buf, since) {
                return;
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let mut start_line = head.lines().next().unwrap_or("").split(' ');
        let method = start_line.next().unwrap_or("");
        let target = start_line.next().unwrap_or("");
        let request = Request {
            method,
            path: target.split('?').next().unwrap_or(""),
            head: &head,
        };
        let length: usize = request
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < end + 4 + length {
            if !fill(&mut conn, &mut buf, since) {
                return;
            }
        }
        let Some(response) = route(&request) else {
            return;
        };
        let message = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: {}\r\nx-amzn-requestid: instant\r\n\
             content-length: {}\r\n\r\n{}",
            response.content_type,
            response.body.len(),
            response.body
        );
        if conn.write_all(message.as_bytes()).is_err() {
            return;
        }
        buf.drain(..end + 4 + length);
        since = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn answers_by_route_and_keeps_the_connection() {
        let endpoint = start(|r| {
            (r.method == "POST" && r.header("X-Target") == Some("a")).then(|| Response {
                content_type: "text/plain",
                body: format!("hit {}", r.path),
            })
        });
        let mut conn = TcpStream::connect(endpoint.trim_start_matches("http://")).unwrap();
        for _ in 0..2 {
            conn.write_all(b"POST /p?q=1 HTTP/1.1\r\nx-target: a\r\ncontent-length: 2\r\n\r\nhi")
                .unwrap();
            let mut got = vec![0u8; 256];
            let n = conn.read(&mut got).unwrap();
            let text = String::from_utf8_lossy(&got[..n]);
            assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
            assert!(text.ends_with("hit /p"), "{text}");
        }
        // A request the router declines closes the connection.
        conn.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let mut rest = Vec::new();
        assert_eq!(conn.read_to_end(&mut rest).unwrap(), 0);
    }
}
