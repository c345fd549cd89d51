//! What the token records about each version keymgr makes: which version signed (from
//! its label) and when it was made (`CKA_START_DATE`, a day).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use keymgr_core::{KeyAlgorithm, KeyBackend as _, KeyRef, SignPayload};

const DAY_MS: u64 = 86_400_000;

fn now_ms() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_report_creation_day_and_signatures_their_version() {
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

    // Made today: midnight UTC of today (the attribute holds a day), read back from the
    // token by a fresh listing.
    let today = now_ms() / DAY_MS * DAY_MS;
    let versions = hsm.list_versions(&name).await.unwrap();
    assert_eq!(versions.len(), 2);
    for v in &versions {
        let created = v.created_at_ms.expect("CKA_START_DATE set");
        // Around midnight the day may have turned between generation and now.
        assert!(
            created == today || created + DAY_MS == today,
            "{} created {created}, today {today}",
            v.key
        );
    }
}
