//! `ecr-prune`: lifecycle-policy pruning of ECR repositories that knows image indexes,
//! signatures and what ECS runs. `run` is the job: snapshot (`snapshot`) → pure plan
//! (`planner`, with `rules` and `grouping`) → delete (`executor`) → `report` (plan +
//! outcomes). Repositories are processed concurrently; one failing repository does not
//! stop the others (exit 1 at the end).

pub mod executor;
pub mod grouping;
pub mod lambda;
pub mod planner;
pub mod pull_time;
pub mod reference;
pub mod report;
pub mod reviewed;
pub mod rules;
pub mod scheduled;
pub mod settings;
pub mod snapshot;
pub mod usage;
pub mod usage_file;
pub mod validation;

use chrono::{DateTime, Utc};
use futures_util::stream::{self, StreamExt};
use tokio_util::sync::CancellationToken;

use crate::ports::ecr::{ApiError, EcrApi, Repository};
use planner::{Policy, ReviewedPlan};
use report::{RepoOutcome, RepoReport, Report, ReviewedInfo};
use reviewed::{PlanFile, PlanFileError};
use settings::Settings;
use snapshot::EcsUsage;
use usage::UsageSource;

/// Errors of this command area.
#[derive(Debug, thiserror::Error)]
pub enum EcrError {
    #[error("cannot list ECR repositories ({0}); check credentials, region and ecr:DescribeRepositories permission")]
    ListRepositories(ApiError),
    #[error("cannot read what ECS, EventBridge or Lambda run ({0}); nothing was deleted, since in-use images could not be protected; check the ecs:, events:, scheduler: and lambda: List*/Describe*/Get* permissions or --protect-ecs-cluster")]
    Ecs(ApiError),
    #[error("cannot use the usage file {}: {message}; nothing was deleted", path.display())]
    UsageFile {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("cannot assume the usage role {role} ({error}); nothing was deleted; check the role's trust policy and sts:AssumeRole permission")]
    UsageRole { role: String, error: ApiError },
    #[error("cannot write the usage file {}: {error}", path.display())]
    WriteUsage {
        path: std::path::PathBuf,
        error: std::io::Error,
    },
    #[error("cannot write the report: {0}")]
    Output(#[from] std::io::Error),
    /// No AWS client can be built (no CA certificates): nothing was read.
    #[error("{0}")]
    Tls(String),
    /// A plan file that cannot be applied: nothing was read or deleted.
    #[error("{0}")]
    Plan(#[from] PlanFileError),
    #[error(
        "cannot write the plan file {path}: {error}; check the directory exists and is writable"
    )]
    PlanOut { path: String, error: std::io::Error },
}

impl EcrError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::ListRepositories(_)
            | Self::Ecs(_)
            | Self::UsageFile { .. }
            | Self::UsageRole { .. }
            | Self::WriteUsage { .. }
            | Self::Output(_)
            | Self::Tls(_)
            | Self::PlanOut { .. } => crate::exit::EXIT_RUNTIME,
            Self::Plan(_) => crate::exit::EXIT_USAGE,
        }
    }
}

/// Read and check the reviewed plan file (`--plan`).
fn load_plan(
    path: &std::path::Path,
    now: DateTime<Utc>,
    max_age: std::time::Duration,
) -> Result<PlanFile, PlanFileError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| PlanFileError::Read {
        path: shown.clone(),
        error: e.to_string(),
    })?;
    reviewed::parse(&shown, &text, now, max_age)
}

/// One prune pass over the repositories `settings` selects. Reads overlap where nothing
/// orders them: what every usage source can start next is read while the repositories
/// are listed and read (`settings.concurrency` repositories at a time, and as many
/// BatchGetImage calls per repository), the pull-time exclusion and the quota while the
/// repositories are listed. Only then, per repository (concurrently): plan → delete
/// when applying and the plan is not refused. So nothing is deleted before every usage
/// source was read, and a usage read that fails stops the repository reads under way.
/// Cancelling stops between repositories and between delete calls. Prints nothing,
/// builds no adapter, reads no clock: `now` is the time the plan is made for.
pub async fn run(
    settings: &Settings,
    ecr: &dyn EcrApi,
    sources: &[UsageSource<'_>],
    now: DateTime<Utc>,
    cancel: &CancellationToken,
) -> Result<Report, EcrError> {
    // A reviewed plan is checked before any call: a bad or stale one changes nothing.
    let reviewed = match &settings.plan {
        Some(path) => Some(load_plan(path, now, settings.plan_max_age)?),
        None => None,
    };
    // Usage files are local: one that cannot be used fails the run before any call.
    let files = read_usage_files(settings, now)?;
    let plan_file = reviewed.as_ref();
    let ((read, watermark), sources) = tokio::try_join!(
        read_repositories(settings, ecr, plan_file, cancel),
        read_usage_sources(settings, sources)
    )?;
    // Files first, as `read_usage` does: the first chain found names a use.
    let mut usage = files;
    usage.merge(sources);
    let policy = policy(settings, watermark);
    let (usage_ref, policy) = (&usage, &policy);
    let mut reports: Vec<RepoReport> = stream::iter(read)
        .map(move |snap| {
            plan_repository(
                ecr,
                snap,
                usage_ref,
                policy,
                now,
                settings.apply,
                plan_file,
                cancel,
            )
        })
        .buffer_unordered(settings.concurrency)
        .collect()
        .await;
    reports.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(path) = &settings.plan_out {
        write_plan(path, now, &usage, &reports)?;
    }
    Ok(Report {
        apply: settings.apply,
        repositories: reports,
        reviewed: reviewed.map(|p| ReviewedInfo {
            path: settings.plan.clone().unwrap_or_default(),
            created_at: p.created_at,
            inputs_digest: p.inputs_digest,
        }),
    })
}

/// Every repository the run selects, read (`settings.concurrency` at a time), with the
/// quota watermark. The pull-time exclusion and the quota are read while the
/// repositories are listed; the exclusion is in place before any BatchGetImage.
async fn read_repositories(
    settings: &Settings,
    ecr: &dyn EcrApi,
    plan_file: Option<&PlanFile>,
    cancel: &CancellationToken,
) -> Result<RepositoryReads, EcrError> {
    let (_, repositories, watermark) = tokio::join!(
        pull_time::ensure(ecr, settings.pull_time_exclusion),
        ecr.list_repositories(),
        snapshot::read_watermark(ecr, settings.max_images),
    );
    let selected: Vec<Repository> = repositories
        .map_err(EcrError::ListRepositories)?
        .into_iter()
        .filter(|r| settings.selects(&r.name))
        .filter(|r| plan_file.is_none_or(|p| p.repository(&r.name).is_some()))
        .collect();
    tracing::info!(
        repositories = selected.len(),
        apply = settings.apply,
        "ecr-prune pass"
    );
    let concurrency = settings.concurrency;
    let read = stream::iter(selected)
        .map(move |repository| read_repository(ecr, repository, concurrency, cancel))
        .buffer_unordered(concurrency)
        .collect()
        .await;
    Ok((read, watermark))
}

/// Each repository read (or its report when it was not), and the quota watermark.
type RepositoryReads = (Vec<Result<snapshot::RepoSnapshot, RepoReport>>, Option<u64>);

/// Everything that can start next: every source (the caller's account, each assumed
/// role's) and every `--usage-file`. Any of them unreadable fails the whole read.
pub async fn read_usage(
    settings: &Settings,
    sources: &[UsageSource<'_>],
    now: DateTime<Utc>,
) -> Result<EcsUsage, EcrError> {
    let mut usage = read_usage_files(settings, now)?;
    usage.merge(read_usage_sources(settings, sources).await?);
    Ok(usage)
}

/// What every `--usage-file` says its account can start next.
fn read_usage_files(settings: &Settings, now: DateTime<Utc>) -> Result<EcsUsage, EcrError> {
    let mut usage = EcsUsage::default();
    for path in &settings.usage_file {
        let file = usage_file::read(path).map_err(|message| EcrError::UsageFile {
            path: path.clone(),
            message,
        })?;
        let age = now.signed_duration_since(file.generated_at);
        if age
            > chrono::Duration::from_std(usage_file::STALE_AFTER).unwrap_or(chrono::TimeDelta::MAX)
        {
            tracing::warn!(
                "usage file {} was written {}h ago; what its account started since is not protected: write it again before each prune",
                path.display(),
                age.num_hours()
            );
        }
        usage.merge(file.usage(path));
    }
    Ok(usage)
}

/// What every source (account) can start next, the sources read concurrently.
async fn read_usage_sources(
    settings: &Settings,
    sources: &[UsageSource<'_>],
) -> Result<EcsUsage, EcrError> {
    let mut usage = EcsUsage::default();
    let reads = futures_util::future::join_all(
        sources
            .iter()
            .map(|source| usage::read_source(source, settings)),
    )
    .await;
    for (source, read) in sources.iter().zip(reads) {
        let read = read.map_err(|e| match source.label {
            "" => EcrError::Ecs(e),
            label => EcrError::Ecs(ApiError {
                operation: e.operation,
                message: format!("{label}: {}", e.message),
            }),
        })?;
        usage.merge(read);
    }
    Ok(usage)
}

/// `--plan-out`: the plan of every repository read, written atomically.
fn write_plan(
    path: &std::path::Path,
    now: DateTime<Utc>,
    usage: &EcsUsage,
    reports: &[RepoReport],
) -> Result<(), EcrError> {
    let plans: Vec<(&str, &str, &planner::RepoPlan)> = reports
        .iter()
        .filter_map(|r| {
            Some((
                r.name.as_str(),
                r.inputs_digest.as_deref()?,
                r.plan.as_ref()?,
            ))
        })
        .collect();
    let file = reviewed::build(now, usage, &plans);
    crate::shared::atomic_file::atomic_write(path, file.to_text().as_bytes(), 0o644).map_err(
        |error| EcrError::PlanOut {
            path: path.display().to_string(),
            error,
        },
    )?;
    tracing::info!(path = %path.display(), repositories = plans.len(), "plan written");
    Ok(())
}

/// The planner's policy from the settings and the resolved quota watermark.
fn policy(settings: &Settings, max_images: Option<u64>) -> Policy {
    Policy {
        rules: settings.rules.clone(),
        protect_tags: settings.protect_tag.clone(),
        protect_tag_set: settings.protect_tag_set.clone(),
        min_age: settings.min_age,
        max_images,
        max_delete_percent: settings.max_delete_percent,
        force: settings.force,
    }
}

/// One repository read (`concurrency` BatchGetImage calls at a time), or its report
/// when it was not: cancelled before, or the read failed.
async fn read_repository(
    ecr: &dyn EcrApi,
    repository: Repository,
    concurrency: usize,
    cancel: &CancellationToken,
) -> Result<snapshot::RepoSnapshot, RepoReport> {
    let name = repository.name.clone();
    let unread = |outcome| RepoReport {
        name: name.clone(),
        plan: None,
        outcome,
        inputs_digest: None,
        validation: None,
        unchanged_since_plan: None,
    };
    if cancel.is_cancelled() {
        return Err(unread(RepoOutcome::NotRead));
    }
    snapshot::read_repository(ecr, repository, concurrency)
        .await
        .map_err(|e| {
            tracing::warn!(repository = %name, error = %e, "cannot read repository");
            unread(RepoOutcome::ReadFailed(e))
        })
}

/// One repository as read (or its report when it was not): plan it, from its part of
/// the reviewed plan file when there is one, and apply.
#[allow(clippy::too_many_arguments)]
async fn plan_repository(
    ecr: &dyn EcrApi,
    snap: Result<snapshot::RepoSnapshot, RepoReport>,
    usage: &EcsUsage,
    policy: &Policy,
    now: DateTime<Utc>,
    apply: bool,
    plan_file: Option<&PlanFile>,
    cancel: &CancellationToken,
) -> RepoReport {
    let snap = match snap {
        Ok(snap) => snap,
        Err(unread) => return unread,
    };
    let reviewed = plan_file.and_then(|p| {
        p.repository(&snap.repository.name)
            .map(|repo| ReviewedPlan {
                repo,
                created_at: p.created_at,
            })
    });
    prune_repository(ecr, snap, usage, policy, now, apply, reviewed, cancel).await
}

/// One repository read: plan (from the reviewed plan when there is one), and
/// (applying, not refused) delete, then validate what is left.
#[allow(clippy::too_many_arguments)]
async fn prune_repository(
    ecr: &dyn EcrApi,
    snap: snapshot::RepoSnapshot,
    usage: &EcsUsage,
    policy: &Policy,
    now: DateTime<Utc>,
    apply: bool,
    reviewed: Option<ReviewedPlan<'_>>,
    cancel: &CancellationToken,
) -> RepoReport {
    let name = snap.repository.name.clone();
    let inputs_digest = reviewed::repository_digest(&snap);
    let plan = match reviewed {
        Some(r) => planner::plan_reviewed(&snap, usage, policy, now, r),
        None => planner::plan_repository(&snap, usage, policy, now),
    };
    let mut validation = None;
    let outcome = if let Some(refusal) = plan.refused {
        tracing::warn!(repository = %name, deleting = refusal.deleting, of = refusal.of, "plan refused by the safety cap");
        RepoOutcome::Refused(refusal)
    } else if !apply {
        RepoOutcome::Planned
    } else {
        let deletion = executor::execute(ecr, &plan, cancel).await;
        tracing::info!(repository = %name, deleted = deletion.deleted(), "repository pruned");
        if !deletion.images.is_empty() {
            validation = Some(validate(ecr, &snap).await);
        }
        RepoOutcome::Applied(deletion)
    };
    RepoReport {
        unchanged_since_plan: reviewed.map(|r| r.repo.inputs_digest == inputs_digest),
        name,
        plan: Some(plan),
        outcome,
        inputs_digest: Some(inputs_digest),
        validation,
    }
}

/// The validation pass: read the repository again and compare it with `before`.
async fn validate(
    ecr: &dyn EcrApi,
    before: &snapshot::RepoSnapshot,
) -> Result<validation::Validation, ApiError> {
    let name = &before.repository.name;
    let after = snapshot::read_again(ecr, before).await.inspect_err(|e| {
        tracing::warn!(repository = %name, error = %e, "cannot read the repository again to validate the apply");
    })?;
    let v = validation::validate(before, &after);
    for violation in &v.violations {
        tracing::error!(repository = %name, violation = %violation, "validation failed");
    }
    Ok(v)
}

#[cfg(test)]
mod tests;
