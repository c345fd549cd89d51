//! keymgr development tasks, run as `cargo xtask <task>`.
//!
//! - `test`: provisions what the tests need (idempotent), then `cargo fmt --check`,
//!   `cargo clippy -D warnings`, the whole suite under nextest, the doc-tests, and the
//!   dependency-boundary checks. This is THE test command (README, `.ci/run`).
//! - `bench`: every measurement: the criterion benchmarks against the same provisioned
//!   components, then `bench-aws` and `bench-audit`.
//! - `bench-criterion [ARGS]`: only the criterion benchmarks (ARGS go to `cargo bench`).
//! - `bench-aws`: keymgr-aws vs alloy-signer-aws signatures/s on the same moto server.
//! - `bench-audit`: audit log added latency at a fixed signing rate, verify of 1 M entries.
//! - `bench-esdk`: keymgr-envelope vs the Rust AWS Encryption SDK (`aws-esdk`), criterion.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};

mod deps;
mod esdk;
mod moto;
mod services;
mod softhsm;
mod verifiers;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root()?;
    match args.first().map(String::as_str) {
        Some("test") => test(&root, &args[1..]),
        Some("bench") if args.len() == 1 => {
            bench(&root, &[])?;
            bench_aws(&root)?;
            bench_audit(&root)?;
            bench_esdk(&root)
        }
        Some("bench") => bail!(
            "`cargo xtask bench` takes no arguments; pass criterion arguments to \
             `cargo xtask bench-criterion ARGS`"
        ),
        Some("bench-criterion") => bench(&root, &args[1..]),
        Some("bench-aws") => bench_aws(&root),
        Some("bench-audit") => bench_audit(&root),
        Some("bench-esdk") => bench_esdk(&root),
        Some("fuzz") => fuzz(&root, args.get(1).map(String::as_str)),
        Some("provision") => match args.get(1).map(String::as_str) {
            None => provision_demo(&root),
            Some("--stop") => {
                match services::stop(&root)? {
                    Some(pid) => eprintln!("==> stopped moto (pid {pid})"),
                    None => eprintln!("==> moto was not running"),
                }
                Ok(())
            }
            Some("--test-env") => {
                let env = provision(&root)?;
                print!("{}", services::exports(&env.vars));
                // The variables point at moto: it must outlive this process.
                for service in env.services {
                    if let Ok(moto) = service.downcast::<moto::MotoServer>() {
                        let [patched, plain] = moto.detach();
                        println!(
                            "# moto's test servers (pids {patched} and {plain}) keep running; \
                             stop them with: kill {patched} {plain}"
                        );
                    }
                }
                Ok(())
            }
            Some(other) => {
                bail!("unknown provision option {other}: expected --stop or --test-env\n\n{USAGE}")
            }
        },
        Some("help" | "--help" | "-h") => {
            println!("{USAGE}");
            Ok(())
        }
        other => {
            eprintln!("{USAGE}");
            match other {
                Some(task) => eprintln!("\nerror: unknown task {task:?}"),
                None => eprintln!("\nerror: no task given"),
            }
            std::process::exit(2);
        }
    }
}

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  test [NEXTEST ARGS]     provision, fmt --check, clippy -D warnings, nextest, doc-tests
  bench                   every measurement: bench-criterion, bench-aws, bench-audit,
                          bench-esdk
  bench-criterion [ARGS]  provision, then cargo bench (ARGS go to cargo bench)
  bench-aws               keymgr-aws vs alloy-signer-aws signatures/s on moto
  bench-audit             audit: added sign latency at 1000/s, verify 1M entries
  bench-esdk              keymgr-envelope vs the Rust aws-esdk, 1 MiB messages
  fuzz [CASES]            keymgr-envelope parser property tests, CASES per property
                          (default 1000000), release build
  provision               a SoftHSM2 demo token and moto's KMS with demo keys, left
                          running; prints the variables to use them (eval-able)
  provision --stop        stop what `provision` started
  provision --test-env    provision what the tests need and print their variables
                          (moto stops when this command exits)";

fn workspace_root() -> Result<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(Path::to_path_buf)
        .context("xtask lives one level below the workspace root")
}

/// What provisioning produced: variables for the test processes and services that
/// must stay up while they run (stopped on drop).
#[derive(Default)]
struct TestEnv {
    vars: Vec<(String, String)>,
    services: Vec<Box<dyn std::any::Any>>,
}

fn provision(root: &Path) -> Result<TestEnv> {
    let mut env = TestEnv::default();
    // Provider provisioning (SoftHSM2 tokens, moto's server) registers here.
    env.vars
        .extend(softhsm::provision(root).context("provisioning SoftHSM2")?);
    env.vars
        .extend(verifiers::provision(root).context("installing the Python verifiers")?);
    let moto = moto::start(root).context("starting moto's KMS server")?;
    env.vars.extend(moto.env());
    env.services.push(Box::new(moto));
    env.vars
        .extend(esdk::provision(root).context("installing the Python AWS Encryption SDK")?);
    Ok(env)
}

/// `cargo xtask provision`: starts (or finds) the operator's stand-ins and prints the
/// variables as `export` lines on stdout (so `eval "$(cargo xtask provision)"` works),
/// with comments saying how to use and stop them.
fn provision_demo(root: &Path) -> Result<()> {
    let p = services::start(root)?;
    let state = if p.started {
        "started"
    } else {
        "already running"
    };
    println!(
        "# SoftHSM2 token keymgr-demo and moto's KMS (pid {}, {state}) run until \
         `cargo xtask provision --stop`.\n\
         # Saved in {} (0600): `. that-file` sets them again.",
        p.pid,
        services::env_file(root).display()
    );
    print!("{}", services::exports(&p.vars));
    println!(
        "# then, for each backend:\n\
         #   KEY_BACKEND=hsm keymgr public-key --key evm\n\
         #   KEY_BACKEND=aws-kms keymgr evm sign-message --key evm --text hello\n\
         #   KEY_BACKEND=aws-kms keymgr xrp sign-claim --key xrp --channel <64 hex> --amount 1000"
    );
    Ok(())
}

pub(crate) fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

pub(crate) fn run(step: &str, cmd: &mut Command) -> Result<()> {
    eprintln!("==> {step}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start {step}"))?;
    if !status.success() {
        bail!("{step} failed ({status})");
    }
    Ok(())
}

/// Installs Debian packages with apt-get (running `apt-get update` once if the first try
/// fails: fresh images often have empty package lists).
pub(crate) fn apt_install(packages: &[&str]) -> Result<()> {
    eprintln!("==> apt-get install {}", packages.join(" "));
    let install = || {
        Command::new("apt-get")
            // Wait for another apt/dpkg run (unattended upgrades, a parallel provision)
            // instead of failing on its lock.
            .args(["-o", "DPkg::Lock::Timeout=300"])
            .args(["install", "-y", "--no-install-recommends"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if install() {
        return Ok(());
    }
    let updated = Command::new("apt-get")
        .args(["-o", "DPkg::Lock::Timeout=300", "update"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !updated || !install() {
        bail!(
            "could not install {} with apt-get (run as root, or install them yourself: \
             `apt-get install {}`)",
            packages.join(", "),
            packages.join(" ")
        );
    }
    Ok(())
}

fn ensure_nextest() -> Result<()> {
    let ok = cargo()
        .args(["nextest", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        run(
            "install cargo-nextest",
            cargo().args(["install", "cargo-nextest", "--locked"]),
        )?;
    }
    Ok(())
}

fn test(root: &Path, extra: &[String]) -> Result<()> {
    let started = std::time::Instant::now();
    ensure_nextest()?;
    run(
        "cargo fmt --check",
        cargo().current_dir(root).args(["fmt", "--all", "--check"]),
    )?;
    run(
        "cargo clippy",
        cargo().current_dir(root).args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    // The README's demo build (keymgr-cli with only `env`): its cfg-gated code, and
    // keymgr-evm without features (dev-dependencies would turn them back on for
    // keymgr-evm's own tests: keymgr-testkit's `evm` takes its defaults).
    run(
        "cargo clippy -p keymgr-cli (only env)",
        cargo().current_dir(root).args([
            "clippy",
            "-p",
            "keymgr-cli",
            "--no-default-features",
            "--features",
            "env",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    check_dependency_boundaries(root)?;
    deps::check_core_only(root)?;
    let env = provision(root)?;
    // What `cargo xtask provision` gives operators, for keymgr-cli's operator-path test.
    let demo = services::ForTests::start(root).context("provisioning the demo stand-ins")?;
    let mut nextest = cargo();
    nextest
        .current_dir(root)
        .args([
            "nextest",
            "run",
            "--workspace",
            "--all-features",
            "--no-fail-fast",
        ])
        .args(extra)
        .env("KEYMGR_XTASK_TEST", "1")
        .env("KEYMGR_DEMO_ENV_FILE", services::env_file(root));
    for (k, v) in &env.vars {
        nextest.env(k, v);
    }
    run("cargo nextest run", &mut nextest)?;
    // The facade as most users build it (default features: env only): feature-gated
    // code paths such as "backend not compiled in" only exist there.
    if extra.is_empty() {
        run(
            "cargo nextest run -p keymgr (default features)",
            cargo()
                .current_dir(root)
                .args(["nextest", "run", "-p", "keymgr"])
                .env("KEYMGR_XTASK_TEST", "1"),
        )?;
        // keymgr-core without `libsecp256k1` (k256 alone verifies), as the README's demo
        // (`keymgr-demo`) builds it; the workspace run above has it on.
        run(
            "cargo nextest run -p keymgr-core -p keymgr-demo (pure-Rust verification)",
            cargo()
                .current_dir(root)
                .args(["nextest", "run", "-p", "keymgr-core", "-p", "keymgr-demo"])
                .env("KEYMGR_XTASK_TEST", "1"),
        )?;
    }
    let mut doc = cargo();
    doc.current_dir(root)
        .args(["test", "--workspace", "--all-features", "--doc"])
        .env("KEYMGR_XTASK_TEST", "1");
    for (k, v) in &env.vars {
        doc.env(k, v);
    }
    run("cargo test --doc", &mut doc)?;
    drop(env.services);
    drop(demo);
    eprintln!("==> all checks passed in {:.0?}", started.elapsed());
    Ok(())
}

/// keymgr-envelope's parser property tests (tests/fuzz.rs) with `cases` cases each, in
/// a release build; CI runs the same properties with a bounded default.
fn fuzz(root: &Path, cases: Option<&str>) -> Result<()> {
    let cases = cases.unwrap_or("1000000");
    let n: u64 = cases
        .parse()
        .with_context(|| format!("CASES must be a number, got {cases:?}"))?;
    let started = std::time::Instant::now();
    run(
        &format!("keymgr-envelope fuzz: {n} cases x 2 properties"),
        cargo()
            .current_dir(root)
            .args([
                "test",
                "--release",
                "-p",
                "keymgr-envelope",
                "--test",
                "fuzz",
            ])
            .env("KEYMGR_FUZZ_CASES", cases),
    )?;
    eprintln!(
        "==> {} executions (each decrypted in memory and streamed) in {:.0?}",
        2 * n,
        started.elapsed()
    );
    Ok(())
}

fn bench(root: &Path, extra: &[String]) -> Result<()> {
    let env = provision(root)?;
    let mut cmd = cargo();
    cmd.current_dir(root)
        .args(["bench", "--workspace", "--all-features"])
        .args(extra)
        .env("KEYMGR_XTASK_TEST", "1");
    for (k, v) in &env.vars {
        cmd.env(k, v);
    }
    run("cargo bench", &mut cmd)?;
    drop(env.services);
    Ok(())
}

fn bench_audit(root: &Path) -> Result<()> {
    run(
        "audit load (keymgr-audit/examples/load.rs)",
        cargo().current_dir(root).args([
            "run",
            "--quiet",
            "--release",
            "-p",
            "keymgr-audit",
            "--example",
            "load",
        ]),
    )
}

/// An HSM-only or env-only build of the facade must not compile any cloud SDK; the CLI
/// with only `env` no provider SDK, no aws-lc and no alloy transaction or typed-data
/// stack; and the README's demo command (`cargo run -p keymgr-demo`) none of that and
/// none of the CLI's own machinery either (argument parser, configuration files, log
/// subscriber, rotation), so that it keeps building in about a minute on a fresh clone.
fn check_dependency_boundaries(root: &Path) -> Result<()> {
    const CLOUD: &[&str] = &["aws-sdk-", "aws-config", "google-cloud-", "azure_"];
    const DEMO: &[&str] = &[
        "aws-sdk-",
        "aws-config",
        "google-cloud-",
        "azure_",
        "aws-lc-",
        "cryptoki",
        "reqwest",
        // tracing-subscriber's `env-filter`: the CLI filters RUST_LOG with `Targets`
        "regex",
        "matchers",
        // keymgr-evm's `tx` and `eip712` features (keymgr-cli's evm-tx, evm-eip712)
        "alloy-network",
        "alloy-consensus",
        "alloy-dyn-abi",
        "alloy-sol-types",
    ];
    let demo_bin: Vec<&str> = DEMO
        .iter()
        .copied()
        .chain([
            "clap",
            "toml",
            "tracing-subscriber",
            "keymgr v",
            "keymgr-rotation",
        ])
        .collect();
    let checks = [
        ("keymgr", Some("env"), CLOUD),
        ("keymgr", Some("hsm"), CLOUD),
        ("keymgr-cli", Some("env"), DEMO),
        ("keymgr-demo", None, &demo_bin[..]),
    ];
    for (package, feature, forbidden) in checks {
        let mut tree = cargo();
        tree.current_dir(root).args(["tree", "-p", package]);
        if let Some(feature) = feature {
            if !root.join(format!("keymgr-{feature}")).exists() {
                continue;
            }
            tree.args(["--no-default-features", "--features", feature]);
        }
        eprintln!("==> cargo tree -p {package} (features: {feature:?})");
        let out = tree
            .args(["-e", "normal", "--prefix", "none"])
            .output()
            .context("cargo tree")?;
        if !out.status.success() {
            bail!(
                "cargo tree failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let tree = String::from_utf8_lossy(&out.stdout);
        let leaked: Vec<&str> = tree
            .lines()
            .filter(|l| forbidden.iter().any(|c| l.starts_with(c)))
            .collect();
        if !leaked.is_empty() {
            bail!("{package} with features {feature:?} pulls {leaked:?}");
        }
    }
    Ok(())
}

/// keymgr-aws vs alloy-signer-aws: the same throughput program (1, 4, 16 concurrent
/// callers, every signature recovered) against the same DIGEST-honouring moto server.
/// alloy-signer-aws builds in its own Cargo project (`benches-external/`): it pins
/// `aws-smithy-types = "=1.6.1"`, which cannot share our lock file.
/// keymgr-envelope vs the Rust AWS Encryption SDK: `benches-external/aws-esdk`, its own
/// Cargo project and lock file (the SDK's Dafny runtime and pins stay out of the
/// workspace), built into `target/benches-external` like the alloy comparison.
fn bench_esdk(root: &Path) -> Result<()> {
    run(
        "keymgr-envelope vs aws-esdk (benches-external/aws-esdk)",
        cargo()
            .current_dir(root.join("benches-external/aws-esdk"))
            .args(["bench", "--bench", "compare"])
            .env("CARGO_TARGET_DIR", root.join("target/benches-external")),
    )
}

fn bench_aws(root: &Path) -> Result<()> {
    let moto = moto::start(root).context("starting moto's KMS server")?;
    let env = moto.env();
    let mut ours = cargo();
    ours.current_dir(root).args([
        "run",
        "--quiet",
        "--release",
        "-p",
        "keymgr-aws",
        "--example",
        "throughput",
    ]);
    let mut theirs = cargo();
    theirs
        .current_dir(root.join("benches-external/alloy-signer-aws"))
        .args(["run", "--quiet", "--release"])
        .env("CARGO_TARGET_DIR", root.join("target/benches-external"));
    let mut results = Vec::new();
    for (name, cmd) in [("keymgr-aws", &mut ours), ("alloy-signer-aws", &mut theirs)] {
        for (k, v) in &env {
            cmd.env(k, v);
        }
        eprintln!("==> {name} throughput");
        let out = cmd
            .output()
            .with_context(|| format!("running the {name} bench"))?;
        if !out.status.success() {
            bail!(
                "{name} bench failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        print!("{text}");
        results.push(rates(&text));
    }
    drop(moto);
    println!("concurrency  keymgr-aws/s  alloy-signer-aws/s  ratio");
    for ((c, ours), (_, theirs)) in results[0].iter().zip(&results[1]) {
        println!(
            "{c:>11}  {ours:>12.1}  {theirs:>18.1}  {:.2}",
            ours / theirs
        );
    }
    Ok(())
}

/// (concurrency, per_sec) from the bench programs' JSON lines.
fn rates(text: &str) -> Vec<(u64, f64)> {
    let field = |line: &str, name: &str| -> Option<f64> {
        let start = line.find(&format!("\"{name}\":"))? + name.len() + 3;
        let rest = &line[start..];
        let end = rest.find([',', '}']).unwrap_or(rest.len());
        rest[..end].trim().parse().ok()
    };
    text.lines()
        .filter_map(|l| Some((field(l, "concurrency")? as u64, field(l, "per_sec")?)))
        .collect()
}
