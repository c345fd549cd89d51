//! Reading an audit log back in the EVM tests.

use std::path::Path;

use keymgr_audit::{ChainKey, TimeRange, Verifier};
use serde_json::Value;

/// Every entry, through `keymgr_audit::export` (which verifies the chain as it reads).
pub fn exported(dir: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    let report = keymgr_audit::export(
        &[dir],
        TimeRange::parse(None, None).unwrap(),
        &Verifier::new(ChainKey::sha256()),
        &mut out,
    )
    .unwrap();
    assert!(report.broken.is_none(), "{report:?}");
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
