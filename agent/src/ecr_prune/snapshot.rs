//! Reading the world for the planner: a repository's images and the children of its
//! indexes (BatchGetImage only for indexes, 100 per call), and what the protected ECS
//! clusters use (tasks 100 per DescribeTasks, services 10 per DescribeServices, each
//! task definition described once). Calls are batched at the APIs' maxima.

use std::collections::{BTreeSet, HashMap};

use futures_util::stream::{self, StreamExt, TryStreamExt};

use super::planner::{EcsUsage, RepoSnapshot};
use super::settings::ProtectClusters;
use crate::ports::ecr::{
    ApiError, EcrApi, EcsApi, Repository, ECR_BATCH_MAX, ECS_SERVICES_BATCH_MAX,
    ECS_TASKS_BATCH_MAX,
};

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
        task_definitions.extend(ecs.describe_services(cluster, chunk).await?);
    }
    Ok((usage, task_definitions))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::ecr::TaskImages;
    use crate::testing::ecr::{index, FakeEcr, FakeEcs};

    #[test]
    fn children_of_an_index() {
        let m = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"digest":"sha256:a","size":1},{"digest":"sha256:b","size":2}]}"#;
        assert_eq!(index_children(m), vec!["sha256:a", "sha256:b"]);
        assert!(index_children("garbage").is_empty());
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
        let services: Vec<(String, Vec<String>)> = (0..25)
            .map(|i| (format!("svc{i}"), vec![format!("td:{}", i % 3)]))
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
}
