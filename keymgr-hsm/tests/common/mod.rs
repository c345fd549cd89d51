//! Shared set-up for the SoftHSM2 tests: the token `cargo xtask test` provisions.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::{SystemTime, UNIX_EPOCH};

use keymgr_hsm::{HsmBackend, HsmConfig};

/// Label of the P-256 key provisioned for the "wrong curve" test.
pub const P256_LABEL_VAR: &str = "KEYMGR_TEST_HSM_P256_LABEL";
/// Label carried by two key pairs, for the "label collision" test.
pub const DUP_LABEL_VAR: &str = "KEYMGR_TEST_HSM_DUP_LABEL";

const HOW: &str =
    "run `cargo xtask test`, or `eval \"$(cargo xtask provision)\"` before `cargo test`";

/// The provisioned configuration, or `None` (after `skip_or_fail`) when SoftHSM2 is not set up.
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
    Some(HsmConfig::from_env().expect("the provisioned HSM_* variables are valid"))
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
