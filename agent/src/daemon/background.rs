//! The tasks that live as long as the daemon, whatever the configuration: the Docker
//! tracker, the state's debounced persistence, the `/metrics` server and the systemd
//! watchdog. The tracker and the server stop with the process; the state is saved
//! and the watchdog fed until the jobs have drained, so those two have their own stop.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::events::Tracker;
use super::http;
use super::metrics::Metrics;
use super::notify::{self, StatusBoard};
use crate::last_use::store::DEFAULT_DEBOUNCE;
use crate::last_use::StateStore;
use crate::ports::docker::DockerEngine;
use crate::ports::Clock;

/// How long READY waits for the first Docker connection attempt to conclude.
const READY_WAIT: Duration = Duration::from_secs(10);
/// Bound on stopping the background tasks once jobs are drained.
const BACKGROUND_STOP: Duration = Duration::from_secs(5);

/// What the background tasks are made of.
pub struct Parts {
    pub docker: Arc<dyn DockerEngine>,
    pub store: StateStore,
    pub clock: Arc<dyn Clock>,
    pub board: StatusBoard,
    pub metrics: Arc<Metrics>,
    pub reconcile_interval: Duration,
    /// Bound already, so a taken port was a start-up error.
    pub listener: Option<TcpListener>,
}

/// The running background tasks.
pub struct Background {
    tasks: TaskTracker,
    persist_stop: CancellationToken,
    watchdog_stop: CancellationToken,
    first_attempt: watch::Receiver<bool>,
}

impl Background {
    /// Start them; the tracker and the server stop on `shutdown`. Returns Docker's
    /// root dir as the tracker learns it.
    pub fn start(
        parts: Parts,
        shutdown: &CancellationToken,
    ) -> (Self, watch::Receiver<Option<PathBuf>>) {
        let tasks = TaskTracker::new();
        let (root_tx, root_rx) = watch::channel(None);
        let (first_tx, first_rx) = watch::channel(false);
        tasks.spawn(
            Tracker {
                docker: parts.docker,
                store: parts.store.clone(),
                clock: Arc::clone(&parts.clock),
                board: parts.board.clone(),
                metrics: Arc::clone(&parts.metrics),
                reconcile_interval: parts.reconcile_interval,
                root_dir: root_tx,
                first_attempt: first_tx,
            }
            .run(shutdown.clone()),
        );
        let persist_stop = CancellationToken::new();
        let metrics = Arc::clone(&parts.metrics);
        let board = parts.board.clone();
        tasks.spawn(parts.store.persist_loop(
            DEFAULT_DEBOUNCE,
            parts.clock,
            persist_stop.clone(),
            move |saved| {
                if saved.is_err() {
                    metrics.state_save_failed();
                }
                board.state_saved(saved.map_err(ToString::to_string));
            },
        ));
        if let Some(listener) = parts.listener {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(listen = %addr, "serving metrics");
            }
            tasks.spawn(http::serve(listener, parts.metrics, shutdown.clone()));
        }
        let watchdog_stop = CancellationToken::new();
        if let Some(interval) = notify::watchdog_interval() {
            tracing::info!(
                interval_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
                "systemd watchdog enabled"
            );
            tasks.spawn(notify::watchdog_loop(interval, watchdog_stop.clone()));
        }
        let background = Self {
            tasks,
            persist_stop,
            watchdog_stop,
            first_attempt: first_rx,
        };
        (background, root_rx)
    }

    /// Wait until the first Docker connection attempt concluded, either way (at most
    /// `READY_WAIT`, or until `shutdown`): READY should not precede it.
    pub async fn first_docker_attempt(&mut self, shutdown: &CancellationToken) {
        tokio::select! {
            () = shutdown.cancelled() => {}
            _ = tokio::time::timeout(READY_WAIT, self.first_attempt.wait_for(|done| *done)) => {}
        }
    }

    /// Save the state a last time, stop the watchdog, and wait for all of them (bounded).
    pub async fn stop(self) {
        self.persist_stop.cancel();
        self.watchdog_stop.cancel();
        self.tasks.close();
        if tokio::time::timeout(BACKGROUND_STOP, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("background tasks did not stop in time");
        }
    }
}
