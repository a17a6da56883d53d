//! The pure planner: `plan(&Snapshot, &Policy, now) -> Plan`. Decides, for every
//! image (and container and volume when asked), delete or keep, each with its
//! reason, and orders the deletions. No I/O, no clock, no SDK types. The steps are
//! the submodules: `containers` (containers and volumes first, as a removed
//! container frees its image), `protect` (the protection rules), `order`
//! (dangling, least recently used, largest, children before parents) and `disk`
//! (`--max-age`, eviction by watermarks or `--ensure-free`, and the deletion cap).
//! Ages come from `super::age`.

mod containers;
pub mod disk;
mod order;
mod protect;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::policy::{DiskGoal, Policy};
use super::reason::{ContainerReason, ImageReason, VolumeReason};
use super::snapshot::Snapshot;
use crate::config::value::Watermark;
use crate::ports::disk::FsUsage;
use crate::shared::reference::short_id;

/// Delete or keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Delete,
    Keep,
}

/// One image's decision.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageEntry {
    pub id: String,
    pub tags: Vec<String>,
    /// `repo@sha256:…` references: deleting the image must remove them too.
    pub digests: Vec<String>,
    pub size: u64,
    pub action: Action,
    pub reason: ImageReason,
    /// Later of creation and last use: what "least recently used" orders by.
    pub last_used: DateTime<Utc>,
    pub parent_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContainerEntry {
    pub id: String,
    pub name: String,
    pub image: String,
    pub action: Action,
    pub reason: ContainerReason,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VolumeEntry {
    pub name: String,
    pub action: Action,
    pub reason: VolumeReason,
}

/// Disk-pressure mode as planned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DiskPlan {
    /// No eviction: every deletion of the plan goes.
    Off,
    /// Usage at the snapshot triggered `goal`: the first `unconditional` deletions
    /// (stale, `--max-age`) go whatever the disk; the rest are evicted in order, the
    /// executor re-measuring after each, until `disk::eviction_stop` says so.
    /// `estimated` is how many evictions the image sizes suggest; a dry run reports
    /// that many.
    Pressure {
        goal: DiskGoal,
        /// High water, when watermarks are set.
        high: Option<Watermark>,
        usage: FsUsage,
        unconditional: usize,
        estimated: usize,
    },
}

/// The whole decision. Image entries: deletions first, in execution order, then
/// the kept images in listing order.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub images: Vec<ImageEntry>,
    pub containers: Vec<ContainerEntry>,
    pub volumes: Vec<VolumeEntry>,
    pub disk: DiskPlan,
}

impl Plan {
    pub fn deletions(&self) -> impl Iterator<Item = &ImageEntry> {
        self.images.iter().filter(|e| e.action == Action::Delete)
    }
}

fn since(now: DateTime<Utc>, then: DateTime<Utc>) -> Duration {
    (now - then).to_std().unwrap_or(Duration::ZERO)
}

/// Plan one GC pass.
pub fn plan(snapshot: &Snapshot, policy: &Policy, now: DateTime<Utc>) -> Plan {
    // `--max-deletions` caps every kind together, spent in the executor's order:
    // containers, images, volumes.
    let max = policy.max_deletions;
    let mut containers = containers::plan_containers(&snapshot.containers, policy, now);
    let mut budget = max.map(|m| usize::try_from(m).unwrap_or(usize::MAX));
    for c in containers.iter_mut().filter(|c| c.action == Action::Delete) {
        match budget.as_mut() {
            Some(0) => {
                c.action = Action::Keep;
                c.reason = ContainerReason::MaxDeletions {
                    max: max.unwrap_or(0),
                };
            }
            Some(left) => *left -= 1,
            None => {}
        }
    }
    let mut volumes = containers::plan_volumes(&snapshot.volumes, policy);
    let removed: HashSet<&str> = containers
        .iter()
        .filter(|c| c.action == Action::Delete)
        .map(|c| c.id.as_str())
        .collect();
    let image_policy = Policy {
        max_deletions: budget.map(|b| u32::try_from(b).unwrap_or(u32::MAX)),
        ..policy.clone()
    };
    let (mut images, disk) = plan_images(snapshot, &image_policy, &removed, now);
    if let Some(left) = budget.as_mut() {
        for e in &mut images {
            if let ImageReason::MaxDeletions { max: shown } = &mut e.reason {
                // The reason names the user's cap, not what was left of it.
                *shown = max.unwrap_or(0);
            }
        }
        *left = left.saturating_sub(images.iter().filter(|e| e.action == Action::Delete).count());
    }
    for v in volumes.iter_mut().filter(|v| v.action == Action::Delete) {
        match budget.as_mut() {
            Some(0) => {
                v.action = Action::Keep;
                v.reason = VolumeReason::MaxDeletions {
                    max: max.unwrap_or(0),
                };
            }
            Some(left) => *left -= 1,
            None => {}
        }
    }
    Plan {
        images,
        containers,
        volumes,
        disk,
    }
}

/// The image part: protect, order the rest, cut by disk mode and the cap.
fn plan_images(
    snapshot: &Snapshot,
    policy: &Policy,
    removed_containers: &HashSet<&str>,
    now: DateTime<Utc>,
) -> (Vec<ImageEntry>, DiskPlan) {
    let images = &snapshot.images;
    // The latest of creation, the engine's sightings and the daemon's record; an
    // image nothing dates (a future creation time only) is unknown: oldest.
    let last_used: Vec<DateTime<Utc>> = images
        .iter()
        .map(|i| {
            super::age::last_use(
                i.created,
                snapshot.engine_seen.get(&i.id).copied(),
                snapshot.last_use.get(&i.id).copied(),
                now,
            )
            .unwrap_or(DateTime::UNIX_EPOCH)
        })
        .collect();
    let by_id: HashMap<&str, usize> = images
        .iter()
        .enumerate()
        .map(|(i, img)| (img.id.as_str(), i))
        .collect();
    let users = protect::users(&snapshot.containers, removed_containers);
    let mut protection = protect::protection(images, &users, &last_used, policy, now);
    protect::protect_parents(images, &by_id, &mut protection);
    let candidates = order::candidates(images, &protection, &last_used, &by_id);
    let selection = disk::select(
        images,
        &candidates,
        &last_used,
        &by_id,
        policy,
        snapshot.disk,
        now,
    );

    let entry = |i: usize, action: Action, reason: ImageReason| ImageEntry {
        id: images[i].id.clone(),
        tags: images[i].repo_tags.clone(),
        digests: images[i].repo_digests.clone(),
        size: images[i].size,
        action,
        reason,
        last_used: last_used[i],
        parent_id: images[i].parent_id.clone(),
    };
    let mut entries = Vec::with_capacity(images.len());
    let mut kept: Vec<(usize, ImageReason)> = Vec::new();
    for (i, action, reason) in selection.decisions {
        match action {
            Action::Delete => entries.push(entry(i, Action::Delete, reason)),
            Action::Keep => kept.push((i, reason)),
        }
    }
    kept.extend(
        protection
            .into_iter()
            .enumerate()
            .filter_map(|(i, r)| r.map(|r| (i, r))),
    );
    kept.sort_by_key(|(i, _)| *i);
    for (i, reason) in kept {
        tracing::debug!(image = %short_id(&images[i].id), reason = %reason, "kept");
        entries.push(entry(i, Action::Keep, reason));
    }
    (entries, selection.disk)
}

#[cfg(test)]
#[path = "planner_tests.rs"]
mod tests;
