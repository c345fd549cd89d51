//! Running `keymgr --json` and checking what it prints: the environment every case runs in
//! (development keys, nothing inherited from the caller's configuration), the schema files,
//! and the checks every object passes (schema version, snake_case keys, the error object's
//! exit code).

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const KEY: &str = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
const ED_SEED: &str = "sEdSKaCy2JT7JaM7v95H9SxkhP9wS2r";
const KEK: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

pub(crate) struct Case {
    pub(crate) name: &'static str,
    pub(crate) args: Vec<String>,
    pub(crate) stdin: Option<&'static str>,
    pub(crate) env: Vec<(&'static str, String)>,
    pub(crate) exit: i32,
    /// The schema file (stem) the output must match; `error` for failures.
    pub(crate) schema: &'static str,
}

pub(crate) fn case(name: &'static str, args: &[&str], exit: i32, schema: &'static str) -> Case {
    Case {
        name,
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        stdin: None,
        env: Vec::new(),
        exit,
        schema,
    }
}

/// Objects whose keys are data or an ecosystem's own JSON form, not our field names.
pub(crate) const FOREIGN_KEYS: &[&str] = &["encryption_context", "authorization", "details"];

pub(crate) fn command(args: &[String], env: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keymgr"));
    cmd.args(args)
        .env_remove("KEY_BACKEND")
        .env_remove("KEY_BACKENDS")
        .env_remove("KEYMGR_CONFIG")
        .env_remove("KEYMGR_AUDIT_PATH")
        .env_remove("KEYMGR_ROTATION_STATE_PATH")
        .env_remove("KEYMGR_ROTATION_ENABLED")
        .env_remove("KEYMGR_ROTATION_APPROVAL")
        .env("EVM_PRIVATE_KEY", KEY)
        .env("XRP_SEED", ED_SEED)
        .env("DEV_KEK", KEK)
        .env("KEYMGR_ACTOR", "schema-test")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

pub(crate) fn keymgr_with(args: &[String], stdin: Option<&str>, env: &[(&str, String)]) -> Output {
    let mut child = command(args, env).spawn().expect("run keymgr");
    let mut pipe = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        pipe.write_all(text.as_bytes()).unwrap();
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

pub(crate) fn keymgr(args: &[String], stdin: Option<&str>) -> Output {
    keymgr_with(args, stdin, &[])
}

pub(crate) fn schema_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schema")
}

/// The schema files, by stem, each checked against its meta-schema.
pub(crate) struct Schemas {
    pub(crate) validators: std::collections::BTreeMap<String, jsonschema::Validator>,
    pub(crate) used: BTreeSet<String>,
}

impl Schemas {
    pub(crate) fn load() -> Self {
        let mut validators = std::collections::BTreeMap::new();
        for entry in std::fs::read_dir(schema_dir()).unwrap() {
            let path = entry.unwrap().path();
            assert_eq!(path.extension().unwrap(), "json", "{path:?}");
            let schema: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            jsonschema::meta::validate(&schema)
                .unwrap_or_else(|e| panic!("{path:?} is not a valid JSON Schema: {e}"));
            let validator = jsonschema::validator_for(&schema).unwrap();
            let stem = path.file_stem().unwrap().to_str().unwrap().to_owned();
            validators.insert(stem, validator);
        }
        Self {
            validators,
            used: BTreeSet::new(),
        }
    }

    pub(crate) fn check(&mut self, case: &str, schema: &str, v: &Value) {
        let validator = self
            .validators
            .get(schema)
            .unwrap_or_else(|| panic!("{case}: no schema/{schema}.json"));
        let errors: Vec<String> = validator
            .iter_errors(v)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{case}: output does not match schema/{schema}.json: {errors:#?}\n{v}"
        );
        self.used.insert(schema.to_owned());
    }
}

/// Every key is snake_case (lower-case ASCII, digits, `_`), recursively.
pub(crate) fn check_keys(name: &str, v: &Value, at: &str) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                assert!(
                    !k.is_empty()
                        && k.chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                    "{name}: key {at}.{k} is not snake_case"
                );
                if !FOREIGN_KEYS.contains(&k.as_str()) {
                    check_keys(name, child, &format!("{at}.{k}"));
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| check_keys(name, i, at)),
        _ => {}
    }
}

pub(crate) fn check_object(schemas: &mut Schemas, c: &Case, v: &Value) {
    assert_eq!(v["schema"], 1, "{}: {v}", c.name);
    check_keys(c.name, v, "");
    schemas.check(c.name, c.schema, v);
    if c.schema == "error" {
        assert_eq!(v["error"]["exit_code"], c.exit, "{}: {v}", c.name);
    } else {
        assert!(v.get("error").is_none(), "{}: {v}", c.name);
    }
}

pub(crate) fn run_case(schemas: &mut Schemas, c: &Case) -> Value {
    let mut args = c.args.clone();
    args.push("--json".into());
    let out = keymgr_with(&args, c.stdin, &c.env);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(c.exit),
        "{}: exit status; stdout {stdout} stderr {}",
        c.name,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim().lines().count(), 1, "{}: {stdout}", c.name);
    let v: Value = serde_json::from_str(stdout.trim()).expect("valid JSON");
    check_object(schemas, c, &v);
    v
}

pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("keymgr-schema-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
    pub(crate) fn path(&self, file: &str) -> String {
        self.0.join(file).display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `rotate run --json` until SIGTERM: every line is one object of `rotate-run.json`.
pub(crate) fn rotate_run(schemas: &mut Schemas, state: &str) {
    let c = case("rotate run", &["rotate", "run"], 0, "rotate-run");
    let env = [
        ("KEYMGR_ROTATION_ENABLED", "true".to_owned()),
        ("KEYMGR_ROTATION_STATE_PATH", state.to_owned()),
    ];
    let args: Vec<String> = vec!["rotate".into(), "run".into(), "--json".into()];
    let child = command(&args, &env).spawn().unwrap();
    // The scheduler prints its start on stderr; give it a moment, then stop it as a
    // service manager would.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.last().unwrap()["stopped"], true, "{stdout}");
    for v in &lines {
        check_object(schemas, &c, v);
    }
}
