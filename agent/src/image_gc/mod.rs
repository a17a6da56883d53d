//! `gc`: one garbage-collection pass over this host's Docker engine — images,
//! and on request stopped containers, dangling volumes and build cache.
//! snapshot (one listing each) → pure planner (protection rules, ordering, disk
//! mode) → executor (no force; 404 fine, 409 skipped) → report (table or JSON).
//! `run` is the CLI command; `run_pass` is the same work for the daemon.

pub mod executor;
pub mod planner;
pub mod policy;
pub mod report;
pub mod settings;
pub mod snapshot;

use std::io::Write;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::adapters::clock::SystemClock;
use crate::adapters::docker::DockerClient;
use crate::app::Globals;
use crate::cli::OutputFormat;
use crate::exit::Status;
use crate::ports::docker::{DockerApi, DockerError};
use crate::ports::Clock;

pub use report::Report;
pub use settings::GcSettings;

/// Errors of this command area.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error(
        "{0}; check that dockerd is running and that --docker-host or DOCKER_HOST points to it"
    )]
    Connect(DockerError),
    #[error("{0}")]
    Snapshot(#[from] snapshot::SnapshotError),
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

impl GcError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Connect(_) | Self::Snapshot(_) | Self::Output(_) => crate::exit::EXIT_RUNTIME,
        }
    }
}

/// Run the command: validate, connect, plan, execute (unless `--dry-run`), print.
pub async fn run(
    globals: &Globals,
    settings: &GcSettings,
    output: OutputFormat,
) -> Result<Status, GcError> {
    let client = DockerClient::connect(globals.docker_host.as_deref())
        .await
        .map_err(GcError::Connect)?;
    let report = pass(
        &client,
        settings,
        SystemClock.now(),
        &CancellationToken::new(),
    )
    .await?;
    let mut out = std::io::stdout().lock();
    match output {
        OutputFormat::Json => report.write_json(&mut out)?,
        OutputFormat::Text => report.write_text(&mut out)?,
    }
    out.flush()?;
    Ok(if report.failed() {
        Status::PartialFailure
    } else {
        Status::Ok
    })
}

/// One pass through any `DockerApi`: snapshot, plan, and (unless dry run) execute.
pub async fn pass(
    api: &dyn DockerApi,
    settings: &GcSettings,
    now: DateTime<Utc>,
    cancel: &CancellationToken,
) -> Result<Report, GcError> {
    let calls_before = api.api_calls();
    let options = snapshot::SnapshotOptions {
        require_disk: settings.disk.is_some(),
        container_grace: settings.containers.then_some(settings.container_grace),
        volumes: settings.volumes,
        state_path: Some(settings.state.clone()),
    };
    let snap = snapshot::take(api, &options, now).await?;
    let plan_api_calls = api.api_calls() - calls_before;
    let mut plan = planner::plan(&snap, &settings.policy(), now);
    tracing::debug!(
        images = snap.images.len(),
        containers = snap.containers.len(),
        candidates = plan.deletions().count(),
        api_calls = plan_api_calls,
        "planned"
    );
    let stats = if settings.dry_run {
        planner::apply_estimate(&mut plan);
        None
    } else {
        let exec = executor::ExecOptions {
            concurrency: settings.concurrency,
            root_dir: snap.root_dir.clone(),
            build_cache: settings.build_cache.then_some(settings.min_age),
        };
        let stats = executor::execute(api, &mut plan, &exec, cancel).await;
        tracing::info!(
            images_deleted = stats.images_deleted,
            containers_deleted = stats.containers_deleted,
            volumes_deleted = stats.volumes_deleted,
            reclaimed_bytes = stats.reclaimed_bytes,
            conflicts = stats.conflicts,
            failures = stats.failures,
            "gc pass done"
        );
        Some(stats)
    };
    Ok(Report {
        dry_run: settings.dry_run,
        plan,
        stats,
        disk_before: snap.disk,
        plan_api_calls,
    })
}

/// What one GC pass did, for the daemon's metrics and logs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GcSummary {
    pub images_deleted: u64,
    pub containers_deleted: u64,
    pub volumes_deleted: u64,
    pub bytes_reclaimed: u64,
    /// Usage ratio (0..1) of Docker's filesystem after the pass, when measured.
    pub disk_usage_ratio: Option<f64>,
}

impl GcSummary {
    pub fn from_report(report: &Report) -> Self {
        let stats = report.stats.clone().unwrap_or_default();
        Self {
            images_deleted: stats.images_deleted,
            containers_deleted: stats.containers_deleted,
            volumes_deleted: stats.volumes_deleted,
            bytes_reclaimed: stats.reclaimed_bytes,
            disk_usage_ratio: report
                .disk_after()
                .or(report.disk_before)
                .map(|u| u.bytes_ratio()),
        }
    }
}

/// Daemon entry: one GC pass with `[gc]` settings (and `args` overrides, e.g. disk
/// mode), stopping between deletion chunks when `cancel` fires. Prints nothing.
pub async fn run_pass(
    globals: &Globals,
    settings: &GcSettings,
    cancel: CancellationToken,
) -> Result<GcSummary, GcError> {
    let client = DockerClient::connect(globals.docker_host.as_deref())
        .await
        .map_err(GcError::Connect)?;
    let report = pass(&client, settings, SystemClock.now(), &cancel).await?;
    Ok(GcSummary::from_report(&report))
}
