//! Reading request files: `-` is standard input; every read has a size limit, so
//! `--file /dev/zero` is an error, not a hang.

use std::io::Read as _;
use std::path::Path;

/// Whether `path` is `-`: standard input (or output, for an output argument).
pub(crate) fn is_stdio(path: &Path) -> bool {
    path == Path::new("-")
}

fn display(path: &Path) -> String {
    if is_stdio(path) {
        "standard input".to_owned()
    } else {
        path.display().to_string()
    }
}

/// Reads at most `limit` bytes of UTF-8 text from `path` (`-`: standard input); more is
/// an error naming the flag and the limit.
#[cfg(any(feature = "evm-tx", feature = "evm-eip712"))]
pub(crate) fn read_text(path: &Path, limit: usize, flag: &str) -> anyhow::Result<String> {
    let name = display(path);
    let invalid = |reason: String| keymgr::Error::invalid_input(flag, reason);
    let bytes = read_bytes(path, limit, flag)?;
    String::from_utf8(bytes).map_err(|e| {
        invalid(format!(
            "{name} is not UTF-8 text (byte {} is invalid)",
            e.utf8_error().valid_up_to()
        ))
        .into()
    })
}

/// Reads at most `limit` bytes from `path` (`-`: standard input), as they are; more is
/// an error naming the flag and the limit.
pub(crate) fn read_bytes(path: &Path, limit: usize, flag: &str) -> anyhow::Result<Vec<u8>> {
    let name = display(path);
    let invalid = |reason: String| keymgr::Error::invalid_input(flag, reason);
    let mut bytes = Vec::new();
    let read = if is_stdio(path) {
        std::io::stdin()
            .lock()
            .take(limit as u64 + 1)
            .read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(limit as u64 + 1).read_to_end(&mut bytes))
    };
    read.map_err(|e| invalid(format!("cannot read {name}: {e}")))?;
    if bytes.len() > limit {
        return Err(invalid(format!("{name} is larger than {limit} bytes")).into());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn endless_input_is_bounded() {
        // read_text reads through read_bytes: the bound is there.
        let e = read_bytes(Path::new("/dev/zero"), 1024, "--file").unwrap_err();
        let k = e.downcast_ref::<keymgr::Error>().unwrap();
        assert!(
            matches!(k, keymgr::Error::InvalidInput { field, .. } if field == "--file"),
            "{k}"
        );
        assert!(k.to_string().contains("larger than 1024 bytes"), "{k}");
    }
}
