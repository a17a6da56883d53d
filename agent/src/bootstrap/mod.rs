//! `bootstrap`: stub, to be implemented (see SPEC.md).

use crate::app::Globals;
use crate::cli::BootstrapArgs;
use crate::config::RawBootstrap;
use crate::error::Status;

/// Errors of this command area.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("invalid {key}: {message}")]
    Invalid { key: String, message: String },
    #[error("not implemented yet")]
    NotImplemented,
}

impl BootstrapError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Invalid { .. } => crate::error::EXIT_USAGE,
            Self::NotImplemented => crate::error::EXIT_RUNTIME,
        }
    }
}

/// The effective settings of this section as JSON (secrets redacted), for `check`.
pub fn effective(_raw: &RawBootstrap) -> Result<serde_json::Value, BootstrapError> {
    Ok(serde_json::Value::Null)
}

/// Run the command.
pub async fn run(
    _globals: &Globals,
    _raw: &RawBootstrap,
    _args: &BootstrapArgs,
) -> Result<Status, BootstrapError> {
    Err(BootstrapError::NotImplemented)
}

/// Daemon entry (`refresh_auth` job): run bootstrap with the config's `[bootstrap]`
/// section and no flags; `Ok(true)` when ecs.config (or config.json) changed on disk.
pub async fn refresh(_globals: &Globals, _raw: &RawBootstrap) -> Result<bool, BootstrapError> {
    Err(BootstrapError::NotImplemented)
}
