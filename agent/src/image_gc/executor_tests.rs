//! Executor tests against the fake port: the 404/409 paths, tag-by-tag removal,
//! disk-pressure stopping, cancellation and children before parents.

use tokio_util::sync::CancellationToken;

use super::*;
use crate::image_gc::planner::plan;
use crate::image_gc::policy::{DiskWatermarks, Policy};
use crate::image_gc::snapshot::Snapshot;
use crate::ports::docker::ContainerState;
use crate::testing::docker::{container, full_id, image, now, FakeDocker};
use crate::config::value::Watermark;

fn options(concurrency: usize) -> ExecOptions {
    ExecOptions {
        concurrency,
        root_dir: Some(PathBuf::from("/var/lib/docker")),
        build_cache: None,
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

fn reason_of(plan: &Plan, id: &str) -> (Action, String) {
    let e = plan.images.iter().find(|e| e.id == full_id(id)).unwrap();
    (e.action, e.reason.to_string())
}

#[tokio::test]
async fn deletes_candidates_and_counts_bytes() {
    let fake = FakeDocker::new(
        vec![image("a1", &["app:1"], 48, 10), image("a2", &[], 48, 5)],
        vec![],
    );
    let mut p = planned(&fake, &Policy::defaults()).await;
    let stats = execute(&fake, &mut p, &options(4), &CancellationToken::new()).await;
    assert_eq!(stats.images_deleted, 2);
    assert_eq!(stats.reclaimed_bytes, 15);
    assert!(fake.image_ids().is_empty());
}

#[tokio::test]
async fn not_found_is_success() {
    let fake = FakeDocker::new(vec![image("a1", &["app:1"], 48, 10)], vec![]);
    let mut p = planned(&fake, &Policy::defaults()).await;
    fake.state.lock().unwrap().images.clear(); // someone else removed it meanwhile
    let stats = execute(&fake, &mut p, &options(4), &CancellationToken::new()).await;
    assert_eq!(stats.failures, 0);
    assert_eq!(stats.conflicts, 0);
    assert_eq!(p.images[0].action, Action::Delete);
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
    let mut p = planned(&fake, &Policy::defaults()).await;
    // A container appears from a1 between plan and delete.
    fake.state.lock().unwrap().containers.push(container(
        "c1",
        "app:1",
        "a1",
        ContainerState::Created,
    ));
    let stats = execute(&fake, &mut p, &options(1), &CancellationToken::new()).await;
    assert_eq!(
        reason_of(&p, "a1"),
        (Action::Keep, "conflict: in use".into())
    );
    assert_eq!(reason_of(&p, "a2").0, Action::Delete);
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
    let mut p = planned(&fake, &Policy::defaults()).await;
    let stats = execute(&fake, &mut p, &options(4), &CancellationToken::new()).await;
    assert_eq!(stats.failures, 1);
    assert!(p.images[0].reason.to_string().contains("driver failed"));
}

#[tokio::test]
async fn single_repo_image_is_deleted_by_id_in_one_call() {
    let fake = FakeDocker::new(vec![image("a1", &["app:1", "app:latest"], 48, 10)], vec![]);
    let mut p = planned(&fake, &Policy::defaults()).await;
    execute(&fake, &mut p, &options(4), &CancellationToken::new()).await;
    assert_eq!(fake.removals(), vec![full_id("a1")]);
    assert!(fake.image_ids().is_empty());
}

#[tokio::test]
async fn multi_repo_image_is_removed_tag_by_tag_then_by_id() {
    let fake = FakeDocker::new(
        vec![image("a1", &["app:1", "mirror/app:1"], 48, 10)],
        vec![],
    );
    let mut p = planned(&fake, &Policy::defaults()).await;
    let stats = execute(&fake, &mut p, &options(4), &CancellationToken::new()).await;
    assert_eq!(
        fake.removals(),
        vec!["app:1".to_owned(), "mirror/app:1".to_owned(), full_id("a1")]
    );
    assert_eq!(stats.images_deleted, 1);
    assert_eq!(stats.reclaimed_bytes, 10);
}

#[tokio::test]
async fn multi_repo_conflict_on_a_tag_stops_that_image_only() {
    let fake = FakeDocker::new(
        vec![image("a1", &["app:1", "mirror/app:1"], 48, 10)],
        vec![],
    );
    fake.fault("mirror/app:1", DockerError::Conflict("in use".into()));
    let mut p = planned(&fake, &Policy::defaults()).await;
    let stats = execute(&fake, &mut p, &options(4), &CancellationToken::new()).await;
    assert_eq!(stats.conflicts, 1);
    assert_eq!(
        fake.removals(),
        vec!["app:1".to_owned(), "mirror/app:1".to_owned()]
    );
    assert_eq!(fake.image_ids(), vec![full_id("a1")]);
}

#[tokio::test]
async fn multi_repo_tag_moved_to_a_new_image_after_the_plan_is_left_alone() {
    let fake = FakeDocker::new(
        vec![image("a1", &["app:1", "mirror/app:1"], 48, 10)],
        vec![],
    );
    let mut p = planned(&fake, &Policy::defaults()).await;
    {
        // Between plan and delete, a new build is tagged mirror/app:1.
        let mut s = fake.state.lock().unwrap();
        s.images[0].repo_tags.retain(|t| t != "mirror/app:1");
        s.images.push(image("b2", &["mirror/app:1"], 0, 10));
    }
    let stats = execute(&fake, &mut p, &options(4), &CancellationToken::new()).await;
    assert_eq!(fake.removals(), vec!["app:1".to_owned(), full_id("a1")]);
    assert_eq!(stats.images_deleted, 1);
    assert_eq!(fake.image_ids(), vec![full_id("b2")]);
    assert_eq!(
        fake.state.lock().unwrap().images[0].repo_tags,
        vec!["mirror/app:1".to_owned()]
    );
}

#[tokio::test]
async fn children_go_before_parents_even_with_concurrency() {
    let mut child = image("c1", &["app:2"], 48, 10);
    child.parent_id = Some(full_id("b0"));
    let fake = FakeDocker::new(vec![image("b0", &["base:1"], 72, 10), child], vec![]);
    let mut p = planned(&fake, &Policy::defaults()).await;
    let stats = execute(&fake, &mut p, &options(8), &CancellationToken::new()).await;
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
    let mut p = planned(&fake, &policy).await;
    let stats = execute(&fake, &mut p, &options(2), &CancellationToken::new()).await;
    // Chunks of 2: 90 → 80 → 70 GiB, at or below 75%: stop after 4.
    assert_eq!(stats.images_deleted, 4);
    assert_eq!(fake.image_ids().len(), 4);
    assert_eq!(
        reason_of(&p, "a5"),
        (Action::Keep, "disk usage at or below low water 75%".into())
    );
    assert_eq!(stats.disk_after.unwrap().used_bytes, 70 * GIB);
}

#[tokio::test]
async fn cancellation_stops_before_the_next_chunk() {
    let fake = FakeDocker::new(vec![image("a1", &["app:1"], 48, 10)], vec![]);
    let mut p = planned(&fake, &Policy::defaults()).await;
    let cancel = CancellationToken::new();
    cancel.cancel();
    let stats = execute(&fake, &mut p, &options(4), &cancel).await;
    assert_eq!(stats.images_deleted, 0);
    assert_eq!(p.images[0].reason.to_string(), "cancelled by shutdown");
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
    let mut p = planned(&fake, &policy).await;
    // It was restarted meanwhile.
    fake.state.lock().unwrap().containers[0].state = ContainerState::Running;
    let stats = execute(&fake, &mut p, &options(4), &CancellationToken::new()).await;
    assert_eq!(p.containers[0].reason.to_string(), "conflict: in use");
    assert_eq!(
        reason_of(&p, "a1"),
        (Action::Keep, "conflict: in use".into())
    );
    assert_eq!((stats.conflicts, stats.failures), (2, 0));
}
