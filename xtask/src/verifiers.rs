//! The independent verifiers keymgr's EVM and XRPL tests compute right values with:
//! eth-account, xrpl-py and coincurve, pinned in `keymgr-testkit/verifiers/constraints.txt`,
//! in their own virtualenv under `target/` (moto's pins differ, so they do not share one).
//! Tests find the interpreter through `KEYMGR_VERIFIERS_PYTHON`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

/// What pip installs (the constraints file pins everything they pull in).
const PACKAGES: &[&str] = &["eth-account==0.14.0", "xrpl-py==5.2.0", "coincurve==21.0.0"];
/// Imports that must work once installed.
const PROBE: &str = "import eth_account, xrpl, coincurve";

fn venv_dir(root: &Path) -> PathBuf {
    root.join("target")
        .join("keymgr-test")
        .join("verifiers-venv")
}

fn constraints_file(root: &Path) -> PathBuf {
    root.join("keymgr-testkit")
        .join("verifiers")
        .join("constraints.txt")
}

/// Creates the virtualenv and installs the pinned verifiers, each only if missing or
/// out of date. Returns `KEYMGR_VERIFIERS_PYTHON` for the tests.
pub(crate) fn provision(root: &Path) -> Result<Vec<(String, String)>> {
    let venv = venv_dir(root);
    let python = venv.join("bin").join("python");
    ensure_venv(&venv)?;
    let constraints = constraints_file(root);
    let pinned = std::fs::read_to_string(&constraints)
        .with_context(|| format!("reading {}", constraints.display()))?;
    let stamp = venv.join("keymgr-constraints.txt");
    let in_sync = std::fs::read_to_string(&stamp).is_ok_and(|s| s == pinned);
    if !in_sync || !installed(&python) {
        eprintln!(
            "==> pip install {} -c {} (into {})",
            PACKAGES.join(" "),
            constraints.display(),
            venv.display()
        );
        let status = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--quiet",
                "-c",
            ])
            .arg(&constraints)
            .args(PACKAGES)
            .status()
            .with_context(|| format!("could not run {}", python.display()))?;
        if !status.success() {
            bail!("pip install {} failed ({status})", PACKAGES.join(" "));
        }
        if !installed(&python) {
            bail!("the verifiers were installed but `{PROBE}` still fails");
        }
        std::fs::write(&stamp, &pinned).with_context(|| format!("writing {}", stamp.display()))?;
    }
    Ok(vec![(
        "KEYMGR_VERIFIERS_PYTHON".into(),
        python.display().to_string(),
    )])
}

/// Creates the virtualenv unless it has a Python already (as moto's is made).
fn ensure_venv(venv: &Path) -> Result<()> {
    if venv.join("bin").join("python").exists() {
        return Ok(());
    }
    if let Some(parent) = venv.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let system_python = std::env::var("KEYMGR_PYTHON").unwrap_or_else(|_| "python3".into());
    if !crate::moto::make_venv(&system_python, venv) {
        // Debian ships `venv` (ensurepip) separately from python3 itself.
        crate::apt_install(&["python3", "python3-venv"])
            .context("Python 3 with venv is needed for the test verifiers")?;
        // A half-made venv (no pip) would make the next attempt fail too.
        let _ = std::fs::remove_dir_all(venv);
        if !crate::moto::make_venv(&system_python, venv) {
            bail!(
                "{system_python} -m venv {} failed even after installing python3-venv",
                venv.display()
            );
        }
    }
    Ok(())
}

fn installed(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", PROBE])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}
