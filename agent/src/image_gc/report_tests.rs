//! Report tests: the JSON document's exact shape (SPEC.md, `gc`) and the text
//! table, for a dry run and a real run, from a plan plus outcomes built by hand.

use std::time::Duration;

use super::*;
use crate::image_gc::executor::ExecStats;
use crate::image_gc::layers::Unaccounted;
use crate::image_gc::planner::{ContainerEntry, DiskPlan, ImageEntry, VolumeEntry};
use crate::image_gc::reason::{ContainerReason, ImageReason, VolumeReason};
use crate::testing::docker::{full_id, now};

fn image(id: &str, tags: &[&str], size: u64, action: Action, reason: ImageReason) -> ImageEntry {
    ImageEntry {
        id: full_id(id),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        size,
        action,
        reason,
        last_used: now(),
        parent_id: None,
        digests: Vec::new(),
    }
}

fn plan() -> Plan {
    Plan {
        images: vec![
            image(
                "a1",
                &["app:1"],
                10,
                Action::Delete,
                ImageReason::LeastRecentlyUsed,
            ),
            image("d2", &[], 5, Action::Delete, ImageReason::Dangling),
            image(
                "e3",
                &["redis:7", "mirror/redis:7"],
                2048,
                Action::Keep,
                ImageReason::Excluded {
                    pattern: "redis:*".into(),
                },
            ),
        ],
        containers: vec![ContainerEntry {
            id: "c1".repeat(32),
            name: "done".into(),
            image: "app:1".into(),
            action: Action::Delete,
            reason: ContainerReason::FinishedLongAgo {
                grace: Duration::from_secs(3600),
            },
        }],
        volumes: vec![VolumeEntry {
            name: "orphan".into(),
            action: Action::Delete,
            reason: VolumeReason::Dangling,
        }],
        disk: DiskPlan::Off,
    }
}

fn usage(used_bytes: u64) -> FsUsage {
    FsUsage {
        total_bytes: 1000,
        used_bytes,
        total_inodes: 100,
        used_inodes: 7,
    }
}

fn dry_run_report() -> Report {
    let plan = plan();
    Report {
        dry_run: true,
        outcomes: crate::image_gc::executor::dry_run(&plan, None),
        plan,
        stats: None,
        disk_before: Some(usage(500)),
        plan_api_calls: 4,
        ensure_free: None,
        estimates: None,
        container_log_bytes: None,
        unaccounted: None,
    }
}

/// A real run in which the dangling image gained a child meanwhile (409) and the
/// volume was already gone (404).
fn real_run_report() -> Report {
    Report {
        dry_run: false,
        plan: plan(),
        outcomes: Outcomes {
            images: vec![Some(Outcome::Deleted), Some(Outcome::Conflict), None],
            containers: vec![Some(Outcome::Deleted)],
            volumes: vec![Some(Outcome::AlreadyGone)],
        },
        stats: Some(ExecStats {
            images_deleted: 1,
            containers_deleted: 1,
            volumes_deleted: 1,
            reclaimed_bytes: 10 + 1024,
            build_cache_bytes: Some(1024),
            build_cache_records: Some(2),
            conflicts: 1,
            failures: 0,
            disk_after: Some(FsUsage {
                used_inodes: 4,
                ..usage(400)
            }),
            ..Default::default()
        }),
        disk_before: Some(usage(500)),
        plan_api_calls: 4,
        ensure_free: None,
        estimates: None,
        container_log_bytes: None,
        unaccounted: Some(Unaccounted::Measured {
            bytes: 8192,
            dirs: 1,
        }),
    }
}

fn json(report: &Report) -> String {
    let mut out = Vec::new();
    report.write_json(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn text(report: &Report) -> String {
    let mut out = Vec::new();
    report.write_text(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn json_of_a_real_run_has_the_spec_shape() {
    let expected = r#"{
  "build_cache": {
    "deleted_records": 2,
    "reclaimed_bytes": 1024
  },
  "build_cache_reclaimed_bytes": 1024,
  "containers": [
    {
      "action": "deleted",
      "id": "c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1",
      "image": "app:1",
      "name": "done",
      "reason": "finished over 1h ago"
    }
  ],
  "disk": {
    "after": {
      "total_bytes": 1000,
      "total_inodes": 100,
      "used_bytes": 400,
      "used_inodes": 4
    },
    "before": {
      "total_bytes": 1000,
      "total_inodes": 100,
      "used_bytes": 500,
      "used_inodes": 7
    }
  },
  "dry_run": false,
  "estimated_reclaimed_bytes": 1034,
  "images": [
    {
      "action": "deleted",
      "digests": [],
      "id": "sha256:a100000000000000000000000000000000000000000000000000000000000000",
      "reason": "least recently used",
      "size": 10,
      "tags": [
        "app:1"
      ]
    },
    {
      "action": "kept",
      "digests": [],
      "id": "sha256:d200000000000000000000000000000000000000000000000000000000000000",
      "reason": "conflict: in use",
      "size": 5,
      "tags": []
    },
    {
      "action": "kept",
      "digests": [],
      "id": "sha256:e300000000000000000000000000000000000000000000000000000000000000",
      "reason": "excluded by redis:*",
      "size": 2048,
      "tags": [
        "redis:7",
        "mirror/redis:7"
      ]
    }
  ],
  "reclaimed_bytes": 100,
  "reclaimed_bytes_measured": true,
  "reclaimed_inodes": 3,
  "unaccounted_bytes": 8192,
  "volumes": [
    {
      "action": "deleted",
      "name": "orphan",
      "reason": "already gone"
    }
  ]
}
"#;
    assert_eq!(json(&real_run_report()), expected);
}

#[test]
fn json_of_a_dry_run_has_no_after_and_no_build_cache() {
    let doc: serde_json::Value = serde_json::from_str(&json(&dry_run_report())).unwrap();
    assert_eq!(doc["dry_run"], true);
    assert_eq!(doc["disk"]["after"], serde_json::Value::Null);
    assert!(doc.get("build_cache_reclaimed_bytes").is_none());
    assert_eq!(doc["reclaimed_bytes"], 15);
    assert_eq!(doc["estimated_reclaimed_bytes"], 15);
    assert_eq!(doc["reclaimed_bytes_measured"], false);
    assert!(doc.get("reclaimed_inodes").is_none());
    let actions: Vec<&str> = doc["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["would delete", "would delete", "kept"]);
    assert_eq!(doc["containers"][0]["action"], "would delete");
    assert_eq!(doc["volumes"][0]["action"], "would delete");
}

#[test]
fn text_of_a_dry_run_is_an_aligned_table_with_totals() {
    let expected = "\
IMAGE         TAGS                    SIZE     ACTION        REASON
a10000000000  app:1                   10 B     would delete  least recently used
d20000000000  <none>                  5 B      would delete  dangling
e30000000000  redis:7,mirror/redis:7  2.0 KiB  kept          excluded by redis:*

CONTAINER     NAME  IMAGE  ACTION        REASON
c1c1c1c1c1c1  done  app:1  would delete  finished over 1h ago

VOLUME  ACTION        REASON
orphan  would delete  dangling

Total: 2 images to delete, 1 kept; would reclaim 15 B at most (image sizes; shared layers counted in full)
Disk: 50.0% used
";
    assert_eq!(text(&dry_run_report()), expected);
}

#[test]
fn text_of_a_real_run_shows_outcomes_where_a_deletion_did_not_happen() {
    let expected = "\
IMAGE         TAGS                    SIZE     ACTION   REASON
a10000000000  app:1                   10 B     deleted  least recently used
d20000000000  <none>                  5 B      kept     conflict: in use
e30000000000  redis:7,mirror/redis:7  2.0 KiB  kept     excluded by redis:*

CONTAINER     NAME  IMAGE  ACTION   REASON
c1c1c1c1c1c1  done  app:1  deleted  finished over 1h ago

VOLUME  ACTION   REASON
orphan  deleted  already gone

Total: 1 images deleted, 2 kept; reclaimed 100 B and 3 inodes, measured (image and build cache sizes sum to 1.0 KiB)
Build cache: 1.0 KiB reclaimed (2 records deleted)
Unaccounted: 8.0 KiB in 1 directory under overlay2/ that no image, container or build cache names (leaked layers; not removed by gc)
Disk: 50.0% used before, 40.0% after
";
    assert_eq!(text(&real_run_report()), expected);
}

#[test]
fn summary_for_the_daemon_counts_what_happened() {
    let summary = GcSummary::from_report(&real_run_report());
    assert_eq!(
        summary,
        GcSummary {
            images_deleted: 1,
            containers_deleted: 1,
            volumes_deleted: 1,
            bytes_reclaimed: 100,
            disk_usage_ratio: Some(0.4),
            container_log_bytes: None,
            unaccounted_bytes: Some(8192),
        }
    );
    assert!(!real_run_report().failed());
    let dry = GcSummary::from_report(&dry_run_report());
    assert_eq!((dry.images_deleted, dry.disk_usage_ratio), (0, Some(0.5)));
}

#[test]
fn a_digest_only_image_is_named_by_repo_at_digest() {
    let mut report = dry_run_report();
    report.plan.images[1].digests = vec!["reg/pinned@sha256:abcd".to_owned()];
    let mut out = Vec::new();
    report.write_text(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("d20000000000") && l.contains("reg/pinned@sha256:abcd")),
        "{text}"
    );
    let doc: serde_json::Value = serde_json::from_str(&json(&report)).unwrap();
    assert_eq!(doc["images"][1]["digests"][0], "reg/pinned@sha256:abcd");
}

#[test]
fn a_dry_run_with_engine_accounting_estimates_unique_sizes_and_build_cache() {
    use crate::ports::docker::{BuildCacheRecord, DataUsage};
    let mut report = dry_run_report();
    let record = |size, in_use, shared, hours| BuildCacheRecord {
        size,
        in_use,
        shared,
        last_used: Some(crate::testing::docker::hours_ago(hours)),
    };
    let usage = DataUsage {
        unique_sizes: [(report.plan.images[0].id.clone(), 4)]
            .into_iter()
            .collect(),
        build_cache: vec![
            record(100, false, false, 48),
            record(1000, true, false, 48),
            record(10_000, false, true, 48),
            record(100_000, false, false, 0),
        ],
    };
    let hour = std::time::Duration::from_secs(3600);
    report.estimates = Some(Estimates::new(
        usage,
        Some(hour),
        crate::testing::docker::now(),
    ));
    let doc: serde_json::Value = serde_json::from_str(&json(&report)).unwrap();
    assert_eq!(doc["images"][0]["unique_size"], 4);
    assert!(doc["images"][1].get("unique_size").is_none());
    // 4 (a1 alone) + 5 (d2, no unique size known: its size) + 100 of build cache.
    assert_eq!(doc["estimated_reclaimed_bytes"], 109);
    assert_eq!(doc["build_cache_reclaimed_bytes"], 100);
    assert_eq!(
        doc["build_cache"],
        serde_json::json!({
            "bytes": 111_100,
            "deleted_records": 1,
            "reclaimed_bytes": 100,
            "records": 4
        })
    );
    let shown = text(&report);
    assert!(
        shown.contains("would reclaim 109 B (unique sizes and build cache records)"),
        "{shown}"
    );
    assert!(
        shown.contains("Build cache: would reclaim 100 B (1 of 4 records, 108.5 KiB in all)"),
        "{shown}"
    );
    // Without --build-cache: what there is, and that nothing is pruned.
    let usage = DataUsage {
        build_cache: vec![record(100, false, false, 48)],
        ..DataUsage::default()
    };
    report.estimates = Some(Estimates::new(usage, None, crate::testing::docker::now()));
    let doc: serde_json::Value = serde_json::from_str(&json(&report)).unwrap();
    assert_eq!(
        doc["build_cache"],
        serde_json::json!({"bytes": 100, "records": 1})
    );
    assert!(doc.get("build_cache_reclaimed_bytes").is_none());
    assert!(
        text(&report)
            .contains("Build cache: 1 records, 100 B in all; pruned only with --build-cache"),
        "{}",
        text(&report)
    );
}

#[test]
fn unaccounted_bytes_not_measured_say_why_or_stay_quiet() {
    let mut report = real_run_report();
    report.unaccounted = Some(Unaccounted::OtherDriver("vfs".to_owned()));
    let doc: serde_json::Value = serde_json::from_str(&json(&report)).unwrap();
    assert!(doc.get("unaccounted_bytes").is_none());
    assert!(
        text(&report)
            .contains("Unaccounted: not measured (storage driver vfs; only overlay2 is read)"),
        "{}",
        text(&report)
    );
    report.unaccounted = Some(Unaccounted::Unreadable);
    assert!(!text(&report).contains("Unaccounted"));
    report.unaccounted = Some(Unaccounted::Measured { bytes: 0, dirs: 0 });
    let doc: serde_json::Value = serde_json::from_str(&json(&report)).unwrap();
    assert_eq!(doc["unaccounted_bytes"], 0);
    assert!(!text(&report).contains("Unaccounted"));
    assert_eq!(
        GcSummary::from_report(&real_run_report()).unaccounted_bytes,
        Some(8192)
    );
}

#[test]
fn container_log_bytes_get_a_line_and_a_field() {
    let mut report = real_run_report();
    report.container_log_bytes = Some(3 * 1024 * 1024);
    let doc: serde_json::Value = serde_json::from_str(&json(&report)).unwrap();
    assert_eq!(doc["container_log_bytes"], 3 * 1024 * 1024);
    assert!(
        text(&report).contains("Container logs: 3.0 MiB (not removed by gc"),
        "{}",
        text(&report)
    );
}
