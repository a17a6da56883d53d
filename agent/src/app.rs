//! Dispatch: from a parsed command line and the raw config to the command's `run`.
//! Also the `check` command, which validates every section at once.

use std::io::Write;
use std::path::PathBuf;

use crate::cli::{CheckArgs, Cli, Command, LogFormat, LogLevel, OutputFormat};
use crate::config::{self, ConfigSource, RawConfig};
use crate::error::{Error, Status};

/// Options every command shares.
#[derive(Debug, Clone)]
pub struct Globals {
    pub region: Option<String>,
    pub docker_host: Option<String>,
    /// `--config` as given (the daemon re-reads it on SIGHUP).
    pub config_path: Option<PathBuf>,
    pub config_source: ConfigSource,
    /// `--log-level`/`--log-format` (the daemon sets up its own logging: journald or stderr).
    pub log_level: LogLevel,
    pub log_format: LogFormat,
}

impl Globals {
    /// Globals for library callers and tests: defaults everywhere.
    pub fn defaults() -> Self {
        Self {
            region: None,
            docker_host: None,
            config_path: None,
            config_source: ConfigSource::Defaults,
            log_level: LogLevel::Info,
            log_format: LogFormat::Text,
        }
    }

    pub fn from_cli(cli: &Cli, config_source: ConfigSource) -> Self {
        Self {
            region: cli.region.clone(),
            docker_host: cli.docker_host.clone(),
            config_path: cli.config.clone(),
            config_source,
            log_level: cli.log_level.unwrap_or(LogLevel::Info),
            log_format: cli.log_format.unwrap_or(LogFormat::Text),
        }
    }
}

/// Run the command the user asked for.
pub async fn run(cli: Cli, raw: RawConfig, source: ConfigSource) -> Result<Status, Error> {
    let globals = Globals::from_cli(&cli, source);
    match &cli.command {
        Command::Bootstrap(args) => {
            Ok(crate::bootstrap::run(&globals, &raw.bootstrap, args).await?)
        }
        Command::Gc(args) => Ok(crate::image_gc::cli_entry(&globals, &raw.gc, args).await?),
        Command::EcrPrune(args) => Ok(crate::ecr_prune::run(&globals, &raw.ecr, args).await?),
        Command::Daemon(_) => Ok(crate::daemon::run(&globals, raw).await?),
        Command::Check(args) => check(&globals, &raw, args),
    }
}

/// Validate every section; print the effective config with secrets redacted.
pub fn check(globals: &Globals, raw: &RawConfig, args: &CheckArgs) -> Result<Status, Error> {
    let effective = serde_json::json!({
        "source": match &globals.config_source {
            ConfigSource::Defaults => "built-in defaults".to_owned(),
            ConfigSource::File(p) => p.display().to_string(),
        },
        "bootstrap": crate::bootstrap::effective(&raw.bootstrap)?,
        "gc": crate::image_gc::effective(&raw.gc)?,
        "ecr": crate::ecr_prune::effective(&raw.ecr)?,
        "daemon": crate::daemon::effective(&raw.daemon, &raw.metrics)?,
    });
    let mut out = std::io::stdout().lock();
    match args.output {
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &effective).map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
        OutputFormat::Text => {
            writeln!(
                out,
                "config OK ({})",
                effective["source"].as_str().unwrap_or_default()
            )?;
            let pretty = serde_json::to_string_pretty(&effective).map_err(std::io::Error::from)?;
            writeln!(out, "{pretty}")?;
        }
    }
    Ok(Status::Ok)
}

/// Load the config named on the command line (or the default).
pub fn load_config(cli: &Cli) -> Result<(RawConfig, ConfigSource), Error> {
    Ok(config::load(cli.config.as_deref())?)
}
