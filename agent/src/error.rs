//! The top-level error: one variant per command area, each carrying that area's
//! own error enum, and the mapping to exit codes (0 ok, 1 runtime, 2 usage/config).

use crate::config::ConfigError;

/// Exit code for runtime failures (AWS, Docker, I/O).
pub const EXIT_RUNTIME: u8 = 1;
/// Exit code for usage and configuration errors.
pub const EXIT_USAGE: u8 = 2;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Bootstrap(#[from] crate::bootstrap::BootstrapError),
    #[error(transparent)]
    Gc(#[from] crate::image_gc::GcError),
    #[error(transparent)]
    Ecr(#[from] crate::ecr_prune::EcrError),
    #[error(transparent)]
    Daemon(#[from] crate::daemon::DaemonError),
    #[error("cannot set up logging: {0}")]
    Telemetry(String),
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) => EXIT_USAGE,
            Self::Bootstrap(e) => e.exit_code(),
            Self::Gc(e) => e.exit_code(),
            Self::Ecr(e) => e.exit_code(),
            Self::Daemon(e) => e.exit_code(),
            Self::Telemetry(_) => EXIT_USAGE,
            Self::Output(_) => EXIT_RUNTIME,
        }
    }
}

/// How a command that did not fail outright ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Exit 0: done, or nothing to do.
    Ok,
    /// Exit 1: the command ran to the end but some part failed and was reported.
    PartialFailure,
}

impl Status {
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::PartialFailure => EXIT_RUNTIME,
        }
    }
}
