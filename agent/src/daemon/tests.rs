//! The daemon core driven end to end with fakes under paused time: the fake Docker
//! engine, `FakeJobs`, a scripted reloader, and reload requests / shutdown sent the
//! way `crate::shutdown` sends them for SIGHUP and SIGTERM.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::fakes::{FakeJobs, JobLog, ScriptedReloader, TokioClock};
use super::jobs::GcMode;
use super::schedule::parse_schedule;
use super::settings::{DaemonSettings, JobKind, JobSettings};
use super::{run, Config, DaemonDeps, DaemonError};
use crate::exit::Status;
use crate::last_use::LastUseState;
use crate::testing::docker::{full_id, image, FakeDisk, FakeDocker};

fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 4, 10, 0, 30).unwrap()
}

fn job(kind: JobKind, expr: &str) -> JobSettings {
    JobSettings {
        kind,
        expression: expr.to_owned(),
        schedule: parse_schedule(expr).unwrap(),
        jitter: Duration::ZERO,
        apply: false,
        on_change: Vec::new(),
        restart_ecs_on_change: false,
    }
}

fn settings(dir: &Path, jobs: Vec<JobSettings>) -> DaemonSettings {
    DaemonSettings {
        state: dir.join("state.json"),
        disk_check_interval: Duration::from_secs(60),
        reconcile_interval: Duration::from_secs(600),
        shutdown_timeout: Duration::from_secs(30),
        jobs,
        metrics_listen: None,
        high_water: None,
    }
}

fn config(
    settings: DaemonSettings,
    label: &'static str,
    run_for: Duration,
    log: &Arc<JobLog>,
) -> Config {
    Config {
        settings,
        jobs: Arc::new(FakeJobs {
            label,
            run_for,
            ignores_cancel: false,
            log: Arc::clone(log),
        }),
    }
}

/// Counts the daemon's calls to release the binary's code pages.
#[derive(Default)]
struct CountingMemory {
    calls: std::sync::atomic::AtomicUsize,
}

impl crate::ports::memory::Memory for CountingMemory {
    fn release_code_pages(&self) -> std::io::Result<crate::ports::memory::Released> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(crate::ports::memory::Released::default())
    }
}

/// A daemon core running on fakes.
struct Running {
    log: Arc<JobLog>,
    memory: Arc<CountingMemory>,
    reloader: Arc<ScriptedReloader>,
    shutdown: CancellationToken,
    reloads: mpsc::Sender<()>,
    task: JoinHandle<Result<Status, DaemonError>>,
    dir: tempfile::TempDir,
}

impl Running {
    fn start(make: impl FnOnce(&Path, &Arc<JobLog>) -> Config, docker: FakeDocker) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(JobLog::default());
        let reloader = Arc::new(ScriptedReloader::default());
        let shutdown = CancellationToken::new();
        let (reloads, reload_rx) = mpsc::channel(1);
        let memory = Arc::new(CountingMemory::default());
        let deps = DaemonDeps {
            docker: Arc::new(docker),
            disk: Arc::new(FakeDisk::new(None)),
            clock: TokioClock::new(base()),
            reloader: Arc::clone(&reloader) as Arc<dyn super::Reloader>,
            memory: Arc::clone(&memory) as Arc<dyn crate::ports::memory::Memory>,
        };
        let task = tokio::spawn(run(
            make(dir.path(), &log),
            deps,
            shutdown.clone(),
            reload_rx,
        ));
        Self {
            log,
            memory,
            reloader,
            shutdown,
            reloads,
            task,
            dir,
        }
    }

    fn script(&self, answer: Result<Config, DaemonError>) {
        self.reloader.answers.lock().unwrap().push_back(answer);
    }

    async fn reload(&self) {
        self.reloads.send(()).await.unwrap();
        settle().await;
    }

    /// Each finished run: its job, its label, and how long ago it started.
    fn starts(&self) -> Vec<(JobKind, &'static str, Duration)> {
        self.log
            .calls()
            .iter()
            .map(|c| (c.kind, c.label, c.started.elapsed()))
            .collect()
    }

    async fn stop(self) -> (Result<Status, DaemonError>, Arc<JobLog>, tempfile::TempDir) {
        self.shutdown.cancel();
        let result = self.task.await.unwrap();
        (result, self.log, self.dir)
    }
}

async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

async fn advance(secs: u64) {
    tokio::time::sleep(Duration::from_secs(secs)).await;
    settle().await;
}

/// Idle RSS: the binary's code pages go back 30 s after READY (the replay of the
/// engine's buffered events and the first save are done by then), then every 5 min.
#[tokio::test(start_paused = true)]
async fn code_pages_are_released_30_s_after_ready_then_every_5_min() {
    let r = Running::start(
        |dir, log| config(settings(dir, Vec::new()), "only", Duration::ZERO, log),
        FakeDocker::new(vec![image("a", &["app:1"], 2, 10)], Vec::new()),
    );
    let calls = |r: &Running| r.memory.calls.load(Ordering::SeqCst);
    advance(29).await;
    assert_eq!(calls(&r), 0, "not while start-up's work may still run");
    advance(2).await;
    assert_eq!(calls(&r), 1);
    advance(297).await;
    assert_eq!(calls(&r), 1);
    advance(4).await;
    assert_eq!(calls(&r), 2);
    advance(300).await;
    assert_eq!(calls(&r), 3);
    let (result, _, _) = r.stop().await;
    assert!(matches!(result, Ok(Status::Ok)));
}

#[tokio::test(start_paused = true)]
async fn a_scheduled_job_fires_at_its_time_with_gc_as_configured() {
    // Starts at 10:00:30; due at 10:05 and 10:10.
    let r = Running::start(
        |dir, log| {
            config(
                settings(dir, vec![job(JobKind::Gc, "*/5 * * * *")]),
                "first",
                Duration::from_secs(1),
                log,
            )
        },
        FakeDocker::new(vec![image("a", &["app:1"], 2, 10)], Vec::new()),
    );
    advance(4 * 60).await;
    assert!(r.log.calls().is_empty(), "nothing due before 10:05");
    advance(70).await;
    let calls = r.log.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].kind, JobKind::Gc);
    assert_eq!(calls[0].gc_mode, Some(GcMode::Configured));
    // gc reads last use from the file: the core saved it before the run.
    let state = LastUseState::load(&r.dir.path().join("state.json"))
        .unwrap()
        .expect("state written before gc");
    assert!(state.last_used(&full_id("a")).is_some());
    advance(5 * 60).await;
    assert_eq!(r.log.calls().len(), 2);
    let (result, _, _) = r.stop().await;
    assert_eq!(result.unwrap(), Status::Ok);
}

#[tokio::test(start_paused = true)]
async fn a_job_never_overlaps_itself_even_across_a_reload() {
    // Every minute, each run 150s: a run is going at most of the firings.
    let r = Running::start(
        |dir, log| {
            config(
                settings(dir, vec![job(JobKind::Gc, "* * * * *")]),
                "first",
                Duration::from_secs(150),
                log,
            )
        },
        down_engine(),
    );
    advance(60).await; // 10:01:30: the first run is going
    r.script(Ok(config(
        settings(r.dir.path(), vec![job(JobKind::Gc, "* * * * *")]),
        "second",
        Duration::from_secs(150),
        &r.log,
    )));
    r.reload().await;
    advance(8 * 60 + 15).await; // to 10:09:45
    assert_eq!(r.log.max_active.load(Ordering::SeqCst), 1);
    let labels: Vec<&str> = r.log.calls().iter().map(|c| c.label).collect();
    // 10:01 (first), then the new loop's 10:04 and 10:07: 10:02 and 10:03 found the
    // first run still going, and so on.
    assert_eq!(labels, ["first", "second", "second"], "{:?}", r.starts());
    let (result, _, _) = r.stop().await;
    assert!(result.is_ok());
}

#[tokio::test(start_paused = true)]
async fn reload_replaces_the_schedule_and_an_invalid_one_keeps_the_old() {
    let r = Running::start(
        |dir, log| {
            config(
                settings(dir, vec![job(JobKind::Gc, "* * * * *")]),
                "first",
                Duration::from_secs(1),
                log,
            )
        },
        down_engine(),
    );
    advance(60).await; // 10:01 ran
    r.script(Err(DaemonError::Invalid {
        key: "daemon.jobs.gc.schedule".into(),
        message: "bad".into(),
    }));
    r.reload().await;
    advance(60).await; // 10:02 ran, still the first configuration
    assert_eq!(r.log.calls().len(), 2);
    assert!(r.log.calls().iter().all(|c| c.label == "first"));
    // Now a valid one: refresh_auth every minute, gc no longer scheduled.
    r.script(Ok(config(
        settings(r.dir.path(), vec![job(JobKind::RefreshAuth, "* * * * *")]),
        "second",
        Duration::from_secs(1),
        &r.log,
    )));
    r.reload().await;
    advance(3 * 60).await;
    let after: Vec<(JobKind, &str)> = r.log.calls()[2..]
        .iter()
        .map(|c| (c.kind, c.label))
        .collect();
    assert_eq!(after, [(JobKind::RefreshAuth, "second"); 3]);
    assert_eq!(r.reloader.reloads.load(Ordering::SeqCst), 2);
    let (result, _, _) = r.stop().await;
    assert!(result.is_ok());
}

#[tokio::test(start_paused = true)]
async fn shutdown_cancels_the_running_job_waits_for_it_and_saves_the_state() {
    let r = Running::start(
        |dir, log| {
            config(
                settings(dir, vec![job(JobKind::Gc, "* * * * *")]),
                "first",
                Duration::from_secs(3600),
                log,
            )
        },
        FakeDocker::new(vec![image("a", &["app:1"], 2, 10)], Vec::new()),
    );
    advance(60).await; // the 10:01 run is going, for an hour
    assert_eq!(r.log.max_active.load(Ordering::SeqCst), 1);
    let started = tokio::time::Instant::now();
    let (result, log, dir) = r.stop().await;
    assert_eq!(result.unwrap(), Status::Ok);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "cancel is prompt"
    );
    let calls = log.calls();
    assert_eq!(calls.len(), 1);
    assert!(calls[0].cancelled, "the run saw the shutdown");
    let state = LastUseState::load(&dir.path().join("state.json"))
        .unwrap()
        .expect("state saved at shutdown");
    assert!(state.last_used(&full_id("a")).is_some());
}

#[tokio::test(start_paused = true)]
async fn shutdown_gives_up_on_a_run_after_the_shutdown_timeout() {
    let r = Running::start(
        |dir, log| Config {
            settings: settings(dir, vec![job(JobKind::Gc, "* * * * *")]),
            jobs: Arc::new(FakeJobs {
                label: "stubborn",
                run_for: Duration::from_secs(3600),
                ignores_cancel: true,
                log: Arc::clone(log),
            }),
        },
        down_engine(),
    );
    advance(60).await;
    let started = tokio::time::Instant::now();
    let (result, log, _) = r.stop().await;
    assert!(result.is_ok());
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(30) && took < Duration::from_secs(40),
        "{took:?}: shutdown_timeout is 30s"
    );
    assert!(
        log.calls().is_empty(),
        "the run was abandoned, not finished"
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_before_ready_returns_cleanly() {
    let r = Running::start(
        |dir, log| config(settings(dir, Vec::new()), "first", Duration::ZERO, log),
        down_engine(),
    );
    let (result, log, _) = r.stop().await;
    assert_eq!(result.unwrap(), Status::Ok);
    assert!(log.calls().is_empty());
}

#[tokio::test]
async fn an_unreadable_state_file_is_a_start_up_error() {
    let r = Running::start(
        |dir, log| {
            // A directory where the state file should be: it cannot be read.
            std::fs::create_dir(dir.join("state.json")).unwrap();
            config(settings(dir, Vec::new()), "first", Duration::ZERO, log)
        },
        down_engine(),
    );
    let err = r.task.await.unwrap().unwrap_err();
    assert!(matches!(err, DaemonError::State(_)), "{err}");
    assert_eq!(err.exit_code(), crate::exit::EXIT_RUNTIME);
}

#[tokio::test]
async fn a_taken_metrics_port_is_a_start_up_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let r = Running::start(
        |dir, log| {
            let mut s = settings(dir, Vec::new());
            s.metrics_listen = Some(addr);
            config(s, "first", Duration::ZERO, log)
        },
        down_engine(),
    );
    let err = r.task.await.unwrap().unwrap_err();
    assert!(matches!(err, DaemonError::Metrics { .. }), "{err}");
    assert!(err.to_string().contains("[metrics] listen"), "{err}");
    assert_eq!(err.exit_code(), crate::exit::EXIT_USAGE);
}

/// An engine that never answers (the daemon keeps retrying).
fn down_engine() -> FakeDocker {
    let docker = FakeDocker::default();
    docker.set_up(false);
    docker
}
