//! `shipshape daemon`: the systemd service (Type=notify) that schedules gc,
//! ecr_prune and refresh_auth by cron, runs GC under disk pressure, tracks image
//! last use from Docker events, and serves Prometheus metrics.
//!
//! Lifecycle: validate config → open state → bind metrics → start the Docker
//! tracker → READY=1 → schedule; SIGHUP reloads (keeping the old config if the new
//! one is invalid); SIGTERM/SIGINT drain running jobs (bounded), save state, exit 0.

pub mod disk;
pub mod events;
pub mod jobs;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod scheduler;
pub mod settings;
pub mod state;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::adapters::clock::SystemClock;
use crate::app::Globals;
use crate::config::{RawConfig, RawDaemon, RawMetrics};
use crate::error::Status;
use crate::ports::Clock;

use self::jobs::{run_job, JobContext, Trigger};
use self::scheduler::{JobGuards, JobLoop, JobRunner};
use self::settings::{DaemonSettings, JobKind};
use self::state::StateStore;

/// How long READY waits for the first Docker connection attempt to conclude.
const READY_WAIT: Duration = Duration::from_secs(10);
/// Bound on stopping the background tasks once jobs are drained.
const BACKGROUND_STOP: Duration = Duration::from_secs(5);

/// Errors of the daemon.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("invalid {key}: {message}")]
    Invalid { key: String, message: String },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot set up logging: {0}")]
    Logging(String),
    #[error("{0}; fix or remove the file, or set [daemon] state to another path")]
    State(#[from] crate::last_use::StateError),
    #[error("cannot listen for metrics on {addr}: {source}; change [metrics] listen")]
    Metrics {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

impl DaemonError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Invalid { .. } | Self::Config(_) | Self::Logging(_) | Self::Metrics { .. } => {
                crate::error::EXIT_USAGE
            }
            Self::State(_) | Self::Signals(_) => crate::error::EXIT_RUNTIME,
        }
    }
}

/// The effective `[daemon]` and `[metrics]` settings as JSON, for `check`.
pub fn effective(
    daemon: &RawDaemon,
    metrics: &RawMetrics,
) -> Result<serde_json::Value, DaemonError> {
    DaemonSettings::from_sections(daemon, metrics).map(|s| s.to_json())
}

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

/// The long-lived pieces shared by every config generation.
struct Core {
    globals: Globals,
    store: StateStore,
    metrics: Arc<metrics::Metrics>,
    board: notify::StatusBoard,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
    guards: JobGuards,
    jobs: TaskTracker,
    root_dir: watch::Receiver<Option<std::path::PathBuf>>,
}

impl Core {
    /// Start the scheduler loops and the disk check for one config; the returned
    /// token stops them (runs in flight continue).
    fn start_generation(&self, raw: RawConfig, settings: DaemonSettings) -> CancellationToken {
        let stop = self.shutdown.child_token();
        let ctx = Arc::new(JobContext {
            globals: self.globals.clone(),
            config: raw,
            settings,
            store: self.store.clone(),
            metrics: Arc::clone(&self.metrics),
            board: self.board.clone(),
            clock: Arc::clone(&self.clock),
            shutdown: self.shutdown.clone(),
        });
        let runner: JobRunner = {
            let ctx = Arc::clone(&ctx);
            Arc::new(move |kind, guard| {
                Box::pin(run_job(Arc::clone(&ctx), kind, Trigger::Schedule, guard))
            })
        };
        // gc can also start from disk pressure, so its series always exist.
        self.metrics.register_job(JobKind::Gc);
        for job in &ctx.settings.jobs {
            self.metrics.register_job(job.kind);
            tracing::info!(job = %job.kind, schedule = %job.expression, jitter = %crate::units::format_duration(job.jitter), "job scheduled");
            let lp = JobLoop {
                job: job.clone(),
                clock: Arc::clone(&self.clock),
                guards: self.guards.clone(),
                tracker: self.jobs.clone(),
                stop: stop.clone(),
                runner: Arc::clone(&runner),
            };
            tokio::spawn(lp.run());
        }
        if let Some(high) = ctx.settings.high_water {
            tracing::info!(high_water = %high, interval = %crate::units::format_duration(ctx.settings.disk_check_interval), "disk-pressure GC armed");
        }
        tokio::spawn(disk::pressure_loop(
            Arc::clone(&ctx),
            Arc::new(crate::adapters::statvfs::Statvfs),
            self.root_dir.clone(),
            self.guards.clone(),
            self.jobs.clone(),
            stop.clone(),
        ));
        stop
    }
}

/// Run until SIGTERM/SIGINT.
pub async fn run(globals: &Globals, raw: RawConfig) -> Result<Status, DaemonError> {
    let (level, format) = (globals.log_level, globals.log_format);
    let sink = logging::init(level, format).map_err(DaemonError::Logging)?;
    let settings = validate(&raw)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = StateStore::open(&settings.state, clock.now())?;
    let metrics = Arc::new(metrics::Metrics::new());
    metrics
        .tracked_images
        .set(i64::try_from(store.len()).unwrap_or(i64::MAX));
    let listener = match settings.metrics_listen {
        Some(addr) => Some(
            metrics::bind(addr)
                .await
                .map_err(|source| DaemonError::Metrics { addr, source })?,
        ),
        None => None,
    };
    let shutdown = CancellationToken::new();
    crate::shutdown::cancel_on_signals(shutdown.clone()).map_err(DaemonError::Signals)?;
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(DaemonError::Signals)?;
    tracing::info!(
        logs = sink,
        state = %settings.state.display(),
        images = store.len(),
        "shipshape daemon starting"
    );

    let background = TaskTracker::new();
    let board = notify::StatusBoard::new();
    let (root_tx, root_rx) = watch::channel(None);
    let (first_tx, mut first_rx) = watch::channel(false);
    let docker_host = crate::adapters::bollard::resolve_host(globals.docker_host.as_deref());
    background.spawn(
        events::Tracker {
            docker: Arc::new(
                crate::adapters::bollard::BollardEngine::new(docker_host)
                    .with_request_timeout(events::REQUEST_TIMEOUT),
            ),
            store: store.clone(),
            clock: Arc::clone(&clock),
            board: board.clone(),
            metrics: Arc::clone(&metrics),
            reconcile_interval: settings.reconcile_interval,
            root_dir: root_tx,
            first_attempt: first_tx,
        }
        .run(shutdown.clone()),
    );
    // The state is saved after the jobs drain, so it has its own stop.
    let persist_stop = CancellationToken::new();
    background.spawn(store.clone().persist_loop(
        state::DEFAULT_DEBOUNCE,
        Arc::clone(&clock),
        persist_stop.clone(),
    ));
    if let Some(listener) = listener {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(listen = %addr, "serving metrics");
        }
        background.spawn(metrics::serve(
            listener,
            Arc::clone(&metrics),
            shutdown.clone(),
        ));
    }
    let watchdog_stop = CancellationToken::new();
    if let Some(interval) = notify::watchdog_interval() {
        tracing::info!(
            interval_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            "systemd watchdog enabled"
        );
        background.spawn(notify::watchdog_loop(interval, watchdog_stop.clone()));
    }

    // READY once config, state and the first Docker attempt (either way) are done.
    tokio::select! {
        () = shutdown.cancelled() => {}
        _ = tokio::time::timeout(READY_WAIT, first_rx.wait_for(|done| *done)) => {}
    }
    notify::ready();
    tracing::info!(status = %board.text(), "ready");

    let core = Core {
        globals: globals.clone(),
        store: store.clone(),
        metrics: Arc::clone(&metrics),
        board: board.clone(),
        clock: Arc::clone(&clock),
        shutdown: shutdown.clone(),
        guards: JobGuards::new(),
        jobs: TaskTracker::new(),
        root_dir: root_rx,
    };
    let mut generation = core.start_generation(raw, settings.clone());
    let mut current = settings;

    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = hangup.recv() => {
                notify::reloading();
                match reload(globals) {
                    Ok((raw, new)) => {
                        warn_restart_only(&current, &new);
                        generation.cancel();
                        generation = core.start_generation(raw, new.clone());
                        current = new;
                        tracing::info!("configuration reloaded");
                    }
                    Err(e) => tracing::error!(error = %e, "new configuration is invalid; keeping the previous one"),
                }
                notify::ready();
            }
        }
    }

    notify::stopping();
    generation.cancel();
    tracing::info!(
        running = core.jobs.len(),
        "stopping: waiting for running jobs"
    );
    core.jobs.close();
    if tokio::time::timeout(current.shutdown_timeout, core.jobs.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            timeout = %crate::units::format_duration(current.shutdown_timeout),
            "jobs did not finish in time; exiting anyway"
        );
    }
    persist_stop.cancel();
    watchdog_stop.cancel();
    background.close();
    if tokio::time::timeout(BACKGROUND_STOP, background.wait())
        .await
        .is_err()
    {
        tracing::warn!("background tasks did not stop in time");
    }
    tracing::info!(
        images = store.len(),
        saves = store.saves(),
        "state saved; daemon stopped"
    );
    Ok(Status::Ok)
}

/// Re-read and validate the config file (SIGHUP).
fn reload(globals: &Globals) -> Result<(RawConfig, DaemonSettings), String> {
    let (raw, source) =
        crate::config::load(globals.config_path.as_deref()).map_err(|e| e.to_string())?;
    let settings = validate(&raw).map_err(|e| e.to_string())?;
    tracing::debug!(source = ?source, "configuration re-read");
    Ok((raw, settings))
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
