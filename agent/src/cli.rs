//! Command-line interface: the global options and one argument struct per command.
//!
//! Every flag of `bootstrap`, `gc` and `ecr-prune` is optional here so that the
//! config file can supply it; `config.rs` merges file and flags (flags win) and
//! applies the defaults of SPEC.md.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Default config file path; a missing default file means built-in defaults.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/shipshape/shipshape.toml";

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
    /// Config file (TOML). A missing default file means built-in defaults.
    #[arg(long, global = true, value_name = "PATH")]
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
    Bootstrap(BootstrapArgs),
    /// One GC pass on this host's Docker engine.
    Gc(GcArgs),
    /// Plan (default) or apply pruning of ECR repositories.
    EcrPrune(EcrPruneArgs),
    /// Run scheduled jobs until SIGTERM (systemd Type=notify).
    Daemon(DaemonArgs),
    /// Validate the config file; print the effective config, secrets redacted.
    Check(CheckArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthType {
    Docker,
    Dockercfg,
}

#[derive(Debug, Default, Args)]
pub struct BootstrapArgs {
    /// ecs.config to write [default: /etc/ecs/ecs.config]
    #[arg(long, value_name = "PATH")]
    pub ecs_config: Option<PathBuf>,
    /// ECS cluster name (ECS_CLUSTER).
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,
    /// Extra ecs.config setting; repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Registry credentials from a Secrets Manager secret {"username","password"}; repeatable.
    #[arg(long = "registry-secret", value_name = "REGISTRY=SECRET_ID")]
    pub registry_secret: Vec<String>,
    /// A secret holding a Docker config.json, an ECS docker map or dockercfg map; repeatable.
    #[arg(long = "auth-secret", value_name = "SECRET_ID")]
    pub auth_secret: Vec<String>,
    /// An S3 object: auth JSON, or an ecs.config fragment; repeatable.
    #[arg(long = "from-s3", value_name = "s3://BUCKET/KEY")]
    pub from_s3: Vec<String>,
    /// ECS_ENGINE_AUTH_TYPE to write [default: docker]
    #[arg(long, value_enum, value_name = "TYPE")]
    pub auth_type: Option<AuthType>,
    /// Also write these credentials into a Docker CLI config.json.
    #[arg(long, value_name = "PATH")]
    pub docker_config: Option<PathBuf>,
    /// Total time allowed, retries included [default: 120s]
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Print the resulting file (auth redacted) and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Output format for --dry-run.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Default, Args)]
pub struct GcArgs {
    /// Report decisions, delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Images younger than this (from the later of creation and last use) are kept [default: 1h]
    #[arg(long, value_name = "DURATION")]
    pub min_age: Option<String>,
    /// Keep the newest N images of every repository [default: 0]
    #[arg(long, value_name = "N")]
    pub keep_per_repo: Option<u32>,
    /// Glob on repo:tag, or an image-ID prefix; repeatable.
    #[arg(long, value_name = "PATTERN")]
    pub exclude: Vec<String>,
    /// File of exclude patterns, one a line (docker-gc's format is accepted).
    #[arg(long, value_name = "PATH")]
    pub exclude_file: Option<PathBuf>,
    /// Disk-pressure mode: act only above this usage (percent or size).
    #[arg(long, value_name = "PCT|SIZE", requires = "low_water")]
    pub high_water: Option<String>,
    /// Disk-pressure mode: delete until usage is at or below this.
    #[arg(long, value_name = "PCT|SIZE", requires = "high_water")]
    pub low_water: Option<String>,
    /// Also remove exited/dead containers past the grace period.
    #[arg(long)]
    pub containers: bool,
    /// How long a container must have been finished [default: 1h]
    #[arg(long, value_name = "DURATION")]
    pub container_grace: Option<String>,
    /// Also remove dangling volumes.
    #[arg(long)]
    pub volumes: bool,
    /// Also prune build cache older than min-age.
    #[arg(long)]
    pub build_cache: bool,
    /// Cap on deletions in one run.
    #[arg(long, value_name = "N")]
    pub max_deletions: Option<u32>,
    /// Last-use state file kept by the daemon [default: /var/lib/shipshape/state.json]
    #[arg(long, value_name = "PATH")]
    pub state: Option<PathBuf>,
}

#[derive(Debug, Default, Args)]
pub struct EcrPruneArgs {
    /// Delete (without it, only plan).
    #[arg(long)]
    pub apply: bool,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Repository name or glob; repeatable [default: all repositories]
    #[arg(long, value_name = "NAME|GLOB")]
    pub repository: Vec<String>,
    /// ECR lifecycle-policy JSON file.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Shortcut rule: keep the newest N tagged units.
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Shortcut rule: expire untagged units older than this.
    #[arg(long, value_name = "DURATION")]
    pub expire_untagged_after: Option<String>,
    /// Quota watermark: a number, or `auto` (90% of the Service Quotas value).
    #[arg(long, value_name = "N|auto")]
    pub max_images: Option<String>,
    /// ECS cluster whose running images are protected, or `all`; repeatable [default: all]
    #[arg(long, value_name = "NAME|all")]
    pub protect_ecs_cluster: Vec<String>,
    /// Tags matching this glob are never expired; repeatable.
    #[arg(long, value_name = "PATTERN")]
    pub protect_tag: Vec<String>,
    /// Units younger than this are kept [default: 24h]
    #[arg(long, value_name = "DURATION")]
    pub min_age: Option<String>,
    /// Refuse a repository's plan deleting more than this percent [default: 50]
    #[arg(long, value_name = "P")]
    pub max_delete_percent: Option<u8>,
    /// Override --max-delete-percent.
    #[arg(long)]
    pub force: bool,
    /// Process only shard I of N (repositories split by a stable hash), e.g. 0/4.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// Repositories processed at once [default: 4]
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
}

#[derive(Debug, Default, Args)]
pub struct DaemonArgs {}

#[derive(Debug, Default, Args)]
pub struct CheckArgs {
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
