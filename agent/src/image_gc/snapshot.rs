//! The snapshot: everything the planner needs, read once through the ports — one
//! listing each of images and containers, `/info` for Docker's root directory, the
//! engine's buffered event log (when it saw images pulled, loaded, tagged or used),
//! the disk usage of Docker's filesystem, and image last-use from the daemon's state
//! file. The image plan costs a constant number of Engine API calls whatever the
//! number of images, sent together (its wall time is the image listing's);
//! `read_tag_times` then reads `LastTagTime` only of planned deletions it could keep
//! (`age::needs_tag_time`). The daemon's scheduled gc replays only the part of the
//! log after what its record holds (`last_use::Record::log_applied_until`), and the
//! whole log only when the listing shows an image the record does not know.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::planner::Plan;
use super::{age, GcError};
use crate::last_use::LastUseState;
use crate::ports::disk::{Disk, FsUsage};
use crate::ports::docker::{
    ContainerInfo, ContainerState, DockerEngine, DockerError, DockerEvent, ImageInfo, VolumeInfo,
};

/// Where Docker keeps its data when `/info` does not say.
pub const DEFAULT_ROOT_DIR: &str = "/var/lib/docker";

/// The engine's state at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub images: Vec<ImageInfo>,
    pub containers: Vec<ContainerInfo>,
    /// Image ID → last use, from the state file (absent: creation time counts).
    pub last_use: HashMap<String, DateTime<Utc>>,
    /// Image ID → the latest time the engine saw it pulled, loaded, tagged or used
    /// (its event log, and `LastTagTime` where read).
    pub engine_seen: HashMap<String, DateTime<Utc>>,
    /// The event log is complete from here on (`age::EngineLog::covers_since`).
    pub log_covers_since: Option<DateTime<Utc>>,
    /// Images whose `LastTagTime` was read (each at most once).
    pub tag_time_read: HashSet<String>,
    pub volumes: Vec<VolumeInfo>,
    pub root_dir: Option<PathBuf>,
    /// `/info`'s `Driver`.
    pub storage_driver: Option<String>,
    pub disk: Option<FsUsage>,
}

/// What to read besides images and containers.
#[derive(Debug, Clone)]
pub struct SnapshotOptions {
    /// Disk usage is required (disk-pressure mode); else measured if possible.
    pub require_disk: bool,
    /// Fetch `FinishedAt` of stopped containers older than this (`--containers`).
    pub container_grace: Option<Duration>,
    pub volumes: bool,
    pub state_path: Option<PathBuf>,
    /// Last use as the caller knows it; when set, `state_path` is not read.
    pub last_use: Option<HashMap<String, DateTime<Utc>>>,
    /// `last_use` holds every event of the engine's log up to here (the daemon's
    /// record, `last_use::Record`): only the log after it is replayed.
    pub log_applied_until: Option<DateTime<Utc>>,
}

fn step(step: &'static str) -> impl FnOnce(DockerError) -> GcError {
    move |source| GcError::Snapshot { step, source }
}

/// Read the engine's state.
pub async fn take(
    docker: &dyn DockerEngine,
    disk: &dyn Disk,
    options: &SnapshotOptions,
    now: DateTime<Utc>,
) -> Result<Snapshot, GcError> {
    // The four reads are independent (the event log is folded onto the listing only
    // afterwards), so they go out together: the snapshot costs its slowest read, the
    // image listing, not their sum.
    let (images, containers, info, events) = tokio::try_join!(
        timed("list images", async {
            docker.list_images().await.map_err(step("list images"))
        }),
        timed("list containers", async {
            docker
                .list_containers()
                .await
                .map_err(step("list containers"))
        }),
        timed("read engine info", async {
            docker.engine_info().await.map_err(step("read engine info"))
        }),
        timed("replay event log", async {
            let since = match (&options.last_use, options.log_applied_until) {
                (Some(_), Some(until)) => until,
                _ => DateTime::UNIX_EPOCH,
            };
            Ok(replay_events(docker, since, now).await)
        }),
    )?;
    let storage_driver = info.storage_driver;
    let root_dir = info
        .root_dir
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT_DIR));
    let mut containers = containers;
    if let Some(grace) = options.container_grace {
        fill_finished_at(docker, &mut containers, grace, now).await?;
    }
    let disk = match disk.usage(&root_dir) {
        Ok(usage) => Some(usage),
        Err(e) if options.require_disk => return Err(GcError::Disk(e)),
        Err(e) => {
            tracing::debug!(error = %e, "disk usage not measured");
            None
        }
    };
    let volumes = if options.volumes {
        docker
            .list_dangling_volumes()
            .await
            .map_err(step("list volumes"))?
    } else {
        Vec::new()
    };
    let last_use = match &options.last_use {
        Some(known) => known.clone(),
        None => options
            .state_path
            .as_deref()
            .map(load_last_use)
            .unwrap_or_default(),
    };
    // The tail after the daemon's record is enough only for images the record knows:
    // one it has not seen (its event still on the way, or of a kind the daemon does
    // not track, such as `import`) may be dated by anything in the log.
    let tail_only =
        options.log_applied_until.is_some() && options.last_use.is_some() && events.is_some();
    let events = match (tail_only, options.last_use.as_ref()) {
        (true, Some(known)) if images.iter().any(|i| !known.contains_key(&i.id)) => {
            tracing::debug!("an image the daemon's record does not know: the whole event log");
            timed("replay event log", async {
                Ok(replay_events(docker, DateTime::UNIX_EPOCH, now).await)
            })
            .await?
        }
        (true, _) => {
            tracing::debug!(since = ?options.log_applied_until, "event log replayed after the daemon's record only");
            events
        }
        _ => events,
    };
    let log = match events {
        Some(events) => {
            let log = age::engine_log(&events, &images);
            tracing::debug!(events = events.len(), covers_since = ?log.covers_since, "engine event log replayed");
            log
        }
        None => age::EngineLog::default(),
    };
    Ok(Snapshot {
        images,
        containers,
        last_use,
        engine_seen: log.seen,
        log_covers_since: log.covers_since,
        tag_time_read: HashSet::new(),
        volumes,
        root_dir: Some(root_dir),
        storage_driver,
        disk,
    })
}

/// The engine's event log from `since`, replayed (`None`: it cannot be read, which
/// only leaves the other sources and more `LastTagTime` reads).
async fn replay_events(
    docker: &dyn DockerEngine,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<Vec<DockerEvent>> {
    match docker.replay_events(since, now).await {
        Ok(events) => Some(events),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the engine's event log; ages from creation, tag time and the daemon's record");
            None
        }
    }
}

/// Await `read`, logging how long it took (the plan's cost, read per step by
/// `bench-gc`).
async fn timed<T>(
    what: &'static str,
    read: impl std::future::Future<Output = Result<T, GcError>>,
) -> Result<T, GcError> {
    let start = std::time::Instant::now();
    let result = read.await;
    tracing::debug!(
        step = what,
        ms = start.elapsed().as_secs_f64() * 1000.0,
        "snapshot read"
    );
    result
}

/// Read `LastTagTime` of the images `plan` deletes where it could keep them
/// (`age::needs_tag_time`: tagged, unrecorded, older than `threshold` by what is
/// known, and the event log too short to tell), into `engine_seen`. Returns whether
/// any such time was found (the caller then plans again, and calls this again: an
/// image kept now may free a `--max-deletions` slot). Never reads an image the plan
/// keeps anyway, nor one twice.
pub async fn read_tag_times(
    docker: &dyn DockerEngine,
    snapshot: &mut Snapshot,
    plan: &Plan,
    threshold: Duration,
    now: DateTime<Utc>,
) -> Result<bool, GcError> {
    let deleting: HashSet<&str> = plan
        .deletions()
        .map(|e| e.id.as_str())
        .filter(|id| !snapshot.tag_time_read.contains(*id))
        .collect();
    let mut found = false;
    let mut read = Vec::new();
    for image in snapshot
        .images
        .iter()
        .filter(|i| deleting.contains(i.id.as_str()))
    {
        let known = age::last_use(
            image.created,
            snapshot.engine_seen.get(&image.id).copied(),
            snapshot.last_use.get(&image.id).copied(),
            now,
        );
        let recorded = snapshot.last_use.contains_key(&image.id);
        if !age::needs_tag_time(
            image,
            known,
            recorded,
            snapshot.log_covers_since,
            threshold,
            now,
        ) {
            continue;
        }
        read.push(image.id.clone());
        let tagged = docker
            .inspect_image(&image.id)
            .await
            .map_err(step("inspect image"))?
            .and_then(|d| d.last_tag_time);
        if let Some(at) = tagged.filter(|&at| known.is_none_or(|k| at > k)) {
            tracing::debug!(image = %crate::shared::reference::short_id(&image.id), tagged = %at, "dated by LastTagTime");
            snapshot.engine_seen.insert(image.id.clone(), at);
            found = true;
        }
    }
    snapshot.tag_time_read.extend(read);
    Ok(found)
}

/// `FinishedAt` is not in the listing: inspect only stopped containers that could
/// be past the grace (created before `now - grace`); the others are kept anyway.
async fn fill_finished_at(
    docker: &dyn DockerEngine,
    containers: &mut [ContainerInfo],
    grace: Duration,
    now: DateTime<Utc>,
) -> Result<(), GcError> {
    let cutoff = now - chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
    for c in containers.iter_mut() {
        let stopped = matches!(c.state, ContainerState::Exited | ContainerState::Dead);
        if stopped && c.created <= cutoff {
            // Removed meanwhile (`None`): nothing to plan for it.
            if let Some(details) = docker
                .inspect_container(&c.id)
                .await
                .map_err(step("inspect container"))?
            {
                c.finished_at = details.finished_at;
            }
        }
    }
    Ok(())
}

/// Last use per image from the daemon's state file. A missing, unreadable or
/// foreign-version file means "no last-use data" (creation time counts), with a
/// warning for the latter two; it never fails the run.
pub fn load_last_use(path: &Path) -> HashMap<String, DateTime<Utc>> {
    match LastUseState::load(path) {
        Ok(Some(state)) => state
            .images
            .into_iter()
            .map(|(id, u)| (id, u.last_used))
            .collect(),
        Ok(None) => {
            tracing::debug!(path = %path.display(), "no last-use state file; creation time counts");
            HashMap::new()
        }
        Err(e) => {
            tracing::warn!(error = %e, "ignoring last-use state; creation time counts");
            HashMap::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_use_from_state_file_v1() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(
            &path,
            r#"{"version":1,"updated_at":"2026-01-01T00:00:00Z","images":{"sha256:aa":{"last_used":"2026-01-02T00:00:00Z"}}}"#,
        )
        .unwrap();
        let m = load_last_use(&path);
        assert_eq!(m["sha256:aa"].to_rfc3339(), "2026-01-02T00:00:00+00:00");
    }

    #[test]
    fn foreign_or_broken_state_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, r#"{"version":9,"images":{}}"#).unwrap();
        assert!(load_last_use(&path).is_empty());
        std::fs::write(&path, "not json").unwrap();
        assert!(load_last_use(&path).is_empty());
        assert!(load_last_use(&dir.path().join("missing.json")).is_empty());
    }
}
