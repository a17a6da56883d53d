//! The scheduled-task port of `ecr-prune`: the ECS targets of EventBridge rules and of
//! EventBridge Scheduler schedules, as facts (which cluster, which task definition).
//! Whether they protect an image is the core's decision (`ecr_prune::scheduled`). Each
//! method is one API operation (or its pagination).

pub use super::ecr::ApiError;

/// An ECS target of a rule or a schedule: a task definition run on a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EcsTarget {
    /// The target's `Arn`: the cluster the task runs on.
    pub cluster: String,
    /// `EcsParameters.TaskDefinitionArn` (an ARN, or `family[:revision]`).
    pub task_definition: String,
}

/// One schedule of ListSchedules.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScheduleBrief {
    pub group: String,
    pub name: String,
    /// `Target.Arn` of the summary: an ECS cluster ARN when the schedule runs a task.
    pub target_arn: Option<String>,
}

#[async_trait::async_trait]
pub trait ScheduleApi: Send + Sync {
    /// Every event bus name (ListEventBuses, all pages): rules live on a bus.
    async fn list_event_buses(&self) -> Result<Vec<String>, ApiError>;
    /// Every rule name of `bus` (ListRules, all pages of 100).
    async fn list_rules(&self, bus: &str) -> Result<Vec<String>, ApiError>;
    /// The targets of one rule that run ECS tasks (ListTargetsByRule, all pages of 100;
    /// a target without `EcsParameters` is not an ECS task and is left out).
    async fn rule_ecs_targets(&self, bus: &str, rule: &str) -> Result<Vec<EcsTarget>, ApiError>;
    /// Every schedule of every group (ListSchedules, all pages of 100).
    async fn list_schedules(&self) -> Result<Vec<ScheduleBrief>, ApiError>;
    /// A schedule's ECS target (GetSchedule), None when its target runs no ECS task.
    async fn schedule_ecs_target(
        &self,
        group: &str,
        name: &str,
    ) -> Result<Option<EcsTarget>, ApiError>;
}
