//! The executor: carries a plan out through the Docker port and records what
//! happened on each entry. Never forces: 404 means already gone (fine), 409 means
//! the item became in use (kept, `conflict: in use`, the run goes on). Deletes in
//! chunks with bounded concurrency; between chunks it honours cancellation and, in
//! disk-pressure mode, re-measures the filesystem and stops at low water.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use tokio_util::sync::CancellationToken;

use super::planner::{
    above, Action, ContainerEntry, DiskPlan, ImageEntry, Plan, Reason, VolumeEntry,
};
use super::policy::{repo_of, short_id};
use crate::ports::docker::{DockerApi, DockerError, FsUsage};

/// How to execute.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    pub concurrency: usize,
    /// Docker's root directory, re-measured in disk-pressure mode and at the end.
    pub root_dir: Option<PathBuf>,
    /// Prune build cache older than this (`--build-cache`).
    pub build_cache: Option<Duration>,
}

/// Totals of one execution.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecStats {
    pub images_deleted: u64,
    pub containers_deleted: u64,
    pub volumes_deleted: u64,
    /// Sum of the sizes of deleted images plus build cache reclaimed.
    pub reclaimed_bytes: u64,
    pub build_cache_bytes: Option<u64>,
    pub conflicts: u64,
    pub failures: u64,
    pub disk_after: Option<FsUsage>,
}

/// What happened to one image.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Deleted,
    AlreadyGone,
    Conflict,
    Failed(String),
}

/// In default mode a chunk is large (cancellation is still checked between
/// chunks); in disk-pressure mode it is one round of concurrent deletes so usage
/// is re-measured often.
const DEFAULT_CHUNK_ROUNDS: usize = 16;

/// Execute `plan`, updating each entry's action and reason to what happened.
pub async fn execute(
    api: &dyn DockerApi,
    plan: &mut Plan,
    options: &ExecOptions,
    cancel: &CancellationToken,
) -> ExecStats {
    let mut stats = ExecStats::default();
    let concurrency = options.concurrency.max(1);

    stats.containers_deleted =
        remove_all(api, &mut plan.containers, concurrency, cancel, &mut stats).await;
    remove_images(api, plan, options, concurrency, cancel, &mut stats).await;
    stats.volumes_deleted =
        remove_all(api, &mut plan.volumes, concurrency, cancel, &mut stats).await;

    if let Some(older_than) = options.build_cache {
        if !cancel.is_cancelled() {
            match api.prune_build_cache(older_than).await {
                Ok(bytes) => {
                    stats.build_cache_bytes = Some(bytes);
                    stats.reclaimed_bytes += bytes;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "build cache prune failed");
                    stats.failures += 1;
                }
            }
        }
    }
    stats.disk_after = options
        .root_dir
        .as_deref()
        .and_then(|dir| api.fs_usage(dir).ok());
    stats
}

async fn remove_images(
    api: &dyn DockerApi,
    plan: &mut Plan,
    options: &ExecOptions,
    concurrency: usize,
    cancel: &CancellationToken,
    stats: &mut ExecStats,
) {
    let pressure = match plan.disk {
        DiskPlan::Pressure { low, .. } => Some(low),
        DiskPlan::Off => None,
    };
    let chunk_size = if pressure.is_some() {
        concurrency
    } else {
        concurrency * DEFAULT_CHUNK_ROUNDS
    };
    let todo: Vec<usize> = (0..plan.images.len())
        .filter(|&i| plan.images[i].action == Action::Delete)
        .collect();
    let chunks = chunk(&plan.images, &todo, chunk_size);
    let mut stop: Option<Reason> = None;
    for chunk in chunks {
        if stop.is_none() && cancel.is_cancelled() {
            stop = Some(Reason::Cancelled);
        }
        if let Some(reason) = &stop {
            for &i in &chunk {
                plan.images[i].action = Action::Keep;
                plan.images[i].reason = reason.clone();
            }
            continue;
        }
        let entries: Vec<(usize, ImageEntry)> =
            chunk.iter().map(|&i| (i, plan.images[i].clone())).collect();
        let results: Vec<(usize, Outcome)> = stream::iter(entries)
            .map(|(i, entry)| async move { (i, delete_image(api, &entry).await) })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        for (i, outcome) in results {
            let entry = &mut plan.images[i];
            match outcome {
                Outcome::Deleted => {
                    tracing::info!(image = %short_id(&entry.id), reason = %entry.reason, size = entry.size, "deleted");
                    stats.images_deleted += 1;
                    stats.reclaimed_bytes += entry.size;
                }
                Outcome::AlreadyGone => {
                    tracing::debug!(image = %short_id(&entry.id), "already gone");
                }
                Outcome::Conflict => {
                    tracing::info!(image = %short_id(&entry.id), "kept: conflict, in use");
                    stats.conflicts += 1;
                    entry.action = Action::Keep;
                    entry.reason = Reason::Conflict;
                }
                Outcome::Failed(message) => {
                    tracing::warn!(image = %short_id(&entry.id), error = %message, "delete failed");
                    stats.failures += 1;
                    entry.action = Action::Keep;
                    entry.reason = Reason::Failed { message };
                }
            }
        }
        if let (Some(low), Some(dir)) = (pressure, options.root_dir.as_deref()) {
            match api.fs_usage(dir) {
                Ok(usage) if !above(&low, &usage) => {
                    tracing::info!(used_bytes = usage.used_bytes, low = %low, "low water reached");
                    stop = Some(Reason::LowWaterReached {
                        low: low.to_string(),
                    });
                }
                Ok(_) => {}
                Err(e) => {
                    // Cannot tell where we are: stop rather than delete blind.
                    tracing::warn!(error = %e, "disk re-measure failed; stopping");
                    stats.failures += 1;
                    stop = Some(Reason::Failed {
                        message: e.to_string(),
                    });
                }
            }
        }
    }
}

/// Split the ordered deletions into chunks; a parent never shares a chunk with
/// its child (children come first in the plan, so the child's chunk finishes before).
fn chunk(images: &[ImageEntry], todo: &[usize], size: usize) -> Vec<Vec<usize>> {
    let mut chunks = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut parents: HashSet<&str> = HashSet::new();
    for &i in todo {
        if current.len() >= size || parents.contains(images[i].id.as_str()) {
            chunks.push(std::mem::take(&mut current));
            parents.clear();
        }
        if let Some(p) = images[i].parent_id.as_deref() {
            parents.insert(p);
        }
        current.push(i);
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// Delete one image without force. Tags in a single repository go with the ID
/// (the engine untags them atomically, only if they still point to this ID);
/// tags in several repositories are removed tag by tag first, as the engine
/// refuses an unforced delete by ID then. Removing by tag acts on whatever the
/// tag names at that moment, so each tag is first checked to still name the
/// planned image: a tag moved to a newer image since the plan is left alone.
async fn delete_image(api: &dyn DockerApi, entry: &ImageEntry) -> Outcome {
    let repos: HashSet<&str> = entry.tags.iter().map(|t| repo_of(t)).collect();
    let mut removed_any = false;
    if repos.len() > 1 {
        for tag in &entry.tags {
            match api.image_id_of(tag).await {
                Ok(Some(id)) if id == entry.id => {}
                Ok(now) => {
                    tracing::debug!(
                        image = %short_id(&entry.id),
                        tag = %tag,
                        now = now.as_deref().map(short_id).unwrap_or("nothing"),
                        "tag moved since the plan; left alone"
                    );
                    continue;
                }
                Err(e) => return Outcome::Failed(e.to_string()),
            }
            match api.remove_image(tag).await {
                Ok(()) => removed_any = true,
                Err(DockerError::NotFound(_)) => {}
                Err(DockerError::Conflict(message)) => {
                    tracing::debug!(image = %short_id(&entry.id), tag = %tag, message = %message, "conflict");
                    return Outcome::Conflict;
                }
                Err(e) => return Outcome::Failed(e.to_string()),
            }
        }
    }
    match api.remove_image(&entry.id).await {
        Ok(()) => Outcome::Deleted,
        Err(DockerError::NotFound(_)) if removed_any => Outcome::Deleted,
        Err(DockerError::NotFound(_)) => Outcome::AlreadyGone,
        Err(DockerError::Conflict(message)) => {
            tracing::debug!(image = %short_id(&entry.id), message = %message, "conflict");
            Outcome::Conflict
        }
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// A container or volume entry of the plan: removed by one call each, in any order.
trait Removable {
    /// The name the engine knows it by.
    fn key(&self) -> &str;
    fn decision(&mut self) -> (&mut Action, &mut Reason);
    async fn remove(api: &dyn DockerApi, key: &str) -> Result<(), DockerError>;
    fn log_outcome(&self);
}

impl Removable for ContainerEntry {
    fn key(&self) -> &str {
        &self.id
    }
    fn decision(&mut self) -> (&mut Action, &mut Reason) {
        (&mut self.action, &mut self.reason)
    }
    async fn remove(api: &dyn DockerApi, key: &str) -> Result<(), DockerError> {
        api.remove_container(key).await
    }
    fn log_outcome(&self) {
        tracing::debug!(container = %short_id(&self.id), reason = %self.reason, "container");
    }
}

impl Removable for VolumeEntry {
    fn key(&self) -> &str {
        &self.name
    }
    fn decision(&mut self) -> (&mut Action, &mut Reason) {
        (&mut self.action, &mut self.reason)
    }
    async fn remove(api: &dyn DockerApi, key: &str) -> Result<(), DockerError> {
        api.remove_volume(key).await
    }
    fn log_outcome(&self) {
        tracing::debug!(volume = %self.name, reason = %self.reason, "volume");
    }
}

/// Remove the entries planned for deletion; returns how many are gone. An entry
/// that stays (cancelled, conflict, failure) is marked kept with the reason.
async fn remove_all<T: Removable>(
    api: &dyn DockerApi,
    entries: &mut [T],
    concurrency: usize,
    cancel: &CancellationToken,
    stats: &mut ExecStats,
) -> u64 {
    if cancel.is_cancelled() {
        mark_cancelled(entries.iter_mut().map(T::decision));
        return 0;
    }
    let todo: Vec<(usize, String)> = entries
        .iter_mut()
        .enumerate()
        .filter_map(|(i, e)| (*e.decision().0 == Action::Delete).then(|| (i, e.key().to_owned())))
        .collect();
    let results: Vec<(usize, Result<(), DockerError>)> = stream::iter(todo)
        .map(|(i, key)| async move { (i, T::remove(api, &key).await) })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut deleted = 0;
    for (i, result) in results {
        let entry = &mut entries[i];
        match settle(result, stats) {
            None => deleted += 1,
            Some(why) => {
                let (action, reason) = entry.decision();
                *action = Action::Keep;
                *reason = why;
            }
        }
        entry.log_outcome();
    }
    deleted
}

/// A container/volume removal result: `None` when gone (404 counts), else why kept.
fn settle(result: Result<(), DockerError>, stats: &mut ExecStats) -> Option<Reason> {
    match result {
        Ok(()) | Err(DockerError::NotFound(_)) => None,
        Err(DockerError::Conflict(_)) => {
            stats.conflicts += 1;
            Some(Reason::Conflict)
        }
        Err(e) => {
            stats.failures += 1;
            Some(Reason::Failed {
                message: e.to_string(),
            })
        }
    }
}

fn mark_cancelled<'a>(items: impl Iterator<Item = (&'a mut Action, &'a mut Reason)>) {
    for (action, reason) in items {
        if *action == Action::Delete {
            *action = Action::Keep;
            *reason = Reason::Cancelled;
        }
    }
}

#[cfg(test)]
#[path = "executor_tests.rs"]
mod tests;
