//! `image_gc`: stub, to be implemented (see SPEC.md).

use crate::app::Globals;
use crate::cli::GcArgs;
use crate::config::RawGc;
use crate::error::Status;

/// Errors of this command area.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("invalid {key}: {message}")]
    Invalid { key: String, message: String },
    #[error("not implemented yet")]
    NotImplemented,
}

impl GcError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Invalid { .. } => crate::error::EXIT_USAGE,
            Self::NotImplemented => crate::error::EXIT_RUNTIME,
        }
    }
}

/// The effective settings of this section as JSON (secrets redacted), for `check`.
pub fn effective(_raw: &RawGc) -> Result<serde_json::Value, GcError> {
    Ok(serde_json::Value::Null)
}

/// Run the command.
pub async fn run(_globals: &Globals, _raw: &RawGc, _args: &GcArgs) -> Result<Status, GcError> {
    Err(GcError::NotImplemented)
}

/// What one GC pass did, for the daemon's metrics and logs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GcSummary {
    pub images_deleted: u64,
    pub containers_deleted: u64,
    pub volumes_deleted: u64,
    pub bytes_reclaimed: u64,
    /// Usage ratio (0..1) of Docker's filesystem after the pass, when measured.
    pub disk_usage_ratio: Option<f64>,
}

/// Daemon entry: one GC pass with `[gc]` settings (and `args` overrides, e.g. disk
/// mode), stopping between deletion chunks when `cancel` fires. Prints nothing.
pub async fn run_pass(
    _globals: &Globals,
    _raw: &RawGc,
    _args: &GcArgs,
    _cancel: tokio_util::sync::CancellationToken,
) -> Result<GcSummary, GcError> {
    Err(GcError::NotImplemented)
}
