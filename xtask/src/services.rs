//! `cargo xtask provision`: local stand-ins for an operator to try keymgr on, left
//! running until `cargo xtask provision --stop`:
//!
//! - a SoftHSM2 token `keymgr-demo` with keys `keymgr-demo-evm` (secp256k1) and
//!   `keymgr-demo-xrp` (Ed25519), apart from the tests' token;
//! - moto's KMS server (patched: `MessageType=DIGEST`, Ed25519) with `alias/keymgr-demo-evm`
//!   and `alias/keymgr-demo-xrp`, detached, its pid in `target/keymgr-test/provision/moto.pid`.
//!
//! The variables to use them are printed and saved to `target/keymgr-test/provision/demo.env`
//! (files 0600, directory 0700). The token is files only: `--stop` stops moto (whose keys
//! live in its memory) and leaves the token for the next run.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

/// Where the pid file, the variables and moto's log live.
pub(crate) fn state_dir(root: &Path) -> PathBuf {
    root.join("target/keymgr-test/provision")
}

/// The saved variables (`. demo.env` in a shell).
pub(crate) fn env_file(root: &Path) -> PathBuf {
    state_dir(root).join("demo.env")
}

fn pid_file(root: &Path) -> PathBuf {
    state_dir(root).join("moto.pid")
}

/// What `cargo xtask provision` started: the variables, and whether moto was already up.
pub(crate) struct Provisioned {
    /// `(name, value)` for both backends, without `KEY_BACKEND` (chosen per command).
    pub(crate) vars: Vec<(String, String)>,
    /// moto's pid.
    pub(crate) pid: u32,
    /// False when a server from an earlier `provision` was still running and is reused.
    pub(crate) started: bool,
}

/// Provisions the demo token, starts moto unless a previous one still runs, and saves
/// the variables.
pub(crate) fn start(root: &Path) -> Result<Provisioned> {
    private_dir(&state_dir(root))?;
    let mut vars = crate::softhsm::provision_demo(root).context("provisioning SoftHSM2")?;
    let (pid, endpoint, started) = match running(root)? {
        Some((pid, endpoint)) => (pid, endpoint, false),
        None => {
            let log = state_dir(root).join("moto-demo.log");
            let (pid, endpoint) =
                crate::moto::launch_detached(root, &log).context("starting moto's KMS server")?;
            write_private(&pid_file(root), &format!("{pid}\n{endpoint}\n"))?;
            (pid, endpoint, true)
        }
    };
    vars.extend(
        [
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
            ("AWS_REGION", crate::moto::REGION),
            // moto accepts any credentials; these are not secrets.
            ("AWS_ACCESS_KEY_ID", "keymgr-test"),
            ("AWS_SECRET_ACCESS_KEY", "keymgr-test"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_KMS_EVM_KEY_ID", "alias/keymgr-demo-evm"),
            ("AWS_KMS_XRP_KEY_ID", "alias/keymgr-demo-xrp"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    write_private(&env_file(root), &exports(&vars))?;
    Ok(Provisioned { vars, pid, started })
}

/// Keeps the stand-ins up for a test run: stops moto on drop if this run started it
/// (an operator's running server is left alone).
pub(crate) struct ForTests {
    root: PathBuf,
    started: bool,
}

impl ForTests {
    pub(crate) fn start(root: &Path) -> Result<Self> {
        let p = start(root)?;
        Ok(Self {
            root: root.to_path_buf(),
            started: p.started,
        })
    }
}

impl Drop for ForTests {
    fn drop(&mut self) {
        if self.started
            && let Err(e) = stop(&self.root)
        {
            eprintln!("==> could not stop the provisioned moto server: {e:#}");
        }
    }
}

/// Stops moto if this tool started it (checked through `/proc/PID/cmdline`, so a
/// recycled pid is never signalled) and removes the pid and variables files.
pub(crate) fn stop(root: &Path) -> Result<Option<u32>> {
    let stopped = match running(root)? {
        Some((pid, _)) => {
            let status = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .context("running kill")?;
            if !status.success() {
                bail!("kill -TERM {pid} failed ({status})");
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while is_ours(pid) {
                if Instant::now() > deadline {
                    bail!("moto (pid {pid}) did not stop within 10 s after SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Some(pid)
        }
        None => None,
    };
    for file in [pid_file(root), env_file(root)] {
        match fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", file.display())),
        }
    }
    Ok(stopped)
}

/// `(pid, endpoint)` of the moto server a previous `provision` started, if it still runs.
fn running(root: &Path) -> Result<Option<(u32, String)>> {
    let text = match fs::read_to_string(pid_file(root)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).context("reading the moto pid file"),
    };
    let mut lines = text.lines();
    let pid = lines.next().and_then(|l| l.trim().parse::<u32>().ok());
    let endpoint = lines.next().map(str::trim).unwrap_or_default();
    Ok(match pid {
        Some(pid) if is_ours(pid) && !endpoint.is_empty() => Some((pid, endpoint.to_owned())),
        _ => None,
    })
}

/// Whether `pid` is alive and is our detached moto launcher.
fn is_ours(pid: u32) -> bool {
    fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
        let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
        args.iter().any(|a| a.ends_with(b"kms_server.py")) && args.contains(&&b"--detached"[..])
    })
}

/// `export NAME='value'` lines (single-quoted for the shell).
pub(crate) fn exports(vars: &[(String, String)]) -> String {
    vars.iter()
        .map(|(k, v)| format!("export {k}='{}'\n", v.replace('\'', r"'\''")))
        .collect()
}

/// Creates `dir` (and parents) with mode 0700; refuses a symlink in its place.
pub(crate) fn private_dir(dir: &Path) -> Result<()> {
    if fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink()) {
        bail!("{} is a symlink; refusing to use it", dir.display());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// Replaces `path` with `content`, mode 0600; never follows a symlink at `path`.
fn write_private(path: &Path, content: &str) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(_) => fs::remove_file(path).with_context(|| format!("replacing {}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("checking {}", path.display())),
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(content.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_quote_for_the_shell() {
        let vars = [("A".to_owned(), "x y'z".to_owned())];
        assert_eq!(exports(&vars), "export A='x y'\\''z'\n");
    }
}
