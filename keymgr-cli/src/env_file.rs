//! `--env-file PATH`: a dotenv file's `NAME=value` lines, parsed by `dotenvy`.

use std::path::Path;

use keymgr::config::MapSource;

/// The variables `path` sets (not applied to the process environment: they become a
/// layer below it). Errors name the file and line position, never a line's text (it
/// may hold a secret).
pub(crate) fn env_file(path: &Path) -> anyhow::Result<MapSource> {
    let refuse = |reason: String| {
        keymgr::Error::config(
            "--env-file",
            "a dotenv file of NAME=value lines",
            format!("{}: {reason}", path.display()),
        )
    };
    let iter = dotenvy::from_path_iter(path).map_err(|e| refuse(describe(&e)))?;
    let mut map = MapSource::new();
    for item in iter {
        let (name, value) = item.map_err(|e| refuse(describe(&e)))?;
        map.set(name, value);
    }
    Ok(map)
}

fn describe(e: &dotenvy::Error) -> String {
    match e {
        dotenvy::Error::LineParse(_, index) => {
            format!("cannot parse the line at character {index}")
        }
        dotenvy::Error::Io(io) => io.to_string(),
        _ => "cannot be read".to_owned(),
    }
}
