//! The Python AWS Encryption SDK for keymgr-envelope's interop tests: a pinned
//! `aws-encryption-sdk` (keymgr-testkit/esdk/constraints.txt) installed into moto's
//! virtualenv, whose boto3/botocore/cryptography pins it shares, and run through
//! `keymgr-testkit/esdk/esdk_cli.py`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

/// The release the interop tests were written against.
pub(crate) const ESDK_VERSION: &str = "4.0.7";
/// The Material Providers Library release (raw AES keyring), pinned with its
/// dependencies in the constraints file.
const MPL_VERSION: &str = "1.11.3";

fn constraints_file(root: &Path) -> PathBuf {
    root.join("keymgr-testkit")
        .join("esdk")
        .join("constraints.txt")
}

fn script(root: &Path) -> PathBuf {
    root.join("keymgr-testkit").join("esdk").join("esdk_cli.py")
}

/// Installs `aws-encryption-sdk==ESDK_VERSION` into moto's virtualenv (which must exist:
/// call after `moto::provision`), only if missing or its constraints changed. Returns
/// the variables the interop tests read.
pub(crate) fn provision(root: &Path) -> Result<Vec<(String, String)>> {
    let python = crate::moto::venv_python(root);
    let constraints = constraints_file(root);
    let pinned = std::fs::read_to_string(&constraints)
        .with_context(|| format!("reading {}", constraints.display()))?;
    let stamp = crate::moto::venv_dir(root).join("keymgr-esdk-constraints.txt");
    let in_sync = std::fs::read_to_string(&stamp).is_ok_and(|s| s == pinned);
    if !in_sync || !installed(&python) {
        let spec = format!("aws-encryption-sdk=={ESDK_VERSION}");
        let mpl = format!("aws-cryptographic-material-providers=={MPL_VERSION}");
        eprintln!("==> pip install {spec} {mpl} -c {}", constraints.display());
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
            .args([&spec, &mpl])
            .status()
            .with_context(|| format!("could not run {}", python.display()))?;
        if !status.success() {
            bail!("pip install {spec} failed ({status})");
        }
        if !installed(&python) {
            bail!("{spec} was installed but `import aws_encryption_sdk` still fails");
        }
        std::fs::write(&stamp, &pinned).with_context(|| format!("writing {}", stamp.display()))?;
    }
    Ok(vec![
        ("KEYMGR_ESDK_PYTHON".into(), python.display().to_string()),
        (
            "KEYMGR_ESDK_SCRIPT".into(),
            script(root).display().to_string(),
        ),
    ])
}

fn installed(python: &Path) -> bool {
    let probe = format!(
        "import sys, aws_encryption_sdk, importlib.metadata as m; \
         import aws_cryptographic_material_providers.mpl; \
         sys.exit(0 if aws_encryption_sdk.__version__ == '{ESDK_VERSION}' \
         and m.version('aws-cryptographic-material-providers') == '{MPL_VERSION}' else 1)"
    );
    Command::new(python)
        .args(["-c", &probe])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}
