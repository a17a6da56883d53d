//! `run` driven with the fakes (the fake engine is also the disk): a dry run, a
//! real run, a 409 and a 404 between plan and delete, cancellation, and the
//! snapshot failures that end a pass.

use super::*;
use crate::image_gc::planner::Action;
use crate::image_gc::reason::{ImageReason, Outcome};
use crate::image_gc::settings::GcOptions;
use crate::ports::docker::{ContainerState, DockerEngine, EventScope};
use crate::testing::docker::{container, event, full_id, image, now, FakeDocker, FAKE_ROOT_DIR};

const GIB: u64 = 1 << 30;

/// Settings from `flags` alone (and a state file that does not exist); `dry_run` as
/// the command line sets it.
fn settings(args: Args) -> GcSettings {
    let flags = GcOptions {
        state: Some("/nonexistent/state.json".into()),
        ..args.options
    };
    let mut s = GcSettings::resolve(crate::config::layer::Layered::new(
        &flags,
        &GcOptions::default(),
        &Default::default(),
    ))
    .unwrap();
    s.dry_run = args.dry_run;
    s
}

/// What the command line gives `gc`: its options and `--dry-run`.
#[derive(Default)]
struct Args {
    dry_run: bool,
    options: GcOptions,
}

/// An old tagged image, an old dangling one, a young one, and one in use; the
/// engine's event log reaches back 100 hours (its container's start).
fn engine() -> FakeDocker {
    let fake = FakeDocker::new(
        vec![
            image("a1", &["app:1"], 48, GIB),
            image("d2", &[], 72, GIB),
            image("y3", &["app:3"], 0, GIB),
            image("b4", &["base:1"], 96, GIB),
        ],
        vec![container("c1", "base:1", "b4", ContainerState::Running)],
    )
    .with_disk(50 * GIB, 100 * GIB);
    fake.with(|s| {
        s.event_log.push(event(
            EventScope::Container,
            "start",
            "c1",
            Some("base:1"),
            100,
        ))
    });
    fake
}

async fn pass(fake: &FakeDocker, args: Args, cancel: &CancellationToken) -> Report {
    run(&settings(args), fake, fake, now(), cancel)
        .await
        .unwrap()
}

/// The outcome beside the image `id` (`None`: the plan keeps it).
fn outcome(report: &Report, id: &str) -> Option<Outcome> {
    let i = report
        .plan
        .images
        .iter()
        .position(|e| e.id == full_id(id))
        .unwrap();
    report.outcomes.images[i].clone()
}

fn planned(report: &Report, id: &str) -> (Action, ImageReason) {
    let e = report
        .plan
        .images
        .iter()
        .find(|e| e.id == full_id(id))
        .unwrap();
    (e.action, e.reason.clone())
}

#[tokio::test]
async fn dry_run_plans_everything_and_touches_nothing() {
    let fake = engine();
    let report = pass(
        &fake,
        Args {
            dry_run: true,
            ..Args::default()
        },
        &CancellationToken::new(),
    )
    .await;
    assert!(report.dry_run);
    assert!(fake.removals().is_empty());
    assert_eq!(fake.image_ids().len(), 4);
    assert_eq!(
        planned(&report, "a1"),
        (Action::Delete, ImageReason::LeastRecentlyUsed)
    );
    assert_eq!(
        planned(&report, "d2"),
        (Action::Delete, ImageReason::Dangling)
    );
    assert_eq!(planned(&report, "y3").0, Action::Keep);
    assert_eq!(planned(&report, "b4").0, Action::Keep);
    assert_eq!(outcome(&report, "a1"), Some(Outcome::Deleted));
    assert_eq!(outcome(&report, "y3"), None);
    assert_eq!(report.stats, None);
    assert_eq!(report.reclaimed_bytes(), 2 * GIB);
    assert_eq!(report.disk_before.map(|d| d.used_bytes), Some(50 * GIB));
    // list images, list containers, /info, the event log: nothing per image.
    assert_eq!(report.plan_api_calls, 4);
}

#[tokio::test]
async fn real_run_deletes_the_candidates_and_reports_outcomes_beside_the_plan() {
    let fake = engine();
    let report = pass(&fake, Args::default(), &CancellationToken::new()).await;
    assert_eq!(fake.removals(), vec![full_id("d2"), full_id("a1")]);
    assert_eq!(fake.image_ids(), vec![full_id("y3"), full_id("b4")]);
    // The plan is what the planner made; what happened is beside it.
    assert_eq!(planned(&report, "a1").0, Action::Delete);
    assert_eq!(outcome(&report, "a1"), Some(Outcome::Deleted));
    assert_eq!(outcome(&report, "d2"), Some(Outcome::Deleted));
    let stats = report.stats.clone().unwrap();
    assert_eq!((stats.images_deleted, stats.reclaimed_bytes), (2, 2 * GIB));
    assert_eq!(report.disk_after().map(|d| d.used_bytes), Some(48 * GIB));
    assert!(!report.failed());
    assert_eq!(GcSummary::from_report(&report).disk_usage_ratio, Some(0.48));
}

#[tokio::test]
async fn conflict_keeps_the_image_and_the_pass_goes_on() {
    let fake = engine();
    fake.fault(
        &full_id("a1"),
        DockerError::Conflict("image is being used by a container".into()),
    );
    let report = pass(&fake, Args::default(), &CancellationToken::new()).await;
    assert_eq!(outcome(&report, "a1"), Some(Outcome::Conflict));
    assert_eq!(outcome(&report, "d2"), Some(Outcome::Deleted));
    let stats = report.stats.clone().unwrap();
    assert_eq!((stats.conflicts, stats.failures), (1, 0));
    assert!(!report.failed(), "a 409 is expected, not a failure");
    let dto = report.to_dto();
    let a1 = dto.images.iter().find(|i| i.id == full_id("a1")).unwrap();
    assert_eq!(
        (a1.action, a1.reason.as_str()),
        ("kept", "conflict: in use")
    );
}

#[tokio::test]
async fn already_gone_is_fine_and_reads_as_deleted_already_gone() {
    let fake = engine();
    fake.fault(
        &full_id("a1"),
        DockerError::NotFound("no such image".into()),
    );
    let report = pass(&fake, Args::default(), &CancellationToken::new()).await;
    assert_eq!(outcome(&report, "a1"), Some(Outcome::AlreadyGone));
    let stats = report.stats.clone().unwrap();
    assert_eq!((stats.images_deleted, stats.failures), (1, 0));
    assert!(!report.failed());
    let dto = report.to_dto();
    let a1 = dto.images.iter().find(|i| i.id == full_id("a1")).unwrap();
    assert_eq!((a1.action, a1.reason.as_str()), ("deleted", "already gone"));
}

#[tokio::test]
async fn other_engine_errors_fail_the_item_and_mark_the_run() {
    let fake = engine();
    fake.fault(
        &full_id("a1"),
        DockerError::Api {
            status: 500,
            message: "driver failed".into(),
        },
    );
    let report = pass(&fake, Args::default(), &CancellationToken::new()).await;
    assert!(matches!(outcome(&report, "a1"), Some(Outcome::Failed(_))));
    assert!(report.failed());
}

#[tokio::test]
async fn cancelled_before_the_first_chunk_deletes_nothing() {
    let fake = engine();
    let cancel = CancellationToken::new();
    cancel.cancel();
    let report = pass(&fake, Args::default(), &cancel).await;
    assert!(fake.removals().is_empty());
    assert_eq!(outcome(&report, "a1"), Some(Outcome::Cancelled));
    assert_eq!(outcome(&report, "d2"), Some(Outcome::Cancelled));
    assert_eq!(report.stats.clone().unwrap().images_deleted, 0);
}

#[tokio::test]
async fn disk_mode_without_a_measurable_disk_is_an_error() {
    let fake = FakeDocker::new(vec![image("a1", &["app:1"], 48, GIB)], vec![]);
    let err = run(
        &settings(Args {
            options: GcOptions {
                high_water: Some("85%".parse().unwrap()),
                low_water: Some("75%".parse().unwrap()),
                ..GcOptions::default()
            },
            ..Args::default()
        }),
        &fake,
        &fake,
        now(),
        &CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(matches!(&err, GcError::Disk(e) if e.path == std::path::Path::new(FAKE_ROOT_DIR)));
    assert!(
        err.to_string()
            .contains("disk-pressure mode needs to run on the Docker host"),
        "{err}"
    );
    assert!(fake.removals().is_empty());
}

#[tokio::test]
async fn an_unreachable_engine_fails_the_snapshot() {
    let fake = engine();
    fake.set_up(false);
    let err = run(
        &settings(Args::default()),
        &fake,
        &fake,
        now(),
        &CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            &err,
            GcError::Snapshot {
                source: DockerError::Unreachable { .. },
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.exit_code(), crate::exit::EXIT_RUNTIME);
}

// Age from use (the engine's log, `LastTagTime`), not from build.

fn dry(min_age: &str) -> Args {
    Args {
        dry_run: true,
        options: GcOptions {
            min_age: Some(min_age.parse().unwrap()),
            ..Default::default()
        },
    }
}

#[tokio::test]
async fn an_old_image_pulled_minutes_ago_is_young_by_the_engines_log() {
    let fake = engine();
    // Pulled 0 h ago (this hour), built 48 h ago.
    fake.with(|s| {
        s.event_log
            .push(event(EventScope::Image, "pull", "app:1", None, 0))
    });
    let report = pass(&fake, dry("1h"), &CancellationToken::new()).await;
    assert_eq!(
        planned(&report, "a1"),
        (
            Action::Keep,
            ImageReason::Young {
                min_age: std::time::Duration::from_secs(3600)
            }
        )
    );
    assert_eq!(report.plan_api_calls, 4, "the log is one call");
}

#[tokio::test]
async fn tag_time_is_read_only_for_planned_deletions_when_the_log_is_too_short() {
    let fake = engine();
    // The log now reaches back a minute only (it turned over); a1 was tagged
    // half an hour ago (`docker tag`), which only `LastTagTime` still knows.
    fake.with(|s| {
        s.event_log.clear();
        s.clock = Some(now() - chrono::Duration::minutes(30));
    });
    fake.tag_image(&full_id("a1"), "app", "1").await.unwrap();
    fake.with(|s| {
        s.event_log.clear();
        s.event_log
            .push(event(EventScope::Image, "pull", "other:1", None, 0));
        s.calls = 0;
    });
    let report = pass(&fake, dry("1h"), &CancellationToken::new()).await;
    assert_eq!(planned(&report, "a1").0, Action::Keep);
    // 4 + one inspect: a1 only — not d2 (no tag), y3 (young), b4 (in use).
    assert_eq!(report.plan_api_calls, 5);
    // With the log reaching back far enough, no inspect at all.
    let fake = engine();
    let report = pass(&fake, dry("1h"), &CancellationToken::new()).await;
    assert_eq!(report.plan_api_calls, 4);
}

#[tokio::test]
async fn a_future_creation_time_is_unknown_not_young_forever() {
    let fake = FakeDocker::new(vec![image("f1", &["skewed:1"], -72, GIB)], vec![])
        .with_disk(50 * GIB, 100 * GIB);
    fake.with(|s| {
        s.event_log
            .push(event(EventScope::Image, "pull", "x:1", None, 100))
    });
    let report = pass(&fake, dry("1h"), &CancellationToken::new()).await;
    assert_eq!(
        planned(&report, "f1"),
        (Action::Delete, ImageReason::LeastRecentlyUsed)
    );
    // …but a pull the engine saw dates it.
    fake.with(|s| {
        s.event_log
            .push(event(EventScope::Image, "pull", "skewed:1", None, 0))
    });
    let report = pass(&fake, dry("1h"), &CancellationToken::new()).await;
    assert_eq!(planned(&report, "f1").0, Action::Keep);
}

/// The daemon's scheduled gc: its record holds the engine's log up to a time, so only
/// the log after it is replayed. An image the record does not know (an `import`, an
/// event still on its way) brings the whole log back: it may be dated anywhere in it.
#[tokio::test]
async fn with_the_daemons_record_only_the_log_after_it_is_replayed() {
    let until = now() - chrono::Duration::hours(2);
    let record = |ids: &[&str]| crate::last_use::Record {
        last_use: ids
            .iter()
            .map(|id| (full_id(id), crate::testing::docker::hours_ago(48)))
            .collect(),
        log_applied_until: Some(until),
    };
    let known = ["a1", "d2", "y3", "b4"];
    let fake = engine();
    let cancel = CancellationToken::new();
    let settings = settings(dry("4h"));
    run_with_last_use(
        &settings,
        &fake,
        &fake,
        now(),
        Some(record(&known)),
        &cancel,
    )
    .await
    .unwrap();
    fake.with(|s| assert_eq!(s.replays, vec![(until, now())]));

    // An image imported 3 h ago (the daemon does not track imports), built long before.
    fake.with(|s| {
        s.images.push(image("n5", &["imported:1"], 480, GIB));
        s.event_log
            .push(event(EventScope::Image, "import", &full_id("n5"), None, 3));
        s.replays.clear();
    });
    let report = run_with_last_use(
        &settings,
        &fake,
        &fake,
        now(),
        Some(record(&known)),
        &cancel,
    )
    .await
    .unwrap();
    fake.with(|s| {
        assert_eq!(
            s.replays,
            vec![(until, now()), (DateTime::UNIX_EPOCH, now())]
        )
    });
    assert_eq!(
        planned(&report, "n5").0,
        Action::Keep,
        "dated by its import"
    );
    // Without a promise from the record: the whole log, once.
    fake.with(|s| s.replays.clear());
    let mut plain = record(&known);
    plain.log_applied_until = None;
    run_with_last_use(&settings, &fake, &fake, now(), Some(plain), &cancel)
        .await
        .unwrap();
    fake.with(|s| assert_eq!(s.replays, vec![(DateTime::UNIX_EPOCH, now())]));
}
