//! Arguments of `pyro env pull` and `pyro env template`.

use clap::{Args, Subcommand};
use pyro_core::limits as L;

use crate::cli::JsonArg;

#[derive(Debug, Args)]
pub struct EnvPullArgs {
    /// Environment name, e.g. debian:12 (see `pyro env list`).
    pub environment: String,
    /// Install the environment artifact at this image reference (REGISTRY/REPOSITORY:TAG or @sha256:DIGEST).
    #[arg(long, value_name = "REF")]
    pub registry: Option<String>,
    /// Do not build the default shape's template (it is then built on first use).
    #[arg(long)]
    pub no_template: bool,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct EnvPushArgs {
    /// Installed environment to upload, e.g. debian:12.
    pub environment: String,
    /// Where to: REGISTRY/REPOSITORY:TAG.
    pub reference: String,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct EnvImportArgs {
    /// Image reference (e.g. python:3.12-slim, REGISTRY/REPO:TAG, REPO@sha256:DIGEST), or the path of a `docker save` / OCI-layout tarball.
    pub image: String,
    /// Name of the new environment (lowercase letters, digits, `.`, `-`, `:`).
    #[arg(long)]
    pub name: String,
    /// Do not build the default shape's template (it is then built on first use).
    #[arg(long)]
    pub no_template: bool,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum TemplateCmd {
    /// Build the template of an environment for a machine shape (rebuilt only when stale, or with --force).
    Build(TemplateBuildArgs),
    /// List the templates in the cache and whether each is current.
    List(JsonArg),
    /// Delete stale and damaged templates (--all: every template).
    Prune(TemplatePruneArgs),
}

#[derive(Debug, Args)]
pub struct TemplateBuildArgs {
    /// Environment name, e.g. debian:12.
    pub environment: String,
    /// Number of vCPUs.
    #[arg(long, default_value_t = L::VCPUS.default)]
    pub vcpu_count: u8,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = L::MEM_MIB.default)]
    pub mem_mib: u32,
    /// Size of the writable disk in MiB.
    #[arg(long, default_value_t = L::DISK_MIB.default)]
    pub disk_mib: u64,
    /// Rebuild even if a current template exists.
    #[arg(long)]
    pub force: bool,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TemplatePruneArgs {
    /// Delete every template, current ones too.
    #[arg(long)]
    pub all: bool,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}
