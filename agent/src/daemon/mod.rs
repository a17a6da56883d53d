//! `daemon`: stub, to be implemented (see SPEC.md).

use crate::app::Globals;
use crate::config::{RawConfig, RawDaemon, RawMetrics};
use crate::error::Status;

/// Errors of the daemon.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("invalid {key}: {message}")]
    Invalid { key: String, message: String },
    #[error("not implemented yet")]
    NotImplemented,
}

impl DaemonError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Invalid { .. } => crate::error::EXIT_USAGE,
            Self::NotImplemented => crate::error::EXIT_RUNTIME,
        }
    }
}

/// The effective `[daemon]` and `[metrics]` settings as JSON, for `check`.
pub fn effective(
    _daemon: &RawDaemon,
    _metrics: &RawMetrics,
) -> Result<serde_json::Value, DaemonError> {
    Ok(serde_json::Value::Null)
}

/// Run until SIGTERM.
pub async fn run(_globals: &Globals, _raw: RawConfig) -> Result<Status, DaemonError> {
    Err(DaemonError::NotImplemented)
}
