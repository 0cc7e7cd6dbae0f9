//! Arguments for secrets: `workspace create --secret/--secret-file` and
//! `--secret-env` of the commands that run something.

use clap::Args;
use pyro_core::workspace::secrets::{self, SecretSpec};

use crate::output::Failure;

#[derive(Debug, Args)]
pub struct SecretArgs {
    /// A secret NAME=VALUE (repeatable): kept 0600 on the host, never in a record, log, snapshot or fork; commands get it with --secret-env, and every output shows [redacted:NAME] in its place.
    #[arg(long = "secret", value_name = "NAME=VALUE")]
    pub secrets: Vec<String>,
    /// A secret NAME=PATH read from a file on the host (one trailing newline dropped; repeatable).
    #[arg(long = "secret-file", value_name = "NAME=PATH")]
    pub secret_files: Vec<String>,
}

impl SecretArgs {
    /// The secrets asked for (checked by core).
    pub fn specs(&self) -> Result<Vec<SecretSpec>, Failure> {
        let values = self.secrets.iter().map(|s| secrets::parse_spec(s, false));
        let files = self
            .secret_files
            .iter()
            .map(|s| secrets::parse_spec(s, true));
        Ok(values.chain(files).collect::<Result<_, _>>()?)
    }
}

#[derive(Debug, Args)]
pub struct SecretEnvArgs {
    /// Give the command the workspace's secret SECRET as environment variable ENV (default: a variable named SECRET; repeatable).
    #[arg(long = "secret-env", value_name = "SECRET[=ENV]")]
    pub secret_env: Vec<String>,
}
