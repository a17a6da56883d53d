//! Ports: the traits the core needs from the outside world, in this crate's own
//! types. Adapters (`crate::adapters`) implement them with bollard, statvfs and the AWS SDK;
//! fakes for tests live in `crate::testing`.

use chrono::{DateTime, Utc};

pub mod disk;
pub mod docker;
pub mod ecr;
pub mod ecs;
pub mod lambda;
pub mod memory;
pub mod schedules;
pub mod secrets;

/// The time source. Planners take `now` as an argument; executors and the daemon
/// ask a `Clock`.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}
