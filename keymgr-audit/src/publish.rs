//! Checkpoints published outside the log directory.
//!
//! A hash chain cannot see its own tail cut off; only something kept elsewhere can. The
//! writer publishes each signed [`Checkpoint`] to `tracing` (target
//! `keymgr::audit::checkpoint`, at WARN so default filters and syslog/journald
//! forwarders keep it) and, when `KEYMGR_AUDIT_CHECKPOINT_FILE` is set, appends it as one
//! JSON line to that file (put it on another volume). `keymgr audit verify --checkpoints
//! FILE` then requires the log to contain every published checkpoint.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use keymgr_core::{Error, PublicKey, Result};

use crate::config::KEYMGR_AUDIT_CHECKPOINT_FILE;
use crate::segment::io_error;
use crate::{Checkpoint, files};

/// `tracing` target of published checkpoints.
pub const TRACING_TARGET: &str = "keymgr::audit::checkpoint";

/// Where the writer publishes checkpoints.
#[derive(Debug)]
pub(crate) struct Publisher {
    file: Option<(PathBuf, Mutex<File>)>,
}

impl Publisher {
    /// Opens (creating `0600`) the checkpoint file, which must not be inside `log_dir`.
    pub(crate) fn open(path: Option<&Path>, log_dir: &Path) -> Result<Self> {
        let Some(path) = path else {
            return Ok(Self { file: None });
        };
        let bad = |reason: String| {
            Error::config(
                KEYMGR_AUDIT_CHECKPOINT_FILE,
                "a file outside the audit log directory, ideally on another volume",
                reason,
            )
        };
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        files::ensure_dir(parent).map_err(|e| bad(e.to_string()))?;
        let parent = parent
            .canonicalize()
            .map_err(|e| bad(format!("{}: {e}", parent.display())))?;
        let dir = log_dir
            .canonicalize()
            .map_err(|e| io_error("resolve", log_dir, e))?;
        if parent.starts_with(&dir) {
            return Err(bad(format!(
                "{} is inside the log directory {}: whoever can cut the log could cut it too",
                path.display(),
                dir.display()
            )));
        }
        if same_device(&parent, &dir) {
            tracing::warn!(
                target: "keymgr::audit",
                file = %path.display(),
                "KEYMGR_AUDIT_CHECKPOINT_FILE is on the same volume as the audit log; a volume lost or rolled back takes both"
            );
        }
        let file = files::open_or_create(path).map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            file: Some((path.to_path_buf(), Mutex::new(file))),
        })
    }

    /// Publishes `cp` everywhere configured; the file line is fsynced before returning.
    pub(crate) fn publish(&self, cp: &Checkpoint) -> Result<()> {
        tracing::warn!(
            target: TRACING_TARGET,
            node = %cp.node,
            seq = cp.seq,
            hash = %cp.hash,
            prev_seq = cp.prev_seq,
            prev_hash = %cp.prev_hash,
            ts_ms = cp.ts_ms,
            key = %cp.key,
            algorithm = %cp.algorithm,
            public_key = %cp.public_key,
            signature = %cp.signature,
            "audit checkpoint"
        );
        if let Some((path, file)) = &self.file {
            let mut line = serde_json::to_vec(cp).map_err(|e| {
                Error::backend(
                    "audit-log",
                    format!("cannot encode a checkpoint: {e}"),
                    None,
                )
            })?;
            line.push(b'\n');
            let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
            f.write_all(&line)
                .and_then(|()| f.sync_data())
                .map_err(|e| io_error("publish a checkpoint to", path, e))?;
        }
        Ok(())
    }
}

fn same_device(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev(),
        _ => false,
    }
}

/// Reads a checkpoint file (one JSON [`Checkpoint`] per line) as the writer publishes it.
pub fn read_published(path: &Path) -> Result<Vec<Checkpoint>> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            Error::not_found(path.display().to_string(), "no such checkpoint file")
        }
        _ => io_error("read", path, e),
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| {
                Error::integrity(
                    format!("{}:{}", path.display(), i + 1),
                    format!("not a published checkpoint: {e}"),
                )
            })
        })
        .collect()
}

/// Checks published checkpoints before a log is verified against them: every signature
/// verifies (with one of `trusted`, or else with one key per node, the one the node's
/// checkpoints embed), and each checkpoint names the one before it of the same node (a
/// deleted or reordered checkpoint is an error). `source` names them in errors.
pub fn check_published(cps: &[Checkpoint], trusted: &[PublicKey], source: &str) -> Result<()> {
    let mut last: std::collections::BTreeMap<&str, &Checkpoint> = Default::default();
    for (i, cp) in cps.iter().enumerate() {
        let at = format!(
            "{source}: checkpoint {} (node {}, seq {})",
            i + 1,
            cp.node,
            cp.seq
        );
        let bad = |detail: String| Error::integrity(at.clone(), detail);
        let embedded = cp.embedded_public_key()?;
        let prev = last.get(cp.node.as_str()).copied();
        if trusted.is_empty() {
            if let Some(p) = prev
                && p.public_key != cp.public_key
            {
                return Err(bad(format!(
                    "signed by {} but the node's earlier checkpoints by {}; pass --trust-key",
                    cp.public_key, p.public_key
                )));
            }
            cp.verify(&embedded)?;
        } else if !trusted.iter().any(|k| cp.verify(k).is_ok()) {
            return Err(bad("not signed by any trusted key".to_owned()));
        }
        if let Some(p) = prev
            && (cp.prev_seq, cp.prev_hash.as_str()) != (p.seq, p.hash.as_str())
        {
            return Err(bad(format!(
                "names seq {} as its predecessor but the one before it is seq {} (checkpoints removed or reordered)",
                cp.prev_seq, p.seq
            )));
        }
        last.insert(&cp.node, cp);
    }
    Ok(())
}
