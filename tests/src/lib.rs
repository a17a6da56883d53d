//! Fixtures for the shipshape integration tests: a real `moto_server` ([`moto`]), a private
//! `dockerd` ([`dockerd`]), generated images ([`images`]) and the built binary ([`bin`]).
//! Fixtures never skip: when a component cannot start they panic with a message saying
//! what to run (`bash scripts/test.sh` installs everything).

pub mod bin;
pub mod dockerd;
pub mod images;
pub mod moto;

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
