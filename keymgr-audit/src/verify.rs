//! Verification: walks segments in order and reports the first broken link.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};

use keymgr_core::{PublicKey, Result};

use crate::entry::{GENESIS_HASH, events};
pub use crate::report::{Anchor, BreakReason, BrokenLink, VerifyReport, VerifyWarning};
use crate::{ChainKey, Checkpoint, Entry, segment};

/// How far back (in entries) a checkpoint may refer; the writer never exceeds it.
pub const CHECKPOINT_WINDOW: u64 = 4096;

/// Verifies logs: chain links, hashes (plain or keyed), canonical form, checkpoints.
#[derive(Debug, Clone)]
pub struct Verifier {
    key: ChainKey,
    trusted: Vec<PublicKey>,
    anchors: Vec<Anchor>,
    /// Published checkpoints: node -> seq -> hash.
    external: BTreeMap<String, BTreeMap<u64, String>>,
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new(ChainKey::sha256())
    }
}

impl Verifier {
    /// A verifier for chains hashed with `key`.
    pub fn new(key: ChainKey) -> Self {
        Self {
            key,
            trusted: Vec::new(),
            anchors: Vec::new(),
            external: BTreeMap::new(),
        }
    }

    /// The chain key this verifier checks hashes with.
    pub fn key(&self) -> &ChainKey {
        &self.key
    }

    /// Public keys whose checkpoints are trusted (reported in
    /// [`VerifyReport::last_trusted_checkpoint`]).
    pub fn trust(mut self, key: PublicKey) -> Self {
        self.trusted.push(key);
        self
    }

    /// Requires the log to reach `anchor` (detects truncation at a line boundary, which a
    /// chain alone cannot see).
    /// Repeatable.
    pub fn anchor(mut self, anchor: Anchor) -> Self {
        self.anchors.push(anchor);
        self
    }

    /// Requires the log to contain every published checkpoint of the nodes it has
    /// entries of (seq present, same hash). Detects a cut-off tail, deleted segments
    /// and a replaced or re-chained log. Check the checkpoints themselves first
    /// ([`crate::publish::check_published`]).
    pub fn checkpoints<'c>(mut self, cps: impl IntoIterator<Item = &'c Checkpoint>) -> Self {
        for cp in cps {
            self.external
                .entry(cp.node.clone())
                .or_default()
                .insert(cp.seq, cp.hash.clone());
        }
        self
    }

    /// Nodes that have published checkpoints but no entries in any of `reports`: their
    /// log was not given, or was replaced by one with other node ids.
    pub fn unmatched_nodes<'r>(
        &self,
        reports: impl IntoIterator<Item = &'r VerifyReport>,
    ) -> Vec<String> {
        let seen: BTreeSet<&String> = reports.into_iter().flat_map(|r| &r.nodes).collect();
        self.external
            .keys()
            .filter(|n| !seen.contains(n))
            .cloned()
            .collect()
    }

    /// Verifies the segments of a log: each path is a log directory or a segment file.
    /// Files are ordered by the first sequence number in their names.
    pub fn verify_paths<P: AsRef<Path>>(&self, paths: &[P]) -> Result<VerifyReport> {
        let files = collect_files(paths)?;
        let mut chain = Chain::new(self);
        for file in &files {
            if !chain.feed_file(file) {
                break;
            }
        }
        Ok(chain.finish(files.len()))
    }

    /// Verifies several logs at once: each directory is a chain of its own (one writer
    /// per directory, e.g. one per node); segment files given directly form one more
    /// chain together. Returns each chain's name (the directory, or `files`) and report.
    pub fn verify_each<P: AsRef<Path>>(&self, paths: &[P]) -> Result<Vec<(String, VerifyReport)>> {
        let (dirs, loose): (Vec<&Path>, Vec<&Path>) =
            paths.iter().map(AsRef::as_ref).partition(|p| p.is_dir());
        let mut out = Vec::new();
        for d in dirs {
            out.push((d.display().to_string(), self.verify_paths(&[d])?));
        }
        if !loose.is_empty() {
            let name = loose
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" ");
            out.push((name, self.verify_paths(&loose)?));
        }
        Ok(out)
    }

    /// Verifies a sequence of lines (as read from one or more files, without `\n`).
    /// `complete` says whether the last line ended with a newline.
    pub fn verify_lines<'a>(
        &self,
        lines: impl IntoIterator<Item = &'a [u8]>,
        complete: bool,
    ) -> VerifyReport {
        let mut chain = Chain::new(self);
        let mut iter = lines.into_iter().peekable();
        let mut n = 0;
        while let Some(line) = iter.next() {
            n += 1;
            if iter.peek().is_none() && !complete {
                chain.fail(None, n, BreakReason::TruncatedLine);
                break;
            }
            if chain.push(line, None, n).is_none() {
                break;
            }
        }
        chain.finish(0)
    }
}

/// Segment files named by `paths` (directories expand to their segments), in seq order.
pub(crate) fn collect_files<P: AsRef<Path>>(paths: &[P]) -> Result<Vec<PathBuf>> {
    let mut files: Vec<(u64, PathBuf)> = Vec::new();
    for p in paths {
        let p = p.as_ref();
        if !p.exists() {
            return Err(keymgr_core::Error::not_found(
                p.display().to_string(),
                "no such audit log directory or segment file",
            ));
        }
        if p.is_dir() {
            files.extend(segment::list(p)?.into_iter().map(|s| (s.first_seq, s.path)));
        } else {
            let seq = p
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(segment::parse_name)
                .unwrap_or(u64::MAX);
            files.push((seq, p.to_path_buf()));
        }
    }
    // Stable: files without a segment name keep the order they were given in, last.
    files.sort_by_key(|(seq, _)| *seq);
    Ok(files.into_iter().map(|(_, p)| p).collect())
}

/// Incremental chain verification state.
pub(crate) struct Chain<'v> {
    v: &'v Verifier,
    last: Option<(u64, String, u64)>,
    first_seq: Option<u64>,
    unanchored: Option<(u64, String)>,
    recent: VecDeque<(u64, String)>,
    entries: u64,
    checkpoints: u64,
    trusted_checkpoint: Option<(u64, String)>,
    last_checkpoint: Option<(u64, String)>,
    anchors_seen: Vec<bool>,
    external_points: u64,
    nodes: BTreeSet<String>,
    /// The first seq the log should start at (from the first segment's file name).
    start_seq: Option<u64>,
    broken: Option<BrokenLink>,
}

impl<'v> Chain<'v> {
    pub(crate) fn new(v: &'v Verifier) -> Self {
        Self {
            v,
            last: None,
            first_seq: None,
            unanchored: None,
            recent: VecDeque::new(),
            entries: 0,
            checkpoints: 0,
            trusted_checkpoint: None,
            last_checkpoint: None,
            anchors_seen: vec![false; v.anchors.len()],
            external_points: 0,
            nodes: BTreeSet::new(),
            start_seq: None,
            broken: None,
        }
    }

    /// Continues a chain: the next entry must be seq `start_seq` and, when `prev` (seq,
    /// hash, ts_ms) is given, link to it.
    pub(crate) fn resume(
        v: &'v Verifier,
        start_seq: u64,
        prev: Option<(u64, String, u64)>,
    ) -> Self {
        let mut c = Self::new(v);
        c.start_seq = Some(start_seq);
        c.last = prev;
        c
    }

    fn expected_seq(&self) -> u64 {
        self.last
            .as_ref()
            .map_or(self.start_seq.unwrap_or(1), |(s, _, _)| s + 1)
    }

    fn fail(&mut self, file: Option<&Path>, line: u64, reason: BreakReason) {
        let seq = self.expected_seq();
        self.fail_at(seq, file, line, reason);
    }

    fn fail_at(&mut self, seq: u64, file: Option<&Path>, line: u64, reason: BreakReason) {
        if self.broken.is_none() {
            self.broken = Some(BrokenLink {
                seq,
                file: file.map(Path::to_path_buf),
                line,
                reason,
            });
        }
    }

    /// Reads a whole file; false once the chain is broken.
    pub(crate) fn feed_file(&mut self, path: &Path) -> bool {
        self.feed_file_with(path, &mut |_, _| {})
    }

    /// Like [`feed_file`](Self::feed_file), calling `on_entry` with each verified entry
    /// and its line.
    pub(crate) fn feed_file_with(
        &mut self,
        path: &Path,
        on_entry: &mut dyn FnMut(&Entry, &[u8]),
    ) -> bool {
        if self.last.is_none() && self.start_seq.is_none() {
            // A segment's name says where it starts: deleting or moving its first
            // entries is reported at that seq.
            self.start_seq = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(segment::parse_name);
        }
        let f = match crate::files::open_read(path) {
            Ok(f) => f,
            Err(e) => {
                self.fail(
                    Some(path),
                    0,
                    BreakReason::Io {
                        detail: format!("{}: {e}", path.display()),
                    },
                );
                return false;
            }
        };
        let mut reader = BufReader::with_capacity(1 << 20, f);
        let mut buf = Vec::with_capacity(1024);
        let mut n = 0u64;
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) => {
                    self.fail(
                        Some(path),
                        n + 1,
                        BreakReason::Io {
                            detail: format!("{}: {e}", path.display()),
                        },
                    );
                    return false;
                }
            }
            n += 1;
            if buf.last() != Some(&b'\n') {
                self.fail(Some(path), n, BreakReason::TruncatedLine);
                return false;
            }
            buf.pop();
            match self.push(&buf, Some(path), n) {
                Some(entry) => on_entry(&entry, &buf),
                None => return false,
            }
        }
    }

    /// Checks one line; returns the entry, or `None` once the chain is broken.
    pub(crate) fn push(&mut self, line: &[u8], file: Option<&Path>, n: u64) -> Option<Entry> {
        if self.broken.is_some() {
            return None;
        }
        let entry = match Entry::parse(line) {
            Ok(e) => e,
            Err(detail) => {
                self.fail(file, n, BreakReason::Malformed { detail });
                return None;
            }
        };
        let computed = hex::encode(self.v.key.digest(&entry.canonical_body()));
        // Sequence and link first: a deleted or reordered entry is reported as such.
        match &self.last {
            None => {
                self.first_seq = Some(entry.seq);
                let expected = self.start_seq.unwrap_or(1).max(1);
                if entry.seq == 0 || (self.start_seq.is_some() && entry.seq != expected) {
                    self.fail(
                        file,
                        n,
                        BreakReason::SeqGap {
                            expected,
                            found: entry.seq,
                        },
                    );
                    return None;
                }
                if entry.seq == 1 {
                    if entry.prev != GENESIS_HASH {
                        self.fail(
                            file,
                            n,
                            BreakReason::PrevMismatch {
                                expected: GENESIS_HASH.into(),
                                found: entry.prev.clone(),
                            },
                        );
                        return None;
                    }
                } else {
                    self.unanchored = Some((entry.seq, entry.prev.clone()));
                }
            }
            Some((seq, hash, ts)) => {
                if entry.seq != seq + 1 {
                    self.fail(
                        file,
                        n,
                        BreakReason::SeqGap {
                            expected: seq + 1,
                            found: entry.seq,
                        },
                    );
                    return None;
                }
                if &entry.prev != hash {
                    let expected = hash.clone();
                    self.fail(
                        file,
                        n,
                        BreakReason::PrevMismatch {
                            expected,
                            found: entry.prev.clone(),
                        },
                    );
                    return None;
                }
                if entry.ts_ms < *ts {
                    let previous_ms = *ts;
                    self.fail(
                        file,
                        n,
                        BreakReason::TimeWentBackwards {
                            previous_ms,
                            ts_ms: entry.ts_ms,
                        },
                    );
                    return None;
                }
            }
        }
        if computed != entry.hash {
            self.fail(
                file,
                n,
                BreakReason::HashMismatch {
                    stated: entry.hash.clone(),
                    computed,
                },
            );
            return None;
        }
        if entry.canonical_line() != line {
            self.fail(file, n, BreakReason::NotCanonical);
            return None;
        }
        if entry.event == events::CHECKPOINT
            && let Err(detail) = self.check_checkpoint(&entry)
        {
            self.fail(file, n, BreakReason::BadCheckpoint { detail });
            return None;
        }
        if entry.event == events::RETENTION {
            self.check_retention(&entry);
        }
        let mut expected = None;
        for (i, a) in self.v.anchors.iter().enumerate() {
            if a.seq == entry.seq {
                self.anchors_seen[i] = true;
                self.external_points += 1;
                expected = expected.or(a.hash.as_ref().filter(|h| **h != entry.hash));
            }
        }
        if let Some(h) = self
            .v
            .external
            .get(&entry.node)
            .and_then(|m| m.get(&entry.seq))
        {
            self.external_points += 1;
            expected = expected.or(Some(h).filter(|h| **h != entry.hash));
        }
        if let Some(h) = expected {
            let expected = h.clone();
            self.fail(
                file,
                n,
                BreakReason::AnchorMismatch {
                    expected,
                    found: entry.hash.clone(),
                },
            );
            return None;
        }
        if !self.nodes.contains(&entry.node) {
            self.nodes.insert(entry.node.clone());
        }
        self.recent.push_back((entry.seq, entry.hash.clone()));
        if self.recent.len() as u64 > CHECKPOINT_WINDOW + 1 {
            self.recent.pop_front();
        }
        self.last = Some((entry.seq, entry.hash.clone(), entry.ts_ms));
        self.entries += 1;
        Some(entry)
    }

    fn check_checkpoint(&mut self, entry: &Entry) -> std::result::Result<(), String> {
        let cp = Checkpoint::from_entry(entry)?;
        let known = self
            .recent
            .iter()
            .find(|(s, _)| *s == cp.seq)
            .map(|(_, h)| h.as_str());
        match known {
            Some(h) if h == cp.hash => {}
            Some(h) => {
                return Err(format!(
                    "vouches for hash {} at seq {}, but that entry's hash is {h}",
                    cp.hash, cp.seq
                ));
            }
            None => {
                return Err(format!(
                    "refers to seq {}, which is not among the {CHECKPOINT_WINDOW} entries before it",
                    cp.seq
                ));
            }
        }
        let embedded = cp.embedded_public_key().map_err(|e| e.to_string())?;
        cp.verify(&embedded).map_err(|e| e.to_string())?;
        if let Some((seq, hash)) = &self.last_checkpoint
            && (cp.prev_seq, &cp.prev_hash) != (*seq, hash)
        {
            return Err(format!(
                "names checkpoint seq {} as its predecessor, but the previous checkpoint in the log is seq {seq}",
                cp.prev_seq
            ));
        }
        self.last_checkpoint = Some((cp.seq, cp.hash.clone()));
        self.checkpoints += 1;
        if self.v.trusted.contains(&embedded) {
            self.trusted_checkpoint = Some((cp.seq, cp.hash));
        }
        Ok(())
    }

    fn check_retention(&mut self, entry: &Entry) {
        let through = entry
            .details
            .get("pruned_through_seq")
            .and_then(|s| s.parse::<u64>().ok());
        let hash = entry.details.get("pruned_through_hash");
        if let (Some((first, prev)), Some(through), Some(hash)) = (&self.unanchored, through, hash)
            && through + 1 == *first
            && hash == prev
        {
            self.unanchored = None;
        }
    }

    pub(crate) fn broken(&self) -> Option<&BrokenLink> {
        self.broken.as_ref()
    }

    pub(crate) fn finish(mut self, files: usize) -> VerifyReport {
        if self.broken.is_none()
            && let Some((first, _)) = &self.unanchored
        {
            let first = *first;
            self.fail_at(
                first,
                None,
                0,
                BreakReason::UnanchoredStart { first_seq: first },
            );
        }
        let last_seq = self.last.as_ref().map_or(0, |(s, _, _)| *s);
        // The furthest point kept outside the log that it does not reach.
        let plain = self
            .v
            .anchors
            .iter()
            .zip(&self.anchors_seen)
            .filter(|(_, seen)| !**seen)
            .map(|(a, _)| a.seq);
        let published = self
            .nodes
            .iter()
            .filter_map(|n| self.v.external.get(n))
            .filter_map(|m| m.keys().next_back().copied());
        if let Some(expected_seq) = plain.chain(published).filter(|s| *s > last_seq).max() {
            self.fail_at(
                last_seq + 1,
                None,
                0,
                BreakReason::MissingTail {
                    last_seq,
                    expected_seq,
                },
            );
        }
        VerifyReport {
            files,
            entries: self.entries,
            first_seq: self.first_seq,
            last_seq: self.last.as_ref().map(|(s, _, _)| *s),
            last_hash: self.last.map(|(_, h, _)| h),
            checkpoints: self.checkpoints,
            last_trusted_checkpoint: self.trusted_checkpoint,
            mode: self.v.key.mode(),
            nodes: self.nodes,
            external_points: self.external_points,
            externally_anchored: !self.v.anchors.is_empty() || !self.v.external.is_empty(),
            broken: self.broken,
        }
    }
}
