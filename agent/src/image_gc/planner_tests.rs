//! Planner unit tests: one named case per protection rule, per ordering rule and
//! per interaction between rules, on snapshots built by hand.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::*;
use crate::config::value::FreeSpace;
use crate::config::value::Watermark;
use crate::image_gc::policy::{DiskWatermarks, ExcludeSet, Policy};
use crate::image_gc::reason::Outcome;
use crate::ports::disk::FsUsage;
use crate::ports::docker::{ContainerInfo, ContainerState, ImageInfo, VolumeInfo};
use crate::testing::docker::{container, full_id, hours_ago, image, now};

const GIB: u64 = 1 << 30;
const HOUR: Duration = Duration::from_secs(3600);

fn snap(images: Vec<ImageInfo>, containers: Vec<ContainerInfo>) -> Snapshot {
    Snapshot {
        images,
        containers,
        ..Default::default()
    }
}

fn policy() -> Policy {
    Policy::defaults()
}

fn excluding(patterns: &[&str]) -> Policy {
    let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
    Policy {
        excludes: ExcludeSet::new(&patterns).unwrap(),
        ..policy()
    }
}

fn entry<'a>(plan: &'a Plan, id: &str) -> &'a ImageEntry {
    let id = full_id(id);
    plan.images
        .iter()
        .find(|e| e.id == id)
        .unwrap_or_else(|| panic!("{id} not in plan"))
}

fn decision(plan: &Plan, id: &str) -> (Action, ImageReason) {
    let e = entry(plan, id);
    (e.action, e.reason.clone())
}

fn deleted_order(plan: &Plan) -> Vec<String> {
    plan.deletions()
        .map(|e| {
            e.id.trim_start_matches("sha256:")
                .trim_end_matches('0')
                .to_owned()
        })
        .collect()
}

fn kept<R>(reason: R) -> (Action, R) {
    (Action::Keep, reason)
}

fn deleted<R>(reason: R) -> (Action, R) {
    (Action::Delete, reason)
}

fn in_use(container: &str) -> ImageReason {
    ImageReason::InUse {
        container: container.to_owned(),
    }
}

fn excluded(pattern: &str) -> ImageReason {
    ImageReason::Excluded {
        pattern: pattern.to_owned(),
    }
}

fn newest(keep: u32, repo: &str) -> ImageReason {
    ImageReason::NewestOfRepo {
        keep,
        repo: repo.to_owned(),
    }
}

fn parent_of(child: &str) -> ImageReason {
    ImageReason::ParentOfKept {
        child: child.to_owned(),
    }
}

const YOUNG: ImageReason = ImageReason::Young { min_age: HOUR };

#[test]
fn old_unused_image_is_deleted_as_least_recently_used() {
    let p = plan(
        &snap(vec![image("a1", &["app:1"], 48, 10)], vec![]),
        &policy(),
        now(),
    );
    assert_eq!(decision(&p, "a1"), deleted(ImageReason::LeastRecentlyUsed));
}

#[test]
fn image_of_running_container_is_kept() {
    let s = snap(
        vec![image("a1", &["app:1"], 48, 10)],
        vec![container("c0ffee", "app:1", "a1", ContainerState::Running)],
    );
    assert_eq!(
        decision(&plan(&s, &policy(), now()), "a1"),
        kept(in_use("c0ffee000000"))
    );
}

#[test]
fn image_of_container_in_any_state_is_kept() {
    for state in [
        ContainerState::Created,
        ContainerState::Exited,
        ContainerState::Dead,
        ContainerState::Paused,
        ContainerState::Restarting,
    ] {
        let s = snap(
            vec![image("a1", &["app:1"], 48, 10)],
            vec![container("c1", "app:1", "a1", state)],
        );
        assert_eq!(
            plan(&s, &policy(), now()).images[0].action,
            Action::Keep,
            "{state:?}"
        );
    }
}

#[test]
fn tag_moved_to_new_image_while_container_runs_old_id() {
    // app:1 was re-pulled: the running container still holds the old, now dangling, ID.
    let s = snap(
        vec![image("01d", &[], 72, 10), image("0e1", &["app:1"], 48, 10)],
        vec![container("c1", "app:1", "01d", ContainerState::Running)],
    );
    let p = plan(&s, &policy(), now());
    assert_eq!(decision(&p, "01d"), kept(in_use("c10000000000")));
    assert_eq!(decision(&p, "0e1"), deleted(ImageReason::LeastRecentlyUsed));
}

#[test]
fn excluded_by_glob_is_kept() {
    let s = snap(vec![image("a1", &["redis:7"], 48, 10)], vec![]);
    assert_eq!(
        decision(&plan(&s, &excluding(&["redis:*"]), now()), "a1"),
        kept(excluded("redis:*"))
    );
}

#[test]
fn excluded_and_old_is_kept_as_excluded() {
    let s = snap(
        vec![image("a1", &["ci/base:2020"], 24 * 365 * 3, 10)],
        vec![],
    );
    let p = plan(
        &s,
        &Policy {
            keep_per_repo: 0,
            ..excluding(&["*/base:*"])
        },
        now(),
    );
    assert_eq!(decision(&p, "a1"), kept(excluded("*/base:*")));
}

#[test]
fn excluded_by_image_id_prefix() {
    let s = snap(
        vec![image("abcdef", &[], 48, 10), image("bbb", &[], 48, 10)],
        vec![],
    );
    let p = plan(&s, &excluding(&["sha256:abcd"]), now());
    assert_eq!(decision(&p, "abcdef"), kept(excluded("sha256:abcd")));
    assert_eq!(decision(&p, "bbb"), deleted(ImageReason::Dangling));
}

#[test]
fn ecs_agent_images_are_kept() {
    let s = snap(
        vec![
            image("a1", &["amazon/amazon-ecs-agent:latest"], 900, 10),
            image("a2", &["amazon/amazon-ecs-pause:0.1.0"], 900, 10),
            image(
                "a3",
                &["public.ecr.aws/x/ecs-service-connect-agent:v1"],
                900,
                10,
            ),
        ],
        vec![],
    );
    let p = plan(&s, &policy(), now());
    for id in ["a1", "a2", "a3"] {
        assert_eq!(decision(&p, id), kept(ImageReason::EcsAgent));
    }
}

#[test]
fn ecs_agent_images_can_be_unprotected() {
    let s = snap(
        vec![image("a1", &["amazon/amazon-ecs-agent:latest"], 900, 10)],
        vec![],
    );
    let p = plan(
        &s,
        &Policy {
            protect_ecs_agent: false,
            ..policy()
        },
        now(),
    );
    assert_eq!(p.images[0].action, Action::Delete);
}

#[test]
fn young_image_is_kept() {
    let s = snap(vec![image("a1", &["app:1"], 0, 10)], vec![]);
    assert_eq!(decision(&plan(&s, &policy(), now()), "a1"), kept(YOUNG));
}

#[test]
fn age_counts_from_last_use_when_later_than_creation() {
    let mut s = snap(vec![image("a1", &["app:1"], 500, 10)], vec![]);
    s.last_use = HashMap::from([(full_id("a1"), now() - chrono::Duration::minutes(10))]);
    assert_eq!(decision(&plan(&s, &policy(), now()), "a1"), kept(YOUNG));
}

#[test]
fn last_use_before_creation_is_ignored() {
    let mut s = snap(vec![image("a1", &["app:1"], 0, 10)], vec![]);
    s.last_use = HashMap::from([(full_id("a1"), hours_ago(100))]);
    assert_eq!(decision(&plan(&s, &policy(), now()), "a1"), kept(YOUNG));
}

#[test]
fn min_age_zero_makes_everything_old_enough() {
    let s = snap(vec![image("a1", &["app:1"], 0, 10)], vec![]);
    let p = plan(
        &s,
        &Policy {
            min_age: Duration::ZERO,
            ..policy()
        },
        now(),
    );
    assert_eq!(p.images[0].action, Action::Delete);
}

#[test]
fn keeps_newest_n_per_repo_by_creation() {
    let s = snap(
        vec![
            image("a1", &["app:1"], 30, 10),
            image("a2", &["app:2"], 20, 10),
            image("a3", &["app:3"], 10, 10),
            image("b1", &["web:1"], 40, 10),
        ],
        vec![],
    );
    let p = plan(
        &s,
        &Policy {
            keep_per_repo: 2,
            ..policy()
        },
        now(),
    );
    assert_eq!(decision(&p, "a3"), kept(newest(2, "app")));
    assert_eq!(decision(&p, "a2"), kept(newest(2, "app")));
    assert_eq!(decision(&p, "a1"), deleted(ImageReason::LeastRecentlyUsed));
    assert_eq!(decision(&p, "b1"), kept(newest(2, "web")));
}

#[test]
fn keep_per_repo_ignores_dangling_images() {
    // Dangling images belong to no repository: never kept by the rule, never
    // taking a slot from a tagged image.
    let s = snap(
        vec![
            image("d1", &[], 1, 10),
            image("d2", &[], 2, 10),
            image("a1", &["app:1"], 30, 10),
            image("a2", &["app:2"], 20, 10),
        ],
        vec![],
    );
    let p = plan(
        &s,
        &Policy {
            keep_per_repo: 1,
            ..policy()
        },
        now(),
    );
    assert_eq!(decision(&p, "d1"), deleted(ImageReason::Dangling));
    assert_eq!(decision(&p, "d2"), deleted(ImageReason::Dangling));
    assert_eq!(decision(&p, "a2"), kept(newest(1, "app")));
    assert_eq!(decision(&p, "a1"), deleted(ImageReason::LeastRecentlyUsed));
}

#[test]
fn image_tagged_in_two_repos_counts_in_both() {
    let s = snap(
        vec![
            image("a1", &["app:1", "mirror/app:1"], 30, 10),
            image("a2", &["app:2"], 10, 10),
        ],
        vec![],
    );
    let p = plan(
        &s,
        &Policy {
            keep_per_repo: 1,
            ..policy()
        },
        now(),
    );
    // Not the newest of app, but the newest of mirror/app.
    assert_eq!(decision(&p, "a1"), kept(newest(1, "mirror/app")));
    assert_eq!(decision(&p, "a2"), kept(newest(1, "app")));
}

#[test]
fn parent_of_protected_image_is_kept() {
    let mut child = image("c1", &["app:2"], 48, 10);
    child.parent_id = Some(full_id("b0"));
    let mut mid = image("b0", &[], 72, 10);
    mid.parent_id = Some(full_id("a0"));
    let s = snap(
        vec![image("a0", &["base:1"], 96, 10), mid, child],
        vec![container("k1", "app:2", "c1", ContainerState::Running)],
    );
    let p = plan(&s, &policy(), now());
    assert_eq!(decision(&p, "b0"), kept(parent_of("c10000000000")));
    assert_eq!(decision(&p, "a0"), kept(parent_of("b00000000000")));
}

#[test]
fn children_are_deleted_before_parents() {
    // The parent is dangling (ordered first) but must wait for its child.
    let mut child = image("c1", &["app:2"], 48, 10);
    child.parent_id = Some(full_id("b0"));
    let s = snap(
        vec![image("b0", &[], 72, 10), child, image("d9", &[], 50, 10)],
        vec![],
    );
    let p = plan(&s, &policy(), now());
    assert_eq!(deleted_order(&p), vec!["c1", "b", "d9"]);
}

#[test]
fn candidates_ordered_dangling_then_lru_then_size() {
    let s = snap(
        vec![
            image("a1", &["app:1"], 10, 100),
            image("a2", &["app:2"], 50, 100),
            image("a3", &["app:3"], 50, 900),
            image("d1", &[], 5, 1),
        ],
        vec![],
    );
    let p = plan(&s, &policy(), now());
    assert_eq!(deleted_order(&p), vec!["d1", "a3", "a2", "a1"]);
}

#[test]
fn every_image_appears_exactly_once() {
    let s = snap(
        vec![
            image("a1", &["app:1"], 10, 100),
            image("a2", &["redis:1"], 50, 100),
            image("a3", &["app:3"], 0, 900),
        ],
        vec![container("c1", "app:1", "a1", ContainerState::Exited)],
    );
    let p = plan(&s, &excluding(&["redis:*"]), now());
    let mut ids: Vec<_> = p.images.iter().map(|e| e.id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3);
    assert_eq!(p.images.len(), 3);
}

#[test]
fn max_deletions_caps_the_run_in_order() {
    let s = snap(
        vec![
            image("a1", &["app:1"], 10, 1),
            image("a2", &["app:2"], 50, 1),
            image("a3", &["app:3"], 30, 1),
        ],
        vec![],
    );
    let p = plan(
        &s,
        &Policy {
            max_deletions: Some(2),
            ..policy()
        },
        now(),
    );
    assert_eq!(deleted_order(&p), vec!["a2", "a3"]);
    assert_eq!(
        decision(&p, "a1"),
        kept(ImageReason::MaxDeletions { max: 2 })
    );
}

fn disk_policy(high: f64, low: f64) -> Policy {
    Policy {
        disk: Some(DiskWatermarks {
            high: Watermark::Percent(high),
            low: Watermark::Percent(low),
        }),
        ..policy()
    }
}

fn usage(used: u64, total: u64) -> Option<FsUsage> {
    Some(FsUsage {
        total_bytes: total,
        used_bytes: used,
        total_inodes: 1000,
        used_inodes: 10,
    })
}

#[test]
fn disk_mode_below_high_water_deletes_nothing() {
    let mut s = snap(vec![image("a1", &["app:1"], 50, GIB)], vec![]);
    s.disk = usage(70 * GIB, 100 * GIB);
    let p = plan(&s, &disk_policy(85.0, 75.0), now());
    assert_eq!(
        decision(&p, "a1"),
        kept(ImageReason::BelowHighWater {
            high: Watermark::Percent(85.0)
        })
    );
    assert_eq!(p.disk, DiskPlan::Off);
}

#[test]
fn disk_mode_stops_at_low_water() {
    // 90 GiB of 100 used, low water 75%: the three oldest 5 GiB images suffice.
    let mut s = snap(
        (1..=6)
            .map(|n| image(&format!("a{n}"), &[&format!("app:{n}")], 100 - n, 5 * GIB))
            .collect(),
        vec![],
    );
    s.disk = usage(90 * GIB, 100 * GIB);
    let p = plan(&s, &disk_policy(85.0, 75.0), now());
    match p.disk {
        DiskPlan::Pressure { estimated, .. } => assert_eq!(estimated, 3),
        other => panic!("{other:?}"),
    }
    // The executor re-measures (a dry run shows the estimate): all six are planned,
    // oldest first.
    assert_eq!(deleted_order(&p), vec!["a1", "a2", "a3", "a4", "a5", "a6"]);
}

#[test]
fn disk_mode_acts_on_inode_pressure() {
    let mut s = snap(vec![image("a1", &["app:1"], 50, 1)], vec![]);
    s.disk = Some(FsUsage {
        total_bytes: 100 * GIB,
        used_bytes: GIB,
        total_inodes: 1000,
        used_inodes: 950,
    });
    let p = plan(&s, &disk_policy(85.0, 75.0), now());
    assert!(matches!(p.disk, DiskPlan::Pressure { estimated: 1, .. }));
    assert_eq!(p.deletions().count(), 1);
}

#[test]
fn disk_mode_with_absolute_sizes() {
    let mut s = snap(vec![image("a1", &["app:1"], 50, 10 * GIB)], vec![]);
    s.disk = usage(45 * GIB, 100 * GIB);
    let p = plan(
        &s,
        &Policy {
            disk: Some(DiskWatermarks {
                high: Watermark::Bytes(40 * GIB),
                low: Watermark::Bytes(30 * GIB),
            }),
            ..policy()
        },
        now(),
    );
    assert_eq!(p.deletions().count(), 1);
}

fn with_containers() -> Policy {
    Policy {
        containers: true,
        ..policy()
    }
}

fn finished(mut c: ContainerInfo, hours: i64) -> ContainerInfo {
    c.finished_at = Some(hours_ago(hours));
    c
}

#[test]
fn containers_exited_past_grace_are_removed_and_free_their_image() {
    let s = snap(
        vec![image("a1", &["app:1"], 48, 10)],
        vec![finished(
            container("c1", "app:1", "a1", ContainerState::Exited),
            3,
        )],
    );
    let p = plan(&s, &with_containers(), now());
    assert_eq!(p.containers[0].action, Action::Delete);
    assert_eq!(
        p.containers[0].reason,
        ContainerReason::FinishedLongAgo { grace: HOUR }
    );
    assert_eq!(decision(&p, "a1"), deleted(ImageReason::LeastRecentlyUsed));
}

#[test]
fn containers_within_grace_or_active_are_kept() {
    let s = snap(
        vec![image("a1", &["app:1"], 48, 10)],
        vec![
            finished(container("c1", "app:1", "a1", ContainerState::Exited), 0),
            container("c2", "app:1", "a1", ContainerState::Running),
            finished(container("c3", "app:1", "a1", ContainerState::Dead), 5),
        ],
    );
    let p = plan(&s, &with_containers(), now());
    let reasons: Vec<_> = p
        .containers
        .iter()
        .map(|c| (c.action, c.reason.clone()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            kept(ContainerReason::FinishedRecently { grace: HOUR }),
            kept(ContainerReason::Active {
                state: ContainerState::Running
            }),
            deleted(ContainerReason::FinishedLongAgo { grace: HOUR }),
        ]
    );
    assert_eq!(decision(&p, "a1"), kept(in_use("c10000000000")));
}

#[test]
fn created_containers_only_after_24h() {
    let mut young = container("c1", "app:1", "a1", ContainerState::Created);
    young.created = hours_ago(2);
    let old = container("c2", "app:1", "a1", ContainerState::Created);
    let p = plan(&snap(vec![], vec![young, old]), &with_containers(), now());
    assert_eq!(
        (p.containers[0].action, &p.containers[0].reason),
        kept(&ContainerReason::CreatedRecently)
    );
    assert_eq!(
        (p.containers[1].action, &p.containers[1].reason),
        deleted(&ContainerReason::CreatedLongAgo)
    );
}

#[test]
fn ecs_managed_containers_are_left_to_the_agent() {
    let mut c = finished(container("c1", "app:1", "a1", ContainerState::Exited), 10);
    c.labels = BTreeMap::from([(
        "com.amazonaws.ecs.task-arn".to_owned(),
        "arn:aws:ecs:x".to_owned(),
    )]);
    let p = plan(&snap(vec![], vec![c.clone()]), &with_containers(), now());
    assert_eq!(p.containers[0].reason, ContainerReason::EcsManaged);
    let p = plan(
        &snap(vec![], vec![c]),
        &Policy {
            remove_ecs_containers: true,
            ..with_containers()
        },
        now(),
    );
    assert_eq!(p.containers[0].action, Action::Delete);
}

#[test]
fn containers_not_planned_without_the_flag() {
    let s = snap(
        vec![],
        vec![finished(
            container("c1", "app:1", "a1", ContainerState::Exited),
            10,
        )],
    );
    assert!(plan(&s, &policy(), now()).containers.is_empty());
}

#[test]
fn dangling_volumes_are_removed_when_asked() {
    let mut s = snap(vec![], vec![]);
    s.volumes = vec![
        VolumeInfo {
            name: "v1".into(),
            labels: BTreeMap::new(),
        },
        VolumeInfo {
            name: "ecs".into(),
            labels: BTreeMap::from([("com.amazonaws.ecs.task-arn".into(), "x".into())]),
        },
    ];
    let p = plan(
        &s,
        &Policy {
            volumes: true,
            ..policy()
        },
        now(),
    );
    assert_eq!(
        (p.volumes[0].action, p.volumes[0].reason),
        deleted(VolumeReason::Dangling)
    );
    assert_eq!(
        (p.volumes[1].action, p.volumes[1].reason),
        kept(VolumeReason::EcsManaged)
    );
    assert!(plan(&s, &policy(), now()).volumes.is_empty());
}

#[test]
fn max_deletions_caps_containers_images_and_volumes_together() {
    let mut s = snap(
        vec![
            image("a1", &["app:1"], 48, 10),
            image("a2", &["app:2"], 47, 10),
            image("a3", &["app:3"], 46, 10),
        ],
        vec![finished(
            container("c1", "app:1", "a1", ContainerState::Exited),
            3,
        )],
    );
    s.volumes = vec![VolumeInfo {
        name: "v1".into(),
        labels: BTreeMap::new(),
    }];
    let p = plan(
        &s,
        &Policy {
            containers: true,
            volumes: true,
            max_deletions: Some(2),
            ..policy()
        },
        now(),
    );
    assert_eq!(p.containers[0].action, Action::Delete);
    assert_eq!(
        p.deletions().count(),
        1,
        "one of the two left goes to an image"
    );
    assert_eq!(
        decision(&p, "a2"),
        kept(ImageReason::MaxDeletions { max: 2 })
    );
    assert_eq!(
        (p.volumes[0].action, p.volumes[0].reason),
        kept(VolumeReason::MaxDeletions { max: 2 })
    );
    // The container that stays keeps its image.
    let p = plan(
        &s,
        &Policy {
            containers: true,
            max_deletions: Some(0),
            ..policy()
        },
        now(),
    );
    assert_eq!(
        p.containers[0].reason,
        ContainerReason::MaxDeletions { max: 0 }
    );
    assert!(matches!(decision(&p, "a1").1, ImageReason::InUse { .. }));
}

// --max-age, --ensure-free, and both policies in one pass.

const DAY: Duration = Duration::from_secs(24 * 3600);

fn max_age(policy: Policy) -> Policy {
    Policy {
        max_age: Some(DAY),
        ..policy
    }
}

fn stale() -> ImageReason {
    ImageReason::Stale { max_age: DAY }
}

/// 5 GiB images: a1 and a2 unused for 100 h and 90 h, r1 and r2 used 3 h and
/// 2 h ago, y1 younger than min age.
fn aged() -> Vec<ImageInfo> {
    let mut images: Vec<ImageInfo> = [("a1", 100), ("a2", 90), ("r1", 3), ("r2", 2)]
        .iter()
        .map(|(id, h)| image(id, &[&format!("app:{id}")], *h, 5 * GIB))
        .collect();
    images.push(image("y1", &["app:y1"], 0, 5 * GIB));
    images
}

#[test]
fn max_age_alone_deletes_only_what_is_unused_for_longer() {
    let p = plan(&snap(aged(), vec![]), &max_age(policy()), now());
    assert_eq!(deleted_order(&p), vec!["a1", "a2"]);
    assert_eq!(decision(&p, "a1"), deleted(stale()));
    assert_eq!(
        decision(&p, "r1"),
        kept(ImageReason::UsedWithinMaxAge { max_age: DAY })
    );
    assert_eq!(decision(&p, "y1"), kept(YOUNG), "min age always protects");
    assert_eq!(p.disk, DiskPlan::Off);
}

#[test]
fn max_age_counts_from_last_use() {
    let mut s = snap(aged(), vec![]);
    s.last_use.insert(full_id("a1"), hours_ago(2));
    let p = plan(&s, &max_age(policy()), now());
    assert_eq!(deleted_order(&p), vec!["a2"]);
}

#[test]
fn max_age_goes_whatever_the_disk_below_high_water() {
    let mut s = snap(aged(), vec![]);
    s.disk = usage(50 * GIB, 100 * GIB);
    let p = plan(&s, &max_age(disk_policy(85.0, 75.0)), now());
    assert_eq!(deleted_order(&p), vec!["a1", "a2"]);
    assert_eq!(
        decision(&p, "r1"),
        kept(ImageReason::BelowHighWater {
            high: Watermark::Percent(85.0)
        })
    );
    assert_eq!(p.disk, DiskPlan::Off);
}

#[test]
fn above_high_water_stale_images_go_first_then_lru_eviction_to_low_water() {
    // 93 of 100 GiB: the two stale images free 10 (to 83, not above high water 85%)…
    let mut s = snap(aged(), vec![]);
    s.disk = usage(93 * GIB, 100 * GIB);
    let p = plan(&s, &max_age(disk_policy(85.0, 75.0)), now());
    assert_eq!(deleted_order(&p), vec!["a1", "a2", "r1", "r2"]);
    assert_eq!(decision(&p, "r1"), deleted(ImageReason::LeastRecentlyUsed));
    let sizes: Vec<disk::Freed> = p.deletions().map(|e| disk::Freed::bytes(e.size)).collect();
    assert!(matches!(
        p.disk,
        DiskPlan::Pressure {
            unconditional: 2,
            estimated: 0,
            ..
        }
    ));
    assert_eq!(
        disk::simulate(&p.disk, &sizes).1,
        Some(Outcome::NotAboveHighWater {
            high: Watermark::Percent(85.0)
        }),
        "kubelet's rule: no eviction once usage is not above high water"
    );
    // …at 98 GiB they leave 88: evict r1 (83), r2 (78) and still above 75%.
    s.disk = usage(98 * GIB, 100 * GIB);
    let p = plan(&s, &max_age(disk_policy(85.0, 75.0)), now());
    let sizes: Vec<disk::Freed> = p.deletions().map(|e| disk::Freed::bytes(e.size)).collect();
    assert_eq!(disk::simulate(&p.disk, &sizes), (2, None));
    // High water 80%, 91 GiB: 81 after the stale phase (above 80%), r1 → 76, r2 → 71.
    s.disk = usage(91 * GIB, 100 * GIB);
    let p = plan(&s, &max_age(disk_policy(80.0, 75.0)), now());
    let sizes: Vec<disk::Freed> = p.deletions().map(|e| disk::Freed::bytes(e.size)).collect();
    let low = Watermark::Percent(75.0);
    assert_eq!(
        disk::simulate(&p.disk, &sizes),
        (2, Some(Outcome::LowWaterReached { low }))
    );
}

#[test]
fn a_stale_parent_of_a_fresh_candidate_waits_for_its_child() {
    let base = image("b0", &["base:1"], 100, GIB);
    let mut child = image("c1", &["app:2"], 3, GIB);
    child.parent_id = Some(full_id("b0"));
    let s = snap(vec![base, child], vec![]);
    let p = plan(&s, &max_age(policy()), now());
    assert_eq!(
        decision(&p, "c1"),
        kept(ImageReason::UsedWithinMaxAge { max_age: DAY })
    );
    assert_eq!(decision(&p, "b0"), kept(parent_of("c10000000000")));
    // Under pressure both go, the child first.
    let mut s = s;
    s.disk = usage(95 * GIB, 100 * GIB);
    let p = plan(&s, &max_age(disk_policy(85.0, 75.0)), now());
    assert_eq!(deleted_order(&p), vec!["c1", "b"]);
    assert!(matches!(
        p.disk,
        DiskPlan::Pressure {
            unconditional: 0,
            ..
        }
    ));
}

fn ensuring(bytes: u64, inodes: Option<u64>) -> Policy {
    Policy {
        ensure_free: Some(FreeSpace { bytes, inodes }),
        ..policy()
    }
}

#[test]
fn ensure_free_evicts_lru_until_that_much_is_free() {
    let mut s = snap(aged(), vec![]);
    s.disk = usage(90 * GIB, 100 * GIB);
    let p = plan(&s, &ensuring(18 * GIB, None), now());
    // a1, a2, r1, r2 are candidates (y1 is young); 10 GiB free, 8 more needed.
    assert_eq!(deleted_order(&p), vec!["a1", "a2", "r1", "r2"]);
    let sizes: Vec<disk::Freed> = p.deletions().map(|e| disk::Freed::bytes(e.size)).collect();
    let free = FreeSpace {
        bytes: 18 * GIB,
        inodes: None,
    };
    assert_eq!(
        disk::simulate(&p.disk, &sizes),
        (2, Some(Outcome::EnoughFree { free, low: None }))
    );
    // Enough free already: nothing goes.
    s.disk = usage(80 * GIB, 100 * GIB);
    let p = plan(&s, &ensuring(18 * GIB, None), now());
    assert_eq!(p.deletions().count(), 0);
    assert_eq!(decision(&p, "a1"), kept(ImageReason::EnoughFree { free }));
}

#[test]
fn ensure_free_counts_inodes_too() {
    let mut s = snap(aged(), vec![]);
    s.disk = usage(10 * GIB, 100 * GIB); // 990 of 1000 inodes free
    let p = plan(&s, &ensuring(GIB, Some(995)), now());
    assert!(matches!(p.disk, DiskPlan::Pressure { .. }));
    let p = plan(&s, &ensuring(GIB, Some(990)), now());
    assert_eq!(p.disk, DiskPlan::Off);
}

#[test]
fn max_deletions_caps_stale_and_evicted_images_in_order() {
    let mut s = snap(aged(), vec![]);
    s.disk = usage(99 * GIB, 100 * GIB);
    let p = plan(
        &s,
        &Policy {
            max_deletions: Some(3),
            ..max_age(disk_policy(85.0, 75.0))
        },
        now(),
    );
    assert_eq!(deleted_order(&p), vec!["a1", "a2", "r1"]);
    assert_eq!(
        decision(&p, "r2"),
        kept(ImageReason::MaxDeletions { max: 3 })
    );
}

#[test]
fn disk_mode_touches_containers_only_by_their_own_flag() {
    let mut c = container("c1", "app:a1", "a1", ContainerState::Exited);
    c.finished_at = Some(hours_ago(5));
    let mut s = snap(aged(), vec![c]);
    s.disk = usage(10 * GIB, 100 * GIB);
    let p = plan(&s, &disk_policy(85.0, 75.0), now());
    assert!(p.containers.is_empty() && p.volumes.is_empty());
    assert_eq!(p.deletions().count(), 0);
    let p = plan(
        &s,
        &Policy {
            containers: true,
            ..disk_policy(85.0, 75.0)
        },
        now(),
    );
    assert_eq!(p.containers[0].action, Action::Delete, "its own rule");
    assert_eq!(p.deletions().count(), 0, "images wait for disk pressure");
}
