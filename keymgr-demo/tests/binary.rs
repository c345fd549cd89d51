//! The README's first command, `cargo run -p keymgr-demo`: the binary runs the tour with
//! no configuration at all, keeps a log that verifies on its own, and refuses bad
//! arguments with its usage.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use keymgr_audit::Verifier;
use keymgr_testkit::TempDir;

fn demo() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keymgr-demo"));
    // Nothing from the caller's configuration reaches the tour.
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    cmd
}

#[test]
fn tours_and_keeps_a_log_that_verifies() {
    let dir = TempDir::new("demo-bin");
    let audit = dir.path().join("audit");
    let out = demo().arg("--audit-dir").arg(&audit).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in [
        "1. ",
        "2. ",
        "3. EIP-191",
        "4. XRP claim",
        "5. audit log",
        "next steps:",
    ] {
        assert!(stdout.contains(step), "missing {step:?} in\n{stdout}");
    }
    assert!(stdout.contains(&audit.display().to_string()));
    // Read back by the verifier, apart from the process that wrote it: two signatures,
    // each a request and an outcome.
    let report = Verifier::default().verify_paths(&[&audit]).unwrap();
    assert!(report.is_ok(), "{:?}", report.broken);
    assert!(report.entries >= 4, "{report:?}");
}

#[test]
fn refuses_unknown_arguments_with_its_usage() {
    for args in [&["--json"][..], &["--audit-dir"][..], &["x", "y"][..]] {
        let out = demo().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("usage: keymgr-demo"), "{args:?}: {stderr}");
    }
    let help = demo().arg("--help").output().unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("--audit-dir DIR"));
}
