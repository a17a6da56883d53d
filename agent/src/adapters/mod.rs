//! Adapters: the only code that touches bollard, the AWS SDK or the system clock.
//! Each translates between the SDK's types and this crate's port types.

pub mod aws;
pub mod clock;
pub mod docker;
pub mod docker_watch;
pub mod ecr;
pub mod ecs;
pub mod secrets;
