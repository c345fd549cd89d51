//! `keymgr rotate` on a real SoftHSM2 token: `kill -9` at random points of
//! `rotate --now` never leaves the key unable to sign, and the approval flow works from
//! the command line end to end (request, refused self-approval, approval by another
//! actor, run), with audit entries naming both actors.
//!
//! Each test works on its own copy of the token `cargo xtask provision` made.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
use keymgr_testkit::TempDir;

const NEEDED: [&str; 5] = [
    "SOFTHSM2_CONF",
    "HSM_PKCS11_LIBRARY_PATH",
    "HSM_PIN",
    "HSM_TOKEN_LABEL",
    "HSM_EVM_KEY_LABEL",
];

/// Kills per run: bounded so CI stays fast (each is one short `keymgr` process).
const KILLS: u64 = 10;

/// A private copy of the provisioned token, its state directory and audit directory.
struct Token {
    dir: TempDir,
    conf: PathBuf,
}

impl Token {
    fn copy(tag: &str) -> Option<Self> {
        if let Some(missing) = NEEDED.iter().find(|v| std::env::var_os(v).is_none()) {
            keymgr_testkit::skip_or_fail(
                &format!("SoftHSM2 token ({missing} unset)"),
                "run `cargo xtask test`, or `eval \"$(cargo xtask provision --test-env)\"` first",
            );
            return None;
        }
        let conf = PathBuf::from(std::env::var("SOFTHSM2_CONF").unwrap());
        let text = std::fs::read_to_string(&conf).unwrap();
        let tokendir = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("directories.tokendir"))
            .and_then(|rest| rest.trim().strip_prefix('='))
            .map(|d| PathBuf::from(d.trim()))
            .expect("directories.tokendir in softhsm2.conf");
        let dir = TempDir::new(tag);
        let tokens = dir.path().join("tokens");
        copy_dir(&tokendir, &tokens);
        let own: String = text
            .lines()
            .map(|l| {
                if l.trim().starts_with("directories.tokendir") {
                    format!("directories.tokendir = {}\n", tokens.display())
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(&conf, own).unwrap();
        Some(Self { dir, conf })
    }

    fn command(&self, args: &[&str], extra: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keymgr"));
        cmd.args(args)
            .env("KEY_BACKEND", "hsm")
            .env("SOFTHSM2_CONF", &self.conf)
            .env("KEYMGR_ROTATION_STATE_PATH", self.dir.path().join("state"))
            .env("KEYMGR_AUDIT_PATH", self.dir.path().join("audit"))
            .env_remove("HSM_SLOT_ID")
            .env_remove("KEYMGR_ACTOR")
            .env_remove("KEYMGR_ROTATION_APPROVAL")
            .env_remove("KEYMGR_PROFILE")
            .env_remove("HSM_KEEP_VERSIONS");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd
    }

    fn run(&self, args: &[&str], extra: &[(&str, &str)]) -> Output {
        self.command(args, extra).output().unwrap()
    }

    /// `keymgr sign --key evm`, checked with k256 against `keymgr public-key --key evm`.
    fn signs(&self) {
        let digest: [u8; 32] = std::array::from_fn(|i| i as u8 ^ 0x5a);
        let out = self.run(
            &[
                "sign",
                "--key",
                "evm",
                "--digest",
                &hex::encode(digest),
                "--json",
            ],
            &[],
        );
        let sig = json(&out);
        assert!(out.status.success(), "the key must sign: {sig}");
        let pk = json(&self.run(&["public-key", "--key", "evm", "--json"], &[]));
        let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(
            &hex::decode(pk["public_key"].as_str().unwrap()).unwrap(),
        )
        .unwrap();
        let s = k256::ecdsa::Signature::from_slice(
            &hex::decode(sig["signature"].as_str().unwrap()).unwrap(),
        )
        .unwrap();
        vk.verify_prehash(&digest, &s)
            .expect("the signature verifies with k256");
    }

    /// Every `token.object` (SoftHSM2's per-token metadata: label, PIN hashes, flags; no
    /// key objects) with its bytes.
    fn token_metadata(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(self.dir.path().join("tokens")).unwrap() {
            let file = entry.unwrap().path().join("token.object");
            if let Ok(bytes) = std::fs::read(&file) {
                out.push((file, bytes));
            }
        }
        out
    }

    /// SoftHSM2 rewrites `token.object` in place on every `C_Login` (it stores the
    /// token flags and a generation count), so a `kill -9` during that write can tear
    /// SoftHSM2's own metadata and the token then vanishes from the slot list: a fault of
    /// the simulator's file store, not of keymgr (a token cannot be removed through
    /// PKCS#11). A `token.object` that changed is torn only if the token is no longer
    /// listed (`pkcs11-tool -L`, independent of keymgr): a completed rewrite stays. A torn
    /// file is put back from the copy taken before the kill, loudly; key objects are never
    /// touched, so what keymgr's rotation left behind is still what the next `sign` sees.
    /// Returns how many files were restored.
    fn restore_torn_metadata(&self, before: &[(PathBuf, Vec<u8>)]) -> u64 {
        let changed: Vec<_> = before
            .iter()
            .filter(|(file, bytes)| std::fs::read(file).ok().as_deref() != Some(bytes.as_slice()))
            .collect();
        if changed.is_empty() || self.token_listed() {
            return 0;
        }
        for (file, bytes) in &changed {
            eprintln!(
                "SoftHSM2 tore its own {} during the kill (the token left the slot list): \
                 restoring the pre-kill copy (token metadata only, no key objects)",
                file.display()
            );
            std::fs::write(file, bytes).unwrap();
        }
        assert!(self.token_listed(), "the token is back after the restore");
        changed.len() as u64
    }

    /// Whether `pkcs11-tool -L` lists the test token in this copy.
    fn token_listed(&self) -> bool {
        self.slot().is_some()
    }

    /// The slot (`0x..`) holding exactly the test token. `pkcs11-tool --token-label`
    /// matches a prefix, so `keymgr-test` could select the second token `keymgr-test-2`.
    fn slot(&self) -> Option<String> {
        let out = Command::new("pkcs11-tool")
            .env("SOFTHSM2_CONF", &self.conf)
            .args([
                "--module",
                &std::env::var("HSM_PKCS11_LIBRARY_PATH").unwrap(),
                "-L",
            ])
            .output()
            .unwrap();
        let label = std::env::var("HSM_TOKEN_LABEL").unwrap();
        let mut slot = None;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some(rest) = line.strip_prefix("Slot ") {
                slot = rest
                    .split_once("(")
                    .and_then(|(_, r)| r.split_once(')'))
                    .map(|(id, _)| id.to_owned());
            } else if let Some(l) = line.trim().strip_prefix("token label")
                && l.trim_start_matches([' ', ':']).trim() == label
            {
                return slot;
            }
        }
        None
    }

    fn audit(&self) -> Vec<keymgr_audit::Entry> {
        let mut out = Vec::new();
        for seg in keymgr_audit::segment::list(&self.dir.path().join("audit")).unwrap() {
            for line in std::fs::read_to_string(&seg.path).unwrap().lines() {
                out.push(keymgr_audit::Entry::parse(line.as_bytes()).unwrap());
            }
        }
        out
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: stdout {} stderr {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// xorshift64: reproducible random kill points (the seed is printed).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// `kill -9` at random points of `rotate --key evm --now` (overlap 0, so one run creates,
/// overlaps and disables): after every kill the key signs, and a final uninterrupted run
/// takes over the dead rotator's lease and finishes cleanly.
#[test]
fn kill_minus_nine_during_rotation_never_stops_signing() {
    let Some(token) = Token::copy("rotate-kill") else {
        return;
    };
    let overlap = [("KEYMGR_ROTATION_OVERLAP_DAYS", "0")];
    token.signs();
    // How long an uninterrupted rotation takes here: kill points are drawn inside it.
    let started = Instant::now();
    let out = token.run(&["rotate", "--key", "evm", "--now", "--json"], &overlap);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let span = u64::try_from(started.elapsed().as_millis())
        .unwrap()
        .max(20);
    token.signs();

    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("kill loop: seed {seed}, {KILLS} kills within {span} ms");
    let mut rng = Rng(seed);
    let mut torn = 0;
    for i in 0..KILLS {
        let metadata = token.token_metadata();
        let mut child = token
            .command(&["rotate", "--key", "evm", "--now", "--json"], &overlap)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let at = rng.below(span);
        std::thread::sleep(Duration::from_millis(at));
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        eprintln!("kill {i} at {at} ms: {status}");
        torn += token.restore_torn_metadata(&metadata);
        token.signs();
    }
    assert!(
        torn < KILLS,
        "SoftHSM2 tore its token.object on every kill: the loop tested nothing of keymgr"
    );

    // A run to completion: a dead holder's lease is taken over at once, whatever the
    // kill interrupted is finished, and a new version is made.
    let out = token.run(&["rotate", "--key", "evm", "--now", "--json"], &overlap);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    token.signs();
    let status = json(&token.run(&["keys", "status", "--key", "evm", "--json"], &overlap));
    let s = &status["keys"][0]["status"];
    assert_eq!(s["state"]["phase"]["phase"], "idle", "{s}");
    let versions = s["versions"].as_array().unwrap();
    let current: Vec<_> = versions
        .iter()
        .filter(|v| v["version"]["current"] == true)
        .collect();
    assert_eq!(current.len(), 1, "{s}");
    assert_eq!(current[0]["version"]["state"], "enabled");
    // Every other version is disabled (kept, never deleted).
    for v in versions.iter().filter(|v| v["version"]["current"] != true) {
        assert_eq!(v["version"]["state"], "disabled", "{v}");
    }
}

/// Approval from the CLI: request (alice), self-approval refused, approval (bob), run.
#[test]
fn approval_flow_end_to_end() {
    let Some(token) = Token::copy("rotate-approve") else {
        return;
    };
    let approval = [("KEYMGR_ROTATION_APPROVAL", "true")];
    let as_alice = [
        ("KEYMGR_ROTATION_APPROVAL", "true"),
        ("KEYMGR_ACTOR", "alice"),
    ];
    let before = json(&token.run(&["public-key", "--key", "evm", "--json"], &[]));

    let out = token.run(&["rotate", "--key", "evm", "--now", "--json"], &as_alice);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["events"][0]["event"], "requested", "{v}");
    assert_eq!(v["events"][0]["request"]["requested_by"], "alice");
    // Asking again does not stack requests: it says what waits.
    let v = json(&token.run(&["rotate", "--key", "evm", "--now", "--json"], &as_alice));
    assert_eq!(v["events"][0]["event"], "awaiting_approval", "{v}");
    // Nothing rotated yet.
    assert_eq!(
        json(&token.run(&["public-key", "--key", "evm", "--json"], &[])),
        before
    );
    let text = token.run(&["keys", "status", "--key", "evm"], &approval);
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(
        text.contains("waits for approval by another actor"),
        "{text}"
    );

    let out = token.run(&["rotate", "approve", "--key", "evm", "--json"], &as_alice);
    // Refused by policy (README, exit codes): 8, not an IAM-style access denial.
    assert_eq!(out.status.code(), Some(8));
    assert_eq!(json(&out)["error"]["kind"], "policy");
    let out = token.run(
        &[
            "rotate", "approve", "--key", "evm", "--actor", "bob", "--json",
        ],
        &approval,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json(&out)["request"]["approved_by"], "bob");

    let out = token.run(&["rotate", "--key", "evm", "--now", "--json"], &as_alice);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    let rotated = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "rotated")
        .unwrap_or_else(|| panic!("{v}"));
    let after = json(&token.run(&["public-key", "--key", "evm", "--json"], &[]));
    assert_ne!(after["public_key"], before["public_key"]);
    assert_eq!(rotated["new"]["public_key"], after["public_key"]);
    assert_eq!(rotated["old"]["public_key"], before["public_key"]);
    token.signs();

    let entries = token.audit();
    let find = |event: &str| {
        entries
            .iter()
            .find(|e| e.event == event)
            .unwrap_or_else(|| panic!("no {event} in the audit log"))
    };
    let requested = find("KEY_ROTATION_REQUESTED");
    assert_eq!(requested.actor.as_deref(), Some("alice"));
    let refused = find("KEY_ROTATION_REFUSED");
    assert_eq!(refused.details["requested_by"], "alice");
    assert_eq!(refused.details["refused_approver"], "alice");
    let approved = find("KEY_ROTATION_APPROVED");
    assert_eq!(approved.actor.as_deref(), Some("bob"));
    assert_eq!(approved.details["requested_by"], "alice");
    let complete = find("KEY_ROTATION_COMPLETE");
    assert_eq!(complete.details["requested_by"], "alice");
    assert_eq!(complete.details["approved_by"], "bob");

    // Emergency rotation inside the overlap: refused without --force; with it, it is a
    // request that needs approval too.
    let out = token.run(&["rotate", "--key", "evm", "--now", "--json"], &as_alice);
    assert_eq!(
        out.status.code(),
        Some(8),
        "a policy refusal (README, exit codes)"
    );
    assert_eq!(json(&out)["error"]["kind"], "policy");
    let v = json(&token.run(
        &["rotate", "--key", "evm", "--now", "--force", "--json"],
        &as_alice,
    ));
    assert_eq!(v["events"][0]["request"]["kind"], "emergency", "{v}");
    let out = token.run(
        &[
            "rotate", "approve", "--key", "evm", "--actor", "bob", "--json",
        ],
        &approval,
    );
    assert!(out.status.success());
    let v = json(&token.run(
        &["rotate", "--key", "evm", "--now", "--force", "--json"],
        &as_alice,
    ));
    let kinds: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["disabled", "rotated"], "{v}");
    token.signs();
}

impl Token {
    /// Labels of every object on this token copy, as `pkcs11-tool --list-objects` (OpenSC,
    /// independent of keymgr) shows them.
    fn labels(&self) -> Vec<String> {
        let var = |n: &str| std::env::var(n).unwrap();
        let out = Command::new("pkcs11-tool")
            .env("SOFTHSM2_CONF", &self.conf)
            .args(["--module", &var("HSM_PKCS11_LIBRARY_PATH")])
            .args(["--slot", &self.slot().expect("the test token is listed")])
            .args(["--login", "--pin", &var("HSM_PIN"), "--list-objects"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().strip_prefix("label:"))
            .map(|l| l.trim().to_owned())
            .collect()
    }

    /// `(version, actor, keep_versions)` of every KEY_DELETED outcome `audit export`
    /// shows, after checking that each was preceded by its `pending` intent entry.
    fn deletions(&self) -> Vec<(String, String, String)> {
        let audit = self.dir.path().join("audit");
        let out = self.run(&["audit", "export", audit.to_str().unwrap()], &[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let entries: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|e| e["event"] == "KEY_DELETED")
            .collect();
        let (intents, outcomes): (Vec<_>, Vec<_>) =
            entries.iter().partition(|e| e["outcome"] == "pending");
        assert_eq!(intents.len(), outcomes.len(), "{entries:?}");
        for (intent, done) in intents.iter().zip(&outcomes) {
            assert_eq!(intent["key_version"], done["key_version"]);
        }
        outcomes
            .into_iter()
            .map(|e| {
                let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
                (
                    s(&e["key_version"]),
                    s(&e["actor"]),
                    s(&e["details"]["keep_versions"]),
                )
            })
            .collect()
    }

    fn rotate(&self, env: &[(&str, &str)]) {
        let out = self.run(&["rotate", "--key", "evm", "--now", "--json"], env);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.signs();
    }
}

/// Opt-in deletion through the CLI: off, rotations delete nothing; on
/// (`HSM_KEEP_VERSIONS=2`), each rotation deletes exactly the disabled versions beyond
/// the newest 2, `audit export` shows one KEY_DELETED entry per deleted version, the
/// token no longer holds them, `keys status` names the next one and is right, and the
/// current key signs throughout (k256).
#[test]
fn opt_in_deletion_is_audited_and_announced_by_status() {
    let Some(token) = Token::copy("rotate-delete") else {
        return;
    };
    let base = std::env::var("HSM_EVM_KEY_LABEL").unwrap();
    let off = [
        ("KEYMGR_ROTATION_OVERLAP_DAYS", "0"),
        ("KEYMGR_ACTOR", "ops-dave"),
    ];
    let on = [off[0], off[1], ("HSM_KEEP_VERSIONS", "2")];
    let has = |n: u32| token.labels().contains(&format!("{base}.v{n}"));
    for _ in 0..3 {
        token.rotate(&off);
    }
    assert!((1..=3).all(has), "{:?}", token.labels());
    assert!(token.deletions().is_empty());
    let text = token.run(&["keys", "status", "--key", "evm"], &off);
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(text.contains("deletion: off"), "{text}");

    // On: v4 is made; v1 and v2 are disabled and beyond the newest 2, so they go.
    token.rotate(&on);
    let done = token.deletions();
    let versions: Vec<&str> = done.iter().map(|(v, ..)| v.as_str()).collect();
    assert_eq!(versions, ["1", "2"]);
    assert!(
        done.iter()
            .all(|(_, actor, keep)| actor == "ops-dave" && keep == "2")
    );
    assert!(
        !has(1) && !has(2) && has(3) && has(4),
        "{:?}",
        token.labels()
    );
    assert!(token.labels().contains(&base), "version 0 is never deleted");

    // Status names what the next rotation deletes, and it does exactly that.
    let status = json(&token.run(&["keys", "status", "--key", "evm", "--json"], &on));
    let deletion = &status["keys"][0]["deletion"];
    assert_eq!(deletion["keep_versions"], 2, "{status}");
    assert_eq!(
        deletion["next"]["versions"],
        serde_json::json!(["3"]),
        "{status}"
    );
    let text = token.run(&["keys", "status", "--key", "evm"], &on);
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(
        text.contains("evm@3 will be deleted right after the next rotation"),
        "{text}"
    );
    token.rotate(&on);
    let versions: Vec<String> = token.deletions().into_iter().map(|(v, ..)| v).collect();
    assert_eq!(versions, ["1", "2", "3"]);
    assert!(!has(3) && has(4) && has(5), "{:?}", token.labels());
}
