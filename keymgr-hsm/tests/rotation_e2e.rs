//! keymgr-rotation end to end on a real SoftHSM2 token: notice, rotation, overlap and
//! disable on a virtual clock, with every step done through PKCS#11.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
use keymgr_core::{
    ErrorKind, KeyAlgorithm, KeyBackend, KeyRef, SignPayload, TracingAuditSink, VersionState,
};
use keymgr_rotation::{ManualClock, MemoryStateStore, RotationEvent, RotationPolicy, Rotator};

const DAY: Duration = Duration::from_secs(86_400);

#[tokio::test]
async fn scheduled_rotation_on_softhsm() {
    let Some(hsm) = common::backend().await else {
        return;
    };
    let name = common::unique("sched");
    hsm.create_key(&name, KeyAlgorithm::Secp256k1)
        .await
        .unwrap();
    let hsm: Arc<dyn KeyBackend> = Arc::new(hsm);
    // The token records when each version was made (wall-clock time), and the schedule
    // counts from it: the test clock starts now.
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let clock = Arc::new(ManualClock::new(u64::try_from(start).unwrap()));
    let rotator = Rotator::new(
        hsm.clone(),
        Arc::new(MemoryStateStore::default()),
        Arc::new(TracingAuditSink),
        RotationPolicy::default(),
        clock.clone(),
        "softhsm-e2e",
    )
    .unwrap();
    let mut log = Vec::new();
    for day in 0..=100u64 {
        for e in rotator.tick(&name).await.unwrap() {
            log.push((day, e));
        }
        clock.advance(DAY);
    }
    let kinds: Vec<(u64, &str)> = log
        .iter()
        .map(|(d, e)| {
            let k = match e {
                RotationEvent::Notice { .. } => "notice",
                RotationEvent::Rotated(_) => "rotated",
                RotationEvent::Disabled { .. } => "disabled",
                _ => "other",
            };
            (*d, k)
        })
        .collect();
    assert_eq!(
        kinds,
        vec![(76, "notice"), (90, "rotated"), (97, "disabled")]
    );
    let RotationEvent::Rotated(result) = &log[1].1 else {
        unreachable!()
    };
    assert_eq!(result.old.as_ref().map(|o| o.version()), Some("1"));
    assert_eq!(result.new.version(), "2");

    // The HSM itself says v1 is disabled and v2 current; v2 signs (checked with k256).
    let versions = hsm.list_versions(&name).await.unwrap();
    let v1 = versions
        .iter()
        .find(|v| v.key.version() == Some("1"))
        .unwrap();
    let v2 = versions
        .iter()
        .find(|v| v.key.version() == Some("2"))
        .unwrap();
    assert_eq!(v1.state, VersionState::Disabled);
    assert!(v2.current && v2.state == VersionState::Enabled);
    let h = common::random32();
    let sig = hsm
        .sign(&KeyRef::new(name.as_str()), &SignPayload::Prehash(h))
        .await
        .unwrap();
    let pk = hsm.public_key(&KeyRef::new(name.as_str())).await.unwrap();
    assert_eq!(pk, result.new.public_key);
    let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(&pk.to_bytes()).unwrap();
    let k = k256::ecdsa::Signature::from_slice(&sig.to_bytes()).unwrap();
    vk.verify_prehash(&h, &k).unwrap();
    // The new address the result reports, derived independently by alloy.
    assert_eq!(
        result.new.evm_address().as_deref(),
        Some(
            alloy_primitives::Address::from_public_key(&vk)
                .to_checksum(None)
                .as_str()
        )
    );
    let e = rotator
        .check_version(&KeyRef::versioned(name.as_str(), "1"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AccessDenied);
}
