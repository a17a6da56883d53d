//! The one integration-test binary of shipshape: a module per area, each driving the built
//! binary against real things (moto_server, a private dockerd, systemd-analyze, the
//! packagers). Fixtures live in the `shipshape_tests` library (`tests/src`); these modules
//! hold only tests. Run one area with a filter: `cargo test -p shipshape-tests gc::`.

mod bootstrap;
mod cli;
mod daemon;
mod ecr_prune;
mod gc;
mod harness;
mod layering;
mod packaging;
