//! The composition root: resolves each command's settings (flags over file over
//! defaults), builds the adapters the command needs — the only place that does —,
//! calls the core, and prints its report. `check` resolves every section and prints
//! the resolved settings by serializing them.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::bootstrap::settings::Settings as BootstrapSettings;
use crate::bootstrap::BootstrapError;
use crate::cli::{CheckCommand, Cli, Command, OutputFormat};
use crate::config::layer::Layered;
use crate::config::{ConfigError, Loaded};
use crate::daemon::jobs::{AuthOutcome, EcrOutcome, GcMode, GcOutcome, JobError, Jobs};
use crate::daemon::settings::{DaemonSettings, JobKind};
use crate::daemon::{Config as DaemonConfig, DaemonDeps, DaemonError, Reloader};
use crate::ecr_prune::settings::Settings as EcrSettings;
use crate::error::Error;
use crate::exit::Status;
use crate::image_gc::{GcError, GcSettings};
use crate::ports::Clock as _;
use crate::shutdown::Signals;

/// Where the adapters connect and where the config came from: the global flags the
/// composition root needs (logging was set up by `main`).
#[derive(Debug, Clone)]
struct Endpoints {
    region: Option<String>,
    docker_host: Option<String>,
    /// `--config` as given (the daemon re-reads it on SIGHUP).
    config_path: Option<PathBuf>,
}

impl Endpoints {
    fn from_cli(cli: &Cli) -> Self {
        Self {
            region: cli.region.clone(),
            docker_host: cli.docker_host.clone(),
            config_path: cli.config.clone(),
        }
    }
}

/// Run the command the user asked for. `signals` are the daemon's (installed by
/// `main`, for the daemon only).
pub async fn run(cli: Cli, loaded: Loaded, signals: Option<Signals>) -> Result<Status, Error> {
    let globals = Endpoints::from_cli(&cli);
    let text = &loaded.text;
    let file = &loaded.file;
    match &cli.command {
        Command::Bootstrap(cmd) => {
            let settings =
                BootstrapSettings::resolve(Layered::new(&cmd.options, &file.bootstrap, text))
                    .map_err(|e| loaded.invalid(e))?;
            let report =
                bootstrap(&globals, &settings, cmd.dry_run, &CancellationToken::new()).await?;
            let mut out = std::io::stdout().lock();
            match cmd.output {
                OutputFormat::Json => report.write_json(&mut out)?,
                OutputFormat::Text => report.write_text(&mut out)?,
            }
            Ok(Status::Ok)
        }
        Command::Gc(cmd) => {
            let mut settings = GcSettings::resolve(Layered::new(&cmd.options, &file.gc, text))
                .map_err(|e| loaded.invalid(e))?;
            settings.dry_run = cmd.dry_run;
            let report = gc(&globals, &settings, None, &CancellationToken::new()).await?;
            let mut out = std::io::stdout().lock();
            match cmd.output {
                OutputFormat::Json => report.write_json(&mut out)?,
                OutputFormat::Text => report.write_text(&mut out)?,
            }
            out.flush()?;
            // The gate's answer first: a CI hook asks "is there room?".
            Ok(if report.free_goal_missed() {
                Status::GoalNotReached
            } else if report.failed() {
                Status::PartialFailure
            } else {
                Status::Ok
            })
        }
        Command::EcrPrune(cmd) => {
            let settings = EcrSettings::resolve(Layered::new(&cmd.options, &file.ecr, text))
                .map_err(|e| loaded.invalid(e))?;
            let report = ecr_prune(&globals, &settings, &CancellationToken::new()).await?;
            let mut out = std::io::stdout().lock();
            match cmd.output {
                OutputFormat::Json => report.write_json(&mut out)?,
                OutputFormat::Text => report.write_text(&mut out)?,
            }
            Ok(if report.failed() {
                Status::PartialFailure
            } else {
                Status::Ok
            })
        }
        Command::EcrUsage(cmd) => {
            let mut settings =
                EcrSettings::resolve(Layered::new(&cmd.usage_options(), &file.ecr, text))
                    .map_err(|e| loaded.invalid(e))?;
            // What this account runs, not what other files say.
            settings.usage_file.clear();
            let images = ecr_usage(&globals, &settings, &cmd.output).await?;
            tracing::info!(images, output = %cmd.output.display(), "usage written");
            Ok(Status::Ok)
        }
        Command::Daemon(_) => {
            let signals = signals
                .map_or_else(crate::shutdown::install, Ok)
                .map_err(DaemonError::Signals)?;
            Ok(daemon(&globals, &loaded, signals).await?)
        }
        Command::Check(cmd) => check(&loaded, cmd),
    }
}

/// Bootstrap on AWS: the adapters are built only when a source needs them (so a
/// `--cluster`-only run never waits for IMDS), within the `--timeout` budget.
async fn bootstrap(
    globals: &Endpoints,
    settings: &BootstrapSettings,
    dry_run: bool,
    cancel: &CancellationToken,
) -> Result<crate::bootstrap::Report, BootstrapError> {
    use crate::adapters::aws::secrets::{AwsSecrets, NotConnected};
    let deadline = Instant::now() + settings.timeout;
    if !settings.needs_aws() {
        let none = NotConnected;
        return crate::bootstrap::run(settings, dry_run, &none, &none, deadline, cancel).await;
    }
    crate::adapters::aws::check_ca_certificates().map_err(BootstrapError::Tls)?;
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

/// One gc pass on this host's engine (the negotiated API version) and filesystem,
/// planned for the system clock's `now`.
async fn gc(
    globals: &Endpoints,
    settings: &GcSettings,
    last_use: Option<crate::daemon::jobs::LastUse>,
    cancel: &CancellationToken,
) -> Result<crate::image_gc::Report, GcError> {
    use crate::adapters::bollard::{check_host, resolve_host, BollardEngine};
    let host = resolve_host(globals.docker_host.as_deref());
    let source = if globals.docker_host.is_some() {
        "--docker-host"
    } else {
        "DOCKER_HOST"
    };
    check_host(&host, source).map_err(GcError::Host)?;
    let docker = BollardEngine::connect_to(host)
        .await
        .map_err(GcError::Connect)?;
    let now = crate::adapters::clock::SystemClock.now();
    crate::image_gc::run_with_last_use(
        settings,
        &docker,
        &crate::adapters::statvfs::Statvfs,
        now,
        last_use,
        cancel,
    )
    .await
}

/// The caller's own clients (the pruner's region) and one labelled set per other usage
/// source: this account in each other `--usage-region`, and each `--usage-role`
/// (assumed once, in the pruner's region) in this region and each `--usage-region`.
/// ECS, EventBridge, Scheduler and Lambda are regional: a task in us-west-2 may run an
/// image of this registry by its full URI, and only a scan of us-west-2 sees it.
async fn usage_clients(
    globals: &Endpoints,
    settings: &EcrSettings,
) -> Result<
    (
        crate::adapters::aws::ecr::Clients,
        Vec<(String, crate::adapters::aws::ecr::Clients)>,
    ),
    crate::ecr_prune::EcrError,
> {
    use crate::adapters::aws::ecr::clients_for;
    crate::adapters::aws::check_ca_certificates().map_err(crate::ecr_prune::EcrError::Tls)?;
    let sdk = crate::adapters::aws::sdk_config(globals.region.as_deref()).await;
    let own = clients_for(&sdk);
    let home = sdk.region().map(|r| r.as_ref().to_owned());
    let mut regions: Vec<&str> = Vec::new();
    for r in &settings.usage_region {
        if home.as_deref() != Some(r.as_str()) && !regions.contains(&r.as_str()) {
            regions.push(r);
        }
    }
    let mut sources = Vec::new();
    for region in &regions {
        sources.push((
            format!("region {region}"),
            clients_for(&crate::adapters::aws::in_region(&sdk, region)),
        ));
    }
    for role in &settings.usage_role {
        let assumed = crate::adapters::aws::assume_role(&sdk, role)
            .await
            .map_err(|error| crate::ecr_prune::EcrError::UsageRole {
                role: role.clone(),
                error,
            })?;
        let label = format!(
            "account {} (role {role})",
            crate::ecr_prune::settings::role_account(role)
        );
        for region in &regions {
            sources.push((
                format!("{label} in region {region}"),
                clients_for(&crate::adapters::aws::in_region(&assumed, region)),
            ));
        }
        sources.push((label, clients_for(&assumed)));
    }
    Ok((own, sources))
}

/// The usage sources of the caller's account and of each assumed role.
fn usage_sources<'a>(
    own: &'a crate::adapters::aws::ecr::Clients,
    roles: &'a [(String, crate::adapters::aws::ecr::Clients)],
) -> Vec<crate::ecr_prune::usage::UsageSource<'a>> {
    let source = |label: &'a str, c: &'a crate::adapters::aws::ecr::Clients| {
        crate::ecr_prune::usage::UsageSource {
            label,
            ecs: c.ecs.as_ref(),
            schedules: c.schedules.as_ref(),
            lambda: c.lambda.as_ref(),
        }
    };
    std::iter::once(source("", own))
        .chain(roles.iter().map(|(label, c)| source(label, c)))
        .collect()
}

/// One ecr-prune pass on AWS, planned for the system clock's `now`.
async fn ecr_prune(
    globals: &Endpoints,
    settings: &EcrSettings,
    cancel: &CancellationToken,
) -> Result<crate::ecr_prune::report::Report, crate::ecr_prune::EcrError> {
    let (own, roles) = usage_clients(globals, settings).await?;
    let sources = usage_sources(&own, &roles);
    let now = crate::adapters::clock::SystemClock.now();
    crate::ecr_prune::run(settings, own.ecr.as_ref(), &sources, now, cancel).await
}

/// `shipshape ecr-usage`: what this account (and its `--usage-role`s) can start next,
/// written to `output` as a usage file for `ecr-prune --usage-file`.
async fn ecr_usage(
    globals: &Endpoints,
    settings: &EcrSettings,
    output: &std::path::Path,
) -> Result<usize, crate::ecr_prune::EcrError> {
    let (own, roles) = usage_clients(globals, settings).await?;
    let sources = usage_sources(&own, &roles);
    let now = crate::adapters::clock::SystemClock.now();
    let usage = crate::ecr_prune::read_usage(settings, &sources, now).await?;
    let account = match own.ecr.caller_arn().await {
        Ok(arn) => arn.split(':').nth(4).map(str::to_owned),
        Err(e) => {
            tracing::warn!(
                "cannot tell this account ({}); the usage file names none",
                e.brief()
            );
            None
        }
    };
    let file = crate::ecr_prune::usage_file::UsageFile::new(&usage, account, now);
    let mut text = serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)?;
    text.push(b'\n');
    crate::shared::atomic_file::atomic_write(output, &text, 0o644).map_err(|error| {
        crate::ecr_prune::EcrError::WriteUsage {
            path: output.to_owned(),
            error,
        }
    })?;
    Ok(file.images.len())
}

/// `shipshape daemon`: resolve, build the adapters, run the core until SIGTERM.
async fn daemon(
    globals: &Endpoints,
    loaded: &Loaded,
    signals: Signals,
) -> Result<Status, DaemonError> {
    let config = daemon_config(globals, loaded).map_err(|e| DaemonError::Config(e.to_string()))?;
    let docker_host = crate::adapters::bollard::resolve_host(globals.docker_host.as_deref());
    let deps = DaemonDeps {
        docker: Arc::new(
            crate::adapters::bollard::BollardEngine::new(docker_host)
                .with_request_timeout(crate::daemon::events::REQUEST_TIMEOUT),
        ),
        disk: Arc::new(crate::adapters::statvfs::Statvfs),
        clock: Arc::new(crate::adapters::clock::SystemClock),
        reloader: Arc::new(ConfigFileReloader {
            globals: globals.clone(),
        }),
        memory: Arc::new(crate::adapters::memory::CodePages),
    };
    crate::daemon::run(config, deps, signals.shutdown, signals.reloads).await
}

/// The resolved sections of the jobs the daemon schedules; `ecr` and `bootstrap` only
/// when their job is enabled (so a host without `[ecr]` needs no valid `[ecr]`).
#[derive(Debug, Clone)]
struct JobSections {
    gc: GcSettings,
    ecr: Option<EcrSettings>,
    bootstrap: Option<BootstrapSettings>,
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
        .map(|_| {
            BootstrapSettings::resolve(Layered::new(&Default::default(), &file.bootstrap, text))
        })
        .transpose()
        .map_err(|e| loaded.invalid(e))?;
    Ok((JobSections { gc, ecr, bootstrap }, daemon))
}

/// The daemon's settings and its jobs wired for one configuration.
fn daemon_config(globals: &Endpoints, loaded: &Loaded) -> Result<DaemonConfig, ConfigError> {
    let (sections, settings) = resolve_daemon(loaded)?;
    let jobs = Arc::new(CoreJobs {
        globals: globals.clone(),
        state: settings.state.clone(),
        sections,
    });
    Ok(DaemonConfig { settings, jobs })
}

/// Re-reads `--config` (or the default file) on SIGHUP.
struct ConfigFileReloader {
    globals: Endpoints,
}

impl Reloader for ConfigFileReloader {
    fn reload(&self) -> Result<DaemonConfig, DaemonError> {
        let invalid = |e: ConfigError| DaemonError::Config(e.to_string());
        let loaded = crate::config::load(self.globals.config_path.as_deref()).map_err(invalid)?;
        let config = daemon_config(&self.globals, &loaded).map_err(invalid)?;
        tracing::debug!(source = %loaded.source(), "configuration re-read");
        Ok(config)
    }
}

/// The daemon's jobs: each one core pass with its adapters and this configuration's
/// resolved sections.
struct CoreJobs {
    globals: Endpoints,
    sections: JobSections,
    /// The daemon's state file (gc settings carry it; last use comes from memory).
    state: PathBuf,
}

#[async_trait]
impl Jobs for CoreJobs {
    async fn gc(
        &self,
        mode: GcMode,
        last_use: crate::daemon::jobs::LastUse,
        cancel: CancellationToken,
    ) -> Result<GcOutcome, JobError> {
        // Both modes run `[gc]` as resolved, its watermarks included; last use is the
        // daemon's in-memory record, never its (possibly stale) state file.
        let _ = mode;
        let mut settings = self.sections.gc.clone();
        settings.state.clone_from(&self.state);
        let report = gc(&self.globals, &settings, Some(last_use), &cancel)
            .await
            .map_err(JobError::failed)?;
        let s = crate::image_gc::GcSummary::from_report(&report);
        Ok(GcOutcome {
            images_deleted: s.images_deleted,
            containers_deleted: s.containers_deleted,
            volumes_deleted: s.volumes_deleted,
            bytes_reclaimed: s.bytes_reclaimed,
            disk_usage_ratio: s.disk_usage_ratio,
            container_log_bytes: s.container_log_bytes,
            unaccounted_bytes: s.unaccounted_bytes,
        })
    }

    async fn ecr_prune(
        &self,
        apply: bool,
        cancel: CancellationToken,
    ) -> Result<EcrOutcome, JobError> {
        let mut settings = self
            .sections
            .ecr
            .clone()
            .unwrap_or_else(EcrSettings::defaults);
        settings.apply |= apply;
        let s = ecr_prune(&self.globals, &settings, &cancel)
            .await
            .map_err(JobError::failed)?
            .summary();
        Ok(EcrOutcome {
            deleted_per_repository: s.deleted_per_repository,
            partial_failure: s.partial_failure,
        })
    }

    async fn refresh_auth(&self, cancel: CancellationToken) -> Result<AuthOutcome, JobError> {
        let settings = self
            .sections
            .bootstrap
            .clone()
            .unwrap_or_else(BootstrapSettings::defaults);
        let report = bootstrap(&self.globals, &settings, false, &cancel)
            .await
            .map_err(JobError::failed)?;
        Ok(if report.any_changed() {
            AuthOutcome::Changed
        } else {
            AuthOutcome::Unchanged
        })
    }
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
        bootstrap: BootstrapSettings::resolve(Layered::new(
            &Default::default(),
            &file.bootstrap,
            text,
        ))
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

/// `docker-credential-shipshape ACTION` (the binary called by that name): the
/// `[bootstrap]` registry → secret map of the config file (`SHIPSHAPE_CONFIG` or the
/// default path), Secrets Manager connected only when the answer needs it.
pub async fn credential_helper(
    action: &str,
    input: &str,
    loaded: &Loaded,
) -> Result<crate::bootstrap::helper::Answer, Error> {
    use crate::adapters::aws::secrets::{AwsSecrets, NotConnected};
    use crate::bootstrap::helper;
    let settings = BootstrapSettings::resolve(Layered::new(
        &Default::default(),
        &loaded.file.bootstrap,
        &loaded.text,
    ))
    .map_err(|e| loaded.invalid(e))?;
    let deadline = Instant::now() + settings.timeout;
    let cancel = CancellationToken::new();
    if !helper::needs_aws(action, input, &settings) {
        let none = NotConnected;
        return Ok(helper::answer(action, input, &settings, &none, &none, deadline, &cancel).await);
    }
    crate::adapters::aws::check_ca_certificates().map_err(Error::Tls)?;
    let aws = AwsSecrets::connect(None, settings.timeout).await;
    Ok(helper::answer(action, input, &settings, &aws, &aws, deadline, &cancel).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The daemon's jobs run `[gc]` as resolved here, in both modes: the shipped
    /// config gives them max age and watermarks together.
    #[test]
    fn the_shipped_config_gives_the_daemons_gc_both_max_age_and_watermarks() {
        let text = include_str!("../../packaging/shipshape.toml");
        let loaded = crate::config::parse(text, std::path::Path::new("shipshape.toml")).unwrap();
        let (sections, daemon) = resolve_daemon(&loaded).unwrap();
        assert_eq!(
            sections.gc.max_age,
            Some(std::time::Duration::from_secs(86_400))
        );
        assert!(sections.gc.disk.is_some());
        assert!(daemon.job(JobKind::Gc).is_some());
    }
}
