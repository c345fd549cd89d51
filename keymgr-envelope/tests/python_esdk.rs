//! Interoperability with the Python AWS Encryption SDK (aws-encryption-sdk, pinned in
//! keymgr-testkit/esdk/constraints.txt) through moto's KMS: the SDK decrypts what
//! keymgr writes and keymgr decrypts what the SDK writes, for AWS KMS entries and raw
//! AES keyring entries, one frame or many, empty or exact-multiple plaintexts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use keymgr_core::EncryptionContext;
use keymgr_envelope::{Decryptor, Encryptor, EnvelopeError, MaterialsProvider};
use support::*;

const RAW_KEY: [u8; 32] = [0x42; 32];

fn plaintext(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

struct Setup {
    esdk: PythonEsdk,
    arn: String,
    kms: Arc<dyn keymgr_envelope::Keyring>,
}

async fn setup() -> Option<Setup> {
    let endpoint = moto()?;
    let esdk = PythonEsdk::find()?;
    let client = client(&endpoint);
    let arn = symmetric_key(&client).await;
    let kms = kms_keyring(manager(client), &arn);
    Some(Setup { esdk, arn, kms })
}

fn ctx() -> EncryptionContext {
    context(&[
        ("tenant", "acme"),
        ("purpose", "interop"),
        ("é-key", "välue ✓"),
    ])
}

#[tokio::test]
async fn python_decrypts_keymgr_messages() {
    let Some(s) = setup().await else { return };
    let raw = raw_keyring("keymgr-test", "kek-1", &RAW_KEY);
    let both = multi(&[s.kms.clone(), raw]);
    for (len, frame) in [
        (0usize, 4096u32),
        (1, 4096),
        (2500, 1000),
        (3000, 1000),
        (70_000, 65_536),
    ] {
        let data = plaintext(len);
        let encryptor = Encryptor::new(both.clone()).frame_length(frame).unwrap();
        let message = encryptor.encrypt(&data, &ctx()).await.unwrap();
        // Each KEK alone suffices on the Python side.
        for args in [kms_arg(&s.arn), raw_arg("keymgr-test", "kek-1", &RAW_KEY)] {
            let dir = keymgr_testkit::TempDir::new("esdk");
            let ctx_file = dir.path().join("context.json");
            let mut args = args.clone();
            args.extend(["--context-out".into(), ctx_file.display().to_string()]);
            let out = s.esdk.run("decrypt", &args, &message).await;
            assert!(out.ok, "len {len}, {args:?}: {}", out.stderr);
            assert_eq!(out.stdout, data, "len {len}");
            let seen: EncryptionContext =
                serde_json::from_str(&std::fs::read_to_string(&ctx_file).unwrap()).unwrap();
            assert_eq!(seen, ctx());
        }
    }
}

#[tokio::test]
async fn keymgr_decrypts_python_messages() {
    let Some(s) = setup().await else { return };
    let raw = raw_keyring("keymgr-test", "kek-1", &RAW_KEY);
    let mut args = kms_arg(&s.arn);
    args.extend(raw_arg("keymgr-test", "kek-1", &RAW_KEY));
    args.extend(context_arg(&ctx()));
    for (len, frame) in [(0usize, 4096u32), (1, 4096), (4096, 4096), (10_000, 1024)] {
        let data = plaintext(len);
        let mut a = args.clone();
        a.extend(["--frame-length".into(), frame.to_string()]);
        let out = s.esdk.run("encrypt", &a, &data).await;
        assert!(out.ok, "{}", out.stderr);
        // Through the KMS keyring only, the raw keyring only, and streamed.
        for keyring in [
            multi(std::slice::from_ref(&s.kms)),
            multi(std::slice::from_ref(&raw)),
        ] {
            let decrypted = Decryptor::new(keyring.clone())
                .decrypt(&out.stdout)
                .await
                .unwrap();
            assert_eq!(decrypted.plaintext, data, "len {len}");
            assert_eq!(decrypted.header.context, ctx());
            assert_eq!(decrypted.header.frame_length, frame);
            assert_eq!(decrypted.header.encrypted_data_keys.len(), 2);
            let mut sink = Vec::new();
            let summary = Decryptor::new(keyring)
                .decrypt_stream(&mut &out.stdout[..], &mut sink)
                .await
                .unwrap();
            assert_eq!(sink, data);
            assert_eq!(summary.message_bytes, out.stdout.len() as u64);
        }
    }
}

#[tokio::test]
async fn python_signing_suite_is_refused_with_a_typed_error() {
    let Some(s) = setup().await else { return };
    let mut args = raw_arg("keymgr-test", "kek-1", &RAW_KEY);
    args.extend(["--algorithm".into(), "0578".into()]);
    let out = s.esdk.run("encrypt", &args, b"signed").await;
    assert!(out.ok, "{}", out.stderr);
    let keyring: Arc<dyn MaterialsProvider> =
        multi(&[raw_keyring("keymgr-test", "kek-1", &RAW_KEY)]);
    let err = Decryptor::new(keyring)
        .decrypt(&out.stdout)
        .await
        .unwrap_err();
    assert!(
        matches!(err, EnvelopeError::UnsupportedAlgorithm(0x0578)),
        "{err:?}"
    );
}

#[tokio::test]
async fn python_refuses_a_tampered_keymgr_message() {
    let Some(s) = setup().await else { return };
    let raw = raw_keyring("keymgr-test", "kek-1", &RAW_KEY);
    let message = Encryptor::new(multi(&[raw]))
        .encrypt(b"do not alter", &ctx())
        .await
        .unwrap();
    let mut tampered = message.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let out = s
        .esdk
        .run(
            "decrypt",
            &raw_arg("keymgr-test", "kek-1", &RAW_KEY),
            &tampered,
        )
        .await;
    assert!(!out.ok, "the Python SDK accepted a tampered tag");
}
