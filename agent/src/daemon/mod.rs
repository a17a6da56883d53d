//! `shipshape daemon`: the systemd service (Type=notify) that schedules gc,
//! ecr_prune and refresh_auth by cron, runs GC under disk pressure, tracks image
//! last use from Docker events, and serves Prometheus metrics.
//!
//! Lifecycle of [`run`]: open state → bind metrics → start the Docker tracker →
//! READY=1 → schedule; each reload request re-reads the configuration through the
//! [`Reloader`] (keeping the old one if the new one is invalid); shutdown drains
//! running jobs (bounded), saves state, returns. The caller owns signals and logging.

mod background;
pub(crate) mod disk;
pub(crate) mod events;
mod generation;
pub(crate) mod http;
pub(crate) mod job_run;
pub mod jobs;
pub(crate) mod metrics;
pub(crate) mod notify;
pub(crate) mod on_change;
pub(crate) mod schedule;
pub(crate) mod scheduler;
pub mod settings;

#[cfg(test)]
pub(crate) mod fakes;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::exit::Status;
use crate::last_use::StateStore;
use crate::ports::disk::Disk;
use crate::ports::docker::DockerEngine;
use crate::ports::memory::Memory;
use crate::ports::Clock;

use self::background::Background;
use self::generation::{Generations, Shared};
use self::jobs::Jobs;
use self::metrics::Metrics;
use self::notify::StatusBoard;
use self::settings::DaemonSettings;

/// Errors of the daemon.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("invalid {key}: {message}")]
    Invalid { key: String, message: String },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("{0}; fix or remove the file, or set [daemon] state to another path")]
    State(#[from] crate::last_use::StateError),
    #[error("cannot listen for metrics on {addr}: {source}; change [metrics] listen")]
    Metrics {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

impl DaemonError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Invalid { .. } | Self::Config(_) | Self::Metrics { .. } => {
                crate::exit::EXIT_USAGE
            }
            Self::State(_) | Self::Signals(_) => crate::exit::EXIT_RUNTIME,
        }
    }
}

/// One configuration: the daemon's settings and the jobs as that configuration
/// wires them. A reload replaces both.
pub struct Config {
    pub settings: DaemonSettings,
    pub jobs: Arc<dyn Jobs>,
}

/// Reads the configuration again (on a reload request).
pub trait Reloader: Send + Sync {
    /// The new configuration, validated; an error keeps the old one in force.
    fn reload(&self) -> Result<Config, DaemonError>;
}

/// The ports the daemon runs on, built by the composition root.
pub struct DaemonDeps {
    pub docker: Arc<dyn DockerEngine>,
    /// Measures Docker's filesystem for the disk-pressure check.
    pub disk: Arc<dyn Disk>,
    pub clock: Arc<dyn Clock>,
    pub reloader: Arc<dyn Reloader>,
    /// Hands back resident code pages idle does not run (30 s after READY, then every
    /// 5 min): the idle RSS.
    pub memory: Arc<dyn Memory>,
}

/// Run until `shutdown` is cancelled; every `()` on `reloads` reloads the
/// configuration.
pub async fn run(
    config: Config,
    deps: DaemonDeps,
    shutdown: CancellationToken,
    mut reloads: mpsc::Receiver<()>,
) -> Result<Status, DaemonError> {
    let store = StateStore::open(&config.settings.state, deps.clock.now())?;
    let metrics = Arc::new(Metrics::new());
    metrics.tracked_images.set(gauge(store.len()));
    let listener = bind_metrics(config.settings.metrics_listen).await?;
    tracing::info!(
        state = %config.settings.state.display(),
        images = store.len(),
        "shipshape daemon starting"
    );
    let board = StatusBoard::new();
    let (mut background, root_dir) = Background::start(
        background::Parts {
            docker: deps.docker,
            store: store.clone(),
            clock: Arc::clone(&deps.clock),
            board: board.clone(),
            metrics: Arc::clone(&metrics),
            reconcile_interval: config.settings.reconcile_interval,
            listener,
        },
        &shutdown,
    );
    background.first_docker_attempt(&shutdown).await;
    notify::ready();
    tracing::info!(status = %board.text(), "ready");

    let mut generations = Generations::new(Shared {
        store: store.clone(),
        metrics,
        board,
        clock: deps.clock,
        shutdown: shutdown.clone(),
        disk: deps.disk,
        root_dir,
    });
    generations.start(config);
    let mut release_tick = tokio::time::interval_at(
        tokio::time::Instant::now() + RELEASE_AFTER_READY,
        RELEASE_INTERVAL,
    );
    release_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(()) = reloads.recv() => reload(&mut generations, deps.reloader.as_ref()),
            _ = release_tick.tick() => release_code_pages(deps.memory.as_ref()),
        }
    }

    notify::stopping();
    generations.drain().await;
    background.stop().await;
    tracing::info!(
        images = store.len(),
        saves = store.saves(),
        "state saved; daemon stopped"
    );
    Ok(Status::Ok)
}

/// When the binary's code pages are first handed back: after READY the daemon still
/// replays the engine's buffered events (one image inspect each), saves the state and
/// pings, all code that start-up ran too; by then it has gone quiet.
const RELEASE_AFTER_READY: Duration = Duration::from_secs(30);
/// And then how often: a reconciliation, a job, a scrape or an event storm maps code
/// back, and idle keeps only what its pings and timers run. Each release costs the
/// minor faults that map the next pages used back from the page cache.
const RELEASE_INTERVAL: Duration = Duration::from_secs(300);

/// Hand back the pages of the binary's code that are resident but not needed while
/// idle (CLI and config parsing, logging set-up, listings, jobs): see the `Memory` port.
/// A failure costs only memory, so it is logged at debug and the daemon goes on.
fn release_code_pages(memory: &dyn Memory) {
    match memory.release_code_pages() {
        Ok(released) => tracing::debug!(
            mappings = released.mappings,
            resident_kib = released.resident_kib,
            "resident code pages of the binary released"
        ),
        Err(e) => tracing::debug!(error = %e, "cannot release the binary's code pages"),
    }
}

/// Bind `[metrics] listen`, if set, before READY.
async fn bind_metrics(addr: Option<SocketAddr>) -> Result<Option<TcpListener>, DaemonError> {
    let Some(addr) = addr else { return Ok(None) };
    http::bind(addr)
        .await
        .map(Some)
        .map_err(|source| DaemonError::Metrics { addr, source })
}

/// Replace the generation with a freshly read configuration, or keep it.
fn reload(generations: &mut Generations, reloader: &dyn Reloader) {
    notify::reloading();
    match reloader.reload() {
        Ok(config) => {
            generations.start(config);
            tracing::info!("configuration reloaded");
        }
        Err(e) => {
            tracing::error!(error = %e, "new configuration is invalid; keeping the previous one");
        }
    }
    notify::ready();
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
