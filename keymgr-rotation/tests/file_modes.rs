//! Rotation state on disk is private: the directory the store creates is exactly 0700,
//! state and lease files exactly 0600 (the mode is set after creation, so the umask
//! cannot widen or narrow it), and planted links are refused, not followed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;

use keymgr_core::ErrorKind;
use keymgr_rotation::{FileStateStore, KeyState, LeaseOutcome, Phase, StateStore as _};

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn state_files_are_private_and_links_are_refused() {
    let root = keymgr_testkit::TempDir::new("rotation-file-modes");
    for sub in ["first", "open"] {
        let dir = root.path().join(sub);
        let store = FileStateStore::new(&dir).unwrap();
        let mut state = KeyState {
            name: "evm".into(),
            phase: Phase::Idle,
            active: Some("1".into()),
            active_since_ms: 0,
            disabled: Vec::new(),
            notice_sent_for: None,
            request: None,
            revision: 0,
        };
        assert!(store.save(&mut state).unwrap());
        let lease = store
            .acquire_lease("evm", "host:1", 0, Duration::from_secs(300))
            .unwrap();
        assert!(matches!(lease, LeaseOutcome::Acquired { .. }), "{lease:?}");
        assert_eq!(mode(&dir), 0o700, "state directory ({sub})");
        assert_eq!(mode(&dir.join("evm.json")), 0o600, "state file ({sub})");
        assert_eq!(mode(&dir.join("evm.lease")), 0o600, "lease file ({sub})");
    }

    // A state file replaced by a link to another file is refused, not read.
    let dir = root.path().join("open");
    let target = root.path().join("elsewhere.json");
    std::fs::copy(dir.join("evm.json"), &target).unwrap();
    std::fs::remove_file(dir.join("evm.json")).unwrap();
    std::os::unix::fs::symlink(&target, dir.join("evm.json")).unwrap();
    let store = FileStateStore::new(&dir).unwrap();
    let e = store.load("evm").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.to_string().contains("symbolic link"), "{e}");

    // A state directory that is a link is refused.
    let link = root.path().join("linked-state");
    std::os::unix::fs::symlink(&dir, &link).unwrap();
    let e = FileStateStore::new(&link).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
}
