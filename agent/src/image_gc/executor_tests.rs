//! Executor tests against the fake port: the 404/409 paths, tag-by-tag removal,
//! disk-pressure stopping, cancellation, children before parents, and that the
//! plan is never changed (outcomes come beside it).

use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::value::Watermark;
use crate::image_gc::planner::plan;
use crate::image_gc::policy::{DiskWatermarks, Policy};
use crate::image_gc::snapshot::Snapshot;
use crate::ports::docker::{ContainerState, DockerEvent, EventAction, EventScope};
use crate::testing::docker::{container, full_id, image, now, FakeDocker};

fn options(concurrency: usize) -> ExecOptions {
    ExecOptions {
        concurrency,
        root_dir: Some(PathBuf::from("/var/lib/docker")),
        build_cache: None,
        origin: None,
    }
}

async fn planned(fake: &FakeDocker, policy: &Policy) -> Plan {
    let s = fake.state.lock().unwrap();
    let snapshot = Snapshot {
        images: s.images.clone(),
        containers: s.containers.clone(),
        disk: s.disk,
        ..Default::default()
    };
    plan(&snapshot, policy, now())
}

/// Run `plan` against `fake` (as engine and disk), checking that the plan itself
/// is left as the planner made it.
async fn execute_with(
    fake: &FakeDocker,
    plan: &Plan,
    concurrency: usize,
    cancel: &CancellationToken,
) -> Execution {
    let before = plan.clone();
    let done = execute(fake, fake, plan, &options(concurrency), cancel).await;
    assert_eq!(*plan, before, "the executor changed the plan");
    assert_eq!(done.outcomes.images.len(), plan.images.len());
    done
}

async fn run(fake: &FakeDocker, plan: &Plan, concurrency: usize) -> Execution {
    execute_with(fake, plan, concurrency, &CancellationToken::new()).await
}

/// The outcome of the image `id` (`None`: the plan keeps it).
fn outcome_of(plan: &Plan, done: &Execution, id: &str) -> Option<Outcome> {
    let i = plan
        .images
        .iter()
        .position(|e| e.id == full_id(id))
        .unwrap();
    done.outcomes.images[i].clone()
}

#[tokio::test]
async fn deletes_candidates_and_counts_bytes() {
    let fake = FakeDocker::new(
        vec![image("a1", &["app:1"], 48, 10), image("a2", &[], 48, 5)],
        vec![],
    );
    let p = planned(&fake, &Policy::defaults()).await;
    let done = run(&fake, &p, 4).await;
    let stats = &done.stats;
    assert_eq!(stats.images_deleted, 2);
    assert_eq!(stats.reclaimed_bytes, 15);
    assert!(fake.image_ids().is_empty());
}

#[tokio::test]
async fn not_found_is_success() {
    let fake = FakeDocker::new(vec![image("a1", &["app:1"], 48, 10)], vec![]);
    let p = planned(&fake, &Policy::defaults()).await;
    fake.state.lock().unwrap().images.clear(); // someone else removed it meanwhile
    let done = run(&fake, &p, 4).await;
    let stats = &done.stats;
    assert_eq!(stats.failures, 0);
    assert_eq!(stats.conflicts, 0);
    assert_eq!(stats.images_deleted, 0);
    assert_eq!(done.outcomes.images[0], Some(Outcome::AlreadyGone));
}

#[tokio::test]
async fn conflict_keeps_the_image_and_the_run_goes_on() {
    let fake = FakeDocker::new(
        vec![
            image("a1", &["app:1"], 48, 10),
            image("a2", &["app:2"], 40, 10),
        ],
        vec![],
    );
    let p = planned(&fake, &Policy::defaults()).await;
    // A container appears from a1 between plan and delete.
    fake.state.lock().unwrap().containers.push(container(
        "c1",
        "app:1",
        "a1",
        ContainerState::Created,
    ));
    let done = run(&fake, &p, 1).await;
    let stats = &done.stats;
    assert_eq!(outcome_of(&p, &done, "a1"), Some(Outcome::Conflict));
    assert_eq!(outcome_of(&p, &done, "a2"), Some(Outcome::Deleted));
    assert_eq!(
        (stats.conflicts, stats.failures, stats.images_deleted),
        (1, 0, 1)
    );
    assert_eq!(fake.image_ids(), vec![full_id("a1")]);
}

#[tokio::test]
async fn other_errors_are_failures_reported_per_image() {
    let fake = FakeDocker::new(vec![image("a1", &["app:1"], 48, 10)], vec![]);
    fake.fault(
        &full_id("a1"),
        DockerError::Api {
            status: 500,
            message: "driver failed".into(),
        },
    );
    let p = planned(&fake, &Policy::defaults()).await;
    let done = run(&fake, &p, 4).await;
    let stats = &done.stats;
    assert_eq!(stats.failures, 1);
    assert_eq!(
        done.outcomes.images[0],
        Some(Outcome::Failed(Failure::Engine(DockerError::Api {
            status: 500,
            message: "driver failed".into(),
        })))
    );
}

fn with_digests(
    mut info: crate::ports::docker::ImageInfo,
    digests: &[&str],
) -> crate::ports::docker::ImageInfo {
    info.repo_digests = digests.iter().map(|d| d.to_string()).collect();
    info
}

fn tags_of(fake: &FakeDocker, id: &str) -> Vec<String> {
    let s = fake.state.lock().unwrap();
    let mut tags = s
        .images
        .iter()
        .find(|i| i.id == full_id(id))
        .map(|i| i.repo_tags.clone())
        .unwrap_or_default();
    tags.sort();
    tags
}

#[tokio::test]
async fn single_reference_is_deleted_by_id_in_one_call() {
    let fake = FakeDocker::new(
        vec![with_digests(
            image("a1", &["app:1"], 48, 10),
            &["app@sha256:d1"],
        )],
        vec![],
    );
    let p = planned(&fake, &Policy::defaults()).await;
    let done = run(&fake, &p, 4).await;
    assert_eq!(fake.removals(), vec![full_id("a1")]);
    assert!(fake.image_ids().is_empty());
    assert_eq!(done.stats.images_deleted, 1);
}

#[tokio::test]
async fn two_tags_in_one_repo_untag_the_fixed_one_and_leave_latest_to_the_id_delete() {
    let fake = FakeDocker::new(
        vec![image("a1", &["app:latest", "app:0a1b2c3d"], 48, 10)],
        vec![],
    );
    let p = planned(&fake, &Policy::defaults()).await;
    let done = run(&fake, &p, 4).await;
    assert_eq!(
        fake.removals(),
        vec!["app:0a1b2c3d".to_owned(), full_id("a1")]
    );
    assert!(fake.image_ids().is_empty());
    assert_eq!(done.outcomes.images[0], Some(Outcome::Deleted));
}

#[tokio::test]
async fn by_id_alone_is_refused_for_two_tags_as_the_engine_does() {
    // What the first landing did, and the engine refuses (contract case too).
    let fake = FakeDocker::new(vec![image("a1", &["app:1", "app:latest"], 48, 10)], vec![]);
    let err = fake.remove_image(&full_id("a1")).await.unwrap_err();
    assert!(matches!(err, DockerError::Conflict(_)), "{err}");
    assert_eq!(
        tags_of(&fake, "a1"),
        vec!["app:1".to_owned(), "app:latest".to_owned()]
    );
}

#[tokio::test]
async fn tags_across_repos_are_reduced_to_one_then_deleted_by_id() {
    let fake = FakeDocker::new(
        vec![image("a1", &["app:1", "mirror/app:1"], 48, 10)],
        vec![],
    );
    let p = planned(&fake, &Policy::defaults()).await;
    let done = run(&fake, &p, 4).await;
    assert_eq!(
        fake.removals(),
        vec!["mirror/app:1".to_owned(), full_id("a1")]
    );
    assert_eq!(done.stats.images_deleted, 1);
    assert_eq!(done.stats.reclaimed_bytes, 10);
}

#[tokio::test]
async fn a_tag_plus_a_digest_of_another_repo_goes_digest_first() {
    let fake = FakeDocker::new(
        vec![with_digests(
            image("a1", &["web:prod"], 48, 10),
            &["reg/web@sha256:d1"],
        )],
        vec![],
    );
    let p = planned(&fake, &Policy::defaults()).await;
    run(&fake, &p, 4).await;
    assert_eq!(
        fake.removals(),
        vec!["reg/web@sha256:d1".to_owned(), full_id("a1")]
    );
    assert!(fake.image_ids().is_empty());
}

#[tokio::test]
async fn digest_only_in_two_repos_keeps_one_for_the_id_delete() {
    let fake = FakeDocker::new(
        vec![with_digests(
            image("a1", &[], 48, 10),
            &["a/x@sha256:d1", "b/x@sha256:d1"],
        )],
        vec![],
    );
    let p = planned(&fake, &Policy::defaults()).await;
    run(&fake, &p, 4).await;
    assert_eq!(
        fake.removals(),
        vec!["b/x@sha256:d1".to_owned(), full_id("a1")]
    );
    assert!(fake.image_ids().is_empty());
}

#[tokio::test]
async fn an_image_that_gains_a_container_mid_run_keeps_every_tag() {
    let fake = FakeDocker::new(
        vec![image(
            "a1",
            &["app:latest", "app:1", "mirror/app:1"],
            48,
            10,
        )],
        vec![],
    );
    let p = planned(&fake, &Policy::defaults()).await;
    // After the plan, a container starts from the image.
    fake.with(|s| {
        s.containers
            .push(container("c1", "app:1", "a1", ContainerState::Running))
    });
    let done = run(&fake, &p, 4).await;
    assert_eq!(done.outcomes.images[0], Some(Outcome::Conflict));
    assert_eq!(done.stats.conflicts, 1);
    assert_eq!(
        tags_of(&fake, "a1"),
        vec![
            "app:1".to_owned(),
            "app:latest".to_owned(),
            "mirror/app:1".to_owned()
        ]
    );
}

#[tokio::test]
async fn a_tag_added_mid_run_makes_a_conflict_and_the_removed_tags_come_back() {
    let fake = FakeDocker::new(vec![image("a1", &["app:latest", "app:1"], 48, 10)], vec![]);
    let p = planned(&fake, &Policy::defaults()).await;
    fake.with(|s| s.images[0].repo_tags.push("other:new".into()));
    let done = run(&fake, &p, 4).await;
    assert_eq!(done.outcomes.images[0], Some(Outcome::Conflict));
    assert_eq!(
        tags_of(&fake, "a1"),
        vec![
            "app:1".to_owned(),
            "app:latest".to_owned(),
            "other:new".to_owned()
        ]
    );
}

#[tokio::test]
async fn a_tag_moved_to_a_new_build_after_the_plan_stays_on_it() {
    let fake = FakeDocker::new(
        vec![image("a1", &["app:1", "mirror/app:1"], 48, 10)],
        vec![],
    );
    let p = planned(&fake, &Policy::defaults()).await;
    // Between plan and delete, a new build is tagged mirror/app:1.
    fake.with(|s| {
        s.images[0].repo_tags.retain(|t| t != "mirror/app:1");
        s.images.push(image("b2", &["mirror/app:1"], 0, 10));
    });
    let done = run(&fake, &p, 4).await;
    assert_eq!(fake.removals(), vec![full_id("a1")]);
    assert_eq!(done.stats.images_deleted, 1);
    assert_eq!(fake.image_ids(), vec![full_id("b2")]);
    assert_eq!(tags_of(&fake, "b2"), vec!["mirror/app:1".to_owned()]);
}

#[tokio::test]
async fn latest_moved_after_the_plan_is_never_removed_by_name() {
    // CI moves `latest`; it is the reference left to the atomic delete by ID.
    let fake = FakeDocker::new(
        vec![image("a1", &["app:latest", "app:0a1b2c3d"], 48, 10)],
        vec![],
    );
    let p = planned(&fake, &Policy::defaults()).await;
    fake.with(|s| {
        s.images[0].repo_tags.retain(|t| t != "app:latest");
        s.images.push(image("b2", &["app:latest"], 0, 10));
    });
    run(&fake, &p, 4).await;
    assert!(!fake.removals().contains(&"app:latest".to_owned()));
    assert_eq!(tags_of(&fake, "b2"), vec!["app:latest".to_owned()]);
    assert_eq!(fake.image_ids(), vec![full_id("b2")]);
}

#[tokio::test]
async fn children_go_before_parents_even_with_concurrency() {
    let mut child = image("c1", &["app:2"], 48, 10);
    child.parent_id = Some(full_id("b0"));
    let fake = FakeDocker::new(vec![image("b0", &["base:1"], 72, 10), child], vec![]);
    let p = planned(&fake, &Policy::defaults()).await;
    let done = run(&fake, &p, 8).await;
    let stats = &done.stats;
    assert_eq!((stats.images_deleted, stats.conflicts), (2, 0));
}

#[tokio::test]
async fn disk_mode_stops_when_remeasured_usage_reaches_low_water() {
    const GIB: u64 = 1 << 30;
    let fake = FakeDocker::new(
        (1..=8)
            .map(|n| image(&format!("a{n}"), &[&format!("app:{n}")], 100 - n, 5 * GIB))
            .collect(),
        vec![],
    )
    .with_disk(90 * GIB, 100 * GIB);
    let policy = Policy {
        disk: Some(DiskWatermarks {
            high: Watermark::Percent(85.0),
            low: Watermark::Percent(75.0),
        }),
        ..Policy::defaults()
    };
    let p = planned(&fake, &policy).await;
    let done = run(&fake, &p, 2).await;
    let stats = &done.stats;
    // Re-measured after every deletion: 90 → 85 → 80 → 75 GiB, at or below 75%:
    // stop after 3, whatever the concurrency (chunks of 2 overshot to 70 GiB).
    assert_eq!(stats.images_deleted, 3);
    assert_eq!(fake.image_ids().len(), 5);
    let low = Watermark::Percent(75.0);
    assert_eq!(
        outcome_of(&p, &done, "a4"),
        Some(Outcome::LowWaterReached { low })
    );
    assert_eq!(stats.disk_after.unwrap().used_bytes, 75 * GIB);
}

#[tokio::test]
async fn cancellation_stops_before_the_next_chunk() {
    let fake = FakeDocker::new(vec![image("a1", &["app:1"], 48, 10)], vec![]);
    let p = planned(&fake, &Policy::defaults()).await;
    let cancel = CancellationToken::new();
    cancel.cancel();
    let done = execute_with(&fake, &p, 4, &cancel).await;
    assert_eq!(done.stats.images_deleted, 0);
    assert_eq!(done.outcomes.images[0], Some(Outcome::Cancelled));
    assert!(fake.removals().is_empty());
}

#[tokio::test]
async fn container_conflict_is_skipped_then_its_image_conflicts_too() {
    let mut c = container("c1", "app:1", "a1", ContainerState::Exited);
    c.finished_at = Some(now() - chrono::Duration::hours(5));
    let fake = FakeDocker::new(vec![image("a1", &["app:1"], 48, 10)], vec![c]);
    let policy = Policy {
        containers: true,
        ..Policy::defaults()
    };
    let p = planned(&fake, &policy).await;
    // It was restarted meanwhile.
    fake.state.lock().unwrap().containers[0].state = ContainerState::Running;
    let done = run(&fake, &p, 4).await;
    let stats = &done.stats;
    assert_eq!(done.outcomes.containers[0], Some(Outcome::Conflict));
    assert_eq!(outcome_of(&p, &done, "a1"), Some(Outcome::Conflict));
    assert_eq!((stats.conflicts, stats.failures), (2, 0));
}

#[tokio::test]
async fn cancellation_before_start_keeps_containers_and_volumes_too() {
    let mut c = container("c1", "app:1", "a1", ContainerState::Exited);
    c.finished_at = Some(now() - chrono::Duration::hours(5));
    let fake = FakeDocker::new(vec![], vec![c]);
    fake.with(|s| {
        s.volumes.push(crate::ports::docker::VolumeInfo {
            name: "v1".into(),
            labels: Default::default(),
        })
    });
    let policy = Policy {
        containers: true,
        volumes: true,
        ..Policy::defaults()
    };
    let p = {
        let s = fake.state.lock().unwrap();
        let snapshot = Snapshot {
            containers: s.containers.clone(),
            volumes: s.volumes.clone(),
            ..Default::default()
        };
        plan(&snapshot, &policy, now())
    };
    let cancel = CancellationToken::new();
    cancel.cancel();
    let done = execute_with(&fake, &p, 4, &cancel).await;
    assert_eq!(done.outcomes.containers, vec![Some(Outcome::Cancelled)]);
    assert_eq!(done.outcomes.volumes, vec![Some(Outcome::Cancelled)]);
    assert_eq!(
        (done.stats.containers_deleted, done.stats.volumes_deleted),
        (0, 0)
    );
}

#[tokio::test]
async fn container_already_gone_counts_as_removed() {
    let mut c = container("c1", "app:1", "a1", ContainerState::Exited);
    c.finished_at = Some(now() - chrono::Duration::hours(5));
    let fake = FakeDocker::new(vec![], vec![c]);
    let policy = Policy {
        containers: true,
        ..Policy::defaults()
    };
    let p = planned(&fake, &policy).await;
    fake.with(|s| s.containers.clear());
    let done = run(&fake, &p, 4).await;
    assert_eq!(done.outcomes.containers, vec![Some(Outcome::AlreadyGone)]);
    assert_eq!(done.stats.containers_deleted, 1);
}

#[tokio::test]
async fn disk_remeasure_failure_stops_the_pass_as_a_failure() {
    const GIB: u64 = 1 << 30;
    let fake = FakeDocker::new(
        (1..=4)
            .map(|n| image(&format!("a{n}"), &[&format!("app:{n}")], 100 - n, GIB))
            .collect(),
        vec![],
    )
    .with_disk(90 * GIB, 100 * GIB);
    let policy = Policy {
        disk: Some(DiskWatermarks {
            high: Watermark::Percent(85.0),
            low: Watermark::Percent(75.0),
        }),
        ..Policy::defaults()
    };
    let p = planned(&fake, &policy).await;
    // The filesystem goes away after the plan.
    fake.with(|s| s.disk = None);
    let done = run(&fake, &p, 1).await;
    assert_eq!(outcome_of(&p, &done, "a1"), Some(Outcome::Deleted));
    assert!(matches!(
        outcome_of(&p, &done, "a2"),
        Some(Outcome::Failed(Failure::DiskUnmeasured { .. }))
    ));
    assert_eq!((done.stats.images_deleted, done.stats.failures), (1, 1));
}

#[test]
fn dry_run_in_disk_mode_reports_the_estimate_and_stops_at_low_water() {
    const GIB: u64 = 1 << 30;
    // 90 GiB of 100 used, low water 75%: the three oldest 5 GiB images suffice.
    let snapshot = Snapshot {
        images: (1..=6)
            .map(|n| image(&format!("a{n}"), &[&format!("app:{n}")], 100 - n, 5 * GIB))
            .collect(),
        disk: Some(FsUsage {
            total_bytes: 100 * GIB,
            used_bytes: 90 * GIB,
            total_inodes: 1000,
            used_inodes: 10,
        }),
        ..Default::default()
    };
    let policy = Policy {
        disk: Some(DiskWatermarks {
            high: Watermark::Percent(85.0),
            low: Watermark::Percent(75.0),
        }),
        ..Policy::defaults()
    };
    let p = plan(&snapshot, &policy, now());
    let before = p.clone();
    let outcomes = dry_run(&p, None);
    assert_eq!(p, before);
    let low = Watermark::Percent(75.0);
    let got: Vec<Option<Outcome>> = ["a1", "a2", "a3", "a4", "a5", "a6"]
        .iter()
        .map(|id| {
            let i = p.images.iter().position(|e| e.id == full_id(id)).unwrap();
            outcomes.images[i].clone()
        })
        .collect();
    let stop = Some(Outcome::LowWaterReached { low });
    assert_eq!(
        got,
        vec![
            Some(Outcome::Deleted),
            Some(Outcome::Deleted),
            Some(Outcome::Deleted),
            stop.clone(),
            stop.clone(),
            stop,
        ]
    );
}

/// Six 5 GiB images (a1 oldest) at 90 of 100 GiB and 10 of 1000 inodes; watermarks
/// 85% / 75%.
fn six_under_pressure(used_inodes: u64) -> Plan {
    const GIB: u64 = 1 << 30;
    let snapshot = Snapshot {
        images: (1..=6)
            .map(|n| image(&format!("a{n}"), &[&format!("app:{n}")], 100 - n, 5 * GIB))
            .collect(),
        disk: Some(FsUsage {
            total_bytes: 100 * GIB,
            used_bytes: 90 * GIB,
            total_inodes: 1000,
            used_inodes,
        }),
        ..Default::default()
    };
    let policy = Policy {
        disk: Some(DiskWatermarks {
            high: Watermark::Percent(85.0),
            low: Watermark::Percent(75.0),
        }),
        ..Policy::defaults()
    };
    plan(&snapshot, &policy, now())
}

fn gone(outcomes: &Outcomes) -> usize {
    outcomes
        .images
        .iter()
        .flatten()
        .filter(|o| o.is_gone())
        .count()
}

#[test]
fn dry_run_evicts_by_unique_sizes_when_known() {
    const GIB: u64 = 1 << 30;
    let p = six_under_pressure(10);
    // By listed size three go (15 GiB); each holds only 2 GiB alone (the rest is a
    // base they share with a kept image): 15 GiB takes eight, so all six go.
    assert_eq!(gone(&dry_run(&p, None)), 3);
    let estimates = Estimates {
        unique_sizes: p.images.iter().map(|e| (e.id.clone(), 2 * GIB)).collect(),
        ..Estimates::default()
    };
    assert_eq!(gone(&dry_run(&p, Some(&estimates))), 6);
    // 4 GiB alone: four go (16 GiB).
    let estimates = Estimates {
        unique_sizes: p.images.iter().map(|e| (e.id.clone(), 4 * GIB)).collect(),
        ..Estimates::default()
    };
    assert_eq!(gone(&dry_run(&p, Some(&estimates))), 4);
}

#[test]
fn dry_run_under_inode_pressure_counts_the_estimated_inodes() {
    const GIB: u64 = 1 << 30;
    // Bytes are low (10 GiB of 100) but 900 of 1000 inodes are used: 100 per image.
    let mut p = six_under_pressure(900);
    if let DiskPlan::Pressure { usage, .. } = &mut p.disk {
        usage.used_bytes = 10 * GIB;
    }
    assert_eq!(
        gone(&dry_run(&p, None)),
        6,
        "inodes unknown: every candidate"
    );
    let per_image = |inodes: u64| Estimates {
        inodes: p.images.iter().map(|e| (e.id.clone(), inodes)).collect(),
        ..Estimates::default()
    };
    // 900 → 750 (75%) takes two images of 100 inodes: 700.
    assert_eq!(gone(&dry_run(&p, Some(&per_image(100)))), 2);
    assert_eq!(gone(&dry_run(&p, Some(&per_image(40)))), 4);
    // An estimate missing for the first deletion: no inode counted from there on.
    let mut partial = per_image(100);
    partial.inodes.remove(&p.images[0].id);
    assert_eq!(gone(&dry_run(&p, Some(&partial))), 6);
}

#[test]
fn dry_run_in_default_mode_deletes_every_planned_item() {
    let snapshot = Snapshot {
        images: vec![
            image("a1", &["app:1"], 48, 10),
            image("a2", &["app:2"], 0, 10),
        ],
        ..Default::default()
    };
    let p = plan(&snapshot, &Policy::defaults(), now());
    let outcomes = dry_run(&p, None);
    let by_id = |id: &str| {
        let i = p.images.iter().position(|e| e.id == full_id(id)).unwrap();
        outcomes.images[i].clone()
    };
    assert_eq!(by_id("a1"), Some(Outcome::Deleted));
    assert_eq!(by_id("a2"), None, "kept by the plan: no outcome");
}

/// 5 GiB images, a1..a3 unused for days, r1..r4 used hours ago.
fn stale_and_recent() -> Vec<crate::ports::docker::ImageInfo> {
    ["a1", "a2", "a3"]
        .iter()
        .enumerate()
        .map(|(n, id)| image(id, &[&format!("app:{id}")], 100 - n as i64, 5 << 30))
        .chain((1..=4).map(|n| image(&format!("r{n}"), &[&format!("web:{n}")], 6 - n, 5 << 30)))
        .collect()
}

fn both_knobs(high: f64, low: f64) -> Policy {
    Policy {
        max_age: Some(std::time::Duration::from_secs(24 * 3600)),
        disk: Some(DiskWatermarks {
            high: Watermark::Percent(high),
            low: Watermark::Percent(low),
        }),
        ..Policy::defaults()
    }
}

#[tokio::test]
async fn stale_images_go_then_eviction_stops_at_low_water_as_the_dry_run_said() {
    const GIB: u64 = 1 << 30;
    // 95 GiB used: the stale phase takes it to 80 (above 75%: evict), r1 → 75.
    let fake = FakeDocker::new(stale_and_recent(), vec![]).with_disk(95 * GIB, 100 * GIB);
    let p = planned(&fake, &both_knobs(78.0, 75.0)).await;
    let dry = dry_run(&p, None);
    let done = run(&fake, &p, 4).await;
    assert_eq!(done.outcomes.images, dry.images);
    assert_eq!(done.stats.images_deleted, 4);
    let low = Watermark::Percent(75.0);
    assert_eq!(
        outcome_of(&p, &done, "r2"),
        Some(Outcome::LowWaterReached { low })
    );
    assert_eq!(fake.image_ids().len(), 3);
}

#[tokio::test]
async fn no_eviction_when_the_stale_phase_took_usage_below_high_water() {
    const GIB: u64 = 1 << 30;
    // 90 GiB: the stale phase leaves 75, not above high water 85%.
    let fake = FakeDocker::new(stale_and_recent(), vec![]).with_disk(90 * GIB, 100 * GIB);
    let p = planned(&fake, &both_knobs(85.0, 70.0)).await;
    let dry = dry_run(&p, None);
    let done = run(&fake, &p, 4).await;
    assert_eq!(done.outcomes.images, dry.images);
    assert_eq!(done.stats.images_deleted, 3);
    let high = Watermark::Percent(85.0);
    assert_eq!(
        outcome_of(&p, &done, "r1"),
        Some(Outcome::NotAboveHighWater { high })
    );
}

#[tokio::test]
async fn ensure_free_evicts_until_enough_is_free() {
    const GIB: u64 = 1 << 30;
    let fake = FakeDocker::new(stale_and_recent(), vec![]).with_disk(90 * GIB, 100 * GIB);
    let free = crate::config::value::FreeSpace {
        bytes: 22 * GIB,
        inodes: None,
    };
    let policy = Policy {
        ensure_free: Some(free),
        ..Policy::defaults()
    };
    let p = planned(&fake, &policy).await;
    let dry = dry_run(&p, None);
    let done = run(&fake, &p, 4).await;
    assert_eq!(done.outcomes.images, dry.images);
    // 10 free; three deletions make 25.
    assert_eq!(done.stats.images_deleted, 3);
    assert_eq!(
        outcome_of(&p, &done, "r1"),
        Some(Outcome::EnoughFree { free, low: None })
    );
}

/// Disk-pressure mode evicts one image at a time; the tags those evictions removed by
/// name are checked against the engine's tag log in one read, not one per eviction,
/// and none at all when no tag went by name.
#[tokio::test]
async fn evictions_share_one_tag_log_read() {
    const GIB: u64 = 1 << 30;
    let pressure = Policy {
        disk: Some(DiskWatermarks {
            high: Watermark::Percent(85.0),
            low: Watermark::Percent(75.0),
        }),
        ..Policy::defaults()
    };
    let two_tags = |n: i64| {
        let tags = [format!("app{n}:latest"), format!("app{n}:0a1b2c3{n}")];
        image(&format!("a{n}"), &[&tags[0], &tags[1]], 100 - n, 5 * GIB)
    };
    let fake =
        FakeDocker::new((1..=5).map(two_tags).collect(), vec![]).with_disk(90 * GIB, 100 * GIB);
    let p = planned(&fake, &pressure).await;
    let opts = ExecOptions {
        origin: Some(WallOrigin::new(now())),
        ..options(2)
    };
    let done = execute(&fake, &fake, &p, &opts, &CancellationToken::new()).await;
    // 90 → 85 → 80 → 75 GiB: three evictions, each re-measured.
    assert_eq!(done.stats.images_deleted, 3);
    assert_eq!(done.outcomes.images, dry_run(&p, None).images);
    fake.with(|s| assert_eq!(s.replays.len(), 1, "{:?}", s.replays));

    let one_tag = (1..=5)
        .map(|n| image(&format!("b{n}"), &[&format!("web{n}:1")], 100 - n, 5 * GIB))
        .collect();
    let fake = FakeDocker::new(one_tag, vec![]).with_disk(90 * GIB, 100 * GIB);
    let p = planned(&fake, &pressure).await;
    let done = execute(&fake, &fake, &p, &opts, &CancellationToken::new()).await;
    assert_eq!(done.stats.images_deleted, 3);
    fake.with(|s| assert!(s.replays.is_empty(), "{:?}", s.replays));
}

/// The check-then-untag window, replayed on the fake: `web:stable` was checked on
/// a1, moved to b1, and the untag then took it off b1.
#[tokio::test]
async fn a_tag_the_untag_took_off_its_new_build_is_put_back_there() {
    let fake = FakeDocker::new(
        vec![
            image("b1", &["web:1b2c3d4e"], 1, 10),
            image("c1", &["other:stable", "other:keep"], 1, 10),
        ],
        vec![],
    );
    fake.with(|s| {
        s.event_log = [
            ("a1", "web:stable"),
            ("b1", "web:stable"),
            // Moved after the untag: it names c1 now and stays.
            ("c1", "other:stable"),
            // Last moved back to the image it was checked on: nothing to repair.
            ("b1", "web:v1"),
            ("a1", "web:v1"),
        ]
        .into_iter()
        .map(|(id, reference)| DockerEvent {
            scope: EventScope::Image,
            action: EventAction::Tag,
            actor_id: full_id(id),
            image: None,
            name: Some(reference.into()),
            time: Some(now()),
        })
        .collect();
    });
    let (a1, c0) = (full_id("a1"), full_id("c0"));
    let untagged = [
        ("web:stable", a1.as_str()),
        ("other:stable", c0.as_str()),
        ("web:v1", a1.as_str()),
        ("never:moved", a1.as_str()),
    ];
    let mut stats = ExecStats::default();
    verify_untags(&fake, &untagged, now(), now(), &mut stats).await;
    assert_eq!(stats.tags_restored, 1);
    assert_eq!(stats.failures, 0);
    let tags = |id: &str| {
        let s = fake.state.lock().unwrap();
        let mut t = s
            .images
            .iter()
            .find(|i| i.id == full_id(id))
            .map(|i| i.repo_tags.clone())
            .unwrap_or_default();
        t.sort();
        t
    };
    assert_eq!(tags("b1"), ["web:1b2c3d4e", "web:stable"]);
    assert_eq!(tags("c1"), ["other:keep", "other:stable"]);
}

#[test]
fn a_chunk_logs_no_more_engine_events_than_the_buffer_replays() {
    let snapshot = Snapshot {
        images: (0..100)
            .map(|n| {
                let tags = [format!("app{n}:1"), format!("app{n}:latest")];
                image(&format!("{n:x}"), &[&tags[0], &tags[1]], 48, 10)
            })
            .collect(),
        ..Default::default()
    };
    let images = plan(&snapshot, &Policy::defaults(), now()).images;
    let todo: Vec<usize> = (0..images.len())
        .filter(|&i| images[i].action == Action::Delete)
        .collect();
    assert!(todo.len() > 64, "{}", todo.len());
    let chunks = chunk(&images, &todo, 64);
    assert!(chunks.len() > 1);
    for c in &chunks {
        assert!(c.len() * 3 <= CHUNK_EVENT_BUDGET, "{}", c.len());
    }
    assert_eq!(chunks.concat(), todo);
}
