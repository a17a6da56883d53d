//! What the daemon needs from Docker to track last use (ping, the event stream,
//! image and container listings, `DockerRootDir`), in this crate's types. The
//! bollard implementation is `crate::adapters::docker_watch`; a connector makes a
//! fresh client after Docker restarts.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::stream::BoxStream;

/// Event actions subscribed to (container and image ones share the filter).
pub const TRACKED_ACTIONS: &[&str] = &[
    "create", "start", "die", "destroy", "pull", "tag", "untag", "delete", "load",
];

/// Which kind of object an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventScope {
    Container,
    Image,
    Other,
}

/// One Docker event, in this crate's terms.
#[derive(Debug, Clone, PartialEq)]
pub struct DockerEvent {
    pub scope: EventScope,
    /// `create`, `start`, `die`, `destroy`, `pull`, `tag`, `untag`, `delete`, `load`…
    pub action: String,
    /// Container ID, or image ID / reference (pull reports the reference).
    pub actor_id: String,
    /// Container events: the image as the container was created from (`image`).
    pub image: Option<String>,
    pub time: DateTime<Utc>,
}

/// An image as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRecord {
    pub id: String,
    pub tags: Vec<String>,
}

/// A container as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerRecord {
    pub id: String,
    pub image_id: String,
    pub running: bool,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum WatchError {
    #[error("cannot reach Docker at {host}: {message}")]
    Connect { host: String, message: String },
    #[error("Docker {what} failed: {message}")]
    Request { what: &'static str, message: String },
}

/// The Docker operations the daemon uses.
#[async_trait]
pub trait DockerWatch: Send + Sync {
    async fn ping(&self) -> Result<(), WatchError>;
    /// `DockerRootDir` from `/info`.
    async fn root_dir(&self) -> Result<PathBuf, WatchError>;
    async fn images(&self) -> Result<Vec<ImageRecord>, WatchError>;
    async fn containers(&self) -> Result<Vec<ContainerRecord>, WatchError>;
    /// The image ID a container runs; `None` when the container is gone.
    async fn container_image(&self, id: &str) -> Result<Option<String>, WatchError>;
    /// Resolve an image reference or ID; `None` when there is no such image.
    async fn image(&self, reference: &str) -> Result<Option<ImageRecord>, WatchError>;
    /// Container and image events from `since` (replayed by the engine) on.
    fn events(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> BoxStream<'static, Result<DockerEvent, WatchError>>;
}

/// Makes fresh connections (after Docker restarts, a new client is built).
#[async_trait]
pub trait DockerConnector: Send + Sync {
    fn host(&self) -> &str;
    async fn connect(&self) -> Result<Arc<dyn DockerWatch>, WatchError>;
}
