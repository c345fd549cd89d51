//! Shared set-up for the SoftHSM2 tests: the token `cargo xtask test` provisions.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
use keymgr_core::{PublicKey, SignPayload};
use keymgr_hsm::{HSM_PIN, HSM_SLOT_ID, HsmBackend, HsmConfig};
use rand_core::RngCore as _;

/// Label of the P-256 key provisioned for the "wrong curve" test.
pub const P256_LABEL_VAR: &str = "KEYMGR_TEST_HSM_P256_LABEL";
/// Label carried by two key pairs, for the "label collision" test.
pub const DUP_LABEL_VAR: &str = "KEYMGR_TEST_HSM_DUP_LABEL";

const HOW: &str =
    "run `cargo xtask test`, or `eval \"$(cargo xtask provision --test-env)\"` before `cargo test`";

/// The provisioned configuration, or `None` (after `skip_or_fail`) when SoftHSM2 is not
/// set up. The first call in a process points `SOFTHSM2_CONF` at a private copy of the
/// provisioned token (see [`private_token_copy`]).
pub fn config() -> Option<HsmConfig> {
    let needed = [
        "SOFTHSM2_CONF",
        keymgr_hsm::HSM_PKCS11_LIBRARY_PATH,
        keymgr_hsm::HSM_PIN,
        keymgr_hsm::HSM_EVM_KEY_LABEL,
        keymgr_hsm::HSM_XRP_KEY_LABEL,
        P256_LABEL_VAR,
        DUP_LABEL_VAR,
    ];
    if let Some(missing) = needed.iter().find(|v| std::env::var_os(v).is_none()) {
        keymgr_testkit::skip_or_fail(&format!("SoftHSM2 token ({missing} unset)"), HOW);
        return None;
    }
    static COPY: OnceLock<()> = OnceLock::new();
    COPY.get_or_init(private_token_copy);
    Some(HsmConfig::from_env().expect("the provisioned HSM_* variables are valid"))
}

/// Environment variable that makes [`config`] use `SOFTHSM2_CONF` as it is: set for
/// child processes that must share their parent's token on purpose.
pub const SHARE_TOKEN: &str = "KEYMGR_HSM_SHARE_TOKEN";

/// Gives this process its own copy of the provisioned token directory.
///
/// SoftHSM2 keeps tokens in files and rewrites them on `C_Login` and on every object
/// change; processes that log in or create objects on one token at the same moment
/// see `CKR_GENERAL_ERROR`, a missing token or a half-written object list. nextest
/// runs every test in its own process, so each process works on its own copy (the
/// concurrent-login test shares one on purpose, see `tests/login.rs`).
fn private_token_copy() {
    if std::env::var_os(SHARE_TOKEN).is_some() {
        return;
    }
    let conf = PathBuf::from(var("SOFTHSM2_CONF"));
    let text = std::fs::read_to_string(&conf).expect("read the provisioned softhsm2.conf");
    let tokendir = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("directories.tokendir"))
        .and_then(|rest| rest.trim().strip_prefix('='))
        .map(|d| PathBuf::from(d.trim()))
        .expect("directories.tokendir in softhsm2.conf");
    let run = conf
        .parent()
        .expect("conf has a directory")
        .join("runs")
        .join(unique("p"));
    let tokens = run.join("tokens");
    copy_dir(&tokendir, &tokens);
    let own_conf = run.join("softhsm2.conf");
    let own_text: String = text
        .lines()
        .map(|l| {
            if l.trim().starts_with("directories.tokendir") {
                format!("directories.tokendir = {}\n", tokens.display())
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&own_conf, own_text).expect("write the private softhsm2.conf");
    // SAFETY: called once per process through a OnceLock, before this process has
    // loaded the PKCS#11 module (every test gets its configuration from `config`), so
    // no thread is inside C code that reads the environment; Rust's own readers are
    // synchronized with `set_var` by std.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("SOFTHSM2_CONF", &own_conf);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the token copy");
    for entry in std::fs::read_dir(from).expect("read the provisioned token directory") {
        let entry = entry.expect("directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy a token file");
        }
    }
}

/// The provisioned backend (pool size from the environment or the default).
pub async fn backend() -> Option<HsmBackend> {
    let config = config()?;
    Some(
        HsmBackend::connect(config)
            .await
            .expect("connect to the provisioned SoftHSM2 token"),
    )
}

pub fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is set by provisioning"))
}

/// A label no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{nanos:x}", std::process::id())
}

pub fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut b);
    b
}

/// Verifies with k256 / ed25519-dalek, from the public key's bytes.
pub fn verify_independently(
    pk: &PublicKey,
    payload: &SignPayload,
    sig: &keymgr_core::VerifiedSignature,
) {
    match (pk, payload) {
        (PublicKey::Secp256k1(_), SignPayload::Prehash(h)) => {
            let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(&pk.to_bytes()).unwrap();
            let s = k256::ecdsa::Signature::from_slice(&sig.to_bytes()).unwrap();
            assert!(s.normalize_s().is_none(), "high-s signature");
            vk.verify_prehash(h, &s)
                .expect("secp256k1 signature verifies with k256");
        }
        (PublicKey::Ed25519(_), SignPayload::Message(m)) => {
            let vk = ed25519_dalek::VerifyingKey::from_bytes(&pk.to_bytes().try_into().unwrap())
                .unwrap();
            let s = ed25519_dalek::Signature::from_bytes(&sig.to_bytes());
            vk.verify_strict(m, &s)
                .expect("Ed25519 signature verifies with ed25519-dalek");
        }
        other => panic!("unexpected combination {other:?}"),
    }
}

/// A raw cryptoki session on the test token, sharing the process's login (open the
/// backend first so the module stays initialized).
pub fn raw_session() -> (Pkcs11, Session) {
    let ctx = Pkcs11::new(var(keymgr_hsm::HSM_PKCS11_LIBRARY_PATH)).unwrap();
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => panic!("C_Initialize: {e}"),
    }
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| s.id().to_string() == var(HSM_SLOT_ID))
        .expect("the provisioned slot");
    let session = ctx.open_rw_session(slot).unwrap();
    let pin = AuthPin::from(var(HSM_PIN));
    match session.login(UserType::User, Some(&pin)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(e) => panic!("C_Login: {e}"),
    }
    (ctx, session)
}

pub fn private_key_attrs(s: &Session, label: &str, types: &[AttributeType]) -> Vec<Attribute> {
    let keys = s
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .unwrap();
    assert_eq!(keys.len(), 1, "one private key labelled {label}");
    s.get_attributes(keys[0], types).unwrap()
}

/// An audit sink that keeps every record, for assertions.
#[derive(Debug, Default)]
pub struct Recorded(std::sync::Mutex<Vec<keymgr_core::AuditRecord>>);

impl Recorded {
    pub fn of(&self, event: keymgr_core::AuditEvent) -> Vec<keymgr_core::AuditRecord> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.event == event)
            .cloned()
            .collect()
    }
}

#[async_trait::async_trait]
impl keymgr_core::AuditSink for Recorded {
    async fn record(&self, record: keymgr_core::AuditRecord) -> keymgr_core::Result<()> {
        self.0.lock().unwrap().push(record);
        Ok(())
    }
}

/// Removes every object of the test key `base` from the token with raw cryptoki: its key
/// pairs (`base`, `base.vN`), disabled markers and creation records. Test clean-up
/// only: keymgr deletes nothing but disabled versions, through `delete_version`.
pub fn purge(base: &str) {
    let (_ctx, s) = raw_session();
    let ours = |label: &str| {
        let label = label
            .strip_prefix("keymgr.disabled:")
            .or_else(|| label.strip_prefix("keymgr.created:"))
            .unwrap_or(label);
        label == base
            || label
                .strip_prefix(base)
                .and_then(|rest| rest.strip_prefix(".v"))
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    for h in s.find_objects(&[]).unwrap() {
        let Ok(attrs) = s.get_attributes(h, &[AttributeType::Label]) else {
            continue;
        };
        let doomed = attrs
            .iter()
            .any(|a| matches!(a, Attribute::Label(l) if std::str::from_utf8(l).is_ok_and(ours)));
        if doomed {
            s.destroy_object(h).unwrap();
        }
    }
}
