//! Why the planner decided what it did (`ImageReason`, `ContainerReason`,
//! `VolumeReason`), and what then happened to an item the plan deletes (`Outcome`).
//! The two never mix: a plan keeps its reasons, an execution adds outcomes beside
//! it. `Display` gives the strings SPEC.md lists; it is tested once, here.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::value::{format_duration, FreeSpace, Watermark};
use crate::ports::disk::DiskError;
use crate::ports::docker::{ContainerState, DockerError};

/// Why an image is deleted or kept.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageReason {
    // Protected.
    /// A container of any state references the image by ID (short container ID).
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
    /// Legacy builder: the parent of a protected image (short child ID).
    ParentOfKept {
        child: String,
    },
    // Candidates.
    Dangling,
    LeastRecentlyUsed,
    /// `--max-age`: unused for longer than this; goes whatever the disk.
    Stale {
        max_age: Duration,
    },
    // Candidates the pass leaves alone.
    /// `--max-age` without disk targets: used within it.
    UsedWithinMaxAge {
        max_age: Duration,
    },
    /// `--ensure-free` alone: that much is free already.
    EnoughFree {
        free: FreeSpace,
    },
    /// Disk-pressure mode, usage not above high water: nothing to do.
    BelowHighWater {
        high: Watermark,
    },
    MaxDeletions {
        max: u32,
    },
}

impl fmt::Display for ImageReason {
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
            Self::Stale { max_age } => write!(f, "unused for over {}", format_duration(*max_age)),
            Self::UsedWithinMaxAge { max_age } => {
                write!(f, "used within max age {}", format_duration(*max_age))
            }
            Self::EnoughFree { free } => write!(f, "{} free already", free.describe()),
            Self::BelowHighWater { high } => write!(f, "disk usage not above high water {high}"),
            Self::MaxDeletions { max } => write!(f, "max deletions ({max}) reached"),
        }
    }
}

/// Why a container is removed or kept (`--containers`).
#[derive(Debug, Clone, PartialEq)]
pub enum ContainerReason {
    /// Running, paused, restarting…: never removed.
    Active {
        state: ContainerState,
    },
    /// Carries the ECS task label: left to the ECS agent.
    EcsManaged,
    /// `created`, never started, less than 24h ago (it may be about to start).
    CreatedRecently,
    CreatedLongAgo,
    FinishedRecently {
        grace: Duration,
    },
    FinishedLongAgo {
        grace: Duration,
    },
    /// `--max-deletions` was used up (it caps containers, images and volumes together).
    MaxDeletions {
        max: u32,
    },
}

impl fmt::Display for ContainerReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Active { state } => write!(f, "{state}"),
            Self::EcsManaged => f.write_str("managed by the ECS agent"),
            Self::CreatedRecently => f.write_str("created, not started, less than 24h ago"),
            Self::CreatedLongAgo => f.write_str("created, never started, over 24h ago"),
            Self::FinishedRecently { grace } => {
                write!(f, "finished less than {} ago", format_duration(*grace))
            }
            Self::FinishedLongAgo { grace } => {
                write!(f, "finished over {} ago", format_duration(*grace))
            }
            Self::MaxDeletions { max } => write!(f, "max deletions ({max}) reached"),
        }
    }
}

/// Why a dangling volume is removed or kept (`--volumes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeReason {
    Dangling,
    /// Carries an ECS label: left to the ECS agent.
    EcsManaged,
    /// `--max-deletions` was used up.
    MaxDeletions {
        max: u32,
    },
}

impl fmt::Display for VolumeReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dangling => f.write_str("dangling"),
            Self::EcsManaged => f.write_str("managed by the ECS agent"),
            Self::MaxDeletions { max } => write!(f, "max deletions ({max}) reached"),
        }
    }
}

/// What happened to one item the plan deletes.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Deleted,
    /// 404: someone else removed it meanwhile. Counts as deleted in the report.
    AlreadyGone,
    /// 409: it became in use (a container appeared, a child image…); kept.
    Conflict,
    /// Shutdown was requested before its turn.
    Cancelled,
    /// Disk-pressure mode: usage reached low water before its turn.
    LowWaterReached {
        low: Watermark,
    },
    /// Eviction toward `--ensure-free` (and low water, when triggered too) reached
    /// its goal before its turn.
    EnoughFree {
        free: FreeSpace,
        low: Option<Watermark>,
    },
    /// The max-age deletions brought usage to or below high water: no eviction.
    NotAboveHighWater {
        high: Watermark,
    },
    Failed(Failure),
}

impl Outcome {
    /// Is the item gone (deleted now, or already)?
    pub fn is_gone(&self) -> bool {
        matches!(self, Self::Deleted | Self::AlreadyGone)
    }
}

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// The engine failed the call (other than 404/409).
    Engine(DockerError),
    /// Disk-pressure mode could not re-measure the filesystem, so the pass stopped
    /// before this item rather than delete blind.
    DiskUnmeasured { path: PathBuf, error: String },
    /// A tag checked to name the planned image named another by the time the
    /// untag arrived, and the engine deleted that other image.
    TagMoved { tag: String, deleted: String },
    /// A tag this run removed could not be put back after a conflict.
    Restore { tag: String, error: String },
}

impl Failure {
    pub fn disk(e: &DiskError) -> Self {
        Self::DiskUnmeasured {
            path: e.path.clone(),
            error: e.source.to_string(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Engine(e) => write!(f, "{e}"),
            Self::DiskUnmeasured { path, error } => write!(
                f,
                "cannot measure Docker's filesystem at {} (statvfs: {error}); \
                 disk-pressure mode needs to run on the Docker host",
                path.display()
            ),
            Self::TagMoved { tag, deleted } => write!(
                f,
                "tag {tag} moved to image {deleted} while it was being removed, \
                 and the engine deleted that image; rebuild or pull it again"
            ),
            Self::Restore { tag, error } => write!(
                f,
                "conflict: in use, and tag {tag} could not be put back ({error}); \
                 run `docker tag` to restore it"
            ),
        }
    }
}

/// How a kept item reads in the report; `Deleted`/`AlreadyGone` read as the
/// planned reason.
impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Deleted => f.write_str("deleted"),
            Self::AlreadyGone => f.write_str("already gone"),
            Self::Conflict => f.write_str("conflict: in use"),
            Self::Cancelled => f.write_str("cancelled by shutdown"),
            Self::LowWaterReached { low } => write!(f, "disk usage at or below low water {low}"),
            Self::EnoughFree { free, low: None } => write!(f, "{} free", free.describe()),
            Self::EnoughFree {
                free,
                low: Some(low),
            } => write!(
                f,
                "{} free and disk usage at or below low water {low}",
                free.describe()
            ),
            Self::NotAboveHighWater { high } => write!(
                f,
                "disk usage not above high water {high} after the max-age deletions"
            ),
            Self::Failed(failure) => write!(f, "failed: {failure}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_and_outcome_reads_as_spec_says() {
        let hour = Duration::from_secs(3600);
        let images = [
            (
                ImageReason::InUse {
                    container: "c0ffee000000".into(),
                },
                "in use by container c0ffee000000",
            ),
            (
                ImageReason::Excluded {
                    pattern: "redis:*".into(),
                },
                "excluded by redis:*",
            ),
            (ImageReason::EcsAgent, "ECS agent image"),
            (ImageReason::Young { min_age: hour }, "younger than 1h"),
            (
                ImageReason::NewestOfRepo {
                    keep: 2,
                    repo: "app".into(),
                },
                "newest 2 of repo app",
            ),
            (
                ImageReason::ParentOfKept {
                    child: "c10000000000".into(),
                },
                "parent of kept image c10000000000",
            ),
            (ImageReason::Dangling, "dangling"),
            (ImageReason::LeastRecentlyUsed, "least recently used"),
            (
                ImageReason::Stale { max_age: 24 * hour },
                "unused for over 1day",
            ),
            (
                ImageReason::UsedWithinMaxAge { max_age: 24 * hour },
                "used within max age 1day",
            ),
            (
                ImageReason::EnoughFree {
                    free: FreeSpace {
                        bytes: 1 << 30,
                        inodes: None,
                    },
                },
                "1.0 GiB free already",
            ),
            (
                ImageReason::BelowHighWater {
                    high: Watermark::Percent(85.0),
                },
                "disk usage not above high water 85%",
            ),
            (
                ImageReason::MaxDeletions { max: 2 },
                "max deletions (2) reached",
            ),
        ];
        for (reason, text) in images {
            assert_eq!(reason.to_string(), text);
        }
        let containers = [
            (
                ContainerReason::Active {
                    state: ContainerState::Running,
                },
                "running",
            ),
            (ContainerReason::EcsManaged, "managed by the ECS agent"),
            (
                ContainerReason::CreatedRecently,
                "created, not started, less than 24h ago",
            ),
            (
                ContainerReason::CreatedLongAgo,
                "created, never started, over 24h ago",
            ),
            (
                ContainerReason::FinishedRecently { grace: hour },
                "finished less than 1h ago",
            ),
            (
                ContainerReason::FinishedLongAgo { grace: hour },
                "finished over 1h ago",
            ),
        ];
        for (reason, text) in containers {
            assert_eq!(reason.to_string(), text);
        }
        assert_eq!(VolumeReason::Dangling.to_string(), "dangling");
        assert_eq!(
            VolumeReason::EcsManaged.to_string(),
            "managed by the ECS agent"
        );
        let outcomes = [
            (Outcome::Deleted, "deleted"),
            (Outcome::AlreadyGone, "already gone"),
            (Outcome::Conflict, "conflict: in use"),
            (Outcome::Cancelled, "cancelled by shutdown"),
            (
                Outcome::LowWaterReached {
                    low: Watermark::Percent(75.0),
                },
                "disk usage at or below low water 75%",
            ),
            (
                Outcome::EnoughFree {
                    free: FreeSpace {
                        bytes: 1 << 20,
                        inodes: Some(10),
                    },
                    low: None,
                },
                "1.0 MiB and 10 inodes free",
            ),
            (
                Outcome::NotAboveHighWater {
                    high: Watermark::Percent(85.0),
                },
                "disk usage not above high water 85% after the max-age deletions",
            ),
            (
                Outcome::Failed(Failure::Engine(DockerError::Api {
                    status: 500,
                    message: "driver failed".into(),
                })),
                "failed: Docker API error 500: driver failed",
            ),
            (
                Outcome::Failed(Failure::DiskUnmeasured {
                    path: "/var/lib/docker".into(),
                    error: "gone".into(),
                }),
                "failed: cannot measure Docker's filesystem at /var/lib/docker (statvfs: gone); \
                 disk-pressure mode needs to run on the Docker host",
            ),
        ];
        for (outcome, text) in outcomes {
            assert_eq!(outcome.to_string(), text);
        }
    }
}
