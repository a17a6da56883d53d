//! Fixtures for the shipshape integration tests (`tests/tests/main.rs`): a real
//! `moto_server` ([`moto`]) seeded through the SDK ([`aws`]) and a proxy in front of it
//! ([`proxy`]), a private `dockerd` ([`dockerd`]) with generated images ([`images`]), the
//! built binary ([`bin`]) and the daemon run as systemd would ([`daemon`], [`prometheus`]),
//! the planted secret ([`canary`]), and the packaging tools and throwaway roots ([`tools`],
//! [`packaging`]). Fixtures never skip: when a component cannot start they panic with a
//! message saying what to run (`bash scripts/test.sh` installs everything).
// Fixtures, tests and benchmarks drive real engines and AWS in real time: the wall
// clock rule of clippy.toml is for the agent, not for them.
#![allow(clippy::disallowed_methods)]

pub mod aws;
pub mod bench;
pub mod bin;
pub mod canary;
pub mod daemon;
pub mod dockerd;
pub mod images;
pub mod moto;
pub mod packaging;
pub mod prometheus;
pub mod proxy;
pub mod registry;
pub mod systemd;
pub mod tools;

use std::path::PathBuf;

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(PathBuf::from).unwrap_or(here)
}

/// The cargo target directory: `CARGO_TARGET_DIR` when set, else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        _ => workspace_root().join("target"),
    }
}

/// A port on 127.0.0.1 that was free a moment ago (bound, read, released).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
        .unwrap_or_else(|e| panic!("cannot bind a free port on 127.0.0.1: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("cannot read the bound port: {e}"))
        .port()
}

/// How waiting for a freshly spawned server process ended.
pub(crate) enum Startup {
    /// The readiness probe succeeded.
    Ready,
    /// The process exited before it became ready.
    Exited(std::process::ExitStatus),
    /// The deadline passed without an answer.
    TimedOut,
}

/// Polls a just-spawned `child` every 50 ms until `ready()` holds, the child exits, or
/// `deadline` passes — the start-up wait shared by the moto and dockerd fixtures.
pub(crate) fn wait_for_startup(
    child: &mut std::process::Child,
    deadline: std::time::Instant,
    mut ready: impl FnMut() -> bool,
) -> Startup {
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Startup::Exited(status);
        }
        if ready() {
            return Startup::Ready;
        }
        if std::time::Instant::now() > deadline {
            return Startup::TimedOut;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
