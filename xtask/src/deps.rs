//! The dependency rule from SPEC.md: providers and adapters depend on `keymgr-core` only.
//!
//! Read from `cargo metadata` (normal dependencies; dev- and build-dependencies may use
//! the testkit and other crates).

use std::path::Path;

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

/// Providers (one per backend) and adapters (evm, xrp) that exist in the workspace.
const CORE_ONLY: &[&str] = &[
    "keymgr-env",
    "keymgr-hsm",
    "keymgr-aws",
    "keymgr-gcp",
    "keymgr-azure",
    "keymgr-evm",
    "keymgr-xrp",
];

pub(crate) fn check_core_only(root: &Path) -> Result<()> {
    eprintln!("==> dependency rule: providers and adapters depend on keymgr-core only");
    let out = crate::cargo()
        .current_dir(root)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let metadata: Value = serde_json::from_slice(&out.stdout).context("cargo metadata JSON")?;
    let violations = violations(&metadata);
    if !violations.is_empty() {
        bail!(
            "providers and adapters may depend on keymgr-core only (SPEC.md, workspace \
             layout); found: {}",
            violations.join("; ")
        );
    }
    Ok(())
}

/// `"keymgr-aws -> keymgr-rotation"` for every normal dependency of a provider or adapter
/// on a workspace crate other than `keymgr-core`.
fn violations(metadata: &Value) -> Vec<String> {
    let packages = metadata["packages"].as_array().cloned().unwrap_or_default();
    let members: Vec<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    let mut found = Vec::new();
    for package in &packages {
        let Some(name) = package["name"].as_str() else {
            continue;
        };
        if !CORE_ONLY.contains(&name) {
            continue;
        }
        for dep in package["dependencies"].as_array().into_iter().flatten() {
            let dep_name = dep["name"].as_str().unwrap_or_default();
            let normal = dep["kind"].is_null();
            if normal && dep_name != "keymgr-core" && members.contains(&dep_name) {
                found.push(format!("{name} -> {dep_name}"));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(deps: &[(&str, Option<&str>)]) -> Value {
        let deps: Vec<Value> = deps
            .iter()
            .map(|(n, kind)| serde_json::json!({ "name": n, "kind": kind }))
            .collect();
        serde_json::json!({ "packages": [
            { "name": "keymgr-core", "dependencies": [] },
            { "name": "keymgr-audit", "dependencies": [] },
            { "name": "keymgr-testkit", "dependencies": [] },
            { "name": "keymgr-aws", "dependencies": deps },
        ]})
    }

    #[test]
    fn core_and_external_crates_are_allowed() {
        let m = metadata(&[("keymgr-core", None), ("aws-sdk-kms", None)]);
        assert!(violations(&m).is_empty());
    }

    #[test]
    fn dev_dependencies_are_allowed() {
        let m = metadata(&[
            ("keymgr-testkit", Some("dev")),
            ("keymgr-audit", Some("dev")),
        ]);
        assert!(violations(&m).is_empty());
    }

    #[test]
    fn a_normal_dependency_on_another_workspace_crate_is_refused() {
        let m = metadata(&[("keymgr-core", None), ("keymgr-audit", None)]);
        assert_eq!(violations(&m), ["keymgr-aws -> keymgr-audit"]);
    }
}
