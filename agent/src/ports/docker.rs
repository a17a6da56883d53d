//! The Docker Engine port: what `gc` (and the daemon) need from the engine, in this
//! crate's own types. The bollard adapter is `crate::adapters::docker`; the fake for
//! planner and executor tests is `crate::testing::docker`. Filesystem usage (statvfs)
//! is an effect too, so it sits behind this port as well.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// One image as listed by `GET /images/json` (top-level images only).
#[derive(Debug, Clone, PartialEq)]
pub struct ImageInfo {
    /// Full ID, `sha256:…`.
    pub id: String,
    /// `Parent` (legacy builder); `None` when empty.
    pub parent_id: Option<String>,
    /// `repo:tag` references; empty for a dangling image (`<none>:<none>` dropped).
    pub repo_tags: Vec<String>,
    /// `repo@sha256:…` references.
    pub repo_digests: Vec<String>,
    pub created: DateTime<Utc>,
    /// Bytes, as the engine reports them (shared layers counted in full).
    pub size: u64,
}

/// A container's lifecycle state as the engine names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
    Unknown,
}

impl ContainerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Restarting => "restarting",
            Self::Removing => "removing",
            Self::Exited => "exited",
            Self::Dead => "dead",
            Self::Unknown => "unknown",
        }
    }
}

/// One container as listed by `GET /containers/json?all=1`.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerInfo {
    pub id: String,
    /// First name without the leading `/`.
    pub name: String,
    /// The reference it was created from (may be a tag that has since moved).
    pub image: String,
    /// The image ID it actually uses: this is what protects an image.
    pub image_id: String,
    pub state: ContainerState,
    pub created: DateTime<Utc>,
    pub labels: BTreeMap<String, String>,
    /// When it stopped; filled in only for stopped containers that may be removed
    /// (the listing does not carry it, so it costs one inspect each).
    pub finished_at: Option<DateTime<Utc>>,
}

/// A dangling volume.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// Usage of one filesystem (statvfs): bytes and inodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct FsUsage {
    pub total_bytes: u64,
    pub used_bytes: u64,
    pub total_inodes: u64,
    pub used_inodes: u64,
}

impl FsUsage {
    /// Share of bytes in use (0..1).
    pub fn bytes_ratio(&self) -> f64 {
        if self.total_bytes == 0 {
            0.0
        } else {
            self.used_bytes as f64 / self.total_bytes as f64
        }
    }
}

/// Failures of the engine, classified the way `gc` must treat them.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DockerError {
    /// The engine could not be reached at all (socket missing, refused, timeout).
    #[error("cannot reach the Docker engine at {host}: {message}")]
    Unreachable { host: String, message: String },
    /// 404: the object is already gone.
    #[error("not found: {0}")]
    NotFound(String),
    /// 409: the object is in use (a container appeared, a child image exists…).
    #[error("conflict: {0}")]
    Conflict(String),
    /// Any other API error.
    #[error("Docker API error {status}: {message}")]
    Api { status: u16, message: String },
    /// A local failure (statvfs of Docker's root directory).
    #[error("{0}")]
    Local(String),
}

/// What `gc` and the daemon need from the Docker Engine.
#[async_trait]
pub trait DockerApi: Send + Sync {
    /// `GET /images/json` — one call for all top-level images.
    async fn list_images(&self) -> Result<Vec<ImageInfo>, DockerError>;
    /// `GET /containers/json?all=1` — one call for all containers, any state.
    async fn list_containers(&self) -> Result<Vec<ContainerInfo>, DockerError>;
    /// `GET /containers/{id}/json` → `State.FinishedAt` (None when never finished).
    async fn container_finished_at(&self, id: &str) -> Result<Option<DateTime<Utc>>, DockerError>;
    /// `GET /info` → `DockerRootDir`.
    async fn docker_root_dir(&self) -> Result<PathBuf, DockerError>;
    /// statvfs of `path` (Docker's root directory): bytes and inodes.
    fn fs_usage(&self, path: &Path) -> Result<FsUsage, DockerError>;
    /// `GET /images/{reference}/json` → the image ID the reference names now
    /// (`None` when there is no such image).
    async fn image_id_of(&self, reference: &str) -> Result<Option<String>, DockerError>;
    /// `DELETE /images/{reference}` without force, pruning untagged parents as
    /// `docker rmi` does. A reference is a `repo:tag` or an ID.
    async fn remove_image(&self, reference: &str) -> Result<(), DockerError>;
    /// `DELETE /containers/{id}` without force (volumes of the container kept).
    async fn remove_container(&self, id: &str) -> Result<(), DockerError>;
    /// `GET /volumes?filters={"dangling":["true"]}`.
    async fn list_dangling_volumes(&self) -> Result<Vec<VolumeInfo>, DockerError>;
    /// `DELETE /volumes/{name}` without force.
    async fn remove_volume(&self, name: &str) -> Result<(), DockerError>;
    /// `POST /build/prune?filters={"until":…}` → bytes reclaimed.
    async fn prune_build_cache(&self, older_than: Duration) -> Result<u64, DockerError>;
    /// Engine API calls made so far through this client (for the API-economy checks).
    fn api_calls(&self) -> u64;
}
