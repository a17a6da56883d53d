//! Which candidates this pass deletes, in one pass of both policies (kubelet's image
//! GC): first the stale ones — unused for longer than `--max-age` — whatever the
//! disk; then, when usage is above high water or short of `--ensure-free`, the rest
//! in LRU order until the goal is reached. Without either, every candidate goes;
//! with `--max-age` alone, only the stale ones. Never more than `--max-deletions`.
//!
//! The executor re-measures after every eviction and stops by [`eviction_stop`];
//! [`simulate`] applies the same rule to what each deletion is expected to free,
//! so a dry run reports what the real run does when the estimates are what the disk
//! frees: the plan's own estimate uses the listing's sizes, the dry run unique sizes
//! and inode estimates (`executor::dry_run`).

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{since, Action, DiskPlan};
use crate::config::value::Watermark;
use crate::image_gc::policy::{DiskGoal, Policy};
use crate::image_gc::reason::{ImageReason, Outcome};
use crate::ports::disk::FsUsage;
use crate::ports::docker::ImageInfo;
use crate::shared::reference::short_id;

/// The candidates in execution order, each with its decision.
pub(super) struct Selection {
    pub decisions: Vec<(usize, Action, ImageReason)>,
    pub disk: DiskPlan,
}

/// Decide the candidates (`ordered`: deletion order, children before parents).
pub(super) fn select(
    images: &[ImageInfo],
    ordered: &[usize],
    last_used: &[DateTime<Utc>],
    by_id: &HashMap<&str, usize>,
    policy: &Policy,
    usage: Option<FsUsage>,
    now: DateTime<Utc>,
) -> Selection {
    let stale = stale_flags(images, ordered, last_used, by_id, policy.max_age, now);
    let goal = if policy.evicts() {
        usage.and_then(|u| policy.disk_goal(&u).map(|g| (g, u)))
    } else {
        None
    };
    // Stale images first (they go whatever the disk), then the others; each part
    // keeps the candidate order, so children still come before parents.
    let (first, rest): (Vec<usize>, Vec<usize>) = ordered
        .iter()
        .partition(|&&i| stale.get(&i).is_some_and(|s| s.is_none()));
    let mut decisions = Vec::with_capacity(ordered.len());
    for &i in &first {
        let max_age = policy.max_age.unwrap_or(Duration::MAX);
        decisions.push((i, Action::Delete, ImageReason::Stale { max_age }));
    }
    for &i in &rest {
        let held_by_child = stale.get(&i).copied().flatten();
        let (action, reason) = match (policy.evicts(), goal, policy.max_age) {
            (true, Some(_), _) | (false, _, None) => (Action::Delete, candidate_reason(&images[i])),
            (true, None, _) => (Action::Keep, not_needed(policy)),
            (false, _, Some(max_age)) => match held_by_child {
                Some(child) => (
                    Action::Keep,
                    ImageReason::ParentOfKept {
                        child: short_id(&images[child].id).to_owned(),
                    },
                ),
                None => (Action::Keep, ImageReason::UsedWithinMaxAge { max_age }),
            },
        };
        decisions.push((i, action, reason));
    }
    // `--max-deletions`, spent in execution order.
    if let Some(max) = policy.max_deletions {
        let mut left = usize::try_from(max).unwrap_or(usize::MAX);
        for d in decisions.iter_mut().filter(|d| d.1 == Action::Delete) {
            if left == 0 {
                d.1 = Action::Keep;
                d.2 = ImageReason::MaxDeletions { max };
            } else {
                left -= 1;
            }
        }
    }
    let disk = match goal {
        Some((goal, usage)) => {
            let unconditional = decisions
                .iter()
                .take(first.len())
                .filter(|d| d.1 == Action::Delete)
                .count();
            let mut pressure = DiskPlan::Pressure {
                goal,
                high: policy.disk.map(|m| m.high),
                usage,
                unconditional,
                estimated: 0,
            };
            // The planner knows only the listing's sizes (shared layers in full); a
            // dry run re-estimates from unique sizes and inodes (`executor::dry_run`).
            let freed: Vec<Freed> = decisions
                .iter()
                .filter(|d| d.1 == Action::Delete)
                .map(|d| Freed::bytes(images[d.0].size))
                .collect();
            let (estimated, _) = simulate(&pressure, &freed);
            if let DiskPlan::Pressure { estimated: e, .. } = &mut pressure {
                *e = estimated;
            }
            pressure
        }
        None => DiskPlan::Off,
    };
    Selection { decisions, disk }
}

/// Why the non-stale candidates stay when no eviction is needed.
fn not_needed(policy: &Policy) -> ImageReason {
    match (policy.disk, policy.ensure_free) {
        (Some(marks), _) => ImageReason::BelowHighWater { high: marks.high },
        (None, Some(free)) => ImageReason::EnoughFree { free },
        (None, None) => ImageReason::LeastRecentlyUsed,
    }
}

/// With `--max-age`, the candidates unused for longer: `None` when they go in the
/// stale phase, `Some(child)` when one is the ancestor of a candidate that is not
/// stale (`child` is its own child on that line): the engine refuses a parent
/// before its child, so it waits for the child's fate. Without `--max-age`, empty.
fn stale_flags(
    images: &[ImageInfo],
    ordered: &[usize],
    last_used: &[DateTime<Utc>],
    by_id: &HashMap<&str, usize>,
    max_age: Option<Duration>,
    now: DateTime<Utc>,
) -> HashMap<usize, Option<usize>> {
    let Some(max_age) = max_age else {
        return HashMap::new();
    };
    let mut stale: HashMap<usize, Option<usize>> = ordered
        .iter()
        .filter(|&&i| since(now, last_used[i]) > max_age)
        .map(|&i| (i, None))
        .collect();
    let fresh: Vec<usize> = ordered
        .iter()
        .copied()
        .filter(|i| !stale.contains_key(i))
        .collect();
    for i in fresh {
        let mut child = i;
        while let Some(&parent) = images[child]
            .parent_id
            .as_deref()
            .and_then(|p| by_id.get(p))
        {
            match stale.get_mut(&parent) {
                Some(held @ None) => *held = Some(child),
                _ => break,
            }
            child = parent;
        }
    }
    stale
}

fn candidate_reason(image: &ImageInfo) -> ImageReason {
    if image.repo_tags.is_empty() {
        ImageReason::Dangling
    } else {
        ImageReason::LeastRecentlyUsed
    }
}

/// In disk-pressure mode, with `usage` measured after the stale deletions and
/// `evicted` evictions: why eviction stops here, or `None` to go on. Before the
/// first eviction (after a stale phase) it also stops when the stale deletions took
/// usage to or below high water.
pub fn eviction_stop(disk: &DiskPlan, usage: &FsUsage, evicted: usize) -> Option<Outcome> {
    let DiskPlan::Pressure {
        goal,
        high,
        unconditional,
        ..
    } = disk
    else {
        return None;
    };
    if goal.reached(usage) {
        return Some(goal_outcome(goal));
    }
    let short_of_free = goal
        .free
        .is_some_and(|f| !f.met_by(usage.free_bytes(), usage.free_inodes()));
    match high {
        Some(high)
            if evicted == 0 && *unconditional > 0 && !usage.above(high) && !short_of_free =>
        {
            Some(Outcome::NotAboveHighWater { high: *high })
        }
        _ => None,
    }
}

/// The outcome of the deletions a reached goal made unnecessary.
fn goal_outcome(goal: &DiskGoal) -> Outcome {
    match (goal.free, goal.low) {
        (Some(free), low) => Outcome::EnoughFree { free, low },
        (None, low) => Outcome::LowWaterReached {
            low: low.unwrap_or(Watermark::Percent(100.0)),
        },
    }
}

/// What one deletion is expected to free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freed {
    pub bytes: u64,
    /// `None`: not estimated (then no inode is counted as freed, by this deletion or
    /// any later one, so an inode goal is never estimated as reached).
    pub inodes: Option<u64>,
}

impl Freed {
    pub fn bytes(bytes: u64) -> Self {
        Self {
            bytes,
            inodes: None,
        }
    }
}

/// Apply [`eviction_stop`] to the planned deletions (in order) as if each freed
/// what `freed` says. Returns how many evictions happen and why the rest stop.
pub fn simulate(disk: &DiskPlan, freed: &[Freed]) -> (usize, Option<Outcome>) {
    let DiskPlan::Pressure {
        usage,
        unconditional,
        ..
    } = disk
    else {
        return (freed.len(), None);
    };
    let mut usage = *usage;
    let mut inodes_known = true;
    let mut free = |u: &mut FsUsage, f: Freed| {
        u.used_bytes = u.used_bytes.saturating_sub(f.bytes);
        inodes_known &= f.inodes.is_some();
        if inodes_known {
            u.used_inodes = u.used_inodes.saturating_sub(f.inodes.unwrap_or(0));
        }
    };
    let (first, rest) = freed.split_at((*unconditional).min(freed.len()));
    for &f in first {
        free(&mut usage, f);
    }
    if !first.is_empty() {
        if let Some(stop) = eviction_stop(disk, &usage, 0) {
            return (0, Some(stop));
        }
    }
    for (n, &f) in rest.iter().enumerate() {
        free(&mut usage, f);
        if let Some(stop) = eviction_stop(disk, &usage, n + 1) {
            return (n + 1, Some(stop));
        }
    }
    (rest.len(), None)
}
