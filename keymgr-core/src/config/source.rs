//! Where settings come from: the process environment, a map, or layers of both.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;

/// A source of named settings (environment variables or the same names elsewhere).
///
/// A closure `Fn(&str) -> Option<String>` is a source, so tests can pass a lookup
/// directly; [`ProcessEnv`] reads the process environment, [`MapSource`] a map, and
/// [`Layered`] stacks sources by precedence (flag > environment > file > default).
pub trait VarSource: Sync {
    /// The raw value of `name`, `None` when unset. Values need not be UTF-8: reading
    /// through [`Vars`](super::Vars) turns a non-UTF-8 value into an error naming `name`.
    fn var_os(&self, name: &str) -> Option<OsString>;

    /// Where the value of `name` comes from; `None` when unset (the default applies).
    fn origin(&self, name: &str) -> Option<Origin> {
        self.var_os(name).map(|_| Origin::Env)
    }

    /// Where a collecting [`Vars`](super::Vars) records problems; sources other than
    /// `Vars` have none.
    #[doc(hidden)]
    fn problems(&self) -> Option<&super::Problems> {
        None
    }
}

impl<F: Fn(&str) -> Option<String> + Sync> VarSource for F {
    fn var_os(&self, name: &str) -> Option<OsString> {
        self(name).map(OsString::from)
    }
}

/// Where a setting's value came from, in precedence order (first wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    /// A command-line flag.
    Flag,
    /// The process environment.
    Env,
    /// A dotenv file (`--env-file`), below the process environment.
    EnvFile,
    /// The configuration file (`KEYMGR_CONFIG` or `--config`).
    File,
    /// Not set anywhere: the documented default applies.
    Default,
}

impl Origin {
    /// `flag`, `env`, `file` or `default`.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Flag => "flag",
            Origin::Env => "env",
            Origin::EnvFile => "env-file",
            Origin::File => "file",
            Origin::Default => "default",
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The process environment (`std::env::var_os`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl VarSource for ProcessEnv {
    fn var_os(&self, name: &str) -> Option<OsString> {
        std::env::var_os(name)
    }
}

/// Settings held in a map (tests, a parsed configuration file).
///
/// `Debug` lists the names only: values may be secrets.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct MapSource {
    values: BTreeMap<String, OsString>,
}

impl MapSource {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `name` to `value`.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<OsString>) {
        self.values.insert(name.into(), value.into());
    }

    /// Like [`set`](Self::set), by value.
    pub fn with(mut self, name: impl Into<String>, value: impl Into<OsString>) -> Self {
        self.set(name, value);
        self
    }

    /// The names that are set, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }
}

impl fmt::Debug for MapSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapSource")
            .field("names", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl<K: Into<String>, V: Into<OsString>> FromIterator<(K, V)> for MapSource {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut map = MapSource::new();
        for (k, v) in iter {
            map.set(k, v);
        }
        map
    }
}

impl VarSource for MapSource {
    fn var_os(&self, name: &str) -> Option<OsString> {
        self.values.get(name).cloned()
    }

    fn origin(&self, name: &str) -> Option<Origin> {
        self.values.get(name).map(|_| Origin::File)
    }
}

/// Sources stacked by precedence: the first layer where a name is set wins, even when
/// its value is empty (an empty value means "unset, use the default" to every loader,
/// so the environment can switch off a setting the file makes).
#[derive(Default)]
pub struct Layered {
    layers: Vec<(Origin, Box<dyn VarSource + Send>)>,
}

impl Layered {
    /// No layers: every name is unset.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a layer below the existing ones (lower precedence).
    pub fn layer(mut self, origin: Origin, source: impl VarSource + Send + 'static) -> Self {
        self.layers.push((origin, Box::new(source)));
        self
    }
}

impl fmt::Debug for Layered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origins: Vec<Origin> = self.layers.iter().map(|(o, _)| *o).collect();
        f.debug_struct("Layered").field("layers", &origins).finish()
    }
}

impl VarSource for Layered {
    fn var_os(&self, name: &str) -> Option<OsString> {
        self.layers.iter().find_map(|(_, s)| s.var_os(name))
    }

    fn origin(&self, name: &str) -> Option<Origin> {
        self.layers
            .iter()
            .find(|(_, s)| s.var_os(name).is_some())
            .map(|(o, _)| *o)
    }
}
