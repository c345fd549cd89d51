//! Export: the entries of a time range, as the original JSON lines, verified on the way.

use std::io::Write;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use keymgr_core::{Error, Result};
use serde::Serialize;

use crate::segment::io_error;
use crate::verify::{BrokenLink, Chain, collect_files};
use crate::{Verifier, files, time};

/// What an export did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportReport {
    /// Entries read (and verified).
    pub scanned: u64,
    /// Entries written.
    pub exported: u64,
    /// Where verification stopped the export, if it did.
    pub broken: Option<BrokenLink>,
}

/// A half-open time range `[from, to)` in milliseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimeRange {
    /// Inclusive start; `None` = from the beginning.
    pub from_ms: Option<u64>,
    /// Exclusive end; `None` = to the end.
    pub to_ms: Option<u64>,
}

impl TimeRange {
    /// Parses RFC 3339 bounds (either may be absent).
    pub fn parse(from: Option<&str>, to: Option<&str>) -> Result<Self> {
        let range = Self {
            from_ms: from.map(time::parse_rfc3339).transpose()?,
            to_ms: to.map(time::parse_rfc3339).transpose()?,
        };
        if let (Some(f), Some(t)) = (range.from_ms, range.to_ms)
            && f > t
        {
            return Err(Error::invalid_input(
                "time range",
                format!(
                    "--from {} is after --to {}",
                    time::format_rfc3339(f),
                    time::format_rfc3339(t)
                ),
            ));
        }
        Ok(range)
    }

    /// Whether `ts_ms` is inside.
    pub fn contains(&self, ts_ms: u64) -> bool {
        self.from_ms.is_none_or(|f| ts_ms >= f) && self.to_ms.is_none_or(|t| ts_ms < t)
    }
}

/// Streams every entry of the logs at `paths` (directories or segment files) whose
/// timestamp is in `range` to `out`, one JSON line each, exactly as stored (so exported
/// lines keep their hashes). The whole chain is verified while reading; export stops at
/// the first broken link, which the report names. Only an I/O error on `out` is an `Err`.
pub fn export<P: AsRef<Path>>(
    paths: &[P],
    range: TimeRange,
    verifier: &Verifier,
    mut out: impl Write,
) -> Result<ExportReport> {
    let files = collect_files(paths)?;
    let mut chain = Chain::new(verifier);
    let mut exported = 0u64;
    let mut write_error: Option<std::io::Error> = None;
    for file in &files {
        let mut on_entry = |entry: &crate::Entry, line: &[u8]| {
            if write_error.is_none() && range.contains(entry.ts_ms) {
                match out.write_all(line).and_then(|()| out.write_all(b"\n")) {
                    Ok(()) => exported += 1,
                    Err(e) => write_error = Some(e),
                }
            }
        };
        let go_on = chain.feed_file_with(file, &mut on_entry);
        if let Some(e) = write_error {
            return Err(Error::backend(
                "audit-log",
                format!("cannot write the export: {e}"),
                Some(Box::new(e)),
            ));
        }
        if !go_on {
            break;
        }
    }
    out.flush().map_err(|e| {
        Error::backend(
            "audit-log",
            format!("cannot write the export: {e}"),
            Some(Box::new(e)),
        )
    })?;
    let report = chain.finish(files.len());
    Ok(ExportReport {
        scanned: report.entries,
        exported,
        broken: report.broken,
    })
}

/// Like [`export`], into the file `out`: refuses a path inside any log it reads (or a
/// link to one of its segments), writes a new `0600` file next to `out` and renames it
/// into place only when the whole export succeeded, so an existing file is replaced,
/// never truncated in place, and a failed export leaves nothing behind.
pub fn export_file<P: AsRef<Path>>(
    paths: &[P],
    range: TimeRange,
    verifier: &Verifier,
    out: &Path,
) -> Result<ExportReport> {
    collect_files(paths)?;
    refuse_inside_log(paths, out)?;
    let name = out
        .file_name()
        .ok_or_else(|| Error::invalid_input("--output", "must name a file"))?;
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.keymgr-export-{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let file = files::create_new(&tmp).map_err(|e| {
        Error::invalid_input("--output", format!("cannot create {}: {e}", tmp.display()))
    })?;
    let result = export(paths, range, verifier, std::io::BufWriter::new(&file)).and_then(|r| {
        file.sync_all()
            .map_err(|e| io_error("fsync", &tmp, e))
            .map(|()| r)
    });
    match result {
        Ok(report) if report.broken.is_none() => {
            std::fs::rename(&tmp, out).map_err(|e| io_error("rename the export to", out, e))?;
            Ok(report)
        }
        other => {
            let _ = std::fs::remove_file(&tmp);
            other
        }
    }
}

/// An export written into the log it reads would change (or, through a link, truncate)
/// the evidence it is exporting.
fn refuse_inside_log<P: AsRef<Path>>(paths: &[P], out: &Path) -> Result<()> {
    let out_dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let out_dir = out_dir
        .canonicalize()
        .map_err(|e| Error::invalid_input("--output", format!("{}: {e}", out_dir.display())))?;
    let out_id = std::fs::metadata(out).ok().map(|m| (m.dev(), m.ino()));
    for p in paths {
        let p = p.as_ref();
        let log_dir = if p.is_dir() { Some(p) } else { p.parent() };
        let log_dir = log_dir
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .canonicalize()
            .map_err(|e| io_error("resolve", p, e))?;
        let inside = out_dir.starts_with(&log_dir);
        let same_file = out_id.is_some()
            && collect_files(&[p])?
                .iter()
                .any(|f| std::fs::metadata(f).is_ok_and(|m| Some((m.dev(), m.ino())) == out_id));
        if inside || same_file {
            return Err(Error::invalid_input(
                "--output",
                format!(
                    "{} is inside the audit log {} being exported; write the export elsewhere",
                    out.display(),
                    log_dir.display()
                ),
            ));
        }
    }
    Ok(())
}
