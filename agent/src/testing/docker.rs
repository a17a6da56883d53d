//! A fake Docker engine for planner and executor tests: images, containers and
//! volumes in memory, removal with the engine's 404/409 rules, scripted faults,
//! and a disk whose usage drops by the size of each deleted image.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};

use crate::image_gc::policy::repo_of;
use crate::ports::docker::{
    ContainerInfo, ContainerState, DockerApi, DockerError, FsUsage, ImageInfo, VolumeInfo,
};

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
    pub unreachable: bool,
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
        self.state.lock().unwrap().disk = Some(FsUsage {
            total_bytes,
            used_bytes,
            total_inodes: 1_000_000,
            used_inodes: 1000,
        });
        self
    }

    pub fn fault(&self, reference: &str, error: DockerError) {
        self.state
            .lock()
            .unwrap()
            .image_faults
            .insert(reference.to_owned(), error);
    }

    pub fn image_ids(&self) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .images
            .iter()
            .map(|i| i.id.clone())
            .collect()
    }

    pub fn removals(&self) -> Vec<String> {
        self.state.lock().unwrap().removals.clone()
    }

    fn enter(&self) -> Result<std::sync::MutexGuard<'_, FakeState>, DockerError> {
        let mut s = self.state.lock().unwrap();
        s.calls += 1;
        if s.unreachable {
            return Err(DockerError::Unreachable {
                host: "unix:///fake.sock".into(),
                message: "connection refused".into(),
            });
        }
        Ok(s)
    }
}

fn drop_image(s: &mut FakeState, idx: usize) {
    let img = s.images.remove(idx);
    if let Some(d) = s.disk.as_mut() {
        d.used_bytes = d.used_bytes.saturating_sub(img.size);
    }
}

#[async_trait]
impl DockerApi for FakeDocker {
    async fn list_images(&self) -> Result<Vec<ImageInfo>, DockerError> {
        Ok(self.enter()?.images.clone())
    }
    async fn list_containers(&self) -> Result<Vec<ContainerInfo>, DockerError> {
        Ok(self.enter()?.containers.clone())
    }
    async fn container_finished_at(&self, id: &str) -> Result<Option<DateTime<Utc>>, DockerError> {
        let s = self.enter()?;
        s.containers
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.finished_at)
            .ok_or_else(|| DockerError::NotFound(id.to_owned()))
    }
    async fn docker_root_dir(&self) -> Result<PathBuf, DockerError> {
        drop(self.enter()?);
        Ok(PathBuf::from("/var/lib/docker"))
    }
    fn fs_usage(&self, _path: &Path) -> Result<FsUsage, DockerError> {
        self.state
            .lock()
            .unwrap()
            .disk
            .ok_or_else(|| DockerError::Local("no disk in this fake".into()))
    }
    async fn image_id_of(&self, reference: &str) -> Result<Option<String>, DockerError> {
        let s = self.enter()?;
        Ok(s.images
            .iter()
            .find(|i| i.id == reference || i.repo_tags.iter().any(|t| t == reference))
            .map(|i| i.id.clone()))
    }

    async fn remove_image(&self, reference: &str) -> Result<(), DockerError> {
        let mut s = self.enter()?;
        s.removals.push(reference.to_owned());
        if let Some(e) = s.image_faults.get(reference) {
            return Err(e.clone());
        }
        if reference.starts_with("sha256:") {
            let Some(idx) = s.images.iter().position(|i| i.id == reference) else {
                return Err(DockerError::NotFound(reference.to_owned()));
            };
            if s.containers.iter().any(|c| c.image_id == reference) {
                return Err(DockerError::Conflict(
                    "image is being used by a container".into(),
                ));
            }
            let repos: std::collections::HashSet<&str> =
                s.images[idx].repo_tags.iter().map(|t| repo_of(t)).collect();
            if repos.len() > 1 {
                return Err(DockerError::Conflict(
                    "image is referenced in multiple repositories".into(),
                ));
            }
            if s.images
                .iter()
                .any(|i| i.parent_id.as_deref() == Some(reference))
            {
                return Err(DockerError::Conflict(
                    "image has dependent child images".into(),
                ));
            }
            drop_image(&mut s, idx);
            return Ok(());
        }
        let Some(idx) = s
            .images
            .iter()
            .position(|i| i.repo_tags.iter().any(|t| t == reference))
        else {
            return Err(DockerError::NotFound(reference.to_owned()));
        };
        let id = s.images[idx].id.clone();
        let last_tag = s.images[idx].repo_tags.len() == 1;
        if last_tag && s.containers.iter().any(|c| c.image_id == id) {
            return Err(DockerError::Conflict(
                "container is using its referenced image".into(),
            ));
        }
        s.images[idx].repo_tags.retain(|t| t != reference);
        if last_tag {
            drop_image(&mut s, idx);
        }
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
    async fn prune_build_cache(&self, _older_than: Duration) -> Result<u64, DockerError> {
        drop(self.enter()?);
        Ok(0)
    }
    fn api_calls(&self) -> u64 {
        self.state.lock().unwrap().calls
    }
}
