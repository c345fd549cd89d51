//! `keymgr completions SHELL` and `keymgr man`: generated from the command definition
//! (clap_complete, clap_mangen), so they never drift from `--help`.

use serde_json::json;

use crate::Output;

/// The completion script for `shell` (text), or `{"shell", "script"}` with `--json`.
pub(crate) fn completions(
    shell: clap_complete::Shell,
    mut command: clap::Command,
) -> anyhow::Result<Output> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "keymgr", &mut script);
    let script = String::from_utf8(script)?;
    Ok(Output::new(
        json!({ "shell": shell.to_string(), "script": script }),
        script,
    ))
}

/// The man page in roff (section 1), or `{"section", "roff"}` with `--json`.
pub(crate) fn man(command: clap::Command) -> anyhow::Result<Output> {
    let mut page = Vec::new();
    clap_mangen::Man::new(command).render(&mut page)?;
    let page = String::from_utf8(page)?;
    Ok(Output::new(json!({ "section": 1, "roff": page }), page))
}
