//! Adapter for the `ecr-prune` ports: aws-sdk-ecr, aws-sdk-ecs and
//! aws-sdk-servicequotas clients, each with the `CallLogger` interceptor and the SDK's
//! standard retry (throttling retried with exponential backoff, up to 8 attempts).
//! Pages are requested at the APIs' maxima; SDK types never leave this file.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_ecr::error::DisplayErrorContext;
use aws_sdk_ecr::types::ImageIdentifier;
use aws_smithy_types::retry::RetryConfig;
use chrono::{DateTime, Utc};

use super::aws::{sdk_config, CallLogger};
use crate::ecr_prune::settings::IMAGES_QUOTA_CODE;
use crate::ports::ecr::{
    ApiError, DeleteFailure, EcrApi, EcrImage, EcsApi, Repository, TaskImages,
};

fn retry() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(8)
        .with_initial_backoff(Duration::from_millis(200))
        .with_max_backoff(Duration::from_secs(20))
}

fn api_error<E: std::error::Error>(operation: &'static str, e: E) -> ApiError {
    ApiError {
        operation,
        message: DisplayErrorContext(&e).to_string(),
    }
}

fn time(t: Option<&aws_smithy_types::DateTime>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
}

fn image_ids(digests: &[String]) -> Vec<ImageIdentifier> {
    digests
        .iter()
        .map(|d| ImageIdentifier::builder().image_digest(d).build())
        .collect()
}

/// Build the ECR and ECS ports for `region` (or the default chain's region).
pub async fn clients(region: Option<&str>) -> (Arc<dyn EcrApi>, Arc<dyn EcsApi>) {
    let sdk = sdk_config(region).await;
    let ecr = aws_sdk_ecr::Client::from_conf(
        aws_sdk_ecr::config::Builder::from(&sdk)
            .interceptor(CallLogger)
            .retry_config(retry())
            .build(),
    );
    let quotas = aws_sdk_servicequotas::Client::from_conf(
        aws_sdk_servicequotas::config::Builder::from(&sdk)
            .interceptor(CallLogger)
            .retry_config(retry())
            .build(),
    );
    let ecs = aws_sdk_ecs::Client::from_conf(
        aws_sdk_ecs::config::Builder::from(&sdk)
            .interceptor(CallLogger)
            .retry_config(retry())
            .build(),
    );
    (Arc::new(AwsEcr { ecr, quotas }), Arc::new(AwsEcs { ecs }))
}

/// ECR and Service Quotas through the SDK.
pub struct AwsEcr {
    ecr: aws_sdk_ecr::Client,
    quotas: aws_sdk_servicequotas::Client,
}

#[async_trait::async_trait]
impl EcrApi for AwsEcr {
    async fn list_repositories(&self) -> Result<Vec<Repository>, ApiError> {
        let mut pages = self
            .ecr
            .describe_repositories()
            .max_results(1000)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| api_error("DescribeRepositories", e))?;
            for r in page.repositories() {
                if let Some(name) = r.repository_name() {
                    out.push(Repository {
                        name: name.to_owned(),
                        uri: r.repository_uri().unwrap_or_default().to_owned(),
                    });
                }
            }
        }
        Ok(out)
    }

    async fn describe_images(&self, repo: &str) -> Result<Vec<EcrImage>, ApiError> {
        let mut pages = self
            .ecr
            .describe_images()
            .repository_name(repo)
            .max_results(1000)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| api_error("DescribeImages", e))?;
            for d in page.image_details() {
                let Some(digest) = d.image_digest() else {
                    continue;
                };
                out.push(EcrImage {
                    digest: digest.to_owned(),
                    tags: d.image_tags().to_vec(),
                    // A missing push time must not make an image look ancient: treat it as new.
                    pushed_at: time(d.image_pushed_at()).unwrap_or_else(Utc::now),
                    size: d.image_size_in_bytes().map_or(0, |s| s.max(0) as u64),
                    last_pulled: time(d.last_recorded_pull_time()),
                    manifest_media_type: d.image_manifest_media_type().map(str::to_owned),
                    artifact_media_type: d.artifact_media_type().map(str::to_owned),
                    subject: d.subject_manifest_digest().map(str::to_owned),
                });
            }
        }
        Ok(out)
    }

    async fn get_manifests(
        &self,
        repo: &str,
        digests: &[String],
    ) -> Result<Vec<(String, String)>, ApiError> {
        let out = self
            .ecr
            .batch_get_image()
            .repository_name(repo)
            .set_image_ids(Some(image_ids(digests)))
            .accepted_media_types("application/vnd.oci.image.index.v1+json")
            .accepted_media_types("application/vnd.docker.distribution.manifest.list.v2+json")
            .accepted_media_types("application/vnd.oci.image.manifest.v1+json")
            .accepted_media_types("application/vnd.docker.distribution.manifest.v2+json")
            .send()
            .await
            .map_err(|e| api_error("BatchGetImage", e))?;
        Ok(out
            .images()
            .iter()
            .filter_map(|img| {
                let digest = img.image_id()?.image_digest()?;
                Some((digest.to_owned(), img.image_manifest()?.to_owned()))
            })
            .collect())
    }

    async fn batch_delete(
        &self,
        repo: &str,
        digests: &[String],
    ) -> Result<Vec<DeleteFailure>, ApiError> {
        let out = self
            .ecr
            .batch_delete_image()
            .repository_name(repo)
            .set_image_ids(Some(image_ids(digests)))
            .send()
            .await
            .map_err(|e| api_error("BatchDeleteImage", e))?;
        Ok(out
            .failures()
            .iter()
            .map(|f| DeleteFailure {
                digest: f
                    .image_id()
                    .and_then(|i| i.image_digest().or(i.image_tag()))
                    .unwrap_or("?")
                    .to_owned(),
                code: f
                    .failure_code()
                    .map_or_else(|| "Unknown".to_owned(), |c| c.as_str().to_owned()),
                reason: f.failure_reason().unwrap_or_default().to_owned(),
            })
            .collect())
    }

    async fn images_per_repository_quota(&self) -> Result<Option<u64>, ApiError> {
        let out = self
            .quotas
            .get_service_quota()
            .service_code("ecr")
            .quota_code(IMAGES_QUOTA_CODE)
            .send()
            .await
            .map_err(|e| api_error("GetServiceQuota", e))?;
        Ok(out
            .quota()
            .and_then(|q| q.value())
            .filter(|v| *v >= 1.0)
            .map(|v| v as u64))
    }
}

/// ECS through the SDK.
pub struct AwsEcs {
    ecs: aws_sdk_ecs::Client,
}

#[async_trait::async_trait]
impl EcsApi for AwsEcs {
    async fn list_clusters(&self) -> Result<Vec<String>, ApiError> {
        let mut pages = self
            .ecs
            .list_clusters()
            .max_results(100)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| api_error("ListClusters", e))?;
            out.extend(page.cluster_arns().iter().cloned());
        }
        Ok(out)
    }

    async fn list_tasks(&self, cluster: &str) -> Result<Vec<String>, ApiError> {
        let mut pages = self
            .ecs
            .list_tasks()
            .cluster(cluster)
            .max_results(100)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| api_error("ListTasks", e))?;
            out.extend(page.task_arns().iter().cloned());
        }
        Ok(out)
    }

    async fn describe_tasks(
        &self,
        cluster: &str,
        tasks: &[String],
    ) -> Result<Vec<TaskImages>, ApiError> {
        let out = self
            .ecs
            .describe_tasks()
            .cluster(cluster)
            .set_tasks(Some(tasks.to_vec()))
            .send()
            .await
            .map_err(|e| api_error("DescribeTasks", e))?;
        Ok(out
            .tasks()
            .iter()
            .map(|t| TaskImages {
                task_definition: t.task_definition_arn().unwrap_or_default().to_owned(),
                images: t
                    .containers()
                    .iter()
                    .filter_map(|c| c.image().map(str::to_owned))
                    .collect(),
                digests: t
                    .containers()
                    .iter()
                    .filter_map(|c| c.image_digest().map(str::to_owned))
                    .collect(),
            })
            .collect())
    }

    async fn list_services(&self, cluster: &str) -> Result<Vec<String>, ApiError> {
        let mut pages = self
            .ecs
            .list_services()
            .cluster(cluster)
            .max_results(100)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| api_error("ListServices", e))?;
            out.extend(page.service_arns().iter().cloned());
        }
        Ok(out)
    }

    async fn describe_services(
        &self,
        cluster: &str,
        services: &[String],
    ) -> Result<Vec<String>, ApiError> {
        let out = self
            .ecs
            .describe_services()
            .cluster(cluster)
            .set_services(Some(services.to_vec()))
            .send()
            .await
            .map_err(|e| api_error("DescribeServices", e))?;
        let mut tds = Vec::new();
        for s in out.services() {
            let deployments: Vec<String> = s
                .deployments()
                .iter()
                .filter(|d| matches!(d.status(), Some("PRIMARY") | Some("ACTIVE")))
                .filter_map(|d| d.task_definition().map(str::to_owned))
                .collect();
            if deployments.is_empty() {
                tds.extend(s.task_definition().map(str::to_owned));
            }
            tds.extend(deployments);
        }
        Ok(tds)
    }

    async fn task_definition_images(&self, task_definition: &str) -> Result<Vec<String>, ApiError> {
        let out = self
            .ecs
            .describe_task_definition()
            .task_definition(task_definition)
            .send()
            .await
            .map_err(|e| api_error("DescribeTaskDefinition", e))?;
        Ok(out
            .task_definition()
            .map(|td| {
                td.container_definitions()
                    .iter()
                    .filter_map(|c| c.image().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }
}
