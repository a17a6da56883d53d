//! The top-level error (app and main only): one variant per command area, each
//! carrying that area's own error enum, and its exit code.

use crate::config::ConfigError;
use crate::exit::{EXIT_RUNTIME, EXIT_USAGE};

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
    /// No AWS client can be built (no CA certificates).
    #[error("{0}")]
    Tls(String),
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
            Self::Output(_) | Self::Tls(_) => EXIT_RUNTIME,
        }
    }
}
