//! Each HSM signature says which version signed (from the label of the key that signed:
//! `LABEL.vN` is version N).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use keymgr_core::{KeyAlgorithm, KeyBackend as _, KeyRef, SignPayload};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_name_the_version_that_signed() {
    let Some(hsm) = common::backend().await else {
        return;
    };
    let name = common::unique("created");
    hsm.create_key(&name, KeyAlgorithm::Secp256k1)
        .await
        .unwrap();
    let key = KeyRef::new(name.as_str());
    let payload = SignPayload::Prehash(common::random32());
    let sig = hsm.sign(&key, &payload).await.unwrap();
    common::verify_independently(&hsm.public_key(&key).await.unwrap(), &payload, &sig);
    assert_eq!(sig.key_version(), Some("1"));

    hsm.create_version(&name).await.unwrap();
    let sig = hsm.sign(&key, &payload).await.unwrap();
    common::verify_independently(&hsm.public_key(&key).await.unwrap(), &payload, &sig);
    assert_eq!(sig.key_version(), Some("2"));
    let pinned = KeyRef::versioned(name.as_str(), "1");
    let sig = hsm.sign(&pinned, &payload).await.unwrap();
    common::verify_independently(&hsm.public_key(&pinned).await.unwrap(), &payload, &sig);
    assert_eq!(sig.key_version(), Some("1"));
}
