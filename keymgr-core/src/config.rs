//! One way to read settings: [`Vars`] over a [`VarSource`] (the process environment, a
//! map, or the environment layered over a configuration file).
//!
//! Every reader treats an unset or empty (blank) value as "not set", refuses a value
//! that is not valid UTF-8 (paths excepted, read as `OsString`) and reports any problem
//! as [`Error::Config`] naming the variable, the expected form and what was wrong. Values
//! of secrets never appear in an error: read them with [`Vars::secret`].

mod source;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Display;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

pub use source::{Layered, MapSource, Origin, ProcessEnv, VarSource};

use crate::{Error, KeyRef, Result};

/// Unit of a duration setting: the variable's name says which (`_MS`, `_SECS`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    /// Milliseconds.
    Millis,
    /// Seconds.
    Secs,
    /// Hours.
    Hours,
    /// Days (86 400 s).
    Days,
}

impl TimeUnit {
    fn duration(self, n: u64) -> Duration {
        match self {
            TimeUnit::Millis => Duration::from_millis(n),
            TimeUnit::Secs => Duration::from_secs(n),
            TimeUnit::Hours => Duration::from_secs(n.saturating_mul(3600)),
            TimeUnit::Days => Duration::from_secs(n.saturating_mul(86_400)),
        }
    }

    fn name(self) -> &'static str {
        match self {
            TimeUnit::Millis => "milliseconds",
            TimeUnit::Secs => "seconds",
            TimeUnit::Hours => "hours",
            TimeUnit::Days => "days",
        }
    }
}

/// Reads typed settings from a [`VarSource`]; every error names the variable.
///
/// A *collecting* reader ([`Vars::collecting`]) records each malformed value in a
/// [`Problems`] list and reads it as unset, so a loader runs to its end and a
/// configuration check reports every problem at once; readers that loaders build over
/// it (`Vars::new(&vars)`) collect into the same list.
#[derive(Clone, Copy)]
pub struct Vars<'a> {
    source: &'a dyn VarSource,
    problems: Option<&'a Problems>,
}

/// Problems a collecting [`Vars`] found, in the order found.
#[derive(Debug, Default)]
pub struct Problems(Mutex<Vec<Error>>);

impl Problems {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `error`.
    pub fn record(&self, error: Error) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(error);
    }

    /// Adds `error` unless a problem naming the same variable is already listed (a
    /// loader that stops on "not set" after its reader refused the value).
    pub fn record_new(&self, error: Error) {
        let mut list = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let known = match &error {
            Error::Config { variable, .. } => list
                .iter()
                .any(|e| matches!(e, Error::Config { variable: v, .. } if v == variable)),
            _ => false,
        };
        if !known {
            list.push(error);
        }
    }

    /// The problems found so far, emptying the list.
    pub fn take(&self) -> Vec<Error> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl std::fmt::Debug for Vars<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vars { .. }")
    }
}

/// A `Vars` is itself a source, so a loader taking `impl VarSource` accepts one built over
/// any `&dyn VarSource`.
impl VarSource for Vars<'_> {
    fn var_os(&self, name: &str) -> Option<OsString> {
        self.source.var_os(name)
    }

    fn origin(&self, name: &str) -> Option<Origin> {
        self.source.origin(name)
    }

    fn problems(&self) -> Option<&Problems> {
        self.problems
    }
}

/// The process environment as a [`Vars`].
pub fn process_env() -> Vars<'static> {
    Vars::new(&ProcessEnv)
}

impl<'a> Vars<'a> {
    /// Reads from `source`.
    pub fn new(source: &'a dyn VarSource) -> Self {
        Self {
            source,
            problems: source.problems(),
        }
    }

    /// Reads from `source`, recording malformed values in `problems` and reading them
    /// as unset instead of failing.
    pub fn collecting(source: &'a dyn VarSource, problems: &'a Problems) -> Self {
        Self {
            source,
            problems: Some(problems),
        }
    }

    /// A refused value: an error, or, when collecting, recorded and read as unset.
    /// Loaders use it for their own checks so a configuration check sees those too.
    pub fn refuse<T>(&self, error: Error) -> Result<Option<T>> {
        match self.problems {
            Some(p) => {
                p.record_new(error);
                Ok(None)
            }
            None => Err(error),
        }
    }

    /// The underlying source.
    pub fn source(&self) -> &'a dyn VarSource {
        self.source
    }

    /// Where `name`'s value comes from ([`Origin::Default`] when unset or empty).
    pub fn origin(&self, name: &str) -> Origin {
        match self.source.var_os(name) {
            Some(v) if !is_blank(&v) => self.source.origin(name).unwrap_or(Origin::Env),
            _ => Origin::Default,
        }
    }

    /// The raw value, `None` when unset or empty. Not checked for UTF-8.
    pub fn os(&self, name: &str) -> Option<OsString> {
        self.source.var_os(name).filter(|v| !is_blank(v))
    }

    /// The value exactly as set (not trimmed), `None` when unset or empty; an error
    /// naming `name` when it is not UTF-8. The value never appears in an error, so use
    /// this for secrets (PINs, private keys, client secrets).
    pub fn secret(&self, name: &str) -> Result<Option<String>> {
        match self.source.var_os(name) {
            None => Ok(None),
            Some(v) if v.is_empty() => Ok(None),
            Some(v) => match v.into_string() {
                Ok(v) => Ok(Some(v)),
                Err(_) => self.refuse(not_utf8(name)),
            },
        }
    }

    /// The value trimmed of surrounding whitespace, `None` when unset or blank; an error
    /// naming `name` when it is not UTF-8.
    pub fn get(&self, name: &str) -> Result<Option<String>> {
        Ok(self
            .secret(name)?
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty()))
    }

    /// Like [`get`](Self::get), but unset is an error saying `expected`.
    pub fn require(&self, name: &str, expected: &str) -> Result<String> {
        self.get(name)?
            .ok_or_else(|| Error::config(name, expected, "not set"))
    }

    /// The value parsed with `FromStr`; `expected` describes the form in the error.
    pub fn parse<T: FromStr>(&self, name: &str, expected: &str) -> Result<Option<T>> {
        match self.get(name)? {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| Error::config(name, expected, format!("{} is not valid", quote(&v)))),
        }
    }

    /// A whole number within `range` (inclusive). Out-of-range values, negative values
    /// and values that overflow `T` are errors naming `name` and the range.
    pub fn bounded<T>(&self, name: &str, range: RangeInclusive<T>, what: &str) -> Result<Option<T>>
    where
        T: FromStr + PartialOrd + Display + Copy,
    {
        let expected = format!("{what}, from {} to {}", range.start(), range.end());
        let Some(v) = self.get(name)? else {
            return Ok(None);
        };
        let digits = v.strip_prefix('+').unwrap_or(&v);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return self.refuse(Error::config(
                name,
                expected,
                format!("{} is not a whole number", quote(&v)),
            ));
        }
        match digits.parse::<T>() {
            Ok(n) if range.contains(&n) => Ok(Some(n)),
            Ok(n) if n < *range.start() => self.refuse(Error::config(
                name,
                expected,
                format!("{n} is below the minimum {}", range.start()),
            )),
            _ => self.refuse(Error::config(
                name,
                expected,
                format!("{} is above the maximum {}", quote(&v), range.end()),
            )),
        }
    }

    /// A duration given as a whole number of `unit` within `range` (inclusive).
    pub fn duration(
        &self,
        name: &str,
        unit: TimeUnit,
        range: RangeInclusive<u64>,
    ) -> Result<Option<Duration>> {
        Ok(self
            .bounded(name, range, unit.name())?
            .map(|n| unit.duration(n)))
    }

    /// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`, any case).
    pub fn flag(&self, name: &str) -> Result<Option<bool>> {
        let Some(v) = self.get(name)? else {
            return Ok(None);
        };
        match v.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Some(true)),
            "false" | "0" | "no" | "off" => Ok(Some(false)),
            _ => self.refuse(Error::config(
                name,
                "true or false",
                format!("{} is neither", quote(&v)),
            )),
        }
    }

    /// One of `choices` (matched case-insensitively), as its value.
    pub fn choice<T: Copy>(&self, name: &str, choices: &[(&str, T)]) -> Result<Option<T>> {
        let Some(v) = self.get(name)? else {
            return Ok(None);
        };
        let lower = v.to_ascii_lowercase();
        if let Some((_, t)) = choices.iter().find(|(s, _)| *s == lower) {
            return Ok(Some(*t));
        }
        let names: Vec<&str> = choices.iter().map(|(s, _)| *s).collect();
        self.refuse(Error::config(
            name,
            format!("one of {}", names.join(", ")),
            format!("unknown value {}", quote(&v)),
        ))
    }

    /// A filesystem path, read as `OsString` (non-UTF-8 paths are allowed); surrounding
    /// whitespace is trimmed when the value is UTF-8.
    pub fn path(&self, name: &str) -> Result<Option<PathBuf>> {
        Ok(self.os(name).map(|v| match v.to_str() {
            Some(s) => PathBuf::from(s.trim()),
            None => PathBuf::from(v),
        }))
    }

    /// The value checked by `check`, which returns it converted or the reason it is
    /// wrong (a config error naming `name`, with `expected`). Providers read key ids,
    /// labels, regions and endpoints this way.
    pub fn checked<T>(
        &self,
        name: &str,
        expected: &str,
        check: impl FnOnce(&str) -> std::result::Result<T, String>,
    ) -> Result<Option<T>> {
        match self.get(name)? {
            None => Ok(None),
            Some(v) => check(&v)
                .map(Some)
                .map_err(|reason| Error::config(name, expected, reason)),
        }
    }

    /// A provider's per-key settings: for each `(variable, logical key name)` that is
    /// set, the value [`checked`](Self::checked) by `check`, keyed by the logical name.
    /// None of them set is a config error naming them all: `backend` would have no keys.
    pub fn keys<T>(
        &self,
        variables: &[(&str, &str)],
        expected: &str,
        backend: &str,
        check: impl Fn(&str) -> std::result::Result<T, String>,
    ) -> Result<BTreeMap<String, T>> {
        let mut keys = BTreeMap::new();
        for (variable, name) in variables {
            if let Some(value) = self.checked(variable, expected, &check)? {
                keys.insert((*name).to_owned(), value);
            }
        }
        if keys.is_empty() {
            return Err(no_keys(variables, expected, backend));
        }
        Ok(keys)
    }

    /// A key reference (`NAME` or `NAME@VERSION`, [`KeyRef::parse`]).
    pub fn key_ref(&self, name: &str) -> Result<Option<KeyRef>> {
        match self.get(name)? {
            None => Ok(None),
            Some(v) => match KeyRef::parse(&v) {
                Ok(k) => Ok(Some(k)),
                Err(e) => {
                    let reason = match e {
                        Error::InvalidInput { reason, .. } => reason,
                        other => other.to_string(),
                    };
                    self.refuse(Error::config(
                        name,
                        "a key name, NAME or NAME@VERSION",
                        reason,
                    ))
                }
            },
        }
    }
}

/// The error for a provider none of whose key variables is set (see [`Vars::keys`]).
pub fn no_keys(variables: &[(&str, &str)], expected: &str, backend: &str) -> Error {
    let names: Vec<&str> = variables.iter().map(|(v, _)| *v).collect();
    let reason = match names.len() {
        1 => format!("not set; the {backend} backend has no keys"),
        2 => format!("neither is set; the {backend} backend has no keys"),
        _ => format!("none is set; the {backend} backend has no keys"),
    };
    Error::config(names.join(" / "), expected, reason)
}

fn is_blank(v: &OsString) -> bool {
    v.to_str().is_some_and(|s| s.trim().is_empty())
}

fn not_utf8(name: &str) -> Error {
    Error::config(name, "valid UTF-8 text", "the value is not valid UTF-8")
}

/// A value for an error message: quoted, at most 40 characters.
fn quote(v: &str) -> String {
    let short: String = v.chars().take(40).collect();
    if short.len() < v.len() {
        format!("{short:?}...")
    } else {
        format!("{short:?}")
    }
}

#[cfg(test)]
mod tests;
