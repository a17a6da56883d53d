//! Reviewed plans: the file `--plan-out` writes and `--apply --plan` reads back. JSON,
//! versioned (`"format": "shipshape-ecr-plan"`, `"version": 1`), with its creation time
//! and a digest of the inputs it was planned from (each repository's images, tags, push
//! times and index children, and what ECS used). Per repository it lists the units it
//! expires and exactly the manifests each deletes. Pure: parsing, building and the age
//! check; the caller reads and writes the file (atomically).

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::planner::RepoPlan;
use super::rules::Action;
use super::snapshot::{EcsUsage, RepoSnapshot};

pub const FORMAT: &str = "shipshape-ecr-plan";
pub const VERSION: u32 = 1;

/// A plan file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanFile {
    pub format: String,
    pub version: u32,
    pub created_at: DateTime<Utc>,
    /// Digest of every repository's inputs (below) and of the ECS usage, together.
    pub inputs_digest: String,
    pub repositories: Vec<PlannedRepo>,
}

/// One repository of a plan file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannedRepo {
    pub name: String,
    /// Digest of this repository's snapshot (`inputs_digest`).
    pub inputs_digest: String,
    /// The safety cap refused this repository's plan: it expires nothing.
    #[serde(default)]
    pub refused: bool,
    pub expire: Vec<PlannedUnit>,
}

/// One unit the plan expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannedUnit {
    /// The unit's root.
    pub digest: String,
    /// Every tag of the unit at plan time (a tag added since means it changed).
    pub tags: BTreeSet<String>,
    /// Why the plan expired it.
    pub reason: String,
    /// The manifests it deletes: an apply never deletes anything else.
    pub images: BTreeSet<String>,
}

impl PlannedRepo {
    pub fn unit(&self, root: &str) -> Option<&PlannedUnit> {
        self.expire.iter().find(|u| u.digest == root)
    }
}

/// Why a plan file is not applied (exit 2, nothing read or deleted).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanFileError {
    #[error("cannot read the plan file {path}: {error}")]
    Read { path: String, error: String },
    #[error("{path} is not a shipshape ecr-prune plan ({error}); write one with `ecr-prune --plan-out FILE`")]
    Invalid { path: String, error: String },
    #[error("{path} is a plan of format version {version}, this shipshape reads version {VERSION}; plan again with --plan-out")]
    Version { path: String, version: u32 },
    #[error("{path} was planned at {created_at}, {age} ago, more than --plan-max-age {max}; plan again with --plan-out")]
    Stale {
        path: String,
        created_at: String,
        age: Age,
        max: Age,
    },
}

/// A duration shown the way the flags take it (`1d 2h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Age(pub Duration);

impl fmt::Display for Age {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Whole seconds: a plan's age to the nanosecond says nothing.
        let whole = Duration::from_secs(self.0.as_secs());
        f.write_str(&crate::config::value::format_duration(whole))
    }
}

/// Parse a plan file's text and check it is fresh enough for `now`. A plan created
/// more than a minute after `now` (another host's clock) is refused as invalid.
pub fn parse(
    path: &str,
    text: &str,
    now: DateTime<Utc>,
    max_age: Duration,
) -> Result<PlanFile, PlanFileError> {
    #[derive(Deserialize)]
    struct Head {
        format: Option<String>,
        version: Option<u32>,
    }
    let invalid = |error: String| PlanFileError::Invalid {
        path: path.to_owned(),
        error,
    };
    let head: Head = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
    if head.format.as_deref() != Some(FORMAT) {
        return Err(invalid(format!("\"format\" is not {FORMAT:?}")));
    }
    match head.version {
        Some(VERSION) => {}
        Some(version) => {
            return Err(PlanFileError::Version {
                path: path.to_owned(),
                version,
            })
        }
        None => return Err(invalid("no \"version\"".into())),
    }
    let plan: PlanFile = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
    let age = now.signed_duration_since(plan.created_at);
    if age < -chrono::Duration::minutes(1) {
        return Err(invalid(format!(
            "created_at {} is in the future",
            plan.created_at.to_rfc3339()
        )));
    }
    let age = age.to_std().unwrap_or_default();
    if age > max_age {
        return Err(PlanFileError::Stale {
            path: path.to_owned(),
            created_at: plan.created_at.to_rfc3339(),
            age: Age(age),
            max: Age(max_age),
        });
    }
    Ok(plan)
}

/// The plan file of one run's plans (repository name, inputs digest, plan).
pub fn build(
    created_at: DateTime<Utc>,
    usage: &EcsUsage,
    plans: &[(&str, &str, &RepoPlan)],
) -> PlanFile {
    let mut all = Fnv128::new();
    all.field(&usage_digest(usage));
    let mut repositories = Vec::with_capacity(plans.len());
    for (name, digest, plan) in plans {
        all.field(name);
        all.field(digest);
        let refused = plan.refused.is_some();
        let expire = if refused {
            Vec::new()
        } else {
            plan.units
                .iter()
                .filter(|u| u.action == Action::Expire)
                .map(|u| PlannedUnit {
                    digest: u.unit.digest.clone(),
                    tags: u.unit.all_tags.iter().cloned().collect(),
                    reason: u.reason.to_string(),
                    images: u.unit.members.iter().map(|(d, _)| d.clone()).collect(),
                })
                .collect()
        };
        repositories.push(PlannedRepo {
            name: (*name).to_owned(),
            inputs_digest: (*digest).to_owned(),
            refused,
            expire,
        });
    }
    PlanFile {
        format: FORMAT.to_owned(),
        version: VERSION,
        created_at,
        inputs_digest: all.finish(),
        repositories,
    }
}

impl PlanFile {
    pub fn repository(&self, name: &str) -> Option<&PlannedRepo> {
        self.repositories.iter().find(|r| r.name == name)
    }

    /// The file's text: pretty JSON with a final newline.
    pub fn to_text(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }
}

/// The digest of one repository's snapshot: every image (digest, tags, push time,
/// size, archived) in digest order, and every index's children. Two snapshots with the
/// same digest plan the same.
pub fn repository_digest(repo: &RepoSnapshot) -> String {
    let mut h = Fnv128::new();
    h.field(&repo.repository.name);
    let mut images: Vec<_> = repo.images.iter().collect();
    images.sort_by(|a, b| a.digest.cmp(&b.digest));
    for img in images {
        h.field(&img.digest);
        let mut tags = img.tags.clone();
        tags.sort();
        for t in &tags {
            h.field(t);
        }
        h.field(&img.pushed_at.map(|t| t.to_rfc3339()).unwrap_or_default());
        h.field(&img.size.to_string());
        h.field(if img.archived { "archived" } else { "" });
        h.field(img.subject.as_deref().unwrap_or_default());
        if let Some(children) = repo.children.get(&img.digest) {
            for c in children {
                h.field(c);
            }
        }
        h.field("\u{1e}");
    }
    h.finish()
}

fn usage_digest(usage: &EcsUsage) -> String {
    let mut h = Fnv128::new();
    for d in &usage.digests {
        h.field(d);
    }
    h.field("\u{1e}");
    for r in &usage.references {
        h.field(r);
    }
    h.finish()
}

/// FNV-1a, 128 bits: a digest of what was read, to tell whether two snapshots are the
/// same. Not a defence against forgery (the file is the operator's own): no
/// cryptographic hash is among the dependencies.
struct Fnv128(u128);

impl Fnv128 {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;

    fn new() -> Self {
        Self(Self::OFFSET)
    }

    /// One field, terminated (so `ab`,`c` and `a`,`bc` differ).
    fn field(&mut self, text: &str) {
        for b in text.bytes().chain(std::iter::once(0x1f)) {
            self.0 ^= u128::from(b);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    fn finish(&self) -> String {
        format!("fnv1a128:{:032x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::ecr::{image, now, repository};
    use std::collections::HashMap;

    fn snap(images: Vec<crate::ports::ecr::EcrImage>) -> RepoSnapshot {
        RepoSnapshot {
            repository: repository("app"),
            images,
            children: HashMap::new(),
        }
    }

    fn file(created_at: DateTime<Utc>) -> PlanFile {
        build(created_at, &EcsUsage::default(), &[])
    }

    #[test]
    fn a_plan_file_reads_back_as_written() {
        let plan = file(now());
        let text = plan.to_text();
        assert_eq!(
            parse("p.json", &text, now(), Duration::from_secs(60)),
            Ok(plan)
        );
    }

    #[test]
    fn a_stale_plan_is_refused_naming_its_age_and_the_limit() {
        let text = file(now() - chrono::Duration::hours(25)).to_text();
        let e = parse("p.json", &text, now(), Duration::from_secs(24 * 3600)).unwrap_err();
        assert!(matches!(e, PlanFileError::Stale { .. }), "{e}");
        let line = e.to_string();
        assert!(
            line.contains("1day 1h ago") && line.contains("--plan-max-age 1day"),
            "{line}"
        );
        assert!(!line.contains('\n'));
    }

    #[test]
    fn other_files_versions_and_future_plans_are_invalid() {
        let at = |t: &str| parse("p.json", t, now(), Duration::from_secs(3600));
        assert!(matches!(at("{"), Err(PlanFileError::Invalid { .. })));
        assert!(matches!(
            at(r#"{"format":"other","version":1}"#),
            Err(PlanFileError::Invalid { .. })
        ));
        assert_eq!(
            at(r#"{"format":"shipshape-ecr-plan","version":2}"#),
            Err(PlanFileError::Version {
                path: "p.json".into(),
                version: 2
            })
        );
        let mut plan = file(now());
        plan.repositories.push(PlannedRepo {
            name: "x".into(),
            inputs_digest: String::new(),
            refused: false,
            expire: vec![],
        });
        let extra = plan
            .to_text()
            .replacen("\"refused\"", "\"surprise\": 1, \"refused\"", 1);
        assert!(matches!(at(&extra), Err(PlanFileError::Invalid { .. })));
        let future = file(now() + chrono::Duration::minutes(5)).to_text();
        assert!(at(&future)
            .unwrap_err()
            .to_string()
            .contains("in the future"));
    }

    #[test]
    fn the_inputs_digest_changes_with_any_input_and_not_with_order() {
        let a = image("a", &["v1"], 1);
        let b = image("b", &["v2"], 2);
        let base = repository_digest(&snap(vec![a.clone(), b.clone()]));
        assert_eq!(base, repository_digest(&snap(vec![b.clone(), a.clone()])));
        let mut retagged = b.clone();
        retagged.tags.push("latest".into());
        assert_ne!(base, repository_digest(&snap(vec![a.clone(), retagged])));
        let mut repushed = b.clone();
        repushed.pushed_at = Some(now());
        assert_ne!(base, repository_digest(&snap(vec![a.clone(), repushed])));
        assert_ne!(base, repository_digest(&snap(vec![a])));
        assert!(base.starts_with("fnv1a128:") && base.len() == 9 + 32);
    }
}
