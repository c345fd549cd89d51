//! When keymgr made a key version, recorded on the token itself so that any process
//! (a rotator with a lost or different state directory, `keymgr keys status`) reads it.
//!
//! PKCS#11 has no creation time with a time of day: `CKA_START_DATE` is a `CK_DATE`
//! (year, month, day; PKCS#11 3.0 §4.4.1), too coarse to recover an overlap that is
//! counted from the rotation (a start at midnight would end it up to a day early). So
//! keymgr stores, next to each key pair it generates, a private token `CKO_DATA` object
//! with `CKA_APPLICATION` `keymgr`, `CKA_LABEL` `keymgr.created:<version label>` and
//! `CKA_VALUE` the creation time in milliseconds since the Unix epoch (decimal ASCII) —
//! the same kind of object as the disabled marker, which every token with token storage
//! keeps. Versions made outside keymgr, or whose record could not be written, report no
//! creation time.

use cryptoki::error::Error as CkError;
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

use crate::error;
use crate::keys::MARKER_APPLICATION;

/// `CKA_LABEL` prefix of the creation record of the key labelled with the rest.
pub(crate) const CREATED_PREFIX: &str = "keymgr.created:";

/// The creation records of `label` (normally none or one).
pub(crate) fn records(s: &Session, label: &str) -> Result<Vec<ObjectHandle>, CkError> {
    s.find_objects(&[
        Attribute::Class(ObjectClass::DATA),
        Attribute::Application(MARKER_APPLICATION.to_vec()),
        Attribute::Label(format!("{CREATED_PREFIX}{label}").into_bytes()),
    ])
}

/// Records that the key pair labelled `label` was made at `ms`. A failure is logged, not
/// returned: the key pair exists and is usable; only its creation time stays unknown.
pub(crate) fn record(s: &Session, label: &str, ms: u64) {
    let made = s.create_object(&[
        Attribute::Class(ObjectClass::DATA),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Application(MARKER_APPLICATION.to_vec()),
        Attribute::Label(format!("{CREATED_PREFIX}{label}").into_bytes()),
        Attribute::Value(ms.to_string().into_bytes()),
    ]);
    if let Err(e) = made {
        tracing::warn!(%label, "could not record the creation time of the HSM key version: {e}");
    }
}

/// When keymgr made the key pair labelled `label`, if it recorded it. Records that
/// disagree (two processes wrote one each) give the earliest time; an unreadable or
/// malformed record counts as none.
pub(crate) fn read(s: &Session, label: &str) -> Result<Option<u64>, CkError> {
    let mut earliest: Option<u64> = None;
    for h in records(s, label)? {
        let attrs = match s.get_attributes(h, &[AttributeType::Value]) {
            Ok(a) => a,
            Err(e) if error::is_stale_handle(&e) => continue,
            Err(e) => return Err(e),
        };
        for a in attrs {
            if let Attribute::Value(bytes) = a
                && let Some(ms) = parse(&bytes)
            {
                earliest = Some(earliest.map_or(ms, |t| t.min(ms)));
            }
        }
    }
    Ok(earliest)
}

fn parse(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 20 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_only_decimal_milliseconds() {
        assert_eq!(super::parse(b"1795430285123"), Some(1_795_430_285_123));
        assert_eq!(super::parse(b"0"), Some(0));
        for bad in [&b""[..], b"-1", b"12a", b" 12", b"99999999999999999999999"] {
            assert_eq!(super::parse(bad), None, "{bad:?}");
        }
    }
}
