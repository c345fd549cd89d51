//! What verification reports: the first broken link and why, the report, warnings.

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;

use keymgr_core::Result;
use serde::Serialize;

use crate::ChainKey;

/// Why verification stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum BreakReason {
    /// The line is not a well-formed entry.
    Malformed {
        /// Parser message.
        detail: String,
    },
    /// The line parses but is not byte-for-byte the canonical encoding of its content.
    NotCanonical,
    /// The stored hash is not the hash of the entry.
    HashMismatch {
        /// The hash in the line.
        stated: String,
        /// The recomputed hash.
        computed: String,
    },
    /// An entry is missing, duplicated or out of order.
    SeqGap {
        /// The sequence number that should come next.
        expected: u64,
        /// The one found.
        found: u64,
    },
    /// `prev` does not match the previous entry's hash.
    PrevMismatch {
        /// Hash of the previous entry.
        expected: String,
        /// `prev` in this entry.
        found: String,
    },
    /// A timestamp earlier than the previous entry's.
    TimeWentBackwards {
        /// Previous entry's time.
        previous_ms: u64,
        /// This entry's time.
        ts_ms: u64,
    },
    /// The final line has no newline: a torn write or a truncated file.
    TruncatedLine,
    /// The log starts after seq 1 and no retention checkpoint accounts for the rest.
    UnanchoredStart {
        /// The first sequence number present.
        first_seq: u64,
    },
    /// A checkpoint entry does not check out.
    BadCheckpoint {
        /// What is wrong.
        detail: String,
    },
    /// The log ends before an entry the verifier was told to expect.
    MissingTail {
        /// Last sequence number present (0 if none).
        last_seq: u64,
        /// The expected one.
        expected_seq: u64,
    },
    /// The entry at the expected sequence number has a different hash.
    AnchorMismatch {
        /// The expected hash.
        expected: String,
        /// The hash found.
        found: String,
    },
    /// A file could not be read.
    Io {
        /// The error.
        detail: String,
    },
}

impl fmt::Display for BreakReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BreakReason::Malformed { detail } => write!(f, "malformed entry: {detail}"),
            BreakReason::NotCanonical => {
                f.write_str("line is not the canonical encoding of its entry (edited)")
            }
            BreakReason::HashMismatch { stated, computed } => write!(
                f,
                "hash mismatch: entry says {stated}, content hashes to {computed} (edited, or wrong HMAC key/mode)"
            ),
            BreakReason::SeqGap { expected, found } => write!(
                f,
                "expected seq {expected}, found {found} (entries deleted, inserted or reordered)"
            ),
            BreakReason::PrevMismatch { expected, found } => write!(
                f,
                "prev is {found} but the previous entry's hash is {expected} (chain broken)"
            ),
            BreakReason::TimeWentBackwards { previous_ms, ts_ms } => write!(
                f,
                "timestamp {ts_ms} is earlier than the previous entry's {previous_ms}"
            ),
            BreakReason::TruncatedLine => {
                f.write_str("final line is incomplete (truncated file or torn write)")
            }
            BreakReason::UnanchoredStart { first_seq } => write!(
                f,
                "log starts at seq {first_seq}; entries before it are missing and no retention checkpoint accounts for them"
            ),
            BreakReason::BadCheckpoint { detail } => write!(f, "bad checkpoint: {detail}"),
            BreakReason::MissingTail {
                last_seq,
                expected_seq,
            } => write!(
                f,
                "log ends at seq {last_seq} but seq {expected_seq} was expected (entries truncated)"
            ),
            BreakReason::AnchorMismatch { expected, found } => write!(
                f,
                "expected hash {expected} at this seq, found {found} (log rewritten)"
            ),
            BreakReason::Io { detail } => write!(f, "cannot read: {detail}"),
        }
    }
}

/// The first broken link found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokenLink {
    /// Sequence number of the first entry that does not verify (for a malformed or
    /// missing entry: the one that should have been there).
    pub seq: u64,
    /// The file, when the break is in one.
    pub file: Option<PathBuf>,
    /// 1-based line number in that file (0 when not about a line).
    pub line: u64,
    /// Why.
    pub reason: BreakReason,
}

impl fmt::Display for BrokenLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seq {}: {}", self.seq, self.reason)?;
        if let Some(file) = &self.file {
            write!(f, " ({}:{})", file.display(), self.line)?;
        }
        Ok(())
    }
}

/// A point the log must contain: typically from a checkpoint kept outside the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    /// Sequence number.
    pub seq: u64,
    /// Its hash (hex), if known.
    pub hash: Option<String>,
}

impl Anchor {
    /// Parses `SEQ` or `SEQ:HASH`.
    pub fn parse(s: &str) -> Result<Self> {
        let (seq, hash) = match s.split_once(':') {
            Some((s, h)) => (s, Some(h.trim().to_ascii_lowercase())),
            None => (s, None),
        };
        let seq = seq.trim().parse().map_err(|_| {
            keymgr_core::Error::invalid_input("anchor", format!("{s:?}: expected SEQ or SEQ:HASH"))
        })?;
        if hash
            .as_ref()
            .is_some_and(|h| h.len() != 64 || hex::decode(h).is_err())
        {
            return Err(keymgr_core::Error::invalid_input(
                "anchor",
                format!("{s:?}: HASH must be 64 hex characters"),
            ));
        }
        Ok(Self { seq, hash })
    }
}

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Segment files read.
    pub files: usize,
    /// Entries that verified.
    pub entries: u64,
    /// First sequence number present.
    pub first_seq: Option<u64>,
    /// Last sequence number that verified.
    pub last_seq: Option<u64>,
    /// Its hash.
    pub last_hash: Option<String>,
    /// Checkpoint entries whose signature verified with their embedded key.
    pub checkpoints: u64,
    /// The last checkpoint signed by one of the trusted keys: (seq, hash) it vouches for.
    pub last_trusted_checkpoint: Option<(u64, String)>,
    /// `sha256` or `hmac-sha256`.
    pub mode: &'static str,
    /// Node ids found in the entries.
    pub nodes: BTreeSet<String>,
    /// Anchors and published checkpoints the log was checked against (kept outside it).
    pub external_points: u64,
    /// Whether the verifier was given anything kept outside the log to check against.
    pub externally_anchored: bool,
    /// The first broken link, if any.
    pub broken: Option<BrokenLink>,
}

impl VerifyReport {
    /// Whether the whole log verified.
    pub fn is_ok(&self) -> bool {
        self.broken.is_none()
    }

    /// What the chain alone cannot vouch for (`keymgr audit verify --strict` fails on any).
    pub fn warnings(&self) -> Vec<VerifyWarning> {
        let mut w = Vec::new();
        if self.entries == 0 {
            w.push(VerifyWarning::EmptyLog);
        }
        if self.mode == ChainKey::sha256().mode() {
            w.push(VerifyWarning::UnkeyedChain);
        }
        if !self.externally_anchored {
            w.push(VerifyWarning::TailNotAnchored);
        }
        w
    }
}

/// Something a successful verification does not rule out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum VerifyWarning {
    /// No entries at all (a deleted log verifies as an empty one).
    EmptyLog,
    /// Plain SHA-256 chain: anyone with write access can recompute it after an edit.
    UnkeyedChain,
    /// Nothing kept outside the log (anchor, published checkpoints) was checked, so a
    /// cut-off tail or a replaced log would not be seen.
    TailNotAnchored,
}

impl fmt::Display for VerifyWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VerifyWarning::EmptyLog => "the log has no entries",
            VerifyWarning::UnkeyedChain => {
                "unkeyed (sha256) chain: anyone with write access can recompute it; use KEYMGR_AUDIT_HMAC_KEY"
            }
            VerifyWarning::TailNotAnchored => {
                "no --checkpoints or --anchor given: a cut-off tail or a replaced log would not be detected"
            }
        })
    }
}
