//! Fakes for driving the daemon core in unit tests: a wall clock that follows tokio's
//! pausable one, a `Jobs` that records its runs, and a scripted `Reloader`.
//! (The fake Docker engine is `super::events::tests::Fake`.)

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::jobs::{AuthOutcome, EcrOutcome, GcMode, GcOutcome, JobError, Jobs};
use super::settings::JobKind;
use super::{Config, DaemonError, Reloader};
use crate::ports::Clock;

/// Wall time that follows tokio's (pausable) clock.
pub(crate) struct TokioClock {
    base: DateTime<Utc>,
    start: tokio::time::Instant,
}

impl TokioClock {
    pub(crate) fn new(base: DateTime<Utc>) -> Arc<Self> {
        Arc::new(Self {
            base,
            start: tokio::time::Instant::now(),
        })
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        self.base + chrono::Duration::from_std(self.start.elapsed()).expect("small elapsed time")
    }
}

/// One run a `FakeJobs` saw.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JobCall {
    pub(crate) kind: JobKind,
    /// Which `FakeJobs` ran it (tells configuration generations apart).
    pub(crate) label: &'static str,
    pub(crate) gc_mode: Option<GcMode>,
    pub(crate) started: tokio::time::Instant,
    /// The run saw `cancel` fire before its end.
    pub(crate) cancelled: bool,
}

/// What every `FakeJobs` of a test writes to.
#[derive(Debug, Default)]
pub(crate) struct JobLog {
    pub(crate) calls: Mutex<Vec<JobCall>>,
    active: AtomicUsize,
    pub(crate) max_active: AtomicUsize,
}

impl JobLog {
    pub(crate) fn calls(&self) -> Vec<JobCall> {
        self.calls.lock().unwrap().clone()
    }
}

/// A `Jobs` whose every run takes `run_for` and succeeds; it stops early when
/// cancelled, unless `ignores_cancel`.
pub(crate) struct FakeJobs {
    pub(crate) label: &'static str,
    pub(crate) run_for: Duration,
    pub(crate) ignores_cancel: bool,
    pub(crate) log: Arc<JobLog>,
}

impl FakeJobs {
    async fn run(&self, kind: JobKind, gc_mode: Option<GcMode>, cancel: CancellationToken) {
        let started = tokio::time::Instant::now();
        let n = self.log.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.log.max_active.fetch_max(n, Ordering::SeqCst);
        let cancelled = if self.ignores_cancel {
            tokio::time::sleep(self.run_for).await;
            cancel.is_cancelled()
        } else {
            tokio::select! {
                () = cancel.cancelled() => true,
                () = tokio::time::sleep(self.run_for) => false,
            }
        };
        self.log.active.fetch_sub(1, Ordering::SeqCst);
        self.log.calls.lock().unwrap().push(JobCall {
            kind,
            label: self.label,
            gc_mode,
            started,
            cancelled,
        });
    }
}

#[async_trait]
impl Jobs for FakeJobs {
    async fn gc(
        &self,
        mode: GcMode,
        _last_use: super::jobs::LastUse,
        cancel: CancellationToken,
    ) -> Result<GcOutcome, JobError> {
        self.run(JobKind::Gc, Some(mode), cancel).await;
        Ok(GcOutcome {
            images_deleted: 2,
            ..GcOutcome::default()
        })
    }

    async fn ecr_prune(
        &self,
        _apply: bool,
        cancel: CancellationToken,
    ) -> Result<EcrOutcome, JobError> {
        self.run(JobKind::EcrPrune, None, cancel).await;
        Ok(EcrOutcome::default())
    }

    async fn refresh_auth(&self, cancel: CancellationToken) -> Result<AuthOutcome, JobError> {
        self.run(JobKind::RefreshAuth, None, cancel).await;
        Ok(AuthOutcome::Unchanged)
    }
}

/// A `Reloader` answering each reload with the next scripted result.
#[derive(Default)]
pub(crate) struct ScriptedReloader {
    pub(crate) answers: Mutex<VecDeque<Result<Config, DaemonError>>>,
    pub(crate) reloads: AtomicUsize,
}

impl Reloader for ScriptedReloader {
    fn reload(&self) -> Result<Config, DaemonError> {
        self.reloads.fetch_add(1, Ordering::SeqCst);
        self.answers
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| Err(DaemonError::Config("no scripted configuration".into())))
    }
}
