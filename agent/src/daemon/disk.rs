//! Disk pressure: every `disk_check_interval`, measure the filesystem holding
//! Docker's root dir (through the disk port) and, above `[gc] high_water` in bytes or
//! inodes, start a GC pass in disk mode at once — unless a gc run is already going.
//!
//! The measurement and the rule (`FsUsage::above`) are the ones `gc` acts on, so the
//! daemon never starts a disk-mode pass that gc would find unnecessary.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::job_run::{run_job, JobContext, Trigger};
use super::scheduler::JobGuards;
use super::settings::JobKind;
use crate::ports::disk::Disk;

/// Check every `interval` until `stop`; start disk-mode GC above `high_water`.
pub async fn pressure_loop(
    ctx: Arc<JobContext>,
    disk: Arc<dyn Disk>,
    root_dir: watch::Receiver<Option<PathBuf>>,
    guards: JobGuards,
    jobs: TaskTracker,
    stop: CancellationToken,
) {
    let interval = ctx.settings.disk_check_interval;
    let high = ctx.settings.high_water;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut warned = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(dir) = root_dir.borrow().clone() else {
            continue; // not connected to Docker yet
        };
        let measured = {
            let (disk, dir) = (Arc::clone(&disk), dir.clone());
            tokio::task::spawn_blocking(move || disk.usage(&dir)).await
        };
        let usage = match measured {
            Ok(Ok(u)) => {
                warned = false;
                u
            }
            Ok(Err(e)) => {
                if !warned {
                    tracing::warn!(path = %dir.display(), error = %e.source, "cannot measure Docker's filesystem");
                    warned = true;
                }
                continue;
            }
            Err(_) => continue,
        };
        ctx.metrics.disk_usage_ratio.set(usage.bytes_ratio());
        let Some(high) = high else { continue };
        if !usage.above(&high) {
            continue;
        }
        match guards.try_start(JobKind::Gc) {
            Some(guard) => {
                tracing::warn!(
                    job = "gc",
                    path = %dir.display(),
                    usage_ratio = usage.bytes_ratio(),
                    high_water = %high,
                    "disk above high water; starting GC"
                );
                jobs.spawn(run_job(
                    Arc::clone(&ctx),
                    JobKind::Gc,
                    Trigger::DiskPressure,
                    guard,
                ));
            }
            None => {
                tracing::debug!(job = "gc", "disk above high water; gc already running");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::daemon::fakes::{FakeJobs, TokioClock};
    use crate::daemon::metrics::Metrics;
    use crate::daemon::notify::StatusBoard;
    use crate::daemon::settings::DaemonSettings;
    use crate::last_use::StateStore;
    use crate::ports::disk::FsUsage;
    use crate::testing::docker::{now, FakeDisk};

    #[tokio::test(start_paused = true)]
    async fn measures_docker_root_dir_through_the_disk_port() {
        let dir = tempfile::tempdir().unwrap();
        let settings = DaemonSettings::defaults();
        let interval = settings.disk_check_interval;
        let ctx = Arc::new(JobContext {
            settings,
            jobs: Arc::new(FakeJobs {
                label: "disk",
                run_for: Duration::ZERO,
                ignores_cancel: false,
                log: Arc::default(),
            }),
            store: StateStore::open(&dir.path().join("s.json"), now()).unwrap(),
            metrics: Arc::new(Metrics::new()),
            board: StatusBoard::new(),
            clock: TokioClock::new(now()),
            shutdown: CancellationToken::new(),
        });
        let disk = Arc::new(FakeDisk::new(Some(FsUsage {
            total_bytes: 100,
            used_bytes: 42,
            total_inodes: 10,
            used_inodes: 1,
        })));
        let (root_tx, root_rx) = watch::channel(None);
        let stop = CancellationToken::new();
        let task = tokio::spawn(pressure_loop(
            Arc::clone(&ctx),
            disk.clone(),
            root_rx,
            JobGuards::new(),
            TaskTracker::new(),
            stop.clone(),
        ));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(
            disk.measured.lock().unwrap().is_empty(),
            "not connected yet"
        );
        root_tx.send_replace(Some(PathBuf::from("/var/lib/docker")));
        tokio::time::sleep(interval + Duration::from_millis(10)).await;
        assert_eq!(
            disk.measured.lock().unwrap().first().map(PathBuf::as_path),
            Some(Path::new("/var/lib/docker"))
        );
        assert_eq!(ctx.metrics.disk_usage_ratio.get(), 0.42);
        stop.cancel();
        task.await.unwrap();
    }
}
