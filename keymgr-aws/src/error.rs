//! AWS SDK errors → [`keymgr_core::Error`], keeping the AWS error code, message and
//! request id in every message (support cases and CloudTrail need the request id).

use aws_sdk_kms::config::http::HttpResponse;
use aws_sdk_kms::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kms::operation::RequestId as _;
use keymgr_core::{Error, IntegrityReason, ProviderError};

/// The backend's name in errors, audit records and health reports.
pub(crate) const BACKEND: &str = "aws-kms";

/// Maps one failed SDK call.
///
/// `operation` is the KMS API name (`Sign`, `GetPublicKey`, ...), `key` the key as the
/// caller named it and `target` the identifier sent to KMS (alias, ARN or key id). The
/// result keeps the AWS error code, request id and the SDK error as a
/// [`ProviderError`] `source()`, readable through [`Error::provider_code`],
/// [`Error::request_id`] and [`Error::operation`].
pub(crate) fn map_sdk_error<E>(
    err: SdkError<E, HttpResponse>,
    operation: &'static str,
    key: &str,
    target: &str,
) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let request_id = err.request_id().map(str::to_owned);
    let shown_id = request_id
        .as_deref()
        .map(|id| format!("AWS request id {id}"))
        .unwrap_or_else(|| "no AWS request id".to_owned());
    let cause = ProviderError::new(BACKEND, operation).with_request_id(request_id);
    match &err {
        SdkError::ServiceError(_) => {
            let code = err.code().unwrap_or("UnknownError").to_owned();
            let message = err.message().unwrap_or("").to_owned();
            let status = err.raw_response().map(|r| r.status().as_u16());
            let detail = format!("{operation} on {target}: {code}: {message} ({shown_id})");
            let cause = cause.with_code(code.clone()).with_source(err);
            service_error(&code, status, detail, key).with_source(cause)
        }
        SdkError::TimeoutError(_) => Error::unavailable(
            BACKEND,
            format!("{operation} on {target} for {key} timed out ({shown_id})"),
            Some(Box::new(cause.with_source(err))),
        ),
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            let detail = format!(
                "{operation} on {target} for {key}: {} ({shown_id})",
                DisplayErrorContext(&err)
            );
            Error::unavailable(BACKEND, detail, Some(Box::new(cause.with_source(err))))
        }
        _ => {
            let detail = format!(
                "{operation} on {target} for {key}: {} ({shown_id})",
                DisplayErrorContext(&err)
            );
            Error::backend(BACKEND, detail, Some(Box::new(cause.with_source(err))))
        }
    }
}

/// The error for one KMS exception code; the caller attaches the cause.
fn service_error(code: &str, status: Option<u16>, detail: String, key: &str) -> Error {
    match code {
        "NotFoundException" => Error::not_found(key, detail),
        "DisabledException" => {
            Error::access_denied(key, format!("the KMS key is disabled: {detail}"))
        }
        "KMSInvalidStateException" => Error::access_denied(
            key,
            format!("the KMS key is not in a usable state: {detail}"),
        ),
        "AccessDeniedException"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "IncompleteSignature"
        | "ExpiredTokenException"
        | "InvalidClientTokenId"
        | "MissingAuthenticationToken" => Error::access_denied(key, detail),
        "ThrottlingException"
        | "LimitExceededException"
        | "RequestLimitExceeded"
        | "TooManyRequestsException" => Error::throttled(BACKEND, format!("{key}: {detail}"), None),
        "KMSInternalException"
        | "DependencyTimeoutException"
        | "KeyUnavailableException"
        | "ServiceUnavailable"
        | "ServiceUnavailableException"
        | "InternalFailure"
        | "InternalServerError" => Error::unavailable(BACKEND, format!("{key}: {detail}"), None),
        "InvalidKeyUsageException"
        | "UnsupportedOperationException"
        | "ValidationException"
        | "InvalidArnException"
        | "InvalidAliasNameException"
        | "InvalidGrantTokenException"
        | "DryRunOperationException" => Error::invalid_input(format!("key {key}"), detail),
        "InvalidCiphertextException" | "IncorrectKeyException" | "KMSInvalidSignatureException" => {
            Error::integrity_failure(key, IntegrityReason::DoesNotVerify, detail)
        }
        _ if status.is_some_and(|s| s >= 500) => {
            Error::unavailable(BACKEND, format!("{key}: {detail}"), None)
        }
        _ => Error::backend(BACKEND, format!("{key}: {detail}"), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_kms::error::ErrorMetadata;
    use aws_sdk_kms::operation::sign::SignError;
    use aws_sdk_kms::types::error::{DisabledException, NotFoundException};
    use aws_smithy_types::body::SdkBody;
    use keymgr_core::ErrorKind;

    /// Builds an SDK service error as the SDK would from a KMS JSON error response.
    fn service(
        code: &str,
        message: &str,
        status: u16,
        request_id: &str,
    ) -> SdkError<SignError, HttpResponse> {
        let meta = ErrorMetadata::builder()
            .code(code)
            .message(message)
            .custom("aws_request_id", request_id)
            .build();
        let err = match code {
            "NotFoundException" => SignError::NotFoundException(
                NotFoundException::builder()
                    .message(message)
                    .meta(meta)
                    .build(),
            ),
            "DisabledException" => SignError::DisabledException(
                DisabledException::builder()
                    .message(message)
                    .meta(meta)
                    .build(),
            ),
            _ => SignError::generic(meta),
        };
        let mut response = HttpResponse::new(
            status.try_into().expect("valid status"),
            SdkBody::from("{}"),
        );
        response
            .headers_mut()
            .insert("x-amzn-requestid", request_id.to_owned());
        SdkError::service_error(err, response)
    }

    #[test]
    fn kinds_and_request_ids() {
        let cases = [
            ("NotFoundException", 400, ErrorKind::NotFound, false),
            ("DisabledException", 400, ErrorKind::AccessDenied, false),
            (
                "KMSInvalidStateException",
                400,
                ErrorKind::AccessDenied,
                false,
            ),
            ("AccessDeniedException", 400, ErrorKind::AccessDenied, false),
            ("ThrottlingException", 400, ErrorKind::Throttled, true),
            ("LimitExceededException", 400, ErrorKind::Throttled, true),
            ("KMSInternalException", 500, ErrorKind::Unavailable, true),
            (
                "DependencyTimeoutException",
                503,
                ErrorKind::Unavailable,
                true,
            ),
            (
                "InvalidKeyUsageException",
                400,
                ErrorKind::InvalidInput,
                false,
            ),
            (
                "InvalidCiphertextException",
                400,
                ErrorKind::Integrity,
                false,
            ),
            ("SomethingNew", 503, ErrorKind::Unavailable, true),
            ("SomethingNew", 400, ErrorKind::Backend, false),
        ];
        for (code, status, kind, retryable) in cases {
            let e = map_sdk_error(
                service(code, "it went wrong", status, "req-1234"),
                "Sign",
                "evm",
                "alias/evm",
            );
            assert_eq!(e.kind(), kind, "{code}: {e}");
            assert_eq!(e.is_retryable(), retryable, "{code}");
            // The AWS context is data, and the SDK error is kept as the cause.
            assert_eq!(e.provider_code(), Some(code), "{code}");
            assert_eq!(e.request_id(), Some("req-1234"), "{code}");
            assert_eq!(e.operation(), Some("Sign"), "{code}");
            let provider = std::error::Error::source(&e).expect("cause kept");
            assert!(
                provider
                    .source()
                    .is_some_and(|sdk| sdk.is::<SdkError<SignError, HttpResponse>>()),
                "{code}: SDK error lost"
            );
            let text = e.to_string();
            assert!(text.contains("req-1234"), "{code}: request id lost: {text}");
            assert!(text.contains("evm"), "{code}: key not named: {text}");
            assert!(text.contains(code), "{code}: AWS error code lost: {text}");
        }
    }

    #[test]
    fn dispatch_failures_are_retryable() {
        let err: SdkError<SignError, HttpResponse> = SdkError::dispatch_failure(
            aws_sdk_kms::error::ConnectorError::io("connection refused".into()),
        );
        let e = map_sdk_error(err, "Sign", "evm", "alias/evm");
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.is_retryable());
        assert_eq!(e.operation(), Some("Sign"));
        assert_eq!(e.provider_code(), None);
        assert!(e.to_string().contains("connection refused"), "{e}");
    }
}
