//! The writer's disk side: writing and syncing committed groups, rolling segments,
//! and accounting for I/O failures (lost entries, the failing state, the alarm).

use std::fs::File;
use std::io::{self, Write as _};
use std::sync::atomic::Ordering;
use std::time::Instant;

use keymgr_core::{Error, Result};

use super::{Ack, Shared, Writer};
use crate::config::{Durability, FailurePolicy};
use crate::segment::{self, io_error};
use crate::{files, time};

/// `sync_data` on `file`, counted in [`Shared::fsyncs`].
fn sync_data(shared: &Shared, file: &File) -> io::Result<()> {
    shared.fsyncs.fetch_add(1, Ordering::Relaxed);
    file.sync_data()
}

impl Writer {
    pub(super) fn fail_one(&mut self, ack: Option<Ack>, err: Error) {
        let lost = ack.is_none() || self.cfg.on_failure == FailurePolicy::FailOpen;
        self.note_failure(&err.to_string(), u64::from(lost));
        if let Some(a) = ack {
            let _ = a.send(Err(err));
        }
    }

    /// Records an I/O failure: counts lost entries, marks the log failing, raises the alarm.
    pub(super) fn note_failure(&mut self, msg: &str, lost: u64) {
        self.shared.io_errors.fetch_add(1, Ordering::Relaxed);
        self.lost += lost;
        self.shared.lost.fetch_add(lost, Ordering::Relaxed);
        self.last_error = Some(msg.to_owned());
        self.shared.set_failing(Some(msg.to_owned()));
        tracing::error!(
            target: "keymgr::audit",
            alarm = true,
            policy = ?self.cfg.on_failure,
            lost_entries = lost,
            error = %msg,
            "AUDIT LOG WRITE FAILED: entries are not being recorded"
        );
    }

    pub(super) fn roll(&mut self, ts_ms: u64) -> Result<()> {
        self.sync_now();
        // Never leave a half-written batch behind in the segment being closed.
        if self.needs_truncate
            && let Some(f) = self.file.as_mut()
        {
            f.set_len(self.durable_len)
                .and_then(|()| sync_data(&self.shared, f))
                .map_err(|e| io_error("truncate", &self.seg_path, e))?;
            self.needs_truncate = false;
        }
        let path = self
            .cfg
            .dir
            .join(segment::file_name(self.next.seq + 1, ts_ms));
        let file = if self.inject > 0 {
            self.inject -= 1;
            Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "no space left on device (injected)",
            ))
        } else {
            files::create_new(&path)
        }
        .map_err(|e| io_error("create segment", &path, e))?;
        self.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
        segment::sync_dir(&self.cfg.dir)?;
        self.file = Some(file);
        self.seg_path = path;
        self.seg_day = time::day_of(ts_ms);
        self.durable_len = 0;
        self.needs_truncate = false;
        if let Err(e) = self.retention(ts_ms.max(time::now_ms())) {
            tracing::warn!(target: "keymgr::audit", error = %e, "audit log retention failed");
        }
        Ok(())
    }

    pub(super) fn write_buf(&mut self) -> io::Result<()> {
        let durable = self.cfg.durability == Durability::Durable;
        let Some(file) = self.file.as_mut() else {
            return Err(io::Error::other("no active segment"));
        };
        if self.needs_truncate {
            file.set_len(self.durable_len)?;
            sync_data(&self.shared, file)?;
            self.needs_truncate = false;
        }
        if self.inject > 0 {
            self.inject -= 1;
            // Like a disk that fills up mid-write: half the bytes land, then ENOSPC.
            self.needs_truncate = true;
            file.write_all(&self.buf[..self.buf.len() / 2])?;
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "no space left on device (injected)",
            ));
        }
        self.needs_truncate = true;
        file.write_all(&self.buf)?;
        if durable {
            sync_data(&self.shared, file)?;
            self.shared.commits.fetch_add(1, Ordering::Relaxed);
        } else if self.dirty_since.is_none() {
            self.dirty_since = Some(Instant::now());
        }
        self.needs_truncate = false;
        Ok(())
    }

    /// Writes (and in durable mode fsyncs) the staged entries and answers their callers.
    pub(super) fn commit(&mut self) {
        self.deferred_since = None;
        self.hold = None;
        if self.buf.is_empty() {
            return;
        }
        let result = self.write_buf();
        let acks = std::mem::take(&mut self.acks);
        match result {
            Ok(()) => {
                self.last_commit = Some(Instant::now());
                self.durable_len += self.buf.len() as u64;
                self.durable = self.next.clone();
                self.shared
                    .written
                    .fetch_add(acks.len() as u64, Ordering::Relaxed);
                if self.gap_staged > 0 {
                    self.lost -= self.gap_staged.min(self.lost);
                    self.gap_staged = 0;
                }
                if self.lost == 0 && self.shared.failing().is_some() {
                    self.shared.set_failing(None);
                    tracing::warn!(target: "keymgr::audit", "audit log is writable again");
                }
                for (ack, head, _) in acks {
                    if let Some(a) = ack {
                        let _ = a.send(Ok(head));
                    }
                }
            }
            Err(e) => {
                let err = io_error("append to", &self.seg_path, e);
                let msg = err.to_string();
                // Best effort now; write_buf retries the cut before the next append.
                if let Some(f) = self.file.as_mut()
                    && f.set_len(self.durable_len)
                        .and_then(|()| sync_data(&self.shared, f))
                        .is_ok()
                {
                    self.needs_truncate = false;
                }
                self.next = self.durable.clone();
                self.gap_staged = 0;
                let lost = acks.iter().filter(|(_, _, l)| *l).count() as u64;
                self.note_failure(&msg, lost);
                let mut first = Some(err);
                for (ack, _, _) in acks {
                    if let Some(a) = ack {
                        let e = first
                            .take()
                            .unwrap_or_else(|| Error::unavailable("audit-log", msg.clone(), None));
                        let _ = a.send(Err(e));
                    }
                }
            }
        }
        self.buf.clear();
    }

    pub(super) fn sync_now(&mut self) {
        if self.dirty_since.take().is_some()
            && let Some(f) = self.file.as_mut()
        {
            match sync_data(&self.shared, f) {
                Ok(()) => {
                    self.shared.commits.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    let msg = io_error("fsync", &self.seg_path, e).to_string();
                    self.note_failure(&msg, 0);
                }
            }
        }
    }
}
