//! Fakes of the scheduled-task and Lambda ports, in memory, counting calls per operation.
//! Their refusals (UnknownOperationException for an endpoint without the API,
//! AccessDeniedException) are the ones the strict proxy and moto answer too.

use std::collections::{BTreeMap, HashMap};

use super::ecr::CallCounter;
use crate::ports::ecr::ApiError;
use crate::ports::lambda::{Alias, Function, FunctionCode, LambdaApi};
use crate::ports::schedules::{EcsTarget, ScheduleApi, ScheduleBrief};

fn unknown(operation: &'static str) -> ApiError {
    ApiError {
        operation,
        message: "UnknownOperationException: not served by this endpoint".into(),
    }
}

fn denied(operation: &'static str) -> ApiError {
    ApiError {
        operation,
        message: "AccessDeniedException: not authorized".into(),
    }
}

/// In-memory EventBridge and Scheduler.
#[derive(Default)]
pub struct FakeSchedules {
    /// (bus, rule) → its ECS targets.
    pub rules: BTreeMap<(String, String), Vec<EcsTarget>>,
    /// schedule → its ECS target (None: a target that is not ECS).
    pub schedules: BTreeMap<(String, String), Option<EcsTarget>>,
    /// Scheduler answers UnknownOperationException.
    pub scheduler_unavailable: bool,
    /// ListRules answers AccessDeniedException.
    pub rules_denied: bool,
    pub calls: CallCounter,
}

impl FakeSchedules {
    pub fn calls(&self, op: &str) -> usize {
        self.calls.get(op)
    }
}

#[async_trait::async_trait]
impl ScheduleApi for FakeSchedules {
    async fn list_event_buses(&self) -> Result<Vec<String>, ApiError> {
        self.calls.record("ListEventBuses");
        let mut buses: Vec<String> = self.rules.keys().map(|(b, _)| b.clone()).collect();
        buses.push("default".into());
        buses.sort();
        buses.dedup();
        Ok(buses)
    }

    async fn list_rules(&self, bus: &str) -> Result<Vec<String>, ApiError> {
        self.calls.record("ListRules");
        if self.rules_denied {
            return Err(denied("ListRules"));
        }
        Ok(self
            .rules
            .keys()
            .filter(|(b, _)| b == bus)
            .map(|(_, r)| r.clone())
            .collect())
    }

    async fn rule_ecs_targets(&self, bus: &str, rule: &str) -> Result<Vec<EcsTarget>, ApiError> {
        self.calls.record("ListTargetsByRule");
        Ok(self
            .rules
            .get(&(bus.to_owned(), rule.to_owned()))
            .cloned()
            .unwrap_or_default())
    }

    async fn list_schedules(&self) -> Result<Vec<ScheduleBrief>, ApiError> {
        self.calls.record("ListSchedules");
        if self.scheduler_unavailable {
            return Err(unknown("ListSchedules"));
        }
        Ok(self
            .schedules
            .iter()
            .map(|((group, name), target)| ScheduleBrief {
                group: group.clone(),
                name: name.clone(),
                target_arn: Some(target.as_ref().map_or(
                    "arn:aws:lambda:us-east-1:123456789012:function:f".to_owned(),
                    |t| t.cluster.clone(),
                )),
            })
            .collect())
    }

    async fn schedule_ecs_target(
        &self,
        group: &str,
        name: &str,
    ) -> Result<Option<EcsTarget>, ApiError> {
        self.calls.record("GetSchedule");
        Ok(self
            .schedules
            .get(&(group.to_owned(), name.to_owned()))
            .cloned()
            .flatten())
    }
}

/// One fake function: its package type, versions (with their resolved image URIs) and
/// aliases.
#[derive(Debug, Clone, Default)]
pub struct FakeFunction {
    pub package_type: Option<String>,
    /// version (`$LATEST`, `1`, …) → what GetFunction tells.
    pub versions: BTreeMap<String, FunctionCode>,
    pub aliases: Vec<Alias>,
}

/// In-memory Lambda.
#[derive(Default)]
pub struct FakeLambda {
    pub functions: HashMap<String, FakeFunction>,
    /// Lambda answers UnknownOperationException.
    pub unavailable: bool,
    /// GetFunction answers AccessDeniedException.
    pub get_denied: bool,
    pub calls: CallCounter,
}

impl FakeLambda {
    pub fn calls(&self, op: &str) -> usize {
        self.calls.get(op)
    }
}

#[async_trait::async_trait]
impl LambdaApi for FakeLambda {
    async fn list_functions(&self) -> Result<Vec<Function>, ApiError> {
        self.calls.record("ListFunctions");
        if self.unavailable {
            return Err(unknown("ListFunctions"));
        }
        let mut out: Vec<Function> = self
            .functions
            .iter()
            .map(|(name, f)| Function {
                name: name.clone(),
                package_type: f.package_type.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn list_versions(&self, function: &str) -> Result<Vec<String>, ApiError> {
        self.calls.record("ListVersionsByFunction");
        Ok(self
            .functions
            .get(function)
            .map(|f| f.versions.keys().cloned().collect())
            .unwrap_or_default())
    }

    async fn list_aliases(&self, function: &str) -> Result<Vec<Alias>, ApiError> {
        self.calls.record("ListAliases");
        Ok(self
            .functions
            .get(function)
            .map(|f| f.aliases.clone())
            .unwrap_or_default())
    }

    async fn function_code(
        &self,
        function: &str,
        qualifier: &str,
    ) -> Result<FunctionCode, ApiError> {
        self.calls.record("GetFunction");
        if self.get_denied {
            return Err(denied("GetFunction"));
        }
        self.functions
            .get(function)
            .and_then(|f| f.versions.get(qualifier))
            .cloned()
            .ok_or_else(|| ApiError {
                operation: "GetFunction",
                message: format!("ResourceNotFoundException: {function}:{qualifier}"),
            })
    }
}
