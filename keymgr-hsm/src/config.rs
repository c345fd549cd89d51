//! Settings for [`HsmBackend`](crate::HsmBackend), from environment variables or code.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use keymgr_core::config::{ProcessEnv, VarSource, Vars, no_keys};
use keymgr_core::{Error, Result};
use zeroize::Zeroizing;

/// Path of the vendor's PKCS#11 module (`.so`), e.g. `/usr/lib/softhsm/libsofthsm2.so`.
pub const HSM_PKCS11_LIBRARY_PATH: &str = "HSM_PKCS11_LIBRARY_PATH";
/// Slot id (decimal, or hex with `0x`). SoftHSM2 reassigns slot ids: prefer the label.
pub const HSM_SLOT_ID: &str = "HSM_SLOT_ID";
/// Token label (`CKA_LABEL` of the token, as in `pkcs11-tool -L`).
pub const HSM_TOKEN_LABEL: &str = "HSM_TOKEN_LABEL";
/// The user PIN. Environment only; never logged, never printed.
pub const HSM_PIN: &str = "HSM_PIN";
/// `CKA_LABEL` of the EVM (secp256k1) key, served as logical key `evm`.
pub const HSM_EVM_KEY_LABEL: &str = "HSM_EVM_KEY_LABEL";
/// `CKA_LABEL` of the XRP (secp256k1 or Ed25519) key, served as logical key `xrp`.
pub const HSM_XRP_KEY_LABEL: &str = "HSM_XRP_KEY_LABEL";
/// Session pool size (default: the number of CPU cores).
pub const HSM_POOL_SIZE: &str = "HSM_POOL_SIZE";
/// Opt-in deletion: when set, rotation keeps the newest N versions and deletes older
/// versions that are already disabled (unset: nothing is ever deleted). The rotator
/// (keymgr-rotation's `RotationPolicy::keep_versions`) deletes and audits; this backend
/// never deletes on its own.
pub const HSM_KEEP_VERSIONS: &str = "HSM_KEEP_VERSIONS";
/// Logical name under which `HSM_EVM_KEY_LABEL` is served.
pub const DEFAULT_EVM_KEY: &str = "evm";
/// Logical name under which `HSM_XRP_KEY_LABEL` is served.
pub const DEFAULT_XRP_KEY: &str = "xrp";

/// Upper bound of `HSM_POOL_SIZE`: each session costs the token memory and a login
/// check; no HSM serves more concurrent sessions to one process usefully.
pub const MAX_POOL_SIZE: usize = 1024;
/// Upper bound of `HSM_KEEP_VERSIONS`.
pub const MAX_KEEP_VERSIONS: usize = 10_000;

/// A sensible value for [`HSM_KEEP_VERSIONS`] when deletion is wanted (it is off unless
/// configured).
pub const DEFAULT_KEEP_VERSIONS: usize = 5;

/// The HSM user PIN: zeroized on drop, `[REDACTED]` in `Debug`, no `Display`.
#[derive(Clone)]
pub struct Pin(Zeroizing<String>);

impl Pin {
    /// Wraps a PIN.
    pub fn new(pin: impl Into<String>) -> Self {
        Self(Zeroizing::new(pin.into()))
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// Compares without short-circuiting on the first differing byte.
    pub(crate) fn matches(&self, other: &Pin) -> bool {
        let (a, b) = (self.0.as_bytes(), other.0.as_bytes());
        let mut diff = a.len() ^ b.len();
        for (i, x) in a.iter().enumerate() {
            diff |= usize::from(x ^ b.get(i).copied().unwrap_or(0));
        }
        diff == 0
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin([REDACTED])")
    }
}

/// Which token to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSelector {
    /// The token in this slot.
    SlotId(u64),
    /// The token with this label (trailing blanks of the 32-byte PKCS#11 field ignored).
    Label(String),
    /// The token in this slot, which must carry this label (both variables set).
    SlotAndLabel(u64, String),
}

impl fmt::Display for TokenSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSelector::SlotId(id) => write!(f, "slot {id}"),
            TokenSelector::Label(l) => write!(f, "token {l:?}"),
            TokenSelector::SlotAndLabel(id, l) => write!(f, "token {l:?} in slot {id}"),
        }
    }
}

/// Where the PKCS#11 module is, which token and keys to use, and how to pool sessions.
///
/// `Debug` never shows the PIN.
#[derive(Clone)]
pub struct HsmConfig {
    /// The PKCS#11 module.
    pub library_path: PathBuf,
    /// The token.
    pub token: TokenSelector,
    /// The user PIN.
    pub pin: Pin,
    /// Logical key name → base `CKA_LABEL`. A name that is not listed here is used as
    /// the label itself, so `KeyRef::new("payments-hot")` works without configuration.
    pub keys: BTreeMap<String, String>,
    /// Sessions in the pool (at least 1).
    pub pool_size: usize,
    /// Opt-in deletion: rotation keeps this many newest versions and deletes older ones
    /// that are already disabled (at least 2). `None` (the default): never delete; old
    /// versions are only disabled. Read here so that configuration checks see it; the
    /// backend does not act on it: pass it to keymgr-rotation's
    /// `RotationPolicy::keep_versions`, whose rotator deletes through
    /// `KeyBackend::delete_version` and audits each deletion (keymgr-cli does).
    pub keep_versions: Option<usize>,
    /// How long start-up keeps retrying transient failures (concurrent logins, a token
    /// that is being rewritten) before giving up.
    pub startup_timeout: Duration,
    /// How long a resolved key (object handle, public key, disabled state) is reused
    /// before its attributes are read again.
    pub key_cache_ttl: Duration,
}

impl fmt::Debug for HsmConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HsmConfig")
            .field("library_path", &self.library_path)
            .field("token", &self.token)
            .field("pin", &self.pin)
            .field("keys", &self.keys)
            .field("pool_size", &self.pool_size)
            .field("keep_versions", &self.keep_versions)
            .field("startup_timeout", &self.startup_timeout)
            .field("key_cache_ttl", &self.key_cache_ttl)
            .finish()
    }
}

const EXPECTED_LIBRARY: &str = "the path of a PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so";
const EXPECTED_SLOT: &str = "a slot id as shown by `pkcs11-tool -L` (decimal, or hex with 0x)";
const EXPECTED_TOKEN: &str = "HSM_TOKEN_LABEL=<token label> and/or HSM_SLOT_ID=<slot id>";
const EXPECTED_LABEL: &str =
    "the CKA_LABEL of a key pair on the token (1-200 printable characters)";

impl HsmConfig {
    /// Settings with the defaults: pool size = CPU cores, keep 5 versions, 10 s start-up
    /// retries, 60 s key cache.
    pub fn new(library_path: impl Into<PathBuf>, token: TokenSelector, pin: Pin) -> Self {
        Self {
            library_path: library_path.into(),
            token,
            pin,
            keys: BTreeMap::new(),
            pool_size: default_pool_size(),
            keep_versions: None,
            startup_timeout: Duration::from_secs(10),
            key_cache_ttl: Duration::from_secs(60),
        }
    }

    /// Reads `HSM_PKCS11_LIBRARY_PATH`, `HSM_SLOT_ID` / `HSM_TOKEN_LABEL`, `HSM_PIN`,
    /// `HSM_EVM_KEY_LABEL` (served as `evm`), `HSM_XRP_KEY_LABEL` (served as `xrp`),
    /// `HSM_POOL_SIZE` and `HSM_KEEP_VERSIONS` from the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_source(&ProcessEnv)
    }

    /// Like [`from_env`](Self::from_env) with a custom variable lookup (the facade's
    /// config file, tests). Every missing or malformed value is an error naming its
    /// variable; the PIN's value never appears in one.
    pub fn from_vars(var: impl Fn(&str) -> Option<String> + Sync) -> Result<Self> {
        Self::from_source(&var)
    }

    /// Like `from_vars`, from any [`VarSource`] (the process environment, a map,
    /// the environment layered over a configuration file, a collecting
    /// [`Vars`] of `keymgr config check`). A value that is not UTF-8 is an error
    /// naming its variable.
    pub fn from_source(source: &dyn VarSource) -> Result<Self> {
        let vars = Vars::new(source);
        // Required settings that are missing: all of them are reported (a collecting
        // source, `keymgr config check`, gets each one), the first is returned.
        let mut missing: Vec<Error> = Vec::new();
        let library_path = vars.path(HSM_PKCS11_LIBRARY_PATH)?;
        if library_path.is_none() {
            missing.push(Error::config(
                HSM_PKCS11_LIBRARY_PATH,
                EXPECTED_LIBRARY,
                "not set",
            ));
        }
        let slot = match vars.get(HSM_SLOT_ID)? {
            None => None,
            Some(s) => Some(parse_slot(&s).ok_or_else(|| {
                Error::config(HSM_SLOT_ID, EXPECTED_SLOT, format!("{s:?} is not a number"))
            })?),
        };
        let label = vars.get(HSM_TOKEN_LABEL)?;
        if let Some(l) = &label
            && l.len() > 32
        {
            return Err(Error::config(
                HSM_TOKEN_LABEL,
                "a token label of at most 32 bytes",
                format!("{l:?} is {} bytes", l.len()),
            ));
        }
        let token = match (slot, label) {
            (Some(s), Some(l)) => Some(TokenSelector::SlotAndLabel(s, l)),
            (Some(s), None) => Some(TokenSelector::SlotId(s)),
            (None, Some(l)) => Some(TokenSelector::Label(l)),
            (None, None) => {
                missing.push(Error::config(
                    format!("{HSM_SLOT_ID} / {HSM_TOKEN_LABEL}"),
                    EXPECTED_TOKEN,
                    "neither is set; the hsm backend does not know which token to use",
                ));
                None
            }
        };
        // Not trimmed: a PIN may legitimately contain blanks, only empty is refused.
        let pin = vars.secret(HSM_PIN)?.map(Pin::new);
        if pin.is_none() {
            missing.push(Error::config(
                HSM_PIN,
                "the token's user PIN",
                "not set or empty",
            ));
        }
        let key_variables = [
            (HSM_EVM_KEY_LABEL, DEFAULT_EVM_KEY),
            (HSM_XRP_KEY_LABEL, DEFAULT_XRP_KEY),
        ];
        let mut keys = BTreeMap::new();
        for (variable, name) in key_variables {
            let label = vars.checked(variable, EXPECTED_LABEL, |label| {
                validate_label(label).map(|()| label.to_owned())
            })?;
            if let Some(label) = label {
                keys.insert(name.to_owned(), label);
            }
        }
        if keys.is_empty() {
            missing.push(no_keys(&key_variables, EXPECTED_LABEL, "hsm"));
        }
        let (Some(library_path), Some(token), Some(pin)) = (library_path, token, pin) else {
            return Err(first_of(source, missing));
        };
        if !missing.is_empty() {
            return Err(first_of(source, missing));
        }
        let mut config = HsmConfig::new(library_path, token, pin);
        config.keys.extend(keys);
        if let Some(n) = vars.bounded(HSM_POOL_SIZE, 1..=MAX_POOL_SIZE, "sessions")? {
            config.pool_size = n;
        }
        config.keep_versions =
            vars.bounded(HSM_KEEP_VERSIONS, 2..=MAX_KEEP_VERSIONS, "versions")?;
        Ok(config)
    }

    /// Serves the key pair labelled `label` as `name`.
    pub fn with_key(mut self, name: impl Into<String>, label: impl Into<String>) -> Self {
        self.keys.insert(name.into(), label.into());
        self
    }

    /// Sets the session pool size (at least 1).
    pub fn with_pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// Opts in to deletion: rotation keeps the newest `keep` versions (at least 2) and
    /// deletes older ones that are already disabled.
    pub fn with_keep_versions(mut self, keep: usize) -> Self {
        self.keep_versions = Some(keep.max(2));
        self
    }

    /// Sets the start-up retry budget.
    pub fn with_startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Sets how long resolved keys are reused.
    pub fn with_key_cache_ttl(mut self, ttl: Duration) -> Self {
        self.key_cache_ttl = ttl;
        self
    }

    /// The base label serving logical key `name`.
    pub(crate) fn base_label<'a>(&'a self, name: &'a str) -> &'a str {
        self.keys.get(name).map(String::as_str).unwrap_or(name)
    }

    /// The variable that configured `name`, for error messages.
    pub(crate) fn variable_for(&self, name: &str) -> Option<&'static str> {
        match name {
            DEFAULT_EVM_KEY if self.keys.contains_key(name) => Some(HSM_EVM_KEY_LABEL),
            DEFAULT_XRP_KEY if self.keys.contains_key(name) => Some(HSM_XRP_KEY_LABEL),
            _ => None,
        }
    }
}

/// The first of `missing` (not empty) as the error to return; a collecting source
/// (`keymgr config check`) is also given every other one.
fn first_of(source: &dyn VarSource, mut missing: Vec<Error>) -> Error {
    let first = missing.remove(0);
    if let Some(problems) = source.problems() {
        for e in missing {
            problems.record_new(e);
        }
    }
    first
}

fn default_pool_size() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

fn parse_slot(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Labels keymgr accepts: printable, no control characters, bounded length.
pub(crate) fn validate_label(label: &str) -> std::result::Result<(), String> {
    if label.is_empty() || label.len() > 200 {
        return Err(format!("{label:?} must be 1-200 bytes long"));
    }
    if label.chars().any(char::is_control) {
        return Err(format!("{label:?} contains a control character"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET_PIN: &str = "pin-Zq9!secret";

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            (HSM_PKCS11_LIBRARY_PATH, "/usr/lib/softhsm/libsofthsm2.so"),
            (HSM_TOKEN_LABEL, "keymgr"),
            (HSM_PIN, SECRET_PIN),
            (HSM_EVM_KEY_LABEL, "evm-settlement"),
        ]
    }

    #[test]
    fn config_check_hears_of_every_missing_setting_at_once() {
        let empty = vars(&[]);
        let problems = keymgr_core::config::Problems::new();
        let collecting = Vars::collecting(&empty, &problems);
        let first = HsmConfig::from_source(&collecting).unwrap_err();
        problems.record_new(first);
        let mut named: Vec<String> = problems
            .take()
            .iter()
            .filter_map(|e| match e {
                Error::Config { variable, .. } => Some(variable.clone()),
                _ => None,
            })
            .collect();
        named.sort();
        let mut expected = vec![
            HSM_PKCS11_LIBRARY_PATH.to_owned(),
            format!("{HSM_SLOT_ID} / {HSM_TOKEN_LABEL}"),
            HSM_PIN.to_owned(),
            format!("{HSM_EVM_KEY_LABEL} / {HSM_XRP_KEY_LABEL}"),
        ];
        expected.sort();
        assert_eq!(named, expected);
        // Without a collecting source: the first problem, as before.
        let e = HsmConfig::from_vars(vars(&[])).unwrap_err();
        assert!(
            matches!(&e, Error::Config { variable, .. } if variable == HSM_PKCS11_LIBRARY_PATH),
            "{e:?}"
        );
    }

    #[test]
    fn reads_everything() {
        let mut v = base();
        v.extend([
            (HSM_SLOT_ID, "0x1f"),
            (HSM_XRP_KEY_LABEL, " xrp-claims "),
            (HSM_POOL_SIZE, "3"),
            (HSM_KEEP_VERSIONS, "7"),
        ]);
        let c = HsmConfig::from_vars(vars(&v)).unwrap();
        assert_eq!(c.token, TokenSelector::SlotAndLabel(31, "keymgr".into()));
        assert_eq!(c.base_label("evm"), "evm-settlement");
        assert_eq!(c.base_label("xrp"), "xrp-claims");
        assert_eq!(c.base_label("other"), "other");
        assert_eq!(c.variable_for("xrp"), Some(HSM_XRP_KEY_LABEL));
        assert_eq!((c.pool_size, c.keep_versions), (3, Some(7)));
        assert_eq!(
            HsmConfig::from_vars(vars(&base())).unwrap().keep_versions,
            None
        );
        assert_eq!(c.pin.expose(), SECRET_PIN);
    }

    #[test]
    fn errors_name_the_variable_and_never_the_pin() {
        let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
            (HSM_PKCS11_LIBRARY_PATH, base()[1..].to_vec()),
            (HSM_TOKEN_LABEL, {
                let mut v = base();
                v.retain(|(k, _)| *k != HSM_TOKEN_LABEL);
                v
            }),
            (HSM_SLOT_ID, {
                let mut v = base();
                v.push((HSM_SLOT_ID, "slot-one"));
                v
            }),
            (HSM_PIN, {
                let mut v = base();
                v.retain(|(k, _)| *k != HSM_PIN);
                v
            }),
            (HSM_EVM_KEY_LABEL, {
                let mut v = base();
                v.retain(|(k, _)| *k != HSM_EVM_KEY_LABEL);
                v
            }),
            (HSM_POOL_SIZE, {
                let mut v = base();
                v.push((HSM_POOL_SIZE, "0"));
                v
            }),
            (HSM_KEEP_VERSIONS, {
                let mut v = base();
                v.push((HSM_KEEP_VERSIONS, "1"));
                v
            }),
            (HSM_POOL_SIZE, {
                let mut v = base();
                v.push((HSM_POOL_SIZE, "1000000000000"));
                v
            }),
            (HSM_POOL_SIZE, {
                let mut v = base();
                v.push((HSM_POOL_SIZE, "18446744073709551615"));
                v
            }),
            (HSM_KEEP_VERSIONS, {
                let mut v = base();
                v.push((HSM_KEEP_VERSIONS, "99999999999999999999"));
                v
            }),
            (HSM_XRP_KEY_LABEL, {
                let mut v = base();
                v.push((HSM_XRP_KEY_LABEL, "bad\nlabel"));
                v
            }),
        ];
        for (variable, v) in cases {
            let e = HsmConfig::from_vars(vars(&v)).unwrap_err();
            let s = e.to_string();
            assert_eq!(e.kind(), keymgr_core::ErrorKind::Config, "{s}");
            assert!(s.contains(variable), "{variable}: {s}");
            assert!(!s.contains(SECRET_PIN), "{s}");
            assert!(!format!("{e:?}").contains(SECRET_PIN));
        }
    }

    #[test]
    fn debug_redacts_the_pin() {
        let c = HsmConfig::from_vars(vars(&base())).unwrap();
        let d = format!("{c:?} {:?}", c.pin);
        assert!(!d.contains(SECRET_PIN), "{d}");
        assert!(d.contains("REDACTED"), "{d}");
    }

    #[test]
    fn pin_comparison() {
        assert!(Pin::new("1234").matches(&Pin::new("1234")));
        assert!(!Pin::new("1234").matches(&Pin::new("12345")));
        assert!(!Pin::new("12345").matches(&Pin::new("1234")));
        assert!(!Pin::new("1234").matches(&Pin::new("1235")));
    }
}
