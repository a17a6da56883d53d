//! The composition root: resolves each command's settings (flags over file over
//! defaults), builds what the command needs, dispatches, and prints. `check` resolves
//! every section at once and prints the resolved settings by serializing them.

use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::bootstrap::settings::Settings as BootstrapSettings;
use crate::bootstrap::BootstrapError;
use crate::cli::{CheckCommand, Cli, Command, LogFormat, LogLevel, OutputFormat};
use crate::config::layer::Layered;
use crate::config::{ConfigError, Loaded};
use crate::daemon::settings::{DaemonSettings, JobKind};
use crate::daemon::JobSections;
use crate::ecr_prune::settings::Settings as EcrSettings;
use crate::error::Error;
use crate::exit::Status;
use crate::image_gc::GcSettings;

/// Options every command shares.
#[derive(Debug, Clone)]
pub struct Globals {
    pub region: Option<String>,
    pub docker_host: Option<String>,
    /// `--config` as given (the daemon re-reads it on SIGHUP).
    pub config_path: Option<PathBuf>,
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
            log_level: LogLevel::Info,
            log_format: LogFormat::Text,
        }
    }

    pub fn from_cli(cli: &Cli) -> Self {
        Self {
            region: cli.region.clone(),
            docker_host: cli.docker_host.clone(),
            config_path: cli.config.clone(),
            log_level: cli.log_level.unwrap_or(LogLevel::Info),
            log_format: cli.log_format.unwrap_or(LogFormat::Text),
        }
    }
}

/// Run the command the user asked for.
pub async fn run(cli: Cli, loaded: Loaded) -> Result<Status, Error> {
    let globals = Globals::from_cli(&cli);
    let text = &loaded.text;
    let file = &loaded.file;
    match &cli.command {
        Command::Bootstrap(cmd) => {
            let settings = BootstrapSettings::resolve(Layered::new(&cmd.options, &file.bootstrap, text))
                .map_err(|e| loaded.invalid(e))?;
            let report =
                bootstrap(&globals, &settings, cmd.dry_run, &CancellationToken::new()).await?;
            crate::bootstrap::report::render(&report, cmd.output, &mut std::io::stdout().lock())?;
            Ok(Status::Ok)
        }
        Command::Gc(cmd) => {
            let mut settings = GcSettings::resolve(Layered::new(&cmd.options, &file.gc, text))
                .map_err(|e| loaded.invalid(e))?;
            settings.dry_run = cmd.dry_run;
            Ok(crate::image_gc::run(&globals, &settings, cmd.output).await?)
        }
        Command::EcrPrune(cmd) => {
            let settings = EcrSettings::resolve(Layered::new(&cmd.options, &file.ecr, text))
                .map_err(|e| loaded.invalid(e))?;
            Ok(crate::ecr_prune::run(&globals, &settings, cmd.output).await?)
        }
        Command::Daemon(_) => {
            let (sections, settings) = resolve_daemon(&loaded)?;
            let config_path = globals.config_path.clone();
            let reload: crate::daemon::Reload = Box::new(move || {
                let loaded = crate::config::load(config_path.as_deref()).map_err(|e| e.to_string())?;
                resolve_daemon(&loaded).map_err(|e| e.to_string())
            });
            Ok(crate::daemon::run(&globals, sections, settings, reload).await?)
        }
        Command::Check(cmd) => check(&loaded, cmd),
    }
}

/// Bootstrap on AWS: the adapters are built only when a source needs them (so a
/// `--cluster`-only run never waits for IMDS), within the `--timeout` budget.
pub async fn bootstrap(
    globals: &Globals,
    settings: &BootstrapSettings,
    dry_run: bool,
    cancel: &CancellationToken,
) -> Result<crate::bootstrap::Report, BootstrapError> {
    use crate::adapters::secrets::{AwsSecrets, NotConnected};
    let deadline = Instant::now() + settings.timeout;
    if !settings.needs_aws() {
        let none = NotConnected;
        return crate::bootstrap::run(settings, dry_run, &none, &none, deadline, cancel).await;
    }
    let aws = tokio::time::timeout_at(
        deadline,
        AwsSecrets::connect(globals.region.as_deref(), settings.timeout),
    )
    .await
    .map_err(|_| BootstrapError::Timeout {
        source_name: "the AWS configuration (region, credentials)".into(),
        timeout: settings.timeout,
        last: "still loading".into(),
    })?;
    crate::bootstrap::run(settings, dry_run, &aws, &aws, deadline, cancel).await
}

/// Everything the daemon runs with: its own sections and those of the jobs it
/// schedules (so a bad `[gc]` is refused at start or reload, not at 03:00).
fn resolve_daemon(loaded: &Loaded) -> Result<(JobSections, DaemonSettings), ConfigError> {
    let (file, text) = (&loaded.file, &loaded.text);
    let gc = GcSettings::resolve(Layered::new(&Default::default(), &file.gc, text))
        .map_err(|e| loaded.invalid(e))?;
    let daemon = DaemonSettings::resolve(
        &file.daemon,
        &file.metrics,
        gc.disk.map(|d| (d.high, d.low)),
        text,
    )
    .map_err(|e| loaded.invalid(e))?;
    let ecr = daemon
        .job(JobKind::EcrPrune)
        .map(|_| EcrSettings::resolve(Layered::new(&Default::default(), &file.ecr, text)))
        .transpose()
        .map_err(|e| loaded.invalid(e))?;
    let bootstrap = daemon
        .job(JobKind::RefreshAuth)
        .map(|_| BootstrapSettings::resolve(Layered::new(&Default::default(), &file.bootstrap, text)))
        .transpose()
        .map_err(|e| loaded.invalid(e))?;
    Ok((JobSections { gc, ecr, bootstrap }, daemon))
}

/// What `check` prints: every section resolved with no flags.
#[derive(Debug, Serialize)]
struct Effective {
    source: String,
    bootstrap: BootstrapSettings,
    gc: GcSettings,
    ecr: EcrSettings,
    daemon: DaemonSettings,
}

/// Validate every section; print the resolved settings with secrets redacted.
fn check(loaded: &Loaded, cmd: &CheckCommand) -> Result<Status, Error> {
    let (file, text) = (&loaded.file, &loaded.text);
    let effective = Effective {
        source: loaded.source(),
        bootstrap: BootstrapSettings::resolve(Layered::new(&Default::default(), &file.bootstrap, text))
            .map_err(|e| loaded.invalid(e))?,
        gc: GcSettings::resolve(Layered::new(&Default::default(), &file.gc, text))
            .map_err(|e| loaded.invalid(e))?,
        ecr: EcrSettings::resolve(Layered::new(&Default::default(), &file.ecr, text))
            .map_err(|e| loaded.invalid(e))?,
        daemon: resolve_daemon(loaded)?.1,
    };
    let pretty = serde_json::to_string_pretty(&effective).map_err(std::io::Error::from)?;
    let mut out = std::io::stdout().lock();
    if cmd.output == OutputFormat::Text {
        writeln!(out, "config OK ({})", effective.source)?;
    }
    writeln!(out, "{pretty}")?;
    Ok(Status::Ok)
}
