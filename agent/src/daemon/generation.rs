//! The loops of the configuration in force: one scheduler loop per job and the disk
//! check, started together and stopped together when a reload replaces them. Runs in
//! flight are not interrupted by a reload; the run guards outlive generations, so a
//! job never overlaps itself across one. Shutdown drains the runs, bounded.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::disk;
use super::job_run::{run_job, JobContext, Trigger};
use super::metrics::Metrics;
use super::notify::StatusBoard;
use super::scheduler::{JobGuards, JobLoop, JobRunner};
use super::settings::{DaemonSettings, JobKind};
use super::Config;
use crate::config::value::format_duration;
use crate::last_use::StateStore;
use crate::ports::Clock;

/// What every generation shares: the long-lived pieces of the daemon.
pub struct Shared {
    pub store: StateStore,
    pub metrics: Arc<Metrics>,
    pub board: StatusBoard,
    pub clock: Arc<dyn Clock>,
    /// Process shutdown: stops the loops and is handed to every run.
    pub shutdown: CancellationToken,
    /// Measures Docker's filesystem for the disk check.
    pub disk: Arc<dyn crate::ports::disk::Disk>,
    /// Docker's root dir as the tracker last saw it (for the disk check).
    pub root_dir: watch::Receiver<Option<PathBuf>>,
}

/// The generation in force.
struct Current {
    settings: DaemonSettings,
    /// Stops this generation's loops.
    stop: CancellationToken,
}

/// Starts, replaces and finally drains the generations.
pub struct Generations {
    shared: Shared,
    guards: JobGuards,
    /// Every run of every generation, so shutdown can wait for them.
    runs: TaskTracker,
    current: Option<Current>,
}

impl Generations {
    pub fn new(shared: Shared) -> Self {
        Self {
            shared,
            guards: JobGuards::new(),
            runs: TaskTracker::new(),
            current: None,
        }
    }

    /// Start the loops of `config`, stopping those of the generation before it.
    pub fn start(&mut self, config: Config) {
        if let Some(old) = self.current.take() {
            warn_restart_only(&old.settings, &config.settings);
            old.stop.cancel();
        }
        let stop = self.shared.shutdown.child_token();
        let settings = config.settings.clone();
        let ctx = Arc::new(JobContext {
            settings: config.settings,
            jobs: config.jobs,
            store: self.shared.store.clone(),
            metrics: Arc::clone(&self.shared.metrics),
            board: self.shared.board.clone(),
            clock: Arc::clone(&self.shared.clock),
            shutdown: self.shared.shutdown.clone(),
        });
        self.start_job_loops(&ctx, &stop);
        self.start_disk_check(ctx, &stop);
        self.current = Some(Current { settings, stop });
    }

    fn start_job_loops(&self, ctx: &Arc<JobContext>, stop: &CancellationToken) {
        let runner: JobRunner = {
            let ctx = Arc::clone(ctx);
            Arc::new(move |kind, guard| {
                Box::pin(run_job(Arc::clone(&ctx), kind, Trigger::Schedule, guard))
            })
        };
        // gc can also start from disk pressure, so its series always exist.
        self.shared.metrics.register_job(JobKind::Gc);
        for job in &ctx.settings.jobs {
            self.shared.metrics.register_job(job.kind);
            tracing::info!(job = %job.kind, schedule = %job.expression, jitter = %format_duration(job.jitter), "job scheduled");
            let lp = JobLoop {
                job: job.clone(),
                clock: Arc::clone(&self.shared.clock),
                guards: self.guards.clone(),
                tracker: self.runs.clone(),
                stop: stop.clone(),
                runner: Arc::clone(&runner),
            };
            tokio::spawn(lp.run());
        }
    }

    fn start_disk_check(&self, ctx: Arc<JobContext>, stop: &CancellationToken) {
        if let Some(high) = ctx.settings.high_water {
            tracing::info!(high_water = %high, interval = %format_duration(ctx.settings.disk_check_interval), "disk-pressure GC armed");
        }
        tokio::spawn(disk::pressure_loop(
            ctx,
            Arc::clone(&self.shared.disk),
            self.shared.root_dir.clone(),
            self.guards.clone(),
            self.runs.clone(),
            stop.clone(),
        ));
    }

    /// Stop the loops and wait for the runs in flight, at most the configured
    /// `shutdown_timeout`.
    pub async fn drain(mut self) {
        let timeout = match self.current.take() {
            Some(current) => {
                current.stop.cancel();
                current.settings.shutdown_timeout
            }
            None => super::settings::DEFAULT_SHUTDOWN_TIMEOUT,
        };
        tracing::info!(
            running = self.runs.len(),
            "stopping: waiting for running jobs"
        );
        self.runs.close();
        if tokio::time::timeout(timeout, self.runs.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                timeout = %format_duration(timeout),
                "jobs did not finish in time; exiting anyway"
            );
        }
    }
}

/// Settings a reload cannot change in a running process.
fn warn_restart_only(old: &DaemonSettings, new: &DaemonSettings) {
    if old.state != new.state {
        tracing::warn!(
            key = "daemon.state",
            "changed; takes effect after a restart"
        );
    }
    if old.metrics_listen != new.metrics_listen {
        tracing::warn!(
            key = "metrics.listen",
            "changed; takes effect after a restart"
        );
    }
    if old.reconcile_interval != new.reconcile_interval {
        tracing::warn!(
            key = "daemon.reconcile_interval",
            "changed; takes effect after a restart"
        );
    }
}
