//! Where `ecr-prune` reads what can start next: one `UsageSource` per account and region
//! (the caller's own, one per assumed `--usage-role`, each in this region and in every
//! `--usage-region`), each scanned for ECS tasks and
//! services, EventBridge rules and Scheduler schedules that run ECS tasks, and Lambda
//! container-image functions. A source that cannot be read fails the run closed.

use super::lambda::read_lambda;
use super::scheduled::read_scheduled;
use super::settings::Settings;
use super::snapshot::{read_ecs_with, EcsUsage};
use crate::ports::ecr::ApiError;
use crate::ports::ecs::EcsApi;
use crate::ports::lambda::LambdaApi;
use crate::ports::schedules::ScheduleApi;

/// One account's (and region's) APIs that tell what runs there.
#[derive(Clone, Copy)]
pub struct UsageSource<'a> {
    /// Empty for the caller's own account in this region; otherwise who and where this
    /// is ("account 210987654321 (role …) in region us-west-2") — it starts every chain
    /// read from it.
    pub label: &'a str,
    pub ecs: &'a dyn EcsApi,
    pub schedules: &'a dyn ScheduleApi,
    pub lambda: &'a dyn LambdaApi,
}

impl std::fmt::Debug for UsageSource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageSource")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

/// Everything one source can start next. Scheduled tasks are read beside the clusters:
/// their task definitions join the services' and tasks' (images and family revisions);
/// Lambda beside both.
pub async fn read_source(
    source: &UsageSource<'_>,
    settings: &Settings,
) -> Result<EcsUsage, ApiError> {
    let keep = settings.keep_task_definitions as usize;
    let scheduled = read_scheduled(
        source.schedules,
        &settings.protect_ecs_cluster,
        settings.concurrency,
    );
    let (ecs, lambda) = tokio::join!(
        read_ecs_with(
            source.ecs,
            &settings.protect_ecs_cluster,
            settings.concurrency,
            keep,
            scheduled,
        ),
        read_lambda(source.lambda, keep, settings.concurrency)
    );
    let mut usage = ecs?;
    usage.merge(lambda?);
    if !source.label.is_empty() {
        for chain in usage.origins.values_mut() {
            *chain = format!("{}: {chain}", source.label);
        }
    }
    Ok(usage)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecr_prune::settings::{EcrOptions, Settings};
    use crate::ports::schedules::EcsTarget;
    use crate::testing::ecr::FakeEcs;
    use crate::testing::usage::{FakeLambda, FakeSchedules};

    fn settings() -> Settings {
        crate::ecr_prune::tests::settings(EcrOptions {
            keep_task_definitions: Some(2),
            ..EcrOptions::default()
        })
    }

    struct Fakes {
        ecs: FakeEcs,
        schedules: FakeSchedules,
        lambda: FakeLambda,
    }

    impl Fakes {
        fn source<'a>(&'a self, label: &'a str) -> UsageSource<'a> {
            UsageSource {
                label,
                ecs: &self.ecs,
                schedules: &self.schedules,
                lambda: &self.lambda,
            }
        }
    }

    fn fakes() -> Fakes {
        let mut ecs = FakeEcs::default();
        ecs.families.insert(
            "etl".into(),
            vec!["etl:7".into(), "etl:6".into(), "etl:5".into()],
        );
        for r in 5..=7 {
            ecs.task_definitions
                .insert(format!("etl:{r}"), vec![format!("repo:etl-{r}")]);
        }
        let mut schedules = FakeSchedules::default();
        schedules.schedules.insert(
            ("default".into(), "nightly".into()),
            Some(EcsTarget {
                cluster: "arn:aws:ecs:us-east-1:123456789012:cluster/prod".into(),
                task_definition: "etl:7".into(),
            }),
        );
        Fakes {
            ecs,
            schedules,
            lambda: FakeLambda::default(),
        }
    }

    #[tokio::test]
    async fn a_scheduled_task_definition_and_its_family_revisions_protect() {
        let usage = read_source(&fakes().source(""), &settings()).await.unwrap();
        let refs: Vec<&str> = usage.references.iter().map(String::as_str).collect();
        assert_eq!(refs, vec!["repo:etl-6", "repo:etl-7"]);
        assert_eq!(
            usage.origins["repo:etl-7"],
            "schedule nightly, task definition etl:7: repo:etl-7"
        );
        assert!(usage.origins["repo:etl-6"]
            .starts_with("task definition family etl, one of its latest 2 ACTIVE revisions"));
    }

    #[tokio::test]
    async fn another_accounts_chains_name_it() {
        let usage = read_source(&fakes().source("account 210987654321"), &settings())
            .await
            .unwrap();
        assert_eq!(
            usage.origins["repo:etl-7"],
            "account 210987654321: schedule nightly, task definition etl:7: repo:etl-7"
        );
    }
}
