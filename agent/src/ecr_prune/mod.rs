//! `ecr-prune`: lifecycle-policy pruning of ECR repositories that knows image indexes,
//! signatures and what ECS runs. Snapshot (`snapshot`) → pure plan (`planner`, with
//! `rules` and `grouping`) → delete (`executor`) → `report`. Repositories are processed
//! concurrently; one failing repository does not stop the others (exit 1 at the end).

pub mod executor;
pub mod grouping;
pub mod planner;
pub mod report;
pub mod rules;
pub mod settings;
pub mod snapshot;

use std::io::Write;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::stream::{self, StreamExt};
use tokio_util::sync::CancellationToken;

use crate::app::Globals;
use crate::cli::{EcrPruneArgs, OutputFormat};
use crate::config::RawEcr;
use crate::error::Status;
use crate::ports::ecr::EcrApi;
use crate::ports::ecs::EcsApi;
use crate::ports::Clock;
use planner::Policy;
use report::{RepoResult, Report};
use settings::Settings;

/// Errors of this command area.
#[derive(Debug, thiserror::Error)]
pub enum EcrError {
    #[error("invalid {key}: {message}")]
    Invalid { key: String, message: String },
    #[error("invalid lifecycle policy: {0}")]
    Policy(rules::RuleError),
    #[error("cannot read lifecycle policy {path}: {message}")]
    PolicyFile { path: String, message: String },
    #[error("cannot list ECR repositories ({0}); check credentials, region and ecr:DescribeRepositories permission")]
    ListRepositories(String),
    #[error("cannot read what ECS runs ({0}); nothing was deleted, since in-use images could not be protected; check ecs:List*/Describe* permissions or --protect-ecs-cluster")]
    Ecs(String),
    #[error("cannot write the report: {0}")]
    Output(#[from] std::io::Error),
}

impl EcrError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Invalid { .. } | Self::Policy(_) | Self::PolicyFile { .. } => {
                crate::error::EXIT_USAGE
            }
            Self::ListRepositories(_) | Self::Ecs(_) | Self::Output(_) => {
                crate::error::EXIT_RUNTIME
            }
        }
    }
}

/// The effective settings of this section as JSON (secrets redacted), for `check`.
pub fn effective(raw: &RawEcr) -> Result<serde_json::Value, EcrError> {
    let settings = Settings::resolve(raw, &EcrPruneArgs::default())?;
    serde_json::to_value(&settings).map_err(|e| EcrError::Output(e.into()))
}

/// Run the command: plan (and with `--apply`, delete), print the report.
pub async fn run(globals: &Globals, raw: &RawEcr, args: &EcrPruneArgs) -> Result<Status, EcrError> {
    let (settings, report) = resolve_and_pass(globals, raw, args, CancellationToken::new()).await?;
    let mut out = std::io::stdout().lock();
    match settings.output {
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &report.to_json())
                .map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
        OutputFormat::Text => report.write_text(&mut out)?,
    }
    Ok(if report.failed() {
        Status::PartialFailure
    } else {
        Status::Ok
    })
}

/// What one prune pass did, for the daemon's metrics and logs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EcrSummary {
    /// Repository → images deleted in it.
    pub deleted_per_repository: Vec<(String, u64)>,
    /// Some repository failed or was refused (the CLI would exit 1).
    pub partial_failure: bool,
}

/// Daemon entry: one prune pass with `[ecr]` settings and `args` overrides
/// (`apply` from the job), stopping between batches when `cancel` fires. Prints nothing.
pub async fn run_pass(
    globals: &Globals,
    raw: &RawEcr,
    args: &EcrPruneArgs,
    cancel: CancellationToken,
) -> Result<EcrSummary, EcrError> {
    let (_, report) = resolve_and_pass(globals, raw, args, cancel).await?;
    Ok(summarize(&report))
}

/// The pipeline shared by `run` and `run_pass`: resolve the settings, build the AWS
/// clients, run one pass on the system clock.
async fn resolve_and_pass(
    globals: &Globals,
    raw: &RawEcr,
    args: &EcrPruneArgs,
    cancel: CancellationToken,
) -> Result<(Settings, Report), EcrError> {
    let settings = Settings::resolve(raw, args)?;
    let (ecr, ecs) = crate::adapters::ecr::clients(globals.region.as_deref()).await;
    let report = pass(
        ecr,
        ecs,
        &settings,
        &crate::adapters::clock::SystemClock,
        cancel,
    )
    .await?;
    Ok((settings, report))
}

fn summarize(report: &Report) -> EcrSummary {
    EcrSummary {
        deleted_per_repository: report
            .repositories
            .iter()
            .map(|r| {
                (
                    r.name.clone(),
                    r.outcome.as_ref().map_or(0, |o| o.deleted as u64),
                )
            })
            .collect(),
        partial_failure: report.failed(),
    }
}

/// One pass over the selected repositories: snapshot ECS once, then per repository
/// (concurrently) read → plan → delete when applying and not refused.
pub async fn pass(
    ecr: Arc<dyn EcrApi>,
    ecs: Arc<dyn EcsApi>,
    settings: &Settings,
    clock: &dyn Clock,
    cancel: CancellationToken,
) -> Result<Report, EcrError> {
    let (repositories, usage) = tokio::join!(
        ecr.list_repositories(),
        snapshot::read_ecs(
            ecs.as_ref(),
            &settings.protect_ecs_cluster,
            settings.concurrency
        )
    );
    let repositories = repositories.map_err(|e| EcrError::ListRepositories(e.to_string()))?;
    let usage = usage.map_err(|e| EcrError::Ecs(e.to_string()))?;
    let selected: Vec<_> = repositories
        .into_iter()
        .filter(|r| settings.selects(&r.name))
        .collect();
    tracing::info!(
        repositories = selected.len(),
        apply = settings.apply,
        "ecr-prune pass"
    );
    let policy = Policy {
        rules: settings.rules.clone(),
        protect_tags: settings.protect_tag.clone(),
        protect_tag_set: settings.protect_tag_set.clone(),
        min_age: settings.min_age,
        max_images: snapshot::read_watermark(ecr.as_ref(), settings.max_images).await,
        max_delete_percent: settings.max_delete_percent,
        force: settings.force,
    };
    let now: DateTime<Utc> = clock.now();
    let (usage, policy) = (&usage, &policy);
    let mut results: Vec<RepoResult> = stream::iter(selected)
        .map(|repository| {
            let ecr = Arc::clone(&ecr);
            let cancel = cancel.clone();
            async move {
                prune_repository(
                    ecr.as_ref(),
                    repository,
                    usage,
                    policy,
                    now,
                    settings.apply,
                    &cancel,
                )
                .await
            }
        })
        .buffer_unordered(settings.concurrency)
        .collect()
        .await;
    results.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Report {
        apply: settings.apply,
        repositories: results,
    })
}

async fn prune_repository(
    ecr: &dyn EcrApi,
    repository: crate::ports::ecr::Repository,
    usage: &snapshot::EcsUsage,
    policy: &Policy,
    now: DateTime<Utc>,
    apply: bool,
    cancel: &CancellationToken,
) -> RepoResult {
    let name = repository.name.clone();
    if cancel.is_cancelled() {
        return RepoResult {
            name,
            plan: None,
            outcome: None,
            error: Some("cancelled before this repository was read".to_owned()),
        };
    }
    let snap = match snapshot::read_repository(ecr, repository).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(repository = %name, error = %e, "cannot read repository");
            return RepoResult {
                name,
                plan: None,
                outcome: None,
                error: Some(format!("cannot read images ({e})")),
            };
        }
    };
    let plan = planner::plan_repository(&snap, usage, policy, now);
    if let Some(refusal) = &plan.refused {
        tracing::warn!(repository = %name, deleting = refusal.deleting, of = refusal.of, "plan refused by the safety cap");
        return RepoResult {
            name,
            error: Some(refusal.to_string()),
            plan: Some(plan),
            outcome: None,
        };
    }
    if !apply {
        return RepoResult {
            name,
            plan: Some(plan),
            outcome: None,
            error: None,
        };
    }
    let outcome = executor::execute(ecr, &plan, cancel).await;
    let error = if let Some(e) = &outcome.error {
        Some(format!(
            "delete failed ({e}); {} images deleted before",
            outcome.deleted
        ))
    } else if !outcome.failures.is_empty() {
        Some(format!(
            "{} images could not be deleted (first: {} {})",
            outcome.failures.len(),
            outcome.failures[0].digest,
            outcome.failures[0].code
        ))
    } else if outcome.cancelled {
        Some("cancelled before all deletions".to_owned())
    } else {
        None
    };
    tracing::info!(repository = %name, deleted = outcome.deleted, "repository pruned");
    RepoResult {
        name,
        plan: Some(plan),
        outcome: Some(outcome),
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::ecr::{image_ago, now, FakeEcr, FakeEcs};

    struct Fixed;
    impl Clock for Fixed {
        fn now(&self) -> DateTime<Utc> {
            now()
        }
    }

    fn settings(args: EcrPruneArgs) -> Settings {
        Settings::resolve(&RawEcr::default(), &args).expect("valid")
    }

    fn many(n: usize) -> Vec<crate::ports::ecr::EcrImage> {
        (0..n)
            .map(|i| image_ago(&format!("i{i:04}"), &[&format!("v{i}")], 10 + i as i64 % 50))
            .collect()
    }

    #[tokio::test]
    async fn one_failing_repository_does_not_stop_the_others() {
        let mut ecr = FakeEcr::with(vec![("a", many(10)), ("b", many(10)), ("c", many(10))]);
        ecr.broken.push("b".into());
        let ecr = Arc::new(ecr);
        let s = settings(EcrPruneArgs {
            apply: true,
            keep_last: Some(2),
            force: true,
            ..EcrPruneArgs::default()
        });
        let report = pass(
            ecr.clone(),
            Arc::new(FakeEcs::default()),
            &s,
            &Fixed,
            CancellationToken::new(),
        )
        .await
        .unwrap();
        assert!(report.failed());
        assert_eq!(ecr.digests("a").len(), 2);
        assert_eq!(ecr.digests("c").len(), 2);
        let summary = summarize(&report);
        assert!(summary.partial_failure);
        assert_eq!(summary.deleted_per_repository[0], ("a".to_owned(), 8));
        assert!(report.to_json()["repositories"][1]["error"]
            .as_str()
            .unwrap()
            .contains("AccessDenied"));
    }

    #[tokio::test]
    async fn refused_repository_keeps_everything_and_others_proceed() {
        let ecr = Arc::new(FakeEcr::with(vec![("big", many(10)), ("small", many(3))]));
        let s = settings(EcrPruneArgs {
            apply: true,
            keep_last: Some(2),
            max_delete_percent: Some(50),
            ..EcrPruneArgs::default()
        });
        let report = pass(
            ecr.clone(),
            Arc::new(FakeEcs::default()),
            &s,
            &Fixed,
            CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(ecr.digests("big").len(), 10, "refused: nothing deleted");
        assert_eq!(ecr.digests("small").len(), 2);
        assert!(report.failed());
        let mut text = Vec::new();
        report.write_text(&mut text).unwrap();
        assert!(String::from_utf8(text).unwrap().contains("refused"));
    }

    #[tokio::test]
    async fn plan_mode_deletes_nothing_and_shards_split() {
        let ecr = Arc::new(FakeEcr::with(
            (0..12)
                .map(|i| (Box::leak(format!("r{i}").into_boxed_str()) as &str, many(4)))
                .collect(),
        ));
        let mut total = 0;
        for shard in 0..3 {
            let s = settings(EcrPruneArgs {
                keep_last: Some(1),
                shard: Some(format!("{shard}/3")),
                ..EcrPruneArgs::default()
            });
            let report = pass(
                ecr.clone(),
                Arc::new(FakeEcs::default()),
                &s,
                &Fixed,
                CancellationToken::new(),
            )
            .await
            .unwrap();
            total += report.repositories.len();
        }
        assert_eq!(total, 12);
        assert_eq!(ecr.calls("BatchDeleteImage"), 0);
    }
}
