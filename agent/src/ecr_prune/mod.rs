//! `ecr_prune`: stub, to be implemented (see SPEC.md).

pub mod planner;
pub mod rules;
pub mod units;

use crate::app::Globals;
use crate::cli::EcrPruneArgs;
use crate::config::RawEcr;
use crate::error::Status;

/// Errors of this command area.
#[derive(Debug, thiserror::Error)]
pub enum EcrError {
    #[error("invalid {key}: {message}")]
    Invalid { key: String, message: String },
    #[error("not implemented yet")]
    NotImplemented,
}

impl EcrError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Invalid { .. } => crate::error::EXIT_USAGE,
            Self::NotImplemented => crate::error::EXIT_RUNTIME,
        }
    }
}

/// The effective settings of this section as JSON (secrets redacted), for `check`.
pub fn effective(_raw: &RawEcr) -> Result<serde_json::Value, EcrError> {
    Ok(serde_json::Value::Null)
}

/// Run the command.
pub async fn run(
    _globals: &Globals,
    _raw: &RawEcr,
    _args: &EcrPruneArgs,
) -> Result<Status, EcrError> {
    Err(EcrError::NotImplemented)
}

/// What one prune pass did, for the daemon's metrics and logs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EcrSummary {
    /// Repository → images deleted in it.
    pub deleted_per_repository: Vec<(String, u64)>,
    /// Some repository failed or was refused (the CLI would exit 1).
    pub partial_failure: bool,
}

/// Daemon entry: one prune pass with `[ecr]` settings and `args` overrides
/// (`apply` from the job), stopping between batches when `cancel` fires. Prints nothing.
pub async fn run_pass(
    _globals: &Globals,
    _raw: &RawEcr,
    _args: &EcrPruneArgs,
    _cancel: tokio_util::sync::CancellationToken,
) -> Result<EcrSummary, EcrError> {
    Err(EcrError::NotImplemented)
}
