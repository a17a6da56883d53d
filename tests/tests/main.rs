//! The one integration-test binary of shipshape: a module per area, each driving the built
//! binary against real things (moto_server, a private dockerd, systemd-analyze, the
//! packagers). Fixtures live in the `shipshape_tests` library (`tests/src`); these modules
//! hold only tests. Run one area with a filter: `cargo test -p shipshape-tests gc::`.
// Fixtures, tests and benchmarks drive real engines and AWS in real time: the wall
// clock rule of clippy.toml is for the agent, not for them.
#![allow(clippy::disallowed_methods)]

mod bootstrap;
mod cli;
mod daemon;
mod ecr_prune;
mod gc;
mod gc_contract;
mod gc_policy;
mod harness;
mod layering;
mod packaging;
mod strict_proxy;
