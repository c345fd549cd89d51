//! Wire helpers of the stand-in: query strings and Google error bodies
//! (<https://cloud.google.com/apis/design/errors#http_mapping>).

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use serde_json::json;

use super::Shared;

pub(crate) type Reply = Response<Full<Bytes>>;

pub(crate) fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn reply(status: u16, body: Bytes) -> Reply {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    r
}

/// A Google error body (<https://cloud.google.com/apis/design/errors#http_mapping>).
pub(crate) fn error(
    shared: &Shared,
    code: u16,
    status: &str,
    message: &str,
    retry: Option<&str>,
) -> Reply {
    let mut details = vec![json!({
        "@type": "type.googleapis.com/google.rpc.RequestInfo",
        "requestId": shared.request_id(),
    })];
    if let Some(delay) = retry {
        details.push(json!({
            "@type": "type.googleapis.com/google.rpc.RetryInfo",
            "retryDelay": delay,
        }));
    }
    let body = json!({ "error": { "code": code, "message": message, "status": status, "details": details } });
    let mut r = reply(code, Bytes::from(body.to_string()));
    if retry.is_some() {
        r.headers_mut().insert(
            hyper::header::RETRY_AFTER,
            hyper::header::HeaderValue::from_static("1"),
        );
    }
    r
}
