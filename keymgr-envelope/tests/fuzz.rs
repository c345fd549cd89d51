//! Property tests of the parser: random and mutated messages never panic and always
//! fail with a typed error (or, for untouched bytes, decrypt). CI runs a bounded number
//! of cases; `cargo xtask fuzz CASES` runs many more (KEYMGR_FUZZ_CASES).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, OnceLock};

use keymgr_envelope::{Decryptor, Encryptor, EnvelopeError, MaterialsProvider};
use proptest::prelude::*;
use support::*;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    decryptor: Decryptor,
    message: Vec<u8>,
    plaintext: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let keyring: Arc<dyn MaterialsProvider> = multi(&[
            raw_keyring("ns", "kek-1", &[8; 32]),
            raw_keyring("ns", "kek-2", &[9; 32]),
        ]);
        let plaintext: Vec<u8> = (0..700).map(|i| (i % 256) as u8).collect();
        let message = runtime.block_on(async {
            Encryptor::new(keyring.clone())
                .frame_length(256)
                .unwrap()
                .encrypt(&plaintext, &context(&[("a", "1"), ("purpose", "fuzz")]))
                .await
                .unwrap()
        });
        Fixture {
            runtime,
            decryptor: Decryptor::new(keyring),
            message,
            plaintext,
        }
    })
}

/// Decrypts in memory and streamed; both must agree and never panic.
fn check(message: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    let f = fixture();
    f.runtime.block_on(async {
        let in_memory = f.decryptor.decrypt(message).await;
        let mut out = Vec::new();
        let streamed = f
            .decryptor
            .decrypt_stream(&mut &message[..], &mut out)
            .await;
        match (&in_memory, &streamed) {
            (Ok(d), Ok(_)) => assert_eq!(d.plaintext, out),
            (Err(a), Err(b)) => assert_eq!(format!("{a:?}"), format!("{b:?}")),
            _ => panic!("in-memory {in_memory:?} vs streamed {streamed:?}"),
        }
        in_memory.map(|d| d.plaintext)
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    Overwrite(usize, Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(i, x)| Mutation::Flip(i, x)),
        any::<usize>().prop_map(Mutation::Truncate),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..40)
        )
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<usize>(), 1usize..300).prop_map(|(i, n)| Mutation::Remove(i, n)),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, b)| Mutation::Overwrite(i, b)),
    ]
}

fn apply(message: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut m = message.to_vec();
    for mutation in mutations {
        let len = m.len().max(1);
        match mutation {
            Mutation::Flip(i, x) => {
                if !m.is_empty() {
                    m[i % len] ^= x;
                }
            }
            Mutation::Truncate(i) => m.truncate(i % len),
            Mutation::Insert(i, b) => {
                let at = i % (m.len() + 1);
                m.splice(at..at, b.iter().copied());
            }
            Mutation::Remove(i, n) => {
                let at = i % len;
                let end = (at + n).min(m.len());
                if at < end {
                    m.drain(at..end);
                }
            }
            Mutation::Overwrite(i, b) => {
                for (k, x) in b.iter().enumerate() {
                    if let Some(slot) = m.get_mut((i + k) % len) {
                        *slot = *x;
                    }
                }
            }
        }
    }
    m
}

/// Cases per property: `KEYMGR_FUZZ_CASES`, or 2000 (a second or two in CI).
fn config() -> ProptestConfig {
    let cases = std::env::var("KEYMGR_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]
    #[test]
    fn mutated_messages_fail_typed(mutations in proptest::collection::vec(mutation(), 1..4)) {
        let f = fixture();
        let m = apply(&f.message, &mutations);
        match check(&m) {
            // A mutation can cancel out (flip then flip back): then it must decrypt right.
            Ok(plaintext) => {
                prop_assert_eq!(&m, &f.message);
                prop_assert_eq!(plaintext, f.plaintext.clone());
            }
            Err(e) => prop_assert!(!matches!(e, EnvelopeError::Io(_)), "{e:?}"),
        }
    }

    #[test]
    fn random_bytes_fail_typed(bytes in proptest::collection::vec(any::<u8>(), 0..600), keep in 0usize..300) {
        // Random tails after a valid prefix reach deeper than fully random input.
        let f = fixture();
        let mut m = f.message[..keep.min(f.message.len())].to_vec();
        m.extend_from_slice(&bytes);
        if m != f.message {
            prop_assert!(check(&m).is_err());
        }
    }
}
