//! How many of the ordered candidates this pass deletes: all of them by default,
//! none in disk-pressure mode while usage is not above high water, and never more
//! than `--max-deletions`. Above high water the executor re-measures and stops at
//! low water; the plan carries the estimate the image sizes suggest.

use super::DiskPlan;
use crate::config::value::Watermark;
use crate::image_gc::policy::Policy;
use crate::image_gc::reason::ImageReason;
use crate::ports::disk::FsUsage;
use crate::ports::docker::ImageInfo;

/// The cut through the candidate list.
pub(super) struct Cut {
    /// The first `deletable` candidates are deleted…
    pub deletable: usize,
    /// …the others are kept for this reason.
    pub held: ImageReason,
    pub disk: DiskPlan,
}

pub(super) fn cut(
    images: &[ImageInfo],
    candidates: &[usize],
    policy: &Policy,
    usage: Option<FsUsage>,
) -> Cut {
    let max = policy.max_deletions;
    let capped = Cut {
        deletable: max.map_or(candidates.len(), |max| {
            candidates
                .len()
                .min(usize::try_from(max).unwrap_or(usize::MAX))
        }),
        held: ImageReason::MaxDeletions {
            max: max.unwrap_or(0),
        },
        disk: DiskPlan::Off,
    };
    let Some(marks) = policy.disk else {
        return capped;
    };
    match usage.filter(|u| u.above(&marks.high)) {
        Some(usage) => {
            let sizes: Vec<u64> = candidates.iter().map(|&i| images[i].size).collect();
            let estimated = estimate_deletions(&marks.low, &usage, &sizes).min(capped.deletable);
            Cut {
                disk: DiskPlan::Pressure {
                    low: marks.low,
                    usage,
                    estimated,
                },
                ..capped
            }
        }
        None => Cut {
            deletable: 0,
            held: ImageReason::BelowHighWater { high: marks.high },
            disk: DiskPlan::Off,
        },
    }
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
