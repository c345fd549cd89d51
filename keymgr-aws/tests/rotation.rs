//! Rotation on moto beyond the versions contract that `conformance.rs` checks: the alias
//! move, the tag history other processes read, the server's own refusal of disabled
//! keys, versions that are not the logical key's, crash adoption, keymgr-rotation's
//! scheduler end to end, and a lost rotation state recovered from KMS.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::KeySpec;
use aws_sdk_kms::types::KeyState;
use aws_sdk_kms::types::KeyUsageType;
use aws_sdk_kms::types::MessageType;
use aws_sdk_kms::types::SigningAlgorithmSpec;
use keymgr_aws::TAG_CREATED;
use keymgr_aws::TAG_LOGICAL_KEY;
use keymgr_aws::TAG_PREVIOUS;
use keymgr_aws::TAG_PUBLIC_KEY;
use keymgr_aws::TAG_ROTATING;
use keymgr_aws::TAG_VERSION;
use keymgr_core::ErrorKind;
use keymgr_core::KeyAlgorithm;
use keymgr_core::KeyBackend;
use keymgr_core::KeyManager;
use keymgr_core::KeyRef;
use keymgr_core::SignPayload;
use keymgr_core::VersionState;
use std::sync::Arc;
use support::*;

#[tokio::test]
async fn rotation_moves_the_alias_tags_history_and_disables_the_old_key() {
    let Some(endpoint) = moto() else { return };
    let client = client(&endpoint);
    let v1 = create_key(
        &client,
        KeySpec::EccSecgP256K1,
        KeyUsageType::SignVerify,
        "rotate",
        &[("team", "payments")],
    )
    .await;
    let aws = Arc::new(backend(&client, &[("evm", &v1.alias)]));
    let manager = KeyManager::new(aws.clone());
    let evm = KeyRef::new("evm");

    let h1 = random32();
    let pk1 = manager.public_key(&evm).await.unwrap();
    let sig1 = manager.sign(&evm, &SignPayload::Prehash(h1)).await.unwrap();
    assert!(k256_verifies(&pk1, &h1, &sig1));

    // The backend's own rotation primitive (keymgr-rotation drives it in production).
    let previous = aws.list_versions("evm").await.unwrap().pop().unwrap();
    assert!(previous.current);
    assert_eq!(previous.key.version(), Some(v1.key_id.as_str()));
    assert_eq!(aws.public_key(&previous.key).await.unwrap(), pk1);
    let current = aws.create_version("evm").await.unwrap();
    manager.invalidate("evm");
    let current_public_key = aws.public_key(&current.key).await.unwrap();
    let v2_id = current.key.version().unwrap().to_owned();
    assert_ne!(v2_id, v1.key_id);
    assert_ne!(current_public_key, pk1, "a new key, so a new public key");

    // The alias moved in KMS itself.
    let target = client
        .describe_key()
        .key_id(&v1.alias)
        .send()
        .await
        .unwrap();
    assert_eq!(target.key_metadata.unwrap().key_id(), v2_id);

    // The current name signs with the new key; the old version still signs (overlap).
    let h2 = random32();
    let sig2 = manager.sign(&evm, &SignPayload::Prehash(h2)).await.unwrap();
    assert!(k256_verifies(&current_public_key, &h2, &sig2));
    assert!(!k256_verifies(&pk1, &h2, &sig2));
    let old = KeyRef::versioned("evm", v1.key_id.as_str());
    let h3 = random32();
    let sig3 = manager.sign(&old, &SignPayload::Prehash(h3)).await.unwrap();
    assert!(k256_verifies(&pk1, &h3, &sig3));

    // Tags tell the history, read back from KMS.
    let tags = |id: String| tags_of(&client, id);
    let t2 = tags(v2_id.clone()).await;
    assert_eq!(t2.get(TAG_LOGICAL_KEY), Some(&v1.alias));
    assert_eq!(t2.get(TAG_VERSION).map(String::as_str), Some("2"));
    assert_eq!(t2.get(TAG_PREVIOUS), Some(&v1.key_id));
    assert!(
        t2.get(TAG_CREATED)
            .is_some_and(|c| c.ends_with('Z') && c.contains('T')),
        "{t2:?}"
    );
    assert_eq!(
        t2.get("team").map(String::as_str),
        Some("payments"),
        "user tags are copied"
    );
    let t1 = tags(v1.key_id.clone()).await;
    assert_eq!(t1.get(TAG_VERSION).map(String::as_str), Some("1"));
    assert_eq!(t1.get(TAG_LOGICAL_KEY), Some(&v1.alias));
    let new_meta = client
        .describe_key()
        .key_id(&v2_id)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    assert_eq!(new_meta.key_spec(), Some(&KeySpec::EccSecgP256K1));
    assert_eq!(new_meta.key_usage(), Some(&KeyUsageType::SignVerify));

    // A fresh backend (another process) reads the same history from KMS.
    let other = backend(&client, &[("evm", &v1.alias)]);
    let versions = other.list_versions("evm").await.unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0].key.version(), Some(v1.key_id.as_str()));
    assert_eq!(versions[1].key.version(), Some(v2_id.as_str()));
    assert!(!versions[0].current && versions[1].current);
    assert!(versions.iter().all(|v| v.state == VersionState::Enabled));
    assert!(
        versions
            .iter()
            .all(|v| v.algorithm == KeyAlgorithm::Secp256k1)
    );
    assert_eq!(versions[0].backend_id, v1.arn);

    // Another process that signed with the old version before it was disabled, and
    // re-checks its state before every signature.
    let watcher =
        backend(&client, &[("evm", &v1.alias)]).with_version_state_ttl(std::time::Duration::ZERO);
    let h4 = random32();
    let sig4 = watcher.sign(&old, &SignPayload::Prehash(h4)).await.unwrap();
    assert!(k256_verifies(&pk1, &h4, &sig4));

    // Disabled in KMS itself, never scheduled for deletion.
    manager.disable_version(&old).await.unwrap();
    let old_meta = client
        .describe_key()
        .key_id(&v1.key_id)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    assert_eq!(old_meta.key_state(), Some(&KeyState::Disabled));
    assert!(old_meta.deletion_date().is_none());

    // Refused by keymgr's own state, by a fresh backend (KMS key state) and by the server.
    for b in [&*aws, &other] {
        let e = b
            .sign(&old, &SignPayload::Prehash(random32()))
            .await
            .expect_err("disabled");
        assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");
        assert!(e.to_string().contains(&v1.key_id), "{e}");
    }
    // keymgr refuses before asking KMS to sign: moto (and a lagging service) would sign.
    let e = watcher
        .sign(&old, &SignPayload::Prehash(random32()))
        .await
        .expect_err("disabled by another process");
    assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");
    assert!(
        e.to_string().contains("keymgr does not sign with it"),
        "{e}"
    );
    let direct = client
        .sign()
        .key_id(&v1.key_id)
        .message(Blob::new(random32().to_vec()))
        .message_type(MessageType::Digest)
        .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
        .send()
        .await
        .expect_err("the launcher makes moto refuse disabled keys");
    assert_eq!(
        aws_sdk_kms::error::ProvideErrorMetadata::code(&direct),
        Some("DisabledException")
    );

    // Old signatures still verify (independently, with the old public key).
    assert!(k256_verifies(&pk1, &h1, &sig1));
    assert!(k256_verifies(&pk1, &h3, &sig3));
    // The old version's public key stays readable, from any process: KMS itself
    // refuses GetPublicKey on a disabled key (as the launcher makes moto do), so
    // disable_version recorded it on the key first.
    assert_eq!(aws.public_key(&old).await.unwrap(), pk1);
    let fresh = backend(&client, &[("evm", &v1.alias)]);
    assert_eq!(fresh.public_key(&old).await.unwrap(), pk1);
    let record = tags(v1.key_id.clone())
        .await
        .remove(TAG_PUBLIC_KEY)
        .unwrap();
    assert!(record.starts_with(&format!("{}:", v1.key_id)), "{record}");

    let versions = other.list_versions("evm").await.unwrap();
    assert_eq!(versions[0].state, VersionState::Disabled);
    assert_eq!(versions[1].state, VersionState::Enabled);

    // A second rotation extends the chain.
    let third = aws.create_version("evm").await.unwrap();
    let versions = other.list_versions("evm").await.unwrap();
    assert_eq!(versions.len(), 3);
    assert_eq!(versions[2].key, third.key);
    assert_eq!(
        tags(third.key.version().unwrap().to_owned())
            .await
            .get(TAG_VERSION)
            .map(String::as_str),
        Some("3")
    );

    // A version must belong to the logical key: another key's id is not a version of it.
    let stranger = secp256k1_key(&client, "stranger").await;
    let e = aws
        .sign(
            &KeyRef::versioned("evm", stranger.key_id.as_str()),
            &SignPayload::Prehash(random32()),
        )
        .await
        .expect_err("not a version of evm");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains(&stranger.key_id), "{e}");
}

#[tokio::test]
async fn rotation_needs_an_alias_and_a_signing_key() {
    let Some(endpoint) = moto() else { return };
    let client = client(&endpoint);
    let key = secp256k1_key(&client, "by-id").await;
    let b = backend(&client, &[("evm", &key.key_id)]);
    let e = b
        .create_version("evm")
        .await
        .expect_err("key id, not alias");
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains("alias"), "{e}");
    // A key named by id has exactly one version: itself.
    let versions = b.list_versions("evm").await.unwrap();
    assert_eq!(versions.len(), 1);
    assert!(versions[0].current);

    let sym = create_key(
        &client,
        KeySpec::SymmetricDefault,
        KeyUsageType::EncryptDecrypt,
        "kek-rot",
        &[],
    )
    .await;
    let b = backend(&client, &[("kek", &sym.alias)]);
    let e = b.create_version("kek").await.expect_err("symmetric");
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains("automatic key rotation"), "{e}");
}

/// keymgr-rotation end to end on moto: the scheduler's state machine drives CreateKey,
/// the alias move and DisableKey through the real SDK.
#[tokio::test]
async fn scheduled_rotation_through_keymgr_rotation() {
    use keymgr_rotation::{ManualClock, MemoryStateStore, RotationEvent, RotationPolicy, Rotator};
    use std::time::Duration;
    let Some(endpoint) = moto() else { return };
    let client = client(&endpoint);
    let v1 = secp256k1_key(&client, "sched").await;
    let aws: Arc<dyn KeyBackend> = Arc::new(backend(&client, &[("evm", &v1.alias)]));
    let clock = Arc::new(ManualClock::new(0));
    let rotator = Rotator::new(
        aws.clone(),
        Arc::new(MemoryStateStore::default()),
        Arc::new(keymgr_core::TracingAuditSink),
        RotationPolicy::default(),
        clock.clone(),
        "moto-e2e",
    )
    .unwrap();
    // KMS reports the key's real creation time; start the virtual clock there.
    rotator.tick("evm").await.unwrap();
    let since = rotator.status("evm").await.unwrap().state.active_since_ms;
    clock.advance(Duration::from_millis(since));
    let day = Duration::from_secs(86_400);
    let mut kinds = Vec::new();
    let mut rotated = None;
    for d in 0..=100u64 {
        for e in rotator.tick("evm").await.unwrap() {
            kinds.push((
                d,
                match &e {
                    RotationEvent::Notice { .. } => "notice",
                    RotationEvent::Rotated(_) => "rotated",
                    RotationEvent::Disabled { .. } => "disabled",
                    _ => "other",
                },
            ));
            if let RotationEvent::Rotated(r) = e {
                rotated = Some(r);
            }
        }
        clock.advance(day);
    }
    assert_eq!(
        kinds,
        vec![(76, "notice"), (90, "rotated"), (97, "disabled")]
    );
    let rotated = rotated.unwrap();
    assert_eq!(
        rotated.old.as_ref().map(|o| o.version()),
        Some(v1.key_id.as_str())
    );
    // KMS itself: alias on the new key, the old key disabled (not deleted).
    let target = client
        .describe_key()
        .key_id(&v1.alias)
        .send()
        .await
        .unwrap();
    assert_eq!(target.key_metadata.unwrap().key_id(), rotated.new.version());
    let old = client
        .describe_key()
        .key_id(&v1.key_id)
        .send()
        .await
        .unwrap();
    let old = old.key_metadata.unwrap();
    assert!(!old.enabled());
    assert_eq!(
        old.key_state(),
        Some(&aws_sdk_kms::types::KeyState::Disabled)
    );
    let e = rotator
        .check_version(&KeyRef::versioned("evm", v1.key_id.as_str()))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AccessDenied);
}

/// A rotation that dies between `CreateKey` and `UpdateAlias` (simulated: both
/// `UpdateAlias` and the clean-up `DisableKey` never arrive) leaves an enabled key; the
/// next rotation adopts it instead of creating a second one.
#[tokio::test]
async fn interrupted_rotation_is_adopted_not_duplicated() {
    let Some(endpoint) = moto() else { return };
    let client = client(&endpoint);
    let v1 = secp256k1_key(&client, "interrupted").await;
    let crashing = backend(
        &unreachable_client(&endpoint, &["UpdateAlias", "DisableKey"]),
        &[("evm", &v1.alias)],
    );
    let e = crashing.create_version("evm").await.expect_err("crashed");
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");

    // Every key tagged as a successor of v1, read back from KMS.
    let successors = || {
        let client = client.clone();
        let v1 = v1.key_id.clone();
        async move {
            let mut found = Vec::new();
            let listed = client.list_keys().limit(1000).send().await.unwrap();
            for k in listed.keys() {
                let id = k.key_id().unwrap();
                if tags_of(&client, id).await.get(TAG_PREVIOUS) == Some(&v1) {
                    found.push(id.to_owned());
                }
            }
            found
        }
    };
    let orphans = successors().await;
    assert_eq!(orphans.len(), 1, "the interrupted rotation made one key");

    let fresh = backend(&client, &[("evm", &v1.alias)]);
    let v2 = fresh.create_version("evm").await.unwrap();
    assert_eq!(v2.key.version(), Some(orphans[0].as_str()), "adopted");
    assert_eq!(successors().await, orphans, "no second key was created");
    let target = client
        .describe_key()
        .key_id(&v1.alias)
        .send()
        .await
        .unwrap();
    assert_eq!(target.key_metadata.unwrap().key_id(), orphans[0]);
    assert!(
        !tags_of(&client, &v1.key_id)
            .await
            .contains_key(TAG_ROTATING),
        "the intent marker is cleared"
    );
    // The adopted key signs under the logical name (checked with k256).
    let evm = KeyRef::new("evm");
    let pk = fresh.public_key(&evm).await.unwrap();
    let h = random32();
    let sig = fresh.sign(&evm, &SignPayload::Prehash(h)).await.unwrap();
    assert!(k256_verifies(&pk, &h, &sig));

    // A later rotation with no marker creates a new key as usual.
    let v3 = fresh.create_version("evm").await.unwrap();
    assert_ne!(v3.key.version(), v2.key.version());
}

/// The rotation state that scheduled the old key's disable is lost (another state
/// directory, a fresh one): a new rotator recovers the schedule from KMS itself (the new
/// key's creation time) and disables the old key when the overlap ends — not before,
/// and not never.
#[tokio::test]
async fn a_lost_rotation_state_is_recovered_from_kms() {
    use keymgr_rotation::{
        Clock as _, Lifecycle, ManualClock, MemoryStateStore, RotationEvent, RotationPolicy,
        Rotator, SystemClock,
    };
    use std::time::Duration;
    let Some(endpoint) = moto() else { return };
    let client = client(&endpoint);
    let v1 = secp256k1_key(&client, "lost-state").await;
    let aws: Arc<dyn KeyBackend> = Arc::new(backend(&client, &[("evm", &v1.alias)]));
    let clock = Arc::new(ManualClock::new(SystemClock.now_ms()));
    let rotator = |holder: &str| {
        Rotator::new(
            aws.clone(),
            Arc::new(MemoryStateStore::default()),
            Arc::new(keymgr_core::TracingAuditSink),
            RotationPolicy::default(),
            clock.clone(),
            holder,
        )
        .unwrap()
    };
    let events = rotator("first").rotate_now("evm", false).await.unwrap();
    assert!(
        matches!(events.as_slice(), [RotationEvent::Rotated(_)]),
        "{events:?}"
    );
    // The first rotator and its state are gone.
    let created = aws.list_versions("evm").await.unwrap()[1]
        .created_at_ms
        .expect("KMS records the creation date");
    let day = Duration::from_secs(86_400);
    clock.advance(day * 3);
    let second = rotator("second");
    assert!(
        second.tick("evm").await.unwrap().is_empty(),
        "still in the overlap"
    );
    let status = second.status("evm").await.unwrap();
    assert_eq!(
        status.versions[0].stage,
        Lifecycle::Overlapping {
            until_ms: Some(created + 7 * 86_400_000)
        }
    );
    let enabled = |id: &str| {
        let client = client.clone();
        let id = id.to_owned();
        async move {
            client
                .describe_key()
                .key_id(id)
                .send()
                .await
                .unwrap()
                .key_metadata
                .unwrap()
                .enabled()
        }
    };
    assert!(
        enabled(&v1.key_id).await,
        "not disabled before the overlap ends"
    );
    clock.advance(day * 5);
    let events = second.tick("evm").await.unwrap();
    assert!(
        matches!(events.as_slice(), [RotationEvent::Disabled { version, .. }] if *version == v1.key_id),
        "{events:?}"
    );
    assert!(!enabled(&v1.key_id).await, "KMS disabled the old key");
}
