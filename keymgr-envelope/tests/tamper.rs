//! Every malformed, truncated or tampered message is a typed error, in memory and
//! streamed: header fields, encrypted data keys, the commitment, the header tag, frame
//! sequence numbers, IVs, content and tags, the final-frame marker and length,
//! truncation at every byte, trailing bytes, and the required encryption context.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use keymgr_core::ErrorKind;
use keymgr_envelope::{
    DecryptOptions, Decryptor, Encryptor, EnvelopeError, Field, Limit, MaterialsProvider,
    RawAesKeyring,
};
use support::*;

const FRAME: u32 = 100;
const LEN: usize = 250; // frames of 100, 100 and a final 50

struct Fixture {
    keyring: Arc<dyn MaterialsProvider>,
    message: Vec<u8>,
    /// Header body + tag length: where frame 1 starts.
    body_start: usize,
}

async fn fixture() -> Fixture {
    let keyring: Arc<dyn MaterialsProvider> = multi(&[raw_keyring("ns", "kek", &[1; 32])]);
    let plaintext: Vec<u8> = (0..LEN).map(|i| i as u8).collect();
    let message = Encryptor::new(keyring.clone())
        .frame_length(FRAME)
        .unwrap()
        .encrypt(&plaintext, &context(&[("a", "1"), ("b", "2")]))
        .await
        .unwrap();
    let decrypted = Decryptor::new(keyring.clone())
        .decrypt(&message)
        .await
        .unwrap();
    assert_eq!(decrypted.plaintext, plaintext);
    let body_start = decrypted.header.to_bytes().unwrap().len() + 16;
    Fixture {
        keyring,
        message,
        body_start,
    }
}

impl Fixture {
    /// Decrypts `message` in memory and streamed; both must fail the same way.
    async fn fail(&self, message: &[u8]) -> EnvelopeError {
        let decryptor = Decryptor::new(self.keyring.clone());
        let in_memory = decryptor.decrypt(message).await.unwrap_err();
        let mut out = Vec::new();
        let streamed = decryptor
            .decrypt_stream(&mut &message[..], &mut out)
            .await
            .unwrap_err();
        assert_eq!(
            format!("{in_memory:?}"),
            format!("{streamed:?}"),
            "in-memory and streamed decryption disagree"
        );
        in_memory
    }

    async fn flip(&self, at: usize) -> EnvelopeError {
        let mut m = self.message.clone();
        m[at] ^= 0x01;
        self.fail(&m).await
    }

    /// Offset of frame `n` (1-based; regular frames are 4 + 12 + 100 + 16 bytes).
    fn frame(&self, n: usize) -> usize {
        self.body_start + (n - 1) * (4 + 12 + FRAME as usize + 16)
    }
}

#[tokio::test]
async fn header_fields() {
    let f = fixture().await;
    assert!(matches!(
        f.flip(0).await,
        EnvelopeError::UnsupportedVersion(3)
    ));
    assert!(matches!(
        f.flip(2).await,
        EnvelopeError::UnsupportedAlgorithm(0x0479)
    ));
    // Message id (the HKDF salt): the commitment no longer matches.
    assert!(matches!(f.flip(10).await, EnvelopeError::Commitment));
    // AAD length 1 longer: the context runs into the data key count.
    let e = f.flip(36).await;
    assert!(
        matches!(
            e,
            EnvelopeError::Malformed {
                field: Field::EncryptionContext,
                ..
            }
        ),
        "{e:?}"
    );
    // A context value: the raw keyring's wrapping (AAD = context) no longer opens.
    let value_at = 35 + 2 + 2 + 2 + 1 + 2; // "a" = "1": the byte '1'
    assert_eq!(f.message[value_at], b'1');
    match f.flip(value_at).await {
        EnvelopeError::NoDecryptableKey { attempts, .. } => {
            assert_eq!(attempts.len(), 1);
            assert_eq!(attempts[0].error.kind(), ErrorKind::Integrity);
        }
        other => panic!("{other:?}"),
    }
    let header_end = f.body_start - 16;
    // Commitment key (the last 32 header bytes).
    assert!(matches!(
        f.flip(header_end - 1).await,
        EnvelopeError::Commitment
    ));
    // Frame length (the 4 bytes before it): authenticated by the header tag.
    assert!(matches!(
        f.flip(header_end - 33).await,
        EnvelopeError::HeaderAuthentication
    ));
    // Content type.
    let e = f.flip(header_end - 37).await;
    assert!(
        matches!(
            e,
            EnvelopeError::UnsupportedContentType(3)
                | EnvelopeError::Malformed {
                    field: Field::ContentType,
                    ..
                }
        ),
        "{e:?}"
    );
    // Header authentication tag.
    assert!(matches!(
        f.flip(f.body_start - 1).await,
        EnvelopeError::HeaderAuthentication
    ));
}

#[tokio::test]
async fn encrypted_data_keys() {
    let f = fixture().await;
    // Layout after the context (2 + 14 bytes from offset 35): count (2), provider id
    // "ns" (2 + 2), provider info "kek" ‖ 128 ‖ 12 ‖ IV (2 + 23), ciphertext (2 + 48).
    let edk = 35 + 2 + 14;
    let e = f.flip(edk + 1).await; // count 1 -> 0
    assert!(
        matches!(
            e,
            EnvelopeError::Malformed {
                field: Field::EncryptedDataKeyCount,
                ..
            }
        ),
        "{e:?}"
    );
    for (what, at) in [
        ("provider id", edk + 2 + 2),
        ("key name", edk + 6 + 2),
        ("tag bits", edk + 6 + 2 + 6),
        ("IV", edk + 6 + 2 + 20),
        ("wrapped key", edk + 6 + 25 + 2 + 5),
        ("wrap tag", edk + 6 + 25 + 2 + 47),
    ] {
        match f.flip(at).await {
            EnvelopeError::NoDecryptableKey { .. } => {}
            other => panic!("{what}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn frames() {
    let f = fixture().await;
    let f1 = f.frame(1);
    let e = f.flip(f1 + 3).await;
    assert!(
        matches!(
            e,
            EnvelopeError::FrameSequence {
                expected: 1,
                found: 0
            }
        ),
        "{e:?}"
    );
    let e = f.flip(f1 + 4).await;
    assert!(
        matches!(
            e,
            EnvelopeError::Malformed {
                field: Field::Iv,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(matches!(
        f.flip(f1 + 16).await,
        EnvelopeError::FrameAuthentication { sequence: 1 }
    ));
    assert!(matches!(
        f.flip(f.frame(2) - 1).await,
        EnvelopeError::FrameAuthentication { sequence: 1 }
    ));
    assert!(matches!(
        f.flip(f.frame(2) + 50).await,
        EnvelopeError::FrameAuthentication { sequence: 2 }
    ));

    // Reordered and dropped frames.
    let (a, b, c) = (f.frame(1), f.frame(2), f.frame(3));
    let mut swapped = f.message[..a].to_vec();
    swapped.extend_from_slice(&f.message[b..c]);
    swapped.extend_from_slice(&f.message[a..b]);
    swapped.extend_from_slice(&f.message[c..]);
    assert!(matches!(
        f.fail(&swapped).await,
        EnvelopeError::FrameSequence {
            expected: 1,
            found: 2
        }
    ));
    let mut dropped = f.message[..b].to_vec();
    dropped.extend_from_slice(&f.message[c..]);
    assert!(matches!(
        f.fail(&dropped).await,
        EnvelopeError::FrameSequence {
            expected: 2,
            found: 3
        }
    ));
    // Cut after a complete regular frame: the final-frame marker is missing.
    let e = f.fail(&f.message[..c]).await;
    assert!(
        matches!(e, EnvelopeError::Truncated { field: Field::SequenceNumber, offset } if offset == c as u64),
        "{e:?}"
    );
}

#[tokio::test]
async fn final_frame() {
    let f = fixture().await;
    let fin = f.frame(3);
    assert_eq!(&f.message[fin..fin + 4], &[0xFF; 4]);
    // Marker altered: read as a regular frame numbered 0xFFFFFFFE.
    let e = f.flip(fin + 3).await;
    assert!(
        matches!(
            e,
            EnvelopeError::FrameSequence {
                expected: 3,
                found: 0xFFFF_FFFE
            }
        ),
        "{e:?}"
    );
    // Final frame's own sequence number.
    assert!(matches!(
        f.flip(fin + 7).await,
        EnvelopeError::FrameSequence {
            expected: 3,
            found: 2
        }
    ));
    // Content length: one less (the tag shifts), beyond the frame length.
    let len_at = fin + 4 + 4 + 12;
    let mut shorter = f.message.clone();
    shorter[len_at + 3] -= 1;
    let e = f.fail(&shorter).await;
    assert!(
        matches!(
            e,
            EnvelopeError::FrameAuthentication { sequence: 3 } | EnvelopeError::TrailingData { .. }
        ),
        "{e:?}"
    );
    let mut longer = f.message.clone();
    longer[len_at + 2] = 1; // 50 + 256 > 100
    let e = f.fail(&longer).await;
    assert!(
        matches!(
            e,
            EnvelopeError::Malformed {
                field: Field::EncryptedContentLength,
                ..
            }
        ),
        "{e:?}"
    );
    // Final tag.
    assert!(matches!(
        f.flip(f.message.len() - 1).await,
        EnvelopeError::FrameAuthentication { sequence: 3 }
    ));
    // Trailing bytes.
    let mut trailing = f.message.clone();
    trailing.push(0);
    let e = f.fail(&trailing).await;
    assert!(
        matches!(e, EnvelopeError::TrailingData { offset } if offset == f.message.len() as u64),
        "{e:?}"
    );
}

#[tokio::test]
async fn every_truncation_is_typed() {
    let f = fixture().await;
    for n in 0..f.message.len() {
        match f.fail(&f.message[..n]).await {
            EnvelopeError::Truncated { offset, .. } => assert_eq!(offset, n as u64, "prefix {n}"),
            other => panic!("prefix {n}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn wrong_key_context_and_limits() {
    let f = fixture().await;
    let other: Arc<dyn MaterialsProvider> = multi(&[raw_keyring("ns", "kek", &[2; 32])]);
    let e = Decryptor::new(other).decrypt(&f.message).await.unwrap_err();
    assert!(
        matches!(&e, EnvelopeError::NoDecryptableKey { attempts, .. } if attempts.len() == 1),
        "{e:?}"
    );
    let unrelated: Arc<dyn MaterialsProvider> = multi(&[raw_keyring("other", "kek", &[1; 32])]);
    let e = Decryptor::new(unrelated)
        .decrypt(&f.message)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, EnvelopeError::NoDecryptableKey { attempts, entries } if attempts.is_empty() && entries == &["ns:kek"]),
        "{e:?}"
    );

    let required = |pairs: &[(&str, &str)]| DecryptOptions {
        required_context: context(pairs),
        ..DecryptOptions::default()
    };
    let d = Decryptor::new(f.keyring.clone());
    d.clone()
        .options(required(&[("a", "1")]))
        .decrypt(&f.message)
        .await
        .unwrap();
    let e = d
        .clone()
        .options(required(&[("a", "2")]))
        .decrypt(&f.message)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, EnvelopeError::ContextMismatch { key, found: Some(v), .. } if key == "a" && v == "1"),
        "{e:?}"
    );
    let e = d
        .clone()
        .options(required(&[("c", "3")]))
        .decrypt(&f.message)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, EnvelopeError::ContextMismatch { found: None, .. }),
        "{e:?}"
    );

    let small = DecryptOptions {
        max_frame_length: FRAME - 1,
        ..DecryptOptions::default()
    };
    let e = d
        .clone()
        .options(small)
        .decrypt(&f.message)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            EnvelopeError::LimitExceeded {
                limit: Limit::FrameLength,
                ..
            }
        ),
        "{e:?}"
    );
    let few = DecryptOptions {
        max_header_bytes: 64,
        ..DecryptOptions::default()
    };
    let mut out = Vec::new();
    let e = d
        .options(few)
        .decrypt_stream(&mut &f.message[..], &mut out)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            EnvelopeError::LimitExceeded {
                limit: Limit::HeaderBytes,
                ..
            }
        ),
        "{e:?}"
    );
}

#[tokio::test]
async fn no_secret_in_debug_or_errors() {
    let key = [0x5A; 32];
    let keyring = RawAesKeyring::new("ns", "kek", &key).unwrap();
    let debug = format!("{keyring:?}");
    assert!(
        !debug.contains(&hex::encode(key)) && !debug.contains("90, 90"),
        "{debug}"
    );
    // Unset variable: a configuration error naming it (values: unit tests in raw_aes.rs).
    let var = "KEYMGR_ENVELOPE_TEST_UNSET_KEK";
    let e = RawAesKeyring::dev_from_env(var, "ns", "kek").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    let f = fixture().await;
    let other: Arc<dyn MaterialsProvider> = multi(&[raw_keyring("ns", "kek", &key)]);
    let e = Decryptor::new(other).decrypt(&f.message).await.unwrap_err();
    for text in [format!("{e}"), format!("{e:?}")] {
        assert!(!text.contains(&hex::encode(key)), "{text}");
        assert!(!text.contains(&hex::encode([1u8; 32])), "{text}");
    }
}
