//! The ECS port of `ecr-prune`: what the protected clusters run, as facts (a task's
//! images, a service's deployments each WITH its status). Which of them protect an
//! image is the core's decision (`ecr_prune::snapshot`). Each method is one API
//! operation (or its pagination), so the core controls batching.

pub use super::ecr::ApiError;

/// Largest task list DescribeTasks accepts.
pub const ECS_TASKS_BATCH_MAX: usize = 100;
/// Largest service list DescribeServices accepts.
pub const ECS_SERVICES_BATCH_MAX: usize = 10;
/// Largest ARN list DescribeServiceDeployments and DescribeServiceRevisions accept.
pub const ECS_SERVICE_DEPLOYMENTS_BATCH_MAX: usize = 20;

/// What DescribeTasks tells about one task.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskImages {
    pub task_definition: String,
    /// Container `image` references as the task runs them.
    pub images: Vec<String>,
    /// Container `imageDigest`s resolved by the agent.
    pub digests: Vec<String>,
}

/// A deployment's `status` as DescribeServices reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeploymentStatus {
    /// The deployment ECS is moving the service to.
    Primary,
    /// A deployment still running tasks while the primary one takes over.
    Active,
    /// A finished, replaced deployment.
    Inactive,
    /// A status this build does not know, as ECS sent it.
    Other(String),
}

impl DeploymentStatus {
    /// ECS's name of a status (`PRIMARY`, `ACTIVE`, `INACTIVE`).
    pub fn from_name(name: &str) -> Self {
        match name {
            "PRIMARY" => Self::Primary,
            "ACTIVE" => Self::Active,
            "INACTIVE" => Self::Inactive,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// One deployment of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    /// None when ECS sent no status.
    pub status: Option<DeploymentStatus>,
    pub task_definition: Option<String>,
}

/// One service as DescribeServices returns it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Service {
    /// `serviceArn` (what ListServiceDeployments takes).
    pub arn: String,
    /// `serviceName`.
    pub name: String,
    /// The service's own `taskDefinition`.
    pub task_definition: Option<String>,
    pub deployments: Vec<Deployment>,
}

/// One entry of ListServiceDeployments' `serviceDeployments[]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceDeploymentBrief {
    pub arn: String,
    /// `status` as ECS names it (`PENDING`, `IN_PROGRESS`, `SUCCESSFUL`, `STOPPED`,
    /// `STOP_REQUESTED`, `ROLLBACK_REQUESTED`, `ROLLBACK_IN_PROGRESS`,
    /// `ROLLBACK_SUCCESSFUL`, `ROLLBACK_FAILED`); empty when ECS sent none.
    pub status: String,
    /// `createdAt`, to find the newest finished deployment.
    pub created_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// What DescribeServiceDeployments tells about one deployment: the revision it moves
/// to and the revisions it moves from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceDeploymentRevisions {
    pub arn: String,
    pub target: Option<String>,
    pub sources: Vec<String>,
}

/// One container image a service revision pinned (`containerImages[]`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PinnedImage {
    pub container: Option<String>,
    /// The reference as the task definition names it.
    pub image: Option<String>,
    /// The digest ECS resolved when the deployment started: what it scales out from.
    pub digest: Option<String>,
}

/// One service revision as DescribeServiceRevisions returns it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceRevision {
    pub arn: String,
    pub task_definition: Option<String>,
    pub images: Vec<PinnedImage>,
}

/// The family of a task definition ARN or `family:revision`
/// (`arn:aws:ecs:…:task-definition/web:7` → `web`).
pub fn family_of(task_definition: &str) -> &str {
    let tail = task_definition
        .rsplit_once("task-definition/")
        .map_or(task_definition, |(_, t)| t);
    tail.rsplit_once(':').map_or(tail, |(f, _)| f)
}

#[async_trait::async_trait]
pub trait EcsApi: Send + Sync {
    /// Every cluster ARN (ListClusters, all pages).
    async fn list_clusters(&self) -> Result<Vec<String>, ApiError>;
    /// ARNs of tasks not yet stopped (ListTasks, desired status RUNNING, all pages).
    async fn list_tasks(&self, cluster: &str) -> Result<Vec<String>, ApiError>;
    /// ARNs of stopped tasks ECS still shows (ListTasks, desired status STOPPED, all
    /// pages): a recently stopped task may be restarted from the same image.
    async fn list_stopped_tasks(&self, cluster: &str) -> Result<Vec<String>, ApiError>;
    /// One DescribeTasks call for at most 100 tasks.
    async fn describe_tasks(
        &self,
        cluster: &str,
        tasks: &[String],
    ) -> Result<Vec<TaskImages>, ApiError>;
    /// Service ARNs (ListServices, all pages of 100).
    async fn list_services(&self, cluster: &str) -> Result<Vec<String>, ApiError>;
    /// One DescribeServices call for at most 10 services, with all their deployments.
    async fn describe_services(
        &self,
        cluster: &str,
        services: &[String],
    ) -> Result<Vec<Service>, ApiError>;
    /// Every deployment of a service (ListServiceDeployments, all pages of 100).
    async fn list_service_deployments(
        &self,
        cluster: &str,
        service: &str,
    ) -> Result<Vec<ServiceDeploymentBrief>, ApiError>;
    /// One DescribeServiceDeployments call for at most 20 deployment ARNs.
    async fn describe_service_deployments(
        &self,
        arns: &[String],
    ) -> Result<Vec<ServiceDeploymentRevisions>, ApiError>;
    /// One DescribeServiceRevisions call for at most 20 revision ARNs.
    async fn describe_service_revisions(
        &self,
        arns: &[String],
    ) -> Result<Vec<ServiceRevision>, ApiError>;
    /// The newest `n` ACTIVE revisions of exactly `family`, newest first by revision
    /// number (ListTaskDefinitions with familyPrefix, all pages; other families sharing
    /// the prefix are skipped).
    async fn latest_task_definitions(
        &self,
        family: &str,
        n: usize,
    ) -> Result<Vec<String>, ApiError>;
    /// Container images of one task definition (DescribeTaskDefinition).
    async fn task_definition_images(&self, task_definition: &str) -> Result<Vec<String>, ApiError>;
}

#[cfg(test)]
mod tests {
    #[test]
    fn family_of_arn_and_short_form() {
        assert_eq!(
            super::family_of("arn:aws:ecs:us-east-1:123456789012:task-definition/web:7"),
            "web"
        );
        assert_eq!(super::family_of("web:7"), "web");
        assert_eq!(super::family_of("web"), "web");
    }
}
