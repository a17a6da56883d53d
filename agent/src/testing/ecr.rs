//! Fakes and builders for `ecr-prune` tests: images with readable digests and times,
//! services with deployments, and in-memory ECR/ECS ports that count calls and can
//! inject failures.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use chrono::{DateTime, TimeZone, Utc};

use crate::ports::ecr::{
    ApiError, DeleteFailure, EcrApi, EcrImage, FailureCode, Repository, ECR_BATCH_MAX,
};
use crate::ports::ecs::{
    Deployment, DeploymentStatus, EcsApi, Service, ServiceDeploymentBrief,
    ServiceDeploymentRevisions, ServiceRevision, TaskImages,
};

/// Day `d` of the test calendar (day 0 = 2026-01-01).
pub fn ts(day: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("valid date")
        + chrono::Duration::days(day)
}

/// "Now" in planner tests: day 100.
pub fn now() -> DateTime<Utc> {
    ts(100)
}

/// A plain image `sha256:<name>` pushed on day `day`.
pub fn image(name: &str, tags: &[&str], day: i64) -> EcrImage {
    EcrImage {
        digest: format!("sha256:{name}"),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        pushed_at: Some(ts(day)),
        size: 1000,
        last_pulled: None,
        manifest_media_type: Some("application/vnd.oci.image.manifest.v1+json".to_owned()),
        artifact_media_type: None,
        subject: None,
        archived: false,
    }
}

/// An image pushed `days` days before `now()`.
pub fn image_ago(name: &str, tags: &[&str], days: i64) -> EcrImage {
    image(name, tags, 100 - days)
}

/// An OCI image index.
pub fn index(name: &str, tags: &[&str], day: i64) -> EcrImage {
    EcrImage {
        manifest_media_type: Some("application/vnd.oci.image.index.v1+json".to_owned()),
        ..image(name, tags, day)
    }
}

/// A service whose PRIMARY deployment runs the first task definition and whose ACTIVE
/// deployments run the others (a rollout in progress).
pub fn service(task_definitions: &[&str]) -> Service {
    Service {
        task_definition: task_definitions.first().map(|t| (*t).to_owned()),
        deployments: task_definitions
            .iter()
            .enumerate()
            .map(|(i, td)| Deployment {
                status: Some(if i == 0 {
                    DeploymentStatus::Primary
                } else {
                    DeploymentStatus::Active
                }),
                task_definition: Some((*td).to_owned()),
            })
            .collect(),
        ..Service::default()
    }
}

pub fn repository(name: &str) -> Repository {
    Repository {
        name: name.to_owned(),
        uri: format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/{name}"),
    }
}

/// Calls per operation, shared by the ECR and ECS fakes.
#[derive(Default)]
pub struct CallCounter(Mutex<BTreeMap<&'static str, usize>>);

impl CallCounter {
    pub(crate) fn record(&self, op: &'static str) {
        *self.0.lock().expect("lock").entry(op).or_default() += 1;
    }

    pub fn get(&self, op: &str) -> usize {
        self.0.lock().expect("lock").get(op).copied().unwrap_or(0)
    }
}

/// In-memory ECR.
#[derive(Default)]
pub struct FakeEcr {
    pub repos: Mutex<BTreeMap<String, Vec<EcrImage>>>,
    /// digest → manifest JSON for indexes.
    pub manifests: HashMap<String, String>,
    pub calls: CallCounter,
    /// digest → failure code BatchDeleteImage reports for it.
    pub delete_failures: HashMap<String, FailureCode>,
    /// Repositories whose DescribeImages fails.
    pub broken: Vec<String>,
    pub quota: Option<u64>,
    /// GetServiceQuota fails.
    pub quota_unreadable: bool,
    /// Every BatchDeleteImage call fails as a whole (after the SDK's retries).
    pub delete_call_fails: bool,
    /// Batch sizes seen by BatchDeleteImage.
    pub delete_batches: Mutex<Vec<usize>>,
    /// The registry's pull-time update exclusion list.
    pub exclusions: Mutex<Vec<String>>,
    /// The pull-time exclusion API answers UnknownOperationException.
    pub exclusions_unavailable: bool,
    /// Another actor (a person, ECR's own lifecycle policy) deletes these digests at the
    /// first BatchDeleteImage: what the validation pass must catch.
    pub concurrent_deletes: Mutex<Vec<String>>,
}

/// The caller the fake's GetCallerIdentity reports: an assumed-role session.
pub const FAKE_CALLER: &str = "arn:aws:sts::123456789012:assumed-role/Pruner/session-1";

impl FakeEcr {
    pub fn with(repos: Vec<(&str, Vec<EcrImage>)>) -> Self {
        Self {
            repos: Mutex::new(repos.into_iter().map(|(n, i)| (n.to_owned(), i)).collect()),
            ..Self::default()
        }
    }

    fn count(&self, op: &'static str) {
        self.calls.record(op);
    }

    pub fn calls(&self, op: &str) -> usize {
        self.calls.get(op)
    }

    pub fn digests(&self, repo: &str) -> Vec<String> {
        self.repos.lock().expect("lock")[repo]
            .iter()
            .map(|i| i.digest.clone())
            .collect()
    }
}

#[async_trait::async_trait]
impl EcrApi for FakeEcr {
    async fn list_repositories(&self) -> Result<Vec<Repository>, ApiError> {
        self.count("DescribeRepositories");
        Ok(self
            .repos
            .lock()
            .expect("lock")
            .keys()
            .map(|n| repository(n))
            .collect())
    }

    async fn describe_images(&self, repo: &str) -> Result<Vec<EcrImage>, ApiError> {
        self.count("DescribeImages");
        if self.broken.iter().any(|b| b == repo) {
            return Err(ApiError {
                operation: "DescribeImages",
                message: format!("{repo}: AccessDenied"),
            });
        }
        Ok(self
            .repos
            .lock()
            .expect("lock")
            .get(repo)
            .cloned()
            .unwrap_or_default())
    }

    async fn get_manifests(
        &self,
        _repo: &str,
        digests: &[String],
    ) -> Result<Vec<(String, String)>, ApiError> {
        self.count("BatchGetImage");
        assert!(digests.len() <= ECR_BATCH_MAX, "BatchGetImage over 100 ids");
        Ok(digests
            .iter()
            .filter_map(|d| self.manifests.get(d).map(|m| (d.clone(), m.clone())))
            .collect())
    }

    async fn batch_delete(
        &self,
        repo: &str,
        digests: &[String],
    ) -> Result<Vec<DeleteFailure>, ApiError> {
        self.count("BatchDeleteImage");
        assert!(
            digests.len() <= ECR_BATCH_MAX,
            "BatchDeleteImage over 100 ids"
        );
        self.delete_batches
            .lock()
            .expect("lock")
            .push(digests.len());
        if self.delete_call_fails {
            return Err(ApiError {
                operation: "BatchDeleteImage",
                message: format!("{repo}: ThrottlingException"),
            });
        }
        let mut failures = Vec::new();
        let mut repos = self.repos.lock().expect("lock");
        let images = repos.get_mut(repo).expect("repo exists");
        let others = std::mem::take(&mut *self.concurrent_deletes.lock().expect("lock"));
        images.retain(|i| !others.contains(&i.digest));
        // As ECR (and the strict proxy) refuse: a manifest an index in the repository
        // still lists, even an index deleted in this same call.
        let listed: HashSet<String> = images
            .iter()
            .filter_map(|i| self.manifests.get(&i.digest))
            .filter_map(|m| serde_json::from_str::<serde_json::Value>(m).ok())
            .flat_map(|m| {
                m["manifests"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c["digest"].as_str().map(str::to_owned))
                    .collect::<Vec<_>>()
            })
            .collect();
        for d in digests {
            if let Some(code) = self.delete_failures.get(d) {
                failures.push(DeleteFailure {
                    digest: d.clone(),
                    code: code.clone(),
                    reason: "injected".into(),
                });
                continue;
            }
            if listed.contains(d) {
                failures.push(DeleteFailure {
                    digest: d.clone(),
                    code: FailureCode::ImageReferencedByManifestList,
                    reason: "referenced by a manifest list".into(),
                });
                continue;
            }
            let before = images.len();
            images.retain(|i| &i.digest != d);
            if images.len() == before {
                failures.push(DeleteFailure {
                    digest: d.clone(),
                    code: FailureCode::ImageNotFound,
                    reason: "gone".into(),
                });
            }
        }
        Ok(failures)
    }

    async fn caller_arn(&self) -> Result<String, ApiError> {
        self.count("GetCallerIdentity");
        Ok(FAKE_CALLER.to_owned())
    }

    async fn pull_time_exclusions(&self) -> Result<Vec<String>, ApiError> {
        self.count("ListPullTimeUpdateExclusions");
        if self.exclusions_unavailable {
            return Err(ApiError {
                operation: "ListPullTimeUpdateExclusions",
                message: "UnknownOperationException".into(),
            });
        }
        Ok(self.exclusions.lock().expect("lock").clone())
    }

    async fn register_pull_time_exclusion(&self, principal: &str) -> Result<(), ApiError> {
        self.count("RegisterPullTimeUpdateExclusion");
        self.exclusions
            .lock()
            .expect("lock")
            .push(principal.to_owned());
        Ok(())
    }

    async fn images_per_repository_quota(&self) -> Result<Option<u64>, ApiError> {
        self.count("GetServiceQuota");
        if self.quota_unreadable {
            return Err(ApiError {
                operation: "GetServiceQuota",
                message: "AccessDenied".into(),
            });
        }
        Ok(self.quota)
    }
}

/// In-memory ECS: clusters → tasks and services.
#[derive(Default)]
pub struct FakeEcs {
    pub tasks: BTreeMap<String, Vec<TaskImages>>,
    /// cluster → (service name, what DescribeServices says about it).
    pub services: BTreeMap<String, Vec<(String, Service)>>,
    pub task_definitions: HashMap<String, Vec<String>>,
    /// cluster → stopped tasks ECS still shows.
    pub stopped: BTreeMap<String, Vec<TaskImages>>,
    /// service (name or ARN) → its ListServiceDeployments entries.
    pub deployments: HashMap<String, Vec<ServiceDeploymentBrief>>,
    /// deployment ARN → its target and source revisions.
    pub deployment_revisions: HashMap<String, ServiceDeploymentRevisions>,
    /// revision ARN → the revision.
    pub revisions: HashMap<String, ServiceRevision>,
    /// family → its ACTIVE revisions, newest first.
    pub families: HashMap<String, Vec<String>>,
    /// The service deployment APIs answer UnknownOperationException (an endpoint that
    /// does not serve them).
    pub deployments_unavailable: bool,
    /// ListServiceDeployments answers AccessDeniedException.
    pub deployments_denied: bool,
    /// ListClusters fails.
    pub broken: bool,
    pub calls: CallCounter,
}

impl FakeEcs {
    fn count(&self, op: &'static str) {
        self.calls.record(op);
    }

    pub fn calls(&self, op: &str) -> usize {
        self.calls.get(op)
    }
}

#[async_trait::async_trait]
impl EcsApi for FakeEcs {
    async fn list_clusters(&self) -> Result<Vec<String>, ApiError> {
        self.count("ListClusters");
        if self.broken {
            return Err(ApiError {
                operation: "ListClusters",
                message: "AccessDenied".into(),
            });
        }
        let mut all: Vec<String> = self
            .tasks
            .keys()
            .chain(self.services.keys())
            .cloned()
            .collect();
        all.sort();
        all.dedup();
        Ok(all)
    }

    async fn list_tasks(&self, cluster: &str) -> Result<Vec<String>, ApiError> {
        self.count("ListTasks");
        Ok((0..self.tasks.get(cluster).map_or(0, Vec::len))
            .map(|i| format!("{cluster}/task/{i}"))
            .collect())
    }

    async fn list_stopped_tasks(&self, cluster: &str) -> Result<Vec<String>, ApiError> {
        self.count("ListTasks");
        Ok((0..self.stopped.get(cluster).map_or(0, Vec::len))
            .map(|i| format!("{cluster}/stopped/{i}"))
            .collect())
    }

    async fn describe_tasks(
        &self,
        cluster: &str,
        tasks: &[String],
    ) -> Result<Vec<TaskImages>, ApiError> {
        self.count("DescribeTasks");
        assert!(tasks.len() <= 100);
        let running = self.tasks.get(cluster).cloned().unwrap_or_default();
        let stopped = self.stopped.get(cluster).cloned().unwrap_or_default();
        Ok(tasks
            .iter()
            .filter_map(|t| {
                let mut parts = t.rsplit('/');
                let i = parts.next()?.parse::<usize>().ok()?;
                let all = if parts.next() == Some("stopped") {
                    &stopped
                } else {
                    &running
                };
                all.get(i).cloned()
            })
            .collect())
    }

    async fn list_services(&self, cluster: &str) -> Result<Vec<String>, ApiError> {
        self.count("ListServices");
        Ok(self
            .services
            .get(cluster)
            .map(|s| s.iter().map(|(n, _)| n.clone()).collect())
            .unwrap_or_default())
    }

    async fn describe_services(
        &self,
        cluster: &str,
        services: &[String],
    ) -> Result<Vec<Service>, ApiError> {
        self.count("DescribeServices");
        assert!(services.len() <= 10);
        Ok(self
            .services
            .get(cluster)
            .map(|all| {
                all.iter()
                    .filter(|(n, _)| services.contains(n))
                    .map(|(n, s)| Service {
                        name: if s.name.is_empty() {
                            n.clone()
                        } else {
                            s.name.clone()
                        },
                        ..s.clone()
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn list_service_deployments(
        &self,
        _cluster: &str,
        service: &str,
    ) -> Result<Vec<ServiceDeploymentBrief>, ApiError> {
        self.count("ListServiceDeployments");
        if self.deployments_unavailable {
            return Err(ApiError {
                operation: "ListServiceDeployments",
                message: "UnknownOperationException".into(),
            });
        }
        if self.deployments_denied {
            return Err(ApiError {
                operation: "ListServiceDeployments",
                message: "AccessDeniedException: not authorized".into(),
            });
        }
        Ok(self.deployments.get(service).cloned().unwrap_or_default())
    }

    async fn describe_service_deployments(
        &self,
        arns: &[String],
    ) -> Result<Vec<ServiceDeploymentRevisions>, ApiError> {
        self.count("DescribeServiceDeployments");
        assert!(arns.len() <= 20, "DescribeServiceDeployments over 20 ARNs");
        Ok(arns
            .iter()
            .filter_map(|a| self.deployment_revisions.get(a).cloned())
            .collect())
    }

    async fn describe_service_revisions(
        &self,
        arns: &[String],
    ) -> Result<Vec<ServiceRevision>, ApiError> {
        self.count("DescribeServiceRevisions");
        assert!(arns.len() <= 20, "DescribeServiceRevisions over 20 ARNs");
        Ok(arns
            .iter()
            .filter_map(|a| self.revisions.get(a).cloned())
            .collect())
    }

    async fn latest_task_definitions(
        &self,
        family: &str,
        n: usize,
    ) -> Result<Vec<String>, ApiError> {
        self.count("ListTaskDefinitions");
        Ok(self
            .families
            .get(family)
            .map(|all| all.iter().take(n).cloned().collect())
            .unwrap_or_default())
    }

    async fn task_definition_images(&self, task_definition: &str) -> Result<Vec<String>, ApiError> {
        self.count("DescribeTaskDefinition");
        Ok(self
            .task_definitions
            .get(task_definition)
            .cloned()
            .unwrap_or_default())
    }
}
