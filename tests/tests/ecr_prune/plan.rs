//! Reviewed plans through the binary, against moto behind the strict proxy: a plan
//! written with `--plan-out`, changed under (a task started on one of its images, a tag
//! moved onto another, a new push), then applied with `--apply --plan`; stale and
//! foreign plan files refused with exit 2; the validation pass after every apply.

use shipshape_tests::aws::Aws;
use shipshape_tests::bin::{run_shipshape, Output};
use shipshape_tests::moto::Moto;
use shipshape_tests::proxy::AwsProxy;

use super::{json, reason_of as reason, repo_json as repo, tick, versions};

/// `ecr-prune ARGS` at the default log level (text), so a refusal is its one line.
fn prune(env: &[(String, String)], args: &[&str]) -> Output {
    let mut all = vec!["ecr-prune"];
    all.extend_from_slice(args);
    run_shipshape(all, env)
}

/// Start one task of a new task definition running `image` in cluster `prod`.
async fn run_task(moto: &Moto, aws: &Aws, image: String) {
    aws.cluster_with_instances(moto, "prod", 1).await;
    let td = aws.task_definition("late", &image).await;
    aws.run_tasks("prod", &td, 1).await;
}

const PLAN_ARGS: [&str; 6] = ["--keep-last", "1", "--min-age", "0s", "--force", "--output"];

#[tokio::test]
async fn a_reviewed_plan_applied_after_a_new_task_started_on_one_of_its_images_keeps_that_image() {
    let moto = Moto::start();
    moto.set_ecs_manual_transitions();
    let proxy = AwsProxy::start(&moto);
    let aws = Aws::with_endpoint(&moto, &proxy.endpoint()).await;
    let uri = aws.repo("web").await;
    let v = versions(&aws, "web", 5).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let plan_path = dir.path().join("plan.json");
    let plan_file = plan_path.display().to_string();
    let mut args = PLAN_ARGS.to_vec();
    args.extend(["json", "--plan-out", &plan_file]);
    let planned = prune(&proxy.env(&moto), &args);
    assert_eq!(planned.code, 0, "stderr: {}", planned.stderr);
    assert_eq!(
        aws.digests("web").await.len(),
        5,
        "planning deletes nothing"
    );
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&plan_path).expect("plan file written"))
            .expect("plan file is JSON");
    assert_eq!(file["format"], "shipshape-ecr-plan");
    assert_eq!(file["version"], 1);
    assert!(file["created_at"].is_string(), "{file}");
    assert!(
        file["inputs_digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("fnv1a128:")),
        "{file}"
    );
    let expired: Vec<&str> = file["repositories"][0]["expire"]
        .as_array()
        .expect("expire list")
        .iter()
        .filter_map(|u| u["digest"].as_str())
        .collect();
    let mut want: Vec<&str> = v[..4].iter().map(String::as_str).collect();
    want.sort();
    let mut got = expired.clone();
    got.sort();
    assert_eq!(got, want, "keep-last 1 expires v0..v3");

    // After the review: a task starts on v1, the tag `hotfix` moves onto v2, v5 is pushed.
    run_task(&moto, &aws, format!("{uri}:v1")).await;
    aws.image("web", Some("hotfix"), "web-2").await;
    let v5 = aws.image("web", Some("v5"), "web-5").await;

    let mut args = PLAN_ARGS.to_vec();
    args.extend(["json", "--apply", "--plan", &plan_file]);
    let applied = prune(&proxy.env(&moto), &args);
    assert_eq!(applied.code, 0, "stderr: {}", applied.stderr);
    let mut left = vec![v[1].clone(), v[2].clone(), v[4].clone(), v5.clone()];
    left.sort();
    assert_eq!(
        aws.digests("web").await,
        left,
        "only v0 and v3 deleted: v1 is in use now, v2 changed, v5 was not in the plan"
    );
    let doc = json(&applied);
    let web = repo(&doc, "web");
    assert!(
        reason(web, &v[1])
            .starts_with("the reviewed plan expired it; kept at apply: in use by ECS (task of ")
            && reason(web, &v[1]).contains("late:1"),
        "{}",
        reason(web, &v[1])
    );
    assert_eq!(
        reason(web, &v[2]),
        "the reviewed plan expired it; kept at apply: changed since the plan: tag hotfix added"
    );
    assert_eq!(reason(web, &v5), "not expired by the reviewed plan");
    assert_eq!(reason(web, &v[0]), "rule 1 (reviewed plan)");
    let mut kept: Vec<String> = web["kept_at_apply"]
        .as_array()
        .expect("kept_at_apply")
        .iter()
        .filter_map(|d| d.as_str().map(str::to_owned))
        .collect();
    kept.sort();
    let mut want = vec![v[1].clone(), v[2].clone()];
    want.sort();
    assert_eq!(kept, want);
    assert_eq!(
        web["unchanged_since_plan"], false,
        "a tag moved and an image was pushed"
    );
    assert_eq!(doc["reviewed_plan"]["inputs_digest"], file["inputs_digest"]);
    assert_eq!(web["validation"]["ok"], true, "{web}");
    assert_eq!(web["validation"]["violations"], serde_json::json!([]));
}

#[tokio::test]
async fn stale_foreign_and_unknown_version_plan_files_are_refused_with_exit_2() {
    let moto = Moto::start();
    let proxy = AwsProxy::start(&moto);
    let aws = Aws::with_endpoint(&moto, &proxy.endpoint()).await;
    aws.repo("web").await;
    versions(&aws, "web", 3).await;
    let before = aws.digests("web").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let plan_path = dir.path().join("plan.json");
    let plan_file = plan_path.display().to_string();
    let mut args = PLAN_ARGS.to_vec();
    args.extend(["text", "--plan-out", &plan_file]);
    let planned = prune(&proxy.env(&moto), &args);
    assert_eq!(planned.code, 0, "stderr: {}", planned.stderr);
    let text = std::fs::read_to_string(&plan_path).expect("plan file");
    std::thread::sleep(std::time::Duration::from_millis(2100));

    let refused = |file: &str, max_age: &str, needles: &[&str]| {
        let mut args = PLAN_ARGS.to_vec();
        args.extend(["text", "--apply", "--plan", file, "--plan-max-age", max_age]);
        let out = prune(&proxy.env(&moto), &args);
        assert_eq!(
            out.code, 2,
            "stdout: {}\nstderr: {}",
            out.stdout, out.stderr
        );
        assert!(out.stdout.is_empty(), "{}", out.stdout);
        assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
        for n in needles {
            assert!(out.stderr.contains(n), "{n:?} not in {}", out.stderr);
        }
    };
    refused(&plan_file, "1s", &["--plan-max-age 1s", "plan again"]);
    let other = dir.path().join("other.json");
    std::fs::write(&other, "{\"rules\": []}").expect("write");
    refused(
        &other.display().to_string(),
        "1d",
        &["is not a shipshape ecr-prune plan"],
    );
    let v2 = dir.path().join("v2.json");
    std::fs::write(&v2, text.replacen("\"version\": 1", "\"version\": 2", 1)).expect("write");
    refused(&v2.display().to_string(), "1d", &["format version 2"]);
    let missing = dir.path().join("missing.json").display().to_string();
    refused(&missing, "1d", &["cannot read the plan file"]);
    let nowhere = dir
        .path()
        .join("no/such/dir/plan.json")
        .display()
        .to_string();
    let unwritable = prune(
        &proxy.env(&moto),
        &["--keep-last", "1", "--plan-out", &nowhere],
    );
    assert_eq!(unwritable.code, 1, "{}", unwritable.stderr);
    // The log lines of the run before it, then one error line.
    let errors: Vec<&str> = unwritable
        .stderr
        .lines()
        .filter(|l| l.starts_with("shipshape: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{}", unwritable.stderr);
    assert!(
        errors[0].contains("cannot write the plan file"),
        "{}",
        unwritable.stderr
    );
    let without_apply = prune(&proxy.env(&moto), &["--plan", &plan_file]);
    assert_eq!(without_apply.code, 2, "{}", without_apply.stderr);
    assert_eq!(without_apply.stderr.trim().lines().count(), 1);
    assert!(
        without_apply.stderr.contains("--plan"),
        "{}",
        without_apply.stderr
    );
    assert_eq!(aws.digests("web").await, before, "nothing deleted");
    assert_eq!(
        std::fs::read_to_string(&plan_path).expect("plan"),
        text,
        "the plan file is unchanged"
    );

    // Fresh enough, it applies: v0 and v1 go, and the text report shows the validation.
    let mut args = PLAN_ARGS.to_vec();
    args.extend(["text", "--apply", "--plan", &plan_file]);
    let applied = prune(&proxy.env(&moto), &args);
    assert_eq!(applied.code, 0, "stderr: {}", applied.stderr);
    assert_eq!(aws.digests("web").await.len(), 1);
    assert!(
        applied
            .stdout
            .contains("validation: ok (0 indexes, 0 referrers checked)"),
        "{}",
        applied.stdout
    );
    assert!(
        applied
            .stdout
            .starts_with(&format!("reviewed plan {plan_file} (planned ")),
        "{}",
        applied.stdout
    );
}

#[tokio::test]
async fn every_apply_ends_with_a_validation_pass_over_kept_indexes() {
    let moto = Moto::start();
    let proxy = AwsProxy::start(&moto);
    let aws = Aws::with_endpoint(&moto, &proxy.endpoint()).await;
    aws.repo("multi").await;
    let old_child = aws.image("multi", None, "old-amd64").await;
    aws.index("multi", Some("v1"), &[old_child]).await;
    tick();
    let kids = vec![
        aws.image("multi", None, "amd64").await,
        aws.image("multi", None, "arm64").await,
    ];
    aws.index("multi", Some("v2"), &kids).await;
    tick();
    let out = prune(&proxy.env(&moto), &super::KEEP_ONE);
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    let doc = json(&out);
    let multi = repo(&doc, "multi");
    assert_eq!(multi["deleted"], 2);
    assert_eq!(
        multi["validation"],
        serde_json::json!({"error": null, "indexes_checked": 1, "ok": true, "referrers_checked": 0, "violations": []})
    );
    let planned = prune(&proxy.env(&moto), &["--keep-last", "1", "--output", "json"]);
    assert!(
        repo(&json(&planned), "multi").get("validation").is_none(),
        "no validation without an apply"
    );
}
