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
pub mod rules;
pub mod scheduled;
pub mod settings;
pub mod snapshot;
pub mod usage;
pub mod usage_file;

use chrono::{DateTime, Utc};
use futures_util::stream::{self, StreamExt};
use tokio_util::sync::CancellationToken;

use crate::ports::ecr::{ApiError, EcrApi, Repository};
use planner::Policy;
use report::{RepoOutcome, RepoReport, Report};
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
}

impl EcrError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::ListRepositories(_)
            | Self::Ecs(_)
            | Self::UsageFile { .. }
            | Self::UsageRole { .. }
            | Self::WriteUsage { .. }
            | Self::Output(_) => crate::exit::EXIT_RUNTIME,
        }
    }
}

/// One prune pass over the repositories `settings` selects: read what ECS uses once,
/// then per repository (concurrently, `settings.concurrency` at a time) read → plan →
/// delete when applying and the plan is not refused. Cancelling stops between
/// repositories and between delete calls. Prints nothing, builds no adapter, reads no
/// clock: `now` is the time the plan is made for.
pub async fn run(
    settings: &Settings,
    ecr: &dyn EcrApi,
    sources: &[UsageSource<'_>],
    now: DateTime<Utc>,
    cancel: &CancellationToken,
) -> Result<Report, EcrError> {
    // Before any BatchGetImage: our reads must not count as pulls.
    pull_time::ensure(ecr, settings.pull_time_exclusion).await;
    let (repositories, usage) =
        tokio::join!(ecr.list_repositories(), read_usage(settings, sources, now));
    let repositories = repositories.map_err(EcrError::ListRepositories)?;
    let usage = usage?;
    let selected: Vec<Repository> = repositories
        .into_iter()
        .filter(|r| settings.selects(&r.name))
        .collect();
    tracing::info!(
        repositories = selected.len(),
        apply = settings.apply,
        "ecr-prune pass"
    );
    let policy = policy(
        settings,
        snapshot::read_watermark(ecr, settings.max_images).await,
    );
    let (usage, policy) = (&usage, &policy);
    let mut reports: Vec<RepoReport> = stream::iter(selected)
        .map(|repository| {
            prune_repository(ecr, repository, usage, policy, now, settings.apply, cancel)
        })
        .buffer_unordered(settings.concurrency)
        .collect()
        .await;
    reports.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Report {
        apply: settings.apply,
        repositories: reports,
    })
}

/// Everything that can start next: every source (the caller's account, each assumed
/// role's) and every `--usage-file`. Any of them unreadable fails the whole read.
pub async fn read_usage(
    settings: &Settings,
    sources: &[UsageSource<'_>],
    now: DateTime<Utc>,
) -> Result<EcsUsage, EcrError> {
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

/// One repository: read, plan, and (applying, not refused) delete.
async fn prune_repository(
    ecr: &dyn EcrApi,
    repository: Repository,
    usage: &EcsUsage,
    policy: &Policy,
    now: DateTime<Utc>,
    apply: bool,
    cancel: &CancellationToken,
) -> RepoReport {
    let name = repository.name.clone();
    if cancel.is_cancelled() {
        return RepoReport {
            name,
            plan: None,
            outcome: RepoOutcome::NotRead,
        };
    }
    let snap = match snapshot::read_repository(ecr, repository).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(repository = %name, error = %e, "cannot read repository");
            return RepoReport {
                name,
                plan: None,
                outcome: RepoOutcome::ReadFailed(e),
            };
        }
    };
    let plan = planner::plan_repository(&snap, usage, policy, now);
    let outcome = if let Some(refusal) = plan.refused {
        tracing::warn!(repository = %name, deleting = refusal.deleting, of = refusal.of, "plan refused by the safety cap");
        RepoOutcome::Refused(refusal)
    } else if !apply {
        RepoOutcome::Planned
    } else {
        let deletion = executor::execute(ecr, &plan, cancel).await;
        tracing::info!(repository = %name, deleted = deletion.deleted(), "repository pruned");
        RepoOutcome::Applied(deletion)
    };
    RepoReport {
        name,
        plan: Some(plan),
        outcome,
    }
}

#[cfg(test)]
mod tests;
