#![doc = include_str!("../README.md")]

#[cfg(feature = "tx")]
mod authorization;
#[cfg(any(feature = "tx", feature = "eip712"))]
mod context;
#[cfg(feature = "tx")]
mod json_object;
mod message;
#[cfg(feature = "eip712")]
pub mod payment_channel;
#[cfg(feature = "tx")]
mod request;
mod request_error;
mod signer;

pub use message::{MessageReading, looks_like_hex, message_bytes};
#[cfg(feature = "tx")]
pub use request::{CheckedRequest, MAX_REQUEST_JSON_BYTES, REQUEST_FIELDS, type_name};
pub use request_error::RequestError;
#[cfg(feature = "tx")]
pub use signer::TransactionRequest;
pub use signer::{AddressChange, EvmSigner};

/// The [`RequestError`] inside an alloy signer error, if the request was refused.
///
/// `EvmSigner::sign_request` and `EvmSigner::sign_checked` (feature `tx`) return alloy's
/// error type (they serve alloy's `NetworkWallet`); this finds the typed reason again.
pub fn request_error(error: &alloy_signer::Error) -> Option<&RequestError> {
    find_in_chain(error)
}

/// The keymgr error inside an alloy signer error, if that is what it carries.
///
/// [`EvmSigner`]'s alloy trait methods wrap keymgr failures in
/// [`alloy_signer::Error::Other`]; this finds them again, anywhere in the source chain.
pub fn keymgr_error(error: &alloy_signer::Error) -> Option<&keymgr_core::Error> {
    find_in_chain(error)
}

fn find_in_chain<T: std::error::Error + 'static>(error: &alloy_signer::Error) -> Option<&T> {
    // `Other` is `#[error(transparent)]`: its `source()` skips the boxed error itself.
    let mut current: Option<&(dyn std::error::Error + 'static)> = match error {
        alloy_signer::Error::Other(inner) => Some(&**inner),
        other => Some(other),
    };
    while let Some(e) = current {
        if let Some(k) = e.downcast_ref::<T>() {
            return Some(k);
        }
        current = e.source();
    }
    None
}
