//! The bodies of the three jobs and what surrounds every run: the run guard, the
//! `STATUS=` line, metrics, and one log line at start and end with the job's figures.
//!
//! A failing run is logged and counted; the scheduler simply fires it again at its
//! next time. `on_change` runs without a shell, with an empty environment but PATH,
//! so no credential the daemon holds can reach it.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::events::unix_seconds;
use super::metrics::Metrics;
use super::notify::StatusBoard;
use super::scheduler::RunGuard;
use super::settings::{DaemonSettings, JobKind};
use super::state::StateStore;
use crate::app::Globals;
use crate::cli::{EcrPruneArgs, GcArgs};
use crate::config::RawConfig;
use crate::ports::Clock;

/// How long `on_change` may run before it is killed.
const ON_CHANGE_TIMEOUT: Duration = Duration::from_secs(300);
/// PATH given to `on_change` when the daemon itself has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

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
    pub globals: Globals,
    pub config: RawConfig,
    pub settings: DaemonSettings,
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
    ctx.board.job_finished(kind, result.err());
}

async fn gc(ctx: &JobContext, trigger: Trigger) -> Result<(), String> {
    // gc reads last use from the state file: give it what the events said so far.
    if let Err(e) = ctx.store.flush(ctx.clock.now()).await {
        tracing::warn!(error = %e, "cannot save last-use state before GC; GC reads the older file");
    }
    let mut args = GcArgs {
        state: Some(ctx.settings.state.clone()),
        ..GcArgs::default()
    };
    if trigger == Trigger::DiskPressure {
        args.high_water.clone_from(&ctx.config.gc.high_water);
        args.low_water.clone_from(&ctx.config.gc.low_water);
    }
    let summary =
        crate::image_gc::daemon_entry(&ctx.globals, &ctx.config.gc, &args, ctx.shutdown.clone())
            .await
            .map_err(|e| e.to_string())?;
    ctx.metrics.record_gc(&summary);
    tracing::info!(
        job = "gc",
        images_deleted = summary.images_deleted,
        containers_deleted = summary.containers_deleted,
        volumes_deleted = summary.volumes_deleted,
        bytes_reclaimed = summary.bytes_reclaimed,
        disk_usage_ratio = summary.disk_usage_ratio.unwrap_or(f64::NAN),
        "gc pass done"
    );
    Ok(())
}

async fn ecr_prune(ctx: &JobContext) -> Result<(), String> {
    let apply = ctx.settings.job(JobKind::EcrPrune).is_some_and(|j| j.apply);
    let args = EcrPruneArgs {
        apply,
        ..EcrPruneArgs::default()
    };
    let summary =
        crate::ecr_prune::run_pass(&ctx.globals, &ctx.config.ecr, &args, ctx.shutdown.clone())
            .await
            .map_err(|e| e.to_string())?;
    ctx.metrics.record_ecr(&summary);
    for (repository, deleted) in &summary.deleted_per_repository {
        tracing::info!(job = "ecr_prune", repository = %repository, deleted, "ecr images deleted");
    }
    if summary.partial_failure {
        return Err("some repositories failed or were refused; see the log above".to_owned());
    }
    Ok(())
}

async fn refresh_auth(ctx: &JobContext) -> Result<(), String> {
    let changed = crate::bootstrap::refresh(&ctx.globals, &ctx.config.bootstrap)
        .await
        .map_err(|e| e.to_string())?;
    if !changed {
        tracing::info!(job = "refresh_auth", "ecs.config unchanged");
        return Ok(());
    }
    let argv = ctx
        .settings
        .job(JobKind::RefreshAuth)
        .map(|j| j.on_change.clone())
        .unwrap_or_default();
    if argv.is_empty() {
        tracing::info!(
            job = "refresh_auth",
            "ecs.config changed; no on_change command"
        );
        return Ok(());
    }
    tracing::info!(job = "refresh_auth", command = %argv.join(" "), "ecs.config changed; running on_change");
    run_on_change(&argv, ctx.shutdown.clone()).await
}

/// Run `argv` without a shell and with only PATH in its environment.
pub async fn run_on_change(argv: &[String], cancel: CancellationToken) -> Result<(), String> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| "on_change is empty".to_owned())?;
    let path = std::env::var_os("PATH")
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| DEFAULT_PATH.into());
    let child = tokio::process::Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", path)
        .current_dir(PathBuf::from("/"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start on_change command {program:?}: {e}"))?;
    let output = tokio::select! {
        () = cancel.cancelled() => return Err(format!("on_change command {program:?} interrupted by shutdown")),
        r = tokio::time::timeout(ON_CHANGE_TIMEOUT, child.wait_with_output()) => match r {
            Err(_) => return Err(format!("on_change command {program:?} did not finish within {}s and was killed", ON_CHANGE_TIMEOUT.as_secs())),
            Ok(Err(e)) => return Err(format!("on_change command {program:?} failed: {e}")),
            Ok(Ok(o)) => o,
        },
    };
    if output.status.success() {
        tracing::info!(command = %program, "on_change command succeeded");
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().last().unwrap_or("").trim();
        Err(format!(
            "on_change command {program:?} exited with {}{}",
            output.status,
            if last.is_empty() {
                String::new()
            } else {
                format!(": {last}")
            }
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn on_change_gets_no_environment_but_path_and_no_shell() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("env.txt");
        // `sh -c` here is the test's own probe; the daemon passes argv verbatim.
        let argv: Vec<String> = vec!["sh".into(), "-c".into(), format!("env > {}", out.display())];
        std::env::set_var("SHIPSHAPE_TEST_CANARY", "secret-canary-value");
        run_on_change(&argv, CancellationToken::new())
            .await
            .unwrap();
        let env = std::fs::read_to_string(&out).unwrap();
        assert!(!env.contains("secret-canary-value"), "{env}");
        let names: Vec<&str> = env
            .lines()
            .filter_map(|l| l.split('=').next())
            .filter(|n| !["PWD", "SHLVL", "_", "OLDPWD"].contains(n))
            .collect();
        assert_eq!(names, ["PATH"], "{env}");
    }

    #[tokio::test]
    async fn on_change_argv_is_not_interpreted_by_a_shell() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("pwned");
        let argv: Vec<String> = vec!["echo".into(), format!("; touch {}", marker.display())];
        run_on_change(&argv, CancellationToken::new())
            .await
            .unwrap();
        assert!(!marker.exists());
    }

    #[tokio::test]
    async fn failing_on_change_reports_status_and_stderr() {
        let argv: Vec<String> = vec!["sh".into(), "-c".into(), "echo boom >&2; exit 3".into()];
        let err = run_on_change(&argv, CancellationToken::new())
            .await
            .unwrap_err();
        assert!(err.contains("exit status: 3"), "{err}");
        assert!(err.contains("boom"), "{err}");
        let err = run_on_change(&["/nonexistent/cmd".into()], CancellationToken::new())
            .await
            .unwrap_err();
        assert!(err.contains("cannot start"), "{err}");
    }
}
