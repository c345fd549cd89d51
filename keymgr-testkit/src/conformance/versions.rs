//! The key versions contract written on [`KeyBackend`] ("Key versions"), and the error
//! kinds every backend shares.
//!
//! Signatures are checked with k256 and ed25519-dalek from the public key the backend
//! reported for the version that signed, not with keymgr's own verification.

use ed25519_dalek::Verifier as _;
use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
use keymgr_core::{
    Error, ErrorKind, HealthStatus, KeyBackend, KeyRef, KeyVersion, PublicKey, SignPayload,
    VersionState,
};

use super::random;

/// Checks the versions contract on the rotatable key `name`, which gains one version.
///
/// In order: the listing (oldest first, exactly one current, ids that round-trip through
/// text); `list_versions`/`create_version` of a `NAME@VERSION` or malformed name are
/// `InvalidInput`; `create_version` (new, current, enabled, same algorithm, nothing deleted or
/// changed, a new key pair, the old version still signs); disabling the current version
/// (named or unversioned) is `InvalidInput`; disabling the old one makes `sign` refuse
/// with `AccessDenied` (not retryable) while `public_key` still answers; disabling it
/// again is a no-op. Panics with a description on the first failure.
///
/// `fresh` is a second instance over the same keys (a new process, in effect) that has
/// not read `name`'s current version: once that version is disabled, `fresh` must still
/// answer its `public_key` (from the service, not a cache filled while it was enabled),
/// list it disabled and refuse to sign with it. Pass `backend` again only for a backend
/// that keeps no per-instance state.
pub async fn versions(backend: &dyn KeyBackend, fresh: &dyn KeyBackend, name: &str) {
    let b = backend.name().to_owned();
    let unversioned = KeyRef::new(name);
    let before = listing(backend, name).await;
    let old = current_of(&b, &before).clone();
    let old_pk = backend.public_key(&old.key).await.expect("public_key(old)");
    assert_eq!(
        backend.public_key(&unversioned).await.expect("public_key"),
        old_pk,
        "{b}: the unversioned name must resolve to the version listed as current"
    );

    // Those calls take a key name; a version or a malformed name is refused.
    let versioned = format!("{name}@{}", old.key.version().unwrap_or("1"));
    for bad in [versioned.as_str(), "", "a@b@c"] {
        let e = backend
            .list_versions(bad)
            .await
            .expect_err("not a key name");
        assert_eq!(
            e.kind(),
            ErrorKind::InvalidInput,
            "{b}: list_versions({bad:?})"
        );
        let e = backend
            .create_version(bad)
            .await
            .expect_err("not a key name");
        assert_eq!(
            e.kind(),
            ErrorKind::InvalidInput,
            "{b}: create_version({bad:?})"
        );
    }

    let created = backend
        .create_version(name)
        .await
        .unwrap_or_else(|e| panic!("{b}: create_version({name}) failed: {e}"));
    assert_eq!(created.key.name(), name, "{b}: {created:?}");
    assert!(
        created.current && created.state == VersionState::Enabled,
        "{b}: a created version is current and enabled: {created:?}"
    );
    assert_eq!(created.algorithm, old.algorithm, "{b}: same algorithm");
    assert!(
        before.iter().all(|v| v.key != created.key),
        "{b}: create_version reused a version id: {created:?}"
    );
    let after = listing(backend, name).await;
    assert_eq!(
        summary(&after[..after.len() - 1]),
        summary(&before),
        "{b}: create_version must not delete or change earlier versions"
    );
    assert_eq!(
        after.last().map(|v| &v.key),
        Some(&created.key),
        "{b}: the new version is listed last"
    );
    assert_eq!(current_of(&b, &after).key, created.key, "{b}: new current");
    let new_pk = backend.public_key(&unversioned).await.expect("public_key");
    assert_eq!(
        backend.public_key(&created.key).await.expect("public_key"),
        new_pk
    );
    assert_ne!(new_pk, old_pk, "{b}: a new version is a new key pair");
    sign_and_verify(backend, &unversioned, &new_pk).await;
    sign_and_verify(backend, &created.key, &new_pk).await;
    // Overlap: the previous version still signs when named.
    sign_and_verify(backend, &old.key, &old_pk).await;

    for current in [&created.key, &unversioned] {
        let e = backend
            .disable_version(current)
            .await
            .expect_err("disabling the current version must be refused");
        assert_eq!(
            e.kind(),
            ErrorKind::InvalidInput,
            "{b}: disable_version({current}): {e}"
        );
    }
    sign_and_verify(backend, &unversioned, &new_pk).await;

    for attempt in ["first", "second (a no-op)"] {
        backend
            .disable_version(&old.key)
            .await
            .unwrap_or_else(|e| panic!("{b}: {attempt} disable_version({}): {e}", old.key));
        disabled_refuses_to_sign(backend, &old.key).await;
        assert_eq!(
            backend
                .public_key(&old.key)
                .await
                .expect("public_key(disabled)"),
            old_pk,
            "{b}: a disabled version's public key stays readable"
        );
        let listed = listing(backend, name).await;
        assert_eq!(listed.len(), after.len(), "{b}: disabling deletes nothing");
        let state = listed.iter().find(|v| v.key == old.key).map(|v| v.state);
        assert_eq!(state, Some(VersionState::Disabled), "{b}: after {attempt}");
        assert_eq!(current_of(&b, &listed).key, created.key);
        disabled_answers_public_key(fresh, &old.key, &old_pk).await;
    }
    sign_and_verify(backend, &unversioned, &new_pk).await;
}

/// The disabled version `key` still answers `public_key` with `expected` (old
/// signatures stay verifiable), is listed disabled, and refuses to sign.
pub async fn disabled_answers_public_key(
    backend: &dyn KeyBackend,
    key: &KeyRef,
    expected: &PublicKey,
) {
    let b = backend.name().to_owned();
    let pk = backend
        .public_key(key)
        .await
        .unwrap_or_else(|e| panic!("{b}: public_key({key}) of a disabled version: {e:?}"));
    assert_eq!(&pk, expected, "{b}: the disabled version's public key");
    let listed = listing(backend, key.name()).await;
    let state = listed.iter().find(|v| &v.key == key).map(|v| v.state);
    assert_eq!(
        state,
        Some(VersionState::Disabled),
        "{b}: {key} is listed disabled"
    );
    disabled_refuses_to_sign(backend, key).await;
}

/// A disabled version refuses `sign` with `AccessDenied` naming it, not retryable.
pub async fn disabled_refuses_to_sign(backend: &dyn KeyBackend, key: &KeyRef) {
    let pk = backend.public_key(key).await.expect("public_key(disabled)");
    let e = backend
        .sign(key, &payload_for(&pk))
        .await
        .expect_err("a disabled version must not sign");
    let Error::AccessDenied { key: named, .. } = &e else {
        panic!(
            "{}: sign({key}) with a disabled version: {e:?}",
            backend.name()
        )
    };
    assert!(named.contains(key.name()), "names the key: {e}");
    assert!(!e.is_retryable(), "{e}");
}

/// A backend without rotation (keys managed outside keymgr): `create_version` and
/// `disable_version` are `Unsupported` with a reason, and `name` lists exactly one
/// version, current and enabled, that signs. Nothing changes.
pub async fn manual_rotation(backend: &dyn KeyBackend, name: &str) {
    let b = backend.name().to_owned();
    let listed = listing(backend, name).await;
    assert_eq!(listed.len(), 1, "{b}: one version: {listed:?}");
    let only = current_of(&b, &listed).clone();
    assert_eq!(only.state, VersionState::Enabled);
    let pk = backend
        .public_key(&KeyRef::new(name))
        .await
        .expect("public_key");
    assert_eq!(backend.public_key(&only.key).await.expect("public_key"), pk);

    let refusals = [
        ("create_version", backend.create_version(name).await.err()),
        (
            "disable_version",
            backend.disable_version(&only.key).await.err(),
        ),
    ];
    for (call, e) in refusals {
        let Some(Error::Unsupported {
            backend: who,
            operation,
            reason,
            ..
        }) = &e
        else {
            panic!("{b}: {call} must be Unsupported with a reason: {e:?}")
        };
        assert_eq!((who.as_str(), *operation), (b.as_str(), call));
        assert!(reason.len() > 10, "{b}: {call}: say why: {reason:?}");
    }
    assert_eq!(summary(&listing(backend, name).await), summary(&listed));
    sign_and_verify(backend, &KeyRef::new(name), &pk).await;
}

/// A backend whose service cannot be reached: `public_key` and `sign` of `key` are
/// `Unavailable` and retryable, and health says `Unhealthy`.
pub async fn unreachable(backend: &dyn KeyBackend, key: &KeyRef) {
    let b = backend.name().to_owned();
    let errors = [
        ("public_key", backend.public_key(key).await.err()),
        (
            "sign",
            backend
                .sign(key, &SignPayload::Prehash(random()))
                .await
                .err(),
        ),
    ];
    for (call, e) in errors {
        let e = e.unwrap_or_else(|| panic!("{b}: {call} succeeded without its service"));
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{b}: {call}: {e:?}");
        assert!(e.is_retryable(), "{b}: {call}: {e}");
    }
    let report = backend.health().await;
    assert_eq!(report.status, HealthStatus::Unhealthy, "{b}: {report:?}");
}

/// `scheme://127.0.0.1:PORT` where nothing listens (a port the OS just handed out and
/// took back), for backends that [`unreachable`] checks.
pub fn closed_endpoint(scheme: &str) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let port = listener.local_addr().expect("local address").port();
    drop(listener);
    format!("{scheme}://127.0.0.1:{port}")
}

/// `list_versions(name)` with the invariants every listing keeps: at least one version,
/// all of `name`, with a version id that round-trips through text, oldest first.
async fn listing(backend: &dyn KeyBackend, name: &str) -> Vec<KeyVersion> {
    let b = backend.name();
    let vs = backend
        .list_versions(name)
        .await
        .unwrap_or_else(|e| panic!("{b}: list_versions({name}) failed: {e}"));
    assert!(!vs.is_empty(), "{b}: {name} has no versions");
    for v in &vs {
        assert_eq!(v.key.name(), name, "{b}: {v:?}");
        assert!(v.key.version().is_some(), "{b}: a listed version has an id");
        assert_eq!(KeyRef::from(v.key.to_string()), v.key, "{b}: {v:?}");
    }
    let times: Vec<u64> = vs.iter().filter_map(|v| v.created_at_ms).collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "{b}: versions must be listed oldest first: {vs:?}"
    );
    vs
}

/// The one version marked current.
fn current_of<'a>(backend: &str, vs: &'a [KeyVersion]) -> &'a KeyVersion {
    let current: Vec<&KeyVersion> = vs.iter().filter(|v| v.current).collect();
    match current.as_slice() {
        [one] => one,
        _ => panic!("{backend}: exactly one version must be current: {vs:?}"),
    }
}

fn summary(vs: &[KeyVersion]) -> Vec<(KeyRef, VersionState)> {
    vs.iter().map(|v| (v.key.clone(), v.state)).collect()
}

fn payload_for(pk: &PublicKey) -> SignPayload {
    match pk {
        PublicKey::Ed25519(_) => SignPayload::message(random::<48>().to_vec()),
        _ => SignPayload::Prehash(random()),
    }
}

/// Signs a fresh payload with `key` and verifies it independently against `pk`.
async fn sign_and_verify(backend: &dyn KeyBackend, key: &KeyRef, pk: &PublicKey) {
    let payload = payload_for(pk);
    let sig = backend
        .sign(key, &payload)
        .await
        .unwrap_or_else(|e| panic!("{}: sign({key}) failed: {e}", backend.name()));
    let ok = match (&payload, pk) {
        (SignPayload::Prehash(h), PublicKey::Secp256k1(_)) => {
            let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(&pk.to_bytes()).expect("SEC1");
            let raw = sig.as_secp256k1().expect("a secp256k1 signature");
            let s = k256::ecdsa::Signature::from_slice(&raw.to_bytes()).expect("r ‖ s");
            vk.verify_prehash(h, &s).is_ok()
        }
        (SignPayload::Message(m), PublicKey::Ed25519(_)) => {
            let bytes: [u8; 32] = pk.to_bytes().try_into().expect("32-byte key");
            let vk = ed25519_dalek::VerifyingKey::from_bytes(&bytes).expect("Ed25519 key");
            let raw = sig.as_ed25519().expect("an Ed25519 signature").to_bytes();
            vk.verify(m, &ed25519_dalek::Signature::from_bytes(&raw))
                .is_ok()
        }
        _ => false,
    };
    assert!(
        ok,
        "{}: the signature by {key} does not verify against that version's public key",
        backend.name()
    );
}
