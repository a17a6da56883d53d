//! Adapters: the only code that touches bollard, the AWS SDK, statvfs or the system
//! clock. Each translates between the SDK's types and this crate's port types.

pub mod aws;
pub mod bollard;
pub mod clock;
mod layerdb;
pub mod statvfs;
