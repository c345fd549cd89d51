//! PKCS#11 return codes → [`keymgr_core::Error`].
//!
//! Every message names the `CKR_*` code and the `C_*` function that returned it, and
//! the key label or token involved. Nothing here ever sees the PIN.

use cryptoki::context::Function;
use cryptoki::error::{Error as CkError, RvError};
use keymgr_core::{Error, ProviderError};

pub(crate) const BACKEND: &str = "hsm";

/// When a failure happened: at start-up, codes that concurrent logins on a shared token
/// produce are transient (SoftHSM rewrites its token file on `C_Login`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Startup,
    Operation,
}

/// What the failing call was about, for the message and the error's key field.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Subject<'a> {
    /// The key as the caller named it (`evm`, `evm@3`), or the token for login failures.
    pub key: &'a str,
    /// The `CKA_LABEL` involved, if any.
    pub label: Option<&'a str>,
}

impl<'a> Subject<'a> {
    pub(crate) fn token(token: &'a str) -> Self {
        Self {
            key: token,
            label: None,
        }
    }

    #[cfg(test)]
    pub(crate) fn key(key: &'a str, label: &'a str) -> Self {
        Self {
            key,
            label: Some(label),
        }
    }

    fn describe(&self) -> String {
        match self.label {
            Some(l) if l != self.key => format!("key {} (label {l:?})", self.key),
            Some(_) | None => self.key.to_owned(),
        }
    }
}

/// The PKCS#11 return code of a cryptoki error, if it carries one.
pub(crate) fn rv(e: &CkError) -> Option<RvError> {
    match e {
        CkError::Pkcs11(rv, _) => Some(*rv),
        _ => None,
    }
}

/// Whether the session (or the whole login) is gone and a fresh session, after
/// re-login, may succeed.
pub(crate) fn is_stale_session(e: &CkError) -> bool {
    matches!(
        rv(e),
        Some(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::UserNotLoggedIn
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent
                | RvError::CryptokiNotInitialized
        )
    )
}

/// Whether an object handle may have gone stale (token re-inserted, module
/// re-initialized, logged out behind our back): re-resolve the label and retry.
pub(crate) fn is_stale_handle(e: &CkError) -> bool {
    matches!(
        rv(e),
        Some(RvError::KeyHandleInvalid | RvError::ObjectHandleInvalid)
    )
}

/// Start-up failures worth retrying: what concurrent `C_Login`s on one SoftHSM token
/// produce, and devices that are still coming up.
pub(crate) fn is_startup_transient(e: &CkError) -> bool {
    matches!(
        rv(e),
        Some(
            RvError::GeneralError
                | RvError::SlotIdInvalid
                | RvError::TokenNotPresent
                | RvError::TokenNotRecognized
                | RvError::DeviceError
                | RvError::DeviceRemoved
                | RvError::FunctionFailed
                | RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::SessionCount
                | RvError::CryptokiNotInitialized
        )
    )
}

/// Start-up answers that are usually final but that SoftHSM2 also gives while another
/// process is rewriting the token file under a concurrent `C_Login` (it then reads a
/// token without a user PIN): retried for at most [`SUSPECT_WINDOW`], then reported.
pub(crate) fn is_startup_suspect(e: &CkError) -> bool {
    matches!(rv(e), Some(RvError::UserPinNotInitialized))
}

/// How long a [suspect](is_startup_suspect) start-up answer is retried before it is
/// believed: long enough to outlast a concurrent login's token rewrite, short enough
/// that a token really without a user PIN is reported promptly.
pub(crate) const SUSPECT_WINDOW: std::time::Duration = std::time::Duration::from_secs(2);

fn is_login_step(f: Function) -> bool {
    matches!(
        f,
        Function::Login
            | Function::OpenSession
            | Function::GetSlotList
            | Function::GetTokenInfo
            | Function::GetSessionInfo
    )
}

/// `C_Sign` for `Function::Sign`.
pub(crate) fn function_name(f: Function) -> String {
    format!("C_{f:?}")
}

/// Maps a cryptoki error to the core error kinds; the message names the code.
pub(crate) fn map(e: CkError, phase: Phase, subject: Subject<'_>) -> Error {
    let what = subject.describe();
    let (code, function) = match &e {
        CkError::Pkcs11(rv, f) => (*rv, *f),
        CkError::LibraryLoading(_) => {
            return Error::config(
                crate::config::HSM_PKCS11_LIBRARY_PATH,
                "the path of a loadable PKCS#11 module",
                format!("could not load the module: {e}"),
            )
            .with_source(e);
        }
        other => {
            return Error::backend(
                BACKEND,
                format!("PKCS#11 call for {what} failed: {other}"),
                Some(Box::new(e)),
            );
        }
    };
    let name = ckr_name(code);
    let call = function_name(function);
    let detail = |text: &str| format!("{text} ({name} from {call})");
    let access = |text: &str| Error::access_denied(subject.key, detail(text));
    let unavailable =
        |text: &str| Error::unavailable(BACKEND, format!("{what}: {}", detail(text)), None);
    // The CKR_* code, the C_* function and cryptoki's error stay readable as data
    // (Error::provider_code, Error::operation) behind every mapped error.
    let cause = ProviderError::new(BACKEND, call.clone())
        .with_code(name.clone())
        .with_source(e);
    let mapped = match code {
        RvError::PinIncorrect | RvError::PinInvalid | RvError::PinLenRange => {
            access("HSM PIN rejected")
        }
        RvError::PinLocked => access("HSM PIN locked; unlock it with the security officer PIN"),
        RvError::PinExpired => access("HSM PIN expired; set a new one with C_SetPIN"),
        RvError::UserPinNotInitialized => Error::config(
            crate::config::HSM_PIN,
            "a token whose user PIN has been initialized (C_InitPIN)",
            detail("the token has no user PIN yet"),
        ),
        RvError::UserNotLoggedIn => access("the session is not logged in to the token"),
        RvError::UserTypeInvalid
        | RvError::UserAnotherAlreadyLoggedIn
        | RvError::UserTooManyTypes => access("the token refused the user login"),
        RvError::KeyFunctionNotPermitted => access(
            "the key may not sign: CKA_SIGN is false (the version is disabled or the key is not a signing key)",
        ),
        RvError::ActionProhibited => access("the token's policy prohibits this action"),
        RvError::KeyHandleInvalid | RvError::ObjectHandleInvalid => Error::not_found(
            subject.key,
            detail(&match subject.label {
                Some(l) => format!("the object labelled {l:?} is gone from the token"),
                None => "the object is gone from the token".to_owned(),
            }),
        ),
        RvError::KeyTypeInconsistent
        | RvError::MechanismInvalid
        | RvError::MechanismParamInvalid
        | RvError::CurveNotSupported
        | RvError::DomainParamsInvalid
        | RvError::KeySizeRange
        | RvError::FunctionNotSupported => Error::unsupported(
            BACKEND,
            "pkcs11",
            format!(
                "{what}: {}",
                detail("the token cannot do this with this key")
            ),
        ),
        RvError::TokenWriteProtected | RvError::SessionReadOnly => Error::unsupported(
            BACKEND,
            "pkcs11",
            format!("{what}: {}", detail("the token is write-protected")),
        ),
        RvError::DataInvalid | RvError::DataLenRange => Error::invalid_input(
            "payload",
            format!("{what}: {}", detail("the token refused the data to sign")),
        ),
        RvError::DeviceRemoved | RvError::TokenNotPresent | RvError::TokenNotRecognized => {
            unavailable("the token is not present")
        }
        RvError::DeviceError
        | RvError::DeviceMemory
        | RvError::HostMemory
        | RvError::SessionHandleInvalid
        | RvError::SessionClosed
        | RvError::SessionCount
        | RvError::CryptokiNotInitialized
        | RvError::FunctionFailed
        | RvError::FunctionCanceled
        | RvError::Cancel
        | RvError::OperationActive
        | RvError::MutexBad
        | RvError::CantLock => unavailable("transient HSM failure"),
        // What concurrent C_Logins on one token produce (SoftHSM2 rewrites its token
        // file on login): transient at start-up and whenever keymgr logs in again.
        RvError::GeneralError | RvError::SlotIdInvalid
            if phase == Phase::Startup || is_login_step(function) =>
        {
            unavailable("the token is busy or being rewritten (another process logging in?)")
        }
        _ => Error::backend(
            BACKEND,
            format!("{what}: {}", detail("PKCS#11 call failed")),
            None,
        ),
    };
    mapped.with_source(cause)
}

/// The PKCS#11 name of a return code, e.g. `CKR_PIN_INCORRECT`.
pub(crate) fn ckr_name(rv: RvError) -> String {
    let name = match rv {
        RvError::Cancel => "CKR_CANCEL",
        RvError::HostMemory => "CKR_HOST_MEMORY",
        RvError::SlotIdInvalid => "CKR_SLOT_ID_INVALID",
        RvError::GeneralError => "CKR_GENERAL_ERROR",
        RvError::FunctionFailed => "CKR_FUNCTION_FAILED",
        RvError::ArgumentsBad => "CKR_ARGUMENTS_BAD",
        RvError::NoEvent => "CKR_NO_EVENT",
        RvError::NeedToCreateThreads => "CKR_NEED_TO_CREATE_THREADS",
        RvError::CantLock => "CKR_CANT_LOCK",
        RvError::AttributeReadOnly => "CKR_ATTRIBUTE_READ_ONLY",
        RvError::AttributeSensitive => "CKR_ATTRIBUTE_SENSITIVE",
        RvError::AttributeTypeInvalid => "CKR_ATTRIBUTE_TYPE_INVALID",
        RvError::AttributeValueInvalid => "CKR_ATTRIBUTE_VALUE_INVALID",
        RvError::ActionProhibited => "CKR_ACTION_PROHIBITED",
        RvError::DataInvalid => "CKR_DATA_INVALID",
        RvError::DataLenRange => "CKR_DATA_LEN_RANGE",
        RvError::DeviceError => "CKR_DEVICE_ERROR",
        RvError::DeviceMemory => "CKR_DEVICE_MEMORY",
        RvError::DeviceRemoved => "CKR_DEVICE_REMOVED",
        RvError::EncryptedDataInvalid => "CKR_ENCRYPTED_DATA_INVALID",
        RvError::EncryptedDataLenRange => "CKR_ENCRYPTED_DATA_LEN_RANGE",
        RvError::FunctionCanceled => "CKR_FUNCTION_CANCELED",
        RvError::FunctionNotParallel => "CKR_FUNCTION_NOT_PARALLEL",
        RvError::FunctionNotSupported => "CKR_FUNCTION_NOT_SUPPORTED",
        RvError::CurveNotSupported => "CKR_CURVE_NOT_SUPPORTED",
        RvError::KeyHandleInvalid => "CKR_KEY_HANDLE_INVALID",
        RvError::KeySizeRange => "CKR_KEY_SIZE_RANGE",
        RvError::KeyTypeInconsistent => "CKR_KEY_TYPE_INCONSISTENT",
        RvError::KeyNotNeeded => "CKR_KEY_NOT_NEEDED",
        RvError::KeyChanged => "CKR_KEY_CHANGED",
        RvError::KeyNeeded => "CKR_KEY_NEEDED",
        RvError::KeyIndigestible => "CKR_KEY_INDIGESTIBLE",
        RvError::KeyFunctionNotPermitted => "CKR_KEY_FUNCTION_NOT_PERMITTED",
        RvError::KeyNotWrappable => "CKR_KEY_NOT_WRAPPABLE",
        RvError::KeyUnextractable => "CKR_KEY_UNEXTRACTABLE",
        RvError::MechanismInvalid => "CKR_MECHANISM_INVALID",
        RvError::MechanismParamInvalid => "CKR_MECHANISM_PARAM_INVALID",
        RvError::ObjectHandleInvalid => "CKR_OBJECT_HANDLE_INVALID",
        RvError::OperationActive => "CKR_OPERATION_ACTIVE",
        RvError::OperationNotInitialized => "CKR_OPERATION_NOT_INITIALIZED",
        RvError::PinIncorrect => "CKR_PIN_INCORRECT",
        RvError::PinInvalid => "CKR_PIN_INVALID",
        RvError::PinLenRange => "CKR_PIN_LEN_RANGE",
        RvError::PinExpired => "CKR_PIN_EXPIRED",
        RvError::PinLocked => "CKR_PIN_LOCKED",
        RvError::SessionClosed => "CKR_SESSION_CLOSED",
        RvError::SessionCount => "CKR_SESSION_COUNT",
        RvError::SessionHandleInvalid => "CKR_SESSION_HANDLE_INVALID",
        RvError::SessionParallelNotSupported => "CKR_SESSION_PARALLEL_NOT_SUPPORTED",
        RvError::SessionReadOnly => "CKR_SESSION_READ_ONLY",
        RvError::SessionExists => "CKR_SESSION_EXISTS",
        RvError::SessionReadOnlyExists => "CKR_SESSION_READ_ONLY_EXISTS",
        RvError::SessionReadWriteSoExists => "CKR_SESSION_READ_WRITE_SO_EXISTS",
        RvError::SignatureInvalid => "CKR_SIGNATURE_INVALID",
        RvError::SignatureLenRange => "CKR_SIGNATURE_LEN_RANGE",
        RvError::TemplateIncomplete => "CKR_TEMPLATE_INCOMPLETE",
        RvError::TemplateInconsistent => "CKR_TEMPLATE_INCONSISTENT",
        RvError::TokenNotPresent => "CKR_TOKEN_NOT_PRESENT",
        RvError::TokenNotRecognized => "CKR_TOKEN_NOT_RECOGNIZED",
        RvError::TokenWriteProtected => "CKR_TOKEN_WRITE_PROTECTED",
        RvError::UnwrappingKeyHandleInvalid => "CKR_UNWRAPPING_KEY_HANDLE_INVALID",
        RvError::UnwrappingKeySizeRange => "CKR_UNWRAPPING_KEY_SIZE_RANGE",
        RvError::UnwrappingKeyTypeInconsistent => "CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT",
        RvError::UserAlreadyLoggedIn => "CKR_USER_ALREADY_LOGGED_IN",
        RvError::UserNotLoggedIn => "CKR_USER_NOT_LOGGED_IN",
        RvError::UserPinNotInitialized => "CKR_USER_PIN_NOT_INITIALIZED",
        RvError::UserTypeInvalid => "CKR_USER_TYPE_INVALID",
        RvError::UserAnotherAlreadyLoggedIn => "CKR_USER_ANOTHER_ALREADY_LOGGED_IN",
        RvError::UserTooManyTypes => "CKR_USER_TOO_MANY_TYPES",
        RvError::WrappedKeyInvalid => "CKR_WRAPPED_KEY_INVALID",
        RvError::WrappedKeyLenRange => "CKR_WRAPPED_KEY_LEN_RANGE",
        RvError::WrappingKeyHandleInvalid => "CKR_WRAPPING_KEY_HANDLE_INVALID",
        RvError::WrappingKeySizeRange => "CKR_WRAPPING_KEY_SIZE_RANGE",
        RvError::WrappingKeyTypeInconsistent => "CKR_WRAPPING_KEY_TYPE_INCONSISTENT",
        RvError::RandomSeedNotSupported => "CKR_RANDOM_SEED_NOT_SUPPORTED",
        RvError::RandomNoRng => "CKR_RANDOM_NO_RNG",
        RvError::DomainParamsInvalid => "CKR_DOMAIN_PARAMS_INVALID",
        RvError::BufferTooSmall => "CKR_BUFFER_TOO_SMALL",
        RvError::SavedStateInvalid => "CKR_SAVED_STATE_INVALID",
        RvError::InformationSensitive => "CKR_INFORMATION_SENSITIVE",
        RvError::StateUnsaveable => "CKR_STATE_UNSAVEABLE",
        RvError::CryptokiNotInitialized => "CKR_CRYPTOKI_NOT_INITIALIZED",
        RvError::CryptokiAlreadyInitialized => "CKR_CRYPTOKI_ALREADY_INITIALIZED",
        RvError::MutexBad => "CKR_MUTEX_BAD",
        RvError::MutexNotLocked => "CKR_MUTEX_NOT_LOCKED",
        RvError::NewPinMode => "CKR_NEW_PIN_MODE",
        RvError::NextOtp => "CKR_NEXT_OTP",
        RvError::ExceededMaxIterations => "CKR_EXCEEDED_MAX_ITERATIONS",
        RvError::FipsSelfTestFailed => "CKR_FIPS_SELF_TEST_FAILED",
        RvError::LibraryLoadFailed => "CKR_LIBRARY_LOAD_FAILED",
        RvError::PinTooWeak => "CKR_PIN_TOO_WEAK",
        RvError::PublicKeyInvalid => "CKR_PUBLIC_KEY_INVALID",
        RvError::FunctionRejected => "CKR_FUNCTION_REJECTED",
        RvError::VendorDefined(code) => return format!("CKR_VENDOR_DEFINED(0x{code:08x})"),
        RvError::UnknownErrorCode(code) => return format!("CKR_0x{code:08x} (unknown code)"),
        #[allow(unreachable_patterns)]
        _ => return format!("{rv:?}"),
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use keymgr_core::ErrorKind;

    fn ck(rv: RvError, f: Function) -> CkError {
        CkError::Pkcs11(rv, f)
    }

    #[test]
    fn documented_mappings() {
        let token = Subject::token("token \"keymgr\"");
        let key = Subject::key("evm", "evm-settlement.v3");
        let cases = [
            (
                RvError::PinIncorrect,
                Function::Login,
                token,
                ErrorKind::AccessDenied,
                "HSM PIN rejected",
            ),
            (
                RvError::KeyHandleInvalid,
                Function::SignInit,
                key,
                ErrorKind::NotFound,
                "evm-settlement.v3",
            ),
            (
                RvError::DeviceRemoved,
                Function::Sign,
                key,
                ErrorKind::Unavailable,
                "CKR_DEVICE_REMOVED",
            ),
            (
                RvError::KeyFunctionNotPermitted,
                Function::SignInit,
                key,
                ErrorKind::AccessDenied,
                "CKA_SIGN",
            ),
            (
                RvError::MechanismInvalid,
                Function::SignInit,
                key,
                ErrorKind::Unsupported,
                "CKR_MECHANISM_INVALID",
            ),
            (
                RvError::UserPinNotInitialized,
                Function::Login,
                token,
                ErrorKind::Config,
                "HSM_PIN",
            ),
            (
                RvError::AttributeReadOnly,
                Function::SetAttributeValue,
                key,
                ErrorKind::Backend,
                "CKR_ATTRIBUTE_READ_ONLY",
            ),
        ];
        for (rv, f, subject, kind, needle) in cases {
            let e = map(ck(rv, f), Phase::Operation, subject);
            assert_eq!(e.kind(), kind, "{rv:?}: {e}");
            let s = e.to_string();
            assert!(s.contains(needle), "{s}");
            assert!(s.contains(&ckr_name(rv)), "{s}");
            assert!(s.contains(&function_name(f)), "{s}");
        }
    }

    #[test]
    fn startup_races_are_retryable_only_at_startup() {
        for rv in [RvError::GeneralError, RvError::SlotIdInvalid] {
            let e = map(ck(rv, Function::Login), Phase::Startup, Subject::token("t"));
            assert!(e.is_retryable(), "{e}");
            assert!(is_startup_transient(&ck(rv, Function::Login)));
            let e = map(
                ck(rv, Function::Sign),
                Phase::Operation,
                Subject::token("t"),
            );
            assert!(!e.is_retryable(), "{e}");
        }
        assert!(!is_startup_transient(&ck(
            RvError::PinIncorrect,
            Function::Login
        )));
        let pin_not_set = ck(RvError::UserPinNotInitialized, Function::Login);
        assert!(!is_startup_transient(&pin_not_set));
        assert!(is_startup_suspect(&pin_not_set));
        assert!(!is_startup_suspect(&ck(
            RvError::PinIncorrect,
            Function::Login
        )));
    }

    #[test]
    fn names() {
        assert_eq!(ckr_name(RvError::PinIncorrect), "CKR_PIN_INCORRECT");
        assert_eq!(
            ckr_name(RvError::VendorDefined(0x8000_0001)),
            "CKR_VENDOR_DEFINED(0x80000001)"
        );
        assert_eq!(
            function_name(Function::GenerateKeyPair),
            "C_GenerateKeyPair"
        );
    }
}
