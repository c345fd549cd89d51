//! moto's AWS server for keymgr-aws's tests: a pinned `moto[server]` in a virtualenv
//! under `target/`, started through `keymgr-testkit/moto/kms_server.py`.
//!
//! Two servers run while the tests do, each on a free loopback port chosen by the OS:
//! - the patched one (`AWS_ENDPOINT_URL`): moto with KMS `Sign`/`Verify` honouring
//!   `MessageType=DIGEST`, Ed25519 keys and disabled-key checks, self-checked at start;
//! - plain moto as released (`KEYMGR_MOTO_PLAIN_ENDPOINT_URL`), for the test proving that
//!   its wrong-digest signature becomes an integrity error.

use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

/// The moto release the launcher's patches and self-check were written against.
pub(crate) const MOTO_VERSION: &str = "5.2.5";
/// Region the tests use.
pub(crate) const REGION: &str = "us-east-1";
/// Line the launcher prints once it serves (followed by the endpoint URL).
const READY: &str = "KEYMGR_MOTO_READY ";
/// How long a server may take to start and pass its self-check.
const START_TIMEOUT: Duration = Duration::from_secs(90);

fn state_dir(root: &Path) -> PathBuf {
    root.join("target").join("keymgr-test")
}

pub(crate) fn venv_dir(root: &Path) -> PathBuf {
    state_dir(root).join("moto-venv")
}

pub(crate) fn venv_python(root: &Path) -> PathBuf {
    venv_dir(root).join("bin").join("python")
}

fn launcher(root: &Path) -> PathBuf {
    root.join("keymgr-testkit")
        .join("moto")
        .join("kms_server.py")
}

/// Creates the virtualenv and installs `moto[server]==MOTO_VERSION` into it, each only if
/// missing. Returns the variables tests may use to find the launcher.
pub(crate) fn provision(workspace_root: &Path) -> Result<Vec<(String, String)>> {
    let venv = venv_dir(workspace_root);
    let python = venv_python(workspace_root);
    if !python.exists() {
        std::fs::create_dir_all(state_dir(workspace_root))
            .with_context(|| format!("creating {}", state_dir(workspace_root).display()))?;
        let system_python = std::env::var("KEYMGR_PYTHON").unwrap_or_else(|_| "python3".into());
        if !make_venv(&system_python, &venv) {
            // Debian ships `venv` (ensurepip) separately from python3 itself.
            crate::apt_install(&["python3", "python3-venv"])
                .context("Python 3 with venv is needed for moto")?;
            // A half-made venv (no pip) would make the next attempt fail too.
            let _ = std::fs::remove_dir_all(&venv);
            if !make_venv(&system_python, &venv) {
                bail!(
                    "{system_python} -m venv {} failed even after installing python3-venv",
                    venv.display()
                );
            }
        }
    }
    let constraints = constraints_file(workspace_root);
    let pinned = std::fs::read_to_string(&constraints)
        .with_context(|| format!("reading {}", constraints.display()))?;
    let stamp = venv.join("keymgr-constraints.txt");
    let in_sync = std::fs::read_to_string(&stamp).is_ok_and(|s| s == pinned);
    if !in_sync || !moto_installed(&python) {
        let spec = format!("moto[server]=={MOTO_VERSION}");
        eprintln!(
            "==> pip install {spec} -c {} (into {})",
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
            .arg(&spec)
            .status()
            .with_context(|| format!("could not run {}", python.display()))?;
        if !status.success() {
            bail!("pip install {spec} failed ({status})");
        }
        if !moto_installed(&python) {
            bail!("{spec} was installed but `import moto.server` still fails");
        }
        std::fs::write(&stamp, &pinned).with_context(|| format!("writing {}", stamp.display()))?;
    }
    Ok(vec![
        ("KEYMGR_MOTO_PYTHON".into(), python.display().to_string()),
        (
            "KEYMGR_MOTO_LAUNCHER".into(),
            launcher(workspace_root).display().to_string(),
        ),
    ])
}

/// The exact versions pip may install (moto's own dependencies included).
fn constraints_file(root: &Path) -> PathBuf {
    root.join("keymgr-testkit")
        .join("moto")
        .join("constraints.txt")
}

/// `python -m venv DIR`; false if Python is missing or venv fails.
pub(crate) fn make_venv(python: &str, venv: &Path) -> bool {
    eprintln!("==> {python} -m venv {}", venv.display());
    Command::new(python)
        .args(["-m", "venv"])
        .arg(venv)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn moto_installed(python: &Path) -> bool {
    let probe = format!(
        "import sys, moto, moto.server, boto3, cryptography; \
         sys.exit(0 if moto.__version__ == '{MOTO_VERSION}' else 1)"
    );
    Command::new(python)
        .args(["-c", &probe])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// One launcher process; killed (and reaped) on drop.
struct Launched {
    child: Child,
    endpoint: String,
}

impl Drop for Launched {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The running moto servers; both stop when this is dropped.
pub(crate) struct MotoServer {
    patched: Launched,
    plain: Launched,
    provisioned: Vec<(String, String)>,
}

impl MotoServer {
    /// Leaves both servers running after this process exits; returns their pids.
    pub(crate) fn detach(self) -> [u32; 2] {
        let pids = [self.patched.child.id(), self.plain.child.id()];
        // The launchers' Drop would kill them.
        std::mem::forget(self);
        pids
    }

    /// Variables for the test processes.
    pub(crate) fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.patched.endpoint.as_str()),
            (
                "KEYMGR_MOTO_PLAIN_ENDPOINT_URL",
                self.plain.endpoint.as_str(),
            ),
            ("AWS_REGION", REGION),
            // moto accepts any credentials; these are not secrets.
            ("AWS_ACCESS_KEY_ID", "keymgr-test"),
            ("AWS_SECRET_ACCESS_KEY", "keymgr-test"),
            // Keep the SDK's credential chain from probing instance metadata.
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .chain(self.provisioned.iter().cloned())
        .collect()
    }
}

/// Starts both servers (provisioning first if needed) and waits until they serve.
pub(crate) fn start(workspace_root: &Path) -> Result<MotoServer> {
    let provisioned = provision(workspace_root)?;
    let patched = launch(workspace_root, false)?;
    let plain = launch(workspace_root, true)?;
    eprintln!(
        "==> moto {MOTO_VERSION}: {} (DIGEST-honouring, self-checked), {} (plain)",
        patched.endpoint, plain.endpoint
    );
    Ok(MotoServer {
        patched,
        plain,
        provisioned,
    })
}

fn launch(root: &Path, plain: bool) -> Result<Launched> {
    let log_path = state_dir(root).join(if plain { "moto-plain.log" } else { "moto.log" });
    let mut cmd = Command::new(venv_python(root));
    cmd.arg(launcher(root)).stdin(Stdio::piped());
    if plain {
        cmd.arg("--plain");
    }
    // The launcher exits when its stdin closes: the pipe stays open in `child`.
    let (child, endpoint) = spawn_ready(&mut cmd, &log_path)?;
    Ok(Launched { child, endpoint })
}

/// Starts the patched server for operators (`cargo xtask provision`): detached from
/// this process (own process group, stdin ignored) so it runs until SIGTERM, with the
/// demo keys created in [`REGION`]. Returns its pid and endpoint.
pub(crate) fn launch_detached(root: &Path, log_path: &Path) -> Result<(u32, String)> {
    use std::os::unix::process::CommandExt as _;
    provision(root)?;
    let mut cmd = Command::new(venv_python(root));
    cmd.arg(launcher(root))
        .args(["--detached", "--demo-keys", REGION])
        .stdin(Stdio::null())
        .process_group(0);
    let (child, endpoint) = spawn_ready(&mut cmd, log_path)?;
    Ok((child.id(), endpoint))
}

/// Spawns the launcher (stderr to `log_path`) and waits for its ready line.
fn spawn_ready(cmd: &mut Command, log_path: &Path) -> Result<(Child, String)> {
    let log = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    cmd.stdout(Stdio::piped())
        .stderr(log)
        .env("PYTHONUNBUFFERED", "1");
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {:?}", cmd.get_program()))?;
    let stdout = child.stdout.take().context("launcher stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(endpoint) = line.strip_prefix(READY) {
                let _ = tx.send(endpoint.trim().to_owned());
            }
        }
    });
    let started = Instant::now();
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(endpoint) => return Ok((child, endpoint)),
            Err(mpsc::RecvTimeoutError::Timeout | mpsc::RecvTimeoutError::Disconnected) => {}
        }
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(log_path).unwrap_or_default();
            bail!(
                "moto launcher {:?} exited ({status}) before serving:\n{}",
                cmd.get_args().collect::<Vec<_>>(),
                log.trim()
            );
        }
        if started.elapsed() > START_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "moto launcher did not serve within {START_TIMEOUT:?}; see {}",
                log_path.display()
            );
        }
    }
}
