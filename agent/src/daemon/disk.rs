//! Disk pressure: every `disk_check_interval`, measure the filesystem holding
//! Docker's root dir (statvfs) and, above `[gc] high_water` in bytes or inodes, start
//! a GC pass in disk mode at once — unless a gc run is already going.
//!
//! The measurement is the one `gc` acts on (used = total - free, over total), so the
//! daemon never starts a disk-mode pass that gc would find unnecessary.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::job_run::{run_job, JobContext, Trigger};
use super::scheduler::JobGuards;
use super::settings::JobKind;
use crate::ports::docker::FsUsage;
use crate::config::value::Watermark;

/// statvfs of `path`, as the `FsUsage` gc measures.
pub fn measure(path: &Path) -> std::io::Result<FsUsage> {
    crate::adapters::docker::statvfs_usage(path)
}

/// Is `usage` above `high`? Bytes always count; a percentage applies to inodes too
/// (an inode-exhausted filesystem is as full as a byte-exhausted one), the rule gc's
/// planner applies, so a pass started here is never one gc finds unnecessary.
fn above(high: &Watermark, usage: &FsUsage) -> bool {
    high.exceeded_by(usage.used_bytes, usage.total_bytes)
        || matches!(high, Watermark::Percent(_))
            && high.exceeded_by(usage.used_inodes, usage.total_inodes)
}

/// Check every `interval` until `stop`; start disk-mode GC above `high_water`.
pub async fn pressure_loop(
    ctx: Arc<JobContext>,
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
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || measure(&dir)).await
        };
        let usage = match measured {
            Ok(Ok(u)) => {
                warned = false;
                u
            }
            Ok(Err(e)) => {
                if !warned {
                    tracing::warn!(path = %dir.display(), error = %e, "cannot measure Docker's filesystem");
                    warned = true;
                }
                continue;
            }
            Err(_) => continue,
        };
        ctx.metrics.disk_usage_ratio.set(usage.bytes_ratio());
        let Some(high) = high else { continue };
        if !above(&high, &usage) {
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
    use super::*;

    fn usage(used: u64, cap: u64, iu: u64, ic: u64) -> FsUsage {
        FsUsage {
            used_bytes: used,
            total_bytes: cap,
            used_inodes: iu,
            total_inodes: ic,
        }
    }

    #[test]
    fn above_counts_bytes_and_inodes_for_percentages() {
        let high = Watermark::Percent(85.0);
        assert!(!above(&high, &usage(80, 100, 10, 100)));
        assert!(above(&high, &usage(86, 100, 10, 100)));
        assert!(above(&high, &usage(10, 100, 90, 100)), "inodes exhausted");
        let bytes = Watermark::Bytes(50);
        assert!(above(&bytes, &usage(51, 100, 0, 0)));
        assert!(
            !above(&bytes, &usage(50, 100, 99, 100)),
            "a size mark is about bytes"
        );
    }

    #[test]
    fn measure_reads_a_real_filesystem() {
        let u = measure(Path::new("/")).unwrap();
        assert!(u.total_bytes > 0);
        assert!(u.used_bytes <= u.total_bytes);
        assert!((0.0..=1.0).contains(&u.bytes_ratio()));
    }
}
