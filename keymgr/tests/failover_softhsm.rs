//! Configured failover (`KEY_BACKENDS`) with real members: one secp256k1 key imported
//! into two SoftHSM2 tokens and held by the env backend. Every signature is checked with
//! k256 against the imported key, and its address against the key's own address.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../keymgr-hsm/tests/common/mod.rs"]
mod common;

use std::collections::HashMap;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::object::{Attribute, KeyType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use k256::ecdsa::SigningKey;
use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
use keymgr::layer::{BreakerState, Failover};
use keymgr::{Error, ErrorKind, HealthStatus, KeyBackend as _, KeyRef, MemberConfig, SignPayload};

const TOKEN2_VAR: &str = "KEYMGR_TEST_HSM_TOKEN2_LABEL";
/// DER OID of secp256k1 (1.3.132.0.10).
const SECP256K1_PARAMS: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a];

/// Imports `key` into the token labelled `token` as a key pair labelled `label`.
fn import(ctx: &Pkcs11, token: &str, label: &str, key: &SigningKey) {
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| {
            ctx.get_token_info(*s)
                .map(|i| i.label().trim() == token)
                .unwrap_or(false)
        })
        .unwrap_or_else(|| panic!("token {token} is provisioned"));
    let session = ctx.open_rw_session(slot).unwrap();
    let pin = AuthPin::from(common::var(keymgr_hsm::HSM_PIN));
    match session.login(UserType::User, Some(&pin)) {
        Ok(())
        | Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::UserAlreadyLoggedIn, _)) => {
        }
        Err(e) => panic!("C_Login on {token}: {e}"),
    }
    let point = key.verifying_key().to_encoded_point(false);
    // CKA_EC_POINT is the DER OCTET STRING of the uncompressed point.
    let mut ec_point = vec![0x04, 65];
    ec_point.extend_from_slice(point.as_bytes());
    let common_attrs = |class| {
        vec![
            Attribute::Class(class),
            Attribute::KeyType(KeyType::EC),
            Attribute::Token(true),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(b"failover".to_vec()),
            Attribute::EcParams(SECP256K1_PARAMS.to_vec()),
        ]
    };
    let mut private = common_attrs(ObjectClass::PRIVATE_KEY);
    private.extend([
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Sign(true),
        Attribute::Value(key.to_bytes().to_vec()),
    ]);
    let mut public = common_attrs(ObjectClass::PUBLIC_KEY);
    public.extend([Attribute::Verify(true), Attribute::EcPoint(ec_point)]);
    session.create_object(&private).unwrap();
    session.create_object(&public).unwrap();
    // Log out, so a member configured with a wrong PIN really fails to log in.
    session.logout().unwrap();
}

type Vars = HashMap<String, String>;

struct Setup {
    vars: Vars,
    key: SigningKey,
    /// Keeps the module initialized for the test (dropping it finalizes).
    _pkcs11: Pkcs11,
}

impl Setup {
    fn with(&self, changes: &[(&str, &str)]) -> Vars {
        let mut vars = self.vars.clone();
        for (k, v) in changes {
            vars.insert((*k).to_owned(), (*v).to_owned());
        }
        vars
    }
}

fn reader(vars: &Vars) -> impl Fn(&str) -> Option<String> + Sync + '_ {
    |name| vars.get(name).cloned()
}

/// The same fresh key in both tokens and in the env member, or `None` (skipped) without
/// SoftHSM2.
fn setup() -> Option<Setup> {
    common::config()?;
    let token2 = std::env::var(TOKEN2_VAR).ok().or_else(|| {
        keymgr_testkit::skip_or_fail(
            &format!("second SoftHSM2 token ({TOKEN2_VAR} unset)"),
            "run `cargo xtask provision`",
        );
        None
    })?;
    let token1 = common::var(keymgr_hsm::HSM_TOKEN_LABEL);
    let key = SigningKey::random(&mut rand_core::OsRng);
    let label = common::unique("failover");
    let ctx = Pkcs11::new(common::var(keymgr_hsm::HSM_PKCS11_LIBRARY_PATH)).unwrap();
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(())
        | Err(cryptoki::error::Error::Pkcs11(
            cryptoki::error::RvError::CryptokiAlreadyInitialized,
            _,
        )) => {}
        Err(e) => panic!("C_Initialize: {e}"),
    }
    import(&ctx, &token1, &label, &key);
    import(&ctx, &token2, &label, &key);
    let library = common::var(keymgr_hsm::HSM_PKCS11_LIBRARY_PATH);
    let pin = common::var(keymgr_hsm::HSM_PIN);
    let vars = [
        ("KEY_BACKENDS", "hsm,hsm:2,env"),
        ("HSM_PKCS11_LIBRARY_PATH", library.as_str()),
        ("HSM_TOKEN_LABEL", token1.as_str()),
        ("HSM_PIN", pin.as_str()),
        ("HSM_EVM_KEY_LABEL", label.as_str()),
        ("HSM_2_PKCS11_LIBRARY_PATH", library.as_str()),
        ("HSM_2_TOKEN_LABEL", token2.as_str()),
        ("HSM_2_PIN", pin.as_str()),
        ("HSM_2_EVM_KEY_LABEL", label.as_str()),
        ("KEYMGR_HEALTH_KEYS", "evm"),
        ("KEYMGR_HEALTH_CACHE_SECS", "0"),
        ("KEYMGR_RETRY_MAX", "0"),
        ("KEYMGR_BREAKER_FAILURES", "1"),
        ("KEYMGR_RATE_LIMIT_PER_MINUTE", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .chain([(
        "EVM_PRIVATE_KEY".to_owned(),
        format!("0x{}", hex::encode(key.to_bytes())),
    )])
    .collect();
    Some(Setup {
        vars,
        key,
        _pkcs11: ctx,
    })
}

fn address_of(key: &SigningKey) -> String {
    keymgr::PublicKey::Secp256k1(*key.verifying_key())
        .evm_address()
        .unwrap()
}

async fn assert_signs_with(failover: &Failover, key: &SigningKey) {
    let digest = common::random32();
    let sig = failover
        .sign(&KeyRef::new("evm"), &SignPayload::Prehash(digest))
        .await
        .unwrap();
    let s = k256::ecdsa::Signature::from_slice(&sig.to_bytes()).unwrap();
    key.verifying_key()
        .verify_prehash(&digest, &s)
        .expect("verifies under the imported key");
    assert_eq!(sig.public_key().evm_address().unwrap(), address_of(key));
}

async fn failover(vars: &Vars) -> keymgr::Result<Failover> {
    MemberConfig::from_vars(&reader(vars))
        .unwrap()
        .unwrap()
        .build()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsm_hsm_env_members_fail_over_to_the_same_address() {
    let Some(setup) = setup() else { return };
    let key = setup.key.clone();

    // Both tokens refuse the login (wrong PINs): the env member signs, same address.
    // (First, while no member of this process has logged in to either token.)
    let f = failover(&setup.with(&[("HSM_PIN", "not-the-pin"), ("HSM_2_PIN", "nor-this-one")]))
        .await
        .unwrap();
    assert_signs_with(&f, &key).await;
    let h = f.health().await;
    assert_eq!(h.status, HealthStatus::Degraded, "{h:?}");
    let states: Vec<_> = h.components.iter().map(|c| c.status).collect();
    assert_eq!(
        states,
        [
            HealthStatus::Unhealthy,
            HealthStatus::Unhealthy,
            HealthStatus::Healthy
        ]
    );

    // All up: the first member signs; health is healthy.
    let all_up = failover(&setup.vars).await.unwrap();
    assert_signs_with(&all_up, &key).await;
    let h = all_up.health().await;
    assert_eq!(h.status, HealthStatus::Healthy, "{h:?}");
    let names: Vec<_> = h.components.iter().map(|c| c.backend.as_str()).collect();
    assert_eq!(names, ["hsm", "hsm:2", "env"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_pin_on_the_first_token_fails_over_to_the_second() {
    let Some(setup) = setup() else { return };
    let f = failover(&setup.with(&[("HSM_PIN", "not-the-pin")]))
        .await
        .unwrap();
    assert_signs_with(&f, &setup.key).await;
    let h = f.health().await;
    assert_eq!(h.status, HealthStatus::Degraded, "{h:?}");
    assert_eq!(h.components[0].status, HealthStatus::Unhealthy);
    assert_eq!(h.components[0].breaker, Some(BreakerState::Open), "{h:?}");
    assert!(h.components[0].next_trial_ms.is_some());
    assert!(
        h.components[0]
            .detail
            .as_deref()
            .unwrap()
            .contains("could not be started"),
        "{h:?}"
    );
    assert_eq!(h.components[1].status, HealthStatus::Healthy);
    assert!(!format!("{h:?}").contains("not-the-pin"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_with_another_key_is_refused_at_start_up() {
    let Some(setup) = setup() else { return };
    let other = SigningKey::random(&mut rand_core::OsRng);
    let other_hex = format!("0x{}", hex::encode(other.to_bytes()));
    let mixed = setup.with(&[("EVM_PRIVATE_KEY", other_hex.as_str())]);
    let e = failover(&mixed).await.unwrap_err();
    let Error::Config { variable, .. } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(variable, "KEY_BACKENDS");
    assert!(e.to_string().contains(&address_of(&other)), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_member_down_gives_the_aggregated_error_and_a_down_health() {
    let Some(setup) = setup() else { return };
    let down = setup.with(&[
        ("KEY_BACKENDS", "hsm,hsm:2"),
        ("HSM_PIN", "not-the-pin"),
        ("HSM_2_PIN", "not-the-pin"),
    ]);
    // Start-up refuses a failover where no member starts ...
    let e = failover(&down).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    // ... and health still reports each member, saying why.
    let config = MemberConfig::from_vars(&reader(&down)).unwrap().unwrap();
    let f = config.build_for_health().await.unwrap();
    let h = f.health().await;
    assert_eq!(h.status, HealthStatus::Unhealthy);
    assert_eq!(h.components.len(), 2);
    let e = f
        .sign(&KeyRef::new("evm"), &SignPayload::Prehash([1; 32]))
        .await
        .unwrap_err();
    let failures = Failover::member_failures(&e).expect("one error listing each member");
    let members: Vec<_> = failures.failures().iter().map(|f| f.member()).collect();
    assert_eq!(members, ["hsm", "hsm:2"]);
    assert!(failures.failures().iter().all(|f| f.error().is_retryable()));
    // No secret in the error or the report.
    let pin = common::var(keymgr_hsm::HSM_PIN);
    for text in [format!("{e:?} {e}"), format!("{h:?}")] {
        assert!(
            !text.contains(&pin) && !text.contains("not-the-pin"),
            "{text}"
        );
    }
}

/// The directory of the token labelled `label` in this process's private SoftHSM2 token
/// copy (`common::config` gives every test process its own, so removing it is safe).
fn token_dir(label: &str) -> std::path::PathBuf {
    let conf = std::env::var("SOFTHSM2_CONF").unwrap();
    let text = std::fs::read_to_string(&conf).unwrap();
    let tokendir = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("directories.tokendir"))
        .and_then(|rest| rest.trim().strip_prefix('='))
        .map(|d| std::path::PathBuf::from(d.trim()))
        .expect("directories.tokendir in softhsm2.conf");
    // CKA_LABEL is stored blank-padded to 32 bytes in the token's token.object.
    let padded = format!("{label:<32}");
    std::fs::read_dir(&tokendir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|dir| {
            std::fs::read(dir.join("token.object"))
                .is_ok_and(|bytes| bytes.windows(padded.len()).any(|w| w == padded.as_bytes()))
        })
        .unwrap_or_else(|| panic!("no directory for token {label} in {}", tokendir.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_first_tokens_directory_under_a_running_member_fails_over() {
    let Some(setup) = setup() else { return };
    let key = setup.key.clone();
    let f = failover(&setup.vars).await.unwrap();
    assert_signs_with(&f, &key).await;
    assert_eq!(f.health().await.status, HealthStatus::Healthy);

    // The first member's token disappears while its sessions are open.
    let dir = token_dir(&common::var(keymgr_hsm::HSM_TOKEN_LABEL));
    std::fs::remove_dir_all(&dir).unwrap();

    for _ in 0..3 {
        assert_signs_with(&f, &key).await;
    }
    let h = f.health().await;
    assert_eq!(h.status, HealthStatus::Degraded, "{h:?}");
    let states: Vec<_> = h.components.iter().map(|c| c.status).collect();
    assert_eq!(
        states,
        [
            HealthStatus::Unhealthy,
            HealthStatus::Healthy,
            HealthStatus::Healthy
        ],
        "{h:?}"
    );
    assert_eq!(h.components[0].breaker, Some(BreakerState::Open), "{h:?}");
}
