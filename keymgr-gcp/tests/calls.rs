//! The Cloud KMS calls each keymgr operation makes, counted on the stand-in: the README's
//! "Permissions and calls per operation" table is checked here, so it cannot silently
//! drift from the code. Signatures are checked with k256 (independent of keymgr).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use keymgr_core::{KeyBackend, KeyManager, KeyRef, RecommendedLayers, SignPayload};
use support::{Algorithm, StandIn};

const METHODS: &[&str] = &[
    "asymmetricSign",
    "getPublicKey",
    "encrypt",
    "decrypt",
    "listCryptoKeyVersions",
    "createCryptoKeyVersion",
    "getCryptoKeyVersion",
    "updateCryptoKeyVersion",
    "getCryptoKey",
    "updateCryptoKey",
];

/// Counts per method since the last call (methods with no call left out).
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
        for m in METHODS {
            let now = self.stand_in.calls(m);
            let before = self.seen.insert(m, now).unwrap_or(0);
            if now > before {
                delta.insert(*m, now - before);
            }
        }
        delta
    }
}

fn calls(list: &[(&'static str, usize)]) -> BTreeMap<&'static str, usize> {
    list.iter().copied().collect()
}

async fn signed_and_checked(b: &dyn KeyBackend, key: &KeyRef, byte: u8) {
    let digest = [byte; 32];
    let sig = b.sign(key, &SignPayload::Prehash(digest)).await.unwrap();
    assert!(support::k256_verifies(
        sig.public_key(),
        &digest,
        sig.signature()
    ));
}

#[tokio::test]
async fn signer_build_sign_and_health_calls() {
    let stand_in = StandIn::start().await;
    let evm = stand_in.create_key("evm-key", Algorithm::Secp256k1);
    let mut count = Counter::new(&stand_in);
    let backend = support::backend(&stand_in, &[("evm", &evm)]).await;
    let manager = KeyManager::builder(Arc::new(backend))
        .recommended_layers(RecommendedLayers::default())
        .build();
    assert_eq!(count.take(), calls(&[]), "building calls nothing");

    // What EvmSigner::new / the xrp ClaimSigner builder do: pin the current version
    // (list_versions), then read its public key. The current version of a key without
    // keymgr's label is its newest ENABLED version (one more list).
    let versions = manager.list_versions("evm").await.unwrap();
    let pinned = versions.iter().find(|v| v.current).unwrap().key.clone();
    assert_eq!(
        count.take(),
        calls(&[("getCryptoKey", 1), ("listCryptoKeyVersions", 2)])
    );
    let pk = manager.public_key(&pinned).await.unwrap();
    assert_eq!(
        count.take(),
        calls(&[("getCryptoKeyVersion", 1), ("getPublicKey", 1)])
    );

    // Each signature with the pinned version: one asymmetricSign.
    for byte in [1, 2] {
        signed_and_checked(&manager, &pinned, byte).await;
        assert_eq!(count.take(), calls(&[("asymmetricSign", 1)]));
    }
    assert_eq!(manager.public_key(&pinned).await.unwrap(), pk);

    // The unversioned name within the current-version TTL (30 s): asymmetricSign only.
    let name = KeyRef::new("evm");
    signed_and_checked(&manager, &name, 3).await;
    assert_eq!(count.take(), calls(&[("asymmetricSign", 1)]));

    // Health: the current version (cached here) and its state.
    assert_eq!(
        manager.health().await.status,
        keymgr_core::HealthStatus::Healthy
    );
    assert_eq!(count.take(), calls(&[("getCryptoKeyVersion", 1)]));
}

#[tokio::test]
async fn periodic_current_version_check_and_rotation_calls() {
    let stand_in = StandIn::start().await;
    let evm = stand_in.create_key("evm-key", Algorithm::Secp256k1);
    let mut count = Counter::new(&stand_in);
    let backend = support::backend(&stand_in, &[("evm", &evm)])
        .await
        .with_current_version_ttl(Duration::ZERO);
    let name = KeyRef::new("evm");
    signed_and_checked(&backend, &name, 1).await;
    assert_eq!(
        count.take(),
        calls(&[
            ("getCryptoKey", 1),
            ("listCryptoKeyVersions", 1),
            ("getCryptoKeyVersion", 1),
            ("getPublicKey", 1),
            ("asymmetricSign", 1)
        ])
    );

    // Rotation: the key, its current version (read afresh here: TTL zero, no label yet,
    // so a list too), the intent label (patch), create (answered PENDING_GENERATION),
    // poll until ENABLED (one GET here), then the current-version label with the intent
    // cleared (patch).
    stand_in.set_pending_generation_gets(1);
    let v2 = backend.create_version("evm").await.unwrap();
    assert_eq!(
        count.take(),
        calls(&[
            ("getCryptoKey", 2),
            ("listCryptoKeyVersions", 1),
            ("createCryptoKeyVersion", 1),
            ("getCryptoKeyVersion", 1),
            ("updateCryptoKey", 2)
        ])
    );

    // TTL elapsed (zero here, 30 s by default): getCryptoKey before each signature; the
    // label names the current version, so no list.
    signed_and_checked(&backend, &name, 2).await;
    assert_eq!(
        count.take(),
        calls(&[
            ("getCryptoKey", 1),
            ("getCryptoKeyVersion", 1),
            ("getPublicKey", 1),
            ("asymmetricSign", 1)
        ])
    );
    signed_and_checked(&backend, &name, 3).await;
    assert_eq!(
        count.take(),
        calls(&[("getCryptoKey", 1), ("asymmetricSign", 1)])
    );

    // Disabling the old version: the current version afresh, the version's state, its
    // public key recorded on the crypto key (the key is read for its labels, the public
    // key comes from this instance's cache), then the update.
    let old = KeyRef::versioned("evm", "1");
    assert_ne!(old, v2.key);
    backend.disable_version(&old).await.unwrap();
    assert_eq!(
        count.take(),
        calls(&[
            ("getCryptoKey", 2),
            ("getCryptoKeyVersion", 1),
            ("updateCryptoKey", 1),
            ("updateCryptoKeyVersion", 1)
        ])
    );
    // Disabling it again: already DISABLED, nothing is recorded.
    backend.disable_version(&old).await.unwrap();
    assert_eq!(
        count.take(),
        calls(&[
            ("getCryptoKey", 1),
            ("getCryptoKeyVersion", 1),
            ("updateCryptoKeyVersion", 1)
        ])
    );
}
