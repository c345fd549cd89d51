//! The configuration file (TOML, `KEYMGR_CONFIG` or `--config`) and how it stacks with
//! flags, the environment and a dotenv file.

use std::path::{Path, PathBuf};

use keymgr_core::config::{Layered, MapSource, Origin, ProcessEnv, Vars};
use keymgr_core::{Error, Result};

use super::names::{MEMBER_PREFIXES, VARIABLES, is_secret, member_parts, variable};

/// Path of the TOML configuration file; unset: no file.
pub const KEYMGR_CONFIG: &str = "KEYMGR_CONFIG";

const EXPECTED_FILE: &str = "a TOML file of NAME = value lines, NAME as in .env.example";

/// A parsed configuration file: top-level `NAME = value` pairs with the environment
/// variables' names. Strings, integers and booleans are accepted; tables, arrays,
/// floats and dates are problems naming the setting.
#[derive(Debug)]
pub struct ConfigFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// The accepted settings.
    pub values: MapSource,
    /// Names of secrets set inline (warned about: keep secrets in the environment or a
    /// secret store, never in a committed file).
    pub inline_secrets: Vec<String>,
    /// Unknown names and values of the wrong type, each naming the setting.
    pub problems: Vec<Error>,
}

impl ConfigFile {
    /// Reads and parses `path`. A file that cannot be read or is not TOML is an error
    /// naming `KEYMGR_CONFIG`; its text is never quoted (it may hold secrets).
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::config(
                KEYMGR_CONFIG,
                EXPECTED_FILE,
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        Self::parse(path, &text)
    }

    /// Parses `text` as the file at `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let line = e.span().map(|s| {
                let before = text.get(..s.start).unwrap_or(text);
                before.matches('\n').count() + 1
            });
            // The parser's message only: its rendering quotes the line, which may
            // hold a secret.
            Error::config(
                KEYMGR_CONFIG,
                EXPECTED_FILE,
                match line {
                    Some(l) => format!("{} line {l}: {}", path.display(), e.message()),
                    None => format!("{}: {}", path.display(), e.message()),
                },
            )
        })?;
        let mut file = ConfigFile {
            path: path.to_owned(),
            values: MapSource::new(),
            inline_secrets: Vec::new(),
            problems: Vec::new(),
        };
        for (name, value) in table {
            if variable(&name).is_none() {
                file.problems.push(unknown(&name, path));
                continue;
            }
            let text = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => {
                    file.problems.push(Error::config(
                        name.as_str(),
                        "a string, a whole number or true/false",
                        format!("{} in {}", other.type_str(), path.display()),
                    ));
                    continue;
                }
            };
            if is_secret(&name) && !text.trim().is_empty() {
                tracing::warn!(
                    setting = %name,
                    file = %path.display(),
                    "a secret is set inline in the configuration file: keep it in the environment or a secret store, never in a committed file"
                );
                file.inline_secrets.push(name.clone());
            }
            file.values.set(name, text);
        }
        Ok(file)
    }
}

fn unknown(name: &str, path: &Path) -> Error {
    // A misspelt member variable (`HSM_2_PINN`) is compared without its member number
    // and suggested with it (`HSM_2_PIN`).
    let (base, member) = match member_parts(name) {
        Some((base, n)) => (base, Some(n)),
        None => (name.to_owned(), None),
    };
    let near = VARIABLES
        .iter()
        .map(|v| v.name())
        .filter(|v| member.is_none() || MEMBER_PREFIXES.iter().any(|p| v.starts_with(p)))
        .filter(|v| strsim::jaro_winkler(v, &base) > 0.9)
        .max_by(|a, b| strsim::jaro_winkler(a, &base).total_cmp(&strsim::jaro_winkler(b, &base)))
        .map(|v| match member {
            Some(n) => crate::members::MemberSpec::numbered_variable(v, n),
            None => v.to_owned(),
        });
    let secret = if is_secret(name) {
        " (and looks like a secret: remove it)"
    } else {
        ""
    };
    Error::config(
        name,
        "a keymgr setting (see .env.example)",
        match near {
            Some(n) => format!(
                "unknown setting in {}{secret}; did you mean {n}?",
                path.display()
            ),
            None => format!("unknown setting in {}{secret}", path.display()),
        },
    )
}

/// All configuration sources, stacked: flags > environment > `--env-file` > file.
#[derive(Debug)]
pub struct Sources {
    /// The stacked sources; read them with [`Vars`].
    pub layered: Layered,
    /// The configuration file in use, if any.
    pub config_file: Option<PathBuf>,
    /// Names of secrets the configuration file sets inline.
    pub inline_secrets: Vec<String>,
    /// Problems in the configuration file (unknown names, wrong types).
    pub problems: Vec<Error>,
}

impl Sources {
    /// The first problem of the configuration file as an error (start-up refuses a
    /// file with problems; `config check` lists them all).
    pub fn ensure_valid(&self) -> Result<()> {
        match self.problems.first() {
            Some(e) => Err(copy(e)),
            None => Ok(()),
        }
    }
}

/// Stacks `flags` (settings given as command-line flags), the process environment,
/// `env_file` (a dotenv file's values, below the real environment as `dotenvy` does)
/// and the TOML file `config` names, else the one `KEYMGR_CONFIG` names (read from the
/// layers above it). Values set in a higher layer win, even when empty.
pub fn sources(
    flags: MapSource,
    env_file: Option<MapSource>,
    config: Option<PathBuf>,
) -> Result<Sources> {
    let mut upper = Layered::new()
        .layer(Origin::Flag, flags.clone())
        .layer(Origin::Env, ProcessEnv);
    if let Some(map) = &env_file {
        upper = upper.layer(Origin::EnvFile, map.clone());
    }
    let config = match config {
        Some(p) => Some(p),
        None => Vars::new(&upper).path(KEYMGR_CONFIG)?,
    };
    let mut layered = Layered::new()
        .layer(Origin::Flag, flags)
        .layer(Origin::Env, ProcessEnv);
    if let Some(map) = env_file {
        layered = layered.layer(Origin::EnvFile, map);
    }
    let (inline_secrets, problems) = match &config {
        Some(path) => {
            let file = ConfigFile::load(path)?;
            layered = layered.layer(Origin::File, file.values);
            (file.inline_secrets, file.problems)
        }
        None => (Vec::new(), Vec::new()),
    };
    Ok(Sources {
        layered,
        config_file: config,
        inline_secrets,
        problems,
    })
}

/// A copy of a configuration error (errors are not `Clone`: they may carry a source).
fn copy(e: &Error) -> Error {
    match e {
        Error::Config {
            variable,
            expected,
            reason,
            ..
        } => Error::config(variable.as_str(), expected.as_str(), reason.as_str()),
        other => Error::config(KEYMGR_CONFIG, EXPECTED_FILE, other.to_string()),
    }
}
