//! lead: moves to app.rs — the daemon's composition: the adapters it runs on, the
//! signals, the `Jobs` port implemented by calling the cores (gc, ecr_prune,
//! bootstrap) with their adapters, and the reload that re-reads the config file.
//!
//! Nothing else in `daemon/` builds an adapter or calls another core.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::jobs::{AuthOutcome, EcrOutcome, GcMode, GcOutcome, JobError, Jobs};
use super::settings::{DaemonSettings, JobKind};
use super::{Config, DaemonDeps, DaemonError, Reloader};
use crate::app::Globals;
use crate::cli::{EcrPruneArgs, GcArgs};
use crate::config::{RawConfig, RawDaemon, RawMetrics};
use crate::error::Status;

// lead: moves to app.rs
/// `shipshape daemon`: build the adapters, install the signal handlers, run the core.
pub async fn run(globals: &Globals, raw: RawConfig) -> Result<Status, DaemonError> {
    let config = configure(globals, raw)?;
    let signals = crate::shutdown::install().map_err(DaemonError::Signals)?;
    let docker_host = crate::adapters::docker::resolve_host(globals.docker_host.as_deref());
    let deps = DaemonDeps {
        docker: Arc::new(crate::adapters::docker_watch::BollardConnector::new(
            docker_host,
        )),
        clock: Arc::new(crate::adapters::clock::SystemClock),
        reloader: Arc::new(ConfigFileReloader {
            globals: globals.clone(),
        }),
    };
    super::run(config, deps, signals.shutdown, signals.reloads).await
}

// lead: moves to app.rs
/// The effective `[daemon]` and `[metrics]` settings as JSON, for `check`.
pub fn effective(
    daemon: &RawDaemon,
    metrics: &RawMetrics,
) -> Result<serde_json::Value, DaemonError> {
    DaemonSettings::from_sections(daemon, metrics).map(|s| s.to_json())
}

// lead: moves to app.rs
/// Validate everything the daemon will use: its own sections and those of the jobs
/// it schedules (so a bad `[gc]` is refused at start or reload, not at 03:00).
pub fn validate(raw: &RawConfig) -> Result<DaemonSettings, DaemonError> {
    let settings = DaemonSettings::from_raw(raw)?;
    crate::image_gc::effective(&raw.gc).map_err(|e| DaemonError::Config(e.to_string()))?;
    if settings.job(JobKind::EcrPrune).is_some() {
        crate::ecr_prune::effective(&raw.ecr).map_err(|e| DaemonError::Config(e.to_string()))?;
    }
    if settings.job(JobKind::RefreshAuth).is_some() {
        crate::bootstrap::effective(&raw.bootstrap)
            .map_err(|e| DaemonError::Config(e.to_string()))?;
    }
    Ok(settings)
}

/// Validated settings and the jobs wired for `raw`.
fn configure(globals: &Globals, raw: RawConfig) -> Result<Config, DaemonError> {
    let settings = validate(&raw)?;
    let jobs = Arc::new(CoreJobs {
        globals: globals.clone(),
        state: settings.state.clone(),
        config: raw,
    });
    Ok(Config { settings, jobs })
}

// lead: moves to app.rs
/// Re-reads `--config` (or the default file) on SIGHUP.
struct ConfigFileReloader {
    globals: Globals,
}

impl Reloader for ConfigFileReloader {
    fn reload(&self) -> Result<Config, DaemonError> {
        let (raw, source) = crate::config::load(self.globals.config_path.as_deref())
            .map_err(|e| DaemonError::Config(e.to_string()))?;
        let config = configure(&self.globals, raw)?;
        tracing::debug!(source = ?source, "configuration re-read");
        Ok(config)
    }
}

// lead: moves to app.rs
/// The jobs, each one core pass with its adapters and this configuration's sections.
struct CoreJobs {
    globals: Globals,
    config: RawConfig,
    /// The daemon's state file: gc reads last use from it.
    state: PathBuf,
}

#[async_trait]
impl Jobs for CoreJobs {
    async fn gc(&self, mode: GcMode, cancel: CancellationToken) -> Result<GcOutcome, JobError> {
        let mut args = GcArgs {
            state: Some(self.state.clone()),
            ..GcArgs::default()
        };
        if mode == GcMode::DiskPressure {
            args.high_water.clone_from(&self.config.gc.high_water);
            args.low_water.clone_from(&self.config.gc.low_water);
        }
        let s = crate::image_gc::run_pass(&self.globals, &self.config.gc, &args, cancel)
            .await
            .map_err(JobError::failed)?;
        Ok(GcOutcome {
            images_deleted: s.images_deleted,
            containers_deleted: s.containers_deleted,
            volumes_deleted: s.volumes_deleted,
            bytes_reclaimed: s.bytes_reclaimed,
            disk_usage_ratio: s.disk_usage_ratio,
        })
    }

    async fn ecr_prune(
        &self,
        apply: bool,
        cancel: CancellationToken,
    ) -> Result<EcrOutcome, JobError> {
        let args = EcrPruneArgs {
            apply,
            ..EcrPruneArgs::default()
        };
        let s = crate::ecr_prune::run_pass(&self.globals, &self.config.ecr, &args, cancel)
            .await
            .map_err(JobError::failed)?;
        Ok(EcrOutcome {
            deleted_per_repository: s.deleted_per_repository,
            partial_failure: s.partial_failure,
        })
    }

    async fn refresh_auth(&self, _cancel: CancellationToken) -> Result<AuthOutcome, JobError> {
        let changed = crate::bootstrap::refresh(&self.globals, &self.config.bootstrap)
            .await
            .map_err(JobError::failed)?;
        Ok(if changed {
            AuthOutcome::Changed
        } else {
            AuthOutcome::Unchanged
        })
    }
}
