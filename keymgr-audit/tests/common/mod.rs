//! Shared test helpers.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use keymgr_audit::{AuditConfig, Entry};

/// A fresh directory under the system temp dir, removed on drop.
pub struct TestDir(PathBuf);

impl TestDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "keymgr-audit-{tag}-{}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst),
            keymgr_audit::time::now_ms()
        ));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn config(&self) -> AuditConfig {
        let mut c = AuditConfig::new(&self.0);
        c.node_id = "test-node".into();
        c
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// All entries of the log in `dir`, in order (parsed without verification).
pub fn entries(dir: &Path) -> Vec<Entry> {
    let mut out = Vec::new();
    for seg in keymgr_audit::segment::list(dir).unwrap() {
        let data = std::fs::read(&seg.path).unwrap();
        for line in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            out.push(Entry::parse(line).unwrap());
        }
    }
    out
}

/// Segment files of `dir`.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    keymgr_audit::segment::list(dir)
        .unwrap()
        .into_iter()
        .map(|s| s.path)
        .collect()
}
