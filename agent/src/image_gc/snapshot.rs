//! The snapshot: everything the planner needs, read once through the ports — one
//! listing each of images and containers, `/info` for Docker's root directory, the
//! disk usage of it, and image last-use from the daemon's state file. The image plan
//! costs a constant number of Engine API calls whatever the number of images.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::GcError;
use crate::last_use::LastUseState;
use crate::ports::disk::{Disk, FsUsage};
use crate::ports::docker::{
    ContainerInfo, ContainerState, DockerEngine, DockerError, ImageInfo, VolumeInfo,
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
    pub volumes: Vec<VolumeInfo>,
    pub root_dir: Option<PathBuf>,
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
    let (images, containers, root_dir) = tokio::try_join!(
        async { docker.list_images().await.map_err(step("list images")) },
        async {
            docker
                .list_containers()
                .await
                .map_err(step("list containers"))
        },
        async {
            docker
                .docker_root_dir()
                .await
                .map_err(step("read engine info"))
        },
    )?;
    let root_dir = root_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT_DIR));
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
    Ok(Snapshot {
        images,
        containers,
        last_use,
        volumes,
        root_dir: Some(root_dir),
        disk,
    })
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
