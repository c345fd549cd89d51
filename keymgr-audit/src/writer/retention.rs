//! Retention: removing whole segments older than the retention period, anchored by a
//! durable AUDIT_RETENTION entry.

use std::collections::BTreeMap;
use std::fs;

use keymgr_core::{Error, Result};
use tokio::sync::oneshot;

use super::{Pending, Writer};
use crate::entry::events;
use crate::segment::{self, io_error};
use crate::{Entry, time};

impl Writer {
    /// Removes whole segments older than the retention period, after durably recording
    /// an AUDIT_RETENTION entry that anchors the remaining chain. Never touches the
    /// active segment.
    pub(super) fn retention(&mut self, now_ms: u64) -> Result<usize> {
        let Some(keep) = self.cfg.retention else {
            return Ok(0);
        };
        let cutoff = now_ms.saturating_sub(u64::try_from(keep.as_millis()).unwrap_or(u64::MAX));
        let segments = segment::list(&self.cfg.dir)?;
        let mut prune = Vec::new();
        let mut through: Option<(u64, String)> = None;
        for pair in segments.windows(2) {
            // Everything in a segment is older than the next segment's first entry.
            let Some(line) = segment::first_line(&pair[1].path)? else {
                break;
            };
            let Ok(next) = Entry::parse(&line) else {
                break;
            };
            if next.ts_ms >= cutoff || pair[0].path == self.seg_path {
                break;
            }
            prune.push(pair[0].path.clone());
            through = Some((next.seq - 1, next.prev));
        }
        let Some((seq, hash)) = through else {
            return Ok(0);
        };
        if self.file.is_none() {
            return Ok(0);
        }
        let details = BTreeMap::from([
            ("pruned_through_seq".to_owned(), seq.to_string()),
            ("pruned_through_hash".to_owned(), hash),
            ("pruned_segments".to_owned(), prune.len().to_string()),
            ("cutoff".to_owned(), time::format_rfc3339(cutoff)),
        ]);
        let p = Pending::internal(events::RETENTION, "success", details);
        let ts = p.ts_ms.max(self.next.ts_ms);
        let (e, line) = self.seal(p, ts);
        let (tx, mut rx) = oneshot::channel();
        self.push(e, line, Some(tx), false, false);
        self.commit();
        // Buffered mode: the anchor must be on disk before anything is deleted.
        self.sync_now();
        match rx.try_recv() {
            Ok(Ok(_)) if self.shared.failing().is_none() => {}
            Ok(Err(e)) => return Err(e),
            _ => {
                return Err(Error::unavailable(
                    "audit-log",
                    "retention checkpoint was not written; no segment removed",
                    None,
                ));
            }
        }
        for path in &prune {
            fs::remove_file(path).map_err(|e| io_error("remove old segment", path, e))?;
        }
        self.shared
            .fsyncs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        segment::sync_dir(&self.cfg.dir)?;
        tracing::info!(
            target: "keymgr::audit",
            removed = prune.len(),
            pruned_through_seq = seq,
            "audit log retention removed old segments"
        );
        Ok(prune.len())
    }
}
