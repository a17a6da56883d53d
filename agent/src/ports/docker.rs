//! The Docker Engine port: everything `gc` and the daemon need from the engine —
//! listings, inspection, removal, pruning, the event stream and ping — in this
//! crate's own types. One trait, one adapter (`crate::adapters::bollard`), one fake
//! (`crate::testing::docker`). It returns facts; what they mean is the cores' call.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::stream::BoxStream;

/// One image as listed by `GET /images/json?all=1` (intermediates included).
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

/// What `GET /images/{reference}/json` says about the image a reference names now.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageDetails {
    pub id: String,
    /// `repo:tag` references (`<none>:<none>` dropped).
    pub repo_tags: Vec<String>,
    /// `Metadata.LastTagTime`: when a tag was last put on the image through the tag
    /// API (`docker tag`, a build's `-t`); on 20.10 neither a pull nor a load sets it.
    /// `None` when never set (the engine answers the zero time).
    pub last_tag_time: Option<DateTime<Utc>>,
}

/// The answer of `DELETE /images/{reference}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removed {
    /// References removed (`Untagged` records, in the engine's familiar form).
    pub untagged: Vec<String>,
    /// Image IDs deleted (`Deleted` records; layer chain IDs included as the engine lists them).
    pub deleted: Vec<String>,
}

/// What `GET /info` says about where and how the engine stores images.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngineInfo {
    /// `DockerRootDir`.
    pub root_dir: Option<PathBuf>,
    /// `Driver`: the storage driver (`overlay2`, `vfs`…).
    pub storage_driver: Option<String>,
}

/// What `GET /system/df` says about images and the build cache.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DataUsage {
    /// Image ID → bytes no other image shares (`Size - SharedSize`).
    pub unique_sizes: std::collections::HashMap<String, u64>,
    pub build_cache: Vec<BuildCacheRecord>,
}

/// One build-cache record of `/system/df`.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildCacheRecord {
    pub size: u64,
    pub in_use: bool,
    /// Shared with another record: pruning it frees less than its size.
    pub shared: bool,
    /// `LastUsedAt`, else `CreatedAt`.
    pub last_used: Option<DateTime<Utc>>,
}

/// The answer of `POST /build/prune`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BuildCachePruned {
    /// `SpaceReclaimed`.
    pub bytes: u64,
    /// How many records it deleted (`CachesDeleted`).
    pub records: u64,
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

impl fmt::Display for ContainerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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

/// What `GET /containers/{id}/json` adds to the listing.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerDetails {
    /// The image ID the container runs.
    pub image_id: Option<String>,
    /// `State.FinishedAt`; `None` when it never finished.
    pub finished_at: Option<DateTime<Utc>>,
}

/// A dangling volume.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// Which kind of object an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventScope {
    Container,
    Image,
    Other,
}

/// What happened, as the engine names it. The stream is filtered to
/// [`EventAction::TRACKED`]; anything else the engine sends is `Other`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventAction {
    Create,
    Start,
    Die,
    Destroy,
    Pull,
    Tag,
    Untag,
    Delete,
    Load,
    Other(String),
}

impl EventAction {
    /// The actions subscribed to (container and image ones share the filter).
    pub const TRACKED: &'static [EventAction] = &[
        Self::Create,
        Self::Start,
        Self::Die,
        Self::Destroy,
        Self::Pull,
        Self::Tag,
        Self::Untag,
        Self::Delete,
        Self::Load,
    ];

    /// The engine's name for an action.
    pub fn parse(action: &str) -> Self {
        match action {
            "create" => Self::Create,
            "start" => Self::Start,
            "die" => Self::Die,
            "destroy" => Self::Destroy,
            "pull" => Self::Pull,
            "tag" => Self::Tag,
            "untag" => Self::Untag,
            "delete" => Self::Delete,
            "load" => Self::Load,
            other => Self::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Create => "create",
            Self::Start => "start",
            Self::Die => "die",
            Self::Destroy => "destroy",
            Self::Pull => "pull",
            Self::Tag => "tag",
            Self::Untag => "untag",
            Self::Delete => "delete",
            Self::Load => "load",
            Self::Other(other) => other,
        }
    }
}

impl fmt::Display for EventAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One Docker event, in this crate's terms.
#[derive(Debug, Clone, PartialEq)]
pub struct DockerEvent {
    pub scope: EventScope,
    pub action: EventAction,
    /// Container ID, or image ID / reference (pull reports the reference).
    pub actor_id: String,
    /// Container events: the image as the container was created from (`image`).
    pub image: Option<String>,
    /// The `name` attribute: for an image `tag` event, the reference it received
    /// (familiar form).
    pub name: Option<String>,
    /// When the engine says it happened; `None` when the message carries no time.
    pub time: Option<DateTime<Utc>>,
}

/// Failures of the engine, classified the way the cores must treat them.
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
    /// Any other API error (status 0: an answer the client could not read).
    #[error("Docker API error {status}: {message}")]
    Api { status: u16, message: String },
}

/// The Docker Engine, as `gc` and the daemon use it.
#[async_trait]
pub trait DockerEngine: Send + Sync {
    /// The engine address this client talks to.
    fn host(&self) -> &str;
    /// Open (or, after the engine restarted, reopen) the connection and negotiate
    /// the API version (`GET /version`). Fails with `Unreachable` when nobody answers.
    async fn connect(&self) -> Result<(), DockerError>;
    /// `GET /_ping`.
    async fn ping(&self) -> Result<(), DockerError>;
    /// `GET /info` → `DockerRootDir` (`None` when the answer has none).
    async fn docker_root_dir(&self) -> Result<Option<PathBuf>, DockerError> {
        Ok(self.engine_info().await?.root_dir)
    }
    /// `GET /info` → `DockerRootDir` and `Driver`.
    async fn engine_info(&self) -> Result<EngineInfo, DockerError>;
    /// `GET /images/json?all=1` — one call for all images, the legacy builder's
    /// untagged intermediates included.
    async fn list_images(&self) -> Result<Vec<ImageInfo>, DockerError>;
    /// `GET /containers/json?all=1` — one call for all containers, any state.
    async fn list_containers(&self) -> Result<Vec<ContainerInfo>, DockerError>;
    /// `GET /containers/{id}/json`; `None` when there is no such container.
    async fn inspect_container(&self, id: &str) -> Result<Option<ContainerDetails>, DockerError>;
    /// `GET /images/{reference}/json` → the image the reference (tag or ID) names
    /// now; `None` when there is no such image.
    async fn inspect_image(&self, reference: &str) -> Result<Option<ImageDetails>, DockerError>;
    /// `DELETE /images/{reference}?noprune=1` without force: untagged parents stay
    /// (unlike `docker rmi`), so nothing goes that the plan did not name. A reference is a `repo:tag`, a `repo@sha256:…` or an ID.
    /// Returns what the engine says it did (its `Untagged`/`Deleted` records).
    async fn remove_image(&self, reference: &str) -> Result<Removed, DockerError>;
    /// `POST /images/{id}/tag?repo=…&tag=…`: point `repo:tag` at the image `id`
    /// (moving it if it names another image).
    async fn tag_image(&self, id: &str, repo: &str, tag: &str) -> Result<(), DockerError>;
    /// `DELETE /containers/{id}` without force (volumes of the container kept).
    async fn remove_container(&self, id: &str) -> Result<(), DockerError>;
    /// `GET /volumes?filters={"dangling":["true"]}`.
    async fn list_dangling_volumes(&self) -> Result<Vec<VolumeInfo>, DockerError>;
    /// `DELETE /volumes/{name}` without force.
    async fn remove_volume(&self, name: &str) -> Result<(), DockerError>;
    /// `POST /build/prune?filters={"until":…}` → what it reclaimed.
    async fn prune_build_cache(
        &self,
        older_than: Duration,
    ) -> Result<BuildCachePruned, DockerError>;
    /// `GET /events`: container and image events of [`EventAction::TRACKED`] from
    /// `since` (replayed by the engine) on. Not bounded by the request timeout.
    fn events(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> BoxStream<'static, Result<DockerEvent, DockerError>>;
    /// `GET /events?since=…&until=…`, unfiltered: what the engine's in-memory event
    /// log (its last 256 events of every kind, lost when it restarts) holds between
    /// the two, oldest first; the answer ends at `until`. One call.
    async fn replay_events(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<DockerEvent>, DockerError>;
    /// `GET /system/df`: unique image sizes and build-cache records. Costly on a big
    /// engine (it also sizes every container's writable layer and every volume), so
    /// gc asks only in a dry run, where nothing is measured afterwards.
    async fn data_usage(&self) -> Result<DataUsage, DockerError>;
    /// Engine API calls made so far through this client (for the API-economy checks).
    fn api_calls(&self) -> u64;
}
