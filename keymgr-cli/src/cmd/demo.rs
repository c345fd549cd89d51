//! `keymgr demo`: the tour of [`keymgr_demo::run`] on throwaway dev keys that needs no
//! configuration (an EIP-191 message, an XRPL claim, the audit chain, then next steps).

use std::path::PathBuf;

use crate::Output;

/// `keymgr demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Directory for the demo's audit log (created 0700; an existing log is continued).
    /// Default: a new directory `keymgr-demo-<time>-<pid>` under the system temp dir.
    #[arg(long, value_name = "DIR")]
    audit_dir: Option<PathBuf>,
}

pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<Output> {
    let demo = keymgr_demo::run(args.audit_dir).await?;
    Ok(Output::new(demo.json, demo.text))
}
