//! Both implementations set up for the comparison in `benches/compare.rs`: the same
//! 256-bit wrapping key, namespace, key name, encryption context, algorithm suite
//! (`0x0478`, committing AES-256-GCM with HKDF-SHA512) and frame length.

use std::collections::HashMap;
use std::sync::Arc;

use aws_esdk::client::Client as EsdkClient;
use aws_esdk::material_providers::client::Client as MplClient;
use aws_esdk::material_providers::types::AesWrappingAlg;
use aws_esdk::material_providers::types::EsdkAlgorithmSuiteId::AlgAes256GcmHkdfSha512CommitKey;
use aws_esdk::material_providers::types::keyring::KeyringRef;
use aws_esdk::material_providers::types::material_providers_config::MaterialProvidersConfig;
use aws_esdk::types::aws_encryption_sdk_config::AwsEncryptionSdkConfig;
use aws_smithy_types::Blob;
use keymgr_core::EncryptionContext;
use keymgr_envelope::{Decryptor, Encryptor, MultiKeyring, RawAesKeyring};

/// Error type of the set-up.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The wrapping key (a benchmark key, protects nothing).
pub const WRAPPING_KEY: [u8; 32] = [0x5a; 32];
/// Raw AES keyring namespace (provider id) on both sides.
pub const NAMESPACE: &str = "bench";
/// Raw AES keyring key name on both sides.
pub const KEY_NAME: &str = "kek-1";

/// The encryption context both sides bind.
pub fn context() -> EncryptionContext {
    [("tenant".to_owned(), "acme".to_owned())].into()
}

/// keymgr-envelope with a raw AES keyring (a fresh data key per message, as the ESDK's).
pub struct Keymgr {
    /// Encrypts.
    pub encryptor: Encryptor,
    /// Decrypts.
    pub decryptor: Decryptor,
}

impl Keymgr {
    /// `frame_length` bytes per frame.
    pub fn new(frame_length: u32) -> Result<Self, BoxError> {
        let keyring = Arc::new(RawAesKeyring::new(NAMESPACE, KEY_NAME, &WRAPPING_KEY)?);
        let multi = Arc::new(MultiKeyring::new(keyring));
        Ok(Self {
            encryptor: Encryptor::new(multi.clone()).frame_length(frame_length)?,
            decryptor: Decryptor::new(multi),
        })
    }
}

/// The Rust AWS Encryption SDK with its raw AES keyring.
pub struct Esdk {
    client: EsdkClient,
    keyring: KeyringRef,
    frame_length: i64,
}

impl Esdk {
    /// `frame_length` bytes per frame.
    pub async fn new(frame_length: u32) -> Result<Self, BoxError> {
        let client = EsdkClient::from_conf(AwsEncryptionSdkConfig::builder().build()?)?;
        let mpl = MplClient::from_conf(MaterialProvidersConfig::builder().build()?)?;
        let keyring = mpl
            .create_raw_aes_keyring()
            .key_name(KEY_NAME)
            .key_namespace(NAMESPACE)
            .wrapping_key(WRAPPING_KEY.to_vec())
            .wrapping_alg(AesWrappingAlg::AlgAes256GcmIv12Tag16)
            .send()
            .await?;
        Ok(Self {
            client,
            keyring,
            frame_length: frame_length.into(),
        })
    }

    fn esdk_context() -> HashMap<String, String> {
        context().into_iter().collect()
    }

    /// Encrypts `plaintext` (owned: the SDK takes a `Blob`).
    pub async fn encrypt(&self, plaintext: Vec<u8>) -> Result<Vec<u8>, BoxError> {
        let out = self
            .client
            .encrypt()
            .plaintext(Blob::new(plaintext))
            .keyring(self.keyring.clone())
            .encryption_context(Self::esdk_context())
            .algorithm_suite_id(AlgAes256GcmHkdfSha512CommitKey)
            .frame_length(self.frame_length)
            .send()
            .await?;
        Ok(out.ciphertext.ok_or("no ciphertext")?.into_inner())
    }

    /// Decrypts `message` (owned: the SDK takes a `Blob`).
    pub async fn decrypt(&self, message: Vec<u8>) -> Result<Vec<u8>, BoxError> {
        let out = self
            .client
            .decrypt()
            .ciphertext(Blob::new(message))
            .keyring(self.keyring.clone())
            .encryption_context(Self::esdk_context())
            .send()
            .await?;
        Ok(out.plaintext.ok_or("no plaintext")?.into_inner())
    }
}

/// Checks that each side decrypts the other's message of `plaintext` (so the two
/// measure interoperable work), returning one message of each.
pub async fn cross_check(
    keymgr: &Keymgr,
    esdk: &Esdk,
    plaintext: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), BoxError> {
    let ours = keymgr.encryptor.encrypt(plaintext, &context()).await?;
    let theirs = esdk.encrypt(plaintext.to_vec()).await?;
    if esdk.decrypt(ours.clone()).await? != plaintext {
        return Err("aws-esdk decrypted keymgr's message to other bytes".into());
    }
    if keymgr.decryptor.decrypt(&theirs).await?.plaintext != plaintext {
        return Err("keymgr decrypted aws-esdk's message to other bytes".into());
    }
    Ok((ours, theirs))
}
