//! Segment files: `audit-<first seq, 12+ digits>-<YYYY-MM-DD>.jsonl` in the log directory.

use std::fs;
use std::io::{self, BufRead as _, BufReader};
use std::path::{Path, PathBuf};

use keymgr_core::{Error, Result};

use crate::time;

const PREFIX: &str = "audit-";
const SUFFIX: &str = ".jsonl";

/// One segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Its path.
    pub path: PathBuf,
    /// The sequence number of its first entry (from the file name).
    pub first_seq: u64,
}

/// The file name of a segment starting at `first_seq` on the UTC day of `ts_ms`.
pub fn file_name(first_seq: u64, ts_ms: u64) -> String {
    format!(
        "{PREFIX}{first_seq:012}-{}{SUFFIX}",
        time::date_string(ts_ms)
    )
}

/// Parses a segment file name; `None` for other files.
pub fn parse_name(name: &str) -> Option<u64> {
    let rest = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    let (seq, date) = rest.split_once('-')?;
    if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) || date.len() != 10 {
        return None;
    }
    seq.parse().ok()
}

/// The segments in `dir`, ordered by first sequence number.
pub fn list(dir: &Path) -> Result<Vec<Segment>> {
    let rd = fs::read_dir(dir).map_err(|e| io_error("read directory", dir, e))?;
    let mut out = Vec::new();
    for item in rd {
        let item = item.map_err(|e| io_error("read directory", dir, e))?;
        let name = item.file_name();
        if let Some(first_seq) = name.to_str().and_then(parse_name) {
            // A link or special file under a segment name was planted: refuse it rather
            // than skip it, or a verifier would silently read less than is there.
            let kind = item
                .file_type()
                .map_err(|e| io_error("inspect", &item.path(), e))?;
            if !kind.is_file() {
                return Err(Error::integrity(
                    item.path().display().to_string(),
                    format!(
                        "not a regular file ({kind:?}); the audit log never follows links and only reads files it created"
                    ),
                ));
            }
            out.push(Segment {
                path: item.path(),
                first_seq,
            });
        }
    }
    out.sort_by_key(|s| s.first_seq);
    Ok(out)
}

/// The first line of a file (without `\n`), if it has a complete one.
pub fn first_line(path: &Path) -> Result<Option<Vec<u8>>> {
    let f = crate::files::open_read(path).map_err(|e| io_error("open", path, e))?;
    let mut line = Vec::new();
    BufReader::new(f)
        .read_until(b'\n', &mut line)
        .map_err(|e| io_error("read", path, e))?;
    if line.last() == Some(&b'\n') {
        line.pop();
        Ok(Some(line))
    } else {
        Ok(None)
    }
}

/// Makes a directory entry change (create, rename, delete) durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("fsync directory", dir, e))
}

/// An I/O failure on the log, as keymgr's error type (retryable: the disk may recover).
pub fn io_error(action: &str, path: &Path, e: io::Error) -> Error {
    Error::unavailable(
        "audit-log",
        format!("cannot {action} {}: {e}", path.display()),
        Some(Box::new(e)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let n = file_name(42, 951_827_696_789);
        assert_eq!(n, "audit-000000000042-2000-02-29.jsonl");
        assert_eq!(parse_name(&n), Some(42));
        assert_eq!(
            parse_name("audit-1234567890123-2000-02-29.jsonl"),
            Some(1_234_567_890_123)
        );
        for other in [
            "audit-42-2000-02-29.jsonl.torn",
            "audit--2000-02-29.jsonl",
            "notes.txt",
            "audit-x1-2000-02-29.jsonl",
        ] {
            assert_eq!(parse_name(other), None, "{other}");
        }
    }
}
