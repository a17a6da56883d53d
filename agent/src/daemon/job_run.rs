//! One run of a job and what surrounds every run: the run guard, the `STATUS=` line,
//! metrics, and one log line at start and end with the job's figures.
//!
//! A failing run is logged and counted; the scheduler simply fires it again at its
//! next time.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::events::unix_seconds;
use super::jobs::{AuthOutcome, GcMode, JobError, Jobs};
use super::metrics::Metrics;
use super::notify::StatusBoard;
use super::on_change::run_on_change;
use super::scheduler::RunGuard;
use super::settings::{DaemonSettings, JobKind};
use crate::last_use::StateStore;
use crate::ports::Clock;

/// Why a run started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Schedule,
    DiskPressure,
}

impl Trigger {
    fn name(self) -> &'static str {
        match self {
            Self::Schedule => "schedule",
            Self::DiskPressure => "disk_pressure",
        }
    }
}

/// What a job run needs; rebuilt on every config reload.
pub struct JobContext {
    pub settings: DaemonSettings,
    pub jobs: Arc<dyn Jobs>,
    pub store: StateStore,
    pub metrics: Arc<Metrics>,
    pub board: StatusBoard,
    pub clock: Arc<dyn Clock>,
    /// Process shutdown: passes stop between deletion chunks.
    pub shutdown: CancellationToken,
}

/// Run `kind` once, holding `guard` throughout.
pub async fn run_job(ctx: Arc<JobContext>, kind: JobKind, trigger: Trigger, guard: RunGuard) {
    let _guard = guard;
    ctx.board.job_started(kind);
    ctx.metrics.job_started(kind);
    tracing::info!(job = %kind, trigger = trigger.name(), "job started");
    let started = tokio::time::Instant::now();
    let result = match kind {
        JobKind::Gc => gc(&ctx, trigger).await,
        JobKind::EcrPrune => ecr_prune(&ctx).await,
        JobKind::RefreshAuth => refresh_auth(&ctx).await,
    };
    let took = started.elapsed();
    let now = unix_seconds(ctx.clock.now());
    ctx.metrics.job_finished(kind, result.is_ok(), took, now);
    match &result {
        Ok(()) => tracing::info!(job = %kind, seconds = took.as_secs_f64(), "job finished"),
        Err(e) => tracing::error!(
            job = %kind,
            seconds = took.as_secs_f64(),
            error = %e,
            "job failed; it runs again at its next time"
        ),
    }
    ctx.board
        .job_finished(kind, result.err().map(|e| e.to_string()));
}

async fn gc(ctx: &JobContext, trigger: Trigger) -> Result<(), JobError> {
    // gc plans with the in-memory record, so a state file that could not be saved (full
    // disk: exactly when gc runs) never makes a recent use look old. Saving is still tried.
    match ctx.store.flush(ctx.clock.now()).await {
        Ok(true) => ctx.board.state_saved(Ok(())),
        Ok(false) => {}
        Err(e) => {
            ctx.metrics.state_save_failed();
            ctx.board.state_saved(Err(e.to_string()));
            tracing::warn!(error = %e, "cannot save last-use state before GC (retried); GC uses the in-memory record");
        }
    }
    let last_use = ctx.store.record();
    let mode = match trigger {
        Trigger::Schedule => GcMode::Configured,
        Trigger::DiskPressure => GcMode::DiskPressure,
    };
    let outcome = ctx.jobs.gc(mode, last_use, ctx.shutdown.clone()).await?;
    // The pass's one summary line ("gc pass done") is gc's own.
    ctx.metrics.record_gc(&outcome);
    Ok(())
}

async fn ecr_prune(ctx: &JobContext) -> Result<(), JobError> {
    let apply = ctx.settings.job(JobKind::EcrPrune).is_some_and(|j| j.apply);
    let outcome = ctx.jobs.ecr_prune(apply, ctx.shutdown.clone()).await?;
    ctx.metrics.record_ecr(&outcome);
    for (repository, deleted) in &outcome.deleted_per_repository {
        tracing::info!(job = "ecr_prune", repository = %repository, deleted, "ecr images deleted");
    }
    if outcome.partial_failure {
        return Err(JobError::SomeRepositoriesFailed);
    }
    Ok(())
}

async fn refresh_auth(ctx: &JobContext) -> Result<(), JobError> {
    let changed = ctx.jobs.refresh_auth(ctx.shutdown.clone()).await? == AuthOutcome::Changed;
    let job = ctx.settings.job(JobKind::RefreshAuth);
    if job.is_some_and(|j| j.restart_ecs_on_change) {
        request_ecs_restart(&ctx.settings, changed)?;
    }
    if !changed {
        tracing::info!(job = "refresh_auth", "ecs.config unchanged");
        return Ok(());
    }
    let argv = job.map(|j| j.on_change.clone()).unwrap_or_default();
    if argv.is_empty() {
        tracing::info!(
            job = "refresh_auth",
            "ecs.config changed; no on_change command"
        );
        return Ok(());
    }
    tracing::info!(job = "refresh_auth", command = %argv.join(" "), "ecs.config changed; running on_change");
    Ok(run_on_change(&argv, ctx.shutdown.clone()).await?)
}

/// The file shipshape-ecs-restart.path watches, next to the state file.
pub(crate) fn ecs_restart_request_path(settings: &DaemonSettings) -> std::path::PathBuf {
    settings
        .state
        .parent()
        .unwrap_or_else(|| std::path::Path::new("."))
        .join("ecs-restart")
}

/// Asks PID 1 (through shipshape-ecs-restart.path) to restart `ecs` when ecs.config
/// `changed`, or else to start it if the boot-time bootstrap failed: the sandbox has no
/// bus, so a file is the whole interface.
fn request_ecs_restart(settings: &DaemonSettings, changed: bool) -> Result<(), JobError> {
    let path = ecs_restart_request_path(settings);
    let what = if changed { "changed\n" } else { "refreshed\n" };
    std::fs::write(&path, what).map_err(|source| JobError::RestartRequest {
        path: path.clone(),
        source,
    })?;
    tracing::info!(job = "refresh_auth", path = %path.display(), request = what.trim_end(), "ecs restart requested");
    Ok(())
}
