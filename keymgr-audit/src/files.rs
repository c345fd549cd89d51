//! File handling on purpose: the log creates its directories `0700` and its files
//! `0600` whatever the umask, never follows a symbolic link and only opens regular
//! files (a planted link, FIFO or device is refused with an error).

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use keymgr_core::{Error, Result};

use crate::segment::io_error;

/// Mode of every file the log creates.
pub const FILE_MODE: u32 = 0o600;
/// Mode of every directory the log creates.
pub const DIR_MODE: u32 = 0o700;

/// `O_NOFOLLOW`: a link in the last path component fails with `ELOOP`; `O_NONBLOCK`: a
/// FIFO planted under a log name cannot block the open (it is refused right after).
const OPEN_FLAGS: i32 = libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;

fn explain(path: &Path, e: io::Error) -> io::Error {
    if e.raw_os_error() == Some(libc::ELOOP) {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is a symbolic link; the audit log never follows links it did not create",
                path.display()
            ),
        )
    } else if e.raw_os_error() == Some(libc::ENXIO) {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file (a FIFO?)", path.display()),
        )
    } else {
        e
    }
}

fn regular_only(path: &Path, file: File) -> io::Result<File> {
    let meta = file.metadata()?;
    if meta.is_file() {
        Ok(file)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is not a regular file ({:?}); the audit log only opens files it created",
                path.display(),
                meta.file_type()
            ),
        ))
    }
}

/// Creates `path` (which must not exist) as a `0600` regular file, for appending.
pub(crate) fn create_new(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .create_new(true)
        .read(true)
        .append(true)
        .mode(FILE_MODE)
        .custom_flags(OPEN_FLAGS)
        .open(path)
        .map_err(|e| explain(path, e))?;
    // The umask may have removed bits we asked for; the mode we want is exact.
    file.set_permissions(Permissions::from_mode(FILE_MODE))?;
    Ok(file)
}

/// Opens an existing regular file (no link, no special file) for reading.
pub(crate) fn open_read(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(OPEN_FLAGS)
        .open(path)
        .map_err(|e| explain(path, e))?;
    regular_only(path, file)
}

/// Opens an existing regular file for appending (and `set_len`).
pub(crate) fn open_append(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .custom_flags(OPEN_FLAGS)
        .open(path)
        .map_err(|e| explain(path, e))?;
    regular_only(path, file)
}

/// Opens `path` for appending, creating it `0600` if missing (lock files, checkpoint
/// files that outlive one process).
pub(crate) fn open_or_create(path: &Path) -> io::Result<File> {
    match create_new(path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => open_append(path),
        other => other,
    }
}

/// Reads a whole regular file (refusing links and special files).
pub(crate) fn read(path: &Path) -> io::Result<Vec<u8>> {
    let mut f = open_read(path)?;
    let mut data = Vec::new();
    io::Read::read_to_end(&mut f, &mut data)?;
    Ok(data)
}

/// Makes sure `dir` is a directory (not a link to one), creating it and missing parents
/// `0700` if needed.
pub(crate) fn ensure_dir(dir: &Path) -> Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(m) => {
            let what = if m.file_type().is_symlink() {
                "a symbolic link (the audit log never follows links it did not create)"
            } else {
                "not a directory"
            };
            return Err(Error::config(
                crate::config::KEYMGR_AUDIT_PATH,
                "a directory",
                format!("{} is {what}", dir.display()),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error("inspect", dir, e)),
    }
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .and_then(|()| fs::set_permissions(dir, Permissions::from_mode(DIR_MODE)))
        .map_err(|e| io_error("create directory", dir, e))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::MetadataExt as _;

    #[test]
    fn created_files_are_0600_and_links_are_refused() {
        let dir = keymgr_testkit::TempDir::new("audit-files");
        let f = dir.path().join("a");
        create_new(&f).unwrap();
        assert_eq!(fs::metadata(&f).unwrap().mode() & 0o777, FILE_MODE);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        for e in [
            open_read(&link).unwrap_err(),
            open_append(&link).unwrap_err(),
            open_or_create(&link).unwrap_err(),
        ] {
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        }
        let sub = dir.path().join("x/y");
        ensure_dir(&sub).unwrap();
        assert_eq!(fs::metadata(&sub).unwrap().mode() & 0o777, DIR_MODE);
        let dlink = dir.path().join("dlink");
        std::os::unix::fs::symlink(&sub, &dlink).unwrap();
        assert!(matches!(
            ensure_dir(&dlink).unwrap_err(),
            Error::Config { .. }
        ));
    }
}
