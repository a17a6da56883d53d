//! Adapter for the ECS port: an aws-sdk-ecs client with the `CallLogger` interceptor
//! and the SDK's standard retry. Pages at the APIs' maxima; SDK types never leave this
//! file. Translation only: every deployment is returned with its status, and the core
//! decides which ones protect an image.

use super::{api_error, standard_retry, CallLogger};
use crate::ports::ecs::{ApiError, Deployment, DeploymentStatus, EcsApi, Service, TaskImages};

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
