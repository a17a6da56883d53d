//! Containers (`--containers`) and dangling volumes (`--volumes`): stopped
//! containers past the grace, `created` ones only after 24h, never active ones,
//! and nothing the ECS agent manages unless asked.

use chrono::{DateTime, Utc};

use super::{since, Action, ContainerEntry, VolumeEntry};
use crate::image_gc::policy::{Policy, CREATED_CONTAINER_MIN_AGE, ECS_TASK_LABEL};
use crate::image_gc::reason::{ContainerReason, VolumeReason};
use crate::ports::docker::{ContainerInfo, ContainerState, VolumeInfo};

pub(super) fn plan_containers(
    containers: &[ContainerInfo],
    policy: &Policy,
    now: DateTime<Utc>,
) -> Vec<ContainerEntry> {
    if !policy.containers {
        return Vec::new();
    }
    containers
        .iter()
        .map(|c| {
            let (action, reason) = container_decision(c, policy, now);
            ContainerEntry {
                id: c.id.clone(),
                name: c.name.clone(),
                image: c.image.clone(),
                action,
                reason,
            }
        })
        .collect()
}

fn container_decision(
    c: &ContainerInfo,
    policy: &Policy,
    now: DateTime<Utc>,
) -> (Action, ContainerReason) {
    if c.labels.contains_key(ECS_TASK_LABEL) && !policy.remove_ecs_containers {
        return (Action::Keep, ContainerReason::EcsManaged);
    }
    match c.state {
        ContainerState::Created => {
            if since(now, c.created) > CREATED_CONTAINER_MIN_AGE {
                (Action::Delete, ContainerReason::CreatedLongAgo)
            } else {
                (Action::Keep, ContainerReason::CreatedRecently)
            }
        }
        ContainerState::Exited | ContainerState::Dead => {
            let grace = policy.container_grace;
            match c.finished_at {
                Some(f) if since(now, f) >= grace => {
                    (Action::Delete, ContainerReason::FinishedLongAgo { grace })
                }
                _ => (Action::Keep, ContainerReason::FinishedRecently { grace }),
            }
        }
        state => (Action::Keep, ContainerReason::Active { state }),
    }
}

pub(super) fn plan_volumes(volumes: &[VolumeInfo], policy: &Policy) -> Vec<VolumeEntry> {
    if !policy.volumes {
        return Vec::new();
    }
    volumes
        .iter()
        .map(|v| {
            let ecs = v.labels.keys().any(|k| k.starts_with("com.amazonaws.ecs"));
            let (action, reason) = if ecs && !policy.remove_ecs_containers {
                (Action::Keep, VolumeReason::EcsManaged)
            } else {
                (Action::Delete, VolumeReason::Dangling)
            };
            VolumeEntry {
                name: v.name.clone(),
                action,
                reason,
            }
        })
        .collect()
}
