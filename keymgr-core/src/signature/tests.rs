//! Parsing, normalization and verification tests for signatures and public keys.

use super::*;
use crate::PublicKey;
use crate::{IntegrityReason, finish_recoverable, finish_signature, verify_recoverable};
use k256::ecdsa::SigningKey;
use k256::elliptic_curve::scalar::IsHigh as _;
use k256::pkcs8::EncodePublicKey as _;
use proptest::prelude::*;

fn secp_key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed.max(1); 32].into()).unwrap()
}

#[test]
fn high_s_der_is_normalized() {
    let sk = secp_key(7);
    let h = [0x42u8; 32];
    let (sig, _) = sk.sign_prehash_recoverable(&h).unwrap();
    let low = sig.normalize_s().unwrap_or(sig);
    // Build the high-s twin: s' = n - s.
    let high = k256::ecdsa::Signature::from_scalars(low.r(), -*low.s()).unwrap();
    assert!(bool::from(high.s().is_high()));
    let parsed = Secp256k1Signature::from_der(high.to_der().as_bytes()).unwrap();
    assert_eq!(parsed.as_k256(), &low);
    let parsed_raw = Secp256k1Signature::from_raw(&high.to_bytes()).unwrap();
    assert_eq!(parsed_raw.as_k256(), &low);
    let pk = PublicKey::Secp256k1(*sk.verifying_key());
    finish_signature(
        "k",
        &pk,
        &SignPayload::Prehash(h),
        RawSignature::EcdsaDer(high.to_der().as_bytes()),
    )
    .unwrap();
}

#[test]
fn malformed_der_is_typed_error() {
    for bad in [&[][..], &[0x30], &[0x30, 0x02, 0x02, 0x00], &[0xff; 72]] {
        let e = Secp256k1Signature::from_der(bad).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidInput);
    }
    assert!(Secp256k1Signature::from_raw(&[0u8; 64]).is_err());
    assert!(Secp256k1Signature::from_raw(&[1u8; 63]).is_err());
}

#[test]
fn spki_round_trip_and_wrong_curve() {
    let sk = secp_key(3);
    let der = sk.verifying_key().to_public_key_der().unwrap();
    let pk = PublicKey::from_spki_der(der.as_bytes()).unwrap();
    assert_eq!(pk.as_secp256k1(), Some(sk.verifying_key()));
    assert_eq!(pk.to_spki_der().unwrap(), der.as_bytes());
    let pem = sk
        .verifying_key()
        .to_public_key_pem(Default::default())
        .unwrap();
    assert_eq!(PublicKey::from_spki_pem(&pem).unwrap(), pk);

    let ed = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let der = ed.verifying_key().to_public_key_der().unwrap();
    let pk = PublicKey::from_spki_der(der.as_bytes()).unwrap();
    assert_eq!(pk.algorithm(), KeyAlgorithm::Ed25519);
    assert_eq!(pk.to_spki_der().unwrap(), der.as_bytes());
    assert_eq!(
        (der.as_bytes().len(), pk.to_spki_der().unwrap().len()),
        (44, 44)
    );

    // A P-256 SPKI (RFC 5480 structure, prime256v1 OID).
    let p256 = hex::decode(concat!(
        "3059301306072a8648ce3d020106082a8648ce3d03010703420004",
        "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296",
        "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5"
    ))
    .unwrap();
    let e = PublicKey::from_spki_der(&p256).unwrap_err();
    assert!(e.to_string().contains("1.2.840.10045.3.1.7"), "{e}");
    assert!(e.to_string().contains("P-256"), "{e}");
}

#[test]
fn evm_address_known_answer() {
    // The private key and address from web3.js's `eth.accounts` documentation.
    let sk = k256::ecdsa::SigningKey::from_slice(
        &hex::decode("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318").unwrap(),
    )
    .unwrap();
    let pk = PublicKey::Secp256k1(*sk.verifying_key());
    assert_eq!(
        pk.evm_address().as_deref(),
        Some("0x2c7536E3605D9C16a7a3D7b1898e529396a65c23")
    );
    let ed = PublicKey::from_ed25519_bytes(&[
        0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64, 0x07,
        0x3a, 0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07,
        0x51, 0x1a,
    ])
    .unwrap();
    assert_eq!(ed.evm_address(), None);
}

#[test]
fn truncated_inputs_are_errors() {
    let sk = secp_key(5);
    let der = sk.verifying_key().to_public_key_der().unwrap();
    let der = der.as_bytes();
    for n in 0..der.len() {
        assert!(PublicKey::from_spki_der(&der[..n]).is_err());
    }
    for compressed in [true, false] {
        let sec1 = sk.verifying_key().to_encoded_point(compressed);
        let sec1 = sec1.as_bytes();
        assert!(PublicKey::from_sec1(sec1).is_ok());
        for n in 0..sec1.len() {
            assert!(PublicKey::from_sec1(&sec1[..n]).is_err(), "{n} bytes");
        }
    }
    assert!(PublicKey::from_sec1(&[4; 10]).is_err());
    assert!(PublicKey::from_ed25519_bytes(&[0; 31]).is_err());
    assert!(PublicKey::from_spki_pem("not pem").is_err());
}

#[test]
fn payload_algorithm_mismatch() {
    let e = SignPayload::message(b"hi".to_vec())
        .check_algorithm(KeyAlgorithm::Secp256k1, "evm")
        .unwrap_err();
    assert!(e.to_string().contains("evm") && e.to_string().contains("prehash"));
    assert!(
        SignPayload::Prehash([0; 32])
            .check_algorithm(KeyAlgorithm::Ed25519, "xrp")
            .is_err()
    );
    assert!(SignPayload::prehash(&[0; 31]).is_err());
}

#[test]
fn wrong_key_is_integrity_error() {
    let sk = secp_key(1);
    let other = PublicKey::Secp256k1(*secp_key(2).verifying_key());
    let h = [7u8; 32];
    let (sig, _) = sk.sign_prehash_recoverable(&h).unwrap();
    let e = finish_signature(
        "evm",
        &other,
        &SignPayload::Prehash(h),
        RawSignature::EcdsaRaw(&sig.to_bytes()),
    )
    .unwrap_err();
    assert_eq!(e.integrity_reason(), Some(IntegrityReason::DoesNotVerify));
    assert!(matches!(&e, Error::Integrity { key, .. } if key == "evm"));
    // A flipped recovery id from an in-process signer is a fault, not a signature.
    let (sig, rid) = sk.sign_prehash_recoverable(&h).unwrap();
    let own = PublicKey::Secp256k1(*sk.verifying_key());
    let flipped = k256::ecdsa::RecoveryId::new(!rid.is_y_odd(), rid.is_x_reduced());
    let e = finish_recoverable("evm", &own, &h, sig, flipped).unwrap_err();
    assert_eq!(e.integrity_reason(), Some(IntegrityReason::DoesNotVerify));
    // Garbage and the wrong algorithm have their own reasons, with the cause kept.
    let e = finish_signature(
        "evm",
        &own,
        &SignPayload::Prehash(h),
        RawSignature::EcdsaDer(&[0x30, 1]),
    )
    .unwrap_err();
    assert_eq!(
        e.integrity_reason(),
        Some(IntegrityReason::MalformedResponse)
    );
    assert!(std::error::Error::source(&e).is_some());
    let e = finish_signature(
        "evm",
        &own,
        &SignPayload::Prehash(h),
        RawSignature::Ed25519(&[1; 64]),
    )
    .unwrap_err();
    assert_eq!(
        e.integrity_reason(),
        Some(IntegrityReason::AlgorithmMismatch)
    );
    // A verified signature is bound to its payload.
    let ok = finish_recoverable("evm", &own, &h, sig, rid).unwrap();
    assert!(ok.is_over(&SignPayload::Prehash(h)));
    assert!(!ok.is_over(&SignPayload::Prehash([8; 32])));
    assert!(!ok.is_over(&SignPayload::message(h.to_vec())));
    let ed = PublicKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[1; 32]).verifying_key());
    let e = finish_signature(
        "xrp",
        &ed,
        &SignPayload::message(vec![1]),
        RawSignature::Ed25519(&[0; 64]),
    )
    .unwrap_err();
    assert_eq!(e.integrity_reason(), Some(IntegrityReason::DoesNotVerify));
}

proptest! {
    #[test]
    fn secp_sign_verify_der_round_trip(seed in any::<[u8; 32]>(), h in any::<[u8; 32]>()) {
        let Ok(sk) = SigningKey::from_bytes(&seed.into()) else { return Ok(()) };
        let (sig, _) = sk.sign_prehash_recoverable(&h).unwrap();
        let pk = PublicKey::Secp256k1(*sk.verifying_key());
        let verified = finish_signature("k", &pk, &SignPayload::Prehash(h), RawSignature::EcdsaDer(sig.to_der().as_bytes())).unwrap();
        let s = *verified.as_secp256k1().unwrap();
        prop_assert!(!bool::from(s.as_k256().s().is_high()));
        prop_assert_eq!(Secp256k1Signature::from_der(&s.to_der()).unwrap(), s);
        let rid = verified.recovery_id().unwrap();
        prop_assert_eq!(Some(rid), verify_recoverable(sk.verifying_key(), &h, s.as_k256()));
        let rec = k256::ecdsa::VerifyingKey::recover_from_prehash(&h, s.as_k256(), rid).unwrap();
        prop_assert_eq!(&rec, sk.verifying_key());
        // The in-process path keeps signing's recovery id, which must agree.
        let (sig2, rid2) = sk.sign_prehash_recoverable(&h).unwrap();
        let local = finish_recoverable("k", &pk, &h, sig2, rid2).unwrap();
        prop_assert_eq!(local.recovery_id(), Some(rid));
        prop_assert!(local.is_over(&SignPayload::Prehash(h)));
    }

    /// libsecp256k1 recovery and k256's double-scalar verification agree on validity and
    /// recovery id, for signatures as made and with one bit flipped anywhere.
    #[test]
    fn recovery_agrees_with_double_scalar(seed in any::<[u8; 32]>(), h in any::<[u8; 32]>(), bit in 0usize..(96 * 8)) {
        let Ok(sk) = SigningKey::from_bytes(&seed.into()) else { return Ok(()) };
        let (sig, rid) = sk.sign_prehash_recoverable(&h).unwrap();
        let (sig, rid) = match sig.normalize_s() {
            Some(low) => (low, k256::ecdsa::RecoveryId::new(!rid.is_y_odd(), false)),
            None => (sig, rid),
        };
        let vk = sk.verifying_key();
        prop_assert_eq!(verify_recoverable(vk, &h, &sig), Some(rid));
        prop_assert_eq!(crate::verified::verify_double_scalar(vk, &h, &sig), Some(rid));
        let mut bytes = [&sig.to_bytes()[..], h.as_slice()].concat();
        bytes[bit / 8] ^= 1 << (bit % 8);
        let h2: [u8; 32] = bytes[64..].try_into().unwrap();
        if let Ok(sig2) = k256::ecdsa::Signature::from_slice(&bytes[..64]) {
            let low = !bool::from(sig2.s().is_high());
            let fast = verify_recoverable(vk, &h2, &sig2);
            prop_assert_eq!(fast, crate::verified::verify_double_scalar(vk, &h2, &sig2).filter(|_| low));
            prop_assert_eq!(fast, None);
        }
    }

    #[test]
    fn ed25519_sign_verify(seed in any::<[u8; 32]>(), msg in proptest::collection::vec(any::<u8>(), 0..256)) {
        use ed25519_dalek::Signer as _;
        let sk = ed25519_dalek::SigningKey::from_bytes(&seed);
        let sig = sk.sign(&msg);
        let pk = PublicKey::Ed25519(sk.verifying_key());
        let p = SignPayload::message(msg.clone());
        finish_signature("k", &pk, &p, RawSignature::Ed25519(&sig.to_bytes())).unwrap();
        let mut tampered = msg.clone();
        tampered.push(0);
        prop_assert!(finish_signature("k", &pk, &SignPayload::message(tampered), RawSignature::Ed25519(&sig.to_bytes())).is_err());
    }

    #[test]
    fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
        let _ = PublicKey::from_spki_der(&bytes);
        let _ = PublicKey::from_sec1(&bytes);
        let _ = Secp256k1Signature::from_der(&bytes);
        let _ = Secp256k1Signature::from_raw(&bytes);
    }
}
