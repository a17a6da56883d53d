//! A fake Docker engine for planner, executor, gc-run and event-tracker tests:
//! images, containers and volumes in memory, removal with the engine's 404/409
//! rules, scripted faults, an event feed per opened stream, up/down, and a disk
//! (the `Disk` port too) whose usage drops by the size of each deleted image.
//! `FakeDisk` is a disk alone, with fixed usage.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use futures_util::stream::{BoxStream, StreamExt};
use tokio::sync::mpsc;

use crate::ports::disk::{Disk, DiskError, FsUsage};
use crate::ports::docker::{
    BuildCachePruned, ContainerDetails, ContainerInfo, ContainerState, DataUsage, DockerEngine,
    DockerError, DockerEvent, EngineInfo, EventAction, EventScope, ImageDetails, ImageInfo,
    Removed, VolumeInfo,
};
use crate::shared::reference::{familiar, repo_of};

/// The address the fake says it is at.
pub const FAKE_HOST: &str = "unix:///fake.sock";

/// A fixed "now" for tests: 2026-06-01T12:00:00Z.
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).single().unwrap()
}

/// `now()` minus `hours`.
pub fn hours_ago(hours: i64) -> DateTime<Utc> {
    now() - chrono::Duration::hours(hours)
}

/// An image with ID `sha256:<id>` (padded), `tags`, created `age_h` hours ago.
pub fn image(id: &str, tags: &[&str], age_h: i64, size: u64) -> ImageInfo {
    ImageInfo {
        id: full_id(id),
        parent_id: None,
        repo_tags: tags.iter().map(|t| t.to_string()).collect(),
        repo_digests: Vec::new(),
        created: hours_ago(age_h),
        size,
    }
}

/// An event of the engine's log, `hours_ago` hours before `now()`.
pub fn event(
    scope: EventScope,
    action: &str,
    actor: &str,
    image: Option<&str>,
    hours_ago_: i64,
) -> DockerEvent {
    DockerEvent {
        scope,
        action: EventAction::parse(action),
        actor_id: actor.to_owned(),
        image: image.map(str::to_owned),
        name: None,
        time: Some(hours_ago(hours_ago_)),
    }
}

/// `sha256:` + `id` padded with zeros to 64 hex digits.
pub fn full_id(id: &str) -> String {
    format!("sha256:{id:0<64}")
}

pub fn container(
    id: &str,
    image_ref: &str,
    image_id: &str,
    state: ContainerState,
) -> ContainerInfo {
    ContainerInfo {
        id: format!("{id:0<64}"),
        name: format!("c-{id}"),
        image: image_ref.to_owned(),
        image_id: full_id(image_id),
        state,
        created: hours_ago(48),
        labels: BTreeMap::new(),
        finished_at: None,
    }
}

type Feed = mpsc::UnboundedSender<Result<DockerEvent, DockerError>>;

#[derive(Debug, Default)]
pub struct FakeState {
    pub images: Vec<ImageInfo>,
    pub containers: Vec<ContainerInfo>,
    pub volumes: Vec<VolumeInfo>,
    pub disk: Option<FsUsage>,
    /// Reference → error returned by `remove_image` for it (once consumed: stays).
    pub image_faults: HashMap<String, DockerError>,
    /// Every reference `remove_image` was called with, in order.
    pub removals: Vec<String>,
    pub calls: u64,
    /// Every call fails with `Unreachable` (and an open event stream ends on `down`).
    pub unreachable: bool,
    /// How often `connect` was called.
    pub connects: usize,
    /// Each opened event stream's sender; a stream with no sender left ends.
    pub feeds: Vec<Feed>,
    /// `since` of each opened event stream.
    pub opened: Vec<Option<DateTime<Utc>>>,
    /// Streams opened while true never yield anything (bollard#113).
    pub stall: bool,
    /// The engine's buffered event log `replay_events` answers from (oldest first);
    /// `tag_image` appends to it, tests add pulls and loads.
    pub event_log: Vec<DockerEvent>,
    /// When the fake's own actions happen (`tag_image`'s event, `LastTagTime`);
    /// `now()` when unset.
    pub clock: Option<DateTime<Utc>>,
    /// Image ID → `LastTagTime`, set by `tag_image`.
    pub last_tag_time: HashMap<String, DateTime<Utc>>,
    /// Image ID → unique size `data_usage` reports (default: the image's size).
    pub unique_sizes: HashMap<String, u64>,
    /// Each image inspection takes this long first (a busy engine; time is paused in tests).
    pub inspect_delay: Option<Duration>,
    /// `(since, until)` of every `replay_events` call, in order.
    pub replays: Vec<(DateTime<Utc>, DateTime<Utc>)>,
}

#[derive(Debug, Default)]
pub struct FakeDocker {
    pub state: Mutex<FakeState>,
}

impl FakeDocker {
    pub fn new(images: Vec<ImageInfo>, containers: Vec<ContainerInfo>) -> Self {
        Self {
            state: Mutex::new(FakeState {
                images,
                containers,
                ..Default::default()
            }),
        }
    }

    pub fn with_disk(self, used_bytes: u64, total_bytes: u64) -> Self {
        self.lock().disk = Some(FsUsage {
            total_bytes,
            used_bytes,
            total_inodes: 1_000_000,
            used_inodes: 1000,
        });
        self
    }

    /// Change the state in place.
    pub fn with(&self, f: impl FnOnce(&mut FakeState)) {
        f(&mut self.lock());
    }

    pub fn fault(&self, reference: &str, error: DockerError) {
        self.lock().image_faults.insert(reference.to_owned(), error);
    }

    pub fn image_ids(&self) -> Vec<String> {
        self.lock().images.iter().map(|i| i.id.clone()).collect()
    }

    pub fn removals(&self) -> Vec<String> {
        self.lock().removals.clone()
    }

    /// Send `event` on the most recently opened stream.
    pub fn emit(&self, event: DockerEvent) {
        if let Some(tx) = self.lock().feeds.last() {
            let _ = tx.send(Ok(event));
        }
    }

    /// The engine goes away (or comes back): calls fail, open streams end.
    pub fn set_up(&self, up: bool) {
        let mut s = self.lock();
        s.unreachable = !up;
        if !up {
            s.feeds.clear();
        }
    }

    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn enter(&self) -> Result<MutexGuard<'_, FakeState>, DockerError> {
        let mut s = self.lock();
        s.calls += 1;
        if s.unreachable {
            return Err(unreachable());
        }
        Ok(s)
    }
}

fn unreachable() -> DockerError {
    DockerError::Unreachable {
        host: FAKE_HOST.into(),
        message: "connection refused".into(),
    }
}

fn drop_image(s: &mut FakeState, idx: usize) {
    let img = s.images.remove(idx);
    if let Some(d) = s.disk.as_mut() {
        d.used_bytes = d.used_bytes.saturating_sub(img.size);
    }
}

fn short(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

/// Does `reference` (an ID or ID prefix, a `repo:tag`, a `repo@digest`, fully
/// qualified or familiar) name `image`?
fn names(image: &ImageInfo, reference: &str) -> bool {
    let reference = familiar(reference);
    if reference.starts_with("sha256:") {
        return image.id.starts_with(reference);
    }
    image.repo_tags.iter().any(|t| t == reference)
        || image.repo_digests.iter().any(|d| d == reference)
}

/// Tags, then digests: the engine's reference store for one image.
fn references(image: &ImageInfo) -> Vec<String> {
    image
        .repo_tags
        .iter()
        .chain(image.repo_digests.iter())
        .cloned()
        .collect()
}

/// moby's `isSingleReference`: at most one tag, and every reference (tags and
/// digests) in one repository. False for none.
pub fn is_single_reference(refs: &[String]) -> bool {
    let mut tags = refs.iter().filter(|r| !r.contains('@'));
    let tag = tags.next();
    if tags.next().is_some() {
        return false;
    }
    let Some(first) = tag.or(refs.first()) else {
        return false;
    };
    refs.iter().all(|r| repo_of(r) == repo_of(first))
}

/// moby's `checkImageDeleteConflict` without force: a child image, a container
/// of any state, and (with `references`) any reference left.
fn conflict(s: &FakeState, id: &str, references: bool) -> Result<(), DockerError> {
    let refuse = |message: String| {
        Err(DockerError::Conflict(format!(
            "conflict: unable to delete {} - {message}",
            short(id)
        )))
    };
    if s.images.iter().any(|i| i.parent_id.as_deref() == Some(id)) {
        return refuse("image has dependent child images".into());
    }
    if let Some(c) = s.containers.iter().find(|c| c.image_id == id) {
        return refuse(format!("image is being used by container {}", short(&c.id)));
    }
    let image = s.images.iter().find(|i| i.id == id);
    if references && image.is_some_and(|i| !references_of_empty(i)) {
        return refuse("image is referenced in multiple repositories".into());
    }
    Ok(())
}

fn references_of_empty(image: &ImageInfo) -> bool {
    image.repo_tags.is_empty() && image.repo_digests.is_empty()
}

/// Delete the image; its parents stay (the adapter sets `noprune`).
fn delete_one(s: &mut FakeState, id: &str, deleted: &mut Vec<String>) {
    if let Some(idx) = s.images.iter().position(|i| i.id == id) {
        drop_image(s, idx);
        deleted.push(id.to_owned());
    }
}

/// Docker's root directory, as the fake engine reports it.
pub const FAKE_ROOT_DIR: &str = "/var/lib/docker";

#[async_trait]
impl DockerEngine for FakeDocker {
    fn host(&self) -> &str {
        FAKE_HOST
    }
    async fn connect(&self) -> Result<(), DockerError> {
        let mut s = self.lock();
        s.connects += 1;
        if s.unreachable {
            return Err(unreachable());
        }
        Ok(())
    }
    async fn ping(&self) -> Result<(), DockerError> {
        drop(self.enter()?);
        Ok(())
    }
    /// The fake's root and the driver whose layout `gc` reads (its `Disk` has no
    /// layer store, so nothing is read).
    async fn engine_info(&self) -> Result<EngineInfo, DockerError> {
        drop(self.enter()?);
        Ok(EngineInfo {
            root_dir: Some(PathBuf::from(FAKE_ROOT_DIR)),
            storage_driver: Some("overlay2".to_owned()),
        })
    }
    async fn list_images(&self) -> Result<Vec<ImageInfo>, DockerError> {
        Ok(self.enter()?.images.clone())
    }
    async fn list_containers(&self) -> Result<Vec<ContainerInfo>, DockerError> {
        Ok(self.enter()?.containers.clone())
    }
    async fn inspect_container(&self, id: &str) -> Result<Option<ContainerDetails>, DockerError> {
        let s = self.enter()?;
        Ok(s.containers
            .iter()
            .find(|c| c.id == id)
            .map(|c| ContainerDetails {
                image_id: Some(c.image_id.clone()),
                finished_at: c.finished_at,
            }))
    }
    async fn inspect_image(&self, reference: &str) -> Result<Option<ImageDetails>, DockerError> {
        let delay = self.lock().inspect_delay;
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        let s = self.enter()?;
        Ok(s.images
            .iter()
            .find(|i| names(i, reference))
            .map(|i| ImageDetails {
                id: i.id.clone(),
                repo_tags: i.repo_tags.clone(),
                last_tag_time: s.last_tag_time.get(&i.id).copied(),
            }))
    }

    /// The engine's rules (see `crate::image_gc::executor` for where they come
    /// from); every one has a case in the contract suite (`tests/tests/gc_contract.rs`).
    async fn remove_image(&self, reference: &str) -> Result<Removed, DockerError> {
        let mut s = self.enter()?;
        s.removals.push(reference.to_owned());
        // The engine parses the reference and answers in the familiar form.
        let reference = familiar(reference);
        if let Some(e) = s.image_faults.get(reference) {
            return Err(e.clone());
        }
        let by_id = reference.starts_with("sha256:");
        let Some(idx) = s.images.iter().position(|i| names(i, reference)) else {
            return Err(DockerError::NotFound(format!("No such image: {reference}")));
        };
        let id = s.images[idx].id.clone();
        let refs = references(&s.images[idx]);
        let mut removed = Removed::default();
        if by_id {
            if is_single_reference(&refs) {
                // Conflicts other than the references themselves.
                conflict(&s, &id, false)?;
                removed.untagged = refs;
                s.images[idx].repo_tags.clear();
                s.images[idx].repo_digests.clear();
            } else {
                conflict(&s, &id, true)?;
            }
        } else {
            if is_single_reference(&refs) {
                if let Some(c) = s.containers.iter().find(|c| c.image_id == id) {
                    return Err(DockerError::Conflict(format!(
                        "conflict: unable to remove repository reference \"{reference}\" (must force) - container {} is using its referenced image {}",
                        short(&c.id),
                        short(&id)
                    )));
                }
            }
            let mut gone = vec![reference.to_owned()];
            if !reference.contains('@') {
                let repo = repo_of(reference);
                let other_tag = refs
                    .iter()
                    .any(|r| r != reference && !r.contains('@') && repo_of(r) == repo);
                if !other_tag {
                    gone.extend(
                        refs.iter()
                            .filter(|r| r.contains('@') && repo_of(r) == repo)
                            .cloned(),
                    );
                }
            }
            let image = &mut s.images[idx];
            image.repo_tags.retain(|t| !gone.contains(t));
            image.repo_digests.retain(|d| !gone.contains(d));
            removed.untagged = gone;
            if refs.len() > removed.untagged.len() {
                return Ok(removed);
            }
            // The last reference went: delete the image quietly, i.e. keep it
            // (untagged) when it has a child or a container.
            if conflict(&s, &id, false).is_err() {
                return Ok(removed);
            }
        }
        delete_one(&mut s, &id, &mut removed.deleted);
        Ok(removed)
    }

    async fn tag_image(&self, id: &str, repo: &str, tag: &str) -> Result<(), DockerError> {
        let mut s = self.enter()?;
        let Some(idx) = s.images.iter().position(|i| names(i, id)) else {
            return Err(DockerError::NotFound(format!("No such image: {id}")));
        };
        let reference = format!("{}:{tag}", familiar(repo));
        for image in &mut s.images {
            image.repo_tags.retain(|t| *t != reference);
        }
        s.images[idx].repo_tags.push(reference.clone());
        // As the engine does: the tag event names the image by ID, and the tag API
        // (unlike a pull or a load) sets `LastTagTime`.
        let at = s.clock.unwrap_or_else(now);
        let image_id = s.images[idx].id.clone();
        s.last_tag_time.insert(image_id.clone(), at);
        s.event_log.push(DockerEvent {
            scope: EventScope::Image,
            action: EventAction::Tag,
            actor_id: image_id,
            image: None,
            name: Some(reference),
            time: Some(at),
        });
        Ok(())
    }
    async fn remove_container(&self, id: &str) -> Result<(), DockerError> {
        let mut s = self.enter()?;
        let Some(idx) = s.containers.iter().position(|c| c.id == id) else {
            return Err(DockerError::NotFound(id.to_owned()));
        };
        if s.containers[idx].state == ContainerState::Running {
            return Err(DockerError::Conflict(
                "cannot remove a running container".into(),
            ));
        }
        s.containers.remove(idx);
        Ok(())
    }
    async fn list_dangling_volumes(&self) -> Result<Vec<VolumeInfo>, DockerError> {
        Ok(self.enter()?.volumes.clone())
    }
    async fn remove_volume(&self, name: &str) -> Result<(), DockerError> {
        let mut s = self.enter()?;
        let before = s.volumes.len();
        s.volumes.retain(|v| v.name != name);
        if s.volumes.len() == before {
            return Err(DockerError::NotFound(name.to_owned()));
        }
        Ok(())
    }
    async fn prune_build_cache(
        &self,
        _older_than: Duration,
    ) -> Result<BuildCachePruned, DockerError> {
        drop(self.enter()?);
        Ok(BuildCachePruned::default())
    }
    fn events(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> BoxStream<'static, Result<DockerEvent, DockerError>> {
        let mut s = self.lock();
        s.calls += 1;
        s.opened.push(since);
        let (tx, mut rx) = mpsc::unbounded_channel();
        if s.unreachable {
            let _ = tx.send(Err(unreachable()));
        } else if s.stall {
            // Keep the sender out of reach: the stream stays open and silent.
            std::mem::forget(tx);
        } else {
            s.feeds.push(tx);
        }
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
    }
    async fn replay_events(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<DockerEvent>, DockerError> {
        let mut s = self.enter()?;
        s.replays.push((since, until));
        // The engine keeps its last 256 events; `since`/`until` are inclusive.
        let kept = s.event_log.len().saturating_sub(256);
        Ok(s.event_log[kept..]
            .iter()
            .filter(|e| e.time.is_some_and(|t| t >= since && t <= until))
            .cloned()
            .collect())
    }

    /// Every image's unique size is its size (the fake has no layers), unless
    /// `unique_sizes` says otherwise; no build cache.
    async fn data_usage(&self) -> Result<DataUsage, DockerError> {
        let s = self.enter()?;
        let unique_sizes = s
            .images
            .iter()
            .map(|i| {
                let unique = s.unique_sizes.get(&i.id).copied().unwrap_or(i.size);
                (i.id.clone(), unique)
            })
            .collect();
        Ok(DataUsage {
            unique_sizes,
            build_cache: Vec::new(),
        })
    }
    fn api_calls(&self) -> u64 {
        self.lock().calls
    }
}

/// The fake engine's disk: what `with_disk` set, shrinking as images go.
impl Disk for FakeDocker {
    fn usage(&self, path: &Path) -> Result<FsUsage, DiskError> {
        self.lock().disk.ok_or_else(|| no_disk(path))
    }
}

fn no_disk(path: &Path) -> DiskError {
    DiskError {
        path: path.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "no disk in this fake"),
    }
}

/// A disk alone: fixed usage (or none, then every measure fails), and the paths
/// it was asked about.
#[derive(Debug, Default)]
pub struct FakeDisk {
    pub usage: Mutex<Option<FsUsage>>,
    pub measured: Mutex<Vec<PathBuf>>,
}

impl FakeDisk {
    pub fn new(usage: Option<FsUsage>) -> Self {
        Self {
            usage: Mutex::new(usage),
            measured: Mutex::default(),
        }
    }
}

impl Disk for FakeDisk {
    fn usage(&self, path: &Path) -> Result<FsUsage, DiskError> {
        self.measured
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(path.to_owned());
        self.usage
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .ok_or_else(|| no_disk(path))
    }
}
