//! Reading the world for the planner, and the snapshot types it reads into: a
//! repository's images and the children of its indexes (BatchGetImage only for indexes,
//! 100 per call), and what the protected ECS clusters use (tasks 100 per DescribeTasks,
//! services 10 per DescribeServices, each task definition described once). Calls are
//! batched at the APIs' maxima. Which service deployments protect images is decided here.

use std::collections::{BTreeSet, HashMap};

use futures_util::stream::{self, StreamExt, TryStreamExt};

use super::settings::{self, MaxImagesSetting, ProtectClusters};
use crate::ports::ecr::{ApiError, EcrApi, EcrImage, Repository, ECR_BATCH_MAX};
use crate::ports::ecs::{
    DeploymentStatus, EcsApi, Service, ECS_SERVICES_BATCH_MAX, ECS_TASKS_BATCH_MAX,
};

/// Everything the planner looks at, read once at scan time.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub repositories: Vec<RepoSnapshot>,
    pub ecs: EcsUsage,
}

/// One repository's manifests and the children of its indexes.
#[derive(Debug, Clone)]
pub struct RepoSnapshot {
    pub repository: Repository,
    pub images: Vec<EcrImage>,
    /// Index digest → digests its manifest lists.
    pub children: HashMap<String, Vec<String>>,
}

/// What the protected ECS clusters run or are about to run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EcsUsage {
    /// Digests the agent resolved for running tasks, and `@sha256:` references.
    pub digests: BTreeSet<String>,
    /// Image references (`repo-uri:tag` or `repo-uri@digest`) of tasks and of the task
    /// definitions of services' PRIMARY and ACTIVE deployments.
    pub references: BTreeSet<String>,
}

impl EcsUsage {
    /// Record an image reference ECS uses, and its digest when it is pinned (`…@sha256:…`).
    pub fn add_image(&mut self, image: String) {
        if let Some((_, digest)) = image.split_once('@') {
            self.digests.insert(digest.to_owned());
        }
        self.references.insert(image);
    }
}

/// Does this deployment's task definition protect images? The PRIMARY deployment (what
/// the service moves to) and ACTIVE ones (still running while it does) do; INACTIVE ones
/// are finished, and an unknown or missing status is not trusted to be running.
pub fn deployment_counts(status: Option<&DeploymentStatus>) -> bool {
    matches!(
        status,
        Some(DeploymentStatus::Primary | DeploymentStatus::Active)
    )
}

/// The task definitions a service protects: those of its counting deployments, or, when
/// none counts (or names one), the service's own task definition.
pub fn service_task_definitions(service: &Service) -> Vec<String> {
    let deployments: Vec<String> = service
        .deployments
        .iter()
        .filter(|d| deployment_counts(d.status.as_ref()))
        .filter_map(|d| d.task_definition.clone())
        .collect();
    if deployments.is_empty() {
        return service.task_definition.iter().cloned().collect();
    }
    deployments
}

/// The quota watermark in images: `--max-images N` as given, `auto` as
/// `AUTO_WATERMARK_PERCENT` of the account's images-per-repository quota (ECR's
/// default quota when Service Quotas has no value or cannot be read).
pub async fn read_watermark(ecr: &dyn EcrApi, setting: Option<MaxImagesSetting>) -> Option<u64> {
    match setting? {
        MaxImagesSetting::Count(n) => Some(n),
        MaxImagesSetting::Auto => {
            let quota = match ecr.images_per_repository_quota().await {
                Ok(Some(q)) => q,
                Ok(None) => settings::DEFAULT_IMAGES_QUOTA,
                Err(e) => {
                    tracing::warn!(error = %e, fallback = settings::DEFAULT_IMAGES_QUOTA, "cannot read the images-per-repository quota; using the default");
                    settings::DEFAULT_IMAGES_QUOTA
                }
            };
            Some(quota * settings::AUTO_WATERMARK_PERCENT / 100)
        }
    }
}

/// The digests an index or manifest list names (`manifests[].digest`).
pub fn index_children(manifest: &str) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Entry {
        digest: String,
    }
    #[derive(serde::Deserialize)]
    struct Index {
        #[serde(default)]
        manifests: Vec<Entry>,
    }
    serde_json::from_str::<Index>(manifest)
        .map(|i| i.manifests.into_iter().map(|e| e.digest).collect())
        .unwrap_or_default()
}

/// One repository: all images, then the manifests of its indexes.
pub async fn read_repository(
    ecr: &dyn EcrApi,
    repository: Repository,
) -> Result<RepoSnapshot, ApiError> {
    let images = ecr.describe_images(&repository.name).await?;
    let indexes: Vec<String> = images
        .iter()
        .filter(|i| i.is_index())
        .map(|i| i.digest.clone())
        .collect();
    let mut children = HashMap::new();
    for chunk in indexes.chunks(ECR_BATCH_MAX) {
        for (digest, manifest) in ecr.get_manifests(&repository.name, chunk).await? {
            children.insert(digest, index_children(&manifest));
        }
    }
    tracing::debug!(
        repository = %repository.name,
        images = images.len(),
        indexes = indexes.len(),
        "repository read"
    );
    Ok(RepoSnapshot {
        repository,
        images,
        children,
    })
}

/// Images used by tasks not yet stopped and by services' PRIMARY/ACTIVE deployments.
pub async fn read_ecs(
    ecs: &dyn EcsApi,
    clusters: &ProtectClusters,
    concurrency: usize,
) -> Result<EcsUsage, ApiError> {
    let clusters: Vec<String> = match clusters {
        ProtectClusters::All => ecs.list_clusters().await?,
        ProtectClusters::Named(names) => names.clone(),
    };
    let per_cluster: Vec<(EcsUsage, BTreeSet<String>)> = stream::iter(clusters)
        .map(|cluster| async move { read_cluster(ecs, &cluster).await })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    let mut usage = EcsUsage::default();
    let mut task_definitions = BTreeSet::new();
    for (u, tds) in per_cluster {
        usage.digests.extend(u.digests);
        usage.references.extend(u.references);
        task_definitions.extend(tds);
    }
    let images: Vec<Vec<String>> = stream::iter(task_definitions)
        .map(|td| async move { ecs.task_definition_images(&td).await })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    for image in images.into_iter().flatten() {
        usage.add_image(image);
    }
    tracing::debug!(
        digests = usage.digests.len(),
        references = usage.references.len(),
        "ECS usage read"
    );
    Ok(usage)
}

/// One cluster's task images, plus the task definitions still to describe.
async fn read_cluster(
    ecs: &dyn EcsApi,
    cluster: &str,
) -> Result<(EcsUsage, BTreeSet<String>), ApiError> {
    let mut usage = EcsUsage::default();
    let mut task_definitions = BTreeSet::new();
    let tasks = ecs.list_tasks(cluster).await?;
    for chunk in tasks.chunks(ECS_TASKS_BATCH_MAX) {
        for task in ecs.describe_tasks(cluster, chunk).await? {
            if task.images.is_empty() && task.digests.is_empty() {
                // No container detail: learn the images from the task definition.
                task_definitions.insert(task.task_definition);
            }
            for image in task.images {
                usage.add_image(image);
            }
            usage.digests.extend(task.digests);
        }
    }
    let services = ecs.list_services(cluster).await?;
    for chunk in services.chunks(ECS_SERVICES_BATCH_MAX) {
        for service in ecs.describe_services(cluster, chunk).await? {
            task_definitions.extend(service_task_definitions(&service));
        }
    }
    Ok((usage, task_definitions))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::ecs::{Deployment, TaskImages};
    use crate::testing::ecr::{index, service, FakeEcr, FakeEcs};

    fn deployment(status: Option<DeploymentStatus>, td: &str) -> Deployment {
        Deployment {
            status,
            task_definition: Some(td.to_owned()),
        }
    }

    #[test]
    fn primary_and_active_deployments_count_others_do_not() {
        assert!(deployment_counts(Some(&DeploymentStatus::Primary)));
        assert!(deployment_counts(Some(&DeploymentStatus::Active)));
        assert!(!deployment_counts(Some(&DeploymentStatus::Inactive)));
        assert!(!deployment_counts(Some(&DeploymentStatus::Other(
            "DRAINING".into()
        ))));
        assert!(!deployment_counts(None));
        assert_eq!(
            DeploymentStatus::from_name("PRIMARY"),
            DeploymentStatus::Primary
        );
        assert_eq!(
            DeploymentStatus::from_name("NEW"),
            DeploymentStatus::Other("NEW".into())
        );
    }

    #[test]
    fn a_service_protects_its_running_deployments_task_definitions() {
        let s = Service {
            task_definition: Some("td:3".into()),
            deployments: vec![
                deployment(Some(DeploymentStatus::Primary), "td:3"),
                deployment(Some(DeploymentStatus::Active), "td:2"),
                deployment(Some(DeploymentStatus::Inactive), "td:1"),
                deployment(None, "td:0"),
            ],
        };
        assert_eq!(service_task_definitions(&s), vec!["td:3", "td:2"]);
    }

    #[test]
    fn a_service_without_counting_deployments_falls_back_to_its_task_definition() {
        let s = Service {
            task_definition: Some("td:9".into()),
            deployments: vec![deployment(Some(DeploymentStatus::Inactive), "td:1")],
        };
        assert_eq!(service_task_definitions(&s), vec!["td:9"]);
        let nameless = Service {
            task_definition: Some("td:9".into()),
            deployments: vec![Deployment {
                status: Some(DeploymentStatus::Primary),
                task_definition: None,
            }],
        };
        assert_eq!(service_task_definitions(&nameless), vec!["td:9"]);
        assert!(service_task_definitions(&Service::default()).is_empty());
    }

    #[test]
    fn children_of_an_index() {
        let m = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"digest":"sha256:a","size":1},{"digest":"sha256:b","size":2}]}"#;
        assert_eq!(index_children(m), vec!["sha256:a", "sha256:b"]);
        assert!(index_children("garbage").is_empty());
    }

    #[tokio::test]
    async fn auto_watermark_uses_quota_or_default() {
        let mut ecr = FakeEcr::default();
        assert_eq!(
            read_watermark(&ecr, Some(MaxImagesSetting::Auto)).await,
            Some(9000)
        );
        ecr.quota = Some(20_000);
        assert_eq!(
            read_watermark(&ecr, Some(MaxImagesSetting::Auto)).await,
            Some(18_000)
        );
        ecr.quota_unreadable = true;
        assert_eq!(
            read_watermark(&ecr, Some(MaxImagesSetting::Auto)).await,
            Some(9000)
        );
        assert_eq!(
            read_watermark(&ecr, Some(MaxImagesSetting::Count(7))).await,
            Some(7)
        );
        assert_eq!(read_watermark(&ecr, None).await, None);
    }

    #[tokio::test]
    async fn index_manifests_read_100_per_call() {
        let images: Vec<_> = (0..250).map(|i| index(&format!("i{i}"), &[], 1)).collect();
        let ecr = FakeEcr::with(vec![("app", images)]);
        let snap = read_repository(&ecr, crate::testing::ecr::repository("app"))
            .await
            .unwrap();
        assert_eq!(snap.images.len(), 250);
        assert_eq!(ecr.calls("BatchGetImage"), 3);
        assert_eq!(ecr.calls("DescribeImages"), 1);
    }

    #[tokio::test]
    async fn ecs_calls_are_batched_and_task_definitions_described_once() {
        let mut ecs = FakeEcs::default();
        let tasks: Vec<TaskImages> = (0..150)
            .map(|i| TaskImages {
                task_definition: "td:1".into(),
                images: vec![format!("repo:v{i}")],
                digests: vec![format!("sha256:{i}")],
            })
            .collect();
        ecs.tasks.insert("c1".into(), tasks);
        let services: Vec<(String, Service)> = (0..25)
            .map(|i| (format!("svc{i}"), service(&[&format!("td:{}", i % 3)])))
            .collect();
        ecs.services.insert("c1".into(), services);
        for i in 0..3 {
            ecs.task_definitions
                .insert(format!("td:{i}"), vec![format!("repo@sha256:td{i}")]);
        }
        let usage = read_ecs(&ecs, &ProtectClusters::All, 4).await.unwrap();
        assert_eq!(ecs.calls("DescribeTasks"), 2);
        assert_eq!(ecs.calls("DescribeServices"), 3);
        assert_eq!(ecs.calls("DescribeTaskDefinition"), 3);
        assert!(usage.digests.contains("sha256:149"));
        assert!(usage.digests.contains("sha256:td2"));
        assert!(usage.references.contains("repo:v7"));
    }

    #[tokio::test]
    async fn inactive_deployments_do_not_protect() {
        let mut ecs = FakeEcs::default();
        let web = Service {
            task_definition: Some("td:2".into()),
            deployments: vec![
                deployment(Some(DeploymentStatus::Primary), "td:2"),
                deployment(Some(DeploymentStatus::Inactive), "td:1"),
            ],
        };
        ecs.services.insert("c1".into(), vec![("web".into(), web)]);
        ecs.task_definitions
            .insert("td:1".into(), vec!["repo:old".into()]);
        ecs.task_definitions
            .insert("td:2".into(), vec!["repo:new".into()]);
        let usage = read_ecs(&ecs, &ProtectClusters::All, 2).await.unwrap();
        assert!(usage.references.contains("repo:new"));
        assert!(!usage.references.contains("repo:old"));
        assert_eq!(ecs.calls("DescribeTaskDefinition"), 1);
    }
}
