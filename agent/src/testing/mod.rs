//! Fakes for the ports, for planner and executor edge cases the real thing cannot
//! produce. One file per area.

pub mod docker;
pub mod ecr;
pub mod secrets;
pub mod usage;
