//! SoftHSM2 provisioning for the keymgr-hsm tests.
//!
//! Idempotent and quick when everything exists already: installs `softhsm2` and
//! `opensc` (for `pkcs11-tool`) with apt-get only if they are missing, keeps a throwaway
//! token under `target/keymgr-test/softhsm` with its own `softhsm2.conf`, and generates
//! the test keys with pkcs11-tool (so the tests exercise keys keymgr did not make):
//!
//! | label | key | used for |
//! |---|---|---|
//! | `keymgr-test-evm` | EC secp256k1 | `HSM_EVM_KEY_LABEL` |
//! | `keymgr-test-xrp` | EC_EDWARDS edwards25519 | `HSM_XRP_KEY_LABEL` |
//! | `keymgr-test-p256` | EC prime256v1 | the "wrong curve" test |
//! | `keymgr-test-dup` | two secp256k1 pairs under one label | the "label collision" test |
//! | `keymgr-test-aes` | AES-256 secret key, **imported** from [`TEST_AES_KEY`] | keymgr-envelope's HSM keyring |
//!
//! A second token in the same token directory, `keymgr-test-2` (same PINs, no keys), lets
//! the failover tests import one key into two tokens (`KEYMGR_TEST_HSM_TOKEN2_LABEL`).
//!
//! The AES key is imported with a value the tests know (`KEYMGR_TEST_HSM_AES_KEY`) so that
//! they can hand the same key to the Python AWS Encryption SDK's raw AES keyring:
//! **test-only**; a production KEK is generated inside the HSM (`C_GenerateKey`,
//! CKA_SENSITIVE, not CKA_EXTRACTABLE) and its value is never known. The imported key is
//! sensitive and not extractable too.
//!
//! `cargo xtask provision` also keeps a demo token for operators (`keymgr-demo`, keys
//! `keymgr-demo-evm` and `keymgr-demo-xrp`) under `target/keymgr-test/demo-softhsm`, apart
//! from the test token so that an operator's rotations never reach the tests.
//!
//! The PINs below protect nothing but these throwaway tokens.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};

/// A token to provision: where it lives, its label and PINs, and its keys.
struct TokenSpec {
    /// Directory under the workspace root (holds `softhsm2.conf` and `tokens/`).
    dir: &'static str,
    label: &'static str,
    user_pin: &'static str,
    so_pin: &'static str,
    /// (label, pkcs11-tool key type, how many key pairs carry the label)
    keys: &'static [(&'static str, &'static str, usize)],
}

/// The tests' token.
static TEST_TOKEN: TokenSpec = TokenSpec {
    dir: "target/keymgr-test/softhsm",
    label: "keymgr-test",
    user_pin: "keymgr-test-pin-5938",
    so_pin: "keymgr-test-so-pin-8271",
    keys: &[
        ("keymgr-test-evm", "EC:secp256k1", 1),
        ("keymgr-test-xrp", "EC:edwards25519", 1),
        ("keymgr-test-p256", "EC:prime256v1", 1),
        ("keymgr-test-dup", "EC:secp256k1", 2),
    ],
};

/// A second, empty token next to the test token (same PINs): failover tests import one
/// key into both tokens.
const TOKEN2_LABEL: &str = "keymgr-test-2";

/// Label of the imported test AES key.
const AES_LABEL: &str = "keymgr-test-aes";
/// The test AES key's value (hex): known on purpose, protects nothing (see the module docs).
const TEST_AES_KEY: &str = "6b65796d67722d746573742d6165732d6b65792d6e6f742d612d736563726574";

/// The operators' demo token (`cargo xtask provision`).
static DEMO_TOKEN: TokenSpec = TokenSpec {
    dir: "target/keymgr-test/demo-softhsm",
    label: "keymgr-demo",
    user_pin: "keymgr-demo-pin-4417",
    so_pin: "keymgr-demo-so-pin-9032",
    keys: &[
        ("keymgr-demo-evm", "EC:secp256k1", 1),
        ("keymgr-demo-xrp", "EC:edwards25519", 1),
    ],
};

const MODULE_CANDIDATES: &[&str] = &[
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
];

/// Provisions the test token and returns the variables the keymgr-hsm tests read.
pub(crate) fn provision(workspace_root: &Path) -> Result<Vec<(String, String)>> {
    // Test processes work on private copies of the token under `runs/` (see
    // keymgr-hsm/tests/common): drop the previous run's.
    let runs = workspace_root.join(TEST_TOKEN.dir).join("runs");
    if runs.exists() {
        fs::remove_dir_all(&runs).with_context(|| format!("removing {}", runs.display()))?;
    }
    let (hsm, slot) = provision_token(workspace_root, &TEST_TOKEN)?;
    if count_objects(&hsm.list("secrkey")?, "Secret Key Object", AES_LABEL) == 0 {
        hsm.import_aes_key(&workspace_root.join(TEST_TOKEN.dir))?;
    }
    if hsm.slot_of(TOKEN2_LABEL)?.is_none() {
        eprintln!("==> softhsm: initializing token {TOKEN2_LABEL:?}");
        hsm.run(Command::new("softhsm2-util").args([
            "--init-token",
            "--free",
            "--label",
            TOKEN2_LABEL,
            "--so-pin",
            TEST_TOKEN.so_pin,
            "--pin",
            TEST_TOKEN.user_pin,
        ]))?;
    }
    let keys = TEST_TOKEN.keys;
    let var = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    Ok(vec![
        var("SOFTHSM2_CONF", &hsm.conf.display().to_string()),
        var("HSM_PKCS11_LIBRARY_PATH", &hsm.module.display().to_string()),
        var("HSM_TOKEN_LABEL", TEST_TOKEN.label),
        var("HSM_SLOT_ID", &slot.to_string()),
        var("HSM_PIN", TEST_TOKEN.user_pin),
        var("HSM_EVM_KEY_LABEL", keys[0].0),
        var("HSM_XRP_KEY_LABEL", keys[1].0),
        var("KEYMGR_TEST_HSM_P256_LABEL", keys[2].0),
        var("KEYMGR_TEST_HSM_DUP_LABEL", keys[3].0),
        var("KEYMGR_TEST_HSM_AES_LABEL", AES_LABEL),
        var("KEYMGR_TEST_HSM_AES_KEY", TEST_AES_KEY),
        var("KEYMGR_TEST_HSM_TOKEN2_LABEL", TOKEN2_LABEL),
    ])
}

/// Provisions the demo token (idempotent: existing keys are kept, so rotations an
/// operator made survive) and returns the variables `KEY_BACKEND=hsm` needs.
pub(crate) fn provision_demo(workspace_root: &Path) -> Result<Vec<(String, String)>> {
    let (hsm, _) = provision_token(workspace_root, &DEMO_TOKEN)?;
    let keys = DEMO_TOKEN.keys;
    let var = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    Ok(vec![
        var("SOFTHSM2_CONF", &hsm.conf.display().to_string()),
        var("HSM_PKCS11_LIBRARY_PATH", &hsm.module.display().to_string()),
        var("HSM_TOKEN_LABEL", DEMO_TOKEN.label),
        var("HSM_PIN", DEMO_TOKEN.user_pin),
        var("HSM_EVM_KEY_LABEL", keys[0].0),
        var("HSM_XRP_KEY_LABEL", keys[1].0),
    ])
}

/// Creates `spec`'s token and keys where missing; returns it and its slot id.
fn provision_token(workspace_root: &Path, spec: &'static TokenSpec) -> Result<(SoftHsm, u64)> {
    let module = ensure_installed()?;
    let dir = workspace_root.join(spec.dir);
    let tokens = dir.join("tokens");
    crate::services::private_dir(&dir)?;
    fs::create_dir_all(&tokens).with_context(|| format!("creating {}", tokens.display()))?;
    let conf = dir.join("softhsm2.conf");
    let content = format!(
        "# written by `cargo xtask`: a throwaway token for keymgr ({})\n\
         directories.tokendir = {}\n\
         objectstore.backend = file\n\
         log.level = ERROR\n\
         slots.removable = false\n\
         slots.mechanisms = ALL\n\
         library.reset_on_fork = false\n",
        spec.label,
        tokens.display()
    );
    if fs::read_to_string(&conf).ok().as_deref() != Some(content.as_str()) {
        fs::write(&conf, &content).with_context(|| format!("writing {}", conf.display()))?;
    }
    let hsm = SoftHsm { module, conf, spec };

    let slot = match hsm.token_slot()? {
        Some(slot) if hsm.user_pin_works() => slot,
        found => {
            if found.is_some() {
                // A token from an older layout with other PINs: start over.
                eprintln!("==> softhsm: resetting token {} (PIN changed)", spec.label);
                fs::remove_dir_all(&tokens)?;
                fs::create_dir_all(&tokens)?;
            }
            eprintln!("==> softhsm: initializing token {}", spec.label);
            hsm.run(Command::new("softhsm2-util").args([
                "--init-token",
                "--free",
                "--label",
                spec.label,
                "--so-pin",
                spec.so_pin,
                "--pin",
                spec.user_pin,
            ]))?;
            hsm.token_slot()?
                .context("softhsm2-util initialized a token but it is not listed")?
        }
    };

    let listing = hsm.list_private_keys()?;
    for (label, key_type, want) in spec.keys {
        let have = count_objects(&listing, "Private Key Object", label);
        for i in have..*want {
            eprintln!("==> softhsm: generating {key_type} key {label:?}");
            // Distinct CKA_IDs, as separate applications would give them.
            let id = format!("{:02x}{:02x}", label.len(), i + 1);
            hsm.pkcs11_tool(&[
                "--keypairgen",
                "--key-type",
                key_type,
                "--label",
                label,
                "--id",
                &id,
            ])?;
        }
    }

    Ok((hsm, slot))
}

fn find_module() -> Option<PathBuf> {
    MODULE_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

fn has_program(name: &str) -> bool {
    Command::new(name).arg("--help").output().is_ok()
}

fn ensure_installed() -> Result<PathBuf> {
    if let Some(module) = find_module()
        && has_program("softhsm2-util")
        && has_program("pkcs11-tool")
    {
        return Ok(module);
    }
    crate::apt_install(&["softhsm2", "opensc"])?;
    find_module().with_context(|| {
        format!("softhsm2 is installed but its module is in none of {MODULE_CANDIDATES:?}")
    })
}

struct SoftHsm {
    module: PathBuf,
    conf: PathBuf,
    spec: &'static TokenSpec,
}

impl SoftHsm {
    fn output(&self, cmd: &mut Command) -> Result<std::process::Output> {
        cmd.env("SOFTHSM2_CONF", &self.conf)
            .output()
            .with_context(|| format!("could not run {cmd:?}"))
    }

    fn run(&self, cmd: &mut Command) -> Result<String> {
        let out = self.output(cmd)?;
        if !out.status.success() {
            bail!(
                "{:?} failed ({}): {}{}",
                cmd.get_program(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn pkcs11_tool(&self, args: &[&str]) -> Result<String> {
        let module = self.module.display().to_string();
        let mut cmd = Command::new("pkcs11-tool");
        cmd.args([
            "--module",
            &module,
            "--token-label",
            self.spec.label,
            "--login",
            "--pin",
            self.spec.user_pin,
        ])
        .args(args);
        self.run(&mut cmd)
    }

    /// The slot id SoftHSM assigned to this spec's token, if it exists.
    fn token_slot(&self) -> Result<Option<u64>> {
        self.slot_of(self.spec.label)
    }

    /// The slot id of the token labelled `label` (in this token directory), if it exists.
    fn slot_of(&self, label: &str) -> Result<Option<u64>> {
        let out = self.run(Command::new("softhsm2-util").arg("--show-slots"))?;
        Ok(parse_show_slots(&out)
            .into_iter()
            .find(|(_, l)| l == label)
            .map(|(slot, _)| slot))
    }

    fn user_pin_works(&self) -> bool {
        self.list_private_keys().is_ok()
    }

    fn list_private_keys(&self) -> Result<String> {
        self.list("privkey")
    }

    fn list(&self, kind: &str) -> Result<String> {
        self.pkcs11_tool(&["--list-objects", "--type", kind])
    }

    /// Imports [`TEST_AES_KEY`] as a sensitive, non-extractable AES key that may
    /// encrypt and decrypt. The key file lives (0600) in `dir` only during the import.
    fn import_aes_key(&self, dir: &Path) -> Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        eprintln!("==> softhsm: importing the test AES key {AES_LABEL:?}");
        let file = dir.join("test-aes-key.bin");
        let _ = fs::remove_file(&file);
        let bytes = hex::decode(TEST_AES_KEY).context("TEST_AES_KEY is hex")?;
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file)
            .and_then(|mut f| f.write_all(&bytes))
            .with_context(|| format!("writing {}", file.display()))?;
        let path = file.display().to_string();
        let result = self.pkcs11_tool(&[
            "--write-object",
            &path,
            "--type",
            "secrkey",
            "--key-type",
            "AES:32",
            "--label",
            AES_LABEL,
            "--id",
            "a501",
            "--usage-decrypt",
            "--sensitive",
        ]);
        fs::remove_file(&file).with_context(|| format!("removing {}", file.display()))?;
        result.map(|_| ())
    }
}

/// `(slot id, token label)` pairs from `softhsm2-util --show-slots`.
fn parse_show_slots(out: &str) -> Vec<(u64, String)> {
    let mut found = Vec::new();
    let mut slot = None;
    for line in out.lines() {
        if let Some(id) = line.strip_prefix("Slot ") {
            slot = id.trim().parse::<u64>().ok();
        } else if let Some(label) = line.trim_start().strip_prefix("Label:")
            && let Some(id) = slot.take()
        {
            found.push((id, label.trim().to_owned()));
        }
    }
    found
}

/// How many `kind` entries ("Private Key Object", "Secret Key Object") of a
/// pkcs11-tool listing carry `label`.
fn count_objects(listing: &str, kind: &str, label: &str) -> usize {
    let mut count = 0;
    let mut in_private = false;
    for line in listing.lines() {
        if line.contains(" Object;") || line.starts_with(kind) {
            in_private = line.starts_with(kind);
        } else if in_private
            && let Some(l) = line.trim_start().strip_prefix("label:")
            && l.trim() == label
        {
            count += 1;
            in_private = false;
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tool_output() {
        let slots = "Available slots:\nSlot 128174502\n    Slot info:\n        Token present:    yes\n    Token info:\n        Label:            keymgr-test                     \nSlot 1\n    Slot info:\n    Token info:\n        Initialized:      no\n";
        assert_eq!(
            parse_show_slots(slots),
            vec![(128174502, "keymgr-test".to_owned())]
        );
        let listing = "Private Key Object; EC\n  label:      a\n  Usage:      sign\nPublic Key Object; EC  EC_POINT 256 bits\n  label:      b\nPrivate Key Object; EC\n  label:      a\nPrivate Key Object; EC\n  label:      ab\n";
        let private = "Private Key Object";
        assert_eq!(count_objects(listing, private, "a"), 2);
        assert_eq!(count_objects(listing, private, "b"), 0);
        assert_eq!(count_objects(listing, private, "ab"), 1);
        let secret = "Secret Key Object; AES length 32\n  label:      keymgr-test-aes\n  Access:     sensitive\n";
        assert_eq!(
            count_objects(secret, "Secret Key Object", "keymgr-test-aes"),
            1
        );
        assert_eq!(count_objects(secret, private, "keymgr-test-aes"), 0);
    }
}
