//! Adapter for the scheduled-task port: aws-sdk-eventbridge (rules and their targets) and
//! aws-sdk-scheduler (schedules), each with the `CallLogger` interceptor and the SDK's
//! standard retry. Pages at the APIs' maxima (100); SDK types never leave this file.

use super::{api_error, standard_retry, CallLogger};
use crate::ports::schedules::{ApiError, EcsTarget, ScheduleApi, ScheduleBrief};

/// EventBridge and EventBridge Scheduler through the SDK.
pub struct AwsSchedules {
    events: aws_sdk_eventbridge::Client,
    scheduler: aws_sdk_scheduler::Client,
}

impl AwsSchedules {
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        let events = aws_sdk_eventbridge::Client::from_conf(
            aws_sdk_eventbridge::config::Builder::from(sdk)
                .interceptor(CallLogger)
                .retry_config(standard_retry())
                .build(),
        );
        let scheduler = aws_sdk_scheduler::Client::from_conf(
            aws_sdk_scheduler::config::Builder::from(sdk)
                .interceptor(CallLogger)
                .retry_config(standard_retry())
                .build(),
        );
        Self { events, scheduler }
    }
}

/// Largest page ListEventBuses, ListRules, ListTargetsByRule and ListSchedules give.
const PAGE: i32 = 100;

#[async_trait::async_trait]
impl ScheduleApi for AwsSchedules {
    async fn list_event_buses(&self) -> Result<Vec<String>, ApiError> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .events
                .list_event_buses()
                .limit(PAGE)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| api_error("ListEventBuses", e))?;
            out.extend(
                page.event_buses()
                    .iter()
                    .filter_map(|b| b.name().map(str::to_owned)),
            );
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    async fn list_rules(&self, bus: &str) -> Result<Vec<String>, ApiError> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .events
                .list_rules()
                .event_bus_name(bus)
                .limit(PAGE)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| api_error("ListRules", e))?;
            out.extend(
                page.rules()
                    .iter()
                    .filter_map(|r| r.name().map(str::to_owned)),
            );
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    async fn rule_ecs_targets(&self, bus: &str, rule: &str) -> Result<Vec<EcsTarget>, ApiError> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .events
                .list_targets_by_rule()
                .event_bus_name(bus)
                .rule(rule)
                .limit(PAGE)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| api_error("ListTargetsByRule", e))?;
            out.extend(page.targets().iter().filter_map(|t| {
                t.ecs_parameters().map(|p| EcsTarget {
                    cluster: t.arn().to_owned(),
                    task_definition: p.task_definition_arn().to_owned(),
                })
            }));
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    async fn list_schedules(&self) -> Result<Vec<ScheduleBrief>, ApiError> {
        let mut pages = self
            .scheduler
            .list_schedules()
            .max_results(PAGE)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| api_error("ListSchedules", e))?;
            out.extend(page.schedules().iter().filter_map(|s| {
                Some(ScheduleBrief {
                    group: s.group_name().unwrap_or("default").to_owned(),
                    name: s.name()?.to_owned(),
                    target_arn: s.target().map(|t| t.arn().to_owned()),
                })
            }));
        }
        Ok(out)
    }

    async fn schedule_ecs_target(
        &self,
        group: &str,
        name: &str,
    ) -> Result<Option<EcsTarget>, ApiError> {
        let out = self
            .scheduler
            .get_schedule()
            .group_name(group)
            .name(name)
            .send()
            .await
            .map_err(|e| api_error("GetSchedule", e))?;
        Ok(out.target().and_then(|t| {
            t.ecs_parameters().map(|p| EcsTarget {
                cluster: t.arn().to_owned(),
                task_definition: p.task_definition_arn().to_owned(),
            })
        }))
    }
}
