//! The pure planner: `plan(&Snapshot, &Policy, now) -> Plan`. Groups each repository
//! into units, applies the lifecycle rules with ECR's semantics, then protections (ECS,
//! protected tags, min age, newest unit), quota mode, and the per-repository safety cap.
//! No I/O, no clock, no SDK types; every unit in the plan carries its `Reason`.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use globset::GlobSet;

use super::grouping::{self, Unit};
use super::reference::{self, Target};
use super::reviewed::{PlannedRepo, PlannedUnit};
use super::rules::{Action, Criterion, Rules};
#[cfg(test)]
use super::snapshot::Snapshot;
use super::snapshot::{EcsUsage, RepoSnapshot};

/// An untagged plain image younger than this is never deleted on its own: it may be a
/// child whose index has not been pushed yet.
pub const PENDING_CHILD_AGE: Duration = Duration::from_secs(3600);

/// The validated policy the planner applies.
#[derive(Debug, Clone)]
pub struct Policy {
    pub rules: Rules,
    /// `--protect-tag` patterns and their compiled set.
    pub protect_tags: Vec<String>,
    pub protect_tag_set: GlobSet,
    pub min_age: Duration,
    /// Quota watermark in images, already resolved (`auto` → 90% of the quota).
    pub max_images: Option<u64>,
    pub max_delete_percent: u8,
    pub force: bool,
}

/// Why a unit is kept or expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Expired by the lifecycle rule with this priority.
    Rule(u32),
    /// Expired to bring the repository under the quota watermark.
    Quota(u64),
    /// Kept: an ECS task, service deployment or scheduled task, or a Lambda function
    /// version uses it (the chain says which).
    InUseByEcs(String),
    /// Kept: a tag matches `--protect-tag`.
    ProtectedTag(String),
    /// Kept: the newest unit of the repository.
    Newest,
    /// Kept: pushed less than `--min-age` ago.
    YoungerThanMinAge,
    /// Kept: an untagged plain image pushed less than `PENDING_CHILD_AGE` ago, which may
    /// be a child of an index still being pushed (multi-arch pushes upload children
    /// before the index that lists them).
    PendingChild,
    /// Kept: a rule expired it, but an index that is kept lists it.
    ListedByKeptIndex(String),
    /// Kept by a `keep` rule.
    KeepRule(u32),
    /// Selected by this rule, but within its count or age.
    WithinRule(u32),
    /// No rule selects it.
    NoRule,
    /// Expired by the reviewed plan (`--apply --plan`), for the reason it gave.
    Reviewed(String),
    /// Kept: the reviewed plan does not expire it.
    NotInReviewedPlan,
    /// Kept: the reviewed plan expired it, but at apply time this holds.
    KeptAtApply(Box<Reason>),
    /// It changed since the reviewed plan was made (a manifest pushed or a tag added
    /// after it).
    ChangedSincePlan(String),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rule(p) => write!(f, "rule {p}"),
            Self::Quota(w) => write!(f, "quota watermark {w} images"),
            // Lambda chains (`ecr_prune::lambda`) start with "lambda "; every other
            // chain is an ECS task, service or scheduled task.
            Self::InUseByEcs(r) if r.starts_with("lambda ") || r.contains(": lambda ") => {
                write!(f, "in use by Lambda ({r})")
            }
            Self::InUseByEcs(r) => write!(f, "in use by ECS ({r})"),
            Self::ProtectedTag(p) => write!(f, "protected tag {p}"),
            Self::Newest => f.write_str("newest in repository"),
            Self::YoungerThanMinAge => f.write_str("younger than min-age"),
            Self::PendingChild => f.write_str(
                "untagged, pushed less than 1h ago (may be a child of an index still being pushed)",
            ),
            Self::ListedByKeptIndex(d) => write!(f, "listed by kept index {d}"),
            Self::KeepRule(p) => write!(f, "keep rule {p}"),
            Self::WithinRule(p) => write!(f, "within rule {p}"),
            Self::NoRule => f.write_str("no rule selects it"),
            Self::Reviewed(r) => write!(f, "{r} (reviewed plan)"),
            Self::NotInReviewedPlan => f.write_str("not expired by the reviewed plan"),
            Self::KeptAtApply(r) => write!(f, "the reviewed plan expired it; kept at apply: {r}"),
            Self::ChangedSincePlan(what) => write!(f, "changed since the plan: {what}"),
        }
    }
}

/// One unit's fate.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitPlan {
    pub unit: Unit,
    pub action: Action,
    pub reason: Reason,
}

/// Why a repository's plan is not carried out: it deletes more than
/// `--max-delete-percent` of the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub deleting: usize,
    pub of: usize,
    pub max_percent: u8,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "refused: the plan deletes {} of {} images, more than --max-delete-percent {}%; review the plan, then raise --max-delete-percent or pass --force",
            self.deleting, self.of, self.max_percent
        )
    }
}

/// One repository's plan.
#[derive(Debug, Clone, PartialEq)]
pub struct RepoPlan {
    pub name: String,
    pub images_before: usize,
    pub images_after: usize,
    /// Newest first.
    pub units: Vec<UnitPlan>,
    pub refused: Option<Refusal>,
    /// Archived images (`imageStatus` ARCHIVED): reported, never counted, planned or
    /// deleted as active images.
    pub archived: usize,
}

impl RepoPlan {
    /// Digests to delete in order: stage 0 (roots, referrers) of every expired unit,
    /// then their children, so no index is left pointing at a deleted manifest.
    pub fn deletions(&self) -> Vec<(String, u8)> {
        let mut out: Vec<(String, u8)> = self
            .units
            .iter()
            .filter(|u| u.action == Action::Expire)
            .flat_map(|u| u.unit.members.iter().cloned())
            .collect();
        out.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        out.dedup_by(|a, b| a.0 == b.0);
        out
    }

    pub fn bytes_expired(&self) -> u64 {
        self.units
            .iter()
            .filter(|u| u.action == Action::Expire)
            .map(|u| u.unit.bytes)
            .sum()
    }
}

/// The whole plan.
#[cfg(test)]
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub repositories: Vec<RepoPlan>,
}

/// Plan every repository of the snapshot.
#[cfg(test)]
pub fn plan(snapshot: &Snapshot, policy: &Policy, now: DateTime<Utc>) -> Plan {
    Plan {
        repositories: snapshot
            .repositories
            .iter()
            .map(|r| plan_repository(r, &snapshot.ecs, policy, now))
            .collect(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RuleOutcome {
    Expire(u32),
    Keep(u32),
}

/// Plan one repository (pure; `plan` maps it over the snapshot, the runner calls it
/// per repository as snapshots arrive).
pub fn plan_repository(
    repo: &RepoSnapshot,
    ecs: &EcsUsage,
    policy: &Policy,
    now: DateTime<Utc>,
) -> RepoPlan {
    plan_with(repo, ecs, policy, now, None)
}

/// The reviewed plan `--apply --plan` carries out for one repository: its units and
/// when it was made.
#[derive(Debug, Clone, Copy)]
pub struct ReviewedPlan<'a> {
    pub repo: &'a PlannedRepo,
    pub created_at: DateTime<Utc>,
}

/// Re-plan one repository at apply time from a reviewed plan: a unit expires only if
/// that plan expired it, no protection holds now (in use, protected tag, newest, min
/// age, pending child, listed by a kept index), and nothing in it was pushed or tagged
/// after the plan; it deletes only manifests the plan listed for it. The rules are not
/// evaluated again (the plan was reviewed), nor is the quota; the safety cap is.
pub fn plan_reviewed(
    repo: &RepoSnapshot,
    ecs: &EcsUsage,
    policy: &Policy,
    now: DateTime<Utc>,
    reviewed: ReviewedPlan<'_>,
) -> RepoPlan {
    let policy = Policy {
        max_images: None,
        ..policy.clone()
    };
    plan_with(repo, ecs, &policy, now, Some(reviewed))
}

/// Why a unit the reviewed plan expired changed since: a member pushed after the plan,
/// or a tag it did not have.
fn changed_since(
    unit: &Unit,
    planned: &PlannedUnit,
    created_at: DateTime<Utc>,
    pushed: &HashMap<&str, Option<DateTime<Utc>>>,
) -> Option<String> {
    if let Some(tag) = unit.all_tags.iter().find(|t| !planned.tags.contains(*t)) {
        return Some(format!("tag {tag} added"));
    }
    unit.members.iter().find_map(|(d, _)| {
        let at = pushed.get(d.as_str()).copied().flatten()?;
        (at > created_at).then(|| format!("{d} pushed at {}", at.to_rfc3339()))
    })
}

fn plan_with(
    repo: &RepoSnapshot,
    ecs: &EcsUsage,
    policy: &Policy,
    now: DateTime<Utc>,
    reviewed: Option<ReviewedPlan<'_>>,
) -> RepoPlan {
    let archived = repo.images.iter().filter(|i| i.archived).count();
    let active: Vec<crate::ports::ecr::EcrImage> = repo
        .images
        .iter()
        .filter(|i| !i.archived)
        .cloned()
        .collect();
    let units = grouping::group(&active, &repo.children, now);
    let outcomes = apply_rules(&units, &policy.rules, now);
    let in_use = ecs_digests(repo, ecs);
    let mut plans: Vec<UnitPlan> = Vec::with_capacity(units.len());
    let mut protected: Vec<bool> = Vec::with_capacity(units.len());
    let pushed: HashMap<&str, Option<DateTime<Utc>>> = active
        .iter()
        .map(|img| (img.digest.as_str(), img.pushed_at))
        .collect();
    for (i, unit) in units.into_iter().enumerate() {
        let protection = protection(i, &unit, &in_use, policy, now);
        if let Some(r) = reviewed {
            let (action, reason) = match r.repo.unit(&unit.digest) {
                None => (Action::Keep, Reason::NotInReviewedPlan),
                Some(planned) => match protection.or_else(|| {
                    changed_since(&unit, planned, r.created_at, &pushed)
                        .map(Reason::ChangedSincePlan)
                }) {
                    Some(why) => (Action::Keep, Reason::KeptAtApply(Box::new(why))),
                    None => (Action::Expire, Reason::Reviewed(planned.reason.clone())),
                },
            };
            protected.push(action == Action::Keep);
            plans.push(UnitPlan {
                unit,
                action,
                reason,
            });
            continue;
        }
        let (action, reason) = match (&outcomes[i], protection.clone()) {
            ((Some(RuleOutcome::Expire(p)), _), None) => (Action::Expire, Reason::Rule(*p)),
            ((Some(RuleOutcome::Expire(_)), _), Some(r)) => (Action::Keep, r),
            ((Some(RuleOutcome::Keep(p)), _), _) => (Action::Keep, Reason::KeepRule(*p)),
            ((None, Some(p)), _) => (Action::Keep, Reason::WithinRule(*p)),
            ((None, None), _) => (Action::Keep, Reason::NoRule),
        };
        let kept_by_rule = matches!(outcomes[i].0, Some(RuleOutcome::Keep(_)));
        protected.push(protection.is_some() || kept_by_rule);
        plans.push(UnitPlan {
            unit,
            action,
            reason,
        });
    }
    // A manifest an archived index lists stays: ECR would refuse to delete it, and the
    // archived release must stay restorable.
    let archived_children: HashMap<&str, &str> = repo
        .images
        .iter()
        .filter(|i| i.archived)
        .flat_map(|i| {
            repo.children
                .get(&i.digest)
                .into_iter()
                .flatten()
                .map(move |c| (c.as_str(), i.digest.as_str()))
        })
        .collect();
    for (u, protected) in plans.iter_mut().zip(protected.iter_mut()) {
        let listed = u
            .unit
            .members
            .iter()
            .find_map(|(d, _)| archived_children.get(d.as_str()));
        if let Some(index) = listed {
            *protected = true;
            if u.action == Action::Expire {
                u.action = Action::Keep;
                u.reason = Reason::ListedByKeptIndex((*index).to_owned());
            }
        }
    }
    // Units overlap (a child shared by several indexes belongs to each): a manifest is
    // deleted only when every unit holding it expires. `holders` counts the units not
    // (yet) expired that hold each digest.
    let mut holders: HashMap<String, usize> = HashMap::new();
    for u in &plans {
        for (d, _) in &u.unit.members {
            *holders.entry(d.clone()).or_default() += 1;
        }
    }
    let mut freed: Vec<Vec<(String, u8)>> = vec![Vec::new(); plans.len()];
    for i in 0..plans.len() {
        if plans[i].action == Action::Expire {
            freed[i] = release(&plans[i].unit, &mut holders);
        }
    }
    let images_before = active.len();
    let mut images_after = images_before - freed.iter().map(Vec::len).sum::<usize>();
    if let Some(watermark) = policy.max_images {
        // Oldest first: plans are newest first.
        for i in (0..plans.len()).rev() {
            if images_after as u64 <= watermark {
                break;
            }
            if plans[i].action == Action::Keep && !protected[i] {
                plans[i].action = Action::Expire;
                plans[i].reason = Reason::Quota(watermark);
                freed[i] = release(&plans[i].unit, &mut holders);
                images_after -= freed[i].len();
            }
        }
    }
    // An expired unit deletes what it freed; one that frees nothing (a tagged child whose
    // kept index still lists it) is kept, saying why.
    let sizes: HashMap<&str, u64> = active
        .iter()
        .map(|img| (img.digest.as_str(), img.size))
        .collect();
    let holder_of = |digest: &str, plans: &[UnitPlan]| {
        plans
            .iter()
            .find(|p| p.action == Action::Keep && p.unit.contains(digest))
            .map_or_else(String::new, |p| p.unit.digest.clone())
    };
    for i in 0..plans.len() {
        if plans[i].action != Action::Expire {
            continue;
        }
        let mut freed = std::mem::take(&mut freed[i]);
        if let Some(planned) = reviewed.and_then(|r| r.repo.unit(&plans[i].unit.digest)) {
            // Never more than the reviewed plan deletes: a shared child the plan left to
            // a unit that is gone since stays (an untagged orphan, for the next plan).
            let before = freed.len();
            freed.retain(|(d, _)| planned.images.contains(d));
            images_after += before - freed.len();
        }
        if freed.iter().all(|(d, _)| *d != plans[i].unit.digest) {
            // Everything a unit holds that a kept unit does not hold is freed, so an
            // unfreed root means a kept index lists it, and with it all the rest.
            let holder = holder_of(&plans[i].unit.digest, &plans);
            plans[i].action = Action::Keep;
            plans[i].reason = Reason::ListedByKeptIndex(holder);
            images_after += freed.len();
            continue;
        }
        let u = &mut plans[i].unit;
        u.bytes = freed
            .iter()
            .map(|(d, _)| sizes.get(d.as_str()).copied().unwrap_or(0))
            .sum();
        u.members = freed;
    }
    if let Some(r) = reviewed {
        for u in &mut plans {
            let planned = r.repo.unit(&u.unit.digest).is_some();
            if planned && u.action == Action::Keep && !matches!(u.reason, Reason::KeptAtApply(_)) {
                u.reason = Reason::KeptAtApply(Box::new(u.reason.clone()));
            }
        }
    }
    let deleting = images_before - images_after;
    let refused = (!policy.force
        && deleting * 100 > usize::from(policy.max_delete_percent) * images_before)
        .then_some(Refusal {
            deleting,
            of: images_before,
            max_percent: policy.max_delete_percent,
        });
    for u in &plans {
        tracing::debug!(
            repository = %repo.repository.name,
            unit = %u.unit.digest,
            action = ?u.action,
            reason = %u.reason,
            "planned"
        );
    }
    RepoPlan {
        name: repo.repository.name.clone(),
        images_before,
        images_after,
        units: plans,
        refused,
        archived,
    }
}

/// Expire `unit`: drop its hold on each member; the members no unit holds any more
/// are what it deletes (with their deletion stages).
fn release(unit: &Unit, holders: &mut HashMap<String, usize>) -> Vec<(String, u8)> {
    let mut freed = Vec::new();
    for (d, stage) in &unit.members {
        if let Some(n) = holders.get_mut(d) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                freed.push((d.clone(), *stage));
            }
        }
    }
    freed
}

/// ECR's evaluation: every rule identifies the units its selection matches (even those
/// a higher-priority rule already marked) and picks candidates by count or age; a unit
/// is marked by the first rule that picks it, and a unit a higher-priority rule's
/// selection matched (tagged, untagged or any) can no longer be expired by a lower one.
/// Returns per unit (the marking, the first rule that selected it).
fn apply_rules(
    units: &[Unit],
    rules: &Rules,
    now: DateTime<Utc>,
) -> Vec<(Option<RuleOutcome>, Option<u32>)> {
    let mut marked: Vec<Option<RuleOutcome>> = vec![None; units.len()];
    let mut shielded: Vec<bool> = vec![false; units.len()];
    let mut first_match: Vec<Option<u32>> = vec![None; units.len()];
    for rule in &rules.0 {
        // Units are newest first, which is the order imageCountMoreThan keeps.
        let matched: Vec<usize> = (0..units.len())
            .filter(|&i| rule.selects(&units[i].tags))
            .collect();
        let older_than = |t: DateTime<Utc>, d: Duration| {
            now.signed_duration_since(t)
                .to_std()
                .is_ok_and(|age| age > d)
        };
        let candidates: Vec<usize> = match (rule.action, rule.criterion) {
            (Action::Keep, _) | (_, Criterion::None) => matched.clone(),
            (Action::Expire, Criterion::ImageCountMoreThan(n)) => {
                matched.iter().copied().skip(n as usize).collect()
            }
            (Action::Expire, Criterion::SinceImagePushed(d)) => matched
                .iter()
                .copied()
                .filter(|&i| older_than(units[i].pushed_at, d))
                .collect(),
            (Action::Expire, Criterion::SinceImagePulled(d)) => matched
                .iter()
                .copied()
                .filter(|&i| older_than(units[i].last_used, d))
                .collect(),
        };
        for i in candidates {
            if marked[i].is_none() && !shielded[i] {
                marked[i] = Some(match rule.action {
                    Action::Expire => RuleOutcome::Expire(rule.priority),
                    Action::Keep => RuleOutcome::Keep(rule.priority),
                });
            }
        }
        // "An image that matches the tagging requirements of a rule cannot be expired by
        // a rule with a lower priority" (ECR lifecycle-policy documentation) — for every
        // tagStatus, so an untagged unit a higher untagged rule kept within its count is
        // not expired by a later `any` rule. Every documented example shields through a
        // tagged rule; ECR's live evaluator was not checked here and may shield only by
        // tagged selections. If it does, ECR's own lifecycle run may expire units this
        // plan keeps, never the other way round: the documented reading is the safer one.
        for &i in &matched {
            first_match[i].get_or_insert(rule.priority);
            shielded[i] = true;
        }
    }
    marked.into_iter().zip(first_match).collect()
}

/// Digests of this repository that ECS uses: resolved digests, `@digest` references,
/// and `repo:tag` references resolved through the repository's current tags.
fn ecs_digests(repo: &RepoSnapshot, ecs: &EcsUsage) -> HashMap<String, String> {
    let origin = |key: &String| ecs.origins.get(key).cloned().unwrap_or_else(|| key.clone());
    let mut out: HashMap<String, String> =
        ecs.digests.iter().map(|d| (d.clone(), origin(d))).collect();
    let by_tag: HashMap<&str, &str> = repo
        .images
        .iter()
        .flat_map(|img| {
            img.tags
                .iter()
                .map(move |t| (t.as_str(), img.digest.as_str()))
        })
        .collect();
    for reference in &ecs.references {
        let (name, target) = reference::split(reference);
        if !reference::names_repository(name, &repo.repository.uri, &repo.repository.name) {
            continue;
        }
        match target {
            Target::Digest(d) => {
                out.insert(d.to_owned(), origin(reference));
            }
            Target::Tag(t) => {
                if let Some(d) = by_tag.get(t) {
                    out.entry((*d).to_owned())
                        .or_insert_with(|| origin(reference));
                }
            }
        }
    }
    out
}

fn protection(
    index: usize,
    unit: &Unit,
    in_use: &HashMap<String, String>,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Option<Reason> {
    if let Some(reference) = unit.members.iter().find_map(|(d, _)| in_use.get(d)) {
        return Some(Reason::InUseByEcs(reference.clone()));
    }
    for tag in &unit.all_tags {
        let hits = policy.protect_tag_set.matches(tag);
        if let Some(&first) = hits.first() {
            return Some(Reason::ProtectedTag(policy.protect_tags[first].clone()));
        }
    }
    if index == 0 {
        return Some(Reason::Newest);
    }
    let age = now.signed_duration_since(unit.pushed_at).to_std();
    if unit.tags.is_empty()
        && !unit.root_is_index
        && age.as_ref().map_or(true, |a| *a < PENDING_CHILD_AGE)
    {
        return Some(Reason::PendingChild);
    }
    let young = now
        .signed_duration_since(unit.pushed_at)
        .to_std()
        .map_or(true, |age| age < policy.min_age);
    if young {
        return Some(Reason::YoungerThanMinAge);
    }
    None
}

#[cfg(test)]
mod tests;
