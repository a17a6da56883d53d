//! The job scheduler: one tokio loop per job that sleeps with `tokio::time` (so
//! paused-time tests drive it) until the job is due (`super::schedule`), and starts
//! it unless its previous run is still going (`JobGuards`).
//!
//! Wall time comes from a `Clock`; the loop re-reads it at least every minute so a
//! clock step or a suspended host does not make a job fire hours late.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::schedule::{jitter_delay, next_due};
use super::settings::{JobKind, JobSettings};
use crate::ports::Clock;

/// The longest single sleep before the clock is read again.
const MAX_SLEEP_STEP: Duration = Duration::from_secs(60);

/// "Is this job running?" flags, shared by the scheduler, the disk-pressure trigger
/// and config reloads, so that one job never overlaps itself.
#[derive(Debug, Clone, Default)]
pub struct JobGuards {
    flags: Arc<HashMap<JobKind, Arc<AtomicBool>>>,
}

impl JobGuards {
    pub fn new() -> Self {
        let flags = JobKind::ALL
            .iter()
            .map(|k| (*k, Arc::new(AtomicBool::new(false))))
            .collect();
        Self {
            flags: Arc::new(flags),
        }
    }

    /// Claim the job; `None` while a run holds it. Released when the guard drops.
    pub fn try_start(&self, kind: JobKind) -> Option<RunGuard> {
        let flag = self.flags.get(&kind)?;
        flag.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| RunGuard(Arc::clone(flag)))
    }

    #[cfg(test)]
    pub fn is_running(&self, kind: JobKind) -> bool {
        self.flags
            .get(&kind)
            .is_some_and(|f| f.load(Ordering::Acquire))
    }
}

/// Held for the duration of one run.
#[derive(Debug)]
pub struct RunGuard(Arc<AtomicBool>);

impl Drop for RunGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// What a scheduler starts: the job's body, given the job and its run guard.
pub type JobRunner = Arc<dyn Fn(JobKind, RunGuard) -> BoxFuture<'static, ()> + Send + Sync>;

/// Everything one job's loop needs.
pub struct JobLoop {
    pub job: JobSettings,
    pub clock: Arc<dyn Clock>,
    pub guards: JobGuards,
    /// Runs are spawned here so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// Stops this loop (shutdown, or a config reload replacing it); runs in flight
    /// are not interrupted by it.
    pub stop: CancellationToken,
    pub runner: JobRunner,
}

impl JobLoop {
    /// Fire the job at each due instant (plus jitter) until `stop`.
    pub async fn run(self) {
        let kind = self.job.kind;
        let mut previous: Option<DateTime<Utc>> = None;
        loop {
            let now = self.clock.now();
            let Some(due) = next_due(&self.job.schedule, previous, now) else {
                tracing::info!(job = %kind, "schedule has no future firing; job stops");
                return;
            };
            previous = Some(due);
            let delay = jitter_delay(self.job.jitter, &mut rand::rng());
            let target = due + chrono::Duration::from_std(delay).unwrap_or_default();
            tracing::debug!(job = %kind, due = %due, start = %target, "next run");
            if !self.sleep_until(target).await {
                return;
            }
            match self.guards.try_start(kind) {
                Some(guard) => {
                    let fut = (self.runner)(kind, guard);
                    self.tracker.spawn(fut);
                }
                None => {
                    tracing::warn!(job = %kind, "previous run still going; this run is skipped");
                }
            }
        }
    }

    /// Sleep until the clock reads `target`; false when stopped first.
    async fn sleep_until(&self, target: DateTime<Utc>) -> bool {
        loop {
            let now = self.clock.now();
            if now >= target {
                return true;
            }
            let wait = (target - now)
                .to_std()
                .unwrap_or_default()
                .min(MAX_SLEEP_STEP);
            tokio::select! {
                () = self.stop.cancelled() => return false,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::fakes::TokioClock;
    use chrono::TimeZone;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Mutex;

    fn job(expr: &str, jitter: Duration) -> JobSettings {
        JobSettings {
            kind: JobKind::Gc,
            expression: expr.to_owned(),
            schedule: super::super::schedule::parse_schedule(expr).unwrap(),
            jitter,
            apply: false,
            on_change: Vec::new(),
            restart_ecs_on_change: false,
        }
    }

    #[derive(Default)]
    struct Record {
        starts: Mutex<Vec<DateTime<Utc>>>,
        active: AtomicUsize,
        max_active: AtomicUsize,
    }

    /// Run a job loop under paused time for `span`, each run lasting `run_for`.
    async fn drive(
        job: JobSettings,
        base: DateTime<Utc>,
        span: Duration,
        run_for: Duration,
    ) -> Arc<Record> {
        let clock = TokioClock::new(base);
        let record = Arc::new(Record::default());
        let rec = Arc::clone(&record);
        let c2: Arc<dyn Clock> = clock.clone();
        let runner: JobRunner = Arc::new(move |_kind, guard| {
            let rec = Arc::clone(&rec);
            let clock = Arc::clone(&c2);
            Box::pin(async move {
                let _guard = guard;
                rec.starts.lock().unwrap().push(clock.now());
                let n = rec.active.fetch_add(1, Ordering::SeqCst) + 1;
                rec.max_active.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(run_for).await;
                rec.active.fetch_sub(1, Ordering::SeqCst);
            })
        });
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        let lp = JobLoop {
            job,
            clock,
            guards: JobGuards::new(),
            tracker: tracker.clone(),
            stop: stop.clone(),
            runner,
        };
        let handle = tokio::spawn(lp.run());
        tokio::time::sleep(span).await;
        stop.cancel();
        handle.await.unwrap();
        tracker.close();
        tracker.wait().await;
        record
    }

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, 4, h, m, s).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn fires_at_the_scheduled_instants() {
        let rec = drive(
            job("*/5 * * * *", Duration::ZERO),
            at(10, 2, 30),
            Duration::from_secs(16 * 60),
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(
            *rec.starts.lock().unwrap(),
            vec![at(10, 5, 0), at(10, 10, 0), at(10, 15, 0)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn six_field_schedule_fires_on_seconds() {
        let rec = drive(
            job("*/20 * * * * *", Duration::ZERO),
            at(10, 0, 5),
            Duration::from_secs(61),
            Duration::from_millis(10),
        )
        .await;
        assert_eq!(
            *rec.starts.lock().unwrap(),
            vec![at(10, 0, 20), at(10, 0, 40), at(10, 1, 0)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_stays_within_its_bound() {
        let jitter = Duration::from_secs(90);
        let rec = drive(
            job("*/5 * * * *", jitter),
            at(0, 0, 1),
            Duration::from_secs(40 * 5 * 60),
            Duration::from_secs(1),
        )
        .await;
        let starts = rec.starts.lock().unwrap().clone();
        assert!(starts.len() >= 38, "{} runs", starts.len());
        let mut offsets = Vec::new();
        for (i, s) in starts.iter().enumerate() {
            let due = at(0, 5, 0) + chrono::Duration::minutes(5 * i as i64);
            let off = *s - due;
            assert!(
                off >= chrono::Duration::zero(),
                "run {i} at {s} before {due}"
            );
            assert!(
                off <= chrono::Duration::seconds(90),
                "run {i} at {s}, due {due}"
            );
            offsets.push(off);
        }
        offsets.sort();
        offsets.dedup();
        assert!(offsets.len() > 10, "jitter looks constant: {offsets:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_never_overlaps_itself() {
        // Every minute, each run takes 150s: the 11:02 and 11:03 firings find it busy.
        let rec = drive(
            job("* * * * *", Duration::ZERO),
            at(11, 0, 30),
            Duration::from_secs(9 * 60),
            Duration::from_secs(150),
        )
        .await;
        assert_eq!(rec.max_active.load(Ordering::SeqCst), 1);
        assert_eq!(
            *rec.starts.lock().unwrap(),
            vec![at(11, 1, 0), at(11, 4, 0), at(11, 7, 0)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn stop_ends_the_loop_without_firing() {
        let rec = drive(
            job("0 3 * * *", Duration::ZERO),
            at(4, 0, 0),
            Duration::from_secs(3600),
            Duration::from_secs(1),
        )
        .await;
        assert!(rec.starts.lock().unwrap().is_empty());
    }

    #[test]
    fn guards_are_exclusive_per_job_and_released_on_drop() {
        let g = JobGuards::new();
        let held = g.try_start(JobKind::Gc).unwrap();
        assert!(g.try_start(JobKind::Gc).is_none());
        assert!(g.is_running(JobKind::Gc));
        let other = g.try_start(JobKind::EcrPrune);
        assert!(other.is_some());
        drop(held);
        assert!(!g.is_running(JobKind::Gc));
        assert!(g.try_start(JobKind::Gc).is_some());
    }
}
