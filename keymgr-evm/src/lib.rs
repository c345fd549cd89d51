#![doc = include_str!("../README.md")]

pub mod payment_channel;
mod signer;

pub use signer::{AddressChange, EvmSigner, TransactionRequest};

/// The keymgr error inside an alloy signer error, if that is what it carries.
///
/// [`EvmSigner`]'s alloy trait methods wrap keymgr failures in
/// [`alloy_signer::Error::Other`]; this finds them again, anywhere in the source chain.
pub fn keymgr_error(error: &alloy_signer::Error) -> Option<&keymgr_core::Error> {
    // `Other` is `#[error(transparent)]`: its `source()` skips the boxed error itself.
    let mut current: Option<&(dyn std::error::Error + 'static)> = match error {
        alloy_signer::Error::Other(inner) => Some(&**inner),
        other => Some(other),
    };
    while let Some(e) = current {
        if let Some(k) = e.downcast_ref::<keymgr_core::Error>() {
            return Some(k);
        }
        current = e.source();
    }
    None
}
