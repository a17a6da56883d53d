//! Adapters: the only code that touches bollard, the AWS SDK, statvfs, the system
//! clock or this process's memory mappings. Each translates between the SDK's types
//! and this crate's port types.

pub mod aws;
pub mod bollard;
pub mod clock;
mod layerdb;
pub mod memory;
pub mod statvfs;
