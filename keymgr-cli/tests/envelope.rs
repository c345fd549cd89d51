//! `keymgr encrypt` / `keymgr decrypt`: file and pipe round trips, refusal to overwrite,
//! outputs that appear only after verification, the required context, `--json`
//! summaries, and no KEK in any output.
#![cfg(feature = "envelope")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use keymgr_testkit::TempDir;

const KEK: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

fn keymgr(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keymgr"));
    cmd.args(args)
        .env_remove("KEY_BACKEND")
        .env("DEV_KEK", KEK)
        .env("OTHER_KEK", "01".repeat(32))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(input) = stdin {
        pipe.write_all(input).unwrap();
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stdout)))
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn file_round_trip_with_summary_and_context() {
    let dir = TempDir::new("cli-envelope");
    let (plain, enc, dec) = (
        dir.path().join("p"),
        dir.path().join("e"),
        dir.path().join("d"),
    );
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&plain, &data).unwrap();
    let out = keymgr(
        &[
            "encrypt",
            "--json",
            "--in",
            p(&plain),
            "--out",
            p(&enc),
            "--kek",
            "env:DEV_KEK",
            "--kek",
            "env:OTHER_KEK",
            "--context",
            "tenant=acme",
            "--frame-length",
            "4096",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["plaintext_bytes"], 200_000);
    assert_eq!(v["frames"], 49);
    assert_eq!(v["encryption_context"]["tenant"], "acme");
    assert_eq!(v["encrypted_data_keys"].as_array().unwrap().len(), 2);
    assert_eq!(v["encrypted_data_keys"][0]["key"], "DEV_KEK");
    assert_eq!(
        std::fs::metadata(&enc).unwrap().len(),
        v["message_bytes"].as_u64().unwrap()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&enc).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    // Either KEK decrypts; the second alone too.
    let out = keymgr(
        &[
            "decrypt",
            "--json",
            "--in",
            p(&enc),
            "--out",
            p(&dec),
            "--kek",
            "env:OTHER_KEK",
            "--context",
            "tenant=acme",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&dec).unwrap(), data);
    assert_eq!(json(&out)["plaintext_bytes"], 200_000);
    for text in [&out.stdout, &out.stderr] {
        assert!(!String::from_utf8_lossy(text).contains(KEK));
    }
}

#[test]
fn refuses_to_overwrite_unless_forced() {
    let dir = TempDir::new("cli-envelope");
    let (plain, enc) = (dir.path().join("p"), dir.path().join("e"));
    std::fs::write(&plain, b"data").unwrap();
    std::fs::write(&enc, b"precious").unwrap();
    let args = [
        "encrypt",
        "--json",
        "--in",
        p(&plain),
        "--out",
        p(&enc),
        "--kek",
        "env:DEV_KEK",
    ];
    let out = keymgr(&args, None);
    assert!(!out.status.success());
    assert_eq!(json(&out)["error"]["kind"], "invalid_input");
    assert_eq!(std::fs::read(&enc).unwrap(), b"precious");
    let mut forced = args.to_vec();
    forced.push("--force");
    assert!(keymgr(&forced, None).status.success());
    assert_ne!(std::fs::read(&enc).unwrap(), b"precious");
}

#[test]
fn failed_decryption_leaves_no_output() {
    let dir = TempDir::new("cli-envelope");
    let (plain, enc, dec) = (
        dir.path().join("p"),
        dir.path().join("e"),
        dir.path().join("d"),
    );
    std::fs::write(&plain, vec![1u8; 50_000]).unwrap();
    let out = keymgr(
        &[
            "encrypt",
            "--in",
            p(&plain),
            "--out",
            p(&enc),
            "--kek",
            "env:DEV_KEK",
            "--context",
            "a=b",
            "--frame-length",
            "1000",
        ],
        None,
    );
    assert!(out.status.success());
    let message = std::fs::read(&enc).unwrap();
    // Truncated (cut at an arbitrary byte), tampered, wrong context, wrong KEK.
    let mut tampered = message.clone();
    tampered[message.len() / 2] ^= 1;
    let cases: [(&[u8], &[&str], &str); 4] = [
        (
            &message[..message.len() - 100],
            &["--kek", "env:DEV_KEK"],
            "integrity",
        ),
        (&tampered, &["--kek", "env:DEV_KEK"], "integrity"),
        (
            &message,
            &["--kek", "env:DEV_KEK", "--context", "a=c"],
            "integrity",
        ),
        (&message, &["--kek", "env:OTHER_KEK"], "not_found"),
    ];
    for (input, extra, kind) in cases {
        let mut args = vec!["decrypt", "--json", "--in", "-", "--out", p(&dec)];
        args.extend_from_slice(extra);
        let out = keymgr(&args, Some(input));
        assert!(!out.status.success());
        assert_eq!(json(&out)["error"]["kind"], kind, "{extra:?}");
        assert!(!dec.exists(), "{extra:?}: output left behind");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 2, "{leftovers:?}");
    }
}

#[test]
fn pipes() {
    let out = keymgr(
        &["encrypt", "--in", "-", "--out", "-", "--kek", "env:DEV_KEK"],
        Some(b"through pipes"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = keymgr(
        &["decrypt", "--in", "-", "--out", "-", "--kek", "env:DEV_KEK"],
        Some(&out.stdout),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"through pipes");
    // --json and data on stdout at once is refused.
    let out = keymgr(
        &[
            "encrypt",
            "--json",
            "--in",
            "-",
            "--out",
            "-",
            "--kek",
            "env:DEV_KEK",
        ],
        Some(b"x"),
    );
    assert_eq!(json(&out)["error"]["kind"], "invalid_input");
}

#[test]
fn bad_kek_specs_are_clear() {
    for (spec, kind) in [
        ("nope", "invalid_input"),
        ("env:UNSET_KEMGR_VAR", "config"),
        ("aws-kms:alias/x", ""),
    ] {
        let out = keymgr(
            &[
                "encrypt",
                "--json",
                "--in",
                "-",
                "--out",
                "/nonexistent/x",
                "--kek",
                spec,
            ],
            Some(b"x"),
        );
        assert!(!out.status.success(), "{spec}");
        if !kind.is_empty() {
            assert_eq!(json(&out)["error"]["kind"], kind, "{spec}");
        }
    }
}
