//! Adapter for the ECS port: an aws-sdk-ecs client with the `CallLogger` interceptor
//! and the SDK's standard retry. Pages at the APIs' maxima; SDK types never leave this
//! file. Translation only: every deployment is returned with its status, and the core
//! decides which ones protect an image.

use super::{api_error, standard_retry, time, CallLogger};
use crate::ports::ecs::{
    ApiError, Deployment, DeploymentStatus, EcsApi, PinnedImage, Service, ServiceDeploymentBrief,
    ServiceDeploymentRevisions, ServiceRevision, TaskImages,
};

/// ECS through the SDK.
pub struct AwsEcs {
    ecs: aws_sdk_ecs::Client,
}

impl AwsEcs {
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        let ecs = aws_sdk_ecs::Client::from_conf(
            aws_sdk_ecs::config::Builder::from(sdk)
                .interceptor(CallLogger)
                .retry_config(standard_retry())
                .build(),
        );
        Self { ecs }
    }

    /// Every ListTasks page of `cluster` (RUNNING when `status` is unset, as ECS does).
    async fn task_arns(
        &self,
        cluster: &str,
        status: Option<aws_sdk_ecs::types::DesiredStatus>,
    ) -> Result<Vec<String>, ApiError> {
        let mut pages = self
            .ecs
            .list_tasks()
            .cluster(cluster)
            .set_desired_status(status)
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
        self.task_arns(cluster, None).await
    }

    async fn list_stopped_tasks(&self, cluster: &str) -> Result<Vec<String>, ApiError> {
        self.task_arns(cluster, Some(aws_sdk_ecs::types::DesiredStatus::Stopped))
            .await
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
    ) -> Result<Vec<Service>, ApiError> {
        let out = self
            .ecs
            .describe_services()
            .cluster(cluster)
            .set_services(Some(services.to_vec()))
            .send()
            .await
            .map_err(|e| api_error("DescribeServices", e))?;
        Ok(out
            .services()
            .iter()
            .map(|s| Service {
                arn: s.service_arn().unwrap_or_default().to_owned(),
                name: s.service_name().unwrap_or_default().to_owned(),
                task_definition: s.task_definition().map(str::to_owned),
                deployments: s
                    .deployments()
                    .iter()
                    .map(|d| Deployment {
                        status: d.status().map(DeploymentStatus::from_name),
                        task_definition: d.task_definition().map(str::to_owned),
                    })
                    .collect(),
            })
            .collect())
    }

    async fn list_service_deployments(
        &self,
        cluster: &str,
        service: &str,
    ) -> Result<Vec<ServiceDeploymentBrief>, ApiError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .ecs
                .list_service_deployments()
                .cluster(cluster)
                .service(service)
                .max_results(100)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| api_error("ListServiceDeployments", e))?;
            out.extend(page.service_deployments().iter().map(|d| {
                ServiceDeploymentBrief {
                    arn: d.service_deployment_arn().unwrap_or_default().to_owned(),
                    status: d
                        .status()
                        .map(|s| s.as_str().to_owned())
                        .unwrap_or_default(),
                    created_at: time(d.created_at()),
                }
            }));
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => return Ok(out),
            }
        }
    }

    async fn describe_service_deployments(
        &self,
        arns: &[String],
    ) -> Result<Vec<ServiceDeploymentRevisions>, ApiError> {
        let out = self
            .ecs
            .describe_service_deployments()
            .set_service_deployment_arns(Some(arns.to_vec()))
            .send()
            .await
            .map_err(|e| api_error("DescribeServiceDeployments", e))?;
        Ok(out
            .service_deployments()
            .iter()
            .map(|d| ServiceDeploymentRevisions {
                arn: d.service_deployment_arn().unwrap_or_default().to_owned(),
                target: d
                    .target_service_revision()
                    .and_then(|r| r.arn())
                    .map(str::to_owned),
                sources: d
                    .source_service_revisions()
                    .iter()
                    .filter_map(|r| r.arn().map(str::to_owned))
                    .collect(),
            })
            .collect())
    }

    async fn describe_service_revisions(
        &self,
        arns: &[String],
    ) -> Result<Vec<ServiceRevision>, ApiError> {
        let out = self
            .ecs
            .describe_service_revisions()
            .set_service_revision_arns(Some(arns.to_vec()))
            .send()
            .await
            .map_err(|e| api_error("DescribeServiceRevisions", e))?;
        Ok(out
            .service_revisions()
            .iter()
            .map(|r| ServiceRevision {
                arn: r.service_revision_arn().unwrap_or_default().to_owned(),
                task_definition: r.task_definition().map(str::to_owned),
                images: r
                    .container_images()
                    .iter()
                    .map(|c| PinnedImage {
                        container: c.container_name().map(str::to_owned),
                        image: c.image().map(str::to_owned),
                        digest: c.image_digest().map(str::to_owned),
                    })
                    .collect(),
            })
            .collect())
    }

    async fn latest_task_definitions(
        &self,
        family: &str,
        n: usize,
    ) -> Result<Vec<String>, ApiError> {
        // Every page, then newest first by revision number: the newest N must not depend
        // on the server honouring `sort` (moto does not), and ACTIVE revisions of one
        // family are few pages at 100 per page.
        let mut out: Vec<(u64, String)> = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .ecs
                .list_task_definitions()
                .family_prefix(family)
                .status(aws_sdk_ecs::types::TaskDefinitionStatus::Active)
                .sort(aws_sdk_ecs::types::SortOrder::Desc)
                .max_results(100)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| api_error("ListTaskDefinitions", e))?;
            out.extend(
                page.task_definition_arns()
                    .iter()
                    .filter(|arn| crate::ports::ecs::family_of(arn) == family)
                    .map(|arn| {
                        let revision = arn
                            .rsplit_once(':')
                            .and_then(|(_, r)| r.parse().ok())
                            .unwrap_or(0);
                        (revision, arn.clone())
                    }),
            );
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => break,
            }
        }
        out.sort_by(|a, b| b.cmp(a));
        Ok(out.into_iter().take(n).map(|(_, arn)| arn).collect())
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
