//! Commands compiled out of a build (`cargo install --path keymgr-cli --no-default-features
//! --features env`, say) stay on the command line and say which cargo feature builds them,
//! instead of clap's bare "unrecognized subcommand".

use crate::context::{Exit, Refusal};

/// The keymgr-cli cargo features that add commands (see keymgr-cli's README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Feature {
    /// `evm sign-tx`, `evm sign-authorization`.
    EvmTx,
    /// `evm sign-typed-data`.
    EvmEip712,
    /// `encrypt`, `decrypt`.
    Envelope,
}

impl Feature {
    /// Every feature that adds commands.
    #[cfg(test)]
    pub(crate) const ALL: [Feature; 3] = [Feature::EvmTx, Feature::EvmEip712, Feature::Envelope];

    /// The feature's name in keymgr-cli's Cargo.toml.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Feature::EvmTx => "evm-tx",
            Feature::EvmEip712 => "evm-eip712",
            Feature::Envelope => "envelope",
        }
    }

    /// Whether this build has the feature.
    pub(crate) const fn built(self) -> bool {
        match self {
            Feature::EvmTx => cfg!(feature = "evm-tx"),
            Feature::EvmEip712 => cfg!(feature = "evm-eip712"),
            Feature::Envelope => cfg!(feature = "envelope"),
        }
    }

    /// The refusal for `keymgr COMMAND` in a build without this feature: a usage error
    /// (exit 2) naming the feature and how to get it.
    pub(crate) fn not_built(self, command: &str) -> Refusal {
        let name = self.name();
        Refusal {
            kind: "usage",
            exit: Exit::Usage,
            message: format!(
                "`keymgr {command}` is not in this build of keymgr: it needs keymgr-cli's \
                 `{name}` cargo feature. Install with the default features (`cargo install \
                 --path keymgr-cli`) or add `--features {name}`"
            ),
        }
    }
}

/// The arguments of a command compiled out of this build, taken as given (it is refused
/// before they are read).
#[cfg(not(feature = "envelope"))]
#[derive(Debug, clap::Args)]
pub(crate) struct NotBuiltArgs {
    /// The command's arguments (this build cannot run it).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    args: Vec<std::ffi::OsString>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_feature_is_a_usage_error_naming_it() {
        for feature in Feature::ALL {
            let r = feature.not_built("evm sign-tx");
            assert_eq!((r.kind, r.exit), ("usage", Exit::Usage));
            assert!(
                r.message
                    .contains(&format!("`{}` cargo feature", feature.name()))
                    && r.message
                        .contains(&format!("--features {}", feature.name()))
                    && r.message.contains("`keymgr evm sign-tx`"),
                "{}",
                r.message
            );
        }
    }

    /// Each feature's name is one keymgr-cli's Cargo.toml declares.
    #[test]
    fn feature_names_are_cargo_features() {
        let manifest = include_str!("../../Cargo.toml");
        for feature in Feature::ALL {
            let line = format!("\n{} = [", feature.name());
            assert!(
                manifest.contains(&line),
                "{} not in Cargo.toml",
                feature.name()
            );
        }
    }
}
