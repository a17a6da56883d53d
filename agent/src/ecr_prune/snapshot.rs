//! Reading the world for the planner, and the snapshot types it reads into: a
//! repository's images and the children of its indexes (BatchGetImage only for indexes,
//! 100 per call), and what the protected ECS clusters use (tasks 100 per DescribeTasks,
//! services 10 per DescribeServices, each task definition described once). Calls are
//! batched at the APIs' maxima. Which service deployments protect images is decided here.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use futures_util::stream::{self, StreamExt, TryStreamExt};

use super::settings::{self, MaxImagesSetting, ProtectClusters};
use crate::ports::ecr::{ApiError, EcrApi, EcrImage, Repository, ECR_BATCH_MAX};
use crate::ports::ecs::{
    family_of, DeploymentStatus, EcsApi, Service, ServiceDeploymentBrief, ECS_SERVICES_BATCH_MAX,
    ECS_SERVICE_DEPLOYMENTS_BATCH_MAX, ECS_TASKS_BATCH_MAX,
};

/// Everything the planner looks at, read once at scan time (tests plan it whole; the
/// runner plans repository by repository).
#[cfg(test)]
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
    /// Digest or reference → the chain that uses it ("service web, deployment …,
    /// pinned sha256:…"), the first one found; reasons show it.
    pub origins: BTreeMap<String, String>,
}

impl EcsUsage {
    /// Record an image reference ECS uses (and its digest when it is pinned,
    /// `…@sha256:…`), remembering who uses it (`origin: image`).
    pub fn add_image_from(&mut self, image: String, origin: &str) {
        let chain = format!("{origin}: {image}");
        if let Some((_, digest)) = image.split_once('@') {
            self.add_digest_from(digest.to_owned(), chain.clone());
        }
        self.origins.entry(image.clone()).or_insert(chain);
        self.references.insert(image);
    }

    /// Record a digest ECS resolved, with the chain that pinned it.
    pub fn add_digest_from(&mut self, digest: String, chain: String) {
        self.origins.entry(digest.clone()).or_insert(chain);
        self.digests.insert(digest);
    }

    /// Everything `other` uses, too.
    pub fn merge(&mut self, other: EcsUsage) {
        self.digests.extend(other.digests);
        self.references.extend(other.references);
        for (k, v) in other.origins {
            self.origins.entry(k).or_insert(v);
        }
    }
}

/// ListServiceDeployments statuses of a deployment still under way: its target and its
/// sources both may run tasks.
pub fn deployment_unfinished(status: &str) -> bool {
    matches!(
        status,
        "PENDING"
            | "IN_PROGRESS"
            | "STOP_REQUESTED"
            | "ROLLBACK_REQUESTED"
            | "ROLLBACK_IN_PROGRESS"
    )
}

/// The deployments whose revisions protect images: every unfinished one, and the newest
/// finished one (what the service runs now: its target, or after a stop or rollback its
/// source; both are kept, the source being the service's previous revision, the
/// rollback target).
pub fn counting_deployments(briefs: &[ServiceDeploymentBrief]) -> Vec<String> {
    let mut out: Vec<String> = briefs
        .iter()
        .filter(|b| deployment_unfinished(&b.status))
        .map(|b| b.arn.clone())
        .collect();
    if let Some(newest) = briefs
        .iter()
        .filter(|b| !deployment_unfinished(&b.status))
        .max_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.arn.cmp(&b.arn))
        })
    {
        out.push(newest.arn.clone());
    }
    out
}

/// The last path segment of an ARN, for reasons (`…/ecs-svc/123` → `ecs-svc/123` keeps
/// two segments when the ARN has them).
fn short_arn(arn: &str) -> &str {
    let mut parts = arn.rsplitn(3, '/');
    let last = parts.next().unwrap_or(arn);
    match parts.next() {
        Some(mid) => &arn[arn.len() - last.len() - mid.len() - 1..],
        None => last,
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
                    tracing::warn!(
                        "cannot read the images-per-repository quota ({}); using the default {}",
                        e.brief(),
                        settings::DEFAULT_IMAGES_QUOTA
                    );
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

/// One repository: all images, then the manifests of its indexes, `concurrency`
/// BatchGetImage calls (100 manifests each) at a time. The calls overlap because each
/// is a round trip of its own and nothing orders them; the listing's pages cannot
/// (each needs the previous page's `nextToken`).
pub async fn read_repository(
    ecr: &dyn EcrApi,
    repository: Repository,
    concurrency: usize,
) -> Result<RepoSnapshot, ApiError> {
    let images = ecr.describe_images(&repository.name).await?;
    let indexes: Vec<String> = images
        .iter()
        .filter(|i| i.is_index())
        .map(|i| i.digest.clone())
        .collect();
    let mut children = HashMap::new();
    read_children(ecr, &repository.name, &indexes, concurrency, &mut children).await?;
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

/// The children of these indexes, 100 manifests per BatchGetImage, `concurrency` calls
/// at a time; the first call that fails fails the read.
async fn read_children(
    ecr: &dyn EcrApi,
    repository: &str,
    indexes: &[String],
    concurrency: usize,
    children: &mut HashMap<String, Vec<String>>,
) -> Result<(), ApiError> {
    // The calls made up front, not in the stream's closure: a closure over borrowed
    // chunks there makes the caller's future not `Send` (a rustc limitation).
    let calls: Vec<_> = indexes
        .chunks(ECR_BATCH_MAX)
        .map(|chunk| ecr.get_manifests(repository, chunk))
        .collect();
    let mut calls = stream::iter(calls).buffer_unordered(concurrency.max(1));
    while let Some(manifests) = calls.next().await {
        for (digest, manifest) in manifests? {
            children.insert(digest, index_children(&manifest));
        }
    }
    Ok(())
}

/// The repository read again (after an apply, for the validation pass). A manifest
/// never changes under its digest, so only indexes `before` did not have are read.
pub async fn read_again(ecr: &dyn EcrApi, before: &RepoSnapshot) -> Result<RepoSnapshot, ApiError> {
    let name = &before.repository.name;
    let images = ecr.describe_images(name).await?;
    let mut children: HashMap<String, Vec<String>> = images
        .iter()
        .filter_map(|i| {
            before
                .children
                .get(&i.digest)
                .map(|c| (i.digest.clone(), c.clone()))
        })
        .collect();
    let unknown: Vec<String> = images
        .iter()
        .filter(|i| i.is_index() && !children.contains_key(&i.digest))
        .map(|i| i.digest.clone())
        .collect();
    // Rare (an index pushed during the apply): one call at a time.
    read_children(ecr, name, &unknown, 1, &mut children).await?;
    Ok(RepoSnapshot {
        repository: before.repository.clone(),
        images,
        children,
    })
}

/// What can start next in the protected clusters: running and recently stopped tasks
/// (their resolved digests and references), the digests every unfinished and the newest
/// finished service deployment pinned (ListServiceDeployments → DescribeServiceDeployments
/// → DescribeServiceRevisions, target and source revisions; DescribeServices' PRIMARY and
/// ACTIVE deployments' task definitions too, and alone when that API cannot be read), and
/// the newest `keep_task_definitions` ACTIVE revisions of every family in use.
#[cfg(test)]
pub async fn read_ecs(
    ecs: &dyn EcsApi,
    clusters: &ProtectClusters,
    concurrency: usize,
    keep_task_definitions: usize,
) -> Result<EcsUsage, ApiError> {
    read_ecs_with(ecs, clusters, concurrency, keep_task_definitions, async {
        Ok(BTreeMap::new())
    })
    .await
}

/// [`read_ecs`], with more task definitions in use (`scheduled` reads them: task
/// definition → who runs it, e.g. a schedule; read while the clusters are), protected
/// like a service's: their images and the newest ACTIVE revisions of their family.
pub async fn read_ecs_with(
    ecs: &dyn EcsApi,
    clusters: &ProtectClusters,
    concurrency: usize,
    keep_task_definitions: usize,
    scheduled: impl std::future::Future<Output = Result<BTreeMap<String, String>, ApiError>>,
) -> Result<EcsUsage, ApiError> {
    let read_clusters = async {
        let clusters: Vec<String> = match clusters {
            ProtectClusters::All => ecs.list_clusters().await?,
            ProtectClusters::Named(names) => names.clone(),
        };
        // In the order listed: the first chain found names a use.
        stream::iter(clusters)
            .map(|cluster| async move { read_cluster(ecs, &cluster, concurrency).await })
            .buffered(concurrency)
            .try_collect::<Vec<(EcsUsage, BTreeMap<String, String>, bool)>>()
            .await
    };
    let (per_cluster, scheduled) = tokio::try_join!(read_clusters, scheduled)?;
    let mut usage = EcsUsage::default();
    // task definition → who uses it
    let mut task_definitions: BTreeMap<String, String> = BTreeMap::new();
    let mut fell_back = false;
    for (u, tds, fallback) in per_cluster {
        usage.merge(u);
        for (td, origin) in tds {
            task_definitions.entry(td).or_insert(origin);
        }
        fell_back |= fallback;
    }
    for (td, origin) in scheduled {
        task_definitions.entry(td).or_insert(origin);
    }
    if fell_back {
        tracing::warn!("ListServiceDeployments is not available; protecting service deployments by their task definitions' tags only (DescribeServices), not by pinned digest");
    }
    // Rollback targets: the newest N ACTIVE revisions of every family in use.
    let families: BTreeSet<String> = task_definitions
        .keys()
        .map(|td| family_of(td).to_owned())
        .collect();
    if keep_task_definitions > 0 {
        let latest: Vec<(String, Vec<String>)> = stream::iter(families)
            .map(|family| async move {
                ecs.latest_task_definitions(&family, keep_task_definitions)
                    .await
                    .map(|tds| (family, tds))
            })
            .buffer_unordered(concurrency)
            .try_collect()
            .await?;
        for (family, tds) in latest {
            for td in tds {
                task_definitions.entry(td).or_insert_with(|| {
                    format!(
                        "task definition family {family}, one of its latest {keep_task_definitions} ACTIVE revisions"
                    )
                });
            }
        }
    }
    // A task definition named both as an ARN and as family:revision is described once.
    let mut by_revision: BTreeMap<String, (String, String)> = BTreeMap::new();
    for (td, origin) in task_definitions {
        let key = td
            .rsplit_once("task-definition/")
            .map_or(td.clone(), |(_, t)| t.to_owned());
        by_revision.entry(key).or_insert((td, origin));
    }
    let images: Vec<(String, Vec<String>)> = stream::iter(by_revision.into_values())
        .map(|(td, origin)| async move {
            ecs.task_definition_images(&td).await.map(|images| {
                (
                    format!("{origin}, task definition {}", short_arn(&td)),
                    images,
                )
            })
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    for (origin, list) in images {
        for image in list {
            usage.add_image_from(image, &origin);
        }
    }
    tracing::debug!(
        digests = usage.digests.len(),
        references = usage.references.len(),
        "ECS usage read"
    );
    Ok(usage)
}

/// One cluster: task images and digests, service revisions' pinned digests, the task
/// definitions still to describe (with who uses them), and whether the service
/// deployments API could not be read (so only DescribeServices protected). Tasks and
/// services are read side by side, and their Describe* batches and each service's
/// deployment reads `concurrency` at a time: every one is a round trip of its own. The
/// answers are merged in the order they were asked for, so the chain a reason names
/// does not depend on which answer came first.
async fn read_cluster(
    ecs: &dyn EcsApi,
    cluster: &str,
    concurrency: usize,
) -> Result<(EcsUsage, BTreeMap<String, String>, bool), ApiError> {
    let ((mut usage, mut task_definitions), (services, tds, fell_back)) = tokio::try_join!(
        read_tasks(ecs, cluster, concurrency),
        read_services(ecs, cluster, concurrency)
    )?;
    usage.merge(services);
    for (td, origin) in tds {
        task_definitions.entry(td).or_insert(origin);
    }
    Ok((usage, task_definitions, fell_back))
}

/// Running and recently stopped tasks of one cluster: their images and digests, and
/// their task definitions (with who uses them).
async fn read_tasks(
    ecs: &dyn EcsApi,
    cluster: &str,
    concurrency: usize,
) -> Result<(EcsUsage, BTreeMap<String, String>), ApiError> {
    let mut usage = EcsUsage::default();
    let mut task_definitions: BTreeMap<String, String> = BTreeMap::new();
    let (mut tasks, stopped) =
        tokio::try_join!(ecs.list_tasks(cluster), ecs.list_stopped_tasks(cluster))?;
    tasks.extend(stopped);
    tasks.sort();
    tasks.dedup();
    let cluster_name = short_arn(cluster);
    let calls: Vec<_> = tasks
        .chunks(ECS_TASKS_BATCH_MAX)
        .map(|chunk| ecs.describe_tasks(cluster, chunk))
        .collect();
    let described: Vec<Vec<_>> = stream::iter(calls)
        .buffered(concurrency.max(1))
        .try_collect()
        .await?;
    for task in described.into_iter().flatten() {
        let origin = format!(
            "task of {} in cluster {cluster_name}",
            short_arn(&task.task_definition)
        );
        // The family stays protected (rollback targets), even when the task's
        // containers tell their images.
        task_definitions
            .entry(task.task_definition.clone())
            .or_insert_with(|| origin.clone());
        for image in task.images {
            usage.add_image_from(image, &origin);
        }
        for digest in task.digests {
            let chain = format!("{origin}, running {digest}");
            usage.add_digest_from(digest, chain);
        }
    }
    Ok((usage, task_definitions))
}

/// The services of one cluster: the task definitions of their counting deployments and
/// the digests their service revisions pinned; whether the deployments API was missing.
async fn read_services(
    ecs: &dyn EcsApi,
    cluster: &str,
    concurrency: usize,
) -> Result<(EcsUsage, BTreeMap<String, String>, bool), ApiError> {
    let mut usage = EcsUsage::default();
    let mut task_definitions: BTreeMap<String, String> = BTreeMap::new();
    let services = ecs.list_services(cluster).await?;
    let calls: Vec<_> = services
        .chunks(ECS_SERVICES_BATCH_MAX)
        .map(|chunk| ecs.describe_services(cluster, chunk))
        .collect();
    let described: Vec<Vec<Service>> = stream::iter(calls)
        .buffered(concurrency.max(1))
        .try_collect()
        .await?;
    // (deployments' task definitions, the service's ARN or name, its name), in order.
    let mut named = Vec::new();
    for service in described.into_iter().flatten() {
        let name = if service.name.is_empty() {
            short_arn(&service.arn).to_owned()
        } else {
            service.name.clone()
        };
        let target = if service.arn.is_empty() {
            name.clone()
        } else {
            service.arn.clone()
        };
        named.push((service_task_definitions(&service), target, name));
    }
    let reads: Vec<_> = named
        .iter()
        .map(|(_, target, name)| read_service_revisions_or_none(ecs, cluster, target, name))
        .collect();
    let revisions: Vec<_> = stream::iter(reads)
        .buffered(concurrency.max(1))
        .try_collect()
        .await?;
    let mut fell_back = false;
    for ((tds, _, name), read) in named.iter().zip(revisions) {
        for td in tds {
            task_definitions
                .entry(td.clone())
                .or_insert_with(|| format!("service {name} deployment"));
        }
        match read {
            Some((u, tds)) => {
                usage.merge(u);
                for (td, origin) in tds {
                    task_definitions.entry(td).or_insert(origin);
                }
            }
            None => fell_back = true,
        }
    }
    Ok((usage, task_definitions, fell_back))
}

/// An API this endpoint does not serve (an older region, a partial emulator): fall back.
/// Access denied and every other error fail the run closed.
pub fn unavailable(e: &ApiError) -> bool {
    let m = e.message.to_ascii_lowercase();
    m.contains("unknownoperation")
        || m.contains("not yet implemented")
        || m.contains("notimplemented")
        || m.contains("not supported")
        || m.contains("invalidaction")
}

/// [`read_service_revisions`], None when the deployments API is not served here (the
/// DescribeServices fallback).
async fn read_service_revisions_or_none(
    ecs: &dyn EcsApi,
    cluster: &str,
    service: &str,
    name: &str,
) -> Result<Option<(EcsUsage, BTreeMap<String, String>)>, ApiError> {
    match read_service_revisions(ecs, cluster, service, name).await {
        Ok(read) => Ok(Some(read)),
        Err(e) if unavailable(&e) => {
            tracing::debug!(service = %name, error = %e.brief(), "service deployments not readable");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// One service's counting deployments, their target and source revisions, and the
/// digests those revisions pinned.
async fn read_service_revisions(
    ecs: &dyn EcsApi,
    cluster: &str,
    service: &str,
    name: &str,
) -> Result<(EcsUsage, BTreeMap<String, String>), ApiError> {
    let mut usage = EcsUsage::default();
    let mut task_definitions = BTreeMap::new();
    let briefs = ecs.list_service_deployments(cluster, service).await?;
    let counting = counting_deployments(&briefs);
    // revision ARN → the deployment (and role) that protects it
    let mut revisions: BTreeMap<String, String> = BTreeMap::new();
    for chunk in counting.chunks(ECS_SERVICE_DEPLOYMENTS_BATCH_MAX) {
        for d in ecs.describe_service_deployments(chunk).await? {
            let deployment = short_arn(&d.arn).to_owned();
            if let Some(t) = d.target {
                revisions
                    .entry(t)
                    .or_insert_with(|| format!("service {name}, deployment {deployment}"));
            }
            for s in d.sources {
                revisions.entry(s).or_insert_with(|| {
                    format!("service {name}, deployment {deployment} (source revision)")
                });
            }
        }
    }
    let arns: Vec<String> = revisions.keys().cloned().collect();
    for chunk in arns.chunks(ECS_SERVICE_DEPLOYMENTS_BATCH_MAX) {
        for revision in ecs.describe_service_revisions(chunk).await? {
            let origin = revisions
                .get(&revision.arn)
                .cloned()
                .unwrap_or_else(|| format!("service {name}"));
            if let Some(td) = revision.task_definition {
                task_definitions.entry(td).or_insert_with(|| origin.clone());
            }
            for image in revision.images {
                if let Some(digest) = image.digest {
                    let chain = format!("{origin}, pinned {digest}");
                    usage.add_digest_from(digest, chain);
                }
            }
        }
    }
    Ok((usage, task_definitions))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::ecs::{Deployment, ServiceDeploymentBrief, TaskImages};
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
            ..Service::default()
        };
        assert_eq!(service_task_definitions(&s), vec!["td:3", "td:2"]);
    }

    #[test]
    fn a_service_without_counting_deployments_falls_back_to_its_task_definition() {
        let s = Service {
            task_definition: Some("td:9".into()),
            deployments: vec![deployment(Some(DeploymentStatus::Inactive), "td:1")],
            ..Service::default()
        };
        assert_eq!(service_task_definitions(&s), vec!["td:9"]);
        let nameless = Service {
            task_definition: Some("td:9".into()),
            deployments: vec![Deployment {
                status: Some(DeploymentStatus::Primary),
                task_definition: None,
            }],
            ..Service::default()
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
        let snap = read_repository(&ecr, crate::testing::ecr::repository("app"), 4)
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
        let usage = read_ecs(&ecs, &ProtectClusters::All, 4, 5).await.unwrap();
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
            ..Service::default()
        };
        ecs.services.insert("c1".into(), vec![("web".into(), web)]);
        ecs.task_definitions
            .insert("td:1".into(), vec!["repo:old".into()]);
        ecs.task_definitions
            .insert("td:2".into(), vec!["repo:new".into()]);
        let usage = read_ecs(&ecs, &ProtectClusters::All, 2, 5).await.unwrap();
        assert!(usage.references.contains("repo:new"));
        assert!(!usage.references.contains("repo:old"));
        assert_eq!(ecs.calls("DescribeTaskDefinition"), 1);
    }

    fn brief(arn: &str, status: &str, second: i64) -> ServiceDeploymentBrief {
        ServiceDeploymentBrief {
            arn: arn.into(),
            status: status.into(),
            created_at: chrono::DateTime::from_timestamp(second, 0),
        }
    }

    fn revision(arn: &str, td: &str, digest: &str) -> crate::ports::ecs::ServiceRevision {
        crate::ports::ecs::ServiceRevision {
            arn: arn.into(),
            task_definition: Some(td.into()),
            images: vec![crate::ports::ecs::PinnedImage {
                container: Some("app".into()),
                image: Some("repo:latest".into()),
                digest: Some(digest.into()),
            }],
        }
    }

    /// A service `web` scaled to zero: an old successful deployment (rev 1), the newest
    /// successful one (rev 2), and an in-flight one moving from rev 2 to rev 3.
    fn web_with_deployments() -> FakeEcs {
        let mut ecs = FakeEcs::default();
        ecs.services
            .insert("c1".into(), vec![("web".into(), service(&["web:3"]))]);
        ecs.deployments.insert(
            "web".into(),
            vec![
                brief("arn:dep/c1/web/old", "SUCCESSFUL", 1),
                brief("arn:dep/c1/web/cur", "SUCCESSFUL", 2),
                brief("arn:dep/c1/web/new", "IN_PROGRESS", 3),
            ],
        );
        for (dep, target, sources) in [
            ("arn:dep/c1/web/old", "rev1", vec!["rev0"]),
            ("arn:dep/c1/web/cur", "rev2", vec!["rev1"]),
            ("arn:dep/c1/web/new", "rev3", vec!["rev2"]),
        ] {
            ecs.deployment_revisions.insert(
                dep.into(),
                crate::ports::ecs::ServiceDeploymentRevisions {
                    arn: dep.into(),
                    target: Some(target.into()),
                    sources: sources.into_iter().map(str::to_owned).collect(),
                },
            );
        }
        for (rev, td, digest) in [
            ("rev0", "web:0", "sha256:pinned0"),
            ("rev1", "web:1", "sha256:pinned1"),
            ("rev2", "web:2", "sha256:pinned2"),
            ("rev3", "web:3", "sha256:pinned3"),
        ] {
            ecs.revisions.insert(rev.into(), revision(rev, td, digest));
        }
        ecs
    }

    #[test]
    fn counting_deployments_are_the_unfinished_and_the_newest_finished() {
        let briefs = vec![
            brief("a", "SUCCESSFUL", 1),
            brief("b", "ROLLBACK_SUCCESSFUL", 2),
            brief("c", "IN_PROGRESS", 3),
            brief("d", "PENDING", 4),
            brief("e", "STOPPED", 0),
        ];
        assert_eq!(counting_deployments(&briefs), vec!["c", "d", "b"]);
        assert!(counting_deployments(&[]).is_empty());
    }

    #[tokio::test]
    async fn service_deployments_protect_pinned_digests_with_the_chain() {
        let ecs = web_with_deployments();
        let usage = read_ecs(&ecs, &ProtectClusters::All, 2, 5).await.unwrap();
        assert!(usage.digests.contains("sha256:pinned3"), "in-flight target");
        assert!(
            usage.digests.contains("sha256:pinned2"),
            "its source, the rollback target"
        );
        assert!(
            usage.digests.contains("sha256:pinned1"),
            "the current deployment's source: the service's previous revision"
        );
        assert!(
            !usage.digests.contains("sha256:pinned0"),
            "a finished, replaced deployment does not count"
        );
        assert_eq!(
            usage.origins["sha256:pinned1"],
            "service web, deployment web/cur (source revision), pinned sha256:pinned1"
        );
        assert_eq!(
            usage.origins["sha256:pinned3"],
            "service web, deployment web/new, pinned sha256:pinned3"
        );
        assert_eq!(
            usage.origins["sha256:pinned2"],
            "service web, deployment web/new (source revision), pinned sha256:pinned2",
            "the source revision of the in-flight deployment"
        );
        assert_eq!(ecs.calls("ListServiceDeployments"), 1);
        assert_eq!(ecs.calls("DescribeServiceDeployments"), 1);
        assert_eq!(ecs.calls("DescribeServiceRevisions"), 1);
    }

    #[tokio::test]
    async fn an_unavailable_deployments_api_falls_back_and_a_denied_one_fails_closed() {
        let mut ecs = web_with_deployments();
        ecs.task_definitions
            .insert("web:3".into(), vec!["repo:v3".into()]);
        ecs.deployments_unavailable = true;
        let usage = read_ecs(&ecs, &ProtectClusters::All, 2, 5).await.unwrap();
        assert!(
            usage.references.contains("repo:v3"),
            "DescribeServices fallback"
        );
        assert!(usage.digests.is_empty());
        ecs.deployments_unavailable = false;
        ecs.deployments_denied = true;
        let e = read_ecs(&ecs, &ProtectClusters::All, 2, 5)
            .await
            .unwrap_err();
        assert_eq!(e.operation, "ListServiceDeployments");
    }

    #[tokio::test]
    async fn latest_task_definition_revisions_of_families_in_use_protect() {
        let mut ecs = FakeEcs::default();
        ecs.services
            .insert("c1".into(), vec![("web".into(), service(&["web:9"]))]);
        ecs.families.insert(
            "web".into(),
            (3..=9).rev().map(|r| format!("web:{r}")).collect(),
        );
        for r in 3..=9 {
            ecs.task_definitions
                .insert(format!("web:{r}"), vec![format!("repo:v{r}")]);
        }
        let usage = read_ecs(&ecs, &ProtectClusters::All, 2, 3).await.unwrap();
        let refs: Vec<&str> = usage.references.iter().map(String::as_str).collect();
        assert_eq!(refs, vec!["repo:v7", "repo:v8", "repo:v9"]);
        assert!(
            usage.origins["repo:v7"]
                .starts_with("task definition family web, one of its latest 3 ACTIVE revisions"),
            "{}",
            usage.origins["repo:v7"]
        );
        assert_eq!(ecs.calls("ListTaskDefinitions"), 1);
        let none = read_ecs(&ecs, &ProtectClusters::All, 2, 0).await.unwrap();
        assert_eq!(none.references.len(), 1, "0 keeps only what runs");
    }

    #[tokio::test]
    async fn recently_stopped_tasks_protect_their_digests() {
        let mut ecs = FakeEcs::default();
        ecs.stopped.insert(
            "c1".into(),
            vec![TaskImages {
                task_definition: "job:1".into(),
                images: vec!["repo:nightly".into()],
                digests: vec!["sha256:stopped".into()],
            }],
        );
        let usage = read_ecs(&ecs, &ProtectClusters::Named(vec!["c1".into()]), 2, 0)
            .await
            .unwrap();
        assert!(usage.digests.contains("sha256:stopped"));
        assert_eq!(
            usage.origins["sha256:stopped"],
            "task of job:1 in cluster c1, running sha256:stopped"
        );
    }
}
