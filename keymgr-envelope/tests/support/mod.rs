//! Shared test set-up: moto's KMS, KMS keys, keyrings and the Python AWS Encryption SDK.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kms::Client;
use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use keymgr_aws::AwsKmsBackend;
use keymgr_core::layer::{BreakerPolicy, TimeoutPolicy};
use keymgr_core::{EncryptionContext, KeyBackend, KeyManager};
use keymgr_envelope::{AwsKmsKeyring, Keyring, MultiKeyring, RawAesKeyring};
use tokio::io::AsyncWriteExt as _;

pub const REGION: &str = "us-east-1";

/// moto's endpoint, or `None` (test skipped) outside `cargo xtask test`.
pub fn moto() -> Option<String> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .ok()
        .filter(|v| !v.is_empty());
    if endpoint.is_none() {
        keymgr_testkit::skip_or_fail(
            "moto's KMS server (AWS_ENDPOINT_URL)",
            "`cargo xtask test` installs moto[server] into target/keymgr-test and starts it",
        );
    }
    endpoint
}

pub fn client(endpoint: &str) -> Client {
    let conf = aws_sdk_kms::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(
            "keymgr-test",
            "keymgr-test",
            None,
            None,
            "tests",
        ))
        .build();
    Client::from_conf(conf)
}

/// A KMS backend whose every call fails to connect (a provider that is down), behind a
/// `KeyManager` with no retries and a breaker that opens after 2 failures.
pub fn down_backend() -> Arc<dyn KeyBackend> {
    let backend: Arc<dyn KeyBackend> = Arc::new(keymgr_aws::AwsKmsBackend::from_client(
        client("http://127.0.0.1:9"),
        Default::default(),
    ));
    Arc::new(
        KeyManager::builder(backend)
            .layer(BreakerPolicy {
                failure_threshold: 2,
                open_for: Duration::from_secs(600),
            })
            .layer(TimeoutPolicy {
                limit: Duration::from_secs(5),
            })
            .build(),
    )
}

/// A new symmetric (SYMMETRIC_DEFAULT, ENCRYPT_DECRYPT) KMS key; its ARN.
pub async fn symmetric_key(client: &Client) -> String {
    let out = client
        .create_key()
        .description("keymgr-envelope test")
        .send()
        .await
        .unwrap();
    out.key_metadata.unwrap().arn.unwrap()
}

/// A `KeyManager` (default layers) over keymgr-aws on `client`.
pub fn manager(client: Client) -> Arc<dyn KeyBackend> {
    let backend: Arc<dyn KeyBackend> =
        Arc::new(AwsKmsBackend::from_client(client, Default::default()));
    Arc::new(KeyManager::builder(backend).build())
}

pub fn kms_keyring(backend: Arc<dyn KeyBackend>, arn: &str) -> Arc<dyn Keyring> {
    Arc::new(AwsKmsKeyring::new(backend, arn).unwrap())
}

pub fn raw_keyring(namespace: &str, name: &str, key: &[u8; 32]) -> Arc<dyn Keyring> {
    Arc::new(RawAesKeyring::new(namespace, name, key).unwrap())
}

pub fn multi(keyrings: &[Arc<dyn Keyring>]) -> Arc<MultiKeyring> {
    let mut m = MultiKeyring::new(keyrings[0].clone());
    for k in &keyrings[1..] {
        m = m.wrap_with(k.clone());
    }
    Arc::new(m)
}

pub fn context(pairs: &[(&str, &str)]) -> EncryptionContext {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The Python AWS Encryption SDK (`keymgr-testkit/esdk/esdk_cli.py` in the venv xtask
/// provisions), or `None` (test skipped) outside `cargo xtask test`.
pub struct PythonEsdk {
    python: PathBuf,
    script: PathBuf,
}

/// What the Python SDK answered.
pub struct EsdkOutput {
    pub ok: bool,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl PythonEsdk {
    pub fn find() -> Option<Self> {
        let python = std::env::var_os("KEYMGR_ESDK_PYTHON");
        let script = std::env::var_os("KEYMGR_ESDK_SCRIPT");
        match (python, script) {
            (Some(python), Some(script)) => Some(Self {
                python: python.into(),
                script: script.into(),
            }),
            _ => {
                keymgr_testkit::skip_or_fail(
                    "the Python AWS Encryption SDK (KEYMGR_ESDK_PYTHON)",
                    "`cargo xtask test` installs aws-encryption-sdk into target/keymgr-test",
                );
                None
            }
        }
    }

    /// Runs `esdk_cli.py OPERATION ARGS` with `input` on stdin.
    pub async fn run(&self, operation: &str, args: &[String], input: &[u8]) -> EsdkOutput {
        let mut child = tokio::process::Command::new(&self.python)
            .arg(&self.script)
            .arg(operation)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        let writer = tokio::spawn(async move {
            stdin.write_all(&input).await.unwrap();
            drop(stdin);
        });
        let out = child.wait_with_output().await.unwrap();
        writer.await.unwrap();
        EsdkOutput {
            ok: out.status.success(),
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// `--raw NAMESPACE:NAME:HEX` for the Python side.
pub fn raw_arg(namespace: &str, name: &str, key: &[u8; 32]) -> Vec<String> {
    vec![
        "--raw".into(),
        format!("{namespace}:{name}:{}", hex::encode(key)),
    ]
}

/// `--raw-aes-keyring NAMESPACE:NAME:HEX`: the Material Providers Library's
/// `RawAESKeyring` on the Python side (instead of the `RawMasterKey` of `--raw`).
pub fn raw_aes_keyring_arg(namespace: &str, name: &str, key: &[u8; 32]) -> Vec<String> {
    vec![
        "--raw-aes-keyring".into(),
        format!("{namespace}:{name}:{}", hex::encode(key)),
    ]
}

pub fn kms_arg(arn: &str) -> Vec<String> {
    vec!["--kms".into(), arn.into()]
}

pub fn context_arg(ctx: &EncryptionContext) -> Vec<String> {
    vec!["--context".into(), serde_json::to_string(ctx).unwrap()]
}
