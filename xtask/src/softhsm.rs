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
//!
//! A second token, `keymgr-test-2` (same PINs, no keys), lets the failover tests import
//! one key into two tokens (`KEYMGR_TEST_HSM_TOKEN2_LABEL`).
//!
//! The PINs below protect nothing but these throwaway tokens.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};

const TOKEN_LABEL: &str = "keymgr-test";
/// A second, empty token (same PINs): failover tests import one key into both tokens.
const TOKEN2_LABEL: &str = "keymgr-test-2";
const USER_PIN: &str = "keymgr-test-pin-5938";
const SO_PIN: &str = "keymgr-test-so-pin-8271";

/// (label, pkcs11-tool key type, how many key pairs carry the label)
const KEYS: &[(&str, &str, usize)] = &[
    ("keymgr-test-evm", "EC:secp256k1", 1),
    ("keymgr-test-xrp", "EC:edwards25519", 1),
    ("keymgr-test-p256", "EC:prime256v1", 1),
    ("keymgr-test-dup", "EC:secp256k1", 2),
];

const MODULE_CANDIDATES: &[&str] = &[
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
];

/// Provisions the token and returns the variables the keymgr-hsm tests read.
pub(crate) fn provision(workspace_root: &Path) -> Result<Vec<(String, String)>> {
    let module = ensure_installed()?;
    let dir = workspace_root.join("target/keymgr-test/softhsm");
    let tokens = dir.join("tokens");
    fs::create_dir_all(&tokens).with_context(|| format!("creating {}", tokens.display()))?;
    let conf = dir.join("softhsm2.conf");
    let content = format!(
        "# written by `cargo xtask`: a throwaway token for the keymgr-hsm tests\n\
         directories.tokendir = {}\n\
         objectstore.backend = file\n\
         log.level = ERROR\n\
         slots.removable = false\n\
         slots.mechanisms = ALL\n\
         library.reset_on_fork = false\n",
        tokens.display()
    );
    if fs::read_to_string(&conf).ok().as_deref() != Some(content.as_str()) {
        fs::write(&conf, &content).with_context(|| format!("writing {}", conf.display()))?;
    }
    // Test processes work on private copies of the token under `runs/` (see
    // keymgr-hsm/tests/common): drop the previous run's.
    let runs = dir.join("runs");
    if runs.exists() {
        fs::remove_dir_all(&runs).with_context(|| format!("removing {}", runs.display()))?;
    }
    let hsm = SoftHsm { module, conf };

    let slot = match hsm.token_slot()? {
        Some(slot) if hsm.user_pin_works() => slot,
        found => {
            if found.is_some() {
                // A token from an older layout with other PINs: start over.
                eprintln!("==> softhsm: resetting the test token (PIN changed)");
                fs::remove_dir_all(&tokens)?;
                fs::create_dir_all(&tokens)?;
            }
            eprintln!("==> softhsm: initializing token {TOKEN_LABEL:?}");
            hsm.run(Command::new("softhsm2-util").args([
                "--init-token",
                "--free",
                "--label",
                TOKEN_LABEL,
                "--so-pin",
                SO_PIN,
                "--pin",
                USER_PIN,
            ]))?;
            hsm.token_slot()?
                .context("softhsm2-util initialized a token but it is not listed")?
        }
    };

    if hsm.slot_of(TOKEN2_LABEL)?.is_none() {
        eprintln!("==> softhsm: initializing token {TOKEN2_LABEL:?}");
        hsm.run(Command::new("softhsm2-util").args([
            "--init-token",
            "--free",
            "--label",
            TOKEN2_LABEL,
            "--so-pin",
            SO_PIN,
            "--pin",
            USER_PIN,
        ]))?;
    }

    let listing = hsm.list_private_keys()?;
    for (label, key_type, want) in KEYS {
        let have = count_private_keys(&listing, label);
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

    let var = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    Ok(vec![
        var("SOFTHSM2_CONF", &hsm.conf.display().to_string()),
        var("HSM_PKCS11_LIBRARY_PATH", &hsm.module.display().to_string()),
        var("HSM_TOKEN_LABEL", TOKEN_LABEL),
        var("HSM_SLOT_ID", &slot.to_string()),
        var("HSM_PIN", USER_PIN),
        var("HSM_EVM_KEY_LABEL", KEYS[0].0),
        var("HSM_XRP_KEY_LABEL", KEYS[1].0),
        var("KEYMGR_TEST_HSM_P256_LABEL", KEYS[2].0),
        var("KEYMGR_TEST_HSM_DUP_LABEL", KEYS[3].0),
        var("KEYMGR_TEST_HSM_TOKEN2_LABEL", TOKEN2_LABEL),
    ])
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
            TOKEN_LABEL,
            "--login",
            "--pin",
            USER_PIN,
        ])
        .args(args);
        self.run(&mut cmd)
    }

    /// The slot id SoftHSM assigned to the test token, if it exists.
    fn token_slot(&self) -> Result<Option<u64>> {
        self.slot_of(TOKEN_LABEL)
    }

    /// The slot id of the token labelled `label`, if it exists.
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
        self.pkcs11_tool(&["--list-objects", "--type", "privkey"])
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

/// How many "Private Key Object" entries of a pkcs11-tool listing carry `label`.
fn count_private_keys(listing: &str, label: &str) -> usize {
    let mut count = 0;
    let mut in_private = false;
    for line in listing.lines() {
        if line.contains(" Object;") || line.starts_with("Private Key Object") {
            in_private = line.starts_with("Private Key Object");
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
        assert_eq!(count_private_keys(listing, "a"), 2);
        assert_eq!(count_private_keys(listing, "b"), 0);
        assert_eq!(count_private_keys(listing, "ab"), 1);
    }
}
