//! The clap tree only: global options and one struct per command, each flattening its
//! section's options (the same struct serde fills from the file), so every flag has
//! a key of the same name. Values are typed here, at the edge; merging flags over the
//! file and the defaults happens in each section's `resolve`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::bootstrap::settings::BootstrapOptions;
use crate::ecr_prune::settings::EcrOptions;
use crate::image_gc::settings::GcOptions;
use crate::telemetry::{LogFormat, LogLevel};

#[derive(Debug, Parser)]
#[command(
    name = "shipshape",
    version,
    about = "Keeps ECS container instances and CI hosts in good order",
    long_about = "Keeps ECS container instances and CI hosts in good order: writes ecs.config \
                  registry auth, garbage-collects Docker, prunes ECR, and runs all of it as a \
                  systemd daemon."
)]
pub struct Cli {
    #[arg(long, global = true, value_name = "PATH", help = crate::config::value::with_default(
        "Config file (TOML); a missing default file means built-in defaults",
        crate::config::DEFAULT_CONFIG_PATH))]
    pub config: Option<PathBuf>,

    /// Log level.
    #[arg(long, global = true, value_enum, value_name = "LEVEL")]
    pub log_level: Option<LogLevel>,

    /// Log format on stderr (journald is used when JOURNAL_STREAM says it is attached).
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// AWS region (else from the environment, profile or IMDS).
    #[arg(long, global = true, value_name = "REGION")]
    pub region: Option<String>,

    /// Docker Engine address (else DOCKER_HOST, else unix:///var/run/docker.sock).
    #[arg(long, global = true, value_name = "URL")]
    pub docker_host: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write ecs.config (and optionally a Docker config.json) with registry auth.
    Bootstrap(BootstrapCommand),
    /// One GC pass on this host's Docker engine.
    Gc(GcCommand),
    /// Plan (default) or apply pruning of ECR repositories.
    EcrPrune(EcrPruneCommand),
    /// Write what this account's ECS, EventBridge, Scheduler and Lambda can start next,
    /// for `ecr-prune --usage-file` in the registry account.
    EcrUsage(EcrUsageCommand),
    /// Run scheduled jobs until SIGTERM (systemd Type=notify).
    Daemon(DaemonCommand),
    /// Validate the config file; print the effective config, secrets redacted.
    Check(CheckCommand),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    #[default]
    Text,
    Json,
}

/// `bootstrap`: the `[bootstrap]` options plus what only the command line says.
#[derive(Debug, Default, Args)]
pub struct BootstrapCommand {
    #[command(flatten)]
    pub options: BootstrapOptions,
    /// Print the resulting file (auth redacted) and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Output format for --dry-run.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// `gc`: the `[gc]` options plus what only the command line says.
#[derive(Debug, Default, Args)]
pub struct GcCommand {
    /// Report decisions, delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    #[command(flatten)]
    pub options: GcOptions,
}

/// `ecr-prune`: the `[ecr]` options plus the output format.
#[derive(Debug, Default, Args)]
pub struct EcrPruneCommand {
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    #[command(flatten)]
    pub options: EcrOptions,
}

/// `ecr-usage`: where to write, and the `[ecr]` options that decide what is in use.
#[derive(Debug, Default, Args)]
pub struct EcrUsageCommand {
    /// The usage file to write (JSON, replaced atomically).
    #[arg(long, value_name = "FILE")]
    pub output: std::path::PathBuf,
    /// ECS cluster whose usage counts, or `all` (default); repeatable.
    #[arg(long, value_name = "NAME|all")]
    pub protect_ecs_cluster: Vec<String>,
    /// Newest ACTIVE task definition revisions per family in use, and newest published
    /// versions per Lambda function (default 5).
    #[arg(long, value_name = "N")]
    pub keep_task_definitions: Option<u32>,
    /// IAM role ARN of another account to include; repeatable, or comma-separated.
    #[arg(long, value_name = "ARN", value_delimiter = ',')]
    pub usage_role: Vec<String>,
    /// Another region to include (this account's and each role's), besides this one;
    /// repeatable, or comma-separated.
    #[arg(long, value_name = "REGION", value_delimiter = ',')]
    pub usage_region: Vec<String>,
}

impl EcrUsageCommand {
    /// These flags as `[ecr]` options (the file's `[ecr]` fills the rest).
    pub fn usage_options(&self) -> EcrOptions {
        EcrOptions {
            protect_ecs_cluster: self.protect_ecs_cluster.clone(),
            keep_task_definitions: self.keep_task_definitions,
            usage_role: self.usage_role.clone(),
            usage_region: self.usage_region.clone(),
            ..EcrOptions::default()
        }
    }
}

#[derive(Debug, Default, Args)]
pub struct DaemonCommand {}

#[derive(Debug, Default, Args)]
pub struct CheckCommand {
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
