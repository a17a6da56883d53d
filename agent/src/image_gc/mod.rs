//! `gc`: one garbage-collection pass over this host's Docker engine — images,
//! and on request stopped containers, dangling volumes and build cache.
//! snapshot (one listing each) → pure planner (protection rules, ordering, disk
//! mode) → executor (no force; 404 fine, 409 skipped) → report (plan + outcomes,
//! table or JSON). `run` is the job; it takes its ports, `now` and a cancel token.

pub mod age;
pub mod docker_gc;
pub mod executor;
pub mod layers;
pub mod planner;
pub mod policy;
pub mod reason;
pub mod report;
pub mod settings;
pub mod snapshot;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::config::value::Watermark;
use crate::ports::disk::{Disk, DiskError};
use crate::ports::docker::{DockerEngine, DockerError};

pub use report::{GcSummary, Report};
pub use settings::GcSettings;

/// Errors of this command area.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error(
        "{0}; check that dockerd is running and that --docker-host or DOCKER_HOST points to it"
    )]
    Connect(DockerError),
    /// `--docker-host`/`DOCKER_HOST` is no address the client can use (exit 2).
    #[error("{0}")]
    Host(String),
    /// Watermarks inverted across units, found once the filesystem size is known (exit 2).
    #[error("invalid watermarks: {0}")]
    Watermarks(String),
    /// A step of the snapshot failed (`step` reads "list images", "read engine info"…).
    #[error("cannot {step}: {source}")]
    Snapshot {
        step: &'static str,
        #[source]
        source: DockerError,
    },
    /// Disk-pressure mode needs the usage of Docker's filesystem.
    #[error(
        "cannot measure disk usage: cannot measure Docker's filesystem at {} (statvfs: {}); \
         disk-pressure mode needs to run on the Docker host",
        .0.path.display(),
        .0.source
    )]
    Disk(DiskError),
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

impl GcError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Host(_) | Self::Watermarks(_) => crate::exit::EXIT_USAGE,
            Self::Connect(_) | Self::Snapshot { .. } | Self::Disk(_) | Self::Output(_) => {
                crate::exit::EXIT_RUNTIME
            }
        }
    }
}

/// One pass: snapshot, plan, and (unless dry run) execute. Never builds an
/// adapter, prints or reads the clock; stops between deletion chunks on `cancel`.
pub async fn run(
    settings: &GcSettings,
    docker: &dyn DockerEngine,
    disk: &dyn Disk,
    now: DateTime<Utc>,
    cancel: &CancellationToken,
) -> Result<Report, GcError> {
    run_with_last_use(settings, docker, disk, now, None, cancel).await
}

/// [`run`] with last use given (the daemon's in-memory record) instead of read from
/// `settings.state`; `None` reads the file. Where the record says it holds the
/// engine's event log up to some time, only the log after it is replayed.
pub async fn run_with_last_use(
    settings: &GcSettings,
    docker: &dyn DockerEngine,
    disk: &dyn Disk,
    now: DateTime<Utc>,
    record: Option<crate::last_use::Record>,
    cancel: &CancellationToken,
) -> Result<Report, GcError> {
    // `now` was read just before this call: its instant, for the executor's reads of
    // the engine's event log.
    let origin = executor::WallOrigin::new(now);
    let calls_before = docker.api_calls();
    let options = snapshot::SnapshotOptions {
        require_disk: settings.disk.is_some() || settings.ensure_free.is_some(),
        container_grace: settings.containers.then_some(settings.container_grace),
        volumes: settings.volumes,
        state_path: Some(settings.state.clone()),
        log_applied_until: record.as_ref().and_then(|r| r.log_applied_until),
        last_use: record.map(|r| r.last_use),
    };
    let planning = std::time::Instant::now();
    let mut snap = snapshot::take(docker, disk, &options, now).await?;
    let snapshot_ms = planning.elapsed().as_secs_f64() * 1000.0;
    if let (Some(marks), Some(usage)) = (settings.disk, snap.disk) {
        check_watermarks(marks, usage.total_bytes)?;
    }
    let policy = settings.policy();
    let mut plan = planner::plan(&snap, &policy, now);
    // The longest age a decision depends on: a tag time can matter only within it.
    let threshold = settings.min_age.max(settings.max_age.unwrap_or_default());
    while snapshot::read_tag_times(docker, &mut snap, &plan, threshold, now).await? {
        plan = planner::plan(&snap, &policy, now);
    }
    let plan_api_calls = docker.api_calls() - calls_before;
    tracing::debug!(
        images = snap.images.len(),
        containers = snap.containers.len(),
        candidates = plan.deletions().count(),
        api_calls = plan_api_calls,
        snapshot_ms,
        plan_ms = planning.elapsed().as_secs_f64() * 1000.0 - snapshot_ms,
        "planned"
    );
    // A dry run cannot measure what it frees, so it asks the engine's accounting for
    // what each image holds alone and what build cache a prune would take: one
    // `/system/df`, which sizes every layer, container and volume — seconds on a big
    // engine, so a real run (which measures the filesystem) does not pay for it.
    let mut estimates = if settings.dry_run {
        match docker.data_usage().await {
            Ok(usage) => Some(report::Estimates::new(
                usage,
                settings.build_cache.then_some(settings.min_age),
                now,
            )),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read /system/df; estimates count shared layers in full");
                None
            }
        }
    } else {
        None
    };
    let container_log_bytes = snap
        .root_dir
        .as_deref()
        .and_then(|root| disk.container_log_bytes(root));
    // moby's layer store, read from the disk (overlay2 only; see `layers`): in a dry
    // run before, with the images' layer chains when evicting (for inode estimates);
    // in a real run after the deletions, for what is left unaccounted.
    let driver = snap.storage_driver.as_deref();
    let read_store = |images: bool| {
        let root = snap.root_dir.as_deref()?;
        if driver.is_some_and(|d| d != layers::OVERLAY2) {
            return None;
        }
        disk.layer_store(root, images)
    };
    let (outcomes, stats, unaccounted) = if settings.dry_run {
        let evicting = matches!(plan.disk, planner::DiskPlan::Pressure { .. });
        let store = read_store(evicting);
        if let (true, Some(store), Some(estimates)) = (evicting, &store, estimates.as_mut()) {
            let ids: Vec<&str> = plan.deletions().map(|e| e.id.as_str()).collect();
            estimates.inodes = layers::inode_estimates(disk, store, &ids);
            tracing::debug!(
                estimated = estimates.inodes.len(),
                deletions = ids.len(),
                "inode estimates"
            );
        }
        let unaccounted = layers::unaccounted(disk, store.as_ref(), driver);
        let outcomes = executor::dry_run(&plan, estimates.as_ref());
        (outcomes, None, unaccounted)
    } else {
        let exec = executor::ExecOptions {
            concurrency: settings.concurrency,
            root_dir: snap.root_dir.clone(),
            build_cache: settings.build_cache.then_some(settings.min_age),
            origin: Some(origin),
        };
        let done = executor::execute(docker, disk, &plan, &exec, cancel).await;
        let stats = &done.stats;
        tracing::info!(
            job = "gc",
            images_deleted = stats.images_deleted,
            containers_deleted = stats.containers_deleted,
            volumes_deleted = stats.volumes_deleted,
            reclaimed_bytes = stats.reclaimed_bytes,
            conflicts = stats.conflicts,
            failures = stats.failures,
            "gc pass done"
        );
        let unaccounted = layers::unaccounted(disk, read_store(false).as_ref(), driver);
        (done.outcomes, Some(done.stats), unaccounted)
    };
    tracing::debug!(unaccounted = ?unaccounted, "bytes the engine does not account for");
    let ensure_free = settings.ensure_free.map(|target| {
        let after = match &stats {
            Some(stats) => stats.disk_after,
            None => snap
                .disk
                .map(|u| estimate_after(u, &plan, &outcomes, estimates.as_ref())),
        };
        report::FreeCheck {
            target,
            free_bytes: after.map(|u| u.free_bytes()),
            free_inodes: after.map(|u| u.free_inodes()),
            met: after.is_some_and(|u| target.met_by(u.free_bytes(), u.free_inodes())),
        }
    });
    Ok(Report {
        dry_run: settings.dry_run,
        plan,
        outcomes,
        stats,
        disk_before: snap.disk,
        plan_api_calls,
        ensure_free,
        estimates,
        container_log_bytes,
        unaccounted: Some(unaccounted),
    })
}

/// What a dry run expects the filesystem to look like after: each image it would
/// delete frees what `executor::expected_freed` says (inodes only while every
/// deletion has an estimate, as the dry run's eviction estimate counts them).
fn estimate_after(
    mut usage: crate::ports::disk::FsUsage,
    plan: &planner::Plan,
    outcomes: &executor::Outcomes,
    estimates: Option<&report::Estimates>,
) -> crate::ports::disk::FsUsage {
    let freed: Vec<planner::disk::Freed> = plan
        .images
        .iter()
        .zip(&outcomes.images)
        .filter(|(_, o)| o.as_ref().is_some_and(reason::Outcome::is_gone))
        .map(|(e, _)| executor::expected_freed(e, estimates))
        .collect();
    usage.used_bytes = usage
        .used_bytes
        .saturating_sub(freed.iter().map(|f| f.bytes).sum());
    if let Some(inodes) = freed.iter().map(|f| f.inodes).sum::<Option<u64>>() {
        usage.used_inodes = usage.used_inodes.saturating_sub(inodes);
    }
    usage
}

/// Low water above high water once both are bytes of this filesystem (`10MB` and
/// `90%` can only be compared here): a usage error, before anything is deleted.
fn check_watermarks(marks: policy::DiskWatermarks, total: u64) -> Result<(), GcError> {
    let bytes = |w: Watermark| match w {
        Watermark::Percent(p) => p / 100.0 * total as f64,
        Watermark::Bytes(b) => b as f64,
    };
    if bytes(marks.low) > bytes(marks.high) {
        return Err(GcError::Watermarks(format!(
            "low water {} is above high water {} on this {} filesystem; \
             set --low-water below --high-water",
            marks.low,
            marks.high,
            crate::config::value::format_size(total)
        )));
    }
    Ok(())
}

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;

#[cfg(test)]
mod watermark_tests {
    use super::*;

    #[test]
    fn watermarks_inverted_across_units_are_refused_once_the_size_is_known() {
        let marks = policy::DiskWatermarks {
            high: Watermark::Bytes(10_000_000),
            low: Watermark::Percent(90.0),
        };
        let e = check_watermarks(marks, 1_000_000_000).unwrap_err();
        assert_eq!(e.exit_code(), crate::exit::EXIT_USAGE);
        assert!(
            e.to_string().contains("low water 90% is above high water"),
            "{e}"
        );
        let fine = policy::DiskWatermarks {
            high: Watermark::Percent(90.0),
            low: Watermark::Bytes(10_000_000),
        };
        assert!(check_watermarks(fine, 1_000_000_000).is_ok());
    }
}
