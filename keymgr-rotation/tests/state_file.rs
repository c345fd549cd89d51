//! A hand-edited rotation state file whose key name or version strings are malformed is
//! refused when it is read, with an `Integrity` error naming the file (`key`) and the
//! field; the rotator reports that error instead of panicking while building a
//! `KeyRef` from the file's text.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use keymgr_core::{Error, ErrorKind, IntegrityReason, KeyAlgorithm, KeyBackend};
use keymgr_rotation::{
    FileStateStore, KeyState, ManualClock, Phase, RotationPolicy, Rotator, StateStore as _,
};
use keymgr_testkit::memory::MemoryBackend;
use serde_json::{Value, json};

const KEY: &str = "evm-settlement";

/// A change to the state file's JSON.
type Edit = Box<dyn FnOnce(&mut Value)>;

fn valid() -> KeyState {
    KeyState {
        name: KEY.into(),
        phase: Phase::Overlapping {
            old: "1".into(),
            new: "2".into(),
            until_ms: 5,
        },
        active: Some("2".into()),
        active_since_ms: 0,
        disabled: vec!["0".into()],
        notice_sent_for: None,
        request: None,
        revision: 0,
    }
}

/// The valid state as JSON with `edit` applied, written where the store keeps `KEY`.
fn hand_edit(dir: &Path, edit: impl FnOnce(&mut Value)) -> std::path::PathBuf {
    let store = FileStateStore::new(dir).unwrap();
    let mut state = valid();
    assert!(store.save(&mut state).unwrap());
    let path = dir.join(format!("{KEY}.json"));
    let mut value: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut value);
    std::fs::write(&path, serde_json::to_vec(&value).unwrap()).unwrap();
    path
}

fn assert_names(e: &Error, path: &Path, field: &str) {
    match e {
        Error::Integrity {
            key,
            reason,
            detail,
            ..
        } => {
            assert_eq!(key, &path.display().to_string(), "{e}");
            assert_eq!(*reason, IntegrityReason::Other, "{e}");
            assert!(detail.contains(&format!("field `{field}`")), "{e}");
        }
        other => panic!("expected an integrity error, got {other:?}"),
    }
}

#[tokio::test]
async fn malformed_versions_and_names_are_refused_naming_file_and_field() {
    let root = keymgr_testkit::TempDir::new("rotation-state-file");
    let cases: Vec<(&str, Edit)> = vec![
        ("active", Box::new(|v| v["active"] = json!(""))),
        ("active", Box::new(|v| v["active"] = json!("2@3"))),
        ("phase.old", Box::new(|v| v["phase"]["old"] = json!("1@x"))),
        ("phase.new", Box::new(|v| v["phase"]["new"] = json!(""))),
        (
            "phase.old",
            Box::new(|v| v["phase"] = json!({"phase": "disabling", "old": "@"})),
        ),
        (
            "phase.old",
            Box::new(|v| v["phase"] = json!({"phase": "creating", "old": ""})),
        ),
        (
            "phase.version",
            Box::new(|v| {
                v["phase"] = json!({"phase": "failed", "step": "disable", "version": "a@b",
                                    "kind": "backend", "error": "x", "at_ms": 1});
            }),
        ),
        (
            "disabled[1]",
            Box::new(|v| v["disabled"] = json!(["0", "x@y"])),
        ),
        ("name", Box::new(|v| v["name"] = json!("evm-settlement@2"))),
        ("name", Box::new(|v| v["name"] = json!("another-key"))),
    ];
    for (i, (field, edit)) in cases.into_iter().enumerate() {
        let dir = root.path().join(format!("case-{i}"));
        let path = hand_edit(&dir, edit);
        let store = Arc::new(FileStateStore::new(&dir).unwrap());
        let e = store.load(KEY).unwrap_err();
        assert_names(&e, &path, field);

        // The rotator surfaces the same error (no panic on the file's text).
        let backend: Arc<dyn KeyBackend> =
            Arc::new(MemoryBackend::with_key(KEY, KeyAlgorithm::Secp256k1));
        let rotator = Rotator::new(
            backend,
            store,
            Arc::new(keymgr_core::TracingAuditSink),
            RotationPolicy::default(),
            Arc::new(ManualClock::new(10)),
            "holder",
        )
        .unwrap();
        let e = rotator.tick(KEY).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Integrity, "case {i}: {e}");
        assert_names(&e, &path, field);
    }
}

#[test]
fn well_formed_state_loads_unchanged() {
    let root = keymgr_testkit::TempDir::new("rotation-state-file-ok");
    let path = hand_edit(root.path(), |_| {});
    let store = FileStateStore::new(root.path()).unwrap();
    let mut expected = valid();
    expected.revision = 1;
    assert_eq!(
        store.load(KEY).unwrap(),
        Some(expected),
        "{}",
        path.display()
    );
}
