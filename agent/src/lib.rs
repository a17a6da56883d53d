//! shipshape keeps ECS container instances and CI hosts in good order.
//!
//! Every job is snapshot → plan → execute:
//! - `adapters` read the world (Docker Engine API, AWS) into a snapshot of this
//!   crate's own types, behind the traits in `ports`;
//! - a pure planner (`plan(&Snapshot, &Policy, now) -> Plan`) decides, giving every
//!   entry its reason — no I/O, no clock, no SDK types;
//! - an executor carries the plan out through the ports and reports each item.
//!
//! `bootstrap` writes ecs.config; `image_gc` cleans the host's Docker; `ecr_prune`
//! prunes ECR; `daemon` schedules them all under systemd. `main.rs` only wires.

pub mod adapters;
pub mod app;
pub(crate) mod bootstrap;
pub mod cli;
pub mod config;
pub(crate) mod daemon;
pub(crate) mod ecr_prune;
pub mod error;
pub mod exit;
pub mod image_gc;
pub mod last_use;
pub mod ports;
pub(crate) mod shared;
pub mod shutdown;
pub mod telemetry;

#[cfg(any(test, feature = "test-util"))]
// Test support, also outside `cfg(test)` with `test-util`: a fake may unwrap, like a test.
#[allow(clippy::unwrap_used)]
pub mod testing;
