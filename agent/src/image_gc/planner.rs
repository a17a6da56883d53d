//! The pure planner: `plan(&Snapshot, &Policy, now) -> Plan`. Decides, for every
//! image (and container and volume when asked), delete or keep, each with its
//! `Reason`, and orders the deletions: dangling first, then least recently used,
//! then largest, children before their parents. No I/O, no clock, no SDK types.

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::policy::{
    ecs_agent_matcher, repo_of, short_id, Policy, CREATED_CONTAINER_MIN_AGE, ECS_TASK_LABEL,
};
use super::snapshot::Snapshot;
use crate::ports::docker::{ContainerInfo, ContainerState, FsUsage, ImageInfo};
use crate::config::value::{format_duration, Watermark};

/// Delete or keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Delete,
    Keep,
}

/// Why an item is deleted or kept. `Display` gives the strings SPEC lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Protected: a container of any state references the image by ID.
    InUse {
        container: String,
    },
    Excluded {
        pattern: String,
    },
    EcsAgent,
    Young {
        min_age: Duration,
    },
    NewestOfRepo {
        keep: u32,
        repo: String,
    },
    /// Legacy builder: the parent of a protected image.
    ParentOfKept {
        child: String,
    },
    /// Candidate reasons.
    Dangling,
    LeastRecentlyUsed,
    /// Disk-pressure mode, usage not above high water: nothing to do.
    BelowHighWater {
        high: String,
    },
    /// Disk-pressure mode: deletions stopped at low water.
    LowWaterReached {
        low: String,
    },
    MaxDeletions {
        max: u32,
    },
    /// Set by the executor: the engine answered 409.
    Conflict,
    /// Set by the executor: shutdown requested before this item.
    Cancelled,
    /// Set by the executor: any other failure.
    Failed {
        message: String,
    },
    // Containers and volumes.
    ContainerActive {
        state: &'static str,
    },
    EcsManaged,
    CreatedRecently,
    CreatedLongAgo,
    FinishedRecently {
        grace: Duration,
    },
    FinishedLongAgo {
        grace: Duration,
    },
    DanglingVolume,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InUse { container } => write!(f, "in use by container {container}"),
            Self::Excluded { pattern } => write!(f, "excluded by {pattern}"),
            Self::EcsAgent => f.write_str("ECS agent image"),
            Self::Young { min_age } => write!(f, "younger than {}", format_duration(*min_age)),
            Self::NewestOfRepo { keep, repo } => write!(f, "newest {keep} of repo {repo}"),
            Self::ParentOfKept { child } => write!(f, "parent of kept image {child}"),
            Self::Dangling => f.write_str("dangling"),
            Self::LeastRecentlyUsed => f.write_str("least recently used"),
            Self::BelowHighWater { high } => write!(f, "disk usage not above high water {high}"),
            Self::LowWaterReached { low } => write!(f, "disk usage at or below low water {low}"),
            Self::MaxDeletions { max } => write!(f, "max deletions ({max}) reached"),
            Self::Conflict => f.write_str("conflict: in use"),
            Self::Cancelled => f.write_str("cancelled by shutdown"),
            Self::Failed { message } => write!(f, "failed: {message}"),
            Self::ContainerActive { state } => write!(f, "{state}"),
            Self::EcsManaged => f.write_str("managed by the ECS agent"),
            Self::CreatedRecently => f.write_str("created, not started, less than 24h ago"),
            Self::CreatedLongAgo => f.write_str("created, never started, over 24h ago"),
            Self::FinishedRecently { grace } => {
                write!(f, "finished less than {} ago", format_duration(*grace))
            }
            Self::FinishedLongAgo { grace } => {
                write!(f, "finished over {} ago", format_duration(*grace))
            }
            Self::DanglingVolume => f.write_str("dangling"),
        }
    }
}

/// One image's decision.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageEntry {
    pub id: String,
    pub tags: Vec<String>,
    pub size: u64,
    pub action: Action,
    pub reason: Reason,
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
    pub reason: Reason,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VolumeEntry {
    pub name: String,
    pub action: Action,
    pub reason: Reason,
}

/// Disk-pressure mode as planned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DiskPlan {
    /// Default mode: delete every candidate.
    Off,
    /// Above high water: delete in order until at or below `low` (re-measured by
    /// the executor). `estimated` is how many deletions the image sizes suggest;
    /// a dry run reports that many.
    Pressure {
        low: Watermark,
        usage: FsUsage,
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
    let containers = plan_containers(&snapshot.containers, policy, now);
    let removed: HashSet<&str> = containers
        .iter()
        .filter(|c| c.action == Action::Delete)
        .map(|c| c.id.as_str())
        .collect();
    let volumes = if policy.volumes {
        snapshot
            .volumes
            .iter()
            .map(|v| {
                let ecs = v.labels.keys().any(|k| k.starts_with("com.amazonaws.ecs"));
                let (action, reason) = if ecs && !policy.remove_ecs_containers {
                    (Action::Keep, Reason::EcsManaged)
                } else {
                    (Action::Delete, Reason::DanglingVolume)
                };
                VolumeEntry {
                    name: v.name.clone(),
                    action,
                    reason,
                }
            })
            .collect()
    } else {
        Vec::new()
    };

    let images = &snapshot.images;
    // Containers that stay protect their image by ID: a tag that moved does not
    // matter, the container still holds the old image.
    let mut users: HashMap<&str, &ContainerInfo> = HashMap::new();
    for c in &snapshot.containers {
        if !removed.contains(c.id.as_str()) {
            users.entry(c.image_id.as_str()).or_insert(c);
        }
    }
    let last_used: Vec<DateTime<Utc>> = images
        .iter()
        .map(|i| match snapshot.last_use.get(&i.id) {
            Some(&used) if used > i.created => used,
            _ => i.created,
        })
        .collect();
    let newest = newest_per_repo(images, policy.keep_per_repo);
    let ecs = ecs_agent_matcher();

    let mut protection: Vec<Option<Reason>> = images
        .iter()
        .enumerate()
        .map(|(idx, img)| {
            if let Some(c) = users.get(img.id.as_str()) {
                return Some(Reason::InUse {
                    container: short_id(&c.id).to_owned(),
                });
            }
            let refs: Vec<String> = img
                .repo_tags
                .iter()
                .chain(img.repo_digests.iter())
                .cloned()
                .collect();
            if let Some(p) = policy.excludes.matching(&img.id, &refs) {
                return Some(Reason::Excluded {
                    pattern: p.to_owned(),
                });
            }
            if policy.protect_ecs_agent && img.repo_tags.iter().any(|t| ecs.is_match(t)) {
                return Some(Reason::EcsAgent);
            }
            if since(now, last_used[idx]) < policy.min_age {
                return Some(Reason::Young {
                    min_age: policy.min_age,
                });
            }
            newest.get(&idx).map(|repo| Reason::NewestOfRepo {
                keep: policy.keep_per_repo,
                repo: repo.clone(),
            })
        })
        .collect();

    // The engine refuses to delete the parent of an image that stays; say so up front.
    let by_id: HashMap<&str, usize> = images
        .iter()
        .enumerate()
        .map(|(i, img)| (img.id.as_str(), i))
        .collect();
    let protected_now: Vec<usize> = (0..images.len())
        .filter(|&i| protection[i].is_some())
        .collect();
    for start in protected_now {
        let mut child = start;
        while let Some(&parent) = images[child]
            .parent_id
            .as_deref()
            .and_then(|p| by_id.get(p))
        {
            if protection[parent].is_some() {
                break;
            }
            protection[parent] = Some(Reason::ParentOfKept {
                child: short_id(&images[child].id).to_owned(),
            });
            child = parent;
        }
    }

    let mut candidates: Vec<usize> = (0..images.len())
        .filter(|&i| protection[i].is_none())
        .collect();
    candidates.sort_by_key(|&i| {
        (
            !images[i].repo_tags.is_empty(),
            last_used[i],
            Reverse(images[i].size),
            images[i].id.as_str(),
        )
    });
    let candidates = children_first(images, &candidates, &by_id);

    let entry = |i: usize, action: Action, reason: Reason| ImageEntry {
        id: images[i].id.clone(),
        tags: images[i].repo_tags.clone(),
        size: images[i].size,
        action,
        reason,
        last_used: last_used[i],
        parent_id: images[i].parent_id.clone(),
    };
    let candidate_reason = |i: usize| {
        if images[i].repo_tags.is_empty() {
            Reason::Dangling
        } else {
            Reason::LeastRecentlyUsed
        }
    };

    let mut deletable = candidates.len();
    if let Some(max) = policy.max_deletions {
        deletable = deletable.min(usize::try_from(max).unwrap_or(usize::MAX));
    }
    let mut disk = DiskPlan::Off;
    let mut not_deleted: Vec<(usize, Reason)> = Vec::new();
    let mut below_high = false;
    if let Some(marks) = policy.disk {
        let pressure = snapshot
            .disk
            .filter(|u| above(&marks.high, u))
            .map(|usage| {
                let sizes: Vec<u64> = candidates.iter().map(|&i| images[i].size).collect();
                let estimated = estimate_deletions(&marks.low, &usage, &sizes).min(deletable);
                (usage, estimated)
            });
        match pressure {
            Some((usage, estimated)) => {
                disk = DiskPlan::Pressure {
                    low: marks.low,
                    usage,
                    estimated,
                };
            }
            None => {
                for &i in &candidates {
                    not_deleted.push((
                        i,
                        Reason::BelowHighWater {
                            high: marks.high.to_string(),
                        },
                    ));
                }
                below_high = true;
                deletable = 0;
            }
        }
    }

    let mut entries = Vec::with_capacity(images.len());
    for (n, &i) in candidates.iter().enumerate() {
        if n < deletable {
            entries.push(entry(i, Action::Delete, candidate_reason(i)));
        } else if !below_high {
            let max = policy.max_deletions.unwrap_or(0);
            not_deleted.push((i, Reason::MaxDeletions { max }));
        }
    }
    let mut kept: Vec<(usize, Reason)> = protection
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| r.map(|r| (i, r)))
        .collect();
    kept.extend(not_deleted);
    kept.sort_by_key(|(i, _)| *i);
    for (i, reason) in kept {
        tracing::debug!(image = %short_id(&images[i].id), reason = %reason, "kept");
        entries.push(entry(i, Action::Keep, reason));
    }
    Plan {
        images: entries,
        containers,
        volumes,
        disk,
    }
}

/// A dry run cannot re-measure the disk: in disk-pressure mode it reports the
/// deletions the image sizes suggest and keeps the rest at "low water".
pub fn apply_estimate(plan: &mut Plan) {
    if let DiskPlan::Pressure { low, estimated, .. } = plan.disk {
        for entry in plan
            .images
            .iter_mut()
            .filter(|e| e.action == Action::Delete)
            .skip(estimated)
        {
            entry.action = Action::Keep;
            entry.reason = Reason::LowWaterReached {
                low: low.to_string(),
            };
        }
    }
}

/// Is usage above `mark`? Percentages apply to bytes and to inodes.
pub fn above(mark: &Watermark, usage: &FsUsage) -> bool {
    mark.exceeded_by(usage.used_bytes, usage.total_bytes)
        || matches!(mark, Watermark::Percent(_))
            && mark.exceeded_by(usage.used_inodes, usage.total_inodes)
}

/// How many deletions (in order) the image sizes suggest reach `low`. Inode
/// pressure cannot be estimated from sizes, so then every candidate counts.
fn estimate_deletions(low: &Watermark, usage: &FsUsage, sizes: &[u64]) -> usize {
    if matches!(low, Watermark::Percent(_))
        && low.exceeded_by(usage.used_inodes, usage.total_inodes)
    {
        return sizes.len();
    }
    let mut used = usage.used_bytes;
    for (n, size) in sizes.iter().enumerate() {
        if !low.exceeded_by(used, usage.total_bytes) {
            return n;
        }
        used = used.saturating_sub(*size);
    }
    sizes.len()
}

/// Image index → the repository whose newest `keep` it is among. An image counts
/// once in every repository it has a tag in; dangling images belong to none.
fn newest_per_repo(images: &[ImageInfo], keep: u32) -> HashMap<usize, String> {
    let mut out = HashMap::new();
    if keep == 0 {
        return out;
    }
    let mut repos: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, img) in images.iter().enumerate() {
        let mut seen = HashSet::new();
        for tag in &img.repo_tags {
            let repo = repo_of(tag);
            if seen.insert(repo) {
                repos.entry(repo).or_default().push(i);
            }
        }
    }
    let mut names: Vec<&&str> = repos.keys().collect();
    names.sort();
    let keep = usize::try_from(keep).unwrap_or(usize::MAX);
    for name in names {
        let mut members = repos[*name].clone();
        members.sort_by_key(|&i| (Reverse(images[i].created), images[i].id.as_str()));
        for &i in members.iter().take(keep) {
            out.entry(i).or_insert_with(|| (*name).to_owned());
        }
    }
    out
}

/// Reorder `order` so that every image comes after its candidate children (the
/// engine refuses a parent while a child exists), otherwise keeping the order.
fn children_first(
    images: &[ImageInfo],
    order: &[usize],
    by_id: &HashMap<&str, usize>,
) -> Vec<usize> {
    let in_set: HashSet<usize> = order.iter().copied().collect();
    let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
    for &i in order {
        if let Some(&p) = images[i].parent_id.as_deref().and_then(|p| by_id.get(p)) {
            if in_set.contains(&p) {
                children.entry(p).or_default().push(i);
            }
        }
    }
    if children.is_empty() {
        return order.to_vec();
    }
    let mut out = Vec::with_capacity(order.len());
    let mut done = HashSet::new();
    for &i in order {
        // Iterative post-order: emit descendants, then the image itself.
        let mut stack = vec![(i, false)];
        while let Some((node, expanded)) = stack.pop() {
            if done.contains(&node) {
                continue;
            }
            if expanded {
                done.insert(node);
                out.push(node);
            } else {
                stack.push((node, true));
                for &c in children.get(&node).into_iter().flatten().rev() {
                    if !done.contains(&c) {
                        stack.push((c, false));
                    }
                }
            }
        }
    }
    out
}

fn plan_containers(
    containers: &[ContainerInfo],
    policy: &Policy,
    now: DateTime<Utc>,
) -> Vec<ContainerEntry> {
    if !policy.containers {
        return Vec::new();
    }
    containers
        .iter()
        .map(|c| {
            let (action, reason) = container_decision(c, policy, now);
            ContainerEntry {
                id: c.id.clone(),
                name: c.name.clone(),
                image: c.image.clone(),
                action,
                reason,
            }
        })
        .collect()
}

fn container_decision(c: &ContainerInfo, policy: &Policy, now: DateTime<Utc>) -> (Action, Reason) {
    if c.labels.contains_key(ECS_TASK_LABEL) && !policy.remove_ecs_containers {
        return (Action::Keep, Reason::EcsManaged);
    }
    match c.state {
        ContainerState::Created => {
            if since(now, c.created) > CREATED_CONTAINER_MIN_AGE {
                (Action::Delete, Reason::CreatedLongAgo)
            } else {
                (Action::Keep, Reason::CreatedRecently)
            }
        }
        ContainerState::Exited | ContainerState::Dead => {
            let grace = policy.container_grace;
            match c.finished_at {
                Some(f) if since(now, f) >= grace => {
                    (Action::Delete, Reason::FinishedLongAgo { grace })
                }
                _ => (Action::Keep, Reason::FinishedRecently { grace }),
            }
        }
        other => (
            Action::Keep,
            Reason::ContainerActive {
                state: other.as_str(),
            },
        ),
    }
}

#[cfg(test)]
#[path = "planner_tests.rs"]
mod tests;
