//! Finding key pairs by label and learning what they are from their attributes.
//!
//! Keys made outside keymgr (pkcs11-tool, vendor tools, other applications) work as
//! long as their label is configured: nothing here assumes keymgr created them. The
//! algorithm comes from `CKA_KEY_TYPE` + `CKA_EC_PARAMS`, never from the label; the
//! public key from `CKA_EC_POINT` of the public key object (found by the same label,
//! or else by the private key's `CKA_ID`).

use cryptoki::error::Error as CkError;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use k256::pkcs8::der::asn1::{ObjectIdentifier, OctetStringRef, PrintableStringRef};
use k256::pkcs8::der::{Decode as _, Encode as _};
use keymgr_core::{Error, IntegrityReason, KeyAlgorithm, OID_ED25519, OID_SECP256K1, PublicKey};

use crate::error::BACKEND;
use crate::pool::Failure;

/// `CKA_APPLICATION` of keymgr's "disabled" marker objects.
pub(crate) const MARKER_APPLICATION: &[u8] = b"keymgr";
/// `CKA_LABEL` prefix of the marker that disables the key labelled with the rest.
pub(crate) const MARKER_PREFIX: &str = "keymgr.disabled:";

/// Why a key version may not sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disabled {
    /// `CKA_SIGN` is false on the private key.
    SignFalse,
    /// keymgr's marker object exists (tokens that refuse to change `CKA_SIGN`).
    Marker,
}

impl Disabled {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Disabled::SignFalse => "CKA_SIGN is false on its private key",
            Disabled::Marker => "keymgr's disabled-marker object exists for it",
        }
    }
}

/// A key pair as found on the token.
#[derive(Debug, Clone)]
pub(crate) struct FoundKey {
    pub label: String,
    pub private: ObjectHandle,
    pub public: PublicKey,
    /// `CKA_EC_PARAMS` as the token stores it (reused for new versions).
    pub ec_params: Vec<u8>,
    pub disabled: Option<Disabled>,
}

impl FoundKey {
    pub(crate) fn algorithm(&self) -> KeyAlgorithm {
        self.public.algorithm()
    }
}

/// Private keys labelled exactly `label`.
pub(crate) fn private_keys(s: &Session, label: &str) -> Result<Vec<ObjectHandle>, CkError> {
    s.find_objects(&[
        Attribute::Class(ObjectClass::PRIVATE_KEY),
        Attribute::Label(label.as_bytes().to_vec()),
    ])
}

/// Public keys labelled exactly `label`.
pub(crate) fn public_keys(s: &Session, label: &str) -> Result<Vec<ObjectHandle>, CkError> {
    s.find_objects(&[
        Attribute::Class(ObjectClass::PUBLIC_KEY),
        Attribute::Label(label.as_bytes().to_vec()),
    ])
}

/// keymgr's disabled-marker objects for `label`.
pub(crate) fn markers(s: &Session, label: &str) -> Result<Vec<ObjectHandle>, CkError> {
    s.find_objects(&[
        Attribute::Class(ObjectClass::DATA),
        Attribute::Application(MARKER_APPLICATION.to_vec()),
        Attribute::Label(format!("{MARKER_PREFIX}{label}").into_bytes()),
    ])
}

/// The error for two or more private (or public) keys under one label.
pub(crate) fn collision(key: &str, label: &str, count: usize, class: &str) -> Error {
    Error::config(
        format!("CKA_LABEL {label:?}"),
        "exactly one key pair per label",
        format!(
            "{count} {class} objects on the token carry the label of {key}; keymgr will not \
             guess which one to use: relabel or delete the extra ones"
        ),
    )
}

/// Looks `label` up: the private key (exactly one), its algorithm, public key and state.
/// `Ok(None)` when no private key carries the label.
pub(crate) fn find(s: &Session, key: &str, label: &str) -> Result<Option<FoundKey>, Failure> {
    let wrap = |e: CkError| Failure::Pkcs11(e, Some(label.to_owned()));
    let privs = private_keys(s, label).map_err(wrap)?;
    let private = match privs.as_slice() {
        [] => return Ok(None),
        [one] => *one,
        many => return Err(collision(key, label, many.len(), "private key").into()),
    };
    let attrs = s
        .get_attributes(
            private,
            &[
                AttributeType::KeyType,
                AttributeType::EcParams,
                AttributeType::Sign,
                AttributeType::Id,
            ],
        )
        .map_err(wrap)?;
    let mut key_type = None;
    let mut priv_params = None;
    let mut can_sign = true;
    let mut id = Vec::new();
    for a in attrs {
        match a {
            Attribute::KeyType(t) => key_type = Some(t),
            Attribute::EcParams(p) => priv_params = Some(p),
            Attribute::Sign(b) => can_sign = b,
            Attribute::Id(i) => id = i,
            _ => {}
        }
    }
    let key_type = key_type.ok_or_else(|| {
        Error::integrity_failure(
            key,
            IntegrityReason::MalformedResponse,
            format!("private key {label:?} has no CKA_KEY_TYPE"),
        )
    })?;
    if key_type != KeyType::EC && key_type != KeyType::EC_EDWARDS {
        return Err(Error::unsupported(
            BACKEND,
            "sign",
            format!(
                "key {key} (label {label:?}) is a {key_type} key; keymgr signs with EC \
                 (secp256k1) and EC_EDWARDS (Ed25519) keys only"
            ),
        )
        .into());
    }

    // The public key object: same label, else same CKA_ID (pkcs11-tool's convention).
    // Under the label, a public key whose CKA_ID names another pair is not this key's
    // (e.g. the orphan half of a generation that was killed): it is ignored.
    let mut pubs = public_keys(s, label).map_err(wrap)?;
    if !id.is_empty() && !pubs.is_empty() {
        let mut ids = Vec::with_capacity(pubs.len());
        for h in &pubs {
            ids.push((*h, id_of(s, *h).map_err(wrap)?));
        }
        let matching: Vec<ObjectHandle> = ids
            .iter()
            .filter(|(_, i)| *i == id)
            .map(|(h, _)| *h)
            .collect();
        pubs = if matching.is_empty() {
            ids.into_iter()
                .filter(|(_, i)| i.is_empty())
                .map(|(h, _)| h)
                .collect()
        } else {
            matching
        };
    }
    if pubs.len() > 1 {
        return Err(collision(key, label, pubs.len(), "public key").into());
    }
    if pubs.is_empty() && !id.is_empty() {
        pubs = s
            .find_objects(&[
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::Id(id.clone()),
            ])
            .map_err(wrap)?;
        if pubs.len() > 1 {
            return Err(collision(key, label, pubs.len(), "public key (by CKA_ID)").into());
        }
    }
    let Some(&public_handle) = pubs.first() else {
        return Err(Error::not_found(
            key,
            format!(
                "the private key labelled {label:?} has no public key object (looked up by \
                 CKA_LABEL and by CKA_ID {}); keymgr needs CKA_EC_POINT to verify signatures",
                hex::encode(&id)
            ),
        )
        .into());
    };
    let pub_attrs = s
        .get_attributes(
            public_handle,
            &[AttributeType::EcPoint, AttributeType::EcParams],
        )
        .map_err(wrap)?;
    let mut point = None;
    let mut pub_params = None;
    for a in pub_attrs {
        match a {
            Attribute::EcPoint(p) => point = Some(p),
            Attribute::EcParams(p) => pub_params = Some(p),
            _ => {}
        }
    }
    let ec_params = priv_params.or(pub_params).ok_or_else(|| {
        Error::integrity_failure(
            key,
            IntegrityReason::MalformedResponse,
            format!("neither key object labelled {label:?} has CKA_EC_PARAMS"),
        )
    })?;
    let algorithm = algorithm_of(key, label, key_type, &ec_params)?;
    let point = point.ok_or_else(|| {
        Error::integrity_failure(
            key,
            IntegrityReason::MalformedResponse,
            format!("public key {label:?} has no CKA_EC_POINT"),
        )
    })?;
    let public = parse_ec_point(&point, algorithm).map_err(|reason| {
        Error::integrity_failure(
            key,
            IntegrityReason::MalformedResponse,
            format!("CKA_EC_POINT of public key {label:?} is unusable: {reason}"),
        )
    })?;
    let disabled = if !can_sign {
        Some(Disabled::SignFalse)
    } else if !markers(s, label).map_err(wrap)?.is_empty() {
        Some(Disabled::Marker)
    } else {
        None
    };
    Ok(Some(FoundKey {
        label: label.to_owned(),
        private,
        public,
        ec_params,
        disabled,
    }))
}

/// `CKA_ID` of an object (empty when it has none).
fn id_of(s: &Session, h: ObjectHandle) -> Result<Vec<u8>, CkError> {
    Ok(s.get_attributes(h, &[AttributeType::Id])?
        .into_iter()
        .find_map(|a| match a {
            Attribute::Id(i) => Some(i),
            _ => None,
        })
        .unwrap_or_default())
}

/// A named curve from `CKA_EC_PARAMS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Curve {
    Oid(ObjectIdentifier),
    /// PKCS#11 3.0 also allows the curve's name as a PrintableString (SoftHSM2 stores
    /// `edwards25519` this way for keys pkcs11-tool generates).
    Name(String),
}

pub(crate) fn parse_ec_params(params: &[u8]) -> Result<Curve, String> {
    match params.first() {
        Some(0x06) => ObjectIdentifier::from_der(params)
            .map(Curve::Oid)
            .map_err(|e| format!("malformed curve OID: {e}")),
        Some(0x13) => PrintableStringRef::from_der(params)
            .map(|s| Curve::Name(s.as_str().to_owned()))
            .map_err(|e| format!("malformed curve name: {e}")),
        Some(0x30) => Err("explicit curve parameters are not supported; use a named curve".into()),
        Some(0x05) => Err("implicitlyCA (NULL) curve parameters are not supported".into()),
        _ => Err(format!(
            "not a DER named curve (first byte {:?})",
            params.first()
        )),
    }
}

fn curve_display(curve: &Curve) -> String {
    match curve {
        Curve::Name(n) => format!("{n:?}"),
        Curve::Oid(oid) => {
            let name = match oid.to_string().as_str() {
                "1.2.840.10045.3.1.7" => " (prime256v1 / NIST P-256)",
                "1.3.132.0.34" => " (secp384r1 / NIST P-384)",
                "1.3.132.0.35" => " (secp521r1 / NIST P-521)",
                "1.3.101.113" => " (Ed448)",
                "1.3.101.110" => " (X25519)",
                "1.3.101.111" => " (X448)",
                "1.3.36.3.3.2.8.1.1.7" => " (brainpoolP256r1)",
                "1.3.132.0.10" => " (secp256k1)",
                "1.3.101.112" => " (Ed25519)",
                _ => "",
            };
            format!("{oid}{name}")
        }
    }
}

fn is_ed25519(curve: &Curve) -> bool {
    match curve {
        Curve::Oid(oid) => *oid == OID_ED25519,
        Curve::Name(n) => {
            n.eq_ignore_ascii_case("edwards25519") || n.eq_ignore_ascii_case("ed25519")
        }
    }
}

/// The algorithm from `CKA_KEY_TYPE` and `CKA_EC_PARAMS`; any other curve is an
/// `Unsupported` error naming it.
pub(crate) fn algorithm_of(
    key: &str,
    label: &str,
    key_type: KeyType,
    params: &[u8],
) -> Result<KeyAlgorithm, Error> {
    let curve = parse_ec_params(params).map_err(|reason| {
        Error::unsupported(
            BACKEND,
            "sign",
            format!("key {key} (label {label:?}): CKA_EC_PARAMS: {reason}"),
        )
    })?;
    if key_type == KeyType::EC && curve == Curve::Oid(OID_SECP256K1) {
        return Ok(KeyAlgorithm::Secp256k1);
    }
    if key_type == KeyType::EC_EDWARDS && is_ed25519(&curve) {
        return Ok(KeyAlgorithm::Ed25519);
    }
    Err(Error::unsupported(
        BACKEND,
        "sign",
        format!(
            "key {key} (label {label:?}) is a {key_type} key on curve {}; keymgr supports \
             secp256k1 (1.3.132.0.10) EC keys and Ed25519 (1.3.101.112 or \"edwards25519\") \
             EC_EDWARDS keys",
            curve_display(&curve)
        ),
    ))
}

/// `CKA_EC_POINT`: a DER OCTET STRING around the SEC1 point or the 32-byte Ed25519 key;
/// some modules return the bare point, which is accepted when its length fits.
pub(crate) fn parse_ec_point(bytes: &[u8], algorithm: KeyAlgorithm) -> Result<PublicKey, String> {
    let fits = |b: &[u8]| match algorithm {
        KeyAlgorithm::Secp256k1 => matches!(b.len(), 33 | 65),
        _ => b.len() == 32,
    };
    let inner = OctetStringRef::from_der(bytes)
        .ok()
        .map(|o| o.as_bytes())
        .filter(|b| fits(b));
    let point = match inner {
        Some(b) => b,
        None if fits(bytes) => bytes,
        None => {
            return Err(format!(
                "{} bytes are neither a DER OCTET STRING around a {algorithm} public key nor \
                 the bare key",
                bytes.len()
            ));
        }
    };
    let parsed = match algorithm {
        KeyAlgorithm::Secp256k1 => PublicKey::from_sec1(point),
        _ => PublicKey::from_ed25519_bytes(point),
    };
    parsed.map_err(|e| e.to_string())
}

/// DER `CKA_EC_PARAMS` for keys keymgr generates from scratch.
pub(crate) fn named_curve_params(algorithm: KeyAlgorithm) -> Vec<Vec<u8>> {
    let oid = |oid: ObjectIdentifier| oid.to_der().unwrap_or_default();
    match algorithm {
        KeyAlgorithm::Secp256k1 => vec![oid(OID_SECP256K1)],
        // RFC 8410 OID first; the PrintableString form for modules that only know that.
        _ => vec![
            oid(OID_ED25519),
            PrintableStringRef::new("edwards25519")
                .and_then(|s| s.to_der())
                .unwrap_or_default(),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ec_params_forms() {
        // As measured on SoftHSM 2.6.1: secp256k1 OID, edwards25519 PrintableString.
        let secp = hex::decode("06052b8104000a").unwrap();
        let ed_name = hex::decode("130c656477617264733235353139").unwrap();
        let ed_oid = hex::decode("06032b6570").unwrap();
        let p256 = hex::decode("06082a8648ce3d030107").unwrap();
        assert_eq!(
            algorithm_of("k", "l", KeyType::EC, &secp).unwrap(),
            KeyAlgorithm::Secp256k1
        );
        for p in [&ed_name, &ed_oid] {
            assert_eq!(
                algorithm_of("k", "l", KeyType::EC_EDWARDS, p).unwrap(),
                KeyAlgorithm::Ed25519
            );
        }
        let e = algorithm_of("evm", "evm-hsm", KeyType::EC, &p256).unwrap_err();
        assert_eq!(e.kind(), keymgr_core::ErrorKind::Unsupported);
        let s = e.to_string();
        assert!(
            s.contains("1.2.840.10045.3.1.7") && s.contains("P-256") && s.contains("evm-hsm"),
            "{s}"
        );
        // Key type and curve must agree.
        assert!(algorithm_of("k", "l", KeyType::EC_EDWARDS, &secp).is_err());
        assert!(algorithm_of("k", "l", KeyType::EC, &ed_oid).is_err());
        assert!(algorithm_of("k", "l", KeyType::EC, &[0x30, 0x00]).is_err());
        assert!(algorithm_of("k", "l", KeyType::EC, &[]).is_err());
        assert_eq!(named_curve_params(KeyAlgorithm::Secp256k1), vec![secp]);
        assert_eq!(
            named_curve_params(KeyAlgorithm::Ed25519),
            vec![ed_oid, ed_name]
        );
    }

    #[test]
    fn ec_point_forms() {
        // SoftHSM 2.6.1 output for a pkcs11-tool secp256k1 and edwards25519 key.
        let secp = hex::decode("0441045962ac52f1e494be7a83de7653485f4412600baba0e332fe10afe466561c6e3fb8bd2481bf26785257ac24fb721fec5f9ff394fbe197e6423841a5bd9f09b575").unwrap();
        let ed =
            hex::decode("042023eb00ace4c4a2390efb9100c738c918f0d1cea1114faf646fc38dd4c3b9fdeb")
                .unwrap();
        let pk = parse_ec_point(&secp, KeyAlgorithm::Secp256k1).unwrap();
        assert_eq!(pk.to_uncompressed().unwrap().as_slice(), &secp[2..]);
        // Bare point accepted too.
        assert_eq!(
            parse_ec_point(&secp[2..], KeyAlgorithm::Secp256k1).unwrap(),
            pk
        );
        let pk = parse_ec_point(&ed, KeyAlgorithm::Ed25519).unwrap();
        assert_eq!(pk.to_bytes(), ed[2..].to_vec());
        assert_eq!(parse_ec_point(&ed[2..], KeyAlgorithm::Ed25519).unwrap(), pk);
        // Wrong lengths and garbage.
        assert!(parse_ec_point(&ed, KeyAlgorithm::Secp256k1).is_err());
        assert!(parse_ec_point(&secp[..40], KeyAlgorithm::Secp256k1).is_err());
        assert!(parse_ec_point(&[], KeyAlgorithm::Ed25519).is_err());
        // A 32-byte Ed25519 key that happens to look like a DER header is still read raw.
        let mut tricky = ed[2..].to_vec();
        tricky[0] = 0x04;
        tricky[1] = 0x1e;
        if let Ok(pk) = parse_ec_point(&tricky, KeyAlgorithm::Ed25519) {
            assert_eq!(pk.to_bytes(), tricky);
        }
    }
}
