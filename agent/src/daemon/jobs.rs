//! The daemon's port to the work it schedules: one GC pass, one ECR prune pass, one
//! auth refresh. The composition root implements it by calling the cores with their
//! adapters and settings; the daemon sees only the figures each run reports, which
//! it turns into metrics, log lines and `STATUS=`.

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::on_change::OnChangeError;

/// How a GC pass is steered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GcMode {
    /// `[gc]` as configured (a scheduled run).
    Configured,
    /// Disk mode: `[gc] high_water`/`low_water` decide how much goes (disk pressure).
    DiskPressure,
}

/// What one GC pass did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GcOutcome {
    pub images_deleted: u64,
    pub containers_deleted: u64,
    pub volumes_deleted: u64,
    pub bytes_reclaimed: u64,
    /// Used share (0..1) of Docker's filesystem after the pass, when measured.
    pub disk_usage_ratio: Option<f64>,
    /// Bytes of container log files under Docker's root directory, when measured.
    pub container_log_bytes: Option<u64>,
    /// Bytes under Docker's root directory the engine does not account for
    /// (leaked layers), when measured.
    pub unaccounted_bytes: Option<u64>,
}

/// What one ECR prune pass did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EcrOutcome {
    /// Repository → images deleted in it.
    pub deleted_per_repository: Vec<(String, u64)>,
    /// Some repository failed or was refused (the CLI would exit 1).
    pub partial_failure: bool,
}

/// Whether an auth refresh changed ecs.config (or Docker's config.json) on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthOutcome {
    Unchanged,
    Changed,
}

/// Why a run failed. Logged, counted and shown in `STATUS=`; the job runs again at
/// its next time.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The job's core failed; its own error says what and what to do.
    #[error(transparent)]
    Failed(Box<dyn std::error::Error + Send + Sync>),
    #[error("some repositories failed or were refused; see the log above")]
    SomeRepositoriesFailed,
    #[error(transparent)]
    OnChange(#[from] OnChangeError),
    #[error("cannot write the ECS restart request {}: {source} (shipshape-ecs-restart.path watches it)", .path.display())]
    RestartRequest {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

impl JobError {
    /// Wrap a core's error.
    pub fn failed(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Failed(Box::new(e))
    }
}

/// Image ID → last use, from the daemon's memory, and how far it holds the engine's
/// event log.
pub type LastUse = crate::last_use::Record;

/// The three jobs, as the configuration in force wires them.
#[async_trait]
pub trait Jobs: Send + Sync {
    /// One GC pass; stops between deletion chunks when `cancel` fires.
    /// `last_use` is the daemon's in-memory record (image ID → last use, and up to when
    /// it holds every event of the engine's log).
    async fn gc(
        &self,
        mode: GcMode,
        last_use: LastUse,
        cancel: CancellationToken,
    ) -> Result<GcOutcome, JobError>;
    /// One prune pass, deleting only when `apply`; stops between batches on `cancel`.
    async fn ecr_prune(
        &self,
        apply: bool,
        cancel: CancellationToken,
    ) -> Result<EcrOutcome, JobError>;
    /// Rewrite ecs.config from `[bootstrap]`.
    async fn refresh_auth(&self, cancel: CancellationToken) -> Result<AuthOutcome, JobError>;
}
