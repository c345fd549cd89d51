//! Recovery at open: only the bytes after the last newline of the last segment are a
//! crash's torn tail (an unacknowledged write), and only they are ever cut. A complete
//! line that fails verification is tampering or a configuration mismatch: [`inspect`]
//! names which ([`Refusal`]) and the writer does not start; nothing is moved,
//! truncated or deleted.
//!
//! Open checks the last segment entry by entry and its link to the segment before it
//! (`keymgr audit verify` checks the whole log).

use std::fmt;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use keymgr_core::Error;

use crate::config::KEYMGR_AUDIT_HMAC_KEY;
use crate::entry::{GENESIS_HASH, events};
use crate::segment::{self, Segment, io_error};
use crate::verify::{BreakReason, BrokenLink, Chain};
use crate::writer::Head;
use crate::{ChainKey, Checkpoint, Entry, Verifier, files, time};

/// Why the writer refuses to open a log: the configuration does not match the log, or a
/// complete entry fails verification. Nothing on disk was changed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Refusal {
    /// The log is a keyed (HMAC) chain but no HMAC key is configured.
    HmacKeyMissing {
        /// The segment whose entries show it.
        segment: PathBuf,
    },
    /// The log is a keyed chain written with a different HMAC key than the configured one.
    HmacKeyWrong {
        /// The segment whose entries show it.
        segment: PathBuf,
    },
    /// An HMAC key is configured but the log is an unkeyed (plain SHA-256) chain.
    HmacKeyUnexpected {
        /// The segment whose entries show it.
        segment: PathBuf,
    },
    /// A complete entry fails verification (edited, inserted, deleted, garbage).
    Damaged {
        /// The first broken link.
        link: BrokenLink,
    },
    /// A file of the log could not be read (or is a link or special file).
    Unreadable {
        /// The cause.
        source: Error,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::HmacKeyMissing { segment } => write!(
                f,
                "{} is a keyed (hmac-sha256) chain but no HMAC key is configured (KEYMGR_AUDIT_HMAC_KEY or _WRAPPED unset: a secret not mounted?)",
                segment.display()
            ),
            Refusal::HmacKeyWrong { segment } => write!(
                f,
                "{} is a keyed chain written with a different HMAC key than the configured one (rotated or wrong key?)",
                segment.display()
            ),
            Refusal::HmacKeyUnexpected { segment } => write!(
                f,
                "{} is an unkeyed (sha256) chain but an HMAC key is configured (chain mode changed?)",
                segment.display()
            ),
            Refusal::Damaged { link } => write!(
                f,
                "a complete entry fails verification at {link} (edited, inserted or deleted entries, or a garbage line)"
            ),
            Refusal::Unreadable { source } => write!(f, "{source}"),
        }
    }
}

impl std::error::Error for Refusal {}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Self {
        let what = format!("{r}; the audit writer did not start and changed nothing");
        match r {
            Refusal::HmacKeyMissing { .. }
            | Refusal::HmacKeyWrong { .. }
            | Refusal::HmacKeyUnexpected { .. } => Error::config(
                KEYMGR_AUDIT_HMAC_KEY,
                "the chain mode and HMAC key the log was written with",
                what,
            ),
            Refusal::Damaged { link } => Error::integrity(
                link.file
                    .as_ref()
                    .map_or_else(|| "audit log".to_owned(), |p| p.display().to_string()),
                format!(
                    "{what}. Run `keymgr audit verify`, keep the evidence, and start a new log directory"
                ),
            ),
            Refusal::Unreadable { source } => source,
        }
    }
}

/// What [`inspect`] found and open will do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryPlan {
    /// The chain head the writer continues from.
    pub head: Head,
    /// The segment to append to and its length after the cut.
    pub active: Option<(PathBuf, u64)>,
    /// A torn final line (no newline): its segment, offset and bytes.
    pub torn: Option<(PathBuf, u64, Vec<u8>)>,
    /// A last segment left empty by a crash right after it was created (nothing in it).
    pub empty_segment: Option<PathBuf>,
    /// The (seq, hash) the last checkpoint in the log vouched for.
    pub last_checkpoint: Option<(u64, String)>,
}

/// Reads the log in `dir` with `key` and says how open would recover it, or why it must
/// refuse. Changes nothing.
pub fn inspect(dir: &Path, key: &ChainKey) -> Result<RecoveryPlan, Refusal> {
    let unreadable = |source| Refusal::Unreadable { source };
    let segments = segment::list(dir).map_err(unreadable)?;
    let Some(last) = segments.last() else {
        return Ok(RecoveryPlan {
            head: genesis(),
            active: None,
            torn: None,
            empty_segment: None,
            last_checkpoint: None,
        });
    };
    let data = read(&last.path)?;
    let complete = data.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let torn = (complete < data.len()).then(|| {
        (
            last.path.clone(),
            complete as u64,
            data[complete..].to_vec(),
        )
    });
    let verifier = Verifier::new(key.clone());
    let before = segments.len().checked_sub(2).map(|i| &segments[i]);
    let mut plan = if complete > 0 {
        let seed = before.map(|s| last_entry(s, key)).transpose()?;
        let (head, cp) = verify_segment(&verifier, last, &data[..complete], seed.as_ref())?;
        RecoveryPlan {
            head,
            active: Some((last.path.clone(), complete as u64)),
            torn,
            empty_segment: None,
            last_checkpoint: cp,
        }
    } else {
        // Created by a crash just before its first write: continue in the one before.
        let (head, active, cp) = match before {
            None => (genesis(), None, None),
            Some(prev) => {
                let pdata = read(&prev.path)?;
                if pdata.last().is_some_and(|b| *b != b'\n') {
                    return Err(Refusal::Damaged {
                        link: link(prev, 0, 0, BreakReason::TruncatedLine),
                    });
                }
                let (head, cp) = verify_segment(&verifier, prev, &pdata, None)?;
                (head, Some((prev.path.clone(), pdata.len() as u64)), cp)
            }
        };
        if last.first_seq != head.seq + 1 {
            let reason = BreakReason::SeqGap {
                expected: head.seq + 1,
                found: last.first_seq,
            };
            return Err(Refusal::Damaged {
                link: link(last, head.seq + 1, 0, reason),
            });
        }
        RecoveryPlan {
            head,
            active,
            torn,
            empty_segment: Some(last.path.clone()),
            last_checkpoint: cp,
        }
    };
    if plan.last_checkpoint.is_none() {
        plan.last_checkpoint = earlier_checkpoint(&segments, &plan)?;
    }
    Ok(plan)
}

/// Carries out `plan`: saves and cuts the torn tail, removes an empty last segment.
pub(crate) fn apply(dir: &Path, plan: &RecoveryPlan) -> keymgr_core::Result<u64> {
    let mut torn_bytes = 0;
    if let Some((path, offset, bytes)) = &plan.torn {
        let saved = path.with_extension(format!("jsonl.torn-{}", time::now_ms()));
        files::create_new(&saved)
            .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
            .map_err(|e| io_error("save torn tail to", &saved, e))?;
        let f = files::open_append(path).map_err(|e| io_error("open", path, e))?;
        f.set_len(*offset)
            .and_then(|()| f.sync_all())
            .map_err(|e| io_error("cut the torn tail of", path, e))?;
        torn_bytes = bytes.len() as u64;
        tracing::warn!(
            target: "keymgr::audit",
            segment = %path.display(),
            torn_bytes,
            saved_to = %saved.display(),
            "audit log: cut an incomplete final line (an unacknowledged write interrupted by a crash)"
        );
    }
    if let Some(path) = &plan.empty_segment {
        let len = fs::symlink_metadata(path)
            .map_err(|e| io_error("inspect", path, e))?
            .len();
        if len == 0 {
            fs::remove_file(path).map_err(|e| io_error("remove empty segment", path, e))?;
        }
    }
    segment::sync_dir(dir)?;
    Ok(torn_bytes)
}

fn genesis() -> Head {
    Head {
        seq: 0,
        hash: GENESIS_HASH.to_owned(),
        ts_ms: 0,
    }
}

fn read(path: &Path) -> Result<Vec<u8>, Refusal> {
    files::read(path).map_err(|e| Refusal::Unreadable {
        source: io_error("read", path, e),
    })
}

fn link(seg: &Segment, seq: u64, line: u64, reason: BreakReason) -> BrokenLink {
    BrokenLink {
        seq,
        file: Some(seg.path.clone()),
        line,
        reason,
    }
}

fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    body.split(|b| *b == b'\n')
        .filter(move |_| !data.is_empty())
}

/// Verifies the complete lines `data` of `seg`, continuing from `seed` (the last entry of
/// the segment before). Returns the head and the last checkpoint seen.
fn verify_segment(
    verifier: &Verifier,
    seg: &Segment,
    data: &[u8],
    seed: Option<&Entry>,
) -> Result<(Head, Option<(u64, String)>), Refusal> {
    if let Some(e) = seed
        && seg.first_seq != e.seq + 1
    {
        let reason = BreakReason::SeqGap {
            expected: e.seq + 1,
            found: seg.first_seq,
        };
        return Err(Refusal::Damaged {
            link: link(seg, e.seq + 1, 0, reason),
        });
    }
    let mut chain = Chain::resume(
        verifier,
        seg.first_seq,
        seed.map(|e| (e.seq, e.hash.clone(), e.ts_ms)),
    );
    let mut cp = None;
    let mut head = None;
    for (i, line) in lines(data).enumerate() {
        match chain.push(line, Some(&seg.path), i as u64 + 1) {
            Some(e) => {
                if e.event == events::CHECKPOINT
                    && let Ok(c) = Checkpoint::from_entry(&e)
                {
                    cp = Some((c.seq, c.hash));
                }
                head = Some(Head {
                    seq: e.seq,
                    hash: e.hash,
                    ts_ms: e.ts_ms,
                });
            }
            None => {
                let broken = chain
                    .broken()
                    .cloned()
                    .unwrap_or_else(|| link(seg, 0, i as u64 + 1, BreakReason::NotCanonical));
                // An entry before this segment verified with the configured key: the
                // mode and key are right, so this is damage.
                if seed.is_some() {
                    return Err(Refusal::Damaged { link: broken });
                }
                return Err(classify(broken, seg, data, verifier));
            }
        }
    }
    let head = head.ok_or_else(|| Refusal::Damaged {
        link: link(seg, seg.first_seq, 0, BreakReason::TruncatedLine),
    })?;
    Ok((head, cp))
}

/// The last entry of a segment that is not the last one; it must verify on its own.
fn last_entry(seg: &Segment, key: &ChainKey) -> Result<Entry, Refusal> {
    let data = read(&seg.path)?;
    if data.last() != Some(&b'\n') {
        return Err(Refusal::Damaged {
            link: link(seg, 0, 0, BreakReason::TruncatedLine),
        });
    }
    let n = lines(&data).count() as u64;
    let line = lines(&data).last().unwrap_or_default();
    let damaged = |reason| Refusal::Damaged {
        link: link(seg, 0, n, reason),
    };
    let entry = Entry::parse(line).map_err(|detail| damaged(BreakReason::Malformed { detail }))?;
    let computed = hex::encode(key.digest(&entry.canonical_body()));
    if computed != entry.hash {
        let broken = link(
            seg,
            entry.seq,
            n,
            BreakReason::HashMismatch {
                stated: entry.hash.clone(),
                computed,
            },
        );
        return Err(classify(broken, seg, &data, &Verifier::new(key.clone())));
    }
    if entry.canonical_line() != line {
        return Err(damaged(BreakReason::NotCanonical));
    }
    Ok(entry)
}

/// A hash mismatch in a segment where no entry verifies but the entries link up among
/// themselves is a key or mode mismatch, not an edit; anything else is damage.
fn classify(broken: BrokenLink, seg: &Segment, data: &[u8], verifier: &Verifier) -> Refusal {
    if !matches!(broken.reason, BreakReason::HashMismatch { .. }) {
        return Refusal::Damaged { link: broken };
    }
    let Ok(entries) = lines(data).map(Entry::parse).collect::<Result<Vec<_>, _>>() else {
        return Refusal::Damaged { link: broken };
    };
    let hashes_ok = |key: &ChainKey| {
        entries
            .iter()
            .filter(|e| hex::encode(key.digest(&e.canonical_body())) == e.hash)
            .count()
    };
    let linked = entries
        .windows(2)
        .all(|w| w[1].seq == w[0].seq + 1 && w[1].prev == w[0].hash);
    let key = verifier.key();
    if entries.is_empty() || !linked || hashes_ok(key) > 0 {
        return Refusal::Damaged { link: broken };
    }
    let segment = seg.path.clone();
    if !key.is_keyed() {
        Refusal::HmacKeyMissing { segment }
    } else if hashes_ok(&ChainKey::sha256()) == entries.len() {
        Refusal::HmacKeyUnexpected { segment }
    } else {
        Refusal::HmacKeyWrong { segment }
    }
}

/// The last checkpoint in segments before the active one (scanned newest first).
fn earlier_checkpoint(
    segments: &[Segment],
    plan: &RecoveryPlan,
) -> Result<Option<(u64, String)>, Refusal> {
    let active = plan.active.as_ref().map(|(p, _)| p);
    let skip_until_active = segments
        .iter()
        .rev()
        .skip_while(|s| Some(&s.path) != active)
        .skip(1);
    for seg in skip_until_active {
        let data = read(&seg.path)?;
        let found = lines(&data)
            .filter_map(|l| Entry::parse(l).ok())
            .filter(|e| e.event == events::CHECKPOINT)
            .filter_map(|e| Checkpoint::from_entry(&e).ok())
            .last();
        if let Some(c) = found {
            return Ok(Some((c.seq, c.hash)));
        }
    }
    Ok(None)
}
