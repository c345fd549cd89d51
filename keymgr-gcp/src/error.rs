//! Google client errors → [`keymgr_core::Error`], keeping the Google status code, its
//! message, the HTTP status and the request id (`google.rpc.RequestInfo`) in every
//! message (support cases and Cloud Audit Logs need them).
//!
//! Status codes: <https://cloud.google.com/kms/docs/reference/rest/v1/Code> and
//! <https://cloud.google.com/apis/design/errors#handling_errors>.

use google_cloud_gax::error::rpc::{Code, StatusDetails};
use google_cloud_gax::error::{CredentialsError, Error as GaxError};
use keymgr_core::Error;

/// The backend's name in errors, audit records and health reports.
pub(crate) const BACKEND: &str = "gcp-kms";

/// Maps one failed client call.
///
/// `operation` is the Cloud KMS method (`AsymmetricSign`, `GetPublicKey`, ...), `key`
/// the key as the caller named it and `target` the resource name sent to Cloud KMS.
pub(crate) fn map_gax_error(err: GaxError, operation: &str, key: &str, target: &str) -> Error {
    let http = err
        .http_status_code()
        .map(|s| format!("HTTP {s}"))
        .unwrap_or_else(|| "no HTTP status".to_owned());
    if let Some(status) = err.status() {
        let request_id = status
            .details
            .iter()
            .find_map(|d| match d {
                StatusDetails::RequestInfo(info) if !info.request_id.is_empty() => {
                    Some(format!("request id {}", info.request_id))
                }
                _ => None,
            })
            .unwrap_or_else(|| "no request id".to_owned());
        let code = status.code;
        let detail = format!(
            "{operation} on {target}: {}: {} ({http}, {request_id})",
            code.name(),
            status.message
        );
        return status_error(code, detail, key, Box::new(err));
    }
    let detail = format!("{operation} on {target} for {key}: {err} ({http})");
    // An HTTP error without a Google error body (a proxy or load balancer answered).
    match err.http_status_code() {
        Some(429) => {
            return Error::Throttled {
                backend: BACKEND.to_owned(),
                detail: format!("{key}: {detail}"),
                source: Some(Box::new(err)),
            };
        }
        Some(s) if s >= 500 => return Error::unavailable(BACKEND, detail, Some(Box::new(err))),
        Some(404) => return Error::not_found(key, detail).with_source(err),
        Some(401 | 403) => {
            return Error::AccessDenied {
                key: key.to_owned(),
                detail,
                source: Some(Box::new(err)),
            };
        }
        _ => {}
    }
    if err.is_deserialization() {
        return Error::integrity(key, format!("malformed response: {detail}")).with_source(err);
    }
    if err.is_authentication() {
        let transient = std::error::Error::source(&err)
            .and_then(|s| s.downcast_ref::<CredentialsError>())
            .is_some_and(CredentialsError::is_transient);
        if transient {
            return Error::unavailable(
                BACKEND,
                format!("fetching Google credentials failed (transient): {detail}"),
                Some(Box::new(err)),
            );
        }
        return Error::AccessDenied {
            key: key.to_owned(),
            detail: format!("no usable Google credentials: {detail}"),
            source: Some(Box::new(err)),
        };
    }
    if err.is_binding() {
        return Error::invalid_input(format!("key {key}"), detail).with_source(err);
    }
    if err.is_timeout() || err.is_io() || err.is_connect() || err.is_transport() {
        return Error::unavailable(BACKEND, detail, Some(Box::new(err)));
    }
    Error::backend(BACKEND, detail, Some(Box::new(err)))
}

fn status_error(code: Code, detail: String, key: &str, source: keymgr_core::BoxError) -> Error {
    match code {
        Code::NotFound => Error::not_found(key, detail).with_source(source),
        Code::PermissionDenied | Code::Unauthenticated => Error::AccessDenied {
            key: key.to_owned(),
            detail,
            source: Some(source),
        },
        // Cloud KMS answers FAILED_PRECONDITION for a version that is not ENABLED
        // (disabled, destroyed, still generating) or a key of the wrong purpose.
        Code::FailedPrecondition => Error::AccessDenied {
            key: key.to_owned(),
            detail: format!("the key version is not usable: {detail}"),
            source: Some(source),
        },
        Code::ResourceExhausted => Error::Throttled {
            backend: BACKEND.to_owned(),
            detail: format!("{key}: {detail}"),
            source: Some(source),
        },
        Code::Unavailable | Code::DeadlineExceeded | Code::Aborted | Code::Internal => {
            Error::unavailable(BACKEND, format!("{key}: {detail}"), Some(source))
        }
        Code::InvalidArgument | Code::OutOfRange => {
            Error::invalid_input(format!("key {key}"), detail).with_source(source)
        }
        Code::DataLoss => Error::integrity(key, detail).with_source(source),
        _ => Error::backend(BACKEND, format!("{key}: {detail}"), Some(source)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use google_cloud_gax::error::rpc::Status;
    use keymgr_core::ErrorKind;

    fn service(code: Code, message: &str, request_id: Option<&str>) -> GaxError {
        let mut details = Vec::new();
        if let Some(id) = request_id {
            let info: google_cloud_gax::error::rpc::StatusDetails =
                serde_json::from_value(serde_json::json!({
                    "@type": "type.googleapis.com/google.rpc.RequestInfo",
                    "requestId": id,
                }))
                .expect("RequestInfo");
            details.push(info);
        }
        GaxError::service(
            Status::default()
                .set_code(code)
                .set_message(message)
                .set_details(details),
        )
    }

    #[test]
    fn kinds_and_request_ids() {
        let cases = [
            (Code::NotFound, ErrorKind::NotFound, false),
            (Code::PermissionDenied, ErrorKind::AccessDenied, false),
            (Code::Unauthenticated, ErrorKind::AccessDenied, false),
            (Code::FailedPrecondition, ErrorKind::AccessDenied, false),
            (Code::ResourceExhausted, ErrorKind::Throttled, true),
            (Code::Unavailable, ErrorKind::Unavailable, true),
            (Code::DeadlineExceeded, ErrorKind::Unavailable, true),
            (Code::Internal, ErrorKind::Unavailable, true),
            (Code::InvalidArgument, ErrorKind::InvalidInput, false),
            (Code::DataLoss, ErrorKind::Integrity, false),
            (Code::Unimplemented, ErrorKind::Backend, false),
        ];
        for (code, kind, retryable) in cases {
            let e = map_gax_error(
                service(code, "it went wrong", Some("req-1234")),
                "AsymmetricSign",
                "evm",
                "projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1",
            );
            assert_eq!(e.kind(), kind, "{code:?}: {e}");
            assert_eq!(e.is_retryable(), retryable, "{code:?}");
            let text = e.to_string();
            assert!(
                text.contains("req-1234"),
                "{code:?}: request id lost: {text}"
            );
            assert!(text.contains("evm"), "{code:?}: key not named: {text}");
            assert!(text.contains(code.name()), "{code:?}: status lost: {text}");
            assert!(text.contains("it went wrong"), "{code:?}: message lost");
        }
        let e = map_gax_error(
            service(Code::NotFound, "gone", None),
            "GetPublicKey",
            "k",
            "t",
        );
        assert!(e.to_string().contains("no request id"), "{e}");
    }

    #[test]
    fn transport_failures_are_retryable() {
        let e = map_gax_error(
            GaxError::io("connection reset"),
            "AsymmetricSign",
            "evm",
            "t",
        );
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.is_retryable());
        let e = map_gax_error(
            GaxError::deser("expected value"),
            "GetPublicKey",
            "evm",
            "t",
        );
        assert_eq!(e.kind(), ErrorKind::Integrity);
        let e = map_gax_error(
            GaxError::http(429, Default::default(), "slow down".into()),
            "AsymmetricSign",
            "evm",
            "t",
        );
        assert_eq!(e.kind(), ErrorKind::Throttled);
        let e = map_gax_error(
            GaxError::http(503, Default::default(), "<html>".into()),
            "AsymmetricSign",
            "evm",
            "t",
        );
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        let e = map_gax_error(
            GaxError::http(404, Default::default(), "not here".into()),
            "GetPublicKey",
            "evm",
            "t",
        );
        assert_eq!(e.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn credential_failures() {
        let transient = GaxError::authentication(CredentialsError::from_msg(
            true,
            "metadata server timed out",
        ));
        let e = map_gax_error(transient, "AsymmetricSign", "evm", "t");
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        let permanent =
            GaxError::authentication(CredentialsError::from_msg(false, "malformed key file"));
        let e = map_gax_error(permanent, "AsymmetricSign", "evm", "t");
        assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");
        assert!(e.to_string().contains("malformed key file"), "{e}");
    }
}
