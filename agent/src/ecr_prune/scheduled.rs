//! Scheduled tasks: the task definitions EventBridge rules (ListEventBuses → ListRules →
//! ListTargetsByRule) and EventBridge Scheduler schedules (ListSchedules → GetSchedule,
//! only for those whose target is an ECS cluster) run on the protected clusters. They
//! are protected like a service's: their images and the newest ACTIVE revisions of
//! their family (`snapshot::read_ecs_with`). An endpoint that does not serve one of the
//! APIs has nothing scheduled there: one warning, and the run goes on; any other error
//! fails the run closed.

use std::collections::BTreeMap;

use futures_util::stream::{self, StreamExt, TryStreamExt};

use super::settings::ProtectClusters;
use super::snapshot::unavailable;
use crate::ports::ecr::ApiError;
use crate::ports::schedules::{EcsTarget, ScheduleApi, ScheduleBrief};

/// Does this target run on a protected cluster? Its `Arn` is the cluster's ARN; a named
/// cluster matches by name or ARN.
fn protected(target: &EcsTarget, clusters: &ProtectClusters) -> bool {
    match clusters {
        ProtectClusters::All => true,
        ProtectClusters::Named(names) => {
            let name = target
                .cluster
                .rsplit_once(":cluster/")
                .map_or(target.cluster.as_str(), |(_, n)| n);
            names.iter().any(|n| n == &target.cluster || n == name)
        }
    }
}

/// A schedule whose summary names an ECS cluster as its target (only those are read
/// with GetSchedule; a Lambda, SQS or other target runs no task definition).
fn targets_ecs(brief: &ScheduleBrief) -> bool {
    brief
        .target_arn
        .as_deref()
        .is_some_and(|a| a.contains(":ecs:") && a.contains(":cluster/"))
}

/// Task definition → the rule or schedule that runs it ("schedule nightly", "EventBridge
/// rule etl on bus ops"), for the protected clusters; `read_ecs_with` adds the task
/// definition and its images to the chain.
pub async fn read_scheduled(
    api: &dyn ScheduleApi,
    clusters: &ProtectClusters,
    concurrency: usize,
) -> Result<BTreeMap<String, String>, ApiError> {
    let (rules, schedules) = tokio::join!(
        read_rules(api, clusters, concurrency),
        read_schedules(api, clusters, concurrency)
    );
    let mut out = BTreeMap::new();
    for found in [schedules, rules] {
        match found {
            Ok(tds) => {
                for (td, origin) in tds {
                    out.entry(td).or_insert(origin);
                }
            }
            Err(e) if unavailable(&e) => tracing::warn!(
                "{} is not available on this endpoint ({}); no scheduled task of it is protected",
                if e.operation.contains("Schedule") {
                    "EventBridge Scheduler"
                } else {
                    "EventBridge"
                },
                e.brief()
            ),
            Err(e) => return Err(e),
        }
    }
    tracing::debug!(task_definitions = out.len(), "scheduled tasks read");
    Ok(out)
}

async fn read_rules(
    api: &dyn ScheduleApi,
    clusters: &ProtectClusters,
    concurrency: usize,
) -> Result<Vec<(String, String)>, ApiError> {
    let mut rules = Vec::new();
    for bus in api.list_event_buses().await? {
        for rule in api.list_rules(&bus).await? {
            rules.push((bus.clone(), rule));
        }
    }
    let per_rule: Vec<Vec<(String, String)>> = stream::iter(rules)
        .map(|(bus, rule)| async move {
            let targets = api.rule_ecs_targets(&bus, &rule).await?;
            let origin = if bus == "default" {
                format!("EventBridge rule {rule}")
            } else {
                format!("EventBridge rule {rule} on bus {bus}")
            };
            Ok::<_, ApiError>(
                targets
                    .into_iter()
                    .filter(|t| protected(t, clusters))
                    .map(|t| (t.task_definition, origin.clone()))
                    .collect(),
            )
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    Ok(per_rule.into_iter().flatten().collect())
}

async fn read_schedules(
    api: &dyn ScheduleApi,
    clusters: &ProtectClusters,
    concurrency: usize,
) -> Result<Vec<(String, String)>, ApiError> {
    let schedules: Vec<ScheduleBrief> = api
        .list_schedules()
        .await?
        .into_iter()
        .filter(targets_ecs)
        .collect();
    let found: Vec<Option<(String, String)>> = stream::iter(schedules)
        .map(|s| async move {
            let target = api.schedule_ecs_target(&s.group, &s.name).await?;
            let origin = if s.group == "default" {
                format!("schedule {}", s.name)
            } else {
                format!("schedule {}/{}", s.group, s.name)
            };
            Ok::<_, ApiError>(
                target
                    .filter(|t| protected(t, clusters))
                    .map(|t| (t.task_definition, origin)),
            )
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    Ok(found.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::usage::FakeSchedules;

    fn target(cluster: &str, td: &str) -> EcsTarget {
        EcsTarget {
            cluster: format!("arn:aws:ecs:us-east-1:123456789012:cluster/{cluster}"),
            task_definition: td.into(),
        }
    }

    fn fake() -> FakeSchedules {
        let mut f = FakeSchedules::default();
        f.rules.insert(
            ("default".into(), "etl-hourly".into()),
            vec![target("prod", "etl:7")],
        );
        f.rules.insert(
            ("ops".into(), "cleanup".into()),
            vec![target("batch", "cleanup:2")],
        );
        f.schedules.insert(
            ("default".into(), "nightly".into()),
            Some(target("prod", "report:3")),
        );
        f.schedules.insert(("default".into(), "ping".into()), None);
        f.schedules.insert(
            ("jobs".into(), "weekly".into()),
            Some(target("batch", "weekly:1")),
        );
        f
    }

    #[tokio::test]
    async fn rules_and_schedules_running_ecs_tasks_name_their_task_definitions() {
        let f = fake();
        let tds = read_scheduled(&f, &ProtectClusters::All, 2).await.unwrap();
        assert_eq!(tds["etl:7"], "EventBridge rule etl-hourly");
        assert_eq!(tds["cleanup:2"], "EventBridge rule cleanup on bus ops");
        assert_eq!(tds["report:3"], "schedule nightly");
        assert_eq!(tds["weekly:1"], "schedule jobs/weekly");
        assert_eq!(tds.len(), 4);
        assert_eq!(
            f.calls("GetSchedule"),
            2,
            "not for the schedule without an ECS target"
        );
        assert_eq!(f.calls("ListRules"), 2, "one per bus");
        assert_eq!(f.calls("ListTargetsByRule"), 2);
    }

    #[tokio::test]
    async fn only_targets_on_protected_clusters_count() {
        let f = fake();
        let named = ProtectClusters::Named(vec![
            "prod".into(),
            "arn:aws:ecs:us-east-1:123456789012:cluster/other".into(),
        ]);
        let tds = read_scheduled(&f, &named, 2).await.unwrap();
        let keys: Vec<&str> = tds.keys().map(String::as_str).collect();
        assert_eq!(keys, vec!["etl:7", "report:3"]);
    }

    #[tokio::test]
    async fn an_unavailable_scheduler_is_skipped_and_denied_rules_fail_closed() {
        let mut f = fake();
        f.scheduler_unavailable = true;
        let tds = read_scheduled(&f, &ProtectClusters::All, 2).await.unwrap();
        assert!(tds.contains_key("etl:7") && !tds.contains_key("report:3"));
        f.rules_denied = true;
        let e = read_scheduled(&f, &ProtectClusters::All, 2)
            .await
            .unwrap_err();
        assert_eq!(e.operation, "ListRules");
    }
}
