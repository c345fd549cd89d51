//! `keymgr-demo [--audit-dir DIR]`: the tour of [`keymgr_demo::run`], printed for
//! people. The same tour is `keymgr demo` in the full CLI (which also has `--json`).

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: keymgr-demo [--audit-dir DIR]

Signs an EIP-191 message and an XRPL payment-channel claim with throwaway keys through a
KeyManager with a hash-chained audit log, and checks each result independently.
  --audit-dir DIR   directory for the audit log (created 0700; an existing log is continued);
                    default: a new keymgr-demo-<time>-<pid> directory under the temp dir";

fn audit_dir() -> Result<Option<PathBuf>, String> {
    let mut args = std::env::args_os().skip(1);
    let mut dir = None;
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--audit-dir") => match args.next() {
                Some(d) if dir.is_none() => dir = Some(PathBuf::from(d)),
                Some(_) => return Err("--audit-dir given twice".into()),
                None => return Err("--audit-dir needs a directory".into()),
            },
            Some("-h" | "--help") => return Err(String::new()),
            _ => return Err(format!("unexpected argument {}", arg.to_string_lossy())),
        }
    }
    Ok(dir)
}

#[tokio::main]
async fn main() -> ExitCode {
    let dir = match audit_dir() {
        Ok(dir) => dir,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match keymgr_demo::run(dir).await {
        Ok(demo) => {
            print!("{}", demo.text);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
