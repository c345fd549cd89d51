//! Retries are decided in one place: under injected throttling, one `KeyManager::sign`
//! makes exactly 1 + 3 `Sign` calls to KMS (keymgr's `Retry`), even when the client it
//! was given has the SDK's standard retry mode on (which would make it 4 × 3 = 12).
//!
//! Runs against moto's KMS server (`cargo xtask test`); every `Sign` request really
//! reaches moto, and an SDK interceptor turns its answers into `ThrottlingException`s
//! while throttling is on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use aws_sdk_kms::Client;
use aws_sdk_kms::config::interceptors::{
    BeforeDeserializationInterceptorContextMut, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_kms::config::retry::RetryConfig;
use aws_sdk_kms::config::{
    BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents,
};
use aws_sdk_kms::types::{KeySpec, KeyUsageType};
use aws_smithy_types::body::SdkBody;
use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
use keymgr_aws::AwsKmsBackend;
use keymgr_core::layer::RetryPolicy;
use keymgr_core::{ErrorKind, KeyManager, KeyRef, RecommendedLayers, SignPayload};

/// Counts `Sign` requests sent, and answers them with a throttling error while `on`.
#[derive(Debug, Default)]
struct Throttle {
    on: AtomicBool,
    signs: AtomicUsize,
}

fn is_sign(headers: &aws_sdk_kms::config::http::HttpRequest) -> bool {
    headers.headers().get("x-amz-target") == Some("TrentService.Sign")
}

#[derive(Debug, Clone)]
struct Shared(Arc<Throttle>);

impl Intercept for Shared {
    fn name(&self) -> &'static str {
        "Throttle"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_kms::error::BoxError> {
        let sign = is_sign(context.request());
        if sign {
            self.0.signs.fetch_add(1, Ordering::SeqCst);
        }
        cfg.interceptor_state()
            .store_put(IsSign(sign && self.0.on.load(Ordering::SeqCst)));
        Ok(())
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_kms::error::BoxError> {
        if cfg.load::<IsSign>().is_some_and(|s| s.0) {
            let response = context.response_mut();
            *response.status_mut() = 400u16.try_into()?;
            response
                .headers_mut()
                .insert("x-amzn-requestid", "throttled-request");
            response
                .headers_mut()
                .insert("content-type", "application/x-amz-json-1.1");
            *response.body_mut() =
                SdkBody::from(r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#);
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
struct IsSign(bool);

impl aws_smithy_types::config_bag::Storable for IsSign {
    type Storer = aws_smithy_types::config_bag::StoreReplace<Self>;
}

#[tokio::test]
async fn one_throttled_sign_makes_one_plus_three_sign_calls() {
    let Some(endpoint) = std::env::var("AWS_ENDPOINT_URL")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        keymgr_testkit::skip_or_fail(
            "moto's KMS server (AWS_ENDPOINT_URL)",
            "`cargo xtask test` installs moto[server] into target/keymgr-test and starts it",
        );
        return;
    };
    let throttle = Arc::new(Throttle::default());
    // A client as a user would build it: the SDK's standard retry mode, 3 attempts.
    let conf = aws_sdk_kms::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(&endpoint)
        .credentials_provider(Credentials::new(
            "keymgr-test",
            "keymgr-test",
            None,
            None,
            "t",
        ))
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .interceptor(Shared(throttle.clone()))
        .build();
    let client = Client::from_conf(conf);
    let key_id = client
        .create_key()
        .key_spec(KeySpec::EccSecgP256K1)
        .key_usage(KeyUsageType::SignVerify)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id()
        .to_owned();
    let backend =
        AwsKmsBackend::from_client(client, [("evm".to_owned(), key_id)].into_iter().collect());
    let manager = KeyManager::builder(Arc::new(backend))
        .recommended_layers(RecommendedLayers {
            retry: Some(RetryPolicy {
                base_delay: Duration::from_millis(1),
                ..RetryPolicy::default()
            }),
            ..RecommendedLayers::default()
        })
        .build();
    let key = KeyRef::new("evm");
    let pk = manager.public_key(&key).await.unwrap();

    throttle.on.store(true, Ordering::SeqCst);
    let e = manager
        .sign(&key, &SignPayload::Prehash([5; 32]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Throttled, "{e}");
    assert_eq!(e.provider_code(), Some("ThrottlingException"));
    assert_eq!(e.request_id(), Some("throttled-request"));
    assert_eq!(e.operation(), Some("Sign"));
    assert_eq!(
        throttle.signs.load(Ordering::SeqCst),
        1 + 3,
        "one attempt and keymgr's three retries; the SDK retries nothing"
    );

    // Throttling over: one call, a signature k256 verifies against KMS's public key.
    throttle.on.store(false, Ordering::SeqCst);
    throttle.signs.store(0, Ordering::SeqCst);
    let digest = [6; 32];
    let sig = manager
        .sign(&key, &SignPayload::Prehash(digest))
        .await
        .unwrap();
    assert_eq!(throttle.signs.load(Ordering::SeqCst), 1);
    pk.as_secp256k1()
        .unwrap()
        .verify_prehash(&digest, sig.as_secp256k1().unwrap().as_k256())
        .unwrap();
}
