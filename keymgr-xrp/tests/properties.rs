//! Property tests: sign → verify for random channels and amounts on both algorithms,
//! tampering always fails, and no input makes a parser or verifier panic.

// Test helpers panic to fail the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, OnceLock};

use keymgr_env::EnvBackend;
use keymgr_xrp::{
    ChannelId, ClaimSigner, Drops, MAX_DROPS, XrplPublicKey, encode_claim, try_verify_claim,
    verify_claim,
};
use proptest::prelude::*;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    ed: ClaimSigner<Arc<EnvBackend>>,
    secp: ClaimSigner<Arc<EnvBackend>>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let backend: Arc<EnvBackend> = Arc::new(EnvBackend::generate());
        let (ed, secp) = runtime.block_on(async {
            let ed = ClaimSigner::builder(backend.clone(), keymgr_env::DEFAULT_XRP_KEY)
                .monotonic_guard(false)
                .build()
                .await
                .unwrap();
            let secp = ClaimSigner::builder(backend, keymgr_env::DEFAULT_EVM_KEY)
                .monotonic_guard(false)
                .build()
                .await
                .unwrap();
            (ed, secp)
        });
        Fixture { runtime, ed, secp }
    })
}

fn amount() -> impl Strategy<Value = u64> {
    prop_oneof![Just(1u64), Just(MAX_DROPS), 1..=MAX_DROPS]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn sign_verify_round_trip(
        channel in any::<[u8; 32]>(),
        amount in amount(),
        secp in any::<bool>(),
        lower in any::<bool>(),
        delta in 1..=1000u64,
        flip in any::<(usize, u8)>(),
    ) {
        let f = fixture();
        let signer = if secp { &f.secp } else { &f.ed };
        let hex_channel = if lower { hex::encode(channel) } else { hex::encode_upper(channel) };
        let sig = f.runtime.block_on(signer.sign_claim(hex_channel.as_str(), amount)).unwrap();
        let pk = signer.public_key().to_string();
        prop_assert!(verify_claim(hex_channel.as_str(), amount, &sig, &pk));
        prop_assert!(verify_claim(ChannelId::from_bytes(channel), amount, &sig, &signer.public_key().to_base58()));

        // Another amount fails.
        let other = if amount > delta { amount - delta } else { amount + delta };
        prop_assert!(!verify_claim(hex_channel.as_str(), other, &sig, &pk));

        // Another channel fails.
        let mut ch2 = channel;
        ch2[flip.0 % 32] ^= flip.1 | 1;
        prop_assert!(!verify_claim(ChannelId::from_bytes(ch2), amount, &sig, &pk));

        // A changed signature byte fails (or is malformed), never verifies.
        let mut bytes = hex::decode(&sig).unwrap();
        let i = flip.0 % bytes.len();
        bytes[i] ^= flip.1 | 1;
        prop_assert!(!verify_claim(hex_channel.as_str(), amount, &hex::encode(&bytes), &pk));

        // The other algorithm's key rejects it.
        let other_key = if secp { &f.ed } else { &f.secp }.public_key().to_string();
        prop_assert!(!verify_claim(hex_channel.as_str(), amount, &sig, &other_key));
    }

    #[test]
    fn encoding_layout(channel in any::<[u8; 32]>(), amount in amount()) {
        let bytes = encode_claim(&ChannelId::from_bytes(channel), Drops::new(amount).unwrap());
        prop_assert_eq!(&bytes[..4], b"CLM\0");
        prop_assert_eq!(&bytes[4..36], &channel[..]);
        prop_assert_eq!(u64::from_be_bytes(bytes[36..].try_into().unwrap()), amount);
        let parsed = ChannelId::from_hex(&hex::encode(channel)).unwrap();
        prop_assert_eq!(parsed.as_bytes(), &channel);
        prop_assert_eq!(Drops::parse(&amount.to_string()).unwrap().get(), amount);
    }

    #[test]
    fn amount_range(n in any::<u64>()) {
        let ok = (1..=MAX_DROPS).contains(&n);
        prop_assert_eq!(Drops::new(n).is_ok(), ok);
        prop_assert_eq!(Drops::parse(&n.to_string()).is_ok(), ok);
        if let Err(e) = Drops::parse(&n.to_string()) {
            prop_assert_eq!(e.field(), Some("amount"));
        }
    }

    #[test]
    fn arbitrary_strings_never_panic(
        channel in ".{0,80}",
        amount in ".{0,25}",
        signature in ".{0,160}",
        public_key in ".{0,70}",
    ) {
        match try_verify_claim(channel.as_str(), amount.as_str(), &signature, &public_key) {
            Ok(_) => {}
            Err(e) => prop_assert!(e.field().is_some(), "{e}"),
        }
        let _ = ChannelId::from_hex(&channel);
        let _ = Drops::parse(&amount);
        let _ = XrplPublicKey::parse(&public_key);
    }

    #[test]
    fn hex_shaped_garbage_never_panics(
        channel in "[0-9a-fA-F]{60,68}",
        signature in "[0-9a-fA-F]{0,150}",
        public_key in "(ED|ed|02|03|04)[0-9a-fA-F]{60,68}",
        amount in any::<u64>(),
    ) {
        if let Err(e) = try_verify_claim(channel.as_str(), amount, &signature, &public_key) {
            prop_assert!(e.field().is_some(), "{e}");
        }
    }

    #[test]
    fn malformed_claim_inputs_are_typed_errors(channel in ".{0,80}", amount in ".{0,25}") {
        let f = fixture();
        match f.runtime.block_on(f.ed.sign_claim(channel.as_str(), amount.as_str())) {
            Ok(sig) => prop_assert!(verify_claim(channel.as_str(), amount.as_str(), &sig, &f.ed.public_key().to_string())),
            Err(e) => prop_assert!(matches!(e.field(), Some("channel" | "amount")), "{e}"),
        }
    }
}
