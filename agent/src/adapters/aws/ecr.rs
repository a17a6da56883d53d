//! Adapter for the ECR port: aws-sdk-ecr and aws-sdk-servicequotas clients, each with
//! the `CallLogger` interceptor and the SDK's standard retry (throttling retried with
//! exponential backoff, up to 8 attempts). Pages are requested at the APIs' maxima;
//! SDK types never leave this file. Translation only: absent fields stay absent.

use std::sync::Arc;

use aws_sdk_ecr::types::ImageIdentifier;

use super::{api_error, sdk_config, standard_retry, time, CallLogger};
use crate::ports::ecr::{ApiError, DeleteFailure, EcrApi, EcrImage, FailureCode, Repository};
use crate::ports::ecs::EcsApi;
use crate::ports::lambda::LambdaApi;
use crate::ports::schedules::ScheduleApi;

/// Service Quotas code of ECR's "Images per repository".
const IMAGES_QUOTA_CODE: &str = "L-03A36CE1";

fn image_ids(digests: &[String]) -> Vec<ImageIdentifier> {
    digests
        .iter()
        .map(|d| ImageIdentifier::builder().image_digest(d).build())
        .collect()
}

/// The ports `ecr-prune` uses in one account: ECR (with Service Quotas and STS), and
/// what tells the images in use (ECS, EventBridge and Scheduler, Lambda).
pub struct Clients {
    pub ecr: Arc<dyn EcrApi>,
    pub ecs: Arc<dyn EcsApi>,
    pub schedules: Arc<dyn ScheduleApi>,
    pub lambda: Arc<dyn LambdaApi>,
}

/// Build the ports for `region` (or the default chain's region).
pub async fn clients(region: Option<&str>) -> Clients {
    clients_for(&sdk_config(region).await)
}

/// Build the ports for one SDK configuration (the caller's own, or an assumed role's).
pub fn clients_for(sdk: &aws_config::SdkConfig) -> Clients {
    let ecr = aws_sdk_ecr::Client::from_conf(
        aws_sdk_ecr::config::Builder::from(sdk)
            .interceptor(CallLogger)
            .retry_config(standard_retry())
            .build(),
    );
    let quotas = aws_sdk_servicequotas::Client::from_conf(
        aws_sdk_servicequotas::config::Builder::from(sdk)
            .interceptor(CallLogger)
            .retry_config(standard_retry())
            .build(),
    );
    let sts = aws_sdk_sts::Client::from_conf(
        aws_sdk_sts::config::Builder::from(sdk)
            .interceptor(CallLogger)
            .retry_config(standard_retry())
            .build(),
    );
    Clients {
        ecr: Arc::new(AwsEcr { ecr, quotas, sts }),
        ecs: Arc::new(super::ecs::AwsEcs::new(sdk)),
        schedules: Arc::new(super::schedules::AwsSchedules::new(sdk)),
        lambda: Arc::new(super::lambda::AwsLambda::new(sdk)),
    }
}

/// ECR and Service Quotas through the SDK.
pub struct AwsEcr {
    ecr: aws_sdk_ecr::Client,
    quotas: aws_sdk_servicequotas::Client,
    sts: aws_sdk_sts::Client,
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
                    pushed_at: time(d.image_pushed_at()),
                    size: d.image_size_in_bytes().map_or(0, |s| s.max(0) as u64),
                    last_pulled: time(d.last_recorded_pull_time()),
                    manifest_media_type: d.image_manifest_media_type().map(str::to_owned),
                    artifact_media_type: d.artifact_media_type().map(str::to_owned),
                    subject: d.subject_manifest_digest().map(str::to_owned),
                    archived: d.image_status() == Some(&aws_sdk_ecr::types::ImageStatus::Archived),
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
                code: f.failure_code().map_or_else(
                    || FailureCode::Other("Unknown".to_owned()),
                    |c| FailureCode::from_code(c.as_str()),
                ),
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

    async fn caller_arn(&self) -> Result<String, ApiError> {
        let out = self
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| api_error("GetCallerIdentity", e))?;
        Ok(out.arn().unwrap_or_default().to_owned())
    }

    async fn pull_time_exclusions(&self) -> Result<Vec<String>, ApiError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .ecr
                .list_pull_time_update_exclusions()
                .max_results(1000)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| api_error("ListPullTimeUpdateExclusions", e))?;
            out.extend(page.pull_time_update_exclusions().iter().cloned());
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => return Ok(out),
            }
        }
    }

    async fn register_pull_time_exclusion(&self, principal: &str) -> Result<(), ApiError> {
        self.ecr
            .register_pull_time_update_exclusion()
            .principal_arn(principal)
            .send()
            .await
            .map_err(|e| api_error("RegisterPullTimeUpdateExclusion", e))?;
        Ok(())
    }
}
