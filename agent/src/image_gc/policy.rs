//! The policy the planner applies: ages (min and max), keep-per-repo, disk targets
//! (watermarks, `--ensure-free`) and the goal they set, and the compiled matchers for exclude patterns and ECS agent images. Built from validated
//! settings; holds no I/O.

use std::time::Duration;

use globset::{Glob, GlobSet, GlobSetBuilder};

use super::docker_gc::{self, GrepLine};
use crate::config::value::{FreeSpace, Watermark};
use crate::ports::disk::FsUsage;
use crate::shared::reference::{familiar, repo_of};

/// How long a `created` (never started) container must exist before it may go:
/// docker-gc removed containers that were about to be started.
pub const CREATED_CONTAINER_MIN_AGE: Duration = Duration::from_secs(24 * 3600);

/// Label the ECS agent puts on the containers it manages.
pub const ECS_TASK_LABEL: &str = "com.amazonaws.ecs.task-arn";

/// Images the ECS agent needs on every container instance (broader than the exact
/// names so registry-prefixed copies are protected too).
const ECS_AGENT_GLOBS: &[&str] = &[
    "*amazon-ecs-agent*",
    "*amazon-ecs-pause*",
    "*ecs-service-connect-agent*",
];

/// Disk-pressure mode: act above `high`, stop at or below `low`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiskWatermarks {
    pub high: Watermark,
    pub low: Watermark,
}

/// Everything the planner decides by.
#[derive(Debug, Clone)]
pub struct Policy {
    pub min_age: Duration,
    /// `--max-age`: an unprotected image unused for longer goes whatever the disk.
    pub max_age: Option<Duration>,
    pub keep_per_repo: u32,
    pub excludes: ExcludeSet,
    pub protect_ecs_agent: bool,
    pub disk: Option<DiskWatermarks>,
    /// `--ensure-free`: evict until this much of Docker's filesystem is free.
    pub ensure_free: Option<FreeSpace>,
    /// Plan container removal (`--containers`).
    pub containers: bool,
    pub container_grace: Duration,
    pub remove_ecs_containers: bool,
    /// Plan dangling-volume removal (`--volumes`).
    pub volumes: bool,
    pub max_deletions: Option<u32>,
}

impl Policy {
    /// A policy with the SPEC defaults and nothing excluded (tests start from here).
    pub fn defaults() -> Self {
        Self {
            min_age: Duration::from_secs(3600),
            max_age: None,
            keep_per_repo: 0,
            excludes: ExcludeSet::default(),
            protect_ecs_agent: true,
            disk: None,
            ensure_free: None,
            containers: false,
            container_grace: Duration::from_secs(3600),
            remove_ecs_containers: false,
            volumes: false,
            max_deletions: None,
        }
    }
}

/// What eviction must reach in one pass: the targets the usage at its start
/// triggers — low water when usage is above high water, the `--ensure-free` floor
/// when short of it (kubelet's rule: act above high, stop at low).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiskGoal {
    pub low: Option<Watermark>,
    pub free: Option<FreeSpace>,
}

impl DiskGoal {
    /// Is every triggered target met?
    pub fn reached(&self, usage: &FsUsage) -> bool {
        self.low.is_none_or(|low| !usage.above(&low))
            && self
                .free
                .is_none_or(|f| f.met_by(usage.free_bytes(), usage.free_inodes()))
    }
}

impl Policy {
    /// The eviction `usage` calls for, if any.
    pub fn disk_goal(&self, usage: &FsUsage) -> Option<DiskGoal> {
        let low = self.disk.filter(|m| usage.above(&m.high)).map(|m| m.low);
        let free = self
            .ensure_free
            .filter(|f| !f.met_by(usage.free_bytes(), usage.free_inodes()));
        (low.is_some() || free.is_some()).then_some(DiskGoal { low, free })
    }

    /// Are images beyond the stale ones evicted only under disk pressure (watermarks
    /// or `--ensure-free`)? Otherwise every candidate goes (or, with `--max-age`
    /// alone, only the stale ones).
    pub fn evicts(&self) -> bool {
        self.disk.is_some() || self.ensure_free.is_some()
    }
}

/// A bad exclude pattern, named.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid exclude pattern {pattern:?}: {message}")]
pub struct PatternError {
    pub pattern: String,
    pub message: String,
}

/// Compiled exclude patterns: globs on `repo:tag` (a pattern without a tag part
/// matches every tag of that repository, as docker-gc's file does) and image-ID
/// prefixes (`sha256:` optional).
#[derive(Debug, Clone, Default)]
pub struct ExcludeSet {
    patterns: Vec<String>,
    globs: GlobSet,
    /// Glob index → pattern index.
    glob_owner: Vec<usize>,
    /// (pattern index, lower-case hex prefix).
    id_prefixes: Vec<(usize, String)>,
    /// docker-gc exclude-file lines, after the globs in `patterns`.
    grep_lines: Vec<GrepLine>,
}

impl ExcludeSet {
    pub fn new(patterns: &[String]) -> Result<Self, PatternError> {
        let mut builder = GlobSetBuilder::new();
        let mut glob_owner = Vec::new();
        let mut id_prefixes = Vec::new();
        for (index, raw) in patterns.iter().enumerate() {
            let pattern = raw.trim();
            let err = |message: String| PatternError {
                pattern: raw.clone(),
                message,
            };
            if pattern.is_empty() {
                return Err(err("empty pattern".to_owned()));
            }
            if let Some(prefix) = id_prefix(pattern) {
                id_prefixes.push((index, prefix));
            }
            // Matched against the engine's familiar form (`redis:7`), so written
            // the same way (`docker.io/library/redis:*` is `redis:*`).
            let pattern = familiar(pattern);
            let last = pattern.rsplit('/').next().unwrap_or(pattern);
            let tag_glob = if last.contains(':') || last.contains('@') {
                pattern.to_owned()
            } else {
                format!("{pattern}:*")
            };
            let glob = Glob::new(&tag_glob).map_err(|e| err(e.kind().to_string()))?;
            builder.add(glob);
            glob_owner.push(index);
        }
        let globs = builder.build().map_err(|e| PatternError {
            pattern: patterns.join(", "),
            message: e.to_string(),
        })?;
        Ok(Self {
            patterns: patterns.to_vec(),
            globs,
            glob_owner,
            id_prefixes,
            grep_lines: Vec::new(),
        })
    }

    /// Add the lines of a docker-gc exclude file (after the patterns given so far).
    pub fn with_file(mut self, lines: Vec<GrepLine>) -> Self {
        self.patterns.extend(lines.iter().map(|l| l.line.clone()));
        self.grep_lines = lines;
        self
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// The first pattern (in the order given) matching the image, if any. Globs see
    /// each tag and, for each digest, `repo@digest` and `repo:<none>` (so a
    /// repository pattern such as `reg/pinned:*` covers that repository's digest-only
    /// references, as a docker-gc line does); file lines see docker-gc's rows.
    pub fn matching(&self, id: &str, tags: &[String], digests: &[String]) -> Option<&str> {
        let hex = id.strip_prefix("sha256:").unwrap_or(id);
        let mut best: Option<usize> = self
            .id_prefixes
            .iter()
            .filter(|(_, p)| hex.starts_with(p.as_str()))
            .map(|(i, _)| *i)
            .min();
        let mut candidates: Vec<String> = tags.iter().map(|t| familiar(t).to_owned()).collect();
        for d in digests {
            candidates.push(familiar(d).to_owned());
            candidates.push(format!("{}:<none>", familiar(repo_of(d))));
        }
        for r in &candidates {
            for g in self.globs.matches(r) {
                let owner = self.glob_owner[g];
                best = Some(best.map_or(owner, |b| b.min(owner)));
            }
        }
        if best.is_none() && !self.grep_lines.is_empty() {
            let rows = docker_gc::rows(id, tags, digests);
            let first = self.patterns.len() - self.grep_lines.len();
            best = self
                .grep_lines
                .iter()
                .position(|l| l.matches(&rows))
                .map(|i| first + i);
        }
        best.map(|i| self.patterns[i].as_str())
    }
}

/// `sha256:abc…` or `abc…` (hex only) as a lower-case prefix.
fn id_prefix(pattern: &str) -> Option<String> {
    let hex = pattern.strip_prefix("sha256:").unwrap_or(pattern);
    (!hex.is_empty() && hex.len() <= 64 && hex.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

/// Matcher for ECS agent images.
pub fn ecs_agent_matcher() -> GlobSet {
    let mut builder = GlobSetBuilder::new();
    for g in ECS_AGENT_GLOBS {
        if let Ok(glob) = Glob::new(g) {
            builder.add(glob);
        }
    }
    builder.build().unwrap_or_else(|_| GlobSet::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(p: &[&str]) -> ExcludeSet {
        ExcludeSet::new(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn repository_globs_cover_digest_only_references_and_hub_names_are_familiar() {
        let s = set(&["reg/pinned:*", "docker.io/library/redis:*", "app:1"]);
        let pinned = ["reg/pinned@sha256:aa".to_owned()];
        assert_eq!(s.matching("sha256:00", &[], &pinned), Some("reg/pinned:*"));
        assert_eq!(
            s.matching("sha256:00", &["redis:7".into()], &[]),
            Some("docker.io/library/redis:*")
        );
        // A tag pattern is no repository pattern.
        assert_eq!(
            s.matching("sha256:00", &[], &["app@sha256:aa".into()]),
            None
        );
    }

    #[test]
    fn glob_on_repo_tag() {
        let s = set(&["redis:*", "*/ci-base:*"]);
        assert_eq!(
            s.matching("sha256:00", &["redis:7".into()], &[]),
            Some("redis:*")
        );
        assert_eq!(
            s.matching("sha256:00", &["reg.example.com/team/ci-base:1".into()], &[]),
            Some("*/ci-base:*")
        );
        assert_eq!(s.matching("sha256:00", &["app:1".into()], &[]), None);
    }

    #[test]
    fn bare_repo_pattern_matches_every_tag_of_that_repo_only() {
        let s = set(&["busybox"]);
        assert!(s
            .matching("sha256:00", &["busybox:1.36".into()], &[])
            .is_some());
        assert!(s
            .matching("sha256:00", &["busybox-extra:1".into()], &[])
            .is_none());
    }

    #[test]
    fn id_prefix_with_or_without_algorithm() {
        let s = set(&["sha256:abc1", "def2"]);
        assert_eq!(s.matching("sha256:abc123", &[], &[]), Some("sha256:abc1"));
        assert_eq!(s.matching("sha256:def234", &[], &[]), Some("def2"));
        assert_eq!(s.matching("sha256:0bc123", &[], &[]), None);
    }

    #[test]
    fn first_pattern_in_order_is_named() {
        let s = set(&["app:*", "*"]);
        assert_eq!(
            s.matching("sha256:00", &["app:1".into()], &[]),
            Some("app:*")
        );
    }

    #[test]
    fn bad_glob_names_the_pattern() {
        let e = ExcludeSet::new(&["app:[1".to_owned()]).unwrap_err();
        assert_eq!(e.pattern, "app:[1");
        assert!(e.to_string().contains("app:[1"), "{e}");
    }

    #[test]
    fn ecs_agent_names() {
        let m = ecs_agent_matcher();
        assert!(m.is_match("amazon/amazon-ecs-agent:latest"));
        assert!(m.is_match("amazon/amazon-ecs-pause:0.1.0"));
        assert!(m.is_match("123.dkr.ecr.us-east-1.amazonaws.com/ecs-service-connect-agent:v1"));
        assert!(!m.is_match("app:1"));
    }
}
