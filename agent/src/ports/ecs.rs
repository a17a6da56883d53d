//! The ECS port of `ecr-prune`: what the protected clusters run, as facts (a task's
//! images, a service's deployments each WITH its status). Which of them protect an
//! image is the core's decision (`ecr_prune::snapshot`). Each method is one API
//! operation (or its pagination), so the core controls batching.

pub use super::ecr::ApiError;

/// Largest task list DescribeTasks accepts.
pub const ECS_TASKS_BATCH_MAX: usize = 100;
/// Largest service list DescribeServices accepts.
pub const ECS_SERVICES_BATCH_MAX: usize = 10;

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
    /// The service's own `taskDefinition`.
    pub task_definition: Option<String>,
    pub deployments: Vec<Deployment>,
}

#[async_trait::async_trait]
pub trait EcsApi: Send + Sync {
    /// Every cluster ARN (ListClusters, all pages).
    async fn list_clusters(&self) -> Result<Vec<String>, ApiError>;
    /// ARNs of tasks not yet stopped (ListTasks, desired status RUNNING, all pages).
    async fn list_tasks(&self, cluster: &str) -> Result<Vec<String>, ApiError>;
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
    /// Container images of one task definition (DescribeTaskDefinition).
    async fn task_definition_images(&self, task_definition: &str) -> Result<Vec<String>, ApiError>;
}
