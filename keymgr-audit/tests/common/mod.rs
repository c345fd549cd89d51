//! Shared test helpers.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use keymgr_audit::{AuditConfig, Entry};

/// A fresh directory under the system temp dir, removed on drop.
pub struct TestDir(keymgr_testkit::TempDir);

impl TestDir {
    pub fn new(tag: &str) -> Self {
        Self(keymgr_testkit::TempDir::new(&format!("audit-{tag}")))
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }

    pub fn config(&self) -> AuditConfig {
        let mut c = AuditConfig::new(self.path());
        c.node_id = "test-node".into();
        c
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
