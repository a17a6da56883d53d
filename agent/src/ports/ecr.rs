//! Port traits for `ecr-prune`: what the core needs from ECR, ECS and Service Quotas,
//! in this crate's own types. Each method is one API operation (or its pagination), so
//! the snapshot code controls batching and the call count stays visible.

use chrono::{DateTime, Utc};

/// One repository as DescribeRepositories returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    pub name: String,
    /// `<account>.dkr.ecr.<region>.amazonaws.com/<name>`: how ECS refers to it.
    pub uri: String,
}

/// One manifest in a repository (DescribeImages' `imageDetails` entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcrImage {
    pub digest: String,
    pub tags: Vec<String>,
    pub pushed_at: DateTime<Utc>,
    pub size: u64,
    pub last_pulled: Option<DateTime<Utc>>,
    pub manifest_media_type: Option<String>,
    pub artifact_media_type: Option<String>,
    /// The manifest this one refers to (OCI referrers: signatures, SBOMs).
    pub subject: Option<String>,
}

impl EcrImage {
    /// Image indexes (multi-arch) and Docker manifest lists have children to learn.
    pub fn is_index(&self) -> bool {
        matches!(
            self.manifest_media_type.as_deref(),
            Some("application/vnd.oci.image.index.v1+json")
                | Some("application/vnd.docker.distribution.manifest.list.v2+json")
        )
    }
}

/// One entry of BatchDeleteImage's `failures[]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteFailure {
    pub digest: String,
    pub code: String,
    pub reason: String,
}

/// A failed API call, already rendered for people (operation, what, SDK message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{operation}: {message}")]
pub struct ApiError {
    pub operation: &'static str,
    pub message: String,
}

/// Largest id list BatchGetImage and BatchDeleteImage accept.
pub const ECR_BATCH_MAX: usize = 100;
/// Largest task list DescribeTasks accepts.
pub const ECS_TASKS_BATCH_MAX: usize = 100;
/// Largest service list DescribeServices accepts.
pub const ECS_SERVICES_BATCH_MAX: usize = 10;

#[async_trait::async_trait]
pub trait EcrApi: Send + Sync {
    /// Every repository (DescribeRepositories, all pages of 1000).
    async fn list_repositories(&self) -> Result<Vec<Repository>, ApiError>;
    /// Every image of `repo` (DescribeImages, all pages of 1000).
    async fn describe_images(&self, repo: &str) -> Result<Vec<EcrImage>, ApiError>;
    /// One BatchGetImage call for at most 100 index digests: digest → manifest bytes.
    async fn get_manifests(
        &self,
        repo: &str,
        digests: &[String],
    ) -> Result<Vec<(String, String)>, ApiError>;
    /// One BatchDeleteImage call for at most 100 digests; per-image failures returned.
    async fn batch_delete(
        &self,
        repo: &str,
        digests: &[String],
    ) -> Result<Vec<DeleteFailure>, ApiError>;
    /// The account's images-per-repository quota (Service Quotas L-03A36CE1), if readable.
    async fn images_per_repository_quota(&self) -> Result<Option<u64>, ApiError>;
}

/// What DescribeTasks tells about one task.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskImages {
    pub task_definition: String,
    /// Container `image` references as the task runs them.
    pub images: Vec<String>,
    /// Container `imageDigest`s resolved by the agent.
    pub digests: Vec<String>,
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
    /// One DescribeServices call for at most 10 services: the task definitions of their
    /// PRIMARY and ACTIVE deployments.
    async fn describe_services(
        &self,
        cluster: &str,
        services: &[String],
    ) -> Result<Vec<String>, ApiError>;
    /// Container images of one task definition (DescribeTaskDefinition).
    async fn task_definition_images(&self, task_definition: &str) -> Result<Vec<String>, ApiError>;
}
