//! `run` driven with the fakes: plan mode, apply, a failing repository, refusal, shards,
//! quota mode, failures of the account-wide reads, and cancellation.

use super::*;
use crate::ecr_prune::executor::ImageOutcome;
use crate::ecr_prune::planner::Refusal;
use crate::ecr_prune::report::RepoError;
use crate::ecr_prune::rules::Action;
use crate::ecr_prune::settings::EcrOptions;
use crate::ports::ecr::EcrImage;
use crate::ports::ecs::TaskImages;
use crate::testing::ecr::{image_ago, now, service, FakeEcr, FakeEcs};
use crate::testing::usage::{FakeLambda, FakeSchedules};

pub(crate) fn settings(flags: EcrOptions) -> Settings {
    let file = EcrOptions::default();
    Settings::resolve(crate::config::layer::Layered::new(
        &flags,
        &file,
        &Default::default(),
    ))
    .expect("valid")
}

fn many(n: usize) -> Vec<EcrImage> {
    (0..n)
        .map(|i| image_ago(&format!("i{i:04}"), &[&format!("v{i}")], 10 + i as i64 % 50))
        .collect()
}

async fn pass(s: &Settings, ecr: &FakeEcr, ecs: &FakeEcs) -> Result<Report, EcrError> {
    let (schedules, lambda) = (FakeSchedules::default(), FakeLambda::default());
    let source = super::usage::UsageSource {
        label: "",
        ecs,
        schedules: &schedules,
        lambda: &lambda,
    };
    run(s, ecr, &[source], now(), &CancellationToken::new()).await
}

fn repo<'a>(report: &'a Report, name: &str) -> &'a RepoReport {
    report
        .repositories
        .iter()
        .find(|r| r.name == name)
        .expect("repository in the report")
}

#[tokio::test]
async fn plan_mode_plans_every_repository_and_deletes_nothing() {
    let ecr = FakeEcr::with(vec![("a", many(5)), ("b", many(3))]);
    let s = settings(EcrOptions {
        keep_last: Some(2),
        force: true,
        ..EcrOptions::default()
    });
    let report = pass(&s, &ecr, &FakeEcs::default()).await.unwrap();
    assert!(!report.apply && !report.failed());
    assert_eq!(
        report
            .repositories
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>(),
        vec!["a", "b"],
        "sorted by name"
    );
    let a = repo(&report, "a");
    assert_eq!(a.outcome, RepoOutcome::Planned);
    let plan = a.plan.as_ref().expect("planned");
    assert_eq!((plan.images_before, plan.images_after), (5, 2));
    assert_eq!(a.images_after(), 2);
    assert_eq!(a.deleted(), None);
    assert_eq!(ecr.calls("BatchDeleteImage"), 0);
    assert_eq!(ecr.digests("a").len(), 5);
}

#[tokio::test]
async fn apply_deletes_what_the_plan_expires_and_leaves_the_plan_as_it_was() {
    let ecr = FakeEcr::with(vec![("a", many(6))]);
    let s = settings(EcrOptions {
        apply: true,
        keep_last: Some(2),
        force: true,
        ..EcrOptions::default()
    });
    let report = pass(&s, &ecr, &FakeEcs::default()).await.unwrap();
    assert!(!report.failed());
    let a = repo(&report, "a");
    let plan = a.plan.as_ref().expect("planned");
    let expired: Vec<&str> = plan
        .units
        .iter()
        .filter(|u| u.action == Action::Expire)
        .map(|u| u.unit.digest.as_str())
        .collect();
    assert_eq!(expired.len(), 4);
    let RepoOutcome::Applied(deletion) = &a.outcome else {
        panic!("applied: {:?}", a.outcome)
    };
    assert_eq!(deletion.deleted(), 4);
    assert!(deletion
        .images
        .iter()
        .all(|(d, o)| *o == ImageOutcome::Deleted && expired.contains(&d.as_str())));
    assert_eq!(ecr.digests("a").len(), 2);
    assert_eq!(a.images_after(), 2);
    assert_eq!(
        report.summary().deleted_per_repository,
        vec![("a".into(), 4)]
    );
}

#[tokio::test]
async fn one_failing_repository_does_not_stop_the_others() {
    let mut ecr = FakeEcr::with(vec![("a", many(10)), ("b", many(10)), ("c", many(10))]);
    ecr.broken.push("b".into());
    let s = settings(EcrOptions {
        apply: true,
        keep_last: Some(2),
        force: true,
        ..EcrOptions::default()
    });
    let report = pass(&s, &ecr, &FakeEcs::default()).await.unwrap();
    assert!(report.failed());
    assert_eq!(ecr.digests("a").len(), 2);
    assert_eq!(ecr.digests("c").len(), 2);
    let b = repo(&report, "b");
    assert!(b.plan.is_none());
    assert!(
        matches!(&b.error(), Some(RepoError::Unreadable(e)) if e.operation == "DescribeImages" && e.message.contains("AccessDenied"))
    );
    let summary = report.summary();
    assert!(summary.partial_failure);
    assert_eq!(summary.deleted_per_repository[0], ("a".to_owned(), 8));
    assert_eq!(summary.deleted_per_repository[1], ("b".to_owned(), 0));
}

#[tokio::test]
async fn refused_repository_keeps_everything_and_others_proceed() {
    let ecr = FakeEcr::with(vec![("big", many(10)), ("small", many(3))]);
    let s = settings(EcrOptions {
        apply: true,
        keep_last: Some(2),
        max_delete_percent: Some(50),
        ..EcrOptions::default()
    });
    let report = pass(&s, &ecr, &FakeEcs::default()).await.unwrap();
    assert_eq!(ecr.digests("big").len(), 10, "refused: nothing deleted");
    assert_eq!(ecr.digests("small").len(), 2);
    assert!(report.failed());
    let big = repo(&report, "big");
    let refusal = Refusal {
        deleting: 8,
        of: 10,
        max_percent: 50,
    };
    assert_eq!(big.outcome, RepoOutcome::Refused(refusal));
    assert_eq!(big.error(), Some(RepoError::Refused(refusal)));
    assert_eq!(big.images_after(), 10);
    assert_eq!(
        big.plan.as_ref().map(|p| p.images_after),
        Some(2),
        "the plan still says what it would do"
    );
}

#[tokio::test]
async fn refusal_shows_in_plan_mode_too() {
    let ecr = FakeEcr::with(vec![("big", many(10))]);
    let s = settings(EcrOptions {
        keep_last: Some(2),
        ..EcrOptions::default()
    });
    let report = pass(&s, &ecr, &FakeEcs::default()).await.unwrap();
    assert!(matches!(
        repo(&report, "big").outcome,
        RepoOutcome::Refused(_)
    ));
    assert!(report.failed());
}

#[tokio::test]
async fn shards_split_the_repositories() {
    let names: Vec<String> = (0..12).map(|i| format!("r{i}")).collect();
    let ecr = FakeEcr::with(names.iter().map(|n| (n.as_str(), many(4))).collect());
    let mut seen = Vec::new();
    for shard in 0..3 {
        let s = settings(EcrOptions {
            keep_last: Some(1),
            shard: Some(format!("{shard}/3").parse().expect("shard")),
            ..EcrOptions::default()
        });
        let report = pass(&s, &ecr, &FakeEcs::default()).await.unwrap();
        seen.extend(report.repositories.into_iter().map(|r| r.name));
    }
    seen.sort();
    let mut all = names.clone();
    all.sort();
    assert_eq!(seen, all, "every repository in exactly one shard");
    assert_eq!(ecr.calls("BatchDeleteImage"), 0);
}

#[tokio::test]
async fn quota_mode_reads_the_quota_once_and_expires_down_to_the_watermark() {
    let mut ecr = FakeEcr::with(vec![("a", many(12)), ("b", many(8))]);
    ecr.quota = Some(10);
    let s = settings(EcrOptions {
        apply: true,
        max_images: Some("auto".parse().expect("value")),
        min_age: Some("0s".parse().expect("value")),
        force: true,
        ..EcrOptions::default()
    });
    let report = pass(&s, &ecr, &FakeEcs::default()).await.unwrap();
    assert_eq!(ecr.calls("GetServiceQuota"), 1);
    // 90% of 10 = 9 images per repository.
    assert_eq!(ecr.digests("a").len(), 9);
    assert_eq!(ecr.digests("b").len(), 8);
    let reasons: Vec<&planner::Reason> = repo(&report, "a")
        .plan
        .as_ref()
        .expect("planned")
        .units
        .iter()
        .filter(|u| u.action == Action::Expire)
        .map(|u| &u.reason)
        .collect();
    assert_eq!(reasons, vec![&planner::Reason::Quota(9); 3]);
}

#[tokio::test]
async fn what_ecs_runs_is_kept() {
    let ecr = FakeEcr::with(vec![("app", many(4))]);
    let mut ecs = FakeEcs::default();
    let uri = crate::testing::ecr::repository("app").uri;
    ecs.tasks.insert(
        "c1".into(),
        vec![TaskImages {
            task_definition: "td:1".into(),
            images: vec![format!("{uri}:v3")],
            digests: vec![],
        }],
    );
    ecs.services
        .insert("c1".into(), vec![("web".into(), service(&["td:2"]))]);
    ecs.task_definitions
        .insert("td:2".into(), vec![format!("{uri}@sha256:i0002")]);
    let s = settings(EcrOptions {
        apply: true,
        keep_last: Some(1),
        force: true,
        ..EcrOptions::default()
    });
    let report = pass(&s, &ecr, &ecs).await.unwrap();
    assert!(!report.failed());
    let left = ecr.digests("app");
    assert!(
        left.contains(&"sha256:i0003".to_owned()),
        "task's tag: {left:?}"
    );
    assert!(
        left.contains(&"sha256:i0002".to_owned()),
        "service's digest: {left:?}"
    );
    assert_eq!(left.len(), 3, "{left:?}");
}

#[tokio::test]
async fn unreadable_ecs_fails_the_run_before_any_deletion() {
    let ecr = FakeEcr::with(vec![("a", many(5))]);
    let ecs = FakeEcs {
        broken: true,
        ..FakeEcs::default()
    };
    let s = settings(EcrOptions {
        apply: true,
        keep_last: Some(1),
        force: true,
        ..EcrOptions::default()
    });
    let e = pass(&s, &ecr, &ecs).await.unwrap_err();
    assert!(
        matches!(&e, EcrError::Ecs(api) if api.operation == "ListClusters"),
        "{e}"
    );
    assert_eq!(e.exit_code(), crate::exit::EXIT_RUNTIME);
    assert_eq!(ecr.calls("BatchDeleteImage"), 0);
    assert_eq!(ecr.digests("a").len(), 5);
}

#[tokio::test]
async fn a_failing_delete_call_is_a_repository_error() {
    let mut ecr = FakeEcr::with(vec![("a", many(5))]);
    ecr.delete_call_fails = true;
    let s = settings(EcrOptions {
        apply: true,
        keep_last: Some(1),
        force: true,
        ..EcrOptions::default()
    });
    let report = pass(&s, &ecr, &FakeEcs::default()).await.unwrap();
    assert!(report.failed());
    let a = repo(&report, "a");
    assert!(matches!(
        a.error(),
        Some(RepoError::DeleteCall {
            deleted_before: 0,
            ..
        })
    ));
    assert_eq!(a.images_after(), 5);
}

#[tokio::test]
async fn cancelled_before_reading_reads_and_deletes_nothing() {
    let ecr = FakeEcr::with(vec![("a", many(5))]);
    let s = settings(EcrOptions {
        apply: true,
        keep_last: Some(1),
        force: true,
        ..EcrOptions::default()
    });
    let cancel = CancellationToken::new();
    cancel.cancel();
    let (ecs, schedules, lambda) = (
        FakeEcs::default(),
        FakeSchedules::default(),
        FakeLambda::default(),
    );
    let source = super::usage::UsageSource {
        label: "",
        ecs: &ecs,
        schedules: &schedules,
        lambda: &lambda,
    };
    let report = run(&s, &ecr, &[source], now(), &cancel).await.unwrap();
    assert_eq!(repo(&report, "a").outcome, RepoOutcome::NotRead);
    assert_eq!(repo(&report, "a").error(), Some(RepoError::NotRead));
    assert_eq!(ecr.calls("DescribeImages"), 0);
    assert_eq!(ecr.calls("BatchDeleteImage"), 0);
}

#[test]
fn repository_errors_read_as_they_always_have() {
    use crate::ports::ecr::{ApiError, FailureCode};
    let api = ApiError {
        operation: "BatchDeleteImage",
        message: "ThrottlingException".into(),
    };
    let shown: Vec<String> = [
        RepoError::NotRead,
        RepoError::Unreadable(ApiError {
            operation: "DescribeImages",
            message: "AccessDenied".into(),
        }),
        RepoError::DeleteCall {
            error: api,
            deleted_before: 100,
        },
        RepoError::ImagesFailed {
            count: 2,
            first_digest: "sha256:b".into(),
            first_code: FailureCode::ImageReferencedByManifestList,
        },
        RepoError::Cancelled,
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    assert_eq!(
        shown,
        [
            "cancelled before this repository was read",
            "cannot read images (DescribeImages: AccessDenied)",
            "delete failed (BatchDeleteImage: ThrottlingException); 100 images deleted before",
            "2 images could not be deleted (first: sha256:b ImageReferencedByManifestList)",
            "cancelled before all deletions",
        ]
    );
}

#[tokio::test]
async fn a_usage_file_protects_and_an_unreadable_one_fails_before_any_read_or_delete() {
    let ecr = FakeEcr::with(vec![("a", many(5))]);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("usage.json");
    let mut used = snapshot::EcsUsage::default();
    used.add_digest_from(
        "sha256:i0002".into(),
        "service api, pinned sha256:i0002".into(),
    );
    // Written two days before the plan: still used, with a warning.
    let written = now() - chrono::Duration::days(2);
    let file = usage_file::UsageFile::new(&used, Some("210987654321".into()), written);
    std::fs::write(&path, serde_json::to_vec(&file).expect("json")).expect("write");
    let missing = EcrOptions {
        apply: true,
        keep_last: Some(1),
        force: true,
        usage_file: vec![dir.path().join("missing.json")],
        ..EcrOptions::default()
    };
    let e = pass(&settings(missing.clone()), &ecr, &FakeEcs::default())
        .await
        .unwrap_err();
    assert!(matches!(e, EcrError::UsageFile { .. }), "{e}");
    assert_eq!(e.exit_code(), crate::exit::EXIT_RUNTIME);
    assert!(e.to_string().contains("nothing was deleted"), "{e}");
    assert_eq!(ecr.calls("DescribeImages"), 0);
    assert_eq!(ecr.calls("BatchDeleteImage"), 0);

    let s = settings(EcrOptions {
        usage_file: vec![path.clone()],
        ..missing
    });
    let report = pass(&s, &ecr, &FakeEcs::default()).await.unwrap();
    let kept = repo(&report, "a")
        .plan
        .as_ref()
        .expect("planned")
        .units
        .iter()
        .find(|u| u.unit.digest == "sha256:i0002")
        .map(|u| u.reason.to_string())
        .expect("unit");
    assert_eq!(
        kept,
        format!(
            "in use by ECS (usage file {} (account 210987654321): service api, pinned sha256:i0002)",
            path.display()
        )
    );
    assert!(ecr.digests("a").contains(&"sha256:i0002".to_owned()));
}

#[tokio::test]
async fn a_child_lost_under_a_kept_index_fails_the_validation_pass_and_the_run() {
    let idx = crate::testing::ecr::index("idx", &["v9"], 99);
    let kids = ["sha256:amd64", "sha256:arm64"];
    let mut images = many(4);
    images.push(idx.clone());
    images.extend(
        kids.iter()
            .map(|k| crate::testing::ecr::image(k.trim_start_matches("sha256:"), &[], 99)),
    );
    let mut ecr = FakeEcr::with(vec![("a", images)]);
    ecr.manifests.insert(
        idx.digest.clone(),
        serde_json::json!({"manifests": [{"digest": kids[0]}, {"digest": kids[1]}]}).to_string(),
    );
    ecr.concurrent_deletes
        .lock()
        .unwrap()
        .push(kids[1].to_owned());
    let s = settings(EcrOptions {
        apply: true,
        keep_last: Some(1),
        force: true,
        ..EcrOptions::default()
    });
    let report = pass(&s, &ecr, &FakeEcs::default()).await.unwrap();
    let a = repo(&report, "a");
    assert_eq!(a.deleted(), Some(4));
    let v = a.validation.clone().expect("validated").expect("readable");
    assert_eq!(
        v.violations,
        vec![crate::ecr_prune::validation::Violation::ChildLost {
            index: idx.digest.clone(),
            child: kids[1].to_owned(),
        }]
    );
    assert!(
        report.failed(),
        "a violated validation fails the run (exit 1)"
    );
    assert_eq!(
        a.error().map(|e| e.to_string()),
        Some(format!(
            "validation after the apply failed: kept index {} lost its child {}",
            idx.digest, kids[1]
        ))
    );
    assert_eq!(ecr.calls("DescribeImages"), 2, "read, then read again");
    assert_eq!(ecr.calls("BatchGetImage"), 1, "a manifest is read once");
}

#[tokio::test]
async fn a_reviewed_plan_deletes_only_what_it_expired_and_rechecks_protections() {
    // Planned on one snapshot: keep-last 1 of five tagged images expires i1..i4 (i0,
    // the newest, is kept)... then i2 starts running and a new image is pushed.
    let ecr = FakeEcr::with(vec![("a", many(5))]);
    let s = settings(EcrOptions {
        keep_last: Some(1),
        force: true,
        ..EcrOptions::default()
    });
    let planned = pass(&s, &ecr, &FakeEcs::default()).await.unwrap();
    let r = repo(&planned, "a");
    let file = crate::ecr_prune::reviewed::build(
        now(),
        &EcsUsage::default(),
        &[(
            "a",
            r.inputs_digest.as_deref().unwrap(),
            r.plan.as_ref().unwrap(),
        )],
    );
    let expired: Vec<String> = file.repositories[0]
        .expire
        .iter()
        .map(|u| u.digest.clone())
        .collect();
    assert_eq!(expired.len(), 4);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.json");
    std::fs::write(&path, file.to_text()).unwrap();
    // After review: i2 runs; a newer image is pushed (a rule would now expire i0 too).
    let running = expired[1].clone();
    let mut ecs = FakeEcs::default();
    ecs.tasks.insert(
        "c1".into(),
        vec![TaskImages {
            task_definition: "job:1".into(),
            images: vec![],
            digests: vec![running.clone()],
        }],
    );
    ecr.repos
        .lock()
        .unwrap()
        .get_mut("a")
        .unwrap()
        .push(image_ago("new", &["v-new"], 1));
    let s = settings(EcrOptions {
        apply: true,
        plan: Some(path),
        force: true,
        ..EcrOptions::default()
    });
    let report = pass(&s, &ecr, &ecs).await.unwrap();
    let a = repo(&report, "a");
    assert!(!report.failed(), "{:?}", a.error());
    assert_eq!(a.deleted(), Some(3), "the plan's four, less the one in use");
    let left = ecr.digests("a");
    assert!(left.contains(&running));
    assert_eq!(
        left.len(),
        3,
        "i0, the running one and the new one: {left:?}"
    );
    assert_eq!(a.kept_at_apply(), vec![running.as_str()]);
    assert_eq!(a.unchanged_since_plan, Some(false));
    let in_use = &a
        .plan
        .as_ref()
        .unwrap()
        .units
        .iter()
        .find(|u| u.unit.digest == running)
        .unwrap()
        .reason;
    assert!(
        matches!(in_use, planner::Reason::KeptAtApply(r) if matches!(**r, planner::Reason::InUseByEcs(_))),
        "{in_use:?}"
    );
}
