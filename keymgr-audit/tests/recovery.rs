//! Recovery never discards complete entries: only an incomplete final line is cut, and
//! every mismatch between configuration and log stops the writer with its kind, while
//! nothing on disk changes. One writer per directory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::TestDir;
use keymgr_audit::recovery::inspect;
use keymgr_audit::{AuditConfig, AuditLog, BreakReason, ChainKey, LogLocked, Refusal, Verifier};
use keymgr_core::{Error, KeyManager, KeyRef, SignPayload};
use keymgr_env::EnvBackend;

/// Every file of the directory with its bytes: "nothing moved, cut or deleted".
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() != keymgr_audit::LOCK_FILE)
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn small_segments(dir: &TestDir) -> AuditConfig {
    let mut c = dir.config();
    c.segment_max_bytes = 4096;
    c.segment_daily = false;
    c
}

/// Signs `n` digests through a KeyManager auditing into a log opened with `key`.
async fn sign_n(cfg: &AuditConfig, key: &ChainKey, n: u8) -> keymgr_core::Result<()> {
    let log = AuditLog::open_with(cfg, key.clone())?;
    let manager = KeyManager::builder(Arc::new(EnvBackend::generate()))
        .audit(Arc::new(log))
        .build();
    for i in 0..n {
        manager
            .sign(&KeyRef::new("evm"), &SignPayload::Prehash([i; 32]))
            .await?;
    }
    Ok(())
}

fn hmac(byte: u8) -> ChainKey {
    ChainKey::hmac(&[byte; 32]).unwrap()
}

fn assert_config_error(e: &Error) {
    match e {
        Error::Config { variable, .. } => assert_eq!(variable, "KEYMGR_AUDIT_HMAC_KEY", "{e}"),
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

/// The reproduction: 15 signatures on a keyed log with small segments, then a
/// start with the key forgotten. It used to move all history aside and start at seq 1.
#[tokio::test]
async fn forgotten_hmac_key_refuses_and_moves_nothing() {
    let dir = TestDir::new("forgotten-key");
    let cfg = small_segments(&dir);
    sign_n(&cfg, &hmac(0x11), 15).await.unwrap();
    assert!(
        common::segment_files(dir.path()).len() > 1,
        "several segments"
    );
    let before = snapshot(dir.path());

    let err = sign_n(&cfg, &ChainKey::sha256(), 1).await.unwrap_err();
    assert_config_error(&err);
    assert!(matches!(
        inspect(dir.path(), &ChainKey::sha256()),
        Err(Refusal::HmacKeyMissing { .. })
    ));
    assert_eq!(
        snapshot(dir.path()),
        before,
        "nothing moved, cut or deleted"
    );
    let r = Verifier::new(hmac(0x11))
        .verify_paths(&[dir.path()])
        .unwrap();
    assert!(r.is_ok(), "{:?}", r.broken);
    assert_eq!(r.entries, 30);
}

#[tokio::test]
async fn every_mode_or_key_mismatch_is_named() {
    // A rotated/wrong key on a keyed log.
    let keyed = TestDir::new("wrong-key");
    sign_n(&small_segments(&keyed), &hmac(0x11), 3)
        .await
        .unwrap();
    let before = snapshot(keyed.path());
    assert_config_error(
        &sign_n(&small_segments(&keyed), &hmac(0x22), 1)
            .await
            .unwrap_err(),
    );
    assert!(matches!(
        inspect(keyed.path(), &hmac(0x22)),
        Err(Refusal::HmacKeyWrong { .. })
    ));
    assert_eq!(snapshot(keyed.path()), before);

    // A key configured on an unkeyed log (chain mode changed).
    let plain = TestDir::new("unexpected-key");
    sign_n(&small_segments(&plain), &ChainKey::sha256(), 3)
        .await
        .unwrap();
    let before = snapshot(plain.path());
    assert_config_error(
        &sign_n(&small_segments(&plain), &hmac(0x11), 1)
            .await
            .unwrap_err(),
    );
    assert!(matches!(
        inspect(plain.path(), &hmac(0x11)),
        Err(Refusal::HmacKeyUnexpected { .. })
    ));
    assert_eq!(snapshot(plain.path()), before);

    // The right configuration still opens both.
    sign_n(&small_segments(&keyed), &hmac(0x11), 1)
        .await
        .unwrap();
    sign_n(&small_segments(&plain), &ChainKey::sha256(), 1)
        .await
        .unwrap();
}

/// Edits a line of the last segment with `edit`, then checks that open refuses with
/// `Damaged` at `seq` and changes nothing.
async fn assert_damage_refused(tag: &str, key: ChainKey, edit: impl Fn(&mut Vec<String>)) {
    let dir = TestDir::new(tag);
    let cfg = small_segments(&dir);
    sign_n(&cfg, &key, 12).await.unwrap();
    let last = common::segment_files(dir.path()).pop().unwrap();
    let text = std::fs::read_to_string(&last).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    edit(&mut lines);
    std::fs::write(&last, lines.join("\n") + "\n").unwrap();
    let before = snapshot(dir.path());

    let err = AuditLog::open_with(&cfg, key.clone()).unwrap_err();
    assert!(matches!(err, Error::Integrity { .. }), "{tag}: {err:?}");
    match inspect(dir.path(), &key) {
        Err(Refusal::Damaged { link }) => assert_eq!(link.file.as_deref(), Some(last.as_path())),
        other => panic!("{tag}: expected Damaged, got {other:?}"),
    }
    assert_eq!(snapshot(dir.path()), before, "{tag}: nothing changed");
    // And `verify` agrees that the log is broken.
    assert!(
        !Verifier::new(key)
            .verify_paths(&[dir.path()])
            .unwrap()
            .is_ok()
    );
}

#[tokio::test]
async fn edited_or_appended_complete_lines_are_never_healed() {
    for key in [ChainKey::sha256(), hmac(0x33)] {
        let mode = key.mode();
        assert_damage_refused(&format!("edit-last-{mode}"), key.clone(), |l| {
            let last = l.pop().unwrap();
            l.push(last.replace("SIGN_SUCCESS", "SIGN_FAILURE"));
        })
        .await;
        assert_damage_refused(&format!("garbage-{mode}"), key.clone(), |l| {
            l.push("this is not an entry".to_owned());
        })
        .await;
        assert_damage_refused(&format!("dup-{mode}"), key.clone(), |l| {
            let last = l.last().unwrap().clone();
            l.push(last);
        })
        .await;
        assert_damage_refused(&format!("edit-first-{mode}"), key.clone(), |l| {
            l[0] = l[0].replacen("\"seq\":", "\"seq\":1", 1);
        })
        .await;
        assert_damage_refused(&format!("drop-middle-{mode}"), key.clone(), |l| {
            if l.len() > 2 {
                l.remove(1);
            } else {
                l.push("{}".to_owned());
            }
        })
        .await;
    }
}

#[tokio::test]
async fn only_an_incomplete_final_line_is_cut() {
    let dir = TestDir::new("torn-only");
    let cfg = small_segments(&dir);
    sign_n(&cfg, &ChainKey::sha256(), 3).await.unwrap();
    let last = common::segment_files(dir.path()).pop().unwrap();
    let complete = std::fs::read(&last).unwrap();
    // A bad complete line followed by a torn piece: refused, nothing cut.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&last)
        .unwrap();
    f.write_all(b"garbage\n{\"seq\":").unwrap();
    drop(f);
    assert!(AuditLog::open_with(&cfg, ChainKey::sha256()).is_err());
    assert!(
        std::fs::read(&last)
            .unwrap()
            .ends_with(b"garbage\n{\"seq\":")
    );
    // Only the torn piece: cut back to the complete lines, and the chain continues.
    std::fs::write(&last, [&complete[..], b"{\"seq\":7,\"ts"].concat()).unwrap();
    let log = AuditLog::open_with(&cfg, ChainKey::sha256()).unwrap();
    assert_eq!(log.status().torn_bytes_recovered, 12);
    assert_eq!(std::fs::read(&last).unwrap(), complete);
    drop(log);
    sign_n(&cfg, &ChainKey::sha256(), 1).await.unwrap();
    let r = Verifier::default().verify_paths(&[dir.path()]).unwrap();
    assert!(r.is_ok() && r.entries == 8, "{r:?}");
}

/// A crash right after a segment file was created leaves it empty: open continues in the
/// segment before it, and the chain has no gap.
#[tokio::test]
async fn an_empty_last_segment_left_by_a_crash_is_harmless() {
    let dir = TestDir::new("empty-last");
    let cfg = small_segments(&dir);
    sign_n(&cfg, &ChainKey::sha256(), 2).await.unwrap();
    let empty = dir.path().join(keymgr_audit::segment::file_name(
        5,
        keymgr_audit::time::now_ms(),
    ));
    std::fs::File::create(&empty).unwrap();
    sign_n(&cfg, &ChainKey::sha256(), 1).await.unwrap();
    let r = Verifier::default().verify_paths(&[dir.path()]).unwrap();
    assert!(r.is_ok() && r.entries == 6, "{r:?}");

    // An empty segment whose name skips entries is not a crash artifact.
    let gap = dir.path().join(keymgr_audit::segment::file_name(
        99,
        keymgr_audit::time::now_ms(),
    ));
    std::fs::File::create(&gap).unwrap();
    match inspect(dir.path(), &ChainKey::sha256()) {
        Err(Refusal::Damaged { link }) => {
            assert!(matches!(link.reason, BreakReason::SeqGap { found: 99, .. }))
        }
        other => panic!("{other:?}"),
    }
    assert!(gap.exists());
}

#[tokio::test]
async fn one_writer_per_directory() {
    let dir = TestDir::new("one-writer");
    let first = AuditLog::open_with(&dir.config(), ChainKey::sha256()).unwrap();
    let err = AuditLog::open_with(&dir.config(), ChainKey::sha256()).unwrap_err();
    let locked = std::error::Error::source(&err)
        .and_then(|s| s.downcast_ref::<LogLocked>())
        .unwrap_or_else(|| panic!("expected LogLocked, got {err:?}"));
    assert_eq!(locked.path, dir.path().join(keymgr_audit::LOCK_FILE));
    assert_eq!(locked.holder_pid, Some(std::process::id()));
    assert!(err.to_string().contains(&dir.path().display().to_string()));

    // A writer asked to wait gets the lock once the first one is gone.
    let mut waiting = dir.config();
    waiting.lock_wait = Duration::from_secs(30);
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        drop(first);
    });
    let second = AuditLog::open_with(&waiting, ChainKey::sha256()).unwrap();
    releaser.join().unwrap();
    // Readers take no lock.
    assert!(
        Verifier::default()
            .verify_paths(&[dir.path()])
            .unwrap()
            .is_ok()
    );
    drop(second);
}
