//! The Key Vault calls each keymgr operation makes, counted on the stand-in: the README's
//! "Permissions and calls per operation" table is checked here, so it cannot silently
//! drift from the code. Signatures are checked with k256 against the stand-in's own key
//! (independent of keymgr).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
use keymgr_core::{HealthStatus, KeyBackend, KeyManager, KeyRef, RecommendedLayers, SignPayload};
use keymgr_testkit::azure::StandIn;

const OPERATIONS: &[&str] = &["getKey", "listVersions", "createKey", "updateKey", "sign"];

/// Counts per operation since the last call (operations with no call left out).
struct Counter<'a> {
    stand_in: &'a StandIn,
    seen: BTreeMap<&'static str, usize>,
}

impl<'a> Counter<'a> {
    fn new(stand_in: &'a StandIn) -> Self {
        let mut c = Self {
            stand_in,
            seen: BTreeMap::new(),
        };
        c.take();
        c
    }

    fn take(&mut self) -> BTreeMap<&'static str, usize> {
        let mut delta = BTreeMap::new();
        for op in OPERATIONS {
            let now = self.stand_in.calls(op);
            let before = self.seen.insert(op, now).unwrap_or(0);
            if now > before {
                delta.insert(*op, now - before);
            }
        }
        delta
    }
}

fn calls(list: &[(&'static str, usize)]) -> BTreeMap<&'static str, usize> {
    list.iter().copied().collect()
}

async fn signed_and_checked(
    stand_in: &StandIn,
    b: &dyn KeyBackend,
    key: &KeyRef,
    version: &str,
    byte: u8,
) {
    let digest = [byte; 32];
    let sig = b.sign(key, &SignPayload::Prehash(digest)).await.unwrap();
    stand_in
        .verifying_key("evm-signer", version)
        .verify_prehash(&digest, sig.as_secp256k1().unwrap().as_k256())
        .unwrap();
}

#[tokio::test]
async fn signer_build_sign_health_and_rotation_calls() {
    let (stand_in, backend) = support::fixture().await;
    let mut count = Counter::new(&stand_in);
    let manager = KeyManager::builder(backend.clone() as Arc<dyn KeyBackend>)
        .recommended_layers(RecommendedLayers::default())
        .build();
    assert_eq!(count.take(), calls(&[]), "building calls nothing");

    // What EvmSigner::new / the xrp ClaimSigner builder do: pin the current version
    // (list_versions: the versions, then the newest key), then read its public key
    // (cached by the list's Get Key).
    let versions = manager.list_versions("evm").await.unwrap();
    let pinned = versions.iter().find(|v| v.current).unwrap().key.clone();
    let version = pinned.version().unwrap().to_owned();
    assert_eq!(count.take(), calls(&[("listVersions", 1), ("getKey", 1)]));
    manager.public_key(&pinned).await.unwrap();
    assert_eq!(count.take(), calls(&[]));

    // Each signature with the pinned version: one Sign.
    for byte in [1, 2] {
        signed_and_checked(&stand_in, &manager, &pinned, &version, byte).await;
        assert_eq!(count.take(), calls(&[("sign", 1)]));
    }
    // The unversioned name within CURRENT_VERSION_TTL (30 s): Sign only; after it, one
    // Get Key of the newest version first.
    signed_and_checked(&stand_in, &*backend, &KeyRef::new("evm"), &version, 3).await;
    assert_eq!(count.take(), calls(&[("sign", 1)]));

    // Health: a canary per configured key (evm and xrp here): Get Key of its current
    // version, then Sign of a fixed digest, verified.
    assert_eq!(backend.health().await.status, HealthStatus::Healthy);
    assert_eq!(count.take(), calls(&[("getKey", 2), ("sign", 2)]));

    // Rotation: the current version (cached here), then Create Key.
    let v2 = backend.create_version("evm").await.unwrap();
    let created = count.take();
    assert_eq!(created.get("createKey"), Some(&1), "{created:?}");
    assert_eq!(
        created.get("getKey").copied().unwrap_or(0),
        0,
        "{created:?}"
    );

    // Disabling the old version: the current version afresh (Get Key), Update Key.
    assert_ne!(v2.key, pinned);
    backend.disable_version(&pinned).await.unwrap();
    assert_eq!(count.take(), calls(&[("getKey", 1), ("updateKey", 1)]));
}
